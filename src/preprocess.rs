//! CLIP image preprocessing bit for bit as open_clip does it: PIL bicubic resize of the short side, centre crop, normalise.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage};

use crate::error::{Error, Result};

pub const CLIP_MEAN: [f32; 3] = [0.48145466, 0.4578275, 0.40821073];
/// OpenAI's published digits, kept verbatim: they round to the same f32 values torch uses.
#[allow(clippy::excessive_precision)]
pub const CLIP_STD: [f32; 3] = [0.26862954, 0.26130258, 0.27577711];
/// Larger images are refused before their pixels are decoded (a decompression bomb costs nothing).
pub const MAX_IMAGE_PIXELS: u64 = 64 * 1024 * 1024;
/// Image files above this are refused before any byte is read (README: limits).
pub const MAX_IMAGE_FILE_BYTES: u64 = 256 << 20;

/// Reads and decodes an image file (a regular file of at most `MAX_IMAGE_FILE_BYTES`), named by its path in errors.
#[cfg(not(target_arch = "wasm32"))]
pub fn read_image_file(path: &std::path::Path) -> Result<RgbImage> {
    let bytes = crate::read_regular_file(path, MAX_IMAGE_FILE_BYTES)?;
    decode_image(&bytes, &path.display().to_string())
}

/// Longest side accepted, checked from the header.
pub const MAX_IMAGE_SIDE: u32 = 16384;
/// What a decoder may allocate: the largest accepted image as 16-bit RGBA.
const MAX_DECODE_BYTES: u64 = MAX_IMAGE_PIXELS * 8;

/// Decodes PNG, JPEG or WebP (format guessed from the bytes) to RGB the way PIL's `convert("RGB")` does:
/// alpha is dropped, not composited. `name` only labels errors.
pub fn decode_image(bytes: &[u8], name: &str) -> Result<RgbImage> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::image(name, format!("cannot read image data: {e}")))?;
    match reader.format() {
        Some(ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::WebP) => {}
        Some(other) => {
            return Err(Error::image(name, format!("{other:?} images are not supported (PNG, JPEG or WebP only)")));
        }
        None => return Err(Error::image(name, "not a PNG, JPEG or WebP image")),
    }
    if reader.format() == Some(ImageFormat::Jpeg) && !jpeg_is_complete(bytes) {
        // The JPEG decoder fills a cut-off scan with grey and says nothing; Pillow refuses such a file, and so do we.
        return Err(Error::image(name, "truncated JPEG: the image data ends before its end-of-image marker"));
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let decoder = reader.into_decoder().map_err(|e| decode_error(name, e))?;
    let (width, height) = decoder.dimensions();
    check_size(width, height, name)?;
    if decoder.total_bytes() > MAX_DECODE_BYTES {
        return Err(Error::image(name, format!("{width}x{height} image needs more memory than allowed to decode")));
    }
    let image = DynamicImage::from_decoder(decoder).map_err(|e| decode_error(name, e))?;
    Ok(to_rgb_like_pil(image))
}

/// Whether a JPEG's last scan is followed by its end-of-image marker (FF D9). Inside entropy-coded data a 0xFF byte
/// is always followed by 0x00 or a restart marker, so an FF D9 after the last start-of-scan (FF DA) is the real end,
/// not an embedded thumbnail's, which comes earlier.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let Some(last_scan) = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]) else { return false };
    bytes[last_scan..].windows(2).any(|w| w == [0xFF, 0xD9])
}

fn check_size(width: u32, height: u32, name: &str) -> Result<()> {
    if width == 0 || height == 0 {
        return Err(Error::image(name, format!("image is empty ({width}x{height})")));
    }
    if width > MAX_IMAGE_SIDE || height > MAX_IMAGE_SIDE || width as u64 * height as u64 > MAX_IMAGE_PIXELS {
        return Err(Error::image(
            name,
            format!(
                "{width}x{height} image is too large (at most {MAX_IMAGE_SIDE} pixels a side and {} megapixels)",
                MAX_IMAGE_PIXELS / (1024 * 1024)
            ),
        ));
    }
    Ok(())
}

fn decode_error(name: &str, e: image::ImageError) -> Error {
    use image::ImageError as E;
    let message = match &e {
        E::Limits(_) => format!("image is too large to decode safely (at most {MAX_IMAGE_SIDE} pixels a side): {e}"),
        E::IoError(_) => format!("truncated or unreadable image data: {e}"),
        E::Unsupported(_) => format!("unsupported image: {e}"),
        _ => format!("cannot decode image: {e}"),
    };
    Error::image(name, message)
}

