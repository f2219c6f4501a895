// Draws the training curves on a canvas: loss (left axis, auto range) and fooling rate (right axis, 0-100 %).

export const LOSS_COLOUR = '#0b62c4';
export const RATE_COLOUR = '#c2410c';

// points: [{ step, loss, rate }]; `steps` fixes the x range.
export function drawPlot(canvas, points, steps) {
  const dpr = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 320;
  const height = canvas.clientHeight || 160;
  if (canvas.width !== Math.round(width * dpr)) canvas.width = Math.round(width * dpr);
  if (canvas.height !== Math.round(height * dpr)) canvas.height = Math.round(height * dpr);
  const g = canvas.getContext('2d');
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, width, height);

  const pad = { left: 44, right: 40, top: 10, bottom: 22 };
  const w = width - pad.left - pad.right;
  const h = height - pad.top - pad.bottom;
  const losses = points.map((p) => p.loss).filter(Number.isFinite);
  let lo = Math.min(...losses, Infinity);
  let hi = Math.max(...losses, -Infinity);
  if (!Number.isFinite(lo)) [lo, hi] = [0, 1];
  if (hi - lo < 1e-6) [lo, hi] = [lo - 0.5, hi + 0.5];
  const maxStep = Math.max(steps || 1, ...points.map((p) => p.step), 1);
  const x = (step) => pad.left + (w * (step - 1)) / Math.max(maxStep - 1, 1);
  const yLoss = (v) => pad.top + h - (h * (v - lo)) / (hi - lo);
  const yRate = (v) => pad.top + h - h * v;

  g.font = '11px system-ui, sans-serif';
  g.strokeStyle = '#c8ccd2';
  g.lineWidth = 1;
  g.strokeRect(pad.left, pad.top, w, h);
  g.fillStyle = LOSS_COLOUR;
  g.textAlign = 'right';
  g.fillText(fmt(hi), pad.left - 4, pad.top + 9);
  g.fillText(fmt(lo), pad.left - 4, pad.top + h);
  g.fillStyle = RATE_COLOUR;
  g.textAlign = 'left';
  g.fillText('100%', pad.left + w + 4, pad.top + 9);
  g.fillText('0%', pad.left + w + 4, pad.top + h);
  g.fillStyle = '#333';
  g.textAlign = 'center';
  g.fillText(`step (of ${maxStep})`, pad.left + w / 2, height - 6);

  line(g, points.filter((p) => Number.isFinite(p.loss)).map((p) => [x(p.step), yLoss(p.loss)]), LOSS_COLOUR);
  line(g, points.filter((p) => Number.isFinite(p.rate)).map((p) => [x(p.step), yRate(p.rate)]), RATE_COLOUR);
  canvas.dataset.points = String(points.length);
}

function line(g, xy, colour) {
  g.strokeStyle = colour;
  g.fillStyle = colour;
  g.lineWidth = 2;
  g.beginPath();
  xy.forEach(([px, py], i) => (i ? g.lineTo(px, py) : g.moveTo(px, py)));
  g.stroke();
  if (xy.length < 40) for (const [px, py] of xy) g.fillRect(px - 2, py - 2, 4, 4);
}

function fmt(v) {
  return Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(3);
}
