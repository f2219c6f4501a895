// The page's main thread: wires the controls to the model worker, shows results, trains and places patches.

import { startWorker } from './worker-client.js';
import { fetchBytes, forget } from './download.js';
import { PRESETS, SHAPE_LABELS, parseLabels } from './labels.js';
import { drawPlot } from './plot.js';
import { setupDrawing, PALETTE } from './drawing.js';
import { resultCard, renderPrediction, pct } from './results.js';
import { createWebcam } from './webcam.js';

const $ = (id) => document.getElementById(id);
const TOP_K = 3;
const CHUNK = 8; // images per classify call, so that results appear progressively
const BUNDLED_MODEL = { weights: '../assets/mini-clip/model.safetensors', config: '../assets/mini-clip/config.json' };
const BUNDLED_PATCHES = {
  advclip: { name: 'AdvCLIP (bundled)', base: '../assets/patches/advclip' },
  'targeted-green-star': { name: 'targeted green star (bundled)', base: '../assets/patches/targeted-green-star' },
};

const state = {
  client: null,
  backend: '', adapter: '',
  model: null, // what loadModel answered, plus `kind`
  source: null, // how to load the model again: { kind: 'bundled' } | { kind: 'url', url } | { kind: 'file', weights, config }
  images: [], // { id, name, bytes, url, el }
  patches: new Map(), // select value -> { name, png, json } for patches from files and training
  patch: null, // the loaded patch: { key, name, png, json, info, url }
  training: null, // { stop, points, steps }
  generation: 0, // bumped to cancel classification runs whose results are no longer wanted
  modelToken: 0,
  labelsEdited: false,
  note: '',
  busy: new Map(),
  metrics: {},
};
let nextImageId = 1;

// ---- status, alerts, metrics ----

function refreshStatus(text, kind) {
  const el = $('status');
  const tasks = [...state.busy.values()];
  if (text) [el.textContent, el.dataset.state] = [text, kind];
  else if (tasks.length) [el.textContent, el.dataset.state] = [tasks.at(-1), 'busy'];
  else if (!state.model) return;
  else [el.textContent, el.dataset.state] = [state.note ? `ready · ${state.note}` : 'ready', 'ready'];
}

// Runs `fn` with `text` in the status line; errors become alerts unless `quiet(e)` says they are stale.
let nextTask = 1;
async function task(text, fn, quiet = () => false) {
  const id = nextTask++;
  state.busy.set(id, text);
  refreshStatus();
  try {
    return await fn((t) => (state.busy.set(id, t), refreshStatus()));
  } catch (e) {
    if (!quiet(e)) showAlert(e.message);
    return undefined;
  } finally {
    state.busy.delete(id);
    refreshStatus();
  }
}

function showAlert(message) {
  const box = document.createElement('div');
  box.className = 'alert';
  box.setAttribute('role', 'alert');
  const text = document.createElement('span');
  text.textContent = message;
  const close = document.createElement('button');
  close.type = 'button';
  close.textContent = 'Dismiss';
  close.setAttribute('aria-label', 'Dismiss this message');
  close.addEventListener('click', () => box.remove());
  box.append(text, close);
  $('alerts').append(box);
  while ($('alerts').children.length > 5) $('alerts').firstElementChild.remove();
}

// Merges `updates` into the shown metrics; the numbers are also data-* attributes for tests and scripts.
function setMetrics(updates = {}) {
  const m = Object.assign(state.metrics, updates);
  const el = $('metrics');
  const parts = [];
  if (state.backend) parts.push(`backend ${state.backend} (${state.adapter})`);
  if (m.loadMs != null) parts.push(`model loaded in ${seconds(m.loadMs)}`);
  if (m.msPerImage != null) parts.push(`${m.msPerImage.toFixed(1)} ms per image`);
  if (m.msPerStep != null) parts.push(`${m.msPerStep.toFixed(0)} ms per training step`);
  el.textContent = parts.join(' · ');
  el.dataset.backend = state.backend;
  el.dataset.adapter = state.adapter;
  for (const k of ['loadMs', 'msPerImage', 'msPerStep']) if (m[k] != null) el.dataset[k] = m[k].toFixed(2);
}

