//! Fused exact GELU, last-axis softmax, LayerNorm, RMS norm, linear maps and dot-product
//! attention, each with a hand-written backward pass, as a burn backend extension ([`FusedOps`]).
//!
//! burn's autodiff differentiates `softmax`, `layer_norm` and attention as chains of primitive
//! ops (a pass over memory and a stored intermediate each), and flex evaluates GELU with a
//! scalar libm `erf` per element. Here each op is one graph node on an autodiff device, with a
//! backward written for it:
//!
//! - flex: forward and backward are one pass over the rows each, with vectorised `exp`/`erf`
//!   ([`cpu`]); attention runs one (batch, head) pair per task, gemm calls around that softmax
//!   ([`cpu::attention`]); linear maps run in row blocks on OpenBLAS's `sgemm` when the system
//!   has OpenBLAS, on gemm's kernels otherwise ([`cpu::linear`], [`cpu::blas`]; `MPT_BLAS`).
//! - libtorch (feature `tch`): torch's own kernels: `softmax`/`_softmax_backward_data`,
//!   `layer_norm`, `gelu`/`gelu_backward`, `linear`, the flash-attention CPU kernels forward
//!   and backward, a few torch ops for the norms' input gradients.
//! - other backends (wgpu, cuda), and tensors that are not f32: burn's own ops.
//!
//! Gradients reach the activations only: `gamma`, `beta`, `weight` and the attention `bias` are
//! frozen backbone values here, and one that requires a gradient takes burn's ops instead.
//! `MPT_FUSED=0` in the environment turns the fused path off (for A/B measurements).

#[cfg(any(test, feature = "test-util"))]
pub mod checks;
mod cpu;

use std::sync::OnceLock;

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, NodeGuard, Ops, OpsKind, unary};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, Dispatch, DispatchDevice, Flex, backend_extension};
use burn::prelude::*;
use burn::tensor::DType;

