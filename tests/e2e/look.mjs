// Takes screenshots of chosen pages for a human to look at: node look.mjs <hash> <name> [waitMs] ...
import { serve, browser, page } from './harness.mjs';
const args = process.argv.slice(2);
const site = await serve();
const b = await browser();
for (let i = 0; i + 1 < args.length; i += 3) {
  const p = await page(b);
  await p.goto(site.url + args[i]);
  await p.waitForTimeout(Number(args[i + 2] ?? 1500));
  // A viewport as tall as the page, so rows drawn only when in view (the log's) are drawn.
  const height = await p.evaluate(() => document.documentElement.scrollHeight);
  await p.setViewportSize({ width: p.viewportSize().width, height });
  await p.waitForTimeout(100);
  await p.screenshot({ path: `/tmp/shots/${args[i + 1]}.png`, fullPage: true });
  if (p.errors.length) console.log(args[i + 1], 'errors:', p.errors);
}
await b.close();
await site.close();
