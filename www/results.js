// Result cards: the thumbnail (with the patch drawn over it), top-k bars clean and patched side by side, the flip.

export const pct = (p) => `${(100 * p).toFixed(1)} %`;

const make = (tag, className, text) => {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text != null) el.textContent = text;
  return el;
};

// A card for one image, still empty ("classifying…"); tests read data-top-clean and data-top-patched on it.
export function resultCard(item, { onRemove, onWear }) {
  const el = make('article', 'result');
  Object.assign(el.dataset, { testid: 'result', file: item.name, state: 'pending', topClean: '', topPatched: '' });
  const img = Object.assign(make('img'), { src: item.url, alt: item.name });
  const overlay = Object.assign(make('img', 'overlay'), { alt: '', hidden: true });
  const frame = make('div', 'frame');
  frame.append(img, overlay);
  const wear = Object.assign(make('button', 'wear', 'Download with the patch'), { type: 'button' });
  wear.setAttribute('aria-label', `Download ${item.name} wearing the patch`);
  wear.addEventListener('click', onWear);
  const figure = make('figure', 'thumb');
  figure.append(frame, make('figcaption', '', item.name), wear);
  const remove = Object.assign(make('button', 'remove', '×'), { type: 'button' });
  remove.setAttribute('aria-label', `Remove ${item.name}`);
  remove.addEventListener('click', onRemove);
  el.append(figure, make('div', 'result-body', 'classifying…'), remove);
  return el;
}

// Fills `container` with the top-k columns (clean, and patched when there is a patch); returns the top labels.
export function renderPrediction(container, r) {
  const cols = make('div', 'cols');
  cols.append(column('clean', r.clean, 'clean'));
  if (r.patched) cols.append(column('with the patch', r.patched, 'patched'));
  const clean = r.clean[0]?.label ?? '';
  const patched = r.patched?.[0]?.label ?? '';
  const flipped = Boolean(r.patched) && patched !== clean;
  container.replaceChildren(cols);
  if (flipped) container.append(make('p', 'flip', `Flipped: “${clean}” → “${patched}”`));
  return { clean, patched, flipped };
}

function column(title, rows, cls) {
  const col = make('section', `col ${cls}`);
  const list = make('ol', 'bars');
  for (const { label, probability } of rows) {
    const fill = make('span', 'fill');
    fill.style.width = `${Math.max(0, Math.min(1, probability)) * 100}%`;
    const bar = make('span', 'bar');
    bar.append(fill);
    const li = make('li');
    li.append(make('span', 'bar-label', label), bar, make('span', 'pct', pct(probability)));
    list.append(li);
  }
  col.append(make('h3', '', title), list);
  return col;
}