/// Fused ops with their backward passes; implemented for flex, libtorch and autodiff over them.
#[backend_extension(Flex, LibTorch: cfg(feature = "tch"), Autodiff)]
pub trait FusedOps: Backend {
    /// Exact GELU `x Φ(x)`, element-wise.
    fn fused_gelu(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// `grad · gelu'(x)`.
    fn fused_gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self>;
    /// Softmax over the last axis.
    fn fused_softmax(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// `y ⊙ (grad - Σ_last y ⊙ grad)` from the softmax output `y`.
    fn fused_softmax_backward(y: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self>;
    /// LayerNorm over the last axis (`gamma`, `beta`: `[d]`).
    fn fused_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self>;
    /// Input gradient of [`FusedOps::fused_layer_norm`].
    fn fused_layer_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self>;
    /// `x / sqrt(mean_last(x²) + eps) · weight` (T5's layer norm; `weight`: `[d]`).
    fn fused_rms_norm(x: FloatTensor<Self>, weight: FloatTensor<Self>, eps: f64) -> FloatTensor<Self>;
    /// Input gradient of [`FusedOps::fused_rms_norm`].
    fn fused_rms_norm_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self>;
    /// `x W + b` with `W` stored `[d_in, d_out]`; gradients reach `x` only.
    fn fused_linear(x: FloatTensor<Self>, weight: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self>;
    /// `x W` (no bias); gradients reach `x` only.
    fn fused_linear_no_bias(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self>;
    /// Input gradient of [`FusedOps::fused_linear`] and [`FusedOps::fused_linear_no_bias`]: `grad Wᵀ`.
    fn fused_linear_backward(weight: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self>;
    /// `softmax(q kᵀ + bias) v`, unscaled, over `[B, H, L, dh]` heads; `bias` broadcasts to
    /// `[B, H, Lq, Lk]` and gets no gradient.
    fn fused_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

/// The two halves of [`FusedOps::fused_attention`] the autodiff implementation records and
/// replays (not dispatched: called on the concrete backend only).
pub trait AttentionKernels: Backend {
    /// The output, and what the backward pass needs besides the inputs (flex: the attention
    /// probabilities; libtorch: the log-sum-exp of each score row).
    fn attention_forward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
    /// Gradients with respect to `q`, `k`, `v` from the output gradient.
    #[allow(clippy::too_many_arguments)]
    fn attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        out: FloatTensor<Self>,
        saved: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> [FloatTensor<Self>; 3];
}

/// What flex's linear maps multiply with, as `MPT_BLAS` selects (unset or `auto`: the system's
/// OpenBLAS if there is one, `off`: the gemm crate, a path: that OpenBLAS): a description for
/// logs and benchmark records, or the error of an `MPT_BLAS` that names an unusable library.
pub fn flex_linear_kernel() -> crate::Result<String> {
    cpu::blas::linear_kernel()
}

/// Whether the fused path is on (`MPT_FUSED=0` turns it off).
fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("MPT_FUSED").map_or(true, |v| v != "0"))
}

/// Whether `x` lives on a backend with a [`FusedOps`] implementation and is f32.
fn fusable<const D: usize>(x: &Tensor<D>) -> bool {
    if !enabled() || x.dtype() != DType::F32 {
        return false;
    }
    match x.device().inner().as_dispatch() {
        DispatchDevice::Flex(_) => true,
        #[cfg(feature = "tch")]
        DispatchDevice::LibTorch(_) => true,
        #[allow(unreachable_patterns)]
        _ => false,
    }
}

/// Whether a weight-like operand is f32 and needs no gradient (the fused ops give it none).
fn frozen_f32<const D: usize>(t: &Tensor<D>) -> bool {
    t.dtype() == DType::F32 && !t.is_require_grad()
}

/// Whether `t` has no elements. No kernel is handed such an operand (gemm's microkernels, reached
/// through burn-flex's matmul as well as through [`cpu::linear`], crash on them): the ops below
/// return their (empty or zero) result directly.
fn is_empty<const D: usize>(t: &Tensor<D>) -> bool {
    t.shape().num_elements() == 0
}

/// Exact GELU, `[..] -> [..]`.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if is_empty(&x) {
        return x;
    }
    if fusable(&x) {
        Tensor::from_dispatch(<Dispatch as FusedOps>::fused_gelu(x.into_dispatch()))
    } else {
        burn::tensor::activation::gelu(x)
    }
}

/// Softmax over the last axis, `[..] -> [..]`.
pub fn softmax_last<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if is_empty(&x) {
        return x;
    }
    if fusable(&x) {
        Tensor::from_dispatch(<Dispatch as FusedOps>::fused_softmax(x.into_dispatch()))
    } else {
        burn::tensor::activation::softmax(x, D - 1)
    }
}

/// LayerNorm over the last axis: `x` `[.., d]`, `gamma`, `beta` `[d]`.
pub fn layer_norm<const D: usize>(x: Tensor<D>, gamma: Tensor<1>, beta: Tensor<1>, eps: f64) -> Tensor<D> {
    if is_empty(&x) {
        return x;
    }
    if fusable(&x) && frozen_f32(&gamma) && frozen_f32(&beta) {
        Tensor::from_dispatch(<Dispatch as FusedOps>::fused_layer_norm(
            x.into_dispatch(),
            gamma.into_dispatch(),
            beta.into_dispatch(),
            eps,
        ))
    } else {
        burn::tensor::module::layer_norm(x, gamma, Some(beta), eps)
    }
}

/// RMS norm over the last axis: `x` `[.., d]`, `weight` `[d]`.
pub fn rms_norm<const D: usize>(x: Tensor<D>, weight: Tensor<1>, eps: f64) -> Tensor<D> {
    if is_empty(&x) {
        return x;
    }
    if fusable(&x) && frozen_f32(&weight) {
        Tensor::from_dispatch(<Dispatch as FusedOps>::fused_rms_norm(x.into_dispatch(), weight.into_dispatch(), eps))
    } else {
        let variance = x.clone().square().mean_dim(D - 1);
        x * (variance + eps).sqrt().recip() * weight.unsqueeze::<D>()
    }
}

/// `x W + b` (`W` `[d_in, d_out]`, `b` `[d_out]`, both constants), `[.., d_in] -> [.., d_out]`.
/// On libtorch this is torch's `linear` (one gemm over all rows with the bias folded in, as
/// PyTorch's `F.linear`); on flex row blocks of single-threaded gemm calls ([`cpu::linear`]).
/// An empty operand (no rows, `d_in = 0` or `d_out = 0`) reaches no kernel: the result is
/// `[.., d_out]` zeros (plus the bias), computed here.
pub fn linear<const D: usize>(x: Tensor<D>, weight: Tensor<2>, bias: Option<Tensor<1>>) -> Tensor<D> {
    if is_empty(&x) || is_empty(&weight) {
        let mut dims = x.dims();
        dims[D - 1] = weight.dims()[1];
        let out = Tensor::<D>::zeros(dims, &x.device());
        return match bias {
            Some(b) if !is_empty(&out) => out + b.unsqueeze::<D>(),
            _ => out,
        };
    }
    if !(fusable(&x) && frozen_f32(&weight) && bias.as_ref().is_none_or(frozen_f32)) {
        return burn::tensor::module::linear(x, weight, bias);
    }
    let out = match bias {
        Some(bias) => {
            <Dispatch as FusedOps>::fused_linear(x.into_dispatch(), weight.into_dispatch(), bias.into_dispatch())
        }
        None => <Dispatch as FusedOps>::fused_linear_no_bias(x.into_dispatch(), weight.into_dispatch()),
    };
    Tensor::from_dispatch(out)
}

/// `softmax(q kᵀ + bias) v`, unscaled: `q` `[B, H, Lq, dh]`, `k`, `v` `[B, H, Lk, dh]`, `bias`
/// broadcast to `[B, H, Lq, Lk]` (a constant: no gradient). Returns `[B, H, Lq, dh]`. Empty
/// heads (a zero in any axis, no keys included) reach no kernel: the result is zeros.
pub fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, bias: Tensor<4>) -> Tensor<4> {
    if is_empty(&q) || is_empty(&k) || is_empty(&v) {
        let [b, h, lq, _] = q.dims();
        return Tensor::zeros([b, h, lq, v.dims()[3]], &q.device());
    }
    if fusable(&q) && k.dtype() == DType::F32 && v.dtype() == DType::F32 && frozen_f32(&bias) {
        Tensor::from_dispatch(<Dispatch as FusedOps>::fused_attention(
            q.into_dispatch(),
            k.into_dispatch(),
            v.into_dispatch(),
            bias.into_dispatch(),
        ))
    } else {
        burn::tensor::activation::softmax(q.matmul(k.swap_dims(2, 3)) + bias, 3).matmul(v)
    }
}

/// Contiguous f32 data of `t`.
fn values(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("fused ops take contiguous f32 tensors")
}

/// `t` as a contiguous tensor whose buffer holds exactly its elements, to be overwritten in
/// place: the buffer itself when `t` owns it alone, a copy otherwise.
fn writable(t: FlexTensor) -> FlexTensor {
    let t = t.to_contiguous();
    let n = t.layout().num_elements();
    if t.layout().contiguous_offsets() == Some((0, n)) && t.storage::<f32>().len() == n {
        return t; // `storage_mut` copies the buffer first if it is shared
    }
    let mut out = FlexTensor::empty(t.layout().shape().clone(), DType::F32);
    out.storage_mut::<f32>().copy_from_slice(values(&t));
    out
}

/// Applies `kernel` to the elements of [`writable`]`(t)` and returns it; an empty `t` is
/// returned as it is (the row kernels split their slice into rows of the last axis' length,
/// which may be 0).
fn in_place(t: FlexTensor, kernel: impl FnOnce(&mut [f32])) -> FlexTensor {
    if t.layout().num_elements() == 0 {
        return t;
    }
    let mut out = writable(t);
    kernel(out.storage_mut::<f32>());
    out
}

/// Length of the last axis.
fn last_dim(t: &FlexTensor) -> usize {
    let shape = t.layout().shape();
    shape[shape.num_dims() - 1]
}

/// `rows × d_out` zeros, or the bias `[d_out]` on every row when there is one: the product
/// over an empty inner axis (or an empty result).
fn zeros_or_bias(rows: usize, d_out: usize, bias: Option<&FlexTensor>) -> Vec<f32> {
    match bias {
        Some(b) if rows * d_out > 0 => values(&b.to_contiguous()).repeat(rows),
        _ => vec![0.0; rows * d_out],
    }
}

/// `x W (+ b)`, or `x Wᵀ` when `transposed` (the input gradient), with [`cpu::linear`]. An
/// empty operand reaches no kernel (burn-flex's own linear hands it to gemm, which crashes):
/// the result, empty or zeros (plus the bias), is built here.
fn flex_linear(x: FlexTensor, weight: FlexTensor, bias: Option<FlexTensor>, transposed: bool) -> FlexTensor {
    let [d_in, d_out] = [weight.layout().shape()[0], weight.layout().shape()[1]];
    if x.layout().num_elements() == 0 || d_in == 0 || d_out == 0 {
        let mut dims = x.layout().shape().to_vec();
        let width = if transposed { d_in } else { d_out };
        if let Some(last) = dims.last_mut() {
            *last = width;
        }
        let rows = dims[..dims.len().saturating_sub(1)].iter().product::<usize>();
        let bias = bias.as_ref().filter(|_| !transposed);
        return FlexTensor::from_data(TensorData::new(zeros_or_bias(rows, width, bias), dims));
    }
    let (x, weight) = (x.to_contiguous(), weight.to_contiguous());
    let bias = bias.map(|b| b.to_contiguous());
    let out = match transposed {
        false => {
            let bias = bias.as_ref().map(values);
            cpu::linear::linear_forward(values(&x), values(&weight), d_out, bias)
        }
        true => cpu::linear::linear_backward(values(&x), values(&weight), d_out),
    };
    let mut dims = x.layout().shape().to_vec();
    if let Some(last) = dims.last_mut() {
        *last = if transposed { d_in } else { d_out };
    }
    FlexTensor::from_data(TensorData::new(out, dims))
}

impl FusedOps for Flex {
    fn fused_gelu(x: FlexTensor) -> FlexTensor {
        in_place(x, cpu::gelu_forward)
    }

