// Browser benchmarks on the release build in headless Chromium: frame times of the renderer
// with 1k/5k/20k messages in flight (at vsync and unthrottled), every scenario's run in the
// browser (as it starts and at scale), the at-scale runs in the player (pace and frames a
// second), a page left playing for minutes (its heap), and time to first paint / first
// animated frame.
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
// A page left playing (#28, long play): the heaviest default runs at 0.1× for a few minutes
// (FAULTLINE_SOAK_S, 180 s by default), the page's JavaScript heap and DOM sampled every 15 s
// through the DevTools protocol. Flat means the heap at the end is within a few MB of where it
// stood a minute in (the first minute fills the caches, charts and log); growth is reported.
const soakS = Number(process.env.FAULTLINE_SOAK_S ?? 180);
for (const id of ['load-balancing', 'log-pipeline']) {
  const q = await page(b);
  const cdp = await q.context().newCDPSession(q);
  await cdp.send('Performance.enable');
  // The page's own WebAssembly memory (it only grows): Trunk hands over the instance.
  await q.addInitScript(() => addEventListener('TrunkApplicationStarted', (e) => { window.__wasm = e.detail.wasm; }));
  await q.goto(`${site.url}#/s/${id}`);
  await q.waitForSelector('.play');
  await q.keyboard.press('1');
  if (!(await q.textContent('.play')).includes('Pause')) await q.keyboard.press(' ');
  const samples = [];
  for (let t = 0; t <= soakS; t += 15) {
    if (t > 0) await q.waitForTimeout(15000);
    await cdp.send('HeapProfiler.collectGarbage').catch(() => {});
    const m = Object.fromEntries((await cdp.send('Performance.getMetrics')).metrics.map((x) => [x.name, x.value]));
    const wasm = await q.evaluate(() => window.__wasm?.memory?.buffer.byteLength ?? NaN) / 2 ** 20;
    samples.push({ t, heap: m.JSHeapUsedSize / 2 ** 20, wasm, nodes: m.Nodes, clock: parseFloat(await q.textContent('.clock')) });
  }
  const at60 = samples.find((x) => x.t >= 60) ?? samples[0];
  const last = samples[samples.length - 1];
  const peak = Math.max(...samples.map((x) => x.heap));
  console.log(`BROWSERBENCH|soak ${id}, 0.1× for ${soakS} s|JS heap ${samples[0].heap.toFixed(1)} → ${at60.heap.toFixed(1)} (1 min) → ${last.heap.toFixed(1)} MB, peak ${peak.toFixed(1)}|growth after the first minute ${(last.heap - at60.heap).toFixed(1)} MB|page WebAssembly memory ${samples[0].wasm.toFixed(1)} → ${last.wasm.toFixed(1)} MB|DOM nodes ${at60.nodes} → ${last.nodes}|played to ${last.clock.toFixed(1)} s`);
  await q.close();
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
