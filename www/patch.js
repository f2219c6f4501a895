// The patch: loading it (bundled, files, trained), on and off, placing it on the stage, downloading and printing it.

import { state, call } from './state.js';
import { $, task, showAlert } from './ui.js';
import { fetchBytes } from './download.js';
import { pct } from './results.js';
import { classifyAll } from './classify.js';

const BUNDLED_PATCHES = {
  advclip: { name: 'AdvCLIP (bundled)', base: '../assets/patches/advclip' },
  'targeted-green-star': { name: 'targeted green star (bundled)', base: '../assets/patches/targeted-green-star' },
  'printable-red-cross': { name: 'printable red cross (bundled)', base: '../assets/patches/printable-red-cross' },
};

// ---- patches ----

export async function choosePatch(key, wasOn) {
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
export async function usePatch(key, p) {
  if (!state.model) throw new Error('load a model first');
  const png = p.png.slice();
  const { result: info } = await call('loadPatch', { png, json: p.json }, [png.buffer]);
  await call('setPatchEnabled', { enabled: $('patch-toggle').checked });
  setPatch({ key, ...p, info });
}

// After a model or backend change: the new session gets the patch again, or the page drops it if it does not fit.
export async function reapplyPatch() {
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

// What a targeted patch's training spot means for where it works (the sidecar's trained_spot).
const SPOT_NOTE = new Map([
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
    ? `${i.mode} patch, ${i.size}×${i.size} px on a ${i.imageSize} px input (${pct(i.areaFraction)} of the image)${i.target ? `, target “${i.target}”` : ''}${i.mode === 'targeted' ? SPOT_NOTE.get(i.trainedSpot) ?? '' : ''}`
    : '';
  for (const id of ['download-png', 'download-json', 'print-sheet']) $(id).disabled = !p;
  $('placement-box').hidden = !p;
  $('stage-patch-img').src = p?.url ?? '';
  updateStage();
}

export async function loadPatchFiles(files) {
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

export function rememberPatch(key, p) {
  state.patches.set(key, p);
  let option = [...$('patch-select').options].find((o) => o.value === key);
  if (!option) $('patch-select').append((option = new Option(p.name, key)));
  option.textContent = p.name;
  $('patch-select').value = key;
}

export async function setPatchEnabled(enabled) {
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

export function updateStage() {
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

export function placeOverlay(overlay) {
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
  clearTimeout(state.stage.commitTimer);
  state.stage.commitTimer = setTimeout(async () => {
    await task('moving patch…', () => call('setPatchPosition', { top: i.top, left: i.left }));
    classifyAll();
  }, 250);
}

export function setupStage() {
  const handle = $('stage-patch');
  const stage = $('stage');
  handle.addEventListener('pointerdown', (e) => {
    if (!state.patch) return;
    handle.setPointerCapture(e.pointerId);
    const { top, left } = state.patch.info;
    state.stage.dragging = { x: e.clientX, y: e.clientY, top, left };
    e.preventDefault();
  });
  handle.addEventListener('pointermove', (e) => {
    const d = state.stage.dragging;
    if (!d) return;
    const scale = state.patch.info.imageSize / stage.getBoundingClientRect().width;
    const i = state.patch.info;
    const max = i.imageSize - i.size;
    i.top = Math.max(0, Math.min(max, Math.round(d.top + (e.clientY - d.y) * scale)));
    i.left = Math.max(0, Math.min(max, Math.round(d.left + (e.clientX - d.x) * scale)));
    updateStage();
  });
  const drop = () => {
    if (!state.stage.dragging) return;
    state.stage.dragging = null;
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

export const downloadPatchPng = () => save(state.patch.png, `${patchFileName()}.png`, 'image/png');
export const downloadPatchJson = () => save(state.patch.json, `${patchFileName()}.json`, 'application/json');

// The image as the model sees it (resized and cropped), wearing the patch.
export async function downloadPatched(item) {
  if (!state.patch) return showAlert('choose a patch first');
  await task('applying the patch…', async () => {
    const image = item.bytes.slice();
    const { result } = await call('applyPatch', { image }, [image.buffer]);
    save(result, `${item.name.replace(/\.[^.]+$/, '')}-patched.png`, 'image/png');
  });
}

export function printSheet() {
  const p = state.patch;
  const url = URL.createObjectURL(new Blob([p.png], { type: 'image/png' })); // kept alive for the sheet's lifetime
  const query = new URLSearchParams({ src: url, name: p.name, mode: p.info.mode, target: p.info.target ?? '', area: p.info.areaFraction, spot: p.info.trainedSpot ?? '' });
  const w = window.open(`print.html#${query}`, '_blank');
  if (!w) showAlert('the printable sheet could not open: allow pop-ups for this page and try again');
}