const seconds = (ms) => (ms < 1000 ? `${ms.toFixed(0)} ms` : `${(ms / 1000).toFixed(1)} s`);
const call = (op, args, transfer) => state.client.call(op, args, transfer);

// ---- backend and model ----

async function startSession() {
  state.client?.terminate();
  state.generation++;
  state.client = startWorker();
  state.backend = state.adapter = '';
  const backend = $('backend-select').value;
  const { result } = await call('create', { backend });
  [state.backend, state.adapter] = [result.backend, result.adapter];
  setMetrics();
}

// Reads the bytes of a model source: { weights: Uint8Array, config: string | undefined, name, cacheKey }.
async function readSource(source, setText) {
  const progress = (loaded, total) => {
    $('download-row').hidden = false;
    $('download-progress').value = total ? Math.min(loaded / total, 1) : 0;
    if (!total) $('download-progress').removeAttribute('value');
    $('download-text').textContent = `${(loaded / 1e6).toFixed(1)}${total ? ` of ${(total / 1e6).toFixed(1)}` : ''} MB`;
    setText(`downloading the model… ${total ? pct(Math.min(loaded / total, 1)) : `${(loaded / 1e6).toFixed(0)} MB`}`);
  };
  if (source.kind === 'bundled') {
    const { bytes } = await fetchBytes(BUNDLED_MODEL.weights, { cache: false });
    const { bytes: config } = await fetchBytes(BUNDLED_MODEL.config, { cache: false });
    return { weights: bytes, config: new TextDecoder().decode(config), name: 'mini-clip (bundled)' };
  }
  if (source.kind === 'url') {
    const url = new URL(source.url, location.href).href;
    if (new URL(url).protocol !== 'https:' && new URL(url).origin !== location.origin) {
      throw new Error(`${url}: only https:// addresses (or this site) can be downloaded from`);
    }
    const configUrl = new URL('config.json', url).href;
    let config;
    try {
      config = new TextDecoder().decode((await fetchBytes(configUrl)).bytes);
    } catch {
      config = undefined; // no config beside the weights: the model infers it from tensor shapes
    }
    const { bytes, cached } = await fetchBytes(url, { onProgress: progress });
    $('download-text').textContent += cached ? ' (from the cache)' : ' (saved in the cache)';
    return { weights: bytes, config, name: url, cacheKey: url };
  }
  const weights = new Uint8Array(await source.weights.arrayBuffer());
  const config = source.config ? await source.config.text() : undefined;
  return { weights, config, name: source.weights.name };
}

// Loads `source` into the session (starting one first when `fresh`), then puts the patch back on.
async function loadModel(source, { fresh = false } = {}) {
  const token = ++state.modelToken;
  state.generation++;
  $('download-row').hidden = true;
  await task('loading model…', async (setText) => {
    try {
      if (fresh || !state.client) {
        state.model = null; // the old session, and the model in it, are gone
        await startSession();
      }
      const { weights, config, name, cacheKey } = await readSource(source, setText);
      setText('loading model…');
      let answer;
      try {
        answer = await call('loadModel', { weights, config, name }, [weights.buffer]);
      } catch (e) {
        if (cacheKey) await forget(cacheKey); // do not keep a download that is not a model
        throw e;
      }
      if (token !== state.modelToken) return;
      state.model = { ...answer.result, kind: source.kind };
      state.source = source;
      setMetrics({ loadMs: answer.ms });
      showModelInfo();
      defaultLabels();
      await reapplyPatch();
      state.note = '';
      scheduleClassify(0);
    } catch (e) {
      if (token === state.modelToken && !state.model) refreshStatus(`error: ${e.message}`, 'error');
      throw new Error(`model: ${e.message}`);
    }
  }, () => token !== state.modelToken);
}

function showModelInfo() {
  const m = state.model;
  const n = Number(m.parameters);
  const params = n >= 1e6 ? `${(n / 1e6).toFixed(1)} M` : String(n);
  $('model-info').textContent = `Loaded: ${m.name} · ${m.imageSize} px input · ${params} parameters · fingerprint ${m.fingerprint}`;
  $('drawing-panel').hidden = m.kind !== 'bundled';
  $('metrics').dataset.model = m.name;
}

