// Accessibility: axe-core (the engine behind browsers' accessibility audits) finds no serious
// or critical violation on the gallery, every scenario page, the not-found page and the error
// panel, in the light theme and the dark one.
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { serve, browser, page, scenarios } from './harness.mjs';
import { closeAll } from './harness.mjs';

const axePath = createRequire(import.meta.url).resolve('axe-core/axe.min.js');
let site, b;
before(async () => { site = await serve(); b = await browser(); });
after(async () => { await b?.close(); await site?.close(); });
afterEach(closeAll);

/** The serious and critical violations axe finds on the page as it stands, described. */
async function audit(p) {
  await p.addScriptTag({ path: axePath });
  const found = await p.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ['violations'] });
    return r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(' | ')}`);
  });
  return found;
}

const pages = () => [
  ['gallery', '#/', '.card'],
  ...scenarios().map((s) => [s.info.id, `#/s/${s.info.id}`, '.checks li']),
  ['not found', '#/s/no-such-scenario', '.banner, .error, h1'],
  ['error panel', '#/debug/worker-panic', '.error-panel, .panic, .banner'],
];

for (const scheme of ['light', 'dark']) {
  test(`axe finds no serious or critical violation (${scheme} theme)`, async () => {
    const bad = [];
    for (const [name, hash, ready] of pages()) {
      const p = await page(b, { colorScheme: scheme });
      await p.goto(site.url + hash);
      await p.waitForSelector(ready, { timeout: 20000 });
      await p.waitForTimeout(300);
      for (const v of await audit(p)) bad.push(`${name}: ${v}`);
      await p.close();
    }
    assert.deepEqual(bad, []);
  });
}
