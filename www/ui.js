// The page's shared chrome: element lookup, the status line, alerts, the metrics line and the busy-task wrapper.

import { state } from './state.js';

export const $ = (id) => document.getElementById(id);

export function refreshStatus(text, kind) {
  const el = $('status');
  const tasks = [...state.busy.values()];
  if (text) [el.textContent, el.dataset.state] = [text, kind];
  else if (tasks.length) [el.textContent, el.dataset.state] = [tasks.at(-1), 'busy'];
  else if (!state.model) return;
  else [el.textContent, el.dataset.state] = [state.note ? `ready · ${state.note}` : 'ready', 'ready'];
}

// Runs `fn` with `text` in the status line; errors become alerts unless `quiet(e)` says they are stale.
export async function task(text, fn, quiet = () => false) {
  const id = state.nextTask++;
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

export function showAlert(message) {
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
export function setMetrics(updates = {}) {
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
