//! The DCGAN layers' convolutions on their smallest maps as matrix products over the whole batch: the same values as
//! Burn's conv modules, in one wide product per layer instead of one narrow product per image.
//!
//! Why: Burn's CPU backend lowers a convolution to one product per image. On the generator's and discriminator's
//! 4 x 4 maps that product is 16 columns wide, so the matrix kernel runs its narrowest tile and repacks the layer's
//! weights (8 M values) once per image. Folding the batch into the product gives one wide product forward and,
//! through autodiff, two backward. Measured on an AdvCLIP step at batch 8 on the bundled model: about 12 % less
//! time in the page (relaxed-SIMD build, 2 threads) and 9 % natively (README, "The browser's speed"). On 8 x 8 maps
//! and larger the extra copies of the activations cost more than the wider product gains, so Burn's convolution stays.
//! On a GPU backend Burn's own convolution kernels stay everywhere: there the product form only adds kernels (with
//! it on WebGPU too, the wasm-bindgen suite, whose AdvCLIP steps run on SwiftShader, took 264 s; 150-199 s without).

use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::tensor::Tensor;
use burn::tensor::ops::PadMode;

use crate::model::batch_split::is_cpu;

/// Maps of at most this many pixels per image (the convolution's output, or a transposed convolution's input) take
/// the product form.
const SMALL_MAP_PIXELS: usize = 16;

/// `conv.forward(x)`, on the CPU as one product for the discriminator's small maps: kernel 4, stride 2, padding 1,
/// and a kernel as large as its unpadded input (the head, which leaves one pixel).
pub(super) fn conv2d_forward(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    let plain = conv.bias.is_none() && conv.groups == 1 && conv.dilation == [1, 1] && is_cpu(&x.device());
    let stride2_pad1 = matches!(conv.padding, PaddingConfig2d::Explicit(1, 1, 1, 1)) && conv.stride == [2, 2];
    if plain && stride2_pad1 && conv.kernel_size == [4, 4] && h % 2 == 0 && w % 2 == 0 && h * w / 4 <= SMALL_MAP_PIXELS
    {
        return conv4_stride2_pad1(x, conv.weight.val());
    }
    if plain && conv.kernel_size == [h, w] && matches!(conv.padding, PaddingConfig2d::Valid) {
        return conv_whole_map(x, conv.weight.val());
    }
    conv.forward(x)
}

/// `conv.forward(x)`, on the CPU as one product for the generator's small maps: kernel 4, stride 2, padding 1, and
/// a 1 x 1 input (the noise) spread over the whole kernel.
pub(super) fn conv_transpose2d_forward(conv: &ConvTranspose2d, x: Tensor<4>) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    let plain = conv.bias.is_none()
        && conv.groups == 1
        && conv.dilation == [1, 1]
        && conv.padding_out == [0, 0]
        && is_cpu(&x.device());
    if plain
        && conv.kernel_size == [4, 4]
        && conv.stride == [2, 2]
        && conv.padding == [1, 1]
        && h * w <= SMALL_MAP_PIXELS
    {
        return conv_transpose4_stride2_pad1(x, conv.weight.val());
    }
    if plain && [h, w] == [1, 1] && conv.padding == [0, 0] {
        return conv_transpose_from_pixel(x, conv.weight.val());
    }
    conv.forward(x)
}

