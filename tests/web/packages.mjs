// Every CPU package the page can load matches the reference: the single-threaded build, the threaded one and its
// relaxed-SIMD variant (own matrix kernel, fused multiply-adds) classify the fixture images with the tiny CLIP to the
// transformers reference's probabilities within 1e-4, as `advclip classify` does (tests/cli.rs), in headless
// Chromium. Five images go as one batch (cut into slices across the pool) and one alone (rows in bands).
//
// Usage: node tests/web/packages.mjs <base-url> <repo-root>   (needs `advclip serve`: a cross-origin isolated page)
// Env: CHROMIUM (default /usr/bin/chromium).

import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const [baseUrl, root] = process.argv.slice(2);
if (!baseUrl || !root) {
  console.error('usage: node tests/web/packages.mjs <base-url> <repo-root>');
  process.exit(2);
}
const base = baseUrl.replace(/\/$/, '');
const fixtures = path.join(root, 'tests/fixtures');

// The reference's tensors (safetensors: an 8-byte header length, a JSON header, then the data).
function readSafetensors(file) {
  const bytes = fs.readFileSync(file);
  const headerLen = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLen).toString('utf8'));
  const start = 8 + headerLen;
  const out = {};
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__' || t.dtype !== 'F32') continue;
    const [from, to] = t.data_offsets;
    out[name] = Array.from(new Float32Array(bytes.buffer.slice(bytes.byteOffset + start + from, bytes.byteOffset + start + to)));
  }
  return out;
}

const reference = readSafetensors(path.join(fixtures, 'tiny/reference.safetensors'));
const names = fs.readdirSync(path.join(fixtures, 'images')).filter((n) => n.endsWith('.png')).sort();
// The fixtures reach the worker over HTTP (routed by Playwright below): a 6.7 MB file passed as a JS array through
// page.evaluate and postMessage took most of a minute per package.
const fixtureFiles = { model: 'tiny/model.safetensors', ...Object.fromEntries(names.map((n) => [n, `images/${n}`])) };
const config = fs.readFileSync(path.join(fixtures, 'tiny/config.json'), 'utf8');
const labels = ['cat', 'dog', 'red square'];

let failures = 0;
const check = (ok, what) => {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) failures += 1;
};

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: ['--no-sandbox'] });
try {
  const context = await browser.newContext();
  await context.route(`${base}/__fixtures/**`, (route) => {
    const name = decodeURIComponent(new URL(route.request().url()).pathname.replace('/__fixtures/', ''));
    const file = fixtureFiles[name];
    if (file) route.fulfill({ status: 200, body: fs.readFileSync(path.join(fixtures, file)) });
    else route.fulfill({ status: 404 });
  });
  const page = await context.newPage();
  await page.route('**/favicon.ico', (route) => route.fulfill({ status: 204 })); // no 404 in the log
  page.on('console', (m) => { if (m.type() === 'error') console.error(`[page] ${m.text()}`); });
  await page.goto(`${base}/wasm-features.js`); // any page of the origin: advclip serve isolates every response
  check(await page.evaluate(() => self.crossOriginIsolated), 'the page is cross-origin isolated (COOP/COEP)');
  const relaxed = await page.evaluate(async () => (await import('/wasm-features.js')).relaxedSimd());
  // Chromium has relaxed SIMD (since 114), so this browser must take the variant.
  check(relaxed, 'relaxedSimd() finds relaxed SIMD in Chromium');

  const packages = [
    { url: '/pkg/advclip.js', pool: 1 },
    { url: '/pkg/threads/advclip.js', pool: 2 },
    { url: '/pkg/threads-relaxed/advclip.js', pool: 2 },
  ];
  for (const { url, pool } of packages) {
    // build-web leaves the threaded packages out without rust-src (it warns then), as the e2e test allows.
    if (pool > 1 && !(await page.request.head(base + url)).ok()) {
      console.log(`skip ${url}: not built (see build-web's warning about rust-src)`);
      continue;
    }
    const result = await page.evaluate(async ({ url, pool, base, config, names, labels }) => {
      // A module worker per package (a pool thread blocks, which the page's main thread may not).
      const code = `
        const bytes = async (url) => {
          const r = await fetch(url);
          if (!r.ok) throw new Error(url + ': HTTP ' + r.status);
          return new Uint8Array(await r.arrayBuffer());
        };
        self.onmessage = async ({ data: { url, pool, base, config, names, labels } }) => {
          try {
            const weights = await bytes(base + '/__fixtures/model');
            const imgs = await Promise.all(names.map((n) => bytes(base + '/__fixtures/' + encodeURIComponent(n))));
            const mod = await import(url);
            await mod.default();
            if (pool > 1) await mod.initThreadPool(pool);
            const s = await mod.Session.create('cpu');
            await s.loadModel(weights, config, 'tiny');
            const batch = await s.classify(imgs, labels, 'a photo of a {}.', labels.length);
            const alone = await s.classify([imgs[0]], labels, 'a photo of a {}.', labels.length);
            postMessage({ ok: true, adapter: s.adapter(), batch, alone });
          } catch (e) {
            postMessage({ ok: false, error: String(e?.stack ?? e) });
          }
        };`;
      const worker = new Worker(URL.createObjectURL(new Blob([code], { type: 'text/javascript' })), { type: 'module' });
      return await new Promise((resolve) => {
        worker.onerror = (e) => resolve({ ok: false, error: e.message || 'the worker failed' });
        worker.onmessage = ({ data }) => { worker.terminate(); resolve(data); };
        worker.postMessage({ url: base + url, pool, base, config, names, labels });
      });
    }, { url, pool, base, config, names, labels });
    if (!result.ok) {
      check(false, `${url}: ${result.error}`);
      continue;
    }
    const probs = (ranked) => labels.map((l) => ranked.clean.find((r) => r.label === l).probability);
    const rows = [...result.batch.map((r, i) => [names[i], r, 'batch of 5']), [names[0], result.alone[0], 'alone']];
    let worst = 0;
    for (const [name, ranked, how] of rows) {
      const expected = reference[`file.${name.replace(/\.png$/, '')}.probs`];
      const got = probs(ranked);
      const diff = Math.max(...got.map((p, i) => Math.abs(p - expected[i])));
      worst = Math.max(worst, diff);
      if (diff > 1e-4) check(false, `${url} (${result.adapter}): ${name}, ${how}: probabilities ${got} against ${expected}`);
    }
    check(worst <= 1e-4, `${url} (${result.adapter}): ${rows.length} classifications within 1e-4 of the reference (worst ${worst.toExponential(1)})`);
  }
} finally {
  await browser.close();
}
if (failures) {
  console.error(`${failures} package check(s) failed`);
  process.exit(1);
}