function defaultLabels() {
  if (state.labelsEdited) return;
  setLabels(state.model.kind === 'bundled' ? SHAPE_LABELS : PRESETS.animals.labels, false);
}

function setLabels(list, edited) {
  $('labels').value = list.join(', ');
  state.labelsEdited = edited;
  labelsChanged(0);
}

// ---- labels ----

let classifyTimer = 0;
function scheduleClassify(delay) {
  clearTimeout(classifyTimer);
  classifyTimer = setTimeout(classifyAll, delay);
}

function labelsChanged(delay) {
  const labels = parseLabels($('labels').value);
  $('label-list').replaceChildren(...labels.map((l) => Object.assign(document.createElement('option'), { value: l })));
  scheduleClassify(delay);
}

// The labels and template, or null (with a hint shown) when they cannot be used.
function prompts() {
  const labels = parseLabels($('labels').value);
  const template = $('template').value;
  const problem = !labels.length ? 'Add at least one label.' : !template.includes('{}') ? 'The template needs a {} where the label goes.' : '';
  $('labels-hint').textContent = problem;
  $('labels-hint').hidden = !problem;
  return problem ? null : { labels, template };
}

// ---- images ----

async function addFiles(files) {
  const added = [];
  for (const file of files) {
    if (!file.type.startsWith('image/') && !/\.(png|jpe?g|webp|gif|bmp)$/i.test(file.name)) {
      showAlert(`${file.name}: not an image file`);
      continue;
    }
    const bytes = new Uint8Array(await file.arrayBuffer());
    try {
      (await createImageBitmap(new Blob([bytes], { type: file.type || 'image/png' }))).close();
    } catch {
      showAlert(`${file.name}: not a readable image (the file is damaged or is not really a picture)`);
      continue;
    }
    const item = { id: nextImageId++, name: file.name || 'pasted image', bytes, url: URL.createObjectURL(file) };
    item.el = resultElement(item);
    state.images.push(item);
    added.push(item);
  }
  $('results-empty').hidden = state.images.length > 0;
  updateStage();
  if (added.length) classifyItems(added);
}

function removeImage(item) {
  state.images = state.images.filter((i) => i !== item);
  item.el.remove();
  URL.revokeObjectURL(item.url);
  $('results-empty').hidden = state.images.length > 0;
  updateStage();
}

function resultElement(item) {
  const el = resultCard(item, { onRemove: () => removeImage(item), onWear: () => downloadPatched(item) });
  el.querySelector('.wear').hidden = !state.patch;
  $('results').append(el);
  placeOverlay(el.querySelector('.overlay'));
  return el;
}

function showResult(item, r) {
  const { clean, patched, flipped } = renderPrediction(item.el.querySelector('.result-body'), r);
  Object.assign(item.el.dataset, { topClean: clean, topPatched: patched, state: 'done' });
  item.el.classList.toggle('flipped', flipped);
}

function classifyAll() {
  state.generation++;
  if (state.images.length) classifyItems(state.images.slice());
}

// Classifies `items` in chunks; a chunk that fails is retried image by image, so one bad file does not hide the rest.
async function classifyItems(items) {
  const gen = state.generation;
  const p = prompts();
  if (!state.model || state.training || !p) return;
  for (const item of items) item.el.dataset.state = 'pending';
  const stale = () => gen !== state.generation;
  await task('classifying…', async (setText) => {
    let [ms, count] = [0, 0];
    for (let i = 0; i < items.length && !stale(); i += CHUNK) {
      const chunk = items.slice(i, i + CHUNK).filter((it) => state.images.includes(it));
      if (items.length > CHUNK) setText(`classifying… ${i} of ${items.length}`);
      try {
        const answer = await classifyBytes(chunk, p);
        if (stale()) return;
        chunk.forEach((it, j) => showResult(it, answer.result[j]));
        [ms, count] = [ms + answer.ms, count + chunk.length];
      } catch (e) {
        if (stale()) return;
        if (chunk.length === 1) throw failed(chunk[0], e);
        const errors = new Set();
        for (const it of chunk) {
          try {
            const answer = await classifyBytes([it], p);
            if (stale()) return;
            showResult(it, answer.result[0]);
          } catch (e2) {
            if (stale()) return;
            errors.add(failed(it, e2).message);
          }
        }
        errors.forEach(showAlert);
      }
    }
    if (count && !stale()) setMetrics({ msPerImage: ms / count });
  }, stale);
}