    fn fused_gelu_backward(x: FlexTensor, grad: FlexTensor) -> FlexTensor {
        let x = x.to_contiguous();
        in_place(grad, |g| cpu::gelu_backward(values(&x), g))
    }

    fn fused_softmax(x: FlexTensor) -> FlexTensor {
        let n = last_dim(&x);
        in_place(x, |y| cpu::softmax_forward(y, n))
    }

    fn fused_softmax_backward(y: FlexTensor, grad: FlexTensor) -> FlexTensor {
        let y = y.to_contiguous();
        let n = last_dim(&y);
        in_place(grad, |g| cpu::softmax_backward(values(&y), g, n))
    }

    fn fused_layer_norm(x: FlexTensor, gamma: FlexTensor, beta: FlexTensor, eps: f64) -> FlexTensor {
        let (gamma, beta) = (gamma.to_contiguous(), beta.to_contiguous());
        in_place(x, |y| cpu::layer_norm_forward(y, values(&gamma), values(&beta), eps as f32))
    }

    fn fused_layer_norm_backward(x: FlexTensor, gamma: FlexTensor, grad: FlexTensor, eps: f64) -> FlexTensor {
        let (x, gamma) = (x.to_contiguous(), gamma.to_contiguous());
        in_place(grad, |g| cpu::layer_norm_backward(values(&x), values(&gamma), g, eps as f32))
    }

