// The gallery and the scenario page as a newcomer meets them.
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { serve, browser, page, shot, scenarios } from './harness.mjs';
import { closeAll } from './harness.mjs';

let site, b;
before(async () => { site = await serve(); b = await browser(); });
after(async () => { await b?.close(); await site?.close(); });
afterEach(closeAll);

test('the gallery lists every registered scenario, and search filters it', async () => {
  const p = await page(b);
  await p.goto(site.url);
  await p.waitForSelector('.card');
  const titles = await p.$$eval('.card h3', (els) => els.map((e) => e.textContent));
  const registry = scenarios();
  assert.equal(titles.length, registry.length);
  for (const s of registry) assert.ok(titles.includes(s.info.title), `missing ${s.info.id}`);
  await shot(p, 'gallery');
  await p.fill('input[type=search]', 'zzz-no-such-thing');
  await p.waitForSelector('.empty');
  assert.equal(await p.locator('.card').count(), 0);
  // In any case, and by a strategy's name too: the scenario is among those shown, and not
  // every scenario is.
  const swapped = (t) => [...t].map((c) => (c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase())).join('');
  const shows = async (q, title) => {
    await p.fill('input[type=search]', q);
    const titles = () => [...document.querySelectorAll('.card h3')].map((e) => e.textContent);
    await p.waitForFunction(([t, all]) => {
      const shown = [...document.querySelectorAll('.card h3')].map((e) => e.textContent);
      return shown.includes(t) && shown.length < all;
    }, [title, registry.length], { timeout: 5000 })
      .catch(async () => assert.fail(`"${q}" shows ${JSON.stringify(await p.evaluate(titles))}, not ${title} among fewer`));
  };
  for (const s of registry) {
    await shows(swapped(s.info.title), s.info.title);
    await shows(swapped(s.strategies[s.strategies.length - 1].label), s.info.title);
  }
  assert.deepEqual(p.errors, []);
});

test('bad input gets a clear message, never a blank page', async () => {
  const p = await page(b);
  await p.goto(`${site.url}#/s/no-such-scenario`);
  await p.waitForSelector('.notfound');
  assert.match(await p.textContent('.notfound'), /no scenario called/i);
  assert.ok(await p.locator('.notfound a[href="#/"]').count());
  await shot(p, 'unknown-scenario');

  const s = scenarios()[0];
  const param = s.params[0];
  await p.goto(`${site.url}#/s/${s.info.id}?${param.id}=999999999&strategy=bogus&a=%%%`);
  await p.waitForSelector('.notfound, .banner');
  await p.goto(`${site.url}#/s/${s.info.id}?${param.id}=999999999&strategy=bogus`);
  await p.waitForSelector('.banner');
  const banner = await p.textContent('.banner');
  assert.match(banner, /was used/);
  assert.match(banner, /no strategy `bogus`/);
  await p.waitForSelector('.checks li');
  // The run goes on with the safe values, and the URL now says what is really used.
  assert.match(p.url(), new RegExp(`${param.id}=${param.max}`));
  await shot(p, 'repaired-url');

  await p.goto(`${site.url}#/s/${s.info.id}?v=99`);
  await p.waitForSelector('.notfound');
  assert.match(await p.textContent('.notfound'), /newer Faultline/);

  await p.goto(`${site.url}#/nowhere`);
  await p.waitForSelector('.notfound');
  assert.deepEqual(p.errors, []);
});