function classifyBytes(items, { labels, template }) {
  const images = items.map((it) => it.bytes.slice());
  return call('classify', { images, labels, template, topK: TOP_K }, images.map((b) => b.buffer));
}

// The image as the model sees it (resized and cropped), wearing the patch.
async function downloadPatched(item) {
  if (!state.patch) return showAlert('choose a patch first');
  await task('applying the patch…', async () => {
    const image = item.bytes.slice();
    const { result } = await call('applyPatch', { image }, [image.buffer]);
    save(result, `${item.name.replace(/\.[^.]+$/, '')}-patched.png`, 'image/png');
  });
}

function failed(item, e) {
  item.el.dataset.state = 'error';
  item.el.querySelector('.result-body').textContent = `Could not classify: ${e.message}`;
  return new Error(`${item.name}: ${e.message}`);
}

// ---- patches ----

async function choosePatch(key, wasOn) {
  await task('loading patch…', async () => {
    try {
      if (key === 'none') {
        if (state.model) await call('clearPatch');
        setPatch(null);
      } else {
        let p = state.patches.get(key);
        if (!p) {
          const { name, base } = BUNDLED_PATCHES[key];
          const [png, json] = await Promise.all([fetchBytes(`${base}.png`, { cache: false }), fetchBytes(`${base}.json`, { cache: false })]);
          p = { name, file: key, png: png.bytes, json: new TextDecoder().decode(json.bytes) };
        }
        await usePatch(key, p);
      }
    } catch (e) {
      $('patch-select').value = state.patch?.key ?? 'none';
      $('patch-toggle').checked = Boolean(state.patch) && wasOn;
      throw new Error(`patch: ${e.message}`);
    }
    classifyAll();
  });
}

// Loads a patch into the session and makes it the page's patch.
async function usePatch(key, p) {
  if (!state.model) throw new Error('load a model first');
  const png = p.png.slice();
  const { result: info } = await call('loadPatch', { png, json: p.json }, [png.buffer]);
  await call('setPatchEnabled', { enabled: $('patch-toggle').checked });
  setPatch({ key, ...p, info });
}

// After a model or backend change: the new session gets the patch again, or the page drops it if it does not fit.
async function reapplyPatch() {
  if (!state.patch) return;
  const { key, info } = state.patch;
  try {
    await usePatch(key, state.patch);
    if (info.top !== state.patch.info.top || info.left !== state.patch.info.left) await movePatch(info.top, info.left, false);
  } catch (e) {
    setPatch(null);
    showAlert(`the patch does not fit this model and was removed: ${e.message}`);
  }
}

// What a targeted patch's training placement means for where it works (sidecar metrics.trained_placement).
const PLACEMENT_NOTE = new Map([
  ['fixed', ', trained for this spot only: moved elsewhere it is much weaker'],
  ['random', ', trained for any spot, scaled and rotated'],
]);

function setPatch(p) {
  if (state.patch?.url) URL.revokeObjectURL(state.patch.url);
  state.patch = p;
  if (p) p.url = URL.createObjectURL(new Blob([p.png], { type: 'image/png' }));
  $('patch-select').value = p?.key ?? 'none';
  if (!p) $('patch-toggle').checked = false;
  const i = p?.info;
  $('patch-info').textContent = i
    ? `${i.mode} patch, ${i.size}×${i.size} px on a ${i.imageSize} px input (${pct(i.areaFraction)} of the image)${i.target ? `, target “${i.target}”` : ''}${PLACEMENT_NOTE.get(i.trainedPlacement) ?? ''}`
    : '';
  for (const id of ['download-png', 'download-json', 'print-sheet']) $(id).disabled = !p;
  $('placement-box').hidden = !p;
  $('stage-patch-img').src = p?.url ?? '';
  updateStage();
}

