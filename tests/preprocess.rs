//! Image preprocessing against open_clip/PIL (bit-exact for PNG) and decoding of bad or hostile input.

use std::collections::HashMap;

use advclip::preprocess::{
    CLIP_STD, center_crop, decode_image, normalize, preprocess, resize_bicubic, resize_shortest_side, rgba_to_rgb,
};
use image::RgbImage;
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

fn fixture_path(rel: &str) -> String {
    format!("{}/tests/fixtures/{rel}", env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> Vec<u8> {
    let path = fixture_path(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

struct Reference {
    u8s: HashMap<String, (Vec<usize>, Vec<u8>)>,
    f32s: HashMap<String, (Vec<usize>, Vec<f32>)>,
    meta: Value,
}

fn reference() -> Reference {
    let bytes = read("preprocess.safetensors");
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (mut u8s, mut f32s) = (HashMap::new(), HashMap::new());
    for (name, view) in st.tensors() {
        let shape = view.shape().to_vec();
        match view.dtype() {
            Dtype::U8 => {
                u8s.insert(name, (shape, view.data().to_vec()));
            }
            Dtype::F32 => {
                let v = view.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
                f32s.insert(name, (shape, v));
            }
            other => panic!("{name}: unexpected dtype {other:?}"),
        }
    }
    let meta = serde_json::from_slice(&read("preprocess.json")).unwrap();
    Reference { u8s, f32s, meta }
}

/// Minimal SHA-256, to compare the 224-pixel outputs with the digests in preprocess.json.
fn sha256_hex(data: &[u8]) -> String {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
        0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
        0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
        0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
        0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
        0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
        0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] =
        [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 64];
        for i in 0..16 {
            w[i] = u32::from_be_bytes(block[i * 4..i * 4 + 4].try_into().unwrap());
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16].wrapping_add(s0).wrapping_add(w[i - 7]).wrapping_add(s1);
        }
        let mut v = h;
        for i in 0..64 {
            let s1 = v[4].rotate_right(6) ^ v[4].rotate_right(11) ^ v[4].rotate_right(25);
            let ch = (v[4] & v[5]) ^ (!v[4] & v[6]);
            let t1 = v[7].wrapping_add(s1).wrapping_add(ch).wrapping_add(K[i]).wrapping_add(w[i]);
            let s0 = v[0].rotate_right(2) ^ v[0].rotate_right(13) ^ v[0].rotate_right(22);
            let maj = (v[0] & v[1]) ^ (v[0] & v[2]) ^ (v[1] & v[2]);
            let t2 = s0.wrapping_add(maj);
            v = [t1.wrapping_add(t2), v[0], v[1], v[2], v[3].wrapping_add(t1), v[4], v[5], v[6]];
        }
        for (a, b) in h.iter_mut().zip(v) {
            *a = a.wrapping_add(b);
        }
    }
    h.iter().map(|x| format!("{x:08x}")).collect()
}

/// Largest and mean absolute difference in grey levels.
fn diff_u8(a: &[u8], b: &[u8]) -> (u8, f64) {
    assert_eq!(a.len(), b.len());
    let max = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).max().unwrap_or(0);
    let sum: u64 = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y) as u64).sum();
    (max, sum as f64 / a.len().max(1) as f64)
}