    fn fused_rms_norm(x: FlexTensor, weight: FlexTensor, eps: f64) -> FlexTensor {
        let weight = weight.to_contiguous();
        in_place(x, |y| cpu::rms_norm_forward(y, values(&weight), eps as f32))
    }

    fn fused_rms_norm_backward(x: FlexTensor, weight: FlexTensor, grad: FlexTensor, eps: f64) -> FlexTensor {
        let (x, weight) = (x.to_contiguous(), weight.to_contiguous());
        in_place(grad, |g| cpu::rms_norm_backward(values(&x), values(&weight), g, eps as f32))
    }

    fn fused_linear(x: FlexTensor, weight: FlexTensor, bias: FlexTensor) -> FlexTensor {
        flex_linear(x, weight, Some(bias), false)
    }

    fn fused_linear_no_bias(x: FlexTensor, weight: FlexTensor) -> FlexTensor {
        flex_linear(x, weight, None, false)
    }

    fn fused_linear_backward(weight: FlexTensor, grad: FlexTensor) -> FlexTensor {
        flex_linear(grad, weight, None, true)
    }

    fn fused_attention(q: FlexTensor, k: FlexTensor, v: FlexTensor, bias: FlexTensor) -> FlexTensor {
        Self::attention_forward(q, k, v, bias).0
    }
}

/// A strided view of a 4-axis f32 tensor for the host attention kernels.
fn view4(t: &FlexTensor) -> cpu::attention::View<'_> {
    let layout = t.layout();
    let shape = layout.shape();
    let strides = layout.strides();
    cpu::attention::View {
        data: t.storage::<f32>(),
        offset: layout.start_offset(),
        shape: [shape[0], shape[1], shape[2], shape[3]],
        strides: [strides[0], strides[1], strides[2], strides[3]],
    }
}