async function loadPatchFiles(files) {
  const list = [...files];
  const pngs = list.filter((f) => /\.png$/i.test(f.name) || f.type === 'image/png');
  const jsons = list.filter((f) => /\.json$/i.test(f.name));
  await task('loading patch…', async () => {
    try {
      if (pngs.length !== 1) throw new Error(`select one patch PNG and its .json sidecar together (got ${pngs.length} PNG files)`);
      const stem = pngs[0].name.replace(/\.png$/i, '');
      const sidecar = jsons.find((f) => f.name.replace(/\.json$/i, '') === stem) ?? (jsons.length === 1 ? jsons[0] : null);
      if (!sidecar) throw new Error(`${pngs[0].name}: its sidecar ${stem}.json is missing; select both files`);
      const key = `file:${pngs[0].name}`;
      const p = { name: pngs[0].name, file: stem, png: new Uint8Array(await pngs[0].arrayBuffer()), json: await sidecar.text() };
      $('patch-toggle').checked = true;
      await usePatch(key, p);
      rememberPatch(key, p);
    } catch (e) {
      throw new Error(`patch file: ${e.message}`);
    }
    classifyAll();
  });
}

function rememberPatch(key, p) {
  state.patches.set(key, p);
  let option = [...$('patch-select').options].find((o) => o.value === key);
  if (!option) $('patch-select').append((option = new Option(p.name, key)));
  option.textContent = p.name;
  $('patch-select').value = key;
}

async function setPatchEnabled(enabled) {
  if (!state.patch) {
    $('patch-toggle').checked = false;
    if (enabled) showAlert('choose a patch first');
    return;
  }
  await task('updating patch…', () => call('setPatchEnabled', { enabled }));
  updateStage();
  classifyAll();
}

// ---- placing the patch ----

const stageState = { dragging: null, commitTimer: 0 };

function updateStage() {
  const p = state.patch;
  const first = state.images[0];
  $('stage-image').hidden = !first;
  if (first) $('stage-image').src = first.url;
  if (p) {
    const { size, imageSize, top, left } = p.info;
    const handle = $('stage-patch');
    Object.assign(handle.style, {
      width: `${(100 * size) / imageSize}%`,
      height: `${(100 * size) / imageSize}%`,
      top: `${(100 * top) / imageSize}%`,
      left: `${(100 * left) / imageSize}%`,
    });
    handle.setAttribute('aria-valuetext', `top ${top} px, left ${left} px`);
    handle.setAttribute('aria-valuenow', String(left));
    handle.setAttribute('aria-valuemin', '0');
    handle.setAttribute('aria-valuemax', String(imageSize - size));
    for (const [id, v] of [['patch-top', top], ['patch-left', left]]) {
      $(id).max = String(imageSize - size);
      if (document.activeElement !== $(id)) $(id).value = String(v);
    }
  }
  document.querySelectorAll('.result .overlay').forEach(placeOverlay);
  document.querySelectorAll('.result .wear').forEach((b) => (b.hidden = !p));
}

function placeOverlay(overlay) {
  const p = state.patch;
  const show = Boolean(p && $('patch-toggle').checked);
  overlay.hidden = !show;
  if (!show) return;
  if (overlay.src !== p.url) overlay.src = p.url;
  const { size, imageSize, top, left } = p.info;
  Object.assign(overlay.style, {
    width: `${(100 * size) / imageSize}%`,
    top: `${(100 * top) / imageSize}%`,
    left: `${(100 * left) / imageSize}%`,
  });
}

// Moves the patch (model pixels, clamped); `commit` tells the session and reclassifies shortly after.
async function movePatch(top, left, commit = true) {
  const i = state.patch?.info;
  if (!i) return;
  const max = i.imageSize - i.size;
  i.top = Math.max(0, Math.min(max, Math.round(top)));
  i.left = Math.max(0, Math.min(max, Math.round(left)));
  updateStage();
  if (!commit) {
    await call('setPatchPosition', { top: i.top, left: i.left });
    return;
  }
  clearTimeout(stageState.commitTimer);
  stageState.commitTimer = setTimeout(async () => {
    await task('moving patch…', () => call('setPatchPosition', { top: i.top, left: i.left }));
    classifyAll();
  }, 250);
}

