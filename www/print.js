// The printable sheet: shows the patch handed over in the URL fragment at the chosen size in millimetres.

const params = new URLSearchParams(location.hash.slice(1));
const img = document.getElementById('patch');
const side = document.getElementById('side');
const caption = document.getElementById('caption');

function resize() {
  const mm = Math.max(10, Math.min(180, Number(side.value) || 50));
  img.style.width = `${mm}mm`;
  img.style.height = `${mm}mm`;
  const what = [params.get('name'), params.get('mode') && `${params.get('mode')} patch`, params.get('target') && `target “${params.get('target')}”`];
  caption.textContent = `${what.filter(Boolean).join(' · ')} · ${mm} mm × ${mm} mm`;
}

if (params.get('src')?.startsWith('blob:')) {
  img.src = params.get('src');
  img.addEventListener('error', () => (document.getElementById('missing').hidden = false));
} else {
  document.getElementById('missing').hidden = false;
}
side.addEventListener('input', resize);
document.getElementById('print').addEventListener('click', () => window.print());
resize();
