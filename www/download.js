// Fetches model files, as bytes or as a stream, with a progress callback, keeping cross-origin downloads in Cache
// Storage for the next visit.

const CACHE = 'advclip-models';

async function openCache() {
  try {
    return self.caches ? await caches.open(CACHE) : null;
  } catch {
    return null; // e.g. an insecure context or storage disabled: just download every time
  }
}

// Resolves to { bytes: Uint8Array, cached: boolean } (small files: configs, patches). `onProgress(loaded, total)`;
// total is 0 when unknown.
export async function fetchBytes(url, options = {}) {
  const { stream, total, cached, stored } = await fetchStream(url, options);
  const bytes = await streamBytes(stream, total);
  await stored;
  return { bytes, cached };
}

// Resolves to { stream, length, total, cached, stored }: the body as a ReadableStream of Uint8Array chunks (so that
// a large model is never whole in memory), no length (see below), the announced size, and a promise that settles once
// the copy kept in the cache is written (await it before forgetting the URL). `onProgress(loaded, total)` is called
// as the stream is read.
export async function fetchStream(url, { onProgress = () => {}, cache = true } = {}) {
  const store = cache ? await openCache() : null;
  const hit = store && (await store.match(url));
  let response = hit;
  if (!hit) {
    try {
      response = await fetch(url);
    } catch (e) {
      throw new Error(`${url}: unreachable (${e.message}); check the address and your connection`);
    }
    if (!response.ok) throw new Error(`${url}: the server answered ${response.status} ${response.statusText}`);
  }
  const length = Number(response.headers.get('Content-Length')) || 0;
  let body = response.body ?? new Blob([]).stream();
  let stored = Promise.resolve();
  if (store && !hit) {
    const [mine, theirs] = body.tee();
    body = mine;
    const headers = { 'Content-Type': response.headers.get('Content-Type') || 'application/octet-stream' };
    stored = store.put(url, new Response(theirs, { headers })).catch(() => {});
  }
  // `length` stays unset: Content-Length counts the bytes on the wire, which a compressed response makes differ from
  // the file's; the loader checks the file's own layout instead. `total` only sizes a buffer or a progress bar.
  return { stream: counted(body, length, onProgress), length: undefined, total: length, cached: Boolean(hit), stored };
}

// A file (a File or Blob) as the same kind of stream.
export function fileStream(file, onProgress = () => {}) {
  const size = file.size;
  return { stream: counted(file.stream(), size, onProgress), length: size, total: size, cached: false, stored: Promise.resolve() };
}

// Reads a stream of byte chunks into one Uint8Array (small files, or a browser that cannot hand a stream to the
// worker). `size`, when known, sizes the buffer up front (else it doubles as the bytes arrive).
export async function streamBytes(stream, size = 0) {
  return readAll(stream, size, () => {});
}

function counted(stream, total, onProgress) {
  let loaded = 0;
  return stream.pipeThrough(new TransformStream({
    transform(chunk, controller) {
      loaded += chunk.byteLength;
      onProgress(loaded, total);
      controller.enqueue(chunk);
    },
  }));
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