/// A row-major `[B, L, H, dh]` buffer as the `[B, H, L, dh]` tensor it holds (a transposed
/// view, so merging the heads back is a reshape without a copy).
fn heads_from_rows(buf: Vec<f32>, [b, h, l, dh]: [usize; 4]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(buf, [b, l, h, dh])).transpose(1, 2)
}

/// Flex: one (batch, head) pair per task ([`cpu::attention`]); the probabilities are kept for
/// the backward pass.
impl AttentionKernels for Flex {
    fn attention_forward(q: FlexTensor, k: FlexTensor, v: FlexTensor, bias: FlexTensor) -> (FlexTensor, FlexTensor) {
        let [b, h, lq, dh] = view4(&q).shape;
        let lk = k.layout().shape()[2];
        if [&q, &k, &v].iter().any(|t| t.layout().num_elements() == 0) {
            let zeros =
                |shape: [usize; 4]| FlexTensor::from_data(TensorData::new(vec![0.0f32; shape.iter().product()], shape));
            return (zeros([b, h, lq, dh]), zeros([b, h, lq, lk]));
        }
        let (out, p) = cpu::attention::attention_forward(view4(&q), view4(&k), view4(&v), view4(&bias));
        (heads_from_rows(out, [b, h, lq, dh]), FlexTensor::from_data(TensorData::new(p, [b, h, lq, lk])))
    }

    fn attention_backward(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        _bias: FlexTensor,
        _out: FlexTensor,
        p: FlexTensor,
        grad: FlexTensor,
    ) -> [FlexTensor; 3] {
        let [b, h, lq, dh] = view4(&q).shape;
        let lk = k.layout().shape()[2];
        if [&q, &k, &v, &grad].iter().any(|t| t.layout().num_elements() == 0) {
            let zeros =
                |shape: [usize; 4]| FlexTensor::from_data(TensorData::new(vec![0.0f32; shape.iter().product()], shape));
            return [zeros([b, h, lq, dh]), zeros([b, h, lk, dh]), zeros([b, h, lk, dh])];
        }
        let p = p.to_contiguous();
        let (dq, dk, dv) =
            cpu::attention::attention_backward(view4(&q), view4(&k), view4(&v), values(&p), view4(&grad));
        [heads_from_rows(dq, [b, h, lq, dh]), heads_from_rows(dk, [b, h, lk, dh]), heads_from_rows(dv, [b, h, lk, dh])]
    }
}

