// The browser benchmark (run by scripts/bench-web): advclip's wasm package in headless Chromium, CPU path and
// WebGPU, on a ViT-B/32 with seeded random weights (made here, no download) and on the bundled mini CLIP.
// Prints one markdown table, and the same numbers as JSON to <out-dir>/bench-web.json.
//
// Usage: node tests/web/bench.mjs <base-url> <repo-root> <out-dir>   (needs `advclip serve --root <repo-root>`)
// Env: CHROMIUM (default /usr/bin/chromium), BENCH_SECONDS (timing window per row, default 20),
// BENCH_WEBGPU_B32=1 (also time ViT-B/32 on WebGPU: minutes a batch on SwiftShader).

import { execSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const [baseUrl, root, outDir] = process.argv.slice(2);
if (!baseUrl || !root || !outDir) {
  console.error('usage: node tests/web/bench.mjs <base-url> <repo-root> <out-dir>');
  process.exit(2);
}
const SECONDS = Number(process.env.BENCH_SECONDS) || 20;
fs.mkdirSync(outDir, { recursive: true });

// ---- ViT-B/32 weights: every tensor of the Hugging Face layout, seeded uniform values scaled by fan-in. ----
function writeSeededB32(file) {
  const lines = fs.readFileSync(path.join(root, 'tests/fixtures/hf_clip_vit_b32_tensor_names.txt'), 'utf8')
    .split('\n').filter((l) => l && !l.startsWith('#'));
  const tensors = lines.map((l) => {
    const [name, , shape] = l.split('\t');
    return { name, shape: JSON.parse(shape) };
  });
  const header = {};
  let offset = 0;
  for (const t of tensors) {
    const count = t.shape.reduce((a, b) => a * b, 1);
    header[t.name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + 4 * count] };
    offset += 4 * count;
  }
  let json = Buffer.from(JSON.stringify(header));
  json = Buffer.concat([json, Buffer.alloc((8 - (json.length % 8)) % 8, 0x20)]);
  const fd = fs.openSync(file, 'w');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  fs.writeSync(fd, len);
  fs.writeSync(fd, json);
  let state = 0x9e3779b9 >>> 0;
  for (const t of tensors) {
    const count = t.shape.reduce((a, b) => a * b, 1);
    const values = new Float32Array(count);
    let amp = 0.02;
    let base = 0;
    if (t.name === 'logit_scale') [amp, base] = [0, 2.6592];
    else if (t.name.includes('norm') && t.name.endsWith('.weight')) [amp, base] = [0.1, 1];
    else if (t.shape.length >= 2 && !(t.name.includes('embedding') && !t.name.includes('patch_embedding'))) {
      amp = 1 / Math.sqrt(t.shape.slice(1).reduce((a, b) => a * b, 1));
    }
    for (let i = 0; i < count; i++) {
      state = (Math.imul(state, 1664525) + 1013904223) >>> 0; // LCG: fast, seeded, fine for weights
      values[i] = ((state / 4294967296) * 2 - 1) * amp + base;
    }
    fs.writeSync(fd, Buffer.from(values.buffer));
  }
  fs.closeSync(fd);
  return offset;
}

const benchDir = path.join(root, 'pkg', 'bench');
fs.mkdirSync(benchDir, { recursive: true });
const weights = path.join(benchDir, 'vit-b32-seeded.safetensors');
if (!fs.existsSync(weights)) writeSeededB32(weights);
// A page without the app: it imports the package and exposes the Session API to this script.
fs.copyFileSync(path.join(root, 'tests/web/bench-worker.js'), path.join(benchDir, 'bench-worker.js'));
fs.writeFileSync(path.join(benchDir, 'index.html'), '<!doctype html><meta charset="utf-8"><title>advclip bench</title><p>bench</p>\n');
const photos = fs.readdirSync(path.join(root, 'tests/fixtures/images')).filter((f) => f.endsWith('.png'))
  .map((f) => [...fs.readFileSync(path.join(root, 'tests/fixtures/images', f))]);
