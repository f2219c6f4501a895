// Models: a worker session on the chosen backend, and the bundled, downloaded or local model loaded into it.

import { state, call } from './state.js';
import { $, task, refreshStatus, showAlert, setMetrics } from './ui.js';
import { startWorker } from './worker-client.js';
import { fetchBytes, fetchStream, fileStream, streamBytes, forget } from './download.js';
import { pct } from './results.js';
import { defaultLabels, scheduleClassify } from './classify.js';
import { reapplyPatch } from './patch.js';

const BUNDLED_MODEL = { weights: '../assets/mini-clip/model.safetensors', config: '../assets/mini-clip/config.json' };

async function startSession() {
  state.client?.terminate();
  state.generation++;
  state.client = startWorker();
  state.backend = state.adapter = '';
  const backend = $('backend-select').value;
  // ?threads=N sets the CPU path's pool size (1: single-threaded); by default it uses every core.
  const threads = Number(new URLSearchParams(location.search).get('threads')) || undefined;
  const { result } = await call('create', { backend, threads });
  [state.backend, state.adapter] = [result.backend, result.adapter];
  setMetrics();
}

// Opens a model source as a stream: { stream, length, total, config: string | undefined, name, cacheKey, cached,
// stored }.
// The weights are read as the worker loads them, so the page never holds the whole file (see loadWeights).
async function openSource(source, setText) {
  const progress = (loaded, total) => {
    $('download-row').hidden = false;
    $('download-progress').value = total ? Math.min(loaded / total, 1) : 0;
    if (!total) $('download-progress').removeAttribute('value');
    $('download-text').textContent = `${(loaded / 1e6).toFixed(1)}${total ? ` of ${(total / 1e6).toFixed(1)}` : ''} MB`;
    setText(`loading the model… ${total ? pct(Math.min(loaded / total, 1)) : `${(loaded / 1e6).toFixed(0)} MB`}`);
  };
  if (source.kind === 'bundled') {
    const weights = await fetchStream(BUNDLED_MODEL.weights, { cache: false });
    const { bytes: config } = await fetchBytes(BUNDLED_MODEL.config, { cache: false });
    return { ...weights, config: new TextDecoder().decode(config), name: 'mini-clip (bundled)' };
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
    return { ...(await fetchStream(url, { onProgress: progress })), config, name: url, cacheKey: url };
  }
  const config = source.config ? await source.config.text() : undefined;
  return { ...fileStream(source.weights, progress), config, name: source.weights.name };
}

// Hands the weights stream to the worker, which loads the model as the bytes arrive. A browser that cannot transfer
// a stream to a worker gets the bytes in one buffer instead (the model is then briefly in memory twice).
async function loadWeights({ stream, length, total, config, name }) {
  try {
    return await call('loadModelStream', { stream, length, config, name }, [stream]);
  } catch (e) {
    if (e?.name !== 'DataCloneError') throw e;
    const weights = await streamBytes(stream, total);
    return call('loadModel', { weights, config, name }, [weights.buffer]);
  }
}

// Loads `source` into the session (starting one first when `fresh`), then puts the patch back on.
export async function loadModel(source, { fresh = false } = {}) {
  const token = ++state.modelToken;
  state.generation++;
  $('download-row').hidden = true;
  await task('loading model…', async (setText) => {
    try {
      if (fresh || !state.client) {
        state.model = null; // the old session, and the model in it, are gone
        await startSession();
      }
      const opened = await openSource(source, setText);
      let answer;
      try {
        answer = await loadWeights(opened);
      } catch (e) {
        if (opened.cacheKey) {
          await opened.stored;
          await forget(opened.cacheKey); // do not keep a download that is not a model
        }
        throw e;
      }
      if (opened.cacheKey) $('download-text').textContent += opened.cached ? ' (from the cache)' : ' (saved in the cache)';
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

// The model select: shows the URL or file row for that kind; the bundled model loads at once.
export function chooseModelKind(kind) {
  $('url-row').hidden = kind !== 'url';
  $('file-row').hidden = kind !== 'file';
  if (kind === 'bundled') loadModel({ kind: 'bundled' });
}

// The files chosen in the model file input: a .safetensors and optionally its config.json.
export function loadModelFiles(files) {
  const weights = files.find((f) => /\.safetensors$/i.test(f.name));
  if (!weights) return showAlert('model file: choose a .safetensors file (and optionally its config.json)');
  loadModel({ kind: 'file', weights, config: files.find((f) => /\.json$/i.test(f.name)) ?? null });
}