/// PIL opens 16-bit colour and grey+alpha PNGs as 8-bit from the high byte of each sample, and 16-bit grey as
/// "I;16", which `convert("RGB")` clips at 255; the image crate would round to 8 bits instead, so those cases are
/// done by hand (checked against Pillow 13 on every PNG colour type).
fn to_rgb_like_pil(image: DynamicImage) -> RgbImage {
    let (w, h) = (image.width(), image.height());
    match image {
        DynamicImage::ImageRgb8(rgb) => rgb,
        DynamicImage::ImageRgb16(img) => {
            RgbImage::from_fn(w, h, |x, y| image::Rgb(img.get_pixel(x, y).0.map(|v| (v >> 8) as u8)))
        }
        DynamicImage::ImageRgba16(img) => RgbImage::from_fn(w, h, |x, y| {
            let [r, g, b, _] = img.get_pixel(x, y).0;
            image::Rgb([r, g, b].map(|v| (v >> 8) as u8))
        }),
        DynamicImage::ImageLuma16(img) => RgbImage::from_fn(w, h, |x, y| {
            let v = img.get_pixel(x, y).0[0].min(255) as u8;
            image::Rgb([v, v, v])
        }),
        DynamicImage::ImageLumaA16(img) => RgbImage::from_fn(w, h, |x, y| {
            let v = (img.get_pixel(x, y).0[0] >> 8) as u8;
            image::Rgb([v, v, v])
        }),
        // 8-bit grey, grey+alpha and RGBA: channel copy without compositing, as PIL does.
        other => other.to_rgb8(),
    }
}

/// A browser canvas `ImageData` buffer (RGBA, row-major) to RGB, alpha dropped.
pub fn rgba_to_rgb(rgba: &[u8], width: u32, height: u32, name: &str) -> Result<RgbImage> {
    check_size(width, height, name)?;
    let expected = width as usize * height as usize * 4;
    if rgba.len() != expected {
        return Err(Error::image(
            name,
            format!("RGBA buffer has {} bytes but {width}x{height} pixels need {expected}", rgba.len()),
        ));
    }
    let rgb: Vec<u8> = rgba.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect();
    RgbImage::from_raw(width, height, rgb).ok_or_else(|| Error::image(name, "RGB buffer size mismatch"))
}

// ---- Pillow's Resample.c (ImagingResample with the BICUBIC filter, 8 bits per channel) ----

/// Fixed-point fraction bits of Pillow's 8-bit resampler: 32 bits minus 8 for the value, minus 2 for overshoot.
const PRECISION_BITS: u32 = 32 - 8 - 2;
const BICUBIC_SUPPORT: f64 = 2.0;

fn bicubic_filter(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Per output position: the first input index, how many inputs it reads, and `ksize` fixed-point weights.
struct Coeffs {
    ksize: usize,
    bounds: Vec<(usize, usize)>,
    weights: Vec<i32>,
}

/// `precompute_coeffs` + `normalize_coeffs_8bpc` for the whole-image box `(0, in_size)`.
fn precompute_coeffs(in_size: u32, out_size: u32) -> Coeffs {
    let scale = in_size as f64 / out_size as f64;
    // Downscaling widens the kernel so that every input pixel contributes (antialiasing).
    let filterscale = scale.max(1.0);
    let support = BICUBIC_SUPPORT * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size as usize);
    let mut weights = vec![0i32; out_size as usize * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size as usize {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C's (int) cast truncates toward zero; `as` does the same.
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) - xmin;
        let count = xmax.max(0) as usize;
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(count) {
            let w = bicubic_filter(((x as i64 + xmin) as f64 - center + 0.5) * ss);
            *kx = w;
            ww += w;
        }
        let row = &mut weights[xx * ksize..(xx + 1) * ksize];
        for (x, &kx) in k.iter().enumerate().take(count) {
            let kx = if ww != 0.0 { kx / ww } else { kx };
            let scaled = kx * (1u32 << PRECISION_BITS) as f64;
            row[x] = if kx < 0.0 { (-0.5 + scaled) as i32 } else { (0.5 + scaled) as i32 };
        }
        bounds.push((xmin as usize, count));
    }
    Coeffs { ksize, bounds, weights }
}

fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Horizontal pass over rows `first_row..first_row + rows` of `src` only (the rows the vertical pass will read).
fn resample_horizontal(src: &[u8], src_w: usize, first_row: usize, rows: usize, out_w: usize, c: &Coeffs) -> Vec<u8> {
    let mut out = vec![0u8; out_w * rows * 3];
    for y in 0..rows {
        let line = &src[(y + first_row) * src_w * 3..(y + first_row + 1) * src_w * 3];
        for (xx, &(xmin, count)) in c.bounds.iter().enumerate() {
            let k = &c.weights[xx * c.ksize..xx * c.ksize + count];
            let mut ss = [1i32 << (PRECISION_BITS - 1); 3];
            for (x, &kx) in k.iter().enumerate() {
                let p = &line[(xmin + x) * 3..(xmin + x) * 3 + 3];
                for ch in 0..3 {
                    ss[ch] += p[ch] as i32 * kx;
                }
            }
            let o = (y * out_w + xx) * 3;
            for ch in 0..3 {
                out[o + ch] = clip8(ss[ch]);
            }
        }
    }
    out
}

