// Takes the README's screenshots from the release build: node readme-shots.mjs (after trunk build).
import { serve, browser, page } from './harness.mjs';
import { join } from 'node:path';
import { root } from './harness.mjs';

const site = await serve();
const b = await browser();
const p = await page(b, { viewport: { width: 1400, height: 1000 } });
await p.goto(site.url);
await p.waitForSelector('.card');
await p.screenshot({ path: join(root, 'docs/gallery.png') });
await p.goto(`${site.url}#/s/backpressure?strategy=unbounded&seed=2`);
await p.waitForSelector('.play');
await p.click('.play');
// Scrub to just after the unbounded buffer ran out of memory (19.36 s with seed 2).
await p.$eval('.timeline input', (el) => { el.value = '19500'; el.dispatchEvent(new Event('input', { bubbles: true })); });
await p.waitForTimeout(300);
await p.screenshot({ path: join(root, 'docs/scenario.png') });
await b.close();
await site.close();
