// Unit test of www/share.js, the webcam's running share (run: node tests/web/share.test.mjs).

import assert from 'node:assert/strict';
import { RunningShare, WINDOW_MS } from '../../www/share.js';

const isStar = (l) => l === 'star';

// Empty: nothing to count, no usual label.
const s = new RunningShare(3000);
assert.equal(WINDOW_MS, 3000);
assert.deepEqual(s.share(0, isStar), { hits: 0, frames: 0 });
assert.equal(s.mostFrequent(0), null);

// Frames at 0, 1000, 2000 ms: all in the window at 2000 ms.
s.add(0, 'star');
s.add(1000, 'circle');
s.add(2000, 'star');
assert.deepEqual(s.share(2000, isStar), { hits: 2, frames: 3 });
assert.deepEqual(s.mostFrequent(2000), { label: 'star', count: 2 });

// A frame counts while it is under 3 s old: at 2999 ms the one from 0 ms still counts, at 3000 ms it is gone.
assert.deepEqual(s.share(2999, isStar), { hits: 2, frames: 3 });
assert.deepEqual(s.share(3000, isStar), { hits: 1, frames: 2 });
// A tie goes to the label seen last.
assert.deepEqual(s.mostFrequent(3000), { label: 'star', count: 1 });
s.add(3500, 'circle');
assert.deepEqual(s.mostFrequent(3500), { label: 'circle', count: 2 });
// Time alone empties the window.
assert.deepEqual(s.share(10_000, isStar), { hits: 0, frames: 0 });
assert.equal(s.mostFrequent(10_000), null);

// A steady stream of three frames a second stays bounded by the window.
const r = new RunningShare();
for (let t = 0; t < 60_000; t += 333) r.add(t, t % 2 ? 'a' : 'b');
const { frames } = r.share(60_000 - 333, () => true);
assert.ok(frames >= 9 && frames <= 10, `frames in a 3 s window at 3/s: ${frames}`);

// clear() forgets everything.
r.clear();
assert.deepEqual(r.share(60_000, () => true), { hits: 0, frames: 0 });

console.log('share.test: ok');