#[cfg(feature = "tch")]
mod torch {
    //! [`FusedOps`] on libtorch: torch's fused kernels where it has them.

    use burn::backend::LibTorch;
    use burn::backend::libtorch::TchTensor;
    use tch::{Kind, Tensor};

    use super::FusedOps;

    /// Mean over the last axis, kept as a size-1 axis.
    fn mean_last(t: &Tensor) -> Tensor {
        t.mean_dim(-1, true, Kind::Float)
    }

    fn last_dim(t: &Tensor) -> i64 {
        *t.size().last().expect("fused ops take tensors of rank >= 1")
    }

    impl super::AttentionKernels for LibTorch {
        fn attention_forward(q: TchTensor, k: TchTensor, v: TchTensor, bias: TchTensor) -> (TchTensor, TchTensor) {
            let (out, logsumexp) = Tensor::internal_scaled_dot_product_flash_attention_for_cpu(
                &q.tensor,
                &k.tensor,
                &v.tensor,
                0.0,
                false,
                Some(&bias.tensor),
                1.0,
            );
            (TchTensor::new(out), TchTensor::new(logsumexp))
        }

        fn attention_backward(
            q: TchTensor,
            k: TchTensor,
            v: TchTensor,
            bias: TchTensor,
            out: TchTensor,
            logsumexp: TchTensor,
            grad: TchTensor,
        ) -> [TchTensor; 3] {
            let (dq, dk, dv) = Tensor::internal_scaled_dot_product_flash_attention_for_cpu_backward(
                &grad.tensor,
                &q.tensor,
                &k.tensor,
                &v.tensor,
                &out.tensor,
                &logsumexp.tensor,
                0.0,
                false,
                Some(&bias.tensor),
                1.0,
            );
            [TchTensor::new(dq), TchTensor::new(dk), TchTensor::new(dv)]
        }
    }

    impl FusedOps for LibTorch {
        fn fused_linear(x: TchTensor, weight: TchTensor, bias: TchTensor) -> TchTensor {
            TchTensor::new(x.tensor.linear(&weight.tensor.tr(), Some(&bias.tensor)))
        }

        fn fused_linear_no_bias(x: TchTensor, weight: TchTensor) -> TchTensor {
            TchTensor::new(x.tensor.linear::<Tensor>(&weight.tensor.tr(), None))
        }

        fn fused_linear_backward(weight: TchTensor, grad: TchTensor) -> TchTensor {
            TchTensor::new(grad.tensor.matmul(&weight.tensor.tr()))
        }

        fn fused_attention(q: TchTensor, k: TchTensor, v: TchTensor, bias: TchTensor) -> TchTensor {
            <Self as super::AttentionKernels>::attention_forward(q, k, v, bias).0
        }

        fn fused_gelu(x: TchTensor) -> TchTensor {
            TchTensor::new(x.tensor.gelu("none"))
        }

        fn fused_gelu_backward(x: TchTensor, grad: TchTensor) -> TchTensor {
            TchTensor::new(x.tensor.gelu_backward(&grad.tensor, "none"))
        }

        fn fused_softmax(x: TchTensor) -> TchTensor {
            TchTensor::new(x.tensor.softmax(-1, Kind::Float))
        }

        fn fused_softmax_backward(y: TchTensor, grad: TchTensor) -> TchTensor {
            TchTensor::new(Tensor::internal_softmax_backward_data(&grad.tensor, &y.tensor, -1, Kind::Float))
        }

        fn fused_layer_norm(x: TchTensor, gamma: TchTensor, beta: TchTensor, eps: f64) -> TchTensor {
            let d = last_dim(&x.tensor);
            TchTensor::new(x.tensor.layer_norm([d], Some(&gamma.tensor), Some(&beta.tensor), eps, true))
        }

