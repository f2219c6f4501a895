// Module worker that owns the wasm CLIP Session and runs every call on it one at a time, in arrival order.
//
// Protocol (see state.js `call`): the page posts { id, op, args }; the worker answers { id, ok: true, result, ms } or
// { id, ok: false, error }. `ms` is the time the call itself took (queue wait excluded). Byte arrays travel as
// Uint8Array with their buffers transferred, both ways.

import { threadedPackageUrl } from './wasm-features.js';

let session = null;
let queue = Promise.resolve();

const ops = {
  // `threads`: the CPU path's pool size (default: every core; 1 = the single-threaded build).
  async create({ backend, threads }) {
    const pool = Math.max(1, Math.min(threads ?? cores(), cores()));
    // The threaded package is CPU-only: take it when the CPU path is what this session will run on.
    let gpuMissing = null;
    if (backend === 'auto' && pool > 1 && self.crossOriginIsolated) gpuMissing = await webgpuMissing();
    const threaded = pool > 1 && self.crossOriginIsolated && (backend === 'cpu' || gpuMissing !== null);
    let mod = threaded ? await loadPackage(threadedPackageUrl(), pool).catch((e) => {
      console.warn(`the threaded CPU build did not load, using the single-threaded one: ${message(e)}`);
      return null;
    }) : null;
    const ranThreaded = mod !== null;
    mod ??= await loadPackage('../pkg/advclip.js', 1);
    session = await mod.Session.create(ranThreaded ? 'cpu' : backend);
    const adapter = session.adapter() + (ranThreaded && gpuMissing ? `; WebGPU: ${gpuMissing}` : '');
    return { backend: session.backend(), adapter };
  },
  loadModel: ({ weights, config, name }) => need().loadModel(weights, config ?? undefined, name),
  loadModelStream: ({ stream, length, config, name }) =>
    need().loadModelStream(stream, length ?? undefined, config ?? undefined, name),
  classify: ({ images, labels, template, topK }) => need().classify(images, labels, template, topK),
  classifyRgba: ({ rgba, width, height, labels, template, topK }) =>
    need().classifyRgba(rgba, width, height, labels, template, topK),
  loadPatch: ({ png, json }) => need().loadPatch(png, json),
  clearPatch: () => need().clearPatch(),
  setPatchEnabled: ({ enabled }) => need().setPatchEnabled(enabled),
  setPatchPosition: ({ top, left }) => need().setPatchPosition(top, left),
  applyPatch: ({ image }) => need().applyPatch(image),
  startTraining: ({ options, images, labels, template }) => need().startTraining(options, images, labels, template),
  trainStep: () => need().trainStep(),
  exportPatch: () => need().exportPatch(),
};

function cores() {
  return navigator.hardwareConcurrency || 1;
}

// Imports a wasm package and, for the threaded one, starts its pool of `pool` workers.
async function loadPackage(url, pool) {
  try {
    const mod = await import(url);
    await mod.default();
    if (pool > 1) await mod.initThreadPool(pool);
    return mod;
  } catch (e) {
    throw new Error(`cannot load the wasm package (${url}): ${message(e)}`);
  }
}

// Why WebGPU cannot be used here, or null when it can (what "auto" then picks).
async function webgpuMissing() {
  if (!navigator.gpu) return 'this browser has no WebGPU';
  try {
    return (await navigator.gpu.requestAdapter()) ? null : 'no WebGPU adapter';
  } catch (e) {
    return `no WebGPU adapter (${message(e)})`;
  }
}

function need() {
  if (!session) throw new Error('the model session is not ready yet');
  return session;
}

function message(e) {
  if (e instanceof Error) return e.message || String(e);
  return typeof e === 'string' ? e : JSON.stringify(e);
}

// Every Uint8Array buffer in a result, so that it can be transferred instead of copied.
function buffers(value, out = []) {
  if (value instanceof Uint8Array) out.push(value.buffer);
  else if (Array.isArray(value)) value.forEach((v) => buffers(v, out));
  else if (value && typeof value === 'object') Object.values(value).forEach((v) => buffers(v, out));
  return out;
}

self.onmessage = ({ data: { id, op, args } }) => {
  queue = queue.then(async () => {
    const start = performance.now();
    try {
      if (!(op in ops)) throw new Error(`unknown operation ${op}`);
      const result = (await ops[op](args ?? {})) ?? null;
      const ms = performance.now() - start;
      try {
        self.postMessage({ id, ok: true, result, ms }, [...new Set(buffers(result))]);
      } catch {
        self.postMessage({ id, ok: true, result, ms }); // a buffer that cannot be detached: copy it instead
      }
    } catch (e) {
      self.postMessage({ id, ok: false, error: message(e) });
    }
  });
};
