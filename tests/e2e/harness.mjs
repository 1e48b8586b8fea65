// Shared end-to-end harness: serves the release dist/ on 127.0.0.1, launches Debian's
// Chromium headless through playwright-core, records console errors, keeps screenshots.
import { createServer } from 'node:http';
import { readFile, mkdir } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import { extname, join, normalize, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const root = join(here, '..', '..');
export const dist = join(root, 'dist');
export const artifacts = join(here, 'artifacts');

const types = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript',
  '.css': 'text/css', '.wasm': 'application/wasm', '.png': 'image/png', '.svg': 'image/svg+xml',
  '.json': 'application/json',
};

/** The registry as the native runner lists it: the browser must show the same. */
export function scenarios() {
  return JSON.parse(readFileSync(join(artifacts, 'scenarios.json'), 'utf8'));
}

/** Serves dist/ under a path prefix (to prove the site works below any prefix). */
export async function serve(prefix = '/faultline/') {
  if (!existsSync(join(dist, 'index.html'))) throw new Error('dist/ is missing: run `trunk build --release` first');
  const server = createServer(async (req, res) => {
    let path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    if (!path.startsWith(prefix)) { res.writeHead(404); res.end('outside the prefix'); return; }
    path = path.slice(prefix.length) || 'index.html';
    const file = normalize(join(dist, path));
    if (!file.startsWith(dist)) { res.writeHead(403); res.end(); return; }
    try {
      const body = await readFile(file);
      res.writeHead(200, { 'content-type': types[extname(file)] ?? 'application/octet-stream' });
      res.end(body);
    } catch {
      res.writeHead(404); res.end('not found');
    }
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  const url = `http://127.0.0.1:${server.address().port}${prefix}`;
  return { url, close: () => new Promise((ok) => server.close(ok)) };
}

/** Headless Chromium; `extra` adds flags (the frames bench adds ones that unthrottle frames). */
export async function browser(extra = []) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', ...extra],
    // playwright gives every launch a fresh, empty user-data-dir of its own.
  });
}

const open = [];

/** Closes every page a test opened: a page left playing would slow the next test down. */
export async function closeAll() {
  while (open.length) await open.pop().close().catch(() => {});
}

/** A page that collects console errors and uncaught exceptions into `page.errors`. */
export async function page(b, opts = {}) {
  const ctx = await b.newContext({ viewport: { width: 1280, height: 860 }, ...opts });
  open.push(ctx);
  const p = await ctx.newPage();
  p.errors = [];
  p.on('console', (m) => { if (m.type() === 'error') p.errors.push(m.text()); });
  p.on('pageerror', (e) => p.errors.push(String(e)));
  return p;
}

/** The clock once the run has come to rest: a frame the simulator sent before it heard
 * "pause" may still land after the button says Play, so read the clock when it stops moving. */
export async function settledClock(p) {
  let last = await p.textContent('.clock');
  for (;;) {
    await p.waitForTimeout(250);
    const now = await p.textContent('.clock');
    if (now === last) return now;
    last = now;
  }
}

export async function shot(p, name) {
  await mkdir(artifacts, { recursive: true });
  await p.screenshot({ path: join(artifacts, `${name}.png`), fullPage: false });
}
