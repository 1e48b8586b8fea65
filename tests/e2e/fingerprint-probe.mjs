// Browser against native for given recipes, each run to its end with "End ▶▶" (one long
// jump, re-simulated frame by frame), as the e2e test does: node fingerprint-probe.mjs
// 'metrics-aggregation?strategy=merged-histograms&seed=55488' ...  (needs the release site
// in dist/ and target/release/faultline). A DIFF means the page's run is not the recipe's.
import { serve, browser, page, root } from './harness.mjs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
const site = await serve();
const b = await browser();
for (const r of process.argv.slice(2)) {
  const p = await page(b);
  await p.goto(`${site.url}#/s/${r}`);
  await p.waitForSelector('.to-end');
  if ((await p.textContent('.play')).includes('Pause')) await p.click('.play');
  await p.click('.to-end');
  await p.waitForFunction(() => {
    const [now, end] = document.querySelector('.clock').textContent.split('/').map(parseFloat);
    return now >= end && !document.querySelector('.seeking');
  }, null, { timeout: 300000 });
  const fp = await p.textContent('.fingerprint');
  const url = p.url();
  const query = url.split('?').slice(1).join('?');
  const id = url.match(/#\/s\/([^?]+)/)[1];
  const out = JSON.parse(execFileSync(join(root, 'target/release/faultline'), ['run', `?s=${id}&${query}`, '--json']));
  console.log(r, 'browser', fp, 'native', out.fingerprint, fp === out.fingerprint ? 'OK' : 'DIFF', p.errors);
  await p.close();
}
await b.close(); await site.close();