        fn fused_layer_norm_backward(x: TchTensor, gamma: TchTensor, grad: TchTensor, eps: f64) -> TchTensor {
            let d = last_dim(&x.tensor);
            let (xhat, _, rstd) = x.tensor.native_layer_norm([d], None::<Tensor>, None::<Tensor>, eps);
            let gg = &grad.tensor * &gamma.tensor;
            let a = mean_last(&gg);
            let b = mean_last(&(&gg * &xhat));
            TchTensor::new(rstd * (gg - a - xhat * b))
        }

        fn fused_rms_norm(x: TchTensor, weight: TchTensor, eps: f64) -> TchTensor {
            let r = (mean_last(&x.tensor.square()) + eps).rsqrt();
            TchTensor::new(&x.tensor * r * &weight.tensor)
        }

        fn fused_rms_norm_backward(x: TchTensor, weight: TchTensor, grad: TchTensor, eps: f64) -> TchTensor {
            let r = (mean_last(&x.tensor.square()) + eps).rsqrt();
            let gw = &grad.tensor * &weight.tensor;
            let b = mean_last(&(&gw * &x.tensor)) * r.square();
            TchTensor::new(r * (gw - &x.tensor * b))
        }
    }
}

/// Backward of an op whose input gradient needs one saved tensor (GELU: the input; softmax:
/// the output; linear: the weight): `grad ↦ f(saved, grad)`.
#[derive(Debug)]
struct SavedOne<B: Backend>(fn(FloatTensor<B>, FloatTensor<B>) -> FloatTensor<B>);

impl<B: Backend> Backward<B, 1> for SavedOne<B> {
    type State = FloatTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let saved = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| (self.0)(saved, grad));
    }
}

/// A norm's input gradient: `(x, weight, grad, eps) ↦ dx`.
type NormGrad<B> = fn(FloatTensor<B>, FloatTensor<B>, FloatTensor<B>, f64) -> FloatTensor<B>;

/// Backward of a norm to its input; state: input, weight, eps.
#[derive(Debug)]
struct NormBackward<B: Backend>(NormGrad<B>);

impl<B: Backend> Backward<B, 1> for NormBackward<B> {
    type State = (FloatTensor<B>, FloatTensor<B>, f64);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, weight, eps) = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| (self.0)(x, weight, grad, eps));
    }
}

