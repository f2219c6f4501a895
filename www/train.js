// The training panel: start and stop, the step loop with its live plot and time per step, then the trained patch.

import { state, call } from './state.js';
import { $, task, showAlert, refreshStatus, setMetrics } from './ui.js';
import { drawPlot } from './plot.js';
import { pct } from './results.js';
import { prompts, classifyItems, cancelScheduledClassify } from './classify.js';
import { usePatch, rememberPatch } from './patch.js';

export async function train() {
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
    options.spot = $('train-placement').value;
    const printability = Number($('train-printability').value);
    if (!(printability >= 0 && printability <= 100)) return showAlert('training: the printable-colours weight must be between 0 and 100');
    if (printability > 0) options.printability = printability;
  }
  for (const key of ['steps', 'batch', 'seed']) {
    if (!Number.isInteger(options[key]) || options[key] < (key === 'seed' ? 0 : 1)) return showAlert(`training: ${key} must be a whole number`);
  }
  if (!(options.area > 0 && options.area < 0.5)) return showAlert('training: the area must be a fraction between 0 and 0.5');
  if (state.images.length < options.batch) {
    return showAlert(`training needs at least ${options.batch} images (the batch size); add images or lower the batch`);
  }
  cancelScheduledClassify();
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
      run.points.push({ step: last.step, loss: Number(last.loss), rate: last.rate ?? NaN });
      drawPlot($('train-plot'), run.points, last.steps);
      $('train-plot').setAttribute('aria-label', `Training curves: ${run.points.length} steps, loss ${Number(last.loss).toFixed(3)}`);
      $('train-progress').value = last.step / last.steps;
      const rate = last.rate == null ? '' : `, ${rateName} ${pct(last.rate)}`;
      const perStep = ms / run.points.length;
      const left = `, ${(perStep / 1000).toFixed(2)} s a step, ${duration(perStep * (last.steps - last.step))} left`;
      $('train-text').textContent = `step ${last.step} of ${last.steps}: loss ${Number(last.loss).toFixed(4)}${rate}${last.done ? '' : left}`;
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
    const rate = last?.rate == null ? '' : `, ${rateName} ${pct(last.rate)}`;
    state.note = `training ${last?.done ? 'done' : 'stopped'}: ${last?.step ?? 0} of ${options.steps} steps${rate}`;
    refreshStatus();
  }
}

// "about 2 min 5 s" for a number of milliseconds.
function duration(ms) {
  const s = Math.round(ms / 1000);
  return s < 60 ? `about ${s} s` : `about ${Math.floor(s / 60)} min ${s % 60} s`;
}

// While training, the controls that would change the session under it are off.
function trainingButtons(running) {
  for (const id of ['train-button', 'model-select', 'model-url-load', 'model-file', 'backend-select', 'patch-select', 'patch-input', 'patch-toggle']) {
    $(id).disabled = running;
  }
  $('stop-button').disabled = !running;
}

// The stop button: the step loop ends after the step in flight.
export function stopTraining() {
  if (state.training) state.training.stop = true;
}

// The mode select: the target and its placement only mean something for a targeted patch.
export function trainModeChanged() {
  const targeted = $('train-mode').value === 'targeted';
  $('train-target').disabled = !targeted;
  $('train-placement').disabled = !targeted;
}

// The empty plot for the steps field's number of steps, before any training.
export function resetPlot() {
  drawPlot($('train-plot'), [], Number($('train-steps').value));
}
