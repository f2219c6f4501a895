// Talks to worker.js: one promise per request id, byte arrays transferred, worker crashes reported to every caller.

export function startWorker() {
  const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
  const pending = new Map();
  let nextId = 1;
  let dead = null;

  worker.onmessage = ({ data: { id, ok, result, ms, error } }) => {
    const p = pending.get(id);
    if (!p) return;
    pending.delete(id);
    if (ok) p.resolve({ result, ms });
    else p.reject(new Error(error));
  };
  const fail = (why) => {
    dead = new Error(why);
    for (const p of pending.values()) p.reject(dead);
    pending.clear();
  };
  worker.onerror = (e) => {
    e.preventDefault?.();
    fail(`the model worker stopped: ${e.message || 'unknown error'} (reload the page)`);
  };
  worker.onmessageerror = () => fail('the model worker sent a message that could not be read');

  return {
    // Resolves to { result, ms }; `transfer` lists buffers to move rather than copy.
    call(op, args = {}, transfer = []) {
      if (dead) return Promise.reject(dead);
      const id = nextId++;
      return new Promise((resolve, reject) => {
        pending.set(id, { resolve, reject });
        try {
          worker.postMessage({ id, op, args }, transfer);
        } catch (e) {
          pending.delete(id);
          reject(e); // e.g. a DataCloneError: something in `transfer` cannot be moved in this browser
        }
      });
    },
    terminate() {
      worker.terminate();
      fail('the model worker was replaced');
    },
  };
}
