// What this browser's WebAssembly can run beyond the baseline, and so which threaded package to load.

// Whether this browser's WebAssembly has relaxed SIMD: a one-function module using f32x4.relaxed_madd validates.
export function relaxedSimd() {
  const v128 = [0xfd, 0x0c, ...new Array(16).fill(0)]; // v128.const 0
  const body = [0x00, ...v128, ...v128, ...v128, 0xfd, 0x85, 0x02, 0x0b]; // no locals; f32x4.relaxed_madd; end
  return WebAssembly.validate(new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version 1
    0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, // types: () -> v128
    0x03, 0x02, 0x01, 0x00, // one function of type 0
    0x0a, body.length + 2, 0x01, body.length, ...body, // its code
  ]));
}

// The threaded CPU package for this browser: the relaxed-SIMD variant where it loads (Chromium), else the plain one
// (Safari). An absolute URL, resolved from this file's place beside pkg/, so any worker can import it.
export function threadedPackageUrl() {
  const dir = relaxedSimd() ? 'threads-relaxed' : 'threads';
  return new URL(`../pkg/${dir}/advclip.js`, import.meta.url).href;
}
