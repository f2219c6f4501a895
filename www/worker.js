// Module worker that owns the wasm CLIP Session and runs every call on it one at a time, in arrival order.
//
// Protocol (see state.js `call`): the page posts { id, op, args }; the worker answers { id, ok: true, result, ms } or
// { id, ok: false, error }. `ms` is the time the call itself took (queue wait excluded). Byte arrays travel as
// Uint8Array with their buffers transferred, both ways.

let session = null;
let queue = Promise.resolve();

const ops = {
  async create({ backend }) {
    let mod;
    try {
      mod = await import('../pkg/advclip.js');
      await mod.default();
    } catch (e) {
      throw new Error(`cannot load the wasm package (../pkg/advclip.js): ${message(e)}`);
    }
    session = await mod.Session.create(backend);
    return { backend: session.backend(), adapter: session.adapter() };
  },
  loadModel: ({ weights, config, name }) => need().loadModel(weights, config ?? undefined, name),
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
