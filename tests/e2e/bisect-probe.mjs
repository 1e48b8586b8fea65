import { serve, browser, page, root } from './harness.mjs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
const [r, ...times] = process.argv.slice(2);
const site = await serve();
const b = await browser();
const p = await page(b);
await p.goto(`${site.url}#/s/${r}`);
await p.waitForSelector('.to-end');
if ((await p.textContent('.play')).includes('Pause')) await p.click('.play');
const id = r.split('?')[0], q = r.split('?')[1];
for (const t of times) {
  const ms = Math.round(Number(t) * 1000);
  await p.$eval('.timeline input', (el, v) => { el.value = String(v); el.dispatchEvent(new Event('input', { bubbles: true })); }, ms);
  await p.waitForFunction((v) => Math.abs(parseFloat(document.querySelector('.clock').textContent) * 1000 - v) < 20
    && !document.querySelector('.seeking'), ms, { timeout: 120000 });
  await p.waitForTimeout(300);
  const fp = await p.textContent('.fingerprint');
  const clock = await p.textContent('.clock');
  const out = JSON.parse(execFileSync(join(root, 'target/release/faultline'), ['run', `?s=${id}&${q}`, '--until', `${ms}ms`, '--json']));
  console.log(t, clock, 'browser', fp, 'native', out.fingerprint, out.sim_seconds, fp === out.fingerprint ? 'OK' : 'DIFF');
}
await b.close(); await site.close();