function setupStage() {
  const handle = $('stage-patch');
  const stage = $('stage');
  handle.addEventListener('pointerdown', (e) => {
    if (!state.patch) return;
    handle.setPointerCapture(e.pointerId);
    const { top, left } = state.patch.info;
    stageState.dragging = { x: e.clientX, y: e.clientY, top, left };
    e.preventDefault();
  });
  handle.addEventListener('pointermove', (e) => {
    const d = stageState.dragging;
    if (!d) return;
    const scale = state.patch.info.imageSize / stage.getBoundingClientRect().width;
    const i = state.patch.info;
    const max = i.imageSize - i.size;
    i.top = Math.max(0, Math.min(max, Math.round(d.top + (e.clientY - d.y) * scale)));
    i.left = Math.max(0, Math.min(max, Math.round(d.left + (e.clientX - d.x) * scale)));
    updateStage();
  });
  const drop = () => {
    if (!stageState.dragging) return;
    stageState.dragging = null;
    movePatch(state.patch.info.top, state.patch.info.left);
  };
  handle.addEventListener('pointerup', drop);
  handle.addEventListener('pointercancel', drop);
  handle.addEventListener('keydown', (e) => {
    const step = e.shiftKey ? 8 : 1;
    const move = { ArrowUp: [-step, 0], ArrowDown: [step, 0], ArrowLeft: [0, -step], ArrowRight: [0, step] }[e.key];
    if (!move || !state.patch) return;
    e.preventDefault();
    movePatch(state.patch.info.top + move[0], state.patch.info.left + move[1]);
  });
  for (const id of ['patch-top', 'patch-left']) {
    $(id).addEventListener('change', () => movePatch(Number($('patch-top').value), Number($('patch-left').value)));
  }
}

// ---- downloads and the printable sheet ----

