//! Rasterising: analytic anti-aliased coverage of an outline, then Gaussian blur and a JPEG round trip.

use super::colour::Rgb;
use super::outline::Outline;

/// Fraction of each pixel covered by the shape (filled, or an inner stroke `stroke` pixels wide), from the signed
/// distance at the pixel centre: a one-pixel box filter across the edge, analytic anti-aliasing.
pub(super) fn coverage(outline: &Outline, stroke: Option<f32>, side: usize, bounds: [f32; 4], cover: &mut [f32]) {
    let clampi = |v: f32| (v.max(0.0) as usize).min(side);
    let (x_lo, x_hi) = (clampi(bounds[0] - 1.0), clampi(bounds[1] + 2.0));
    let (y_lo, y_hi) = (clampi(bounds[2] - 1.0), clampi(bounds[3] + 2.0));
    let mut filler = Filler { outline, stroke, side, cover };
    const TILE: usize = 16;
    for y in (y_lo..y_hi).step_by(TILE) {
        for x in (x_lo..x_hi).step_by(TILE) {
            filler.block(x, y, (x + TILE).min(x_hi), (y + TILE).min(y_hi));
        }
    }
}

struct Filler<'a> {
    outline: &'a Outline,
    stroke: Option<f32>,
    side: usize,
    cover: &'a mut [f32],
}

impl Filler<'_> {
    fn sdf(&self, x: f32, y: f32) -> f32 {
        let d = self.outline.distance(x, y);
        match self.stroke {
            Some(w) => d.max(-d - w),
            None => d,
        }
    }

    /// Quadtree over pixel blocks: the distance is 1-Lipschitz, so a block whose centre is farther from the edge
    /// than its half-diagonal (plus the half-pixel filter) is entirely in or out and needs no per-pixel work. Only
    /// the thin band along the edge is evaluated per pixel, which matters for the dense wobbly polygons.
    fn block(&mut self, x0: usize, y0: usize, x1: usize, y1: usize) {
        if x0 >= x1 || y0 >= y1 {
            return;
        }
        let (hw, hh) = ((x1 - x0) as f32 / 2.0, (y1 - y0) as f32 / 2.0);
        let centre = self.sdf(x0 as f32 + hw, y0 as f32 + hh);
        let reach = hw.hypot(hh) + 0.5;
        if centre > reach {
            return;
        }
        if centre < -reach {
            for y in y0..y1 {
                self.cover[y * self.side + x0..y * self.side + x1].fill(1.0);
            }
            return;
        }
        if (x1 - x0) * (y1 - y0) <= 4 {
            for y in y0..y1 {
                for x in x0..x1 {
                    self.cover[y * self.side + x] = (0.5 - self.sdf(x as f32 + 0.5, y as f32 + 0.5)).clamp(0.0, 1.0);
                }
            }
            return;
        }
        let (xm, ym) = ((x0 + x1).div_ceil(2), (y0 + y1).div_ceil(2));
        self.block(x0, y0, xm, ym);
        self.block(xm, y0, x1, ym);
        self.block(x0, ym, xm, y1);
        self.block(xm, ym, x1, y1);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Post-processing

pub(super) fn gaussian_blur(pixels: &mut [Rgb], side: usize, sigma: f32) {
    if side == 0 || sigma <= 0.0 {
        return;
    }
    let radius = (2.5 * sigma).ceil() as usize;
    let kernel: Vec<f32> = (0..=2 * radius)
        .map(|i| {
            let o = i as f32 - radius as f32;
            (-o * o / (2.0 * sigma * sigma)).exp()
        })
        .collect();
    let total: f32 = kernel.iter().sum();
    let kernel: Vec<f32> = kernel.iter().map(|k| k / total).collect();
    // Separable, edges clamped, written as whole-row multiply-adds over flat channels so the compiler vectorises.
    let width = side * 3;
    let mut padded = vec![0.0f32; width + 6 * radius];
    let mut rows = vec![0.0f32; side * width];
    for y in 0..side {
        let row = &pixels[y * side..(y + 1) * side];
        for (x, slot) in padded.chunks_exact_mut(3).enumerate() {
            slot.copy_from_slice(&row[x.saturating_sub(radius).min(side - 1)]);
        }
        let out = &mut rows[y * width..(y + 1) * width];
        for (k, &w) in kernel.iter().enumerate() {
            for (o, p) in out.iter_mut().zip(&padded[3 * k..3 * k + width]) {
                *o += w * p;
            }
        }
    }
    let mut out = vec![0.0f32; width];
    for y in 0..side {
        out.fill(0.0);
        for (k, &w) in kernel.iter().enumerate() {
            let sy = (y + k).saturating_sub(radius).min(side - 1);
            for (o, p) in out.iter_mut().zip(&rows[sy * width..(sy + 1) * width]) {
                *o += w * p;
            }
        }
        for (x, px) in pixels[y * side..(y + 1) * side].iter_mut().enumerate() {
            *px = [out[3 * x], out[3 * x + 1], out[3 * x + 2]];
        }
    }
}

/// JPEG at `quality` and back, for realistic block and ringing artefacts; leaves the image as it was on failure.
pub(super) fn jpeg_roundtrip(image: &image::RgbImage, quality: u8) -> Option<image::RgbImage> {
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality).encode_image(image).ok()?;
    let decoded = image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg).ok()?.to_rgb8();
    (decoded.dimensions() == image::GenericImageView::dimensions(image)).then_some(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blur_keeps_flat_images_flat_and_spreads_a_point() {
        let side = 9;
        let mut flat = vec![[0.25f32, 0.5, 0.75]; side * side];
        gaussian_blur(&mut flat, side, 1.5);
        assert!(flat.iter().all(|p| (p[0] - 0.25).abs() < 1e-5 && (p[2] - 0.75).abs() < 1e-5));
        let mut point = vec![[0.0f32; 3]; side * side];
        point[4 * side + 4] = [1.0; 3];
        gaussian_blur(&mut point, side, 0.8);
        let total: f32 = point.iter().map(|p| p[1]).sum();
        assert!((total - 1.0).abs() < 1e-4, "{total}");
        assert!(point[4 * side + 4][1] < 0.5 && point[4 * side + 5][1] > 0.05 && point[5 * side + 4][1] > 0.05);
        assert_eq!(point[4 * side + 3], point[4 * side + 5]);
    }
}
