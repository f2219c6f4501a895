// Classification: labels and template, the images in chunks into their result cards, webcam frames and drawings.

import { state, call } from './state.js';
import { $, task, showAlert, setMetrics } from './ui.js';
import { PRESETS, SHAPE_LABELS, parseLabels } from './labels.js';
import { renderPrediction } from './results.js';

const TOP_K = 3;
const CHUNK = 8; // images per classify call, so that results appear progressively

// ---- labels ----

export function defaultLabels() {
  if (state.labelsEdited) return;
  setLabels(state.model.kind === 'bundled' ? SHAPE_LABELS : PRESETS.animals.labels, false);
}

export function setLabels(list, edited) {
  $('labels').value = list.join(', ');
  state.labelsEdited = edited;
  labelsChanged(0);
}

export function scheduleClassify(delay) {
  clearTimeout(state.classifyTimer);
  state.classifyTimer = setTimeout(classifyAll, delay);
}

export function cancelScheduledClassify() {
  clearTimeout(state.classifyTimer);
}

export function labelsChanged(delay) {
  const labels = parseLabels($('labels').value);
  $('label-list').replaceChildren(...labels.map((l) => Object.assign(document.createElement('option'), { value: l })));
  scheduleClassify(delay);
}

// The labels and template, or null (with a hint shown) when they cannot be used.
export function prompts() {
  const labels = parseLabels($('labels').value);
  const template = $('template').value;
  const problem = !labels.length ? 'Add at least one label.' : !template.includes('{}') ? 'The template needs a {} where the label goes.' : '';
  $('labels-hint').textContent = problem;
  $('labels-hint').hidden = !problem;
  return problem ? null : { labels, template };
}

// ---- the images ----

function showResult(item, r) {
  const { clean, patched, flipped } = renderPrediction(item.el.querySelector('.result-body'), r);
  Object.assign(item.el.dataset, { topClean: clean, topPatched: patched, state: 'done' });
  item.el.classList.toggle('flipped', flipped);
}

export function classifyAll() {
  state.generation++;
  if (state.images.length) classifyItems(state.images.slice());
}

// Classifies `items` in chunks; a chunk that fails is retried image by image, so one bad file does not hide the rest.
export async function classifyItems(items) {
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

function failed(item, e) {
  item.el.dataset.state = 'error';
  item.el.querySelector('.result-body').textContent = `Could not classify: ${e.message}`;
  return new Error(`${item.name}: ${e.message}`);
}

// ---- webcam frames and drawings ----

// A webcam frame: goes through the same queue as everything else; none while training. Returns its { clean,
// patched } top-k lists, or null when it was not classified.
export async function classifyFrame(frame) {
  const p = prompts();
  if (!state.model || !p || state.training) return null;
  const size = Math.max(state.model.imageSize, 224);
  const { rgba, width, height } = frame(size);
  const { result } = await call('classifyRgba', { rgba, width, height, ...p, topK: TOP_K }, [rgba.buffer]);
  renderPrediction($('live-result'), result);
  return result;
}

// The drawing pad's picture (`pad` from drawing.js's setupDrawing).
export async function classifyDrawing(pad) {
  const p = prompts();
  if (!state.model || !p) return showAlert('the drawing needs a loaded model, labels and a template');
  const { rgba, width, height } = pad.rgba();
  await task('classifying the drawing…', async () => {
    const { result } = await call('classifyRgba', { rgba, width, height, ...p, topK: TOP_K }, [rgba.buffer]);
    renderPrediction($('drawing-result'), result);
  });
}