/// Every fixture image at 224 and 32: the resized image (before the crop), the crop offsets and the pixels.
#[test]
fn matches_open_clip_on_fixture_images() {
    let r = reference();
    let images = r.meta["images"].as_object().unwrap();
    assert!(images.len() >= 6);
    let mut report = Vec::new();
    for (name, info) in images {
        let file = info["file"].as_str().unwrap();
        let is_jpeg = file.ends_with(".jpg") || file.ends_with(".jpeg");
        let img = decode_image(&read(file), file).unwrap();
        assert_eq!(img.dimensions(), (info["width"].as_u64().unwrap() as u32, info["height"].as_u64().unwrap() as u32));
        for size in [224u32, 32] {
            let key = format!("{name}@{size}");
            let meta = &info[size.to_string()];
            let resized = resize_shortest_side(&img, size);
            let (shape, want) = &r.u8s[&format!("{key}/resized")];
            assert_eq!([resized.height() as usize, resized.width() as usize, 3], shape[..], "{key}: resized shape");
            let (resize_diff, resize_mean) = diff_u8(resized.as_raw(), want);
            let pixels = preprocess(&img, size);
            assert_eq!(pixels.len(), (3 * size * size) as usize);
            // The crop offsets: cropping the reference's own resized image must give our pixels' source.
            let reference_resized = RgbImage::from_raw(shape[1] as u32, shape[0] as u32, want.clone()).unwrap();
            let cropped = center_crop(&reference_resized, size).unwrap();
            let (top, left) = (meta["crop_top"].as_u64().unwrap() as u32, meta["crop_left"].as_u64().unwrap() as u32);
            let expect_crop = image::imageops::crop_imm(&reference_resized, left, top, size, size).to_image();
            assert_eq!(cropped, expect_crop, "{key}: crop offsets");
            let pixel_diff = match r.f32s.get(&format!("{key}/pixels")) {
                Some((_, want_px)) => pixels.iter().zip(want_px).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max),
                None => f32::NAN,
            };
            let bytes: Vec<u8> = pixels.iter().flat_map(|v| v.to_le_bytes()).collect();
            let sha_match = sha256_hex(&bytes) == meta["pixels_sha256"].as_str().unwrap();
            let sum: f64 = pixels.iter().map(|&v| v as f64).sum();
            let sum_diff = (sum - meta["pixels_sum"].as_f64().unwrap()).abs();
            report.push(format!(
                "{key}: resized max diff {resize_diff} (mean {resize_mean:.3}), pixels max diff {pixel_diff:e}, sha256 equal {sha_match}, sum diff {sum_diff:.2e}"
            ));
            // The reference pipeline on the reference resize, so that JPEG decoder differences do not hide a
            // crop or normalisation error.
            let from_reference = normalize(&cropped);
            if let Some((_, want_px)) = r.f32s.get(&format!("{key}/pixels")) {
                assert_eq!(&from_reference, want_px, "{key}: crop + normalise of the reference resize");
            }
            if is_jpeg {
                // zune-jpeg and libjpeg-turbo upsample chroma and round their IDCT differently: up to 6 levels
                // on a few pixels of this 4:2:0 file before resizing, which bicubic overshoot can stretch a little.
                assert!(resize_diff <= 8 && resize_mean < 0.5, "{key}: JPEG resized differs by {resize_diff}");
                if pixel_diff.is_finite() {
                    assert!(pixel_diff <= 8.0 / 255.0 / CLIP_STD[2], "{key}: JPEG pixels differ by {pixel_diff}");
                }
            } else {
                assert_eq!(resize_diff, 0, "{key}: PNG resize must be bit-exact");
                if pixel_diff.is_finite() {
                    assert!(pixel_diff <= 1.0 / 255.0 / CLIP_STD[1], "{key}: pixels differ by {pixel_diff}");
                }
                assert!(sha_match, "{key}: pixels are not bit-identical to open_clip's");
            }
        }
    }
    eprintln!("{}", report.join("\n"));
}

/// Every PNG colour type and bit depth, and a WebP, decode to what PIL's `convert("RGB")` gives.
#[test]
fn colour_types_decode_like_pil() {
    let modes: Value = serde_json::from_slice(&read("png_modes.json")).unwrap();
    let modes = modes.as_object().unwrap();
    assert!(modes.len() >= 10);
    for (file, info) in modes {
        let img = decode_image(&read(&format!("png_modes/{file}")), file).unwrap();
        let want: Vec<u8> = info["rgb"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u8).collect();
        assert_eq!(img.as_raw(), &want, "{file} (PIL mode {})", info["pil_mode"]);
    }
}

/// The synthetic input of gen_resize_cases.py.
fn synthetic(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        image::Rgb(std::array::from_fn(|c| {
            let (x, y, c) = (x as u64, y as u64, c as u64);
            let v = ((x * 37 + y * 91 + c * 53) * 2654435761) % (1 << 32);
            let noise = (v >> 13) & 63;
            let ramp = (x * 255 / (w as u64 - 1).max(1) + y * 255 / (h as u64 - 1).max(1)) / 2;
            ((ramp + noise) % 256) as u8
        }))
    })
}