const scenesDir = process.env.BENCH_SCENES;
const scenes = scenesDir ? fs.readdirSync(scenesDir).filter((f) => f.endsWith('.png')).sort()
  .map((f) => ({ name: f, bytes: [...fs.readFileSync(path.join(scenesDir, f))] })) : [];

// ---- Peak RSS of the largest Chromium process, sampled while the bench runs. ----
let peakRss = 0;
const sampler = setInterval(() => {
  try {
    const out = execSync('ps -C chromium -o rss= 2>/dev/null || true', { encoding: 'utf8' });
    for (const kb of out.split('\n').map(Number).filter(Boolean)) peakRss = Math.max(peakRss, kb * 1024);
  } catch { /* ps missing: no memory column */ }
}, 200);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--enable-unsafe-webgpu'],
});
const rows = [];
const result = { date: new Date().toISOString(), cpu: cpuName(), seconds: SECONDS, rows };
try {
  const page = await browser.newPage();
  page.on('console', (m) => { if (m.type() === 'error') console.error(`[page] ${m.text()}`); });
  await page.goto(`${baseUrl.replace(/\/$/, '')}/pkg/bench/`);
  // Each row runs in a fresh worker with one package (so one row's memory is gone before the next starts).
  await page.evaluate(() => {
    window.inWorker = (pool, code, args) => new Promise((resolve, reject) => {
      const worker = new Worker('/pkg/bench/bench-worker.js', { type: 'module' });
      let started = false;
      worker.onerror = (e) => { worker.terminate(); reject(new Error(e.message || 'the bench worker failed')); };
      worker.onmessage = ({ data }) => {
        if (!data.ok) { worker.terminate(); reject(new Error(data.error)); return; }
        if (!started) { started = true; worker.postMessage({ op: 'run', code, args }); return; }
        worker.terminate();
        resolve(data.result);
      };
      worker.postMessage({ op: 'init', pool });
    });
  });
  const isolated = await page.evaluate(() => self.crossOriginIsolated);
  if (!isolated) throw new Error('the bench page is not cross-origin isolated (COOP/COEP): no threaded CPU path');
  // Runs `snippet` (an async function of `args`) in a worker beside a package with a pool of `pool` threads.
  const inWorker = (pool, snippet, args) =>
    page.evaluate(({ pool, code, args }) => window.inWorker(pool, code, args), { pool, code: snippet.toString(), args });
  const cores = os.cpus().length;

  const bytes = (list) => list.map((b) => new Uint8Array(b));
  // One model on one backend: load, then ms per image at batch 1 and 8, and text ms per prompt.
  const encoder = async (label, backend, pool, source, images, { text = true } = {}) => {
    const r = await inWorker(pool, async ({ backend, source, images, seconds, text }) => {
      const s = await advclip.Session.create(backend);
      const t0 = performance.now();
      // As the page loads a model: the download's stream, loaded as it arrives.
      const config = source.config ? await (await fetch(source.config)).text() : undefined;
      await s.loadModelStream((await fetch(source.weights)).body, undefined, config, source.name);
      const loadMs = performance.now() - t0;
      const imgs = images.map((b) => new Uint8Array(b));
      const labels = ['a photo', 'a drawing'];
      await s.classify([imgs[0]], labels, 'a photo of a {}.', 1); // text encoded once, kept by the session
      const one = await timeIt(() => s.classify([imgs[0]], labels, 'a photo of a {}.', 1), seconds, Math.min(10, seconds));
      const eight = await timeIt(() => s.classify(imgs.slice(0, 8), labels, 'a photo of a {}.', 1), seconds, 2);
      let textMs = null;
      if (text) {
        let n = 0;
        const prompts = await timeIt(async () => {
          n++;
          // Eight fresh labels each call: the text tower runs for all of them, plus one image.
          await s.classify([imgs[0]], Array.from({ length: 8 }, (_, i) => `thing ${n} ${i}`), 'a photo of a {}.', 1);
        }, seconds, 2);
        textMs = (prompts.median - one.median) / 8;
      }
      const adapter = s.adapter();
      s.free();
      return { loadMs, b1: one.median, b8: eight.median / 8, runs: [one.runs, eight.runs], textMs, adapter };
    }, { backend, source, images, seconds: SECONDS, text });
    // The threaded rows name the package the page takes in this browser (www/worker.js): relaxed SIMD or not.
    const variant = r.adapter.includes('relaxed SIMD') ? ', relaxed SIMD' : '';
    rows.push({ label: pool > 1 ? `${label}, ${pool} threads${variant}` : label, ...r });
    console.error(`${label}: load ${r.loadMs.toFixed(0)} ms, ${r.b1.toFixed(1)} ms/img at 1, ${r.b8.toFixed(1)} ms/img at 8${r.textMs == null ? '' : `, text ${r.textMs.toFixed(1)} ms/prompt`}`);
  };

  const b32 = { weights: '/pkg/bench/vit-b32-seeded.safetensors', name: 'ViT-B/32 seeded' };
  const mini = { weights: '/assets/mini-clip/model.safetensors', config: '/assets/mini-clip/config.json', name: 'mini' };
  const eight = [...photos, ...photos, ...photos].slice(0, 8);
  await encoder('ViT-B/32, CPU (wasm)', 'cpu', 1, b32, eight);
  await encoder('ViT-B/32, CPU (wasm)', 'cpu', cores, b32, eight);
  if (process.env.BENCH_WEBGPU_B32 === '1') await encoder('ViT-B/32, WebGPU', 'webgpu', 1, b32, eight);
  const sceneBytes = scenes.length ? scenes.map((s) => s.bytes) : eight;
  await encoder('mini CLIP, CPU (wasm)', 'cpu', cores, mini, sceneBytes.slice(0, 8), { text: false });
  await encoder('mini CLIP, WebGPU', 'webgpu', 1, mini, sceneBytes.slice(0, 8), { text: false });

  // Training steps on the mini CLIP, CPU path, batch 8, the page's defaults otherwise.
  const labels = ['red', 'green', 'blue', 'yellow', 'purple', 'orange']
    .flatMap((c) => ['circle', 'square', 'triangle', 'star', 'heart', 'cross'].map((s) => `${c} ${s}`));
  for (const [mode, pool] of [['targeted', 1], ['targeted', cores], ['advclip', 1], ['advclip', cores]]) {
    const r = await inWorker(pool, async ({ mini, images, labels, mode }) => {
      const s = await advclip.Session.create('cpu');
      await s.loadModelStream((await fetch(mini.weights)).body, undefined, await (await fetch(mini.config)).text(), 'mini');
      const options = { mode, steps: 200, batch: 8, seed: 0 };
      if (mode === 'targeted') options.target = 'green star';
      s.startTraining(options, images.map((b) => new Uint8Array(b)), labels, 'a photo of a {}.');
      const times = [];
      for (let i = 0; i < 4; i++) {
        const t0 = performance.now();
        await s.trainStep();
        times.push(performance.now() - t0);
      }
      s.free();
      return { first: times[0], steady: times.slice(1).sort((a, b) => a - b)[1] };
    }, { mini, images: sceneBytes.slice(0, 24), labels, mode });
    rows.push({ label: `mini CLIP, ${mode} training step, batch 8, CPU (wasm)${pool > 1 ? `, ${pool} threads` : ''}`, stepMs: r.steady, firstStepMs: r.first, defaultRunS: (r.steady * 200) / 1000 });
    console.error(`${mode} step, ${pool} thread(s): ${r.steady.toFixed(0)} ms (first ${r.first.toFixed(0)} ms); 200 steps ≈ ${(r.steady * 0.2).toFixed(0)} s`);
  }

  // The page's default training run (its form's defaults, read from www/index.html) on the 24 scenes, CPU path: the
  // time from Train to the patched labels, and how many of them it changed.
  const html = fs.readFileSync(path.join(root, 'www/index.html'), 'utf8');
  const field = (id) => html.match(new RegExp(`id="${id}"[^>]*value="([^"]*)"`))?.[1];
  const selected = (id) => html.match(new RegExp(`id="${id}"[\\s\\S]*?<option value="([^"]*)" selected`))?.[1];
  const defaults = { mode: selected('train-mode'), steps: Number(field('train-steps')), area: Number(field('train-area')),
    batch: Number(field('train-batch')), seed: Number(field('train-seed')) };
  if (defaults.mode === 'targeted') Object.assign(defaults, { target: field('train-target'), spot: selected('train-placement') });
  const run = await inWorker(cores, async ({ mini, images, labels, options }) => {
    const s = await advclip.Session.create('cpu');
    await s.loadModelStream((await fetch(mini.weights)).body, undefined, await (await fetch(mini.config)).text(), 'mini');
    const imgs = images.map((b) => new Uint8Array(b));
    const clean = (await s.classify(imgs, labels, 'a photo of a {}.', 1)).map((r) => r.clean[0].label);
    const t0 = performance.now();
    s.startTraining(options, imgs, labels, 'a photo of a {}.');
    let last;
    do { last = await s.trainStep(); } while (!last.done);
    const trainedMs = performance.now() - t0;
    const results = await s.classify(imgs, labels, 'a photo of a {}.', 1);
    const totalMs = performance.now() - t0;
    const changed = results.filter((r, i) => r.patched[0].label !== clean[i]).length;
    s.free();
    return { trainedMs, totalMs, changed, images: imgs.length, rate: last.rate };
  }, { mini, images: sceneBytes.slice(0, 24), labels, options: defaults });
  result.defaultRun = { options: defaults, threads: cores, ...run };
  console.error(`default run ${JSON.stringify(defaults)}: ${(run.totalMs / 1000).toFixed(1)} s to patched labels, ${run.changed}/${run.images} changed`);
} finally {
  clearInterval(sampler);
  await browser.close();
}
result.peakRssBytes = peakRss;
fs.writeFileSync(path.join(outDir, 'bench-web.json'), JSON.stringify(result, null, 2));

