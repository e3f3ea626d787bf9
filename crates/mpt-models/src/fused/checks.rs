//! Whole-tensor checks of the fused ops against burn's own ops: outputs, and the input gradients
//! of `Σ out ⊙ probe`, on any autodiff device. The unit tests run them on flex; the backend
//! smoke test (`tests/backend_smoke.rs`, feature `test-util`) on every backend compiled in.
//! Each check panics naming the op and the tensor that differ.

use burn::prelude::*;
use burn::tensor::Distribution;

use super::{attention, gelu, layer_norm, linear, rms_norm, softmax_last};

/// Row lengths: odd (no full SIMD lane), MiniLM's sequence (228) and width (384).
const WIDTHS: [usize; 3] = [7, 228, 384];

fn normal(shape: [usize; 3], device: &Device, mean: f64, std: f64) -> Tensor<3> {
    Tensor::<3>::random(shape, Distribution::Normal(mean, std), device)
}

fn assert_close<const D: usize>(op: &str, what: &str, got: Tensor<D>, want: Tensor<D>, tol: f32) {
    assert_eq!(got.dims(), want.dims(), "fused {op}: {what} has the wrong shape");
    let values = |t: Tensor<D>| t.into_data().try_to_vec::<f32>().expect("f32 tensors");
    let (got, want) = (values(got), values(want));
    let worst =
        got.iter().zip(&want).map(|(g, w)| (g - w).abs()).fold(0.0f32, |m, d| if d.is_nan() || d > m { d } else { m });
    assert!(worst <= tol, "fused {op}: {what} differs from burn's ops by up to {worst} (tolerance {tol})");
}

/// `fused` against `reference` on inputs `[2, 5, d]` and `[3, 17, d]` drawn with `std`.
fn check_unary(
    op: &str,
    device: &Device,
    d: usize,
    std: f64,
    tol: f32,
    fused: impl Fn(Tensor<3>) -> Tensor<3>,
    reference: impl Fn(Tensor<3>) -> Tensor<3>,
) {
    check_map(op, device, [[2, 5, d], [3, 17, d]], std, tol, fused, reference);
}

/// `fused` against `reference` on inputs of the given shapes drawn with `std`: the outputs,
/// and the input gradients of `Σ out ⊙ probe`.
fn check_map<const N: usize>(
    op: &str,
    device: &Device,
    shapes: [[usize; 3]; N],
    std: f64,
    tol: f32,
    fused: impl Fn(Tensor<3>) -> Tensor<3>,
    reference: impl Fn(Tensor<3>) -> Tensor<3>,
) {
    for shape in shapes {
        let x = normal(shape, device, 0.0, std).require_grad();
        let out = fused(x.clone());
        let expected = reference(x.clone());
        let probe = normal(expected.dims(), device, 0.0, 1.0);
        assert_close(op, "output", out.clone(), expected.clone(), tol);
        let got = x.grad(&(out * probe.clone()).sum().backward());
        let want = x.grad(&(expected * probe).sum().backward());
        match (got, want) {
            (Some(got), Some(want)) => assert_close(op, "input gradient", got, want, tol),
            (got, want) => {
                panic!("fused {op}: input gradient present: fused {}, burn {}", got.is_some(), want.is_some())
            }
        }
    }
}

/// Exact GELU.
pub fn check_gelu(device: &Device) {
    check_unary("gelu", device, 384, 3.0, 1e-5, gelu, burn::tensor::activation::gelu);
}

/// Softmax over the last axis, plain and with `f32::MIN`-masked entries.
pub fn check_softmax(device: &Device) {
    for d in WIDTHS {
        check_unary("softmax", device, d, 4.0, 1e-5, softmax_last, |x| burn::tensor::activation::softmax(x, 2));
    }
    let inner = device.clone().inner();
    let mut mask = vec![0.0f32; 9];
    for i in [2, 4, 8] {
        mask[i] = f32::MIN;
    }
    let x = normal([2, 4, 9], &inner, 0.0, 1.0) + Tensor::<1>::from_floats(mask.as_slice(), &inner).reshape([1, 1, 9]);
    assert_close("softmax", "masked output", softmax_last(x.clone()), burn::tensor::activation::softmax(x, 2), 1e-6);
}

/// LayerNorm with random affine weights.
pub fn check_layer_norm(device: &Device) {
    let inner = device.clone().inner();
    for d in WIDTHS {
        let gamma = Tensor::<1>::random([d], Distribution::Normal(1.0, 0.5), &inner);
        let beta = Tensor::<1>::random([d], Distribution::Normal(0.0, 0.5), &inner);
        check_unary(
            "layer_norm",
            device,
            d,
            2.0,
            2e-5,
            |x| layer_norm(x, gamma.clone(), beta.clone(), 1e-12),
            |x| burn::tensor::module::layer_norm(x, gamma.clone(), Some(beta.clone()), 1e-12),
        );
    }
}

/// T5's RMS norm against its composition from tensor ops.
pub fn check_rms_norm(device: &Device) {
    let inner = device.clone().inner();
    for d in WIDTHS {
        let weight = Tensor::<1>::random([d], Distribution::Normal(1.0, 0.5), &inner);
        check_unary(
            "rms_norm",
            device,
            d,
            2.0,
            2e-5,
            |x| rms_norm(x, weight.clone(), 1e-6),
            |x| {
                let variance = x.clone().square().mean_dim(2);
                x * (variance + 1e-6).sqrt().recip() * weight.clone().unsqueeze::<3>()
            },
        );
    }
}

