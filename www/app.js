// The page's entry point: wires the controls to the modules, then loads the bundled model.

import { state } from './state.js';
import { $ } from './ui.js';
import { PRESETS, SHAPE_LABELS } from './labels.js';
import { loadModel, chooseModelKind, loadModelFiles } from './model.js';
import { addFiles, clearImages, setupWebcam, setupDrawingPanel } from './images.js';
import { setLabels, labelsChanged, scheduleClassify } from './classify.js';
import { choosePatch, loadPatchFiles, setPatchEnabled, setupStage, downloadPatchPng, downloadPatchJson, printSheet } from './patch.js';
import { train, stopTraining, trainModeChanged, resetPlot } from './train.js';

function setup() {
  const params = new URLSearchParams(location.search);
  if (['auto', 'webgpu', 'cpu'].includes(params.get('backend'))) $('backend-select').value = params.get('backend');

  // ---- labels ----
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

  // ---- model ----
  $('model-select').addEventListener('change', () => chooseModelKind($('model-select').value));
  $('model-url-load').addEventListener('click', () => loadModel({ kind: 'url', url: $('model-url').value.trim() }));
  $('model-file').addEventListener('change', () => loadModelFiles([...$('model-file').files]));
  $('backend-select').addEventListener('change', () => loadModel(state.source ?? { kind: 'bundled' }, { fresh: true }));

  // ---- images ----
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
  $('clear-images').addEventListener('click', clearImages);
  const webcam = setupWebcam();
  $('webcam-button').addEventListener('click', () => webcam.toggle());

  // ---- patch ----
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
  $('download-png').addEventListener('click', downloadPatchPng);
  $('download-json').addEventListener('click', downloadPatchJson);
  $('print-sheet').addEventListener('click', printSheet);

  // ---- training and drawing ----
  $('train-mode').addEventListener('change', trainModeChanged);
  $('train-button').addEventListener('click', train);
  $('stop-button').addEventListener('click', stopTraining);
  resetPlot();
  setupDrawingPanel();

  // ---- boot ----
  $('labels').value = SHAPE_LABELS.join(', ');
  labelsChanged(0);
  loadModel({ kind: 'bundled' });
}

setup();