/// Conv2d, kernel 4, stride 2, padding 1, no bias: x [B, C, H, W] with H and W even, weight [Co, C, 4, 4],
/// output [B, Co, H/2, W/2].
fn conv4_stride2_pad1(x: Tensor<4>, weight: Tensor<4>) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    let co = weight.dims()[0];
    let (ho, wo) = (h / 2, w / 2);
    // Padded by one, the input is (Ho+1) x (Wo+1) blocks of 2 x 2 pixels. Kernel row kh = 2a + p of output row i
    // reads block row i + a at parity p, so the 4 x 4 window is 2 x 2 whole blocks, picked by (a, a2).
    let blocks = x
        .pad([(1, 1), (1, 1)], PadMode::Constant(0.0))
        .reshape([b, c, ho + 1, 2, wo + 1, 2])
        .permute([1, 3, 5, 0, 2, 4]); // [C, p, q, B, Ho+1, Wo+1]
    let shifted = |a: usize, a2: usize| blocks.clone().slice([0..c, 0..2, 0..2, 0..b, a..a + ho, a2..a2 + wo]);
    let by_row_block = |a: usize| Tensor::stack::<7>(vec![shifted(a, 0), shifted(a, 1)], 2); // [C, p, a2, q, B, Ho, Wo]
    // Rows ordered (c, a, p, a2, q) = (c, kh, kw): the weight's own layout, which is never copied.
    let columns = Tensor::stack::<8>(vec![by_row_block(0), by_row_block(1)], 1).reshape([16 * c, b * ho * wo]);
    weight.reshape([co, 16 * c]).matmul(columns).reshape([co, b, ho, wo]).swap_dims(0, 1)
}

/// Conv2d whose kernel covers its whole unpadded input (any stride): x [B, C, H, W], weight [Co, C, H, W],
/// output [B, Co, 1, 1].
fn conv_whole_map(x: Tensor<4>, weight: Tensor<4>) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    let co = weight.dims()[0];
    x.reshape([b, c * h * w]).matmul(weight.reshape([co, c * h * w]).transpose()).reshape([b, co, 1, 1])
}

/// ConvTranspose2d, kernel 4, stride 2, padding 1, no bias: x [B, C, H, W], weight [C, Co, 4, 4], output
/// [B, Co, 2H, 2W].
fn conv_transpose4_stride2_pad1(x: Tensor<4>, weight: Tensor<4>) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    let co = weight.dims()[1];
    // Every input pixel times the kernel, in the weight's own layout (never copied): [B*H*W, Co*16].
    let pixels = x.permute([0, 2, 3, 1]).reshape([b * h * w, c]);
    let spread = pixels.matmul(weight.reshape([c, co * 16])).reshape([b, h, w, co, 2, 2, 2, 2]); // [.., a, p, a2, q]
    // Input pixel i with kernel row kh = 2a + p lands on row 2i + kh = 2(i + a) + p of the uncropped output: block
    // row i + a, parity p. So each of the four (a, a2) is a whole-block shift, and the shifted blocks add up.
    let shifted = |a: usize, a2: usize| {
        spread
            .clone()
            .slice([0..b, 0..h, 0..w, 0..co, a..a + 1, 0..2, a2..a2 + 1, 0..2])
            .reshape([b, h, w, co, 2, 2])
            .pad([(0, 0), (a, 1 - a), (a2, 1 - a2), (0, 0), (0, 0), (0, 0)], PadMode::Constant(0.0))
    }; // [B, H+1, W+1, Co, p, q]
    let blocks = shifted(0, 0) + shifted(0, 1) + shifted(1, 0) + shifted(1, 1);
    let full = blocks
        .permute([0, 3, 1, 4, 2, 5]) // [B, Co, H+1, p, W+1, q]
        .reshape([b, co, 2 * h + 2, 2 * w + 2]);
    // Padding 1 crops one row and column on each side.
    full.slice([0..b, 0..co, 1..2 * h + 1, 1..2 * w + 1])
}

