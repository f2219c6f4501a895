// The drawing pad for the mini model: freehand strokes in the shapes world's six colours, stamped shapes, clear.

export const PALETTE = {
  red: '#d91616', green: '#20b220', blue: '#1f47cc', yellow: '#f0de18', purple: '#8329a6', orange: '#f27f13',
};

// canvas: the pad; colour(): the chosen colour name; brush(): the brush width in canvas pixels.
export function setupDrawing(canvas, { colour, brush }) {
  const g = canvas.getContext('2d', { willReadFrequently: true });
  const clear = () => {
    g.fillStyle = '#ffffff';
    g.fillRect(0, 0, canvas.width, canvas.height);
  };
  clear();

  let last = null;
  const at = (e) => {
    const r = canvas.getBoundingClientRect();
    return [((e.clientX - r.left) * canvas.width) / r.width, ((e.clientY - r.top) * canvas.height) / r.height];
  };
  canvas.addEventListener('pointerdown', (e) => {
    canvas.setPointerCapture(e.pointerId);
    last = at(e);
    stroke(last, last);
    e.preventDefault();
  });
  canvas.addEventListener('pointermove', (e) => {
    if (!last) return;
    const p = at(e);
    stroke(last, p);
    last = p;
  });
  const end = () => (last = null);
  canvas.addEventListener('pointerup', end);
  canvas.addEventListener('pointercancel', end);

  function stroke([x0, y0], [x1, y1]) {
    g.strokeStyle = PALETTE[colour()];
    g.lineWidth = brush();
    g.lineCap = 'round';
    g.lineJoin = 'round';
    g.beginPath();
    g.moveTo(x0, y0);
    g.lineTo(x1 + 0.01, y1);
    g.stroke();
  }

  // A filled shape in the middle of the pad, for keyboard users and quick tests.
  function stamp(shape) {
    const s = canvas.width;
    const [cx, cy, r] = [s / 2, s / 2, s * 0.3];
    g.fillStyle = PALETTE[colour()];
    g.beginPath();
    if (shape === 'circle') g.arc(cx, cy, r, 0, 2 * Math.PI);
    else if (shape === 'square') g.rect(cx - r * 0.8, cy - r * 0.8, r * 1.6, r * 1.6);
    else if (shape === 'triangle') polygon(g, [0, 1, 2].map((i) => polar(cx, cy, r, -90 + 120 * i)));
    else if (shape === 'star') polygon(g, [...Array(10).keys()].map((i) => polar(cx, cy, i % 2 ? r * 0.42 : r, -90 + 36 * i)));
    else if (shape === 'cross') {
      const a = r * 0.33;
      polygon(g, [[-a, -r], [a, -r], [a, -a], [r, -a], [r, a], [a, a], [a, r], [-a, r], [-a, a], [-r, a], [-r, -a], [-a, -a]].map(([x, y]) => [cx + x, cy + y]));
    } else if (shape === 'heart') {
      g.moveTo(cx, cy + r);
      g.bezierCurveTo(cx - r * 1.6, cy - r * 0.1, cx - r * 0.6, cy - r * 1.3, cx, cy - r * 0.45);
      g.bezierCurveTo(cx + r * 0.6, cy - r * 1.3, cx + r * 1.6, cy - r * 0.1, cx, cy + r);
    }
    g.fill();
  }

  return {
    clear,
    stamp,
    rgba: () => ({ rgba: new Uint8Array(g.getImageData(0, 0, canvas.width, canvas.height).data.buffer), width: canvas.width, height: canvas.height }),
  };
}

function polar(cx, cy, r, deg) {
  const a = (deg * Math.PI) / 180;
  return [cx + r * Math.cos(a), cy + r * Math.sin(a)];
}

function polygon(g, pts) {
  pts.forEach(([x, y], i) => (i ? g.lineTo(x, y) : g.moveTo(x, y)));
  g.closePath();
}
