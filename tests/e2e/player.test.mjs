// The player as a newcomer uses it: play, move a slider, break a node, watch a check fail,
// switch to the fixed strategy, share the link and see the same run again.
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { serve, browser, page, shot, scenarios, root } from './harness.mjs';
import { closeAll } from './harness.mjs';

let site, b;
before(async () => { site = await serve(); b = await browser(); });
after(async () => { await b?.close(); await site?.close(); });
afterEach(closeAll);

const clock = async (p) => parseFloat(await p.textContent('.clock'));
const pause = async (p) => {
  if ((await p.textContent('.play')).includes('Pause')) await p.click('.play');
};
// Running to the end re-simulates frame by frame (the tab stays responsive), so heavy
// recipes can take a while on a slow machine.
const toEnd = async (p) => {
  await p.click('.to-end');
  await p.waitForFunction(() => {
    const [now, end] = document.querySelector('.clock').textContent.split('/').map(parseFloat);
    return now >= end && !document.querySelector('.seeking');
  }, null, { timeout: 180000 });
};
const fingerprint = (p) => p.textContent('.fingerprint');

/** The native runner's fingerprint for the same recipe, run to the scenario's default end. */
function nativeFingerprint(url) {
  const query = url.split('?').slice(1).join('?');
  const id = url.match(/#\/s\/([^?]+)/)[1];
  const out = execFileSync(join(root, 'target/release/faultline'), ['run', `?s=${id}&${query}`, '--json']);
  return JSON.parse(out).fingerprint;
}

test('every scenario page plays and its canvas changes', async () => {
  for (const s of scenarios()) {
    const p = await page(b);
    await p.goto(`${site.url}#/s/${s.info.id}`);
    await p.waitForSelector('canvas.sim');
    await p.waitForTimeout(300);
    const first = await p.locator('canvas.sim').screenshot();
    const t0 = await clock(p);
    // A quiet scenario (crdt-sync: a few edits a second, a sync every 2 s) may show nothing new
    // for a second of its time: look for a change over up to 5 s of it, a frame every 300 ms.
    let changed = false;
    for (let i = 0; i < 40 && !changed && (i < 3 || (await clock(p)) < t0 + 5); i++) {
      await p.waitForTimeout(300);
      changed = !first.equals(await p.locator('canvas.sim').screenshot());
    }
    assert.ok(await clock(p) > t0, `${s.info.id}: the clock does not move`);
    assert.ok(changed, `${s.info.id}: the canvas does not change in 5 s of play`);
    assert.equal(await p.locator('.checks li').count(), s.checks.length);
    assert.equal(await p.locator('.chart').count(), s.metrics.length);
    assert.equal(await p.locator('.param input[type=range]').count(), s.params.length);
    await shot(p, `player-${s.info.id}`);
    assert.deepEqual(p.errors, [], s.info.id);
    await p.close();
  }
});

test('a slider changes the URL, and the URL replays the same run (here and natively)', async () => {
  const p = await page(b);
  await p.goto(`${site.url}#/s/backpressure?seed=3`);
  await p.waitForSelector('.param input[type=range]');
  await p.waitForFunction(() => parseFloat(document.querySelector('.clock').textContent) > 1);
  await pause(p);
  const before = p.url();
  // Workers: from 4 to 5, recorded at the current instant.
  const slider = p.locator('.param input[type=range]').nth(2);
  await slider.evaluate((el) => { el.value = '5'; el.dispatchEvent(new Event('change', { bubbles: true })); });
  await p.waitForFunction((u) => location.href !== u, before);
  assert.match(p.url(), /[?&]a=/, 'the change is in the recipe');
  assert.match(await p.textContent('.param:nth-of-type(3) .param-value'), /^5/);
  await toEnd(p);
  const fp = await fingerprint(p);
  const url = p.url();

  const again = await page(b);
  await again.goto(url);
  await again.waitForSelector('.to-end');
  await pause(again);
  await toEnd(again);
  assert.equal(await fingerprint(again), fp, 'same link, same run');
  assert.equal(nativeFingerprint(url), fp, 'the native runner agrees');
  await shot(again, 'replayed-link');
  assert.deepEqual([...p.errors, ...again.errors], []);
});

test('a fault injected from the UI flips the check it should, and the fix holds', async () => {
  const p = await page(b);
  // No scheduled outage: everything holds until we break it ourselves.
  await p.goto(`${site.url}#/s/circuit-breaker?strategy=none&outage_len=0&slow_len=0`);
  await p.waitForSelector('.fault-row button');
  await p.waitForFunction(() => parseFloat(document.querySelector('.clock').textContent) > 0.5);
  await pause(p);
  await p.click('.fault-row button:has-text("Downstream outage")');
  await p.waitForFunction(() => location.href.includes('a='));
  await toEnd(p);
  await p.waitForSelector('.checks li.bad');
  assert.match(await p.textContent('.checks li.bad'), /Sick downstream spared/);
  await shot(p, 'fault-flips-check');
  // Clicking the violation jumps the timeline there.
  await p.click('.checks li.bad button');
  // The worker rewinds, then its next status shows where it stands.
  await p.waitForFunction(() => parseFloat(document.querySelector('.clock').textContent) < 30);
  const at = await clock(p);
  assert.ok(at > 0.5 && at < 30, `jumped to ${at}`);
  // The violation is highlighted in the event log, in view even if the log had been
  // scrolled away from it.
  await p.waitForSelector('.log li.highlight');
  const lit = () => p.$eval('.log', (el) => {
    const li = el.querySelector('li.highlight');
    const [a, c] = [el.getBoundingClientRect(), li.getBoundingClientRect()];
    return { inView: c.top >= a.top - 1 && c.bottom <= a.bottom + 1, text: li.textContent };
  });
  await p.waitForTimeout(300);
  let l = await lit();
  assert.ok(l.inView, 'the highlighted entry is in view');
  assert.match(l.text, /downstream-spared/);
  await p.$eval('.log', (el) => { el.scrollTop = 0; });
  await p.click('.checks li.bad button');
  await p.waitForTimeout(500);
  assert.ok((await lit()).inView, 'in view again after scrolling away and jumping again');

  // Same outage with the breaker: the check holds.
  const fixed = p.url().replace('strategy=none', 'strategy=breaker');
  const q = await page(b);
  await q.goto(fixed);
  await q.waitForSelector('.to-end');
  await pause(q);
  await toEnd(q);
  assert.equal(await q.locator('.checks li.bad').count(), 0);
  assert.deepEqual([...p.errors, ...q.errors], []);
});

test('clicking a node offers faults; crashing the server loses jobs', async () => {
  const p = await page(b);
  await p.goto(`${site.url}#/s/backpressure?strategy=shed&burst_len=0`);
  await p.waitForSelector('canvas.sim');
  await p.waitForFunction(() => parseFloat(document.querySelector('.clock').textContent) > 1);
  await pause(p);
  // Two tiers: producers on the left, the server in the middle of the right column (the
  // columns share the width less 70 px kept for the last column's gauge values).
  const box = await p.locator('canvas.sim').boundingBox();
  await p.mouse.click(box.x + (box.width - 70) * 0.75, box.y + 40 + (box.height - 70) / 2);
  await p.waitForSelector('.popover');
  assert.match(await p.textContent('.popover'), /server/);
  await shot(p, 'node-popover');
  await p.click('.popover button.danger');
  await p.waitForFunction(() => location.href.includes('a='));
  await p.click('.play');
  await p.waitForFunction(() => document.querySelector('.checks li.bad'), null, { timeout: 10000 });
  assert.match(await p.textContent('.checks li.bad'), /Nothing dropped silently/);
  assert.deepEqual(p.errors, []);
});

test('keyboard: space plays and pauses, arrows step, digits set the speed', async () => {
  const p = await page(b);
  await p.goto(`${site.url}#/s/leader-election`);
  await p.waitForSelector('.play');
  await pause(p);
  const events = async () => parseInt((await p.textContent('.stats')).match(/(\d+) events/)[1], 10);
  // The run lives in a worker: the page shows each step once the worker's next status arrives.
  const eventsBecome = (n) => p.waitForFunction(
    (want) => parseInt(document.querySelector('.stats').textContent.match(/(\d+) events/)[1], 10) === want, n);
  let e0;
  do { e0 = await events(); await p.waitForTimeout(200); } while (e0 !== await events());
  const t0 = await clock(p);
  await p.keyboard.press('ArrowRight');
  await eventsBecome(e0 + 1);
  await p.keyboard.press('ArrowRight');
  await eventsBecome(e0 + 2);
  assert.ok(await clock(p) >= t0);
  await p.keyboard.press('ArrowLeft');
  await eventsBecome(e0 + 1).catch(async () => assert.fail(`one event back: ${await events()}, not ${e0 + 1}`));
  await p.keyboard.press('9');
  assert.equal(await p.$eval('.speed select', (s) => s.options[s.selectedIndex].text), 'max');
  await p.keyboard.press(' ');
  await p.waitForFunction(() => document.querySelector('.play').textContent.includes('Play'), null, { timeout: 10000 });
  assert.deepEqual(p.errors, []);
});

test('a hidden tab pauses the run, and showing it again plays on', async () => {
  const p = await page(b);
  await p.goto(`${site.url}#/s/backpressure`);
  await p.waitForFunction(() => document.querySelector('.play')?.textContent.includes('Pause'));
  const setHidden = (hidden) => p.evaluate((h) => {
    Object.defineProperty(document, 'hidden', { configurable: true, get: () => h });
    document.dispatchEvent(new Event('visibilitychange', { bubbles: true }));
  }, hidden);
  await setHidden(true);
  await p.waitForFunction(() => document.querySelector('.play').textContent.includes('Play'), null, { timeout: 10000 });
  // Paused in the worker, not only on the button: the clock stands still.
  await p.waitForTimeout(300);
  const t0 = await clock(p);
  await p.waitForTimeout(1000);
  assert.equal(await clock(p), t0, 'the clock moved while the tab was hidden');
  await setHidden(false);
  await p.waitForFunction(() => document.querySelector('.play').textContent.includes('Pause'), null, { timeout: 10000 });
  await p.waitForFunction((t) => parseFloat(document.querySelector('.clock').textContent) > t, t0, { timeout: 10000 });
  assert.deepEqual(p.errors, []);
});

test('the event log follows its newest entry, and stays put while you read further up', async () => {
  const p = await page(b);
  await p.goto(`${site.url}#/s/leader-election`);
  await p.waitForSelector('.log li');
  await p.waitForTimeout(3000);
  const log = () => p.$eval('.log', (l) => ({
    top: l.scrollTop,
    bottom: l.scrollTop + l.clientHeight >= l.scrollHeight - 8,
    scrolls: l.scrollHeight > l.clientHeight + 100,
    last: parseFloat(l.lastElementChild.querySelector('.t').textContent),
  }));
  let l = await log();
  assert.ok(l.scrolls, 'the log has more entries than it shows');
  assert.ok(l.bottom, 'the newest entry is in view');
  assert.ok(l.last > (await clock(p)) - 1, `the newest entry (${l.last} s) is recent`);
  await p.$eval('.log', (el) => { el.scrollTop = 0; });
  await p.waitForTimeout(1500);
  l = await log();
  assert.ok(l.top < 20 && !l.bottom, 'scrolled up, the log is not pulled back down');
  await p.$eval('.log', (el) => { el.scrollTop = el.scrollHeight; });
  await p.waitForTimeout(1500);
  l = await log();
  assert.ok(l.bottom, 'back at the bottom, it follows again');
  assert.ok(l.last > (await clock(p)) - 1, 'and shows the newest entries');
  assert.deepEqual(p.errors, []);
});

test('native == browser: every scenario, default and random recipes, same fingerprint', async () => {
  let seed = 12345;
  const rand = (n) => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n; };
  const p = await page(b);
  for (const s of scenarios()) {
    const recipes = [`seed=1`];
    for (let k = 0; k < 2; k++) {
      const param = s.params[rand(s.params.length)];
      const steps = Math.floor((param.max - param.min) / param.step);
      // Stay near the default so runs stay short: within ±3 steps.
      const v = Math.min(param.max, Math.max(param.min, param.default + (rand(7) - 3) * param.step));
      const strategy = s.strategies[rand(s.strategies.length)].id;
      recipes.push(`strategy=${strategy}&seed=${rand(1000000)}&${param.id}=${steps >= 0 ? v : param.default}`);
    }
    for (const q of recipes) {
      await p.goto('about:blank');
      await p.goto(`${site.url}#/s/${s.info.id}?${q}`);
      await p.waitForSelector('.to-end');
      await pause(p);
      await toEnd(p);
      const url = p.url();
      assert.equal(await fingerprint(p), nativeFingerprint(url), `${s.info.id}?${q}`);
    }
  }
  assert.deepEqual(p.errors, []);
});

