// Fetches model files with a progress callback, keeping cross-origin downloads in Cache Storage for the next visit.

const CACHE = 'advclip-models';

async function openCache() {
  try {
    return self.caches ? await caches.open(CACHE) : null;
  } catch {
    return null; // e.g. an insecure context or storage disabled: just download every time
  }
}

// Resolves to { bytes: Uint8Array, cached: boolean }. `onProgress(loaded, total)`; total is 0 when unknown.
export async function fetchBytes(url, { onProgress = () => {}, cache = true } = {}) {
  const store = cache ? await openCache() : null;
  const hit = store && (await store.match(url));
  if (hit) {
    const bytes = new Uint8Array(await hit.arrayBuffer());
    onProgress(bytes.length, bytes.length);
    return { bytes, cached: true };
  }
  let response;
  try {
    response = await fetch(url);
  } catch (e) {
    throw new Error(`${url}: unreachable (${e.message}); check the address and your connection`);
  }
  if (!response.ok) throw new Error(`${url}: the server answered ${response.status} ${response.statusText}`);
  const total = Number(response.headers.get('Content-Length')) || 0;
  let body = response.body;
  let stored = Promise.resolve();
  if (store && body) {
    const [mine, theirs] = body.tee();
    body = mine;
    const headers = { 'Content-Type': response.headers.get('Content-Type') || 'application/octet-stream' };
    stored = store.put(url, new Response(theirs, { headers })).catch(() => {});
  }
  const bytes = await readAll(body, total, onProgress);
  await stored;
  return { bytes, cached: false };
}

// Forgets a cached download (e.g. one that turned out not to be a model).
export async function forget(url) {
  const store = await openCache();
  await store?.delete(url);
}

async function readAll(body, total, onProgress) {
  if (!body) return new Uint8Array(0);
  const reader = body.getReader();
  let buffer = new Uint8Array(total || 1 << 20);
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (loaded + value.length > buffer.length) {
      const bigger = new Uint8Array(Math.max(buffer.length * 2, loaded + value.length));
      bigger.set(buffer.subarray(0, loaded));
      buffer = bigger;
    }
    buffer.set(value, loaded);
    loaded += value.length;
    onProgress(loaded, total);
  }
  return loaded === buffer.length ? buffer : buffer.slice(0, loaded);
}