test('a crash inside the app shows an error panel with the recipe and a way out', async () => {
  const p = await page(b);
  await p.goto(`${site.url}#/debug/panic`);
  await p.waitForSelector('main.panic');
  assert.match(await p.textContent('main.panic'), /Something broke/);
  assert.match(await p.inputValue('.panic-url'), /#\/debug\/panic/);
  assert.ok(await p.locator('main.panic button:has-text("Reload")').count());
  assert.ok(await p.locator('main.panic a[href="#/"]').count());
  await shot(p, 'panic-panel');
});

test('a crash inside the simulation worker shows the same panel, with what the worker said', async () => {
  const p = await page(b);
  await p.goto(`${site.url}#/debug/worker-panic`);
  await p.waitForSelector('main.panic', { timeout: 30000 });
  assert.match(await p.textContent('main.panic'), /The simulator crashed: [^]*deliberate panic/);
  assert.match(await p.inputValue('.panic-url'), /#\/debug\/worker-panic/);
  await shot(p, 'worker-panic-panel');
});

test('a simulator that cannot be loaded is reported, not waited for', async () => {
  const p = await page(b);
  // As if the worker's files were missing from the server (a half-finished deploy).
  await p.route('**/sim-*', (route) => route.fulfill({ status: 404, body: 'not found' }));
  await p.goto(`${site.url}#/s/${scenarios()[0].info.id}?seed=4`);
  await p.waitForSelector('main.panic', { timeout: 30000 });
  assert.match(await p.textContent('main.panic'), /simulator/i);
  assert.match(await p.inputValue('.panic-url'), /seed=4/, 'the recipe is offered');
});

test('the gallery loads no simulation code; a scenario page loads its own scenario\'s only', async () => {
  const p = await page(b);
  const fetched = [];
  p.on('request', (r) => fetched.push(new URL(r.url()).pathname.split('/').pop()));
  await p.goto(site.url);
  await p.waitForSelector('.card');
  await p.waitForTimeout(500);
  assert.deepEqual(fetched.filter((u) => /^sim-/.test(u)), [], 'no worker module for the gallery');
  const [first, second] = scenarios().map((s) => s.info.id);
  for (const id of [first, second]) {
    fetched.length = 0;
    await p.goto(`${site.url}#/s/${id}`);
    await p.waitForSelector('canvas.sim');
    const sims = fetched.filter((u) => /^sim-/.test(u)).sort();
    assert.deepEqual(sims, [`sim-${id}.js`, `sim-${id}_bg.wasm`, `sim-${id}_loader.js`], `${id}: ${fetched.join(' ')}`);
    await p.goto(`${site.url}#/`);
    await p.waitForSelector('.card');
  }
  assert.deepEqual(p.errors, []);
});

test('a cold scenario link starts its simulator before the page\'s own code has loaded, and only once', async () => {
  const p = await page(b);
  const fetched = [];
  let pageWasmDone = false, loaderWhileWaiting = false;
  p.on('request', (r) => {
    const name = new URL(r.url()).pathname.split('/').pop();
    fetched.push(name);
    if (/^sim-.*_loader\.js$/.test(name) && !pageWasmDone) loaderWhileWaiting = true;
  });
  // As on a slow network: the page's own wasm takes a second to arrive.
  await p.route(/web-[0-9a-f]+_bg\.wasm$/, async (route) => {
    await new Promise((r) => setTimeout(r, 1000));
    const response = await route.fetch();
    pageWasmDone = true;
    await route.fulfill({ response });
  });
  const id = scenarios()[1].info.id;
  await p.goto(`${site.url}#/s/${id}?seed=3`);
  await p.waitForFunction(() => document.querySelector('.play')?.textContent.includes('Pause'));
  assert.ok(loaderWhileWaiting, `the simulator is fetched while the page's wasm is on its way: ${fetched.join(' ')}`);
  assert.equal(fetched.filter((u) => u === `sim-${id}_loader.js`).length, 1, 'one worker, adopted by the page');
  await p.unroute(/web-[0-9a-f]+_bg\.wasm$/);
  // An unknown scenario's early worker is stopped, and the page says what is wrong.
  await p.goto('about:blank');
  await p.goto(`${site.url}#/s/no-such-thing`);
  await p.waitForSelector('main.notfound');
  assert.deepEqual(p.errors, []);
});

test('the site runs under its Content-Security-Policy, which refuses any other inline script', async () => {
  const p = await page(b);
  // Violations are reported as events; recorded from before the page's first script.
  await p.addInitScript(() => {
    window.__csp = [];
    document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  await p.goto(`${site.url}#/s/${scenarios()[0].info.id}`);
  await p.waitForSelector('.checks li');
  const policy = await p.getAttribute('meta[http-equiv="Content-Security-Policy"]', 'content');
  assert.match(policy, /script-src 'self' 'wasm-unsafe-eval' 'sha256-/);
  assert.doesNotMatch(policy.match(/script-src[^;]*/)[0], /'unsafe-inline'|'unsafe-eval'/);
  // The page, its scenario's worker and a run all work under it…
  await p.waitForFunction(() => /[1-9]/.test(document.querySelector('.clock')?.textContent ?? ''));
  assert.deepEqual(await p.evaluate(() => window.__csp), []);
  // …and a script someone slipped into the page would not run.
  await p.evaluate(() => {
    const s = document.createElement('script');
    s.textContent = 'window.__slipped = true';
    document.body.append(s);
  });
  await p.waitForFunction(() => window.__csp.length > 0);
  assert.equal(await p.evaluate(() => window.__slipped), undefined);
  // The error panel's buttons are listeners, not inline handlers: they work under the policy.
  await p.goto(`${site.url}#/debug/panic`);
  await p.waitForSelector('main.panic');
  await p.evaluate(() => { window.__csp = []; window.__before = true; });
  await p.click('main.panic button:has-text("Reload")');
  await p.waitForFunction(() => !window.__before && document.querySelector('main.panic'));
  assert.deepEqual(await p.evaluate(() => window.__csp), []);
  // The slipped script's refusal, and the deliberate panic (a wasm trap follows a panic).
  p.errors = p.errors.filter((e) => !/Content Security Policy|deliberate panic|Faultline crashed|RuntimeError: unreachable/.test(e));
  assert.deepEqual(p.errors, []);
});