/// Vertical pass; `row_offset` is subtracted from the bounds when `src` holds only the rows the bounds need.
fn resample_vertical(src: &[u8], width: usize, row_offset: usize, c: &Coeffs) -> Vec<u8> {
    let out_h = c.bounds.len();
    let mut out = vec![0u8; width * out_h * 3];
    for (yy, &(ymin, count)) in c.bounds.iter().enumerate() {
        let k = &c.weights[yy * c.ksize..yy * c.ksize + count];
        let ymin = ymin - row_offset;
        for xx in 0..width {
            let mut ss = [1i32 << (PRECISION_BITS - 1); 3];
            for (y, &ky) in k.iter().enumerate() {
                let p = &src[((ymin + y) * width + xx) * 3..((ymin + y) * width + xx) * 3 + 3];
                for ch in 0..3 {
                    ss[ch] += p[ch] as i32 * ky;
                }
            }
            let o = (yy * width + xx) * 3;
            for ch in 0..3 {
                out[o + ch] = clip8(ss[ch]);
            }
        }
    }
    out
}

/// Pillow's `Image.resize((width, height), Image.BICUBIC)` on an RGB image, bit for bit (Pillow 13, the reference).
pub fn resize_bicubic(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (in_w, in_h) = img.dimensions();
    if (in_w, in_h) == (width, height) {
        return img.clone();
    }
    if width == 0 || height == 0 || in_w == 0 || in_h == 0 {
        return RgbImage::new(width, height);
    }
    let horiz = precompute_coeffs(in_w, width);
    let vert = precompute_coeffs(in_h, height);
    let need_horizontal = width != in_w;
    let need_vertical = height != in_h;
    // Pillow 13 runs the vertical pass first when the height shrinks by more than twice as many pixels as the width
    // (Pillow <= 12 always went horizontal first). The 8-bit intermediate makes the order visible in the output.
    let vertical_first = height < in_h && ((in_w as f64 - width as f64) < (in_h as f64 - height as f64) / 2.0);
    let src = img.as_raw();
    let out = if vertical_first {
        let tmp = resample_vertical(src, in_w as usize, 0, &vert);
        if need_horizontal {
            resample_horizontal(&tmp, in_w as usize, 0, height as usize, width as usize, &horiz)
        } else {
            tmp
        }
    } else if need_horizontal {
        // Only the rows the vertical pass will read are resampled horizontally.
        let (first, rows) = if need_vertical {
            let (last_min, last_count) = vert.bounds[vert.bounds.len() - 1];
            (vert.bounds[0].0, last_min + last_count - vert.bounds[0].0)
        } else {
            (0, in_h as usize)
        };
        let tmp = resample_horizontal(src, in_w as usize, first, rows, width as usize, &horiz);
        if need_vertical { resample_vertical(&tmp, width as usize, first, &vert) } else { tmp }
    } else {
        resample_vertical(src, in_w as usize, 0, &vert)
    };
    // Sizes are consistent by construction; an empty image is the only conceivable mismatch.
    RgbImage::from_raw(width, height, out).unwrap_or_else(|| RgbImage::new(width, height))
}

/// torchvision `Resize(size)` on a PIL image: the short side becomes `size`, the long side `int(size * long / short)`.
pub fn resize_shortest_side(img: &RgbImage, size: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    if w == 0 || h == 0 {
        return img.clone();
    }
    let (short, long) = if w <= h { (w, h) } else { (h, w) };
    // Python divides two ints into a correctly rounded double, as f64 division of these exact values does.
    let new_long = (size as u64 * long as u64) as f64 / short as f64;
    let new_long = new_long as u32;
    let (new_w, new_h) = if w <= h { (size, new_long) } else { (new_long, size) };
    if (new_w, new_h) == (w, h) {
        return img.clone();
    }
    resize_bicubic(img, new_w, new_h)
}

/// Python's `round(margin / 2)`: halves go to the even neighbour.
fn crop_offset(len: u32, size: u32) -> u32 {
    let margin = len - size;
    let half = margin / 2;
    if margin % 2 == 1 && half % 2 == 1 { half + 1 } else { half }
}

/// torchvision `CenterCrop(size)` for an image at least `size` on both sides.
pub fn center_crop(img: &RgbImage, size: u32) -> Result<RgbImage> {
    let (w, h) = img.dimensions();
    if size > w || size > h {
        return Err(Error::invalid(format!("cannot centre-crop {size}x{size} from a {w}x{h} image")));
    }
    let (top, left) = (crop_offset(h, size), crop_offset(w, size));
    Ok(image::imageops::crop_imm(img, left, top, size, size).to_image())
}

