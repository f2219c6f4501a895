// The webcam's running share: over the last seconds of frames, how often the label is the target or has changed.
//
// A printed patch is held in front of the camera, so its effect shows in the frames' clean top labels; the digital
// patch's, while it is on, in their patched ones. A targeted patch counts the frames labelled with its target; any
// other counts those whose label differs from a reference, "the clean label", set from the scene without the patch.

import { state } from './state.js';
import { $, showAlert } from './ui.js';
import { parseLabels } from './labels.js';
import { RunningShare, WINDOW_MS } from './share.js';

const clean = new RunningShare(WINDOW_MS); // each frame's own top label
const patched = new RunningShare(WINDOW_MS); // the same frames wearing the digital patch, while it is on
const live = { running: false, key: '', patchKey: '', reference: '' };
const SPAN = `${WINDOW_MS / 1000} s`;

const frameCount = (n) => `${n} frame${n === 1 ? '' : 's'}`;

function reset() {
  clean.clear();
  patched.clear();
  Object.assign(live, { key: '', patchKey: '', reference: '' });
}

// The webcam started (true) or stopped (false): either way the window starts empty.
export function webcamRunning(running) {
  reset();
  live.running = running;
  render();
}

// What a frame's labels mean, read when it is sent: a new model, label set or template starts a new window, a new
// patch or position a new digital one.
export function frameContext() {
  const p = state.patch;
  return {
    key: [state.modelToken, $('template').value, ...parseLabels($('labels').value)].join('\n'),
    patchKey: p ? [p.key, p.info.top, p.info.left].join(' ') : '',
  };
}

// One webcam frame's answer ({ clean, patched } top-k lists, or null when none was classified) and its context.
export function addFrame(result, context) {
  const now = performance.now();
  if (result && live.running) {
    if (context.key !== live.key) {
      reset();
      live.key = context.key;
    }
    clean.add(now, result.clean[0]?.label ?? '');
    const patchKey = result.patched ? context.patchKey : '';
    if (patchKey !== live.patchKey) {
      patched.clear();
      live.patchKey = patchKey;
    }
    if (result.patched) patched.add(now, result.patched[0]?.label ?? '');
  }
  render(now);
}

// The "Set the clean label" button: the reference becomes the window's most frequent clean label.
export function setReference() {
  const top = clean.mostFrequent(performance.now());
  if (!top) return showAlert(`no webcam frames in the last ${SPAN} yet: wait until a label shows, then press again`);
  live.reference = top.label;
  render();
}

// One line: "<who>: “green star” in 87 % of the last 3 s (26 frames)", the percentage in bold.
function line(el, who, frames, now, mode, target) {
  const test = mode === 'target' ? (l) => l === target : (l) => l !== live.reference;
  const s = frames.share(now, test);
  let [before, percent, after] = ['', '', ''];
  if (!s.frames) before = `${who}: no frames in the last ${SPAN} yet`;
  else if (mode === 'unset') {
    const top = frames.mostFrequent(now);
    before = `${who}: mostly “${top.label}” (${top.count} of ${frameCount(s.frames)} in the last ${SPAN})`;
  } else {
    before = `${who}: ${mode === 'target' ? `“${target}”` : `changed from “${live.reference}”`} in `;
    percent = `${Math.round((100 * s.hits) / s.frames)} %`;
    after = ` of the last ${SPAN} (${frameCount(s.frames)})`;
  }
  if (el.textContent !== before + percent + after) {
    const bold = Object.assign(document.createElement('strong'), { textContent: percent });
    el.replaceChildren(...(percent ? [before, bold, after] : [before]));
  }
  return s;
}

function render(now = performance.now()) {
  const panel = $('webcam-share');
  const target = state.patch?.info?.target ?? '';
  const mode = target ? 'target' : live.reference ? 'changed' : 'unset';
  const c = line($('share-clean'), 'Camera', clean, now, mode, target);
  const showPatched = live.patchKey !== '';
  $('share-patched').hidden = !showPatched;
  const p = showPatched ? line($('share-patched'), 'With the digital patch', patched, now, mode, target) : null;
  const hint = {
    target: `The loaded patch's target is “${target}”: hold the printed patch in front of the camera.`,
    changed: `Clean label: “${live.reference}”. To set it anew, show the scene without the printed patch and press again.`,
    unset: 'Show the scene without the printed patch, press “Set the clean label”, then hold the printed patch up.',
  }[mode];
  if ($('share-hint').textContent !== hint) $('share-hint').textContent = hint;
  $('webcam-set-reference').hidden = mode === 'target';
  Object.assign(panel.dataset, {
    mode,
    target,
    reference: live.reference,
    frames: String(c.frames),
    hits: mode === 'unset' ? '' : String(c.hits),
    patchedFrames: p ? String(p.frames) : '',
    patchedHits: p && mode !== 'unset' ? String(p.hits) : '',
  });
}