/// Arbitrary resizes, both of Pillow 13's pass orders, 1-pixel sides, and torchvision's Resize(int) on tall and wide
/// images: bit-exact.
#[test]
fn resize_matches_pillow_in_every_direction() {
    let bytes = read("resize_cases.safetensors");
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut checked = 0;
    for (key, view) in st.tensors() {
        let (short, spec) = match key.strip_prefix("short/") {
            Some(rest) => (true, rest),
            None => (false, key.as_str()),
        };
        let nums: Vec<u32> =
            spec.split(['_', '-', '>', '@']).filter(|p| !p.is_empty()).map(|p| p.parse().unwrap()).collect();
        let input = synthetic(nums[0], nums[1]);
        let got = if short { resize_shortest_side(&input, nums[2]) } else { resize_bicubic(&input, nums[2], nums[3]) };
        assert_eq!([got.height() as usize, got.width() as usize, 3], view.shape()[..], "{key}: shape");
        let (max, mean) = diff_u8(got.as_raw(), view.data());
        assert_eq!(max, 0, "{key}: differs from Pillow by up to {max} levels (mean {mean:.3})");
        checked += 1;
    }
    assert!(checked >= 20);
}

fn assert_image_err(result: advclip::Result<RgbImage>, name: &str, what: &str) {
    match result {
        Ok(img) => panic!("{what}: decoded a {}x{} image instead of failing", img.width(), img.height()),
        Err(e) => {
            let message = e.to_string();
            assert!(message.contains(name), "{what}: error {message:?} does not name {name:?}");
            eprintln!("{what}: {message}");
        }
    }
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
    out
}

/// A valid PNG signature and IHDR for an 8-bit RGB image of the given size, with a tiny (wrong) IDAT.
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    png.extend(png_chunk(b"IHDR", &ihdr));
    // zlib stream of a few zero bytes: far too little data for the claimed size.
    png.extend(png_chunk(b"IDAT", &[0x78, 0x9c, 0x63, 0x60, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01]));
    png.extend(png_chunk(b"IEND", &[]));
    png
}

#[test]
fn bad_input_gives_errors_that_name_it() {
    assert_image_err(decode_image(b"this is not an image at all", "notes.txt"), "notes.txt", "non-image bytes");
    assert_image_err(decode_image(&[], "empty.png"), "empty.png", "empty input");

    let png = read("images/landscape_301x217.png");
    assert_image_err(decode_image(&png[..png.len() / 2], "half.png"), "half.png", "truncated PNG");
    assert_image_err(decode_image(&png[..40], "header-only.png"), "header-only.png", "PNG cut after the header");
    let jpg = read("images/photo_260x200.jpg");
    assert_image_err(decode_image(&jpg[..200], "cut.jpg"), "cut.jpg", "truncated JPEG");

    // Decompression bombs are refused from the header alone, before any pixel buffer exists.
    assert_image_err(decode_image(&png_claiming(100_000, 100_000), "bomb.png"), "bomb.png", "10-gigapixel PNG header");
    assert_image_err(decode_image(&png_claiming(16_000, 16_000), "wide.png"), "wide.png", "256-megapixel PNG header");
    assert_image_err(decode_image(&png_claiming(0, 10), "zero.png"), "zero.png", "zero-width PNG header");
    // A sane header with missing pixel data is an ordinary decode error.
    assert_image_err(decode_image(&png_claiming(64, 64), "short.png"), "short.png", "PNG without its pixel data");

    assert_image_err(rgba_to_rgb(&[0; 15], 2, 2, "canvas"), "canvas", "RGBA buffer one byte short");
    assert_image_err(rgba_to_rgb(&[0; 16], 2, 3, "canvas"), "canvas", "RGBA buffer for the wrong height");
    assert_image_err(rgba_to_rgb(&[], 0, 0, "blank canvas"), "blank canvas", "empty canvas");
    assert_image_err(rgba_to_rgb(&[], u32::MAX, u32::MAX, "huge canvas"), "huge canvas", "overflowing canvas size");
}

#[test]
fn rgba_buffer_drops_alpha() {
    let rgba = [10, 20, 30, 0, 40, 50, 60, 255];
    let rgb = rgba_to_rgb(&rgba, 2, 1, "canvas").unwrap();
    assert_eq!(rgb.as_raw(), &[10, 20, 30, 40, 50, 60]);
}

#[test]
fn center_crop_refuses_a_larger_crop() {
    let img = RgbImage::new(10, 20);
    let err = center_crop(&img, 11).unwrap_err().to_string();
    assert!(err.contains("10x20"), "{err}");
}
