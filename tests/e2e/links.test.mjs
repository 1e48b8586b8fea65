// The links fuzz's browser slice: damaged links (from `swarm --links N --emit`, the same
// generator `scripts/swarm --links` runs a million of natively) opened through the real page.
// Each shows the player (with a banner when something was repaired) or a page that says what
// is wrong — never a blank page or a console error.
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { serve, browser, page, artifacts, closeAll } from './harness.mjs';

let site, b;
before(async () => { site = await serve(); b = await browser(); });
after(async () => { await b?.close(); await site?.close(); });
afterEach(closeAll);

test('fuzzed links run or say what is wrong, never a blank page or a console error', async () => {
  const links = JSON.parse(readFileSync(join(artifacts, 'links.json'), 'utf8'));
  assert.ok(links.length >= 20, 'the slice has links');
  const p = await page(b);
  const seen = { ran: 0, repaired: 0, refused: 0 };
  for (const { route, mutations, expect } of links) {
    const what = `${expect} (${mutations}): ${route.slice(0, 300)}`;
    // A fresh load each time, as a link pasted into a new tab.
    await p.goto('about:blank');
    await p.goto(`${site.url}${route}`);
    await p.waitForSelector('.notfound, .checks li', { timeout: 20000 })
      .catch(() => assert.fail(`neither the player nor a message: ${what}`));
    const refused = await p.locator('.notfound').count() > 0;
    assert.equal(refused, expect === 'refused', what);
    if (refused) {
      assert.ok((await p.textContent('.notfound')).trim().length > 20, `an empty message: ${what}`);
      assert.ok(await p.locator('.notfound a[href="#/"]').count(), `no way back to the gallery: ${what}`);
    }
    if (expect === 'repaired') {
      await p.waitForSelector('.banner', { timeout: 5000 }).catch(() => assert.fail(`no banner: ${what}`));
    }
    assert.deepEqual(p.errors, [], what);
    seen[expect] += 1;
  }
  // The slice meets all three outcomes.
  for (const [k, n] of Object.entries(seen)) assert.ok(n > 0, `no link was ${k}`);
});
