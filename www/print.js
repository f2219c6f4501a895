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
// How big the patch must look to the camera: it was trained to cover `area` of the model's square input (the centre
// of the frame, as tall as the picture), so its side should span sqrt(area) of the picture's height.
const area = Number(params.get('area'));
if (area > 0 && area < 1) {
  const share = Math.round(Math.sqrt(area) * 100);
  const where = params.get('spot') === 'fixed' ? ' at the spot it was trained for' : ' anywhere in the centre square of the picture';
  document.getElementById('hold').textContent =
    `Trained to cover ${Math.round(area * 1000) / 10} % of the picture the model sees: hold it${where} so that its side spans about ${share} % of the camera picture's height (for a webcam whose picture is 30 cm tall at arm's length, a side of about ${Math.round(share * 3)} mm).`;
}
side.addEventListener('input', resize);
document.getElementById('print').addEventListener('click', () => window.print());
resize();
