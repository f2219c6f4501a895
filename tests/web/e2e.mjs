// End-to-end test of the browser page: classify, patch, train and bad input on WebGPU and CPU, in headless Chromium.
//
// Usage: ADVCLIP_E2E_IMAGES=DIR node tests/web/e2e.mjs <base-url> <out-dir>
// DIR holds unseen shape scenes named "<label with _>-NNN.png" (e.g. green_star-003.png). Needs a running
// `advclip serve`. Env: CHROMIUM (browser binary, default /usr/bin/chromium), ADVCLIP_E2E_TIMEOUT_MS (per wait,
// default 300000), ADVCLIP_E2E_BACKENDS (default "webgpu,cpu"). Prints one JSON summary line; exits 1 on any failure.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const [baseUrl, outDir] = process.argv.slice(2);
if (!baseUrl || !outDir) usage('expected <base-url> <out-dir>');
const imageDir = process.env.ADVCLIP_E2E_IMAGES;
if (!imageDir) usage('set ADVCLIP_E2E_IMAGES to a folder of shape scenes named <label>-NNN.png');
const files = fs.readdirSync(imageDir).filter((f) => /\.png$/i.test(f)).sort().map((f) => path.join(imageDir, f));
if (!files.length) usage(`${imageDir} holds no .png files`);
const expectedOf = (file) => path.basename(file).replace(/-\d+\.png$/i, '').replace(/_/g, ' ');
const TIMEOUT = Number(process.env.ADVCLIP_E2E_TIMEOUT_MS) || 300_000;
// Patch training on SwiftShader's WebGPU takes minutes a step; CI trains on the CPU path only (the wasm-bindgen tests
// run training steps on WebGPU).
const TRAIN_BACKENDS = (process.env.ADVCLIP_E2E_TRAIN_BACKENDS || 'webgpu,cpu').split(',').map((s) => s.trim());
const BACKENDS = (process.env.ADVCLIP_E2E_BACKENDS || 'webgpu,cpu').split(',').map((s) => s.trim()).filter(Boolean);
// Thresholds from the bundled model's measured numbers on unseen scenes (README): the mini CLIP gets 93-96 %
// top-1 (chance 2.8 %), and the bundled AdvCLIP patch changes 89-92 % of its predictions
// (on the 24 scenes of seed 1000555 that scripts/test-web uses: 20/24 right, 21/24 changed, on both backends).
const MIN_ACCURACY = Number(process.env.ADVCLIP_E2E_MIN_ACCURACY ?? 0.7);
const MIN_FOOLED = Number(process.env.ADVCLIP_E2E_MIN_FOOLED ?? 0.8);
// The independent reference: top labels the native CLI computed for the same files, clean and wearing the bundled
// AdvCLIP patch ({ "<file name>": { "clean": label, "patched": label } }). The page must agree on nearly all.
const REFERENCE = process.env.ADVCLIP_E2E_REFERENCE ? JSON.parse(fs.readFileSync(process.env.ADVCLIP_E2E_REFERENCE, 'utf8')) : null;
const MIN_AGREEMENT = 0.9;
fs.mkdirSync(outDir, { recursive: true });

function usage(why) {
  console.error(`e2e: ${why}\nusage: ADVCLIP_E2E_IMAGES=DIR node tests/web/e2e.mjs <base-url> <out-dir>`);
  process.exit(2);
}

const failures = [];
const summary = { baseUrl, images: files.length, backends: {} };

// A check that records a failure (and goes on) instead of throwing.
function check(ok, backend, message) {
  const line = `${ok ? 'ok  ' : 'FAIL'} [${backend}] ${message}`;
  console.error(line);
  if (!ok) failures.push(`[${backend}] ${message}`);
  return ok;
}

// Waits for `predicate` in the page; on timeout, fails with `what` plus the page's status and alerts.
async function waitFor(page, what, predicate, arg) {
  try {
    await page.waitForFunction(predicate, arg, { timeout: TIMEOUT, polling: 100 });
  } catch (e) {
    const status = await page.locator('[data-testid=status]').textContent().catch(() => '?');
    const alerts = await page.locator('[role=alert]').allTextContents().catch(() => []);
    throw new Error(`timed out waiting for ${what} (status: "${status}"; alerts: ${JSON.stringify(alerts)}): ${e.message.split('\n')[0]}`);
  }
}

// Waits until `count` results exist and none is pending; returns [{file, clean, patched, state}].
async function settledResults(page, count, what, needPatched = false) {
  await waitFor(page, what, ([n, patched]) => {
    const rs = [...document.querySelectorAll('[data-testid=result]')];
    if (rs.length < n) return false;
    const status = document.querySelector('[data-testid=status]');
    if (status.dataset.state === 'busy') return false;
    return rs.every((r) => r.dataset.state === 'error' || (r.dataset.state === 'done' && (!patched || r.dataset.topPatched)));
  }, [count, needPatched]);
  return page.$$eval('[data-testid=result]', (rs) =>
    rs.map((r) => ({ file: r.dataset.file, clean: r.dataset.topClean, patched: r.dataset.topPatched, state: r.dataset.state })));
}