/// Linear maps `[d_in, d_out]` (square and not), with and without a bias, on inputs of a few
/// rows and of more rows than one block of the host kernel (`[3, 300, d_in]`).
pub fn check_linear(device: &Device) {
    let inner = device.clone().inner();
    for (d_in, d_out) in [(7, 7), (384, 384), (48, 160), (160, 48)] {
        let weight = Tensor::<2>::random([d_in, d_out], Distribution::Normal(0.0, 0.1), &inner);
        let bias = Tensor::<1>::random([d_out], Distribution::Normal(0.0, 0.5), &inner);
        for bias in [Some(bias), None] {
            check_map(
                "linear",
                device,
                [[2, 5, d_in], [3, 300, d_in]],
                1.0,
                1e-4,
                |x| linear(x, weight.clone(), bias.clone()),
                |x| burn::tensor::module::linear(x, weight.clone(), bias.clone()),
            );
        }
    }
}

/// Attention: queries and keys of equal length with a broadcast padding bias `[B, 1, 1, L]`
/// and with a full `[B, H, L, L]` bias; then heads split from `[B, L, H·dh]` rows (strided
/// views, as the models pass them) with fewer queries than keys and a per-head bias
/// `[1, H, Lq, Lk]` plus padding (T5's cross attention). The output and the gradients of `q`,
/// `k` and `v`, also through merging the heads back.
pub fn check_attention(device: &Device) {
    let inner = device.clone().inner();
    let [b, h, l, dh] = [2, 3, 9, 8];
    let normal4 =
        |shape: [usize; 4], device: &Device| Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), device);
    let mut keep = vec![1.0f32; b * l];
    keep[l - 1] = 0.0;
    keep[2 * l - 3] = 0.0;
    let keep = Tensor::<1>::from_floats(keep.as_slice(), &inner).reshape([b, 1, 1, l]);
    let padding = (keep.neg() + 1.0) * f32::MIN as f64;
    let full = padding.clone() + normal4([b, h, l, l], &inner);
    for bias in [padding.clone(), full] {
        let heads = || normal4([b, h, l, dh], device).require_grad();
        compare_attention([heads(), heads(), heads()], bias, false);
    }
    let lq = 4;
    let rows = |len: usize| normal([b, len, h * dh], device, 0.0, 1.0).require_grad();
    let cross = normal4([1, h, lq, l], &inner) + padding;
    compare_attention([rows(lq), rows(l), rows(l)], cross, true);
}

/// [`attention`] against burn's ops on `[q, k, v]` (`[B, H, L, dh]`, or `[B, L, H·dh]` rows
/// that are split into heads when `split`), with gradients through a random projection.
fn compare_attention<const D: usize>(qkv: [Tensor<D>; 3], bias: Tensor<4>, split: bool) {
    let heads = bias.dims()[1];
    let as_heads = |x: Tensor<D>| -> Tensor<4> {
        if split {
            let [b, l, d] = x.dims()[..].try_into().expect("rows are [B, L, d]");
            x.reshape([b, l, heads, d / heads]).swap_dims(1, 2)
        } else {
            let d = x.dims();
            x.reshape([d[0], d[1], d[2], d[3]])
        }
    };
    let [q, k, v] = qkv;
    let out = attention(as_heads(q.clone()), as_heads(k.clone()), as_heads(v.clone()), bias.clone());
    let expected =
        burn::tensor::activation::softmax(as_heads(q.clone()).matmul(as_heads(k.clone()).swap_dims(2, 3)) + bias, 3)
            .matmul(as_heads(v.clone()));
    assert_close("attention", "output", out.clone(), expected.clone(), 1e-5);
    // Merge the heads back as the models do (a reshape of the transposed heads).
    let merge = |x: Tensor<4>| {
        let [b, h, l, dh] = x.dims();
        x.swap_dims(1, 2).reshape([b, l, h * dh])
    };
    let probe = normal(merge(expected.clone()).dims(), &out.device(), 0.0, 1.0);
    let got = (merge(out) * probe.clone()).sum().backward();
    let want = (merge(expected) * probe).sum().backward();
    for (name, x) in [("q gradient", &q), ("k gradient", &k), ("v gradient", &v)] {
        match (x.grad(&got), x.grad(&want)) {
            (Some(g), Some(w)) => assert_close("attention", name, g, w, 1e-5),
            _ => panic!("fused attention: {name} missing"),
        }
    }
}

/// A transposed (non-contiguous) input.
pub fn check_non_contiguous(device: &Device) {
    let x = Tensor::<3>::random([4, 6, 10], Distribution::Normal(0.0, 2.0), &device.clone().inner()).swap_dims(1, 2);
    assert_close(
        "softmax",
        "output on a transposed input",
        softmax_last(x.clone()),
        burn::tensor::activation::softmax(x.clone(), 2),
        1e-6,
    );
    assert_close("gelu", "output on a transposed input", gelu(x.clone()), burn::tensor::activation::gelu(x), 1e-5);
}

/// Every check above on `device` (an autodiff device).
pub fn check_all(device: &Device) {
    device.seed(7);
    check_gelu(device);
    check_softmax(device);
    check_layer_norm(device);
    check_rms_norm(device);
    check_linear(device);
    check_attention(device);
    check_non_contiguous(device);
}
