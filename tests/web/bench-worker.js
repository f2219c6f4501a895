// The browser benchmark's worker: loads one advclip package (the threaded one when `pool` > 1) and runs the snippets
// that tests/web/bench.mjs sends, off the page's main thread (the threaded build's pool blocks, which the main
// thread may not). Each snippet is an async function of one argument; `advclip` and `timeIt` are globals here.

self.timeIt = async (work, seconds, warm) => {
  // Runs `work` for `warm` seconds, then until `seconds` pass (at least 3 runs); the median ms of one call.
  const warmEnd = performance.now() + warm * 1000;
  do { await work(); } while (performance.now() < warmEnd);
  const times = [];
  const end = performance.now() + seconds * 1000;
  while (times.length < 3 || performance.now() < end) {
    const t0 = performance.now();
    await work();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return { median: times[times.length >> 1], runs: times.length };
};

self.onmessage = async ({ data: { op, pool, code, args } }) => {
  try {
    if (op === 'init') {
      // The threaded package the page would load (www/wasm-features.js): relaxed SIMD or not.
      const threaded = (await import('/wasm-features.js')).threadedPackageUrl();
      self.advclip = await import(pool > 1 ? threaded : '/pkg/advclip.js');
      await self.advclip.default();
      if (pool > 1) await self.advclip.initThreadPool(pool);
      postMessage({ ok: true });
    } else {
      const snippet = (0, eval)(`(${code})`);
      postMessage({ ok: true, result: await snippet(args) });
    }
  } catch (e) {
    postMessage({ ok: false, error: String(e?.stack ?? e) });
  }
};
