// Browser benchmarks on the release build in headless Chromium: frame times of the renderer
// with 1k/5k/20k messages in flight (at vsync and unthrottled), every scenario's run in the
// browser (as it starts and at scale), the at-scale runs in the player (pace and frames a
// second), and time to first paint / first animated frame.
// Run by scripts/bench (after `trunk build --release`); prints BROWSERBENCH lines.
import { serve, browser, page } from '../e2e/harness.mjs';

const site = await serve();
// Frames twice: as a display shows them (vsync: at most 60 fps, so the interval's p95 is the
// environment's jitter as much as ours), and unthrottled (no frame-rate limit, no vsync), where
// the interval between frames is what the renderer can sustain: p95 <= 16.7 ms there means
// 60 fps with room to spare.
for (const [mode, flags] of [['vsync', []], ['unthrottled', ['--disable-frame-rate-limit', '--disable-gpu-vsync']]]) {
  const fb = await browser(flags);
  for (const n of [0, 1000, 5000, 20000]) {
    const p = await page(fb);
    await p.goto(`${site.url}#/bench/frames?n=${n}`);
    await p.waitForFunction(() => window.__faultline_frames, null, { timeout: 30000 });
    const r = JSON.parse(await p.evaluate(() => window.__faultline_frames));
    console.log(`BROWSERBENCH|frames ${n}, ${mode}|interval p50 ${r.p50} ms|p95 ${r.p95} ms|p99 ${r.p99} ms|draw p50 ${r.draw_p50} ms|p95 ${r.draw_p95} ms|p99 ${r.draw_p99} ms|${r.frames} frames, ${r.dropped} over 25 ms`);
    await p.close();
  }
  await fb.close();
}
const b = await browser();
{
  // Every scenario's default run in this browser (the trace hash only, as the CLI runs),
  // then each at the seed documents' scale.
  const p = await page(b);
  await p.goto(`${site.url}#/bench/engine`);
  await p.waitForFunction(() => window.__faultline_engine, null, { timeout: 300000 });
  const rows = JSON.parse(await p.evaluate(() => window.__faultline_engine));
  for (const r of rows) {
    console.log(`BROWSERBENCH|engine ${r.label}|${r.events} events in ${r.simulated_s} s|${(r.events_per_s / 1e6).toFixed(2)} M events/s|${r.real_time}× real time|fingerprint ${r.fingerprint}`);
  }
  await p.close();
  // The same at-scale recipes in the player, as a user watches them at 1×: simulated time
  // played per wall second (below 1 the page says it cannot keep up) and frames a second.
  // The player also keeps the trace for its event log, builds a frame and draws it.
  for (const r of rows.filter((r) => r.query)) {
    const q = await page(b);
    await q.goto(`${site.url}#/s/${r.id}?${r.query}`);
    await q.waitForSelector('.clock');
    await q.waitForTimeout(2000);
    const clock = async () => parseFloat(await q.textContent('.clock'));
    const [c0, t0] = [await clock(), Date.now()];
    const fps = await q.evaluate(() => new Promise((done) => {
      let n = 0;
      const start = performance.now();
      const f = () => (++n, performance.now() - start < 5000 ? requestAnimationFrame(f) : done(n / 5));
      requestAnimationFrame(f);
    }));
    const pace = (await clock() - c0) / ((Date.now() - t0) / 1000);
    console.log(`BROWSERBENCH|player ${r.label}|${pace.toFixed(2)}× real time at 1×|${fps.toFixed(1)} fps`);
    await q.close();
  }
}
const paints = [];
for (let i = 0; i < 5; i++) {
  const ctx = await b.newContext({ viewport: { width: 1280, height: 860 } });
  const p = await ctx.newPage();
  await p.goto(`${site.url}#/s/backpressure`);
  await p.waitForFunction(() => window.__faultline_first_frame, null, { timeout: 30000 });
  const fcp = await p.evaluate(() => performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? NaN);
  const first = await p.evaluate(() => window.__faultline_first_frame);
  paints.push([fcp, first]);
  await ctx.close();
}
paints.sort((a, c) => a[1] - c[1]);
const [fcp, first] = paints[2];
console.log(`BROWSERBENCH|load|first paint ${fcp.toFixed(0)} ms|first animated frame ${first.toFixed(0)} ms|median of 5`);
await b.close();
await site.close();