/// CHW floats in [0, 1]: `ToTensor` (uint8 / 255 in f32).
pub fn to_unit_chw(img: &RgbImage) -> Vec<f32> {
    let plane = img.width() as usize * img.height() as usize;
    let mut out = vec![0f32; plane * 3];
    for (i, p) in img.pixels().enumerate() {
        for ch in 0..3 {
            out[ch * plane + i] = p.0[ch] as f32 / 255.0;
        }
    }
    out
}

/// `Normalize(CLIP_MEAN, CLIP_STD)` on a [0, 1] CHW buffer of 3 planes; divides (not multiplies by 1/std) as torch does,
/// so results are bit-identical.
pub fn normalize_chw_in_place(x: &mut [f32]) {
    let plane = x.len() / 3;
    if plane == 0 {
        return;
    }
    for (ch, values) in x.chunks_exact_mut(plane).take(3).enumerate() {
        for v in values {
            *v = (*v - CLIP_MEAN[ch]) / CLIP_STD[ch];
        }
    }
}

/// `ToTensor` then `Normalize`: CHW f32.
pub fn normalize(img: &RgbImage) -> Vec<f32> {
    let mut x = to_unit_chw(img);
    normalize_chw_in_place(&mut x);
    x
}

/// The inverse of `to_unit_chw`: CHW values in [0, 1] (clamped, rounded) back to an 8-bit RGB image.
/// PNG bytes of an image (the one encoder every writer of images uses); `name` names it in errors.
pub fn encode_png(img: &RgbImage, name: &str) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .map_err(|e| Error::image(name, format!("encoding PNG: {e}")))?;
    Ok(bytes)
}

pub fn unit_chw_to_image(chw: &[f32], width: u32, height: u32) -> RgbImage {
    let plane = (width * height) as usize;
    RgbImage::from_fn(width, height, |x, y| {
        let i = (y * width + x) as usize;
        let byte = |c: usize| (chw[c * plane + i].clamp(0.0, 1.0) * 255.0).round() as u8;
        image::Rgb([byte(0), byte(1), byte(2)])
    })
}

/// Resize + centre crop to the model's input, pixels in [0, 1]: for pasting a patch before normalisation.
pub fn unit_pixels(img: &RgbImage, size: u32) -> Result<Vec<f32>> {
    let cropped = center_crop(&resize_shortest_side(img, size), size)?;
    Ok(to_unit_chw(&cropped))
}

/// open_clip's eval transform: resize the short side to `size` (PIL bicubic), centre crop `size`, normalise.
/// Returns `3 * size * size` floats (CHW); an empty image counts as black.
pub fn preprocess(img: &RgbImage, size: u32) -> Vec<f32> {
    let resized = resize_shortest_side(img, size);
    let cropped = center_crop(&resized, size).unwrap_or_else(|_| RgbImage::new(size, size));
    normalize(&cropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_offset_rounds_half_to_even() {
        // Python: round(0.5) = 0, round(1.5) = 2, round(2.5) = 2, round(43.0) = 43.
        assert_eq!(crop_offset(225, 224), 0);
        assert_eq!(crop_offset(227, 224), 2);
        assert_eq!(crop_offset(229, 224), 2);
        assert_eq!(crop_offset(310, 224), 43);
    }

    #[test]
    fn upscale_and_identity_and_degenerate_sizes() {
        let img = RgbImage::from_fn(5, 3, |x, y| image::Rgb([(x * 40) as u8, (y * 80) as u8, 7]));
        assert_eq!(resize_bicubic(&img, 5, 3), img);
        let up = resize_bicubic(&img, 11, 9);
        assert_eq!(up.dimensions(), (11, 9));
        // A constant channel stays constant through both passes (weights sum to 1 in fixed point).
        assert!(up.pixels().all(|p| p.0[2] == 7));
        assert_eq!(resize_bicubic(&img, 0, 4).dimensions(), (0, 4));
        assert_eq!(preprocess(&RgbImage::new(0, 0), 4).len(), 48);
    }

    #[test]
    fn normalize_is_unit_then_mean_std() {
        let img = RgbImage::from_pixel(2, 2, image::Rgb([0, 128, 255]));
        let x = normalize(&img);
        assert_eq!(x.len(), 12);
        assert_eq!(x[0], (0.0 - CLIP_MEAN[0]) / CLIP_STD[0]);
        assert_eq!(x[4], (128.0f32 / 255.0 - CLIP_MEAN[1]) / CLIP_STD[1]);
        assert_eq!(x[11], (1.0 - CLIP_MEAN[2]) / CLIP_STD[2]);
    }
}
