// Webcam mode: hands square snapshots of the camera to a classify callback, one in flight, about three a second.

export function createWebcam(video, { classify, onChange, onError }) {
  const canvas = document.createElement('canvas');
  let stream = null;

  // A centred square of the current frame, scaled to `size`, as RGBA bytes.
  const frame = (size) => {
    const side = Math.min(video.videoWidth, video.videoHeight);
    canvas.width = canvas.height = size;
    const g = canvas.getContext('2d', { willReadFrequently: true });
    g.drawImage(video, (video.videoWidth - side) / 2, (video.videoHeight - side) / 2, side, side, 0, 0, size, size);
    return { rgba: new Uint8Array(g.getImageData(0, 0, size, size).data.buffer), width: size, height: size };
  };

  async function loop(mine) {
    while (stream === mine) {
      const start = performance.now();
      if (video.videoWidth) {
        try {
          await classify(frame);
        } catch (e) {
          onError(e);
          return stop();
        }
      }
      await new Promise((r) => setTimeout(r, Math.max(50, 330 - (performance.now() - start))));
    }
  }

  async function start() {
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'environment' }, audio: false });
    } catch (e) {
      return onError(e);
    }
    video.srcObject = stream;
    await video.play().catch(() => {});
    onChange(true);
    loop(stream);
  }

  function stop() {
    stream?.getTracks().forEach((t) => t.stop());
    stream = null;
    video.srcObject = null;
    onChange(false);
  }

  return { toggle: () => (stream ? stop() : start()) };
}