async function runBackend(browser, backend) {
  const info = (summary.backends[backend] = {});
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  // Chromium reports the worker's console here too.
  page.on('console', (m) => {
    if (m.type() === 'error') console.error(`[page ${backend}] console error: ${m.text()} (${m.location().url || 'page'})`);
  });
  page.on('pageerror', (e) => console.error(`[page ${backend}] uncaught: ${e.message}`));
  try {
    const t0 = Date.now();
    await page.goto(`${baseUrl.replace(/\/$/, '')}/?backend=${backend}`);
    await waitFor(page, 'status "ready" with the bundled model', () => {
      const s = document.querySelector('[data-testid=status]');
      if (s.dataset.state === 'error') return true;
      return s.dataset.state === 'ready' && /ready/.test(s.textContent);
    });
    const status = await page.locator('[data-testid=status]').textContent();
    if (!check(!/^error/.test(status), backend, `page loaded the bundled model (status: "${status}")`)) return;
    info.readyMs = Date.now() - t0;
    const metrics = page.locator('[data-testid=metrics]');
    info.backend = await metrics.getAttribute('data-backend');
    info.adapter = await metrics.getAttribute('data-adapter');
    check(info.backend === backend, backend, `session runs on ${backend} (page says "${info.backend}", adapter "${info.adapter}")`);

    // Clean accuracy on unseen scenes.
    await page.setInputFiles('[data-testid=image-input]', files);
    let results = await settledResults(page, files.length, `${files.length} clean results`);
    info.loadToFirstClassificationMs = Date.now() - t0;
    const byFile = new Map(files.map((f) => [path.basename(f), expectedOf(f)]));
    const right = results.filter((r) => r.clean === byFile.get(r.file)).length;
    info.cleanAccuracy = right / files.length;
    const wrong = results.filter((r) => r.clean !== byFile.get(r.file)).slice(0, 5).map((r) => `${r.file} -> ${r.clean || r.state}`);
    check(info.cleanAccuracy >= MIN_ACCURACY, backend,
      `clean top-1 ${right}/${files.length} = ${pct(info.cleanAccuracy)} >= ${pct(MIN_ACCURACY)}${wrong.length ? ` (e.g. ${wrong.join(', ')})` : ''}`);

    if (REFERENCE) {
      const agree = results.filter((r) => REFERENCE[r.file] && r.clean === REFERENCE[r.file].clean).length;
      info.cleanAgreement = agree / files.length;
      check(info.cleanAgreement >= MIN_AGREEMENT, backend, `clean top-1 equals the native CLI's on ${agree}/${files.length}`);
    }

    // The bundled AdvCLIP patch should flip most of them.
    await page.selectOption('[data-testid=patch-select]', 'advclip');
    await page.check('[data-testid=patch-toggle]');
    results = await settledResults(page, files.length, 'patched results', true);
    // The fooling rate: the share of images whose top label the patch changed.
    const fooled = results.filter((r) => r.patched && r.patched !== r.clean).length;
    info.foolingRate = fooled / files.length;
    check(info.foolingRate >= MIN_FOOLED, backend, `the patch changed the top label of ${fooled}/${files.length} = ${pct(info.foolingRate)} >= ${pct(MIN_FOOLED)}`);
    if (REFERENCE) {
      const agree = results.filter((r) => REFERENCE[r.file] && r.patched === REFERENCE[r.file].patched).length;
      info.patchedAgreement = agree / files.length;
      check(info.patchedAgreement >= MIN_AGREEMENT, backend, `patched top-1 equals the native CLI's on ${agree}/${files.length}`);
    }
    info.msPerImage = Number(await metrics.getAttribute('data-ms-per-image'));

    // Two training steps, with a live plot.
    if (TRAIN_BACKENDS.includes(backend)) {
      await page.fill('[data-testid=train-steps]', '2');
      if (files.length < 8) await page.fill('[data-testid=train-batch]', String(files.length));
      await page.click('[data-testid=train-button]');
      await waitFor(page, 'two plotted training steps and "training done" in the status', () => {
        const points = Number(document.querySelector('[data-testid=train-plot]').dataset.points);
        return points >= 2 && /training done/.test(document.querySelector('[data-testid=status]').textContent);
      });
      info.trainPoints = Number(await page.getAttribute('[data-testid=train-plot]', 'data-points'));
      check(info.trainPoints >= 2, backend, `training plotted ${info.trainPoints} points`);
      info.msPerStep = Number(await metrics.getAttribute('data-ms-per-step'));
      await settledResults(page, files.length, 'results with the trained patch');

      // One targeted step trained for the patch's own spot: the page passes the placement through, and the trained
      // patch's sidecar (read back by the wasm side) says so.
      await page.selectOption('[data-testid=train-mode]', 'targeted');
      await page.selectOption('[data-testid=train-placement]', 'fixed');
      await page.fill('[data-testid=train-steps]', '1');
      await page.click('[data-testid=train-button]');
      await waitFor(page, 'a one-step targeted patch trained for its spot', () =>
        /this spot only/.test(document.querySelector('[data-testid=patch-info]').textContent));
      const described = await page.textContent('[data-testid=patch-info]');
      check(/^targeted patch.*target “green star”, trained for this spot only/.test(described), backend,
        `a targeted patch trained with placement "fixed" is described as such ("${described}")`);
      await page.selectOption('[data-testid=train-mode]', 'advclip');
      await settledResults(page, files.length, 'results with the targeted patch');
    }
    const shot = path.join(outDir, `page-${backend}.png`);
    await page.screenshot({ path: shot, fullPage: true });
    info.screenshot = shot;

    // A text file named .png: a visible alert, and the page still classifies a valid upload afterwards.
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'advclip-e2e-'));
    const bad = path.join(tmp, 'not-an-image.png');
    fs.writeFileSync(bad, 'this is a text file, not a picture\n');
    await page.setInputFiles('[data-testid=image-input]', bad);
    const alert = page.locator('[role=alert]', { hasText: 'not-an-image.png' });
    const shown = await alert.first().waitFor({ state: 'visible', timeout: 30_000 }).then(() => true, () => false);
    check(shown, backend, 'a text file named .png shows a visible alert');
    await page.setInputFiles('[data-testid=image-input]', files[0]);
    results = await settledResults(page, files.length + 1, 'the valid upload after the bad one');
    const last = results.at(-1);
    check(results.length === files.length + 1 && last.state === 'done' && Boolean(last.clean), backend,
      `a valid upload after the bad file is classified (${last.file} -> "${last.clean}")`);
    if (backend === 'cpu') await otherBadInputs(page, backend, tmp, results.length);
  } catch (e) {
    check(false, backend, e.message);
    await page.screenshot({ path: path.join(outDir, `page-${backend}-failed.png`), fullPage: true }).catch(() => {});
  } finally {
    await context.close();
  }
}