/// ConvTranspose2d of a 1 x 1 input with no padding (any stride): x [B, C, 1, 1], weight [C, Co, kh, kw], output
/// [B, Co, kh, kw], each input pixel spread over the whole kernel.
fn conv_transpose_from_pixel(x: Tensor<4>, weight: Tensor<4>) -> Tensor<4> {
    let [b, c, _, _] = x.dims();
    let [_, co, kh, kw] = weight.dims();
    x.reshape([b, c]).matmul(weight.reshape([c, co * kh * kw])).reshape([b, co, kh, kw])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::conv::{Conv2dConfig, ConvTranspose2dConfig};
    use burn::tensor::{Device, Distribution, Tolerance};

    fn random(shape: [usize; 4], device: &Device) -> Tensor<4> {
        Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
    }

    /// The product form against Burn's own convolution (another implementation: im2col per image, col2im): the
    /// output, and the gradients of the input and of `weight`, through the autodiff the training uses.
    fn assert_same(
        reference: impl Fn(Tensor<4>) -> Tensor<4>,
        ours: impl Fn(Tensor<4>) -> Tensor<4>,
        x: Tensor<4>,
        weight: Tensor<4>,
    ) {
        let (xr, xo) = (x.clone().require_grad(), x.require_grad());
        let (yr, yo) = (reference(xr.clone()), ours(xo.clone()));
        assert_eq!(yr.dims(), yo.dims());
        let close = |a: Tensor<4>, b: Tensor<4>| {
            a.into_data().assert_approx_eq::<f32>(&b.into_data(), Tolerance::absolute(1e-4))
        };
        close(yo.clone(), yr.clone());
        // A fixed random weighting of the outputs, so that every output's gradient counts.
        let weighting = random(yr.dims(), &yr.device());
        let (gr, go) = ((yr * weighting.clone()).sum().backward(), (yo * weighting).sum().backward());
        close(xo.grad(&go).unwrap(), xr.grad(&gr).unwrap());
        close(weight.grad(&go).unwrap(), weight.grad(&gr).unwrap());
    }

    #[test]
    fn stride2_conv_matches_burn() {
        let device = Device::flex().autodiff();
        device.seed(3);
        // Outputs of 12, 1 and 10 pixels: all take the product form.
        for (c, co, h, w) in [(3, 5, 8, 6), (4, 2, 2, 2), (6, 3, 4, 10)] {
            let conv = Conv2dConfig::new([c, co], [4, 4])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(false)
                .init(&device);
            let x = random([3, c, h, w], &device);
            assert_same(|x| conv.forward(x), |x| conv2d_forward(&conv, x), x, conv.weight.val());
        }
    }

    #[test]
    fn whole_map_conv_matches_burn() {
        let device = Device::flex().autodiff();
        device.seed(4);
        let conv = Conv2dConfig::new([5, 2], [3, 3]).with_stride([2, 2]).with_bias(false).init(&device);
        let x = random([4, 5, 3, 3], &device);
        assert_same(|x| conv.forward(x), |x| conv2d_forward(&conv, x), x, conv.weight.val());
    }

    #[test]
    fn stride2_transposed_conv_matches_burn() {
        let device = Device::flex().autodiff();
        device.seed(5);
        // Inputs of 12, 1 and 12 pixels: all take the product form.
        for (c, co, h, w) in [(3, 5, 4, 3), (2, 4, 1, 1), (5, 3, 6, 2)] {
            let conv = ConvTranspose2dConfig::new([c, co], [4, 4])
                .with_stride([2, 2])
                .with_padding([1, 1])
                .with_bias(false)
                .init(&device);
            let x = random([3, c, h, w], &device);
            assert_same(|x| conv.forward(x), |x| conv_transpose2d_forward(&conv, x), x, conv.weight.val());
        }
    }

    #[test]
    fn transposed_conv_of_a_pixel_matches_burn() {
        let device = Device::flex().autodiff();
        device.seed(6);
        let conv = ConvTranspose2dConfig::new([7, 3], [4, 4]).with_bias(false).init(&device);
        let x = random([2, 7, 1, 1], &device);
        assert_same(|x| conv.forward(x), |x| conv_transpose2d_forward(&conv, x), x, conv.weight.val());
    }

    #[test]
    fn only_small_maps_of_those_shapes_take_the_product_form() {
        let device = Device::flex();
        // Stride 3 with a bias, and a 16 x 16 map: the module's own forward, bit for bit.
        let odd = ConvTranspose2dConfig::new([2, 3], [4, 4]).with_stride([3, 3]).init(&device);
        let x = random([1, 2, 3, 3], &device);
        conv_transpose2d_forward(&odd, x.clone()).into_data().assert_eq(&odd.forward(x).into_data(), true);
        let large = Conv2dConfig::new([2, 3], [4, 4])
            .with_stride([2, 2])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .with_bias(false)
            .init(&device);
        let x = random([1, 2, 32, 32], &device);
        conv2d_forward(&large, x.clone()).into_data().assert_eq(&large.forward(x).into_data(), true);
    }
}
