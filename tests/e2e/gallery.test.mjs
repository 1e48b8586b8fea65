// The gallery and the scenario page as a newcomer meets them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { serve, browser, page, shot, scenarios } from './harness.mjs';

let site, b;
before(async () => { site = await serve(); b = await browser(); });
after(async () => { await b?.close(); await site?.close(); });

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
  assert.deepEqual(p.errors, []);
});

test('every scenario page runs its default recipe and shows verdicts and metrics', async () => {
  for (const s of scenarios()) {
    const p = await page(b);
    await p.goto(site.url);
    await p.click(`a.card[href="#/s/${s.info.id}"]`);
    await p.waitForSelector('.checks li');
    assert.equal(await p.locator('.checks li').count(), s.checks.length);
    assert.equal(await p.locator('.metrics tr').count(), s.metrics.length);
    assert.match(await p.textContent('.fingerprint'), /^[0-9a-f]{8}$/);
    await shot(p, `scenario-${s.info.id}`);
    assert.deepEqual(p.errors, [], s.info.id);
  }
});

test('a recipe URL reproduces the same run (same fingerprint as the native runner)', async () => {
  const p = await page(b);
  const s = scenarios()[0];
  await p.goto(`${site.url}#/s/${s.info.id}?seed=7`);
  const a = await p.textContent('.fingerprint');
  await p.reload();
  await p.waitForSelector('.fingerprint');
  assert.equal(await p.textContent('.fingerprint'), a);
  await p.goto(`${site.url}#/s/${s.info.id}?seed=8`);
  await p.waitForFunction((old) => document.querySelector('.fingerprint')?.textContent !== old, a);
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
  await p.waitForSelector('.checks li');
  await shot(p, 'repaired-url');

  await p.goto(`${site.url}#/s/${s.info.id}?v=99`);
  await p.waitForSelector('.notfound');
  assert.match(await p.textContent('.notfound'), /newer Faultline/);

  await p.goto(`${site.url}#/nowhere`);
  await p.waitForSelector('.notfound');
  assert.deepEqual(p.errors, []);
});