// A corrupt safetensors, a patch PNG with a sidecar of another size, an unreachable model URL: each shows an alert
// naming the problem, and the page still classifies afterwards with the model it had.
async function otherBadInputs(page, backend, tmp, before) {
  const expectAlert = async (what, pattern) => {
    const shown = await page.locator('[role=alert]', { hasText: pattern }).first()
      .waitFor({ state: 'visible', timeout: 60_000 }).then(() => true, () => false);
    check(shown, backend, `${what} shows a visible alert`);
  };
  const corrupt = path.join(tmp, 'corrupt.safetensors');
  fs.writeFileSync(corrupt, Buffer.from('\x10\x00\x00\x00\x00\x00\x00\x00{"broken": tru'));
  await page.selectOption('[data-testid=model-select]', 'file');
  await page.setInputFiles('[data-testid=model-file]', corrupt);
  await expectAlert('a corrupt safetensors file', /safetensors|header|weights|corrupt/i);

  const png = path.join(tmp, 'wrong.png');
  const json = path.join(tmp, 'wrong.json');
  fs.copyFileSync(files[0], png); // a 64x64 scene, while the sidecar below says an 11 px patch
  fs.writeFileSync(json, JSON.stringify({ mode: 'advclip', model: 'x', image_size: 64, area_fraction: 0.03,
    placement: { image_size: 64, size: 11, top: 49, left: 49 }, seed: 0, steps: 1, metrics: {} }));
  await page.setInputFiles('[data-testid=patch-input]', [png, json]);
  await expectAlert('a patch PNG that does not match its sidecar', /patch|sidecar|belong/i);

  await page.selectOption('[data-testid=model-select]', 'url');
  await page.fill('[data-testid=model-url]', 'http://127.0.0.1:9/model.safetensors');
  await page.click('#model-url-load');
  await expectAlert('an unreachable model URL', /127\.0\.0\.1:9|download|fetch|https|url/i);

  await page.setInputFiles('[data-testid=image-input]', files[1]);
  const results = await settledResults(page, before + 1, 'a classification after the bad inputs');
  const last = results.at(-1);
  check(last.state === 'done' && Boolean(last.clean), backend, `the page still classifies after them (${last.file} -> "${last.clean}")`);
}

const pct = (x) => `${(100 * x).toFixed(0)} %`;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--enable-unsafe-webgpu'],
});
try {
  for (const backend of BACKENDS) await runBackend(browser, backend);
} finally {
  await browser.close();
}
summary.ok = failures.length === 0;
summary.failures = failures;
console.log(JSON.stringify(summary));
if (failures.length) {
  console.error(`e2e: ${failures.length} check(s) failed:\n  ${failures.join('\n  ')}`);
  process.exit(1);
}
