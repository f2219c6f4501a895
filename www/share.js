// A running share: the top labels of the last few seconds of frames, how many pass a test, and the usual one.

export const WINDOW_MS = 3000; // how far back a running share looks

// Frames are added in time order (`timeMs` never decreases); a frame counts while it is under `windowMs` old.
export class RunningShare {
  constructor(windowMs = WINDOW_MS) {
    this.windowMs = windowMs;
    this.frames = []; // { t, label }, oldest first
  }

  add(timeMs, label) {
    this.frames.push({ t: timeMs, label });
    this.drop(timeMs);
  }

  clear() {
    this.frames = [];
  }

  // Forgets the frames that are out of the window at `nowMs`.
  drop(nowMs) {
    const from = nowMs - this.windowMs;
    let old = 0;
    while (old < this.frames.length && this.frames[old].t <= from) old++;
    if (old) this.frames.splice(0, old);
  }

  // How many of the window's frames have a label that passes `predicate`, out of how many.
  share(nowMs, predicate) {
    this.drop(nowMs);
    return { hits: this.frames.filter((f) => predicate(f.label)).length, frames: this.frames.length };
  }

  // The window's most frequent label, { label, count }, or null when it is empty; a tie goes to the latest seen.
  mostFrequent(nowMs) {
    this.drop(nowMs);
    const counts = new Map();
    for (const { label } of this.frames) counts.set(label, (counts.get(label) ?? 0) + 1);
    let best = null;
    for (let i = this.frames.length - 1; i >= 0; i--) {
      const label = this.frames[i].label;
      if (!best || counts.get(label) > best.count) best = { label, count: counts.get(label) };
    }
    return best;
  }
}
