// Images: adding (file picker, drop, paste) and removing them with their result cards; the webcam and the drawing pad.

import { state } from './state.js';
import { $, showAlert } from './ui.js';
import { resultCard } from './results.js';
import { createWebcam } from './webcam.js';
import { webcamRunning, frameContext, addFrame, setReference } from './webcam-share.js';
import { setupDrawing, PALETTE } from './drawing.js';
import { classifyItems, classifyFrame, classifyDrawing } from './classify.js';
import { updateStage, placeOverlay, downloadPatched } from './patch.js';

export async function addFiles(files) {
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
    const item = { id: state.nextImageId++, name: file.name || 'pasted image', bytes, url: URL.createObjectURL(file) };
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

export function clearImages() {
  [...state.images].forEach(removeImage);
}

function resultElement(item) {
  const el = resultCard(item, { onRemove: () => removeImage(item), onWear: () => downloadPatched(item) });
  el.querySelector('.wear').hidden = !state.patch;
  $('results').append(el);
  placeOverlay(el.querySelector('.overlay'));
  return el;
}

// ---- webcam ----

// The live webcam; its frames are classified by classify.js and counted by webcam-share.js. Returns webcam.js's
// { toggle }.
export function setupWebcam() {
  $('webcam-set-reference').addEventListener('click', setReference);
  return createWebcam($('webcam'), {
    classify: async (frame) => {
      const context = frameContext(); // before the frame joins the worker's queue
      addFrame(await classifyFrame(frame), context);
    },
    onChange: (running) => {
      webcamRunning(running);
      $('live').hidden = !running;
      $('webcam-button').textContent = running ? 'Stop webcam' : 'Start webcam';
      $('webcam-button').setAttribute('aria-pressed', String(running));
    },
    onError: (e) => showAlert(`webcam: ${e.message || e.name}`),
  });
}

// ---- drawing ----

export function setupDrawingPanel() {
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
  $('drawing-classify').addEventListener('click', () => classifyDrawing(pad));
}