test('a long jump re-simulates frame by frame: the tab never freezes', async () => {
  const p = await page(b);
  // A heavy recipe: 5000 clients reading 20 times a second (~100k events per simulated second).
  await p.goto(`${site.url}#/s/cache-stampede?clients=5000&client_rps=20`);
  await p.waitForSelector('.to-end');
  await pause(p);
  await p.click('.to-end');
  await p.waitForSelector('.seeking');
  const t1 = await clock(p);
  const started = Date.now();
  await p.evaluate(() => new Promise((r) => requestAnimationFrame(() => r())));
  assert.ok(Date.now() - started < 1000, 'animation frames keep coming while it catches up');
  await p.waitForFunction((t) => parseFloat(document.querySelector('.clock').textContent) > t, t1);
  // Changing course mid-way works: back to the start.
  await p.click('button[title="Back to the start"]');
  await p.waitForFunction(() => !document.querySelector('.seeking'));
  assert.equal(await clock(p), 0);
  assert.deepEqual(p.errors, []);
});

test('a run the browser cannot play in real time says so; one it can, does not', async () => {
  const p = await page(b);
  // 200 users at 5,000 requests a second each (1 M/s) over 32 gossiping instances, asked to
  // play at 100× (key 8): about real time natively, so a hundred times beyond any machine this
  // test will meet — it passes on a fast day and a slow one alike.
  await p.goto(`${site.url}#/s/distributed-rate-limiter?strategy=gossip&users=200&abusive=200&normal_rps=1000&abusive_rps=5000&instances=32`);
  await p.waitForSelector('.play');
  await p.keyboard.press('8');
  assert.equal(await p.$eval('.speed select', (el) => el.options[el.selectedIndex].text), '100×');
  await p.waitForSelector('.pace', { timeout: 20000 });
  assert.match(await p.textContent('.pace'), /playing at [0-9.]+× — can't keep up/);
  // Paused, it says nothing.
  await pause(p);
  await p.waitForSelector('.pace', { state: 'detached', timeout: 5000 });
  const light = await page(b);
  await light.goto(`${site.url}#/s/backpressure`);
  await light.waitForSelector('.play');
  await light.waitForTimeout(3000);
  assert.equal(await light.locator('.pace').count(), 0, 'a light run keeps up');
  assert.deepEqual(p.errors, []);
  assert.deepEqual(light.errors, []);
});

test('the engine bench page runs every scenario, as it starts and at scale, with the native fingerprints', async () => {
  const p = await page(b);
  await p.goto(`${site.url}#/bench/engine`);
  await p.waitForFunction(() => window.__faultline_engine, null, { timeout: 180000 });
  const rows = JSON.parse(await p.evaluate(() => window.__faultline_engine));
  const n = scenarios().length;
  assert.deepEqual(rows.slice(0, n).map((r) => r.id), scenarios().map((s) => s.info.id));
  // Then the same scenarios at the seed documents' scales (faultline_scenarios::AT_SCALE).
  assert.ok(rows.length > n, 'runs at scale follow the default runs');
  for (const [i, r] of rows.entries()) {
    const args = i < n ? ['run', r.id, '--seed', '1'] : ['run', `?${r.query}`, '--until', `${r.until_ms}ms`];
    const native = JSON.parse(execFileSync(join(root, 'target/release/faultline'), [...args, '--json']));
    assert.equal(r.fingerprint, native.fingerprint, r.label);
    assert.equal(r.events, native.events, r.label);
    assert.ok(r.events_per_s > 0 && r.real_time > 0, r.label);
  }
  assert.equal(await p.locator('.bench-table tbody tr').count(), rows.length);
  assert.deepEqual(p.errors, []);
  await p.close();
});

test('a setup slider says it restarts the run, and does: from 0, with its value in the link', async () => {
  const s = scenarios().find((x) => x.params.some((p) => !p.live) && x.params.some((p) => p.live));
  const setup = s.params.find((p) => !p.live);
  const p = await page(b);
  await p.goto(`${site.url}#/s/${s.info.id}?seed=3`);
  await p.waitForSelector('.param.setup');
  await p.waitForFunction(() => parseFloat(document.querySelector('.clock').textContent) > 1);
  await pause(p);
  // Before it is touched, the slider says what moving it will do.
  const row = p.locator('.param.setup').first();
  assert.match(await row.textContent(), /restarts/);
  assert.match(await row.getAttribute('title'), /restarts the run from 0/);
  assert.equal(await p.locator('.param:not(.setup) .restarts').count(), 0, 'live sliders say nothing of the kind');
  const value = setup.default === setup.max ? setup.min : setup.max;
  await row.locator('input[type=range]').evaluate((el, v) => {
    el.value = String(v);
    el.dispatchEvent(new Event('change', { bubbles: true }));
  }, value);
  await p.waitForFunction(() => parseFloat(document.querySelector('.clock').textContent) === 0);
  assert.match(p.url(), new RegExp(`[?&]${setup.id}=${value}(&|$)`), 'the new value is the run\'s starting value');
  assert.doesNotMatch(p.url(), /[?&]a=/, 'not an action: the run was rebuilt');
  assert.match(await p.textContent('.toast'), /restarted from 0/);
  await shot(p, 'setup-slider-restarted');
  assert.deepEqual(p.errors, []);
});

test('a shared link says whether it still shows the run that was shared', async () => {
  const s = scenarios().find((x) => x.info.id === 'leader-election') ?? scenarios()[0];
  const id = s.info.id;
  const out = execFileSync(join(root, 'target/release/faultline'), ['run', `?s=${id}`, '--json']);
  const fp = JSON.parse(out).fingerprint;
  const link = (f) => `${site.url}#/s/${id}?fp=${f}@${s.default_until}`;

  const same = await page(b);
  await same.goto(link(fp));
  await same.waitForSelector('.to-end');
  await pause(same);
  await toEnd(same);
  await same.waitForFunction(() => /the run that was shared/.test(document.querySelector('.toast')?.textContent ?? ''));
  assert.equal(await same.locator('.banner.changed').count(), 0);

  const flipped = (parseInt(fp, 16) ^ 1).toString(16).padStart(8, '0');
  const other = await page(b);
  await other.goto(link(flipped));
  await other.waitForSelector('.to-end');
  await pause(other);
  await toEnd(other);
  await other.waitForSelector('.banner.changed');
  assert.match(await other.textContent('.banner.changed'), /changed since the link was made/);
  await shot(other, 'shared-link-changed');
  assert.deepEqual([...same.errors, ...other.errors], []);
});

test('a new seed, and reset, restart the run from 0 and keep the rest of the recipe', async () => {
  const p = await page(b);
  await p.goto(`${site.url}#/s/backpressure?seed=3&workers=6`);
  await p.waitForSelector('.fault-grid button');
  await p.waitForFunction(() => parseFloat(document.querySelector('.clock').textContent) > 1);
  await p.click('.fault-grid button:has-text("Latency")');
  await p.waitForFunction(() => location.href.includes('a='));
  await p.fill('.seed input', '77');
  // The run plays on while the seed is typed: the periodic refresh must not wipe the typing.
  const typedAt = await p.$eval('.clock', (el) => parseFloat(el.textContent));
  await p.waitForFunction((t) => parseFloat(document.querySelector('.clock').textContent) > t + 1, typedAt);
  assert.equal(await p.inputValue('.seed input'), '77', 'the typed seed is still there');
  await p.press('.seed input', 'Enter');
  await p.waitForFunction(() => /[?&]seed=77(&|$)/.test(location.href));
  assert.match(p.url(), /workers=6/, 'the parameters stay');
  assert.match(p.url(), /[?&]a=/, 'and so do the actions');
  await p.click('button:has-text("Reset")');
  await p.waitForFunction(() => !location.href.includes('a='));
  assert.match(p.url(), /seed=77/);
  assert.match(p.url(), /workers=6/);
  assert.equal(await p.inputValue('.seed input'), '77');
  assert.deepEqual(p.errors, []);
});

/** The native runner's report (`--json`) for a player URL, run to the scenario's default end. */
function nativeReport(url) {
  const query = url.split('?').slice(1).join('?');
  const id = url.match(/#\/s\/([^?]+)/)[1];
  return JSON.parse(execFileSync(join(root, 'target/release/faultline'), ['run', `?s=${id}&${query}`, '--json']));
}

test('break, then fix, in one run: every scenario shows the broken check holding again after the switch', async () => {
  const p = await page(b);
  let recovered = 0;
  for (const s of scenarios()) {
    const [naive, fixed] = [s.strategies.find((x) => x.naive), s.strategies.find((x) => !x.naive)];
    // Where the naive strategy first breaks a check, natively.
    const first = nativeReport(`#/s/${s.info.id}?strategy=${naive.id}`).checks
      .filter((c) => c.violated_at_s !== null)
      .sort((a, c) => a.violated_at_s - c.violated_at_s)[0];
    if (!first) continue;
    const index = s.checks.findIndex((c) => c.id === first.id);
    await p.goto('about:blank');
    await p.goto(`${site.url}#/s/${s.info.id}?strategy=${naive.id}`);
    await p.waitForSelector('.to-end');
    await pause(p);
    // Half a second after it broke, it reads as violated; then switch to the fix.
    const ms = Math.round(first.violated_at_s * 1000) + 500;
    await p.$eval('.timeline input', (el, v) => {
      el.value = String(v);
      el.dispatchEvent(new Event('input', { bubbles: true }));
    }, ms);
    await p.waitForFunction((v) => parseFloat(document.querySelector('.clock').textContent) * 1000 >= v - 10
      && !document.querySelector('.seeking'), ms, { timeout: 120000 });
    // A line's text once it says `want` (the strategies it names come with the slow parts,
    // a moment after the frame), or as it stands after 10 s.
    const says = async (want) => {
      await p.waitForFunction(([i, w]) => document.querySelectorAll('.checks li')[i].textContent.includes(w),
        [index, want], { timeout: 10000 }).catch(() => {});
      return p.evaluate((i) => document.querySelectorAll('.checks li')[i].textContent, index);
    };
    await p.waitForFunction((i) => document.querySelectorAll('.checks li')[i].classList.contains('bad'), index);
    const broken = await says(`violated under ${naive.label} since`);
    assert.ok(broken.includes(`violated under ${naive.label} since`), `${s.info.id}: ${broken}`);
    const switchedAt = await clock(p);
    await p.selectOption('select.strategy', fixed.id);
    await p.waitForFunction(() => location.href.includes('a='));
    await toEnd(p);
    // The native runner, given the same link, says whether and since when it holds again.
    const after = nativeReport(p.url()).checks.find((c) => c.id === first.id);
    const last = after.bands[after.bands.length - 1];
    const holds = last.to_s !== null && s.default_until / 1e6 - last.to_s >= 1;
    await p.waitForFunction(([i, ok]) => document.querySelectorAll('.checks li')[i].classList.contains(ok ? 'recovered' : 'bad'),
      [index, holds]);
    const inBand = holds && last.from_s < switchedAt && switchedAt <= last.to_s;
    const text = await says(inBand ? `holding since the switch to ${fixed.label} + ` : 'holding since');
    if (holds) {
      recovered += 1;
      // "violated 12.3–17.2 s": the end of the band, to a tenth (either way on a tie).
      const ends = [Math.floor(last.to_s * 10), Math.ceil(last.to_s * 10)].map((v) => `–${(v / 10).toFixed(1)} s`);
      assert.ok(text.includes('holding since') && ends.some((e) => text.includes(e)), `${s.info.id}: ${text}`);
      // A switch made while it was violated is named as what came before the hold.
      if (inBand) {
        assert.ok(text.includes(`holding since the switch to ${fixed.label} + `), `${s.info.id}: ${text}`);
      }
      if (s.info.id === 'backpressure') await shot(p, 'break-then-fix');
    }
    // The timeline shows a red band where it was violated.
    assert.ok(await p.locator('.bands .band').count() >= 1, `${s.info.id}: no violation band on the timeline`);
  }
  // Every scenario's first fixed strategy repairs what its naive one broke (tests/break_fix.rs
  // proves it natively for three seeds); the browser must show each of them.
  assert.equal(recovered, scenarios().length);
  assert.deepEqual(p.errors, []);
});