function save(bytes, name, type) {
  const url = URL.createObjectURL(new Blob([bytes], { type }));
  const a = Object.assign(document.createElement('a'), { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

const patchFileName = () => (state.patch?.file ?? 'patch').replace(/[^\w.-]+/g, '-');

function printSheet() {
  const p = state.patch;
  const url = URL.createObjectURL(new Blob([p.png], { type: 'image/png' })); // kept alive for the sheet's lifetime
  const query = new URLSearchParams({ src: url, name: p.name, mode: p.info.mode, target: p.info.target ?? '' });
  const w = window.open(`print.html#${query}`, '_blank');
  if (!w) showAlert('the printable sheet could not open: allow pop-ups for this page and try again');
}

// ---- training ----

async function train() {
  const p = prompts();
  if (!state.model || !p) return showAlert('training needs a loaded model, labels and a template');
  const options = {
    mode: $('train-mode').value,
    steps: Number($('train-steps').value),
    area: Number($('train-area').value),
    batch: Number($('train-batch').value),
    seed: Number($('train-seed').value),
  };
  // The step report's rate is the batch's share fooled (AdvCLIP) or sent to the target (targeted).
  const rateName = options.mode === 'targeted' ? 'on target' : 'fooling rate';
  $('rate-key').textContent = rateName;
  if (options.mode === 'targeted') {
    options.target = $('train-target').value.trim();
    options.placement = $('train-placement').value;
  }
  for (const key of ['steps', 'batch', 'seed']) {
    if (!Number.isInteger(options[key]) || options[key] < (key === 'seed' ? 0 : 1)) return showAlert(`training: ${key} must be a whole number`);
  }
  if (!(options.area > 0 && options.area < 0.5)) return showAlert('training: the area must be a fraction between 0 and 0.5');
  if (state.images.length < options.batch) {
    return showAlert(`training needs at least ${options.batch} images (the batch size); add images or lower the batch`);
  }
  clearTimeout(classifyTimer);
  state.generation++; // results of an unfinished classification would be stale
  const run = (state.training = { stop: false, points: [], steps: options.steps });
  state.note = '';
  trainingButtons(true);
  drawPlot($('train-plot'), [], options.steps);
  $('train-progress').value = 0;
  let last = null;
  const trained = await task('training…', async (setText) => {
    const images = state.images.map((it) => it.bytes.slice());
    await call('startTraining', { options, images, ...p }, images.map((b) => b.buffer));
    let ms = 0;
    while (!run.stop) {
      const answer = await call('trainStep');
      last = answer.result;
      ms += answer.ms;
      run.points.push({ step: last.step, loss: Number(last.loss), foolingRate: last.foolingRate ?? NaN });
      drawPlot($('train-plot'), run.points, last.steps);
      $('train-plot').setAttribute('aria-label', `Training curves: ${run.points.length} steps, loss ${Number(last.loss).toFixed(3)}`);
      $('train-progress').value = last.step / last.steps;
      const rate = last.foolingRate == null ? '' : `, ${rateName} ${pct(last.foolingRate)}`;
      $('train-text').textContent = `step ${last.step} of ${last.steps}: loss ${Number(last.loss).toFixed(4)}${rate}`;
      setText(`training… step ${last.step} of ${last.steps}`);
      setMetrics({ msPerStep: ms / run.points.length });
      if (last.done) break;
    }
    const { result } = await call('exportPatch');
    const key = 'trained';
    const patch = {
      name: `trained ${options.mode} patch (${last?.step ?? 0} steps)`,
      file: `trained-${options.mode}-${last?.step ?? 0}-steps`,
      png: result.png,
      json: result.json,
    };
    $('patch-toggle').checked = true;
    await usePatch(key, patch);
    rememberPatch(key, patch);
    return true;
  });
  state.training = null;
  trainingButtons(false);
  state.generation++;
  await classifyItems(state.images.slice());
  if (trained) {
    // Set last, so that "training done" in the status means the results already wear the new patch.
    const rate = last?.foolingRate == null ? '' : `, ${rateName} ${pct(last.foolingRate)}`;
    state.note = `training ${last?.done ? 'done' : 'stopped'}: ${last?.step ?? 0} of ${options.steps} steps${rate}`;
    refreshStatus();
  }
}

// While training, the controls that would change the session under it are off.
function trainingButtons(running) {
  for (const id of ['train-button', 'model-select', 'model-url-load', 'model-file', 'backend-select', 'patch-select', 'patch-input', 'patch-toggle']) {
    $(id).disabled = running;
  }
  $('stop-button').disabled = !running;
}

// ---- webcam ----

// Frames go through the same queue as everything else; none while training.
const webcam = createWebcam($('webcam'), {
  classify: async (frame) => {
    const p = prompts();
    if (!state.model || !p || state.training) return;
    const size = Math.max(state.model.imageSize, 224);
    const { rgba, width, height } = frame(size);
    const { result } = await call('classifyRgba', { rgba, width, height, ...p, topK: TOP_K }, [rgba.buffer]);
    renderPrediction($('live-result'), result);
  },
  onChange: (running) => {
    $('live').hidden = !running;
    $('webcam-button').textContent = running ? 'Stop webcam' : 'Start webcam';
    $('webcam-button').setAttribute('aria-pressed', String(running));
  },
  onError: (e) => showAlert(`webcam: ${e.message || e.name}`),
});

// ---- drawing ----

function setupDrawingPanel() {
  const palette = $('palette');
  Object.entries(PALETTE).forEach(([name, hex], i) => {
    const id = `colour-${name}`;
    const input = Object.assign(document.createElement('input'), { type: 'radio', name: 'colour', id, value: name, checked: i === 0 });
    const label = Object.assign(document.createElement('label'), { htmlFor: id, className: 'swatch' });
    const chip = document.createElement('span');
    chip.className = 'chip';
    chip.style.background = hex;
    label.append(chip, name);
    palette.append(input, label);
  });
  const pad = setupDrawing($('drawing'), {
    colour: () => document.querySelector('input[name=colour]:checked')?.value ?? 'red',
    brush: () => Number($('brush').value),
  });
  $('drawing-clear').addEventListener('click', pad.clear);
  $('stamp').addEventListener('click', () => pad.stamp($('stamp-shape').value));
  $('drawing-classify').addEventListener('click', async () => {
    const p = prompts();
    if (!state.model || !p) return showAlert('the drawing needs a loaded model, labels and a template');
    const { rgba, width, height } = pad.rgba();
    await task('classifying the drawing…', async () => {
      const { result } = await call('classifyRgba', { rgba, width, height, ...p, topK: TOP_K }, [rgba.buffer]);
      renderPrediction($('drawing-result'), result);
    });
  });
}

// ---- wiring ----

function setup() {
  const params = new URLSearchParams(location.search);
  if (['auto', 'webgpu', 'cpu'].includes(params.get('backend'))) $('backend-select').value = params.get('backend');

  for (const [key, { title, labels }] of Object.entries(PRESETS)) {
    const b = Object.assign(document.createElement('button'), { type: 'button', textContent: title });
    b.dataset.preset = key;
    b.addEventListener('click', () => setLabels(labels, true));
    $('presets').append(b);
  }
  $('labels').addEventListener('input', () => {
    state.labelsEdited = true;
    labelsChanged(500);
  });
  $('template').addEventListener('input', () => scheduleClassify(500));

  $('model-select').addEventListener('change', () => {
    const kind = $('model-select').value;
    $('url-row').hidden = kind !== 'url';
    $('file-row').hidden = kind !== 'file';
    if (kind === 'bundled') loadModel({ kind: 'bundled' });
  });
  $('model-url-load').addEventListener('click', () => loadModel({ kind: 'url', url: $('model-url').value.trim() }));
  $('model-file').addEventListener('change', () => {
    const files = [...$('model-file').files];
    const weights = files.find((f) => /\.safetensors$/i.test(f.name));
    if (!weights) return showAlert('model file: choose a .safetensors file (and optionally its config.json)');
    loadModel({ kind: 'file', weights, config: files.find((f) => /\.json$/i.test(f.name)) ?? null });
  });
  $('backend-select').addEventListener('change', () => loadModel(state.source ?? { kind: 'bundled' }, { fresh: true }));

  const input = $('image-input');
  input.addEventListener('change', async () => {
    const files = [...input.files];
    input.value = '';
    await addFiles(files);
  });
  const zone = $('drop-zone');
  zone.addEventListener('dragover', (e) => {
    e.preventDefault();
    zone.classList.add('over');
  });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    zone.classList.remove('over');
    addFiles([...e.dataTransfer.files]);
  });
  // A file dropped beside the zone must not navigate away from the page.
  window.addEventListener('dragover', (e) => e.preventDefault());
  window.addEventListener('drop', (e) => e.preventDefault());
  document.addEventListener('paste', (e) => {
    const files = [...(e.clipboardData?.files ?? [])].filter((f) => f.type.startsWith('image/'));
    if (!files.length) return;
    e.preventDefault();
    addFiles(files);
  });
  $('clear-images').addEventListener('click', () => [...state.images].forEach(removeImage));
  $('webcam-button').addEventListener('click', () => webcam.toggle());

  $('patch-select').addEventListener('change', () => {
    const wasOn = $('patch-toggle').checked;
    $('patch-toggle').checked = $('patch-select').value !== 'none'; // choosing a patch means wanting to see it
    choosePatch($('patch-select').value, wasOn);
  });
  $('patch-input').addEventListener('change', async () => {
    const files = [...$('patch-input').files];
    $('patch-input').value = '';
    await loadPatchFiles(files);
  });
  $('patch-toggle').addEventListener('change', () => setPatchEnabled($('patch-toggle').checked));
  setupStage();
  $('download-png').addEventListener('click', () => save(state.patch.png, `${patchFileName()}.png`, 'image/png'));
  $('download-json').addEventListener('click', () => save(state.patch.json, `${patchFileName()}.json`, 'application/json'));
  $('print-sheet').addEventListener('click', printSheet);

  $('train-mode').addEventListener('change', () => {
    const targeted = $('train-mode').value === 'targeted';
    $('train-target').disabled = !targeted;
    $('train-placement').disabled = !targeted;
  });
  $('train-button').addEventListener('click', train);
  $('stop-button').addEventListener('click', () => state.training && (state.training.stop = true));
  drawPlot($('train-plot'), [], Number($('train-steps').value));
  setupDrawingPanel();

  $('labels').value = SHAPE_LABELS.join(', ');
  labelsChanged(0);
  loadModel({ kind: 'bundled' });
}

setup();
