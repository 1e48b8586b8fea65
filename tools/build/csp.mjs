// Trunk's post-build hook: gives the page a Content-Security-Policy. Scripts come from the site
// itself, plus the page's two inline scripts (the early worker start in index.html and Trunk's
// loader, whose file names change with every build) allowed by their SHA-256, so nothing else
// inline can run. WebAssembly may compile ('wasm-unsafe-eval'); workers come from the site.
import { readFileSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';

const file = join(process.env.TRUNK_STAGING_DIR ?? 'dist', 'index.html');
let html = readFileSync(file, 'utf8');
if (html.includes('http-equiv="Content-Security-Policy"')) process.exit(0);
const hashes = [...html.matchAll(/<script(?![^>]*\bsrc=)[^>]*>([\s\S]*?)<\/script>/g)]
  .map((m) => `'sha256-${createHash('sha256').update(m[1], 'utf8').digest('base64')}'`);
const policy = [
  "default-src 'self'",
  `script-src 'self' 'wasm-unsafe-eval' ${hashes.join(' ')}`,
  "worker-src 'self'",
  // The timeline's markers and bands are placed by style attributes.
  "style-src 'self'",
  "style-src-attr 'unsafe-inline'",
  "img-src 'self' data: blob:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
].join('; ');
const meta = `<meta http-equiv="Content-Security-Policy" content="${policy}">`;
// First in <head>: a policy governs only what the parser meets after it.
html = html.replace(/<head>/, `<head>\n    ${meta}`);
if (!html.includes(meta)) throw new Error(`csp.mjs: no <head> in ${file}`);
writeFileSync(file, html);
console.log(`csp.mjs: ${hashes.length} inline scripts allowed by hash`);