/// Records `out` as one graph node over its single input `node`; `state` is built only when
/// the node is tracked.
fn record<B: Backend, C: CheckpointStrategy, O: Backward<B, 1>>(
    backward: O,
    node: NodeGuard,
    out: FloatTensor<B>,
    state: impl FnOnce() -> O::State,
) -> FloatTensor<Autodiff<B, C>> {
    match backward.prepare::<C>([node]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish(state(), out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

/// Backward of attention to `q`, `k`, `v`; state: inputs, output and the backend's saved tensor.
#[derive(Debug)]
struct AttentionBackward;

impl<B: FusedOps + AttentionKernels> Backward<B, 3> for AttentionBackward {
    type State = [FloatTensor<B>; 6];

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let [q, k, v, bias, out, saved] = ops.state;
        let d = B::attention_backward(q, k, v, bias, out, saved, grad);
        for (parent, d) in ops.parents.into_iter().zip(d) {
            if let Some(node) = parent {
                grads.register::<B>(node.id, d);
            }
        }
    }
}

/// The forward ops record one node each; the backward ops are evaluated untracked (no
/// second-order gradients).
impl<B: FusedOps + AttentionKernels, C: CheckpointStrategy> FusedOps for Autodiff<B, C> {
    fn fused_linear(x: FloatTensor<Self>, weight: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self> {
        let (x, node) = x.into_parts();
        let weight = weight.into_primitive();
        let out = B::fused_linear(x, weight.clone(), bias.into_primitive());
        record::<B, C, _>(SavedOne(B::fused_linear_backward), node, out, || weight)
    }

    fn fused_linear_no_bias(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        let (x, node) = x.into_parts();
        let weight = weight.into_primitive();
        let out = B::fused_linear_no_bias(x, weight.clone());
        record::<B, C, _>(SavedOne(B::fused_linear_backward), node, out, || weight)
    }

    fn fused_linear_backward(weight: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        <Self as AutodiffBackend>::from_inner(B::fused_linear_backward(weight.into_primitive(), grad.into_primitive()))
    }

    fn fused_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let bias = bias.into_primitive();
        let (out, saved) =
            B::attention_forward(q.primitive().clone(), k.primitive().clone(), v.primitive().clone(), bias.clone());
        match AttentionBackward.prepare::<C>([q.node(), k.node(), v.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let state = [q.into_primitive(), k.into_primitive(), v.into_primitive(), bias, out.clone(), saved];
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn fused_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let out = B::fused_gelu(x.primitive().clone());
        record::<B, C, _>(SavedOne(B::fused_gelu_backward), x.node(), out, || x.into_primitive())
    }

    fn fused_gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        <Self as AutodiffBackend>::from_inner(B::fused_gelu_backward(x.into_primitive(), grad.into_primitive()))
    }

    fn fused_softmax(x: FloatTensor<Self>) -> FloatTensor<Self> {
        // The backward needs the output only, so the input buffer is handed over (and
        // overwritten on flex when nothing else holds it).
        let (x, node) = x.into_parts();
        let out = B::fused_softmax(x);
        let saved = out.clone();
        record::<B, C, _>(SavedOne(B::fused_softmax_backward), node, out, || saved)
    }

    fn fused_softmax_backward(y: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        <Self as AutodiffBackend>::from_inner(B::fused_softmax_backward(y.into_primitive(), grad.into_primitive()))
    }

    fn fused_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self> {
        let gamma = gamma.into_primitive();
        let out = B::fused_layer_norm(x.primitive().clone(), gamma.clone(), beta.into_primitive(), eps);
        record::<B, C, _>(NormBackward(B::fused_layer_norm_backward), x.node(), out, || {
            (x.into_primitive(), gamma, eps)
        })
    }

    fn fused_layer_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self> {
        <Self as AutodiffBackend>::from_inner(B::fused_layer_norm_backward(
            x.into_primitive(),
            gamma.into_primitive(),
            grad.into_primitive(),
            eps,
        ))
    }

    fn fused_rms_norm(x: FloatTensor<Self>, weight: FloatTensor<Self>, eps: f64) -> FloatTensor<Self> {
        let weight = weight.into_primitive();
        let out = B::fused_rms_norm(x.primitive().clone(), weight.clone(), eps);
        record::<B, C, _>(NormBackward(B::fused_rms_norm_backward), x.node(), out, || (x.into_primitive(), weight, eps))
    }

    fn fused_rms_norm_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self> {
        <Self as AutodiffBackend>::from_inner(B::fused_rms_norm_backward(
            x.into_primitive(),
            weight.into_primitive(),
            grad.into_primitive(),
            eps,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::checks;
    use burn::prelude::*;

    fn flex() -> Device {
        let device = Device::flex().autodiff();
        device.seed(7);
        device
    }

    #[test]
    fn gelu_matches_burn() {
        checks::check_gelu(&flex());
    }

    #[test]
    fn softmax_matches_burn() {
        checks::check_softmax(&flex());
    }

    #[test]
    fn layer_norm_matches_burn() {
        checks::check_layer_norm(&flex());
    }

    #[test]
    fn rms_norm_matches_composed_ops() {
        checks::check_rms_norm(&flex());
    }

    #[test]
    fn linear_matches_burn() {
        checks::check_linear(&flex());
    }

    #[test]
    fn attention_matches_burn() {
        checks::check_attention(&flex());
    }

    #[test]
    fn non_contiguous_input_is_handled() {
        checks::check_non_contiguous(&flex());
    }
}
