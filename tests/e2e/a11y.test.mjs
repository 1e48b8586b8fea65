// Accessibility: axe-core (the engine behind browsers' accessibility audits) finds no serious
// or critical violation on the gallery, every scenario page, the not-found page and the error
// panel, in the light theme and the dark one.
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { serve, browser, page, scenarios } from './harness.mjs';
import { closeAll, settledClock } from './harness.mjs';

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
      // axe arrives as an inline script, which the site's Content-Security-Policy would refuse.
      const p = await page(b, { colorScheme: scheme, bypassCSP: true });
      await p.goto(site.url + hash);
      await p.waitForSelector(ready, { timeout: 20000 });
      await p.waitForTimeout(300);
      for (const v of await audit(p)) bad.push(`${name}: ${v}`);
      await p.close();
    }
    assert.deepEqual(bad, []);
  });
}

test('keyboard only: choose a node, crash it, play; a screen reader hears the node and a check fail', async () => {
  const p = await page(b);
  await p.goto(`${site.url}#/s/backpressure`);
  await p.waitForSelector('.checks li');
  const said = () => p.textContent('[aria-live="polite"]');
  // The picture is in the tab order; pause with space first so the run waits for us.
  assert.equal(await p.getAttribute('canvas.sim', 'tabindex'), '0');
  await p.keyboard.press(' ');
  await p.waitForFunction(() => document.querySelector('.play').textContent.includes('Play'));
  const paused = await settledClock(p);
  await p.focus('canvas.sim');
  await p.keyboard.press('ArrowRight');
  await p.waitForFunction(() => /server \(queue\): up/.test(document.querySelector('[aria-live="polite"]').textContent));
  // The arrows chose a node and did not step the run: the clock is where it was.
  assert.equal(await p.textContent('.clock'), paused);
  await p.keyboard.press('Enter');
  await p.waitForSelector('.popover[role="dialog"]');
  // The popover is drawn in a later frame, and the focus follows it there: wait for it as a user does.
  await p.waitForFunction(() => document.activeElement?.textContent === 'Crash', null, { timeout: 5000 })
    .catch(async () => assert.fail(`Enter puts the focus on the first fault, not on '${await p.evaluate(() => document.activeElement?.textContent)}'`));
  await p.keyboard.press('Enter');
  await p.waitForFunction(() => /server \(queue\): crashed/.test(document.querySelector('#canvas-text').textContent),
    null, { timeout: 10000 });
  // The jobs the server held are gone: the screen reader hears the check fail, by name.
  await p.waitForFunction(() => /is violated/.test(document.querySelector('[aria-live="polite"]').textContent),
    null, { timeout: 10000 });
  assert.match(await said(), /Check Nothing dropped silently is violated: \d+ accepted jobs vanished/);
  await p.keyboard.press('Escape');
  await p.waitForFunction(() => !document.querySelector('.popover[role="dialog"]'));
  assert.equal(await p.evaluate(() => document.activeElement.className), 'sim', 'Escape gives the focus back to the picture');
  // The keys are listed on the page.
  await p.keyboard.press('?');
  await p.waitForSelector('.keys-sheet');
  assert.match(await p.textContent('.keys-sheet'), /open the chosen node's faults/);
  await p.keyboard.press('Escape');
  await p.waitForFunction(() => !document.querySelector('.keys-sheet'));
  // Play from the keyboard, as fast as it goes: the clock runs.
  const t0 = parseFloat(await p.textContent('.clock'));
  await p.keyboard.press('9');
  await p.keyboard.press(' ');
  await p.waitForFunction((t) => parseFloat(document.querySelector('.clock').textContent) > t + 1, t0, { timeout: 30000 });
  // The text view, shown on demand, tells the checks as the checks panel does.
  await p.click('.text-toggle');
  assert.equal(await p.getAttribute('.text-toggle', 'aria-pressed'), 'true');
  assert.ok(await p.isVisible('#canvas-text'));
  assert.match(await p.textContent('#canvas-text'), /Messages in flight/);
  assert.deepEqual(p.errors, []);
});

test('a strategy named in a try-this step switches to it when clicked', async () => {
  const p = await page(b);
  await p.goto(`${site.url}#/s/backpressure`);
  await p.waitForSelector('.try button.apply');
  await p.click('.try button.apply:text-is("shed")');
  // Recorded as a switch at this instant (an action in the link), as the strategy menu does.
  await p.waitForFunction(() => document.querySelector('select.strategy').value === 'shed');
  assert.match(p.url(), /[?&]a=/);
  assert.deepEqual(p.errors, []);
});