const ms = (v) => (v == null ? '-' : v.toFixed(v < 10 ? 1 : 0));
console.log(`advclip in the browser: Chromium headless, ${result.cpu}, ${os.cpus().length} cores, ${result.date.slice(0, 10)}`);
console.log('');
console.log('| work | load (ms) | ms/img, batch 1 | ms/img, batch 8 | text ms/prompt | training step (ms) |');
console.log('|---|---:|---:|---:|---:|---:|');
for (const r of rows) {
  console.log(`| ${r.label} | ${ms(r.loadMs)} | ${ms(r.b1)} | ${ms(r.b8)} | ${ms(r.textMs)} | ${ms(r.stepMs)} |`);
}
console.log('');
if (result.defaultRun) {
  const d = result.defaultRun;
  console.log(`the page's default training (${d.options.mode}${d.options.spot ? `, spot ${d.options.spot}` : ''}, ${d.options.steps} steps, area ${d.options.area}, batch ${d.options.batch}) on ${d.images} unseen scenes, CPU path (${d.threads} threads): ${(d.totalMs / 1000).toFixed(1)} s from Train to the patched labels (training ${(d.trainedMs / 1000).toFixed(1)} s); ${d.changed}/${d.images} top labels changed`);
}
console.log(`largest Chromium process, peak RSS over the whole run: ${(peakRss / 2 ** 30).toFixed(2)} GiB`);

function cpuName() {
  const model = os.cpus()[0]?.model ?? 'unknown CPU';
  let flags = '';
  try { flags = fs.readFileSync('/proc/cpuinfo', 'utf8'); } catch { /* not Linux */ }
  const simd = /avx512f/.test(flags) ? 'AVX-512' : /avx2/.test(flags) ? 'AVX2' : 'no AVX2';
  return `${model} (${simd})`;
}
