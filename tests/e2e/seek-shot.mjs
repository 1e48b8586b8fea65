// Screenshots of pages paused at a moment, for a human to look at:
// node seek-shot.mjs <hash> <name> <seconds> ...  (files in /tmp/shots)
import { serve, browser, page } from './harness.mjs';
const args = process.argv.slice(2);
const site = await serve();
const b = await browser();
for (let i = 0; i + 2 < args.length; i += 3) {
  const p = await page(b);
  await p.goto(site.url + args[i]);
  await p.waitForSelector('.to-end');
  if ((await p.textContent('.play')).includes('Pause')) await p.click('.play');
  const ms = Math.round(Number(args[i + 2]) * 1000);
  await p.$eval('.timeline input', (el, v) => { el.value = String(v); el.dispatchEvent(new Event('input', { bubbles: true })); }, ms);
  await p.waitForFunction((v) => parseFloat(document.querySelector('.clock').textContent) * 1000 >= v - 10
    && !document.querySelector('.seeking'), ms, { timeout: 120000 });
  await p.waitForTimeout(800);
  const height = await p.evaluate(() => document.documentElement.scrollHeight);
  await p.setViewportSize({ width: 1280, height });
  await p.waitForTimeout(200);
  await p.screenshot({ path: `/tmp/shots/${args[i + 1]}.png`, fullPage: true });
  if (p.errors.length) console.log(args[i + 1], 'errors:', p.errors);
}
await b.close();
await site.close();
