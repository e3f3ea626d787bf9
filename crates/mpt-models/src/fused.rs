//! Fused exact GELU, last-axis softmax, LayerNorm and RMS norm, each with a hand-written
//! backward pass, as a burn backend extension ([`FusedOps`]).
//!
//! burn's autodiff differentiates `softmax` and `layer_norm` as chains of 5 to 9 primitive ops
//! (a pass over memory and a stored intermediate each), and flex evaluates GELU with a scalar
//! libm `erf` per element. Here each op is one graph node on an autodiff device, with a
//! backward written for it: on flex, forward and backward are one pass over the rows each
//! (vectorised `exp`/`erf`, [`cpu`]); on libtorch (feature `tch`) they are torch's own kernels
//! (`softmax` and `_softmax_backward_data`, `layer_norm`, `gelu` and `gelu_backward`, a few
//! torch ops for the norms' input gradients). Other backends (wgpu, cuda), and tensors that are
//! not f32, take burn's own ops.
//!
//! Gradients reach the activation input only: `gamma`, `beta` and `weight` are frozen backbone
//! parameters here, and a weight that requires a gradient takes burn's ops instead.
//! `MPT_FUSED=0` in the environment turns the fused path off (for A/B measurements).

mod cpu;

use std::sync::OnceLock;

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    Autodiff, AutodiffBackend, Backend, Dispatch, DispatchDevice, Flex, backend_extension,
};
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
    fn fused_rms_norm(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self>;
    /// Input gradient of [`FusedOps::fused_rms_norm`].
    fn fused_rms_norm_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self>;
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

/// Exact GELU, `[..] -> [..]`.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if fusable(&x) {
        Tensor::from_dispatch(<Dispatch as FusedOps>::fused_gelu(x.into_dispatch()))
    } else {
        burn::tensor::activation::gelu(x)
    }
}

/// Softmax over the last axis, `[..] -> [..]`.
pub fn softmax_last<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if fusable(&x) {
        Tensor::from_dispatch(<Dispatch as FusedOps>::fused_softmax(x.into_dispatch()))
    } else {
        burn::tensor::activation::softmax(x, D - 1)
    }
}

/// LayerNorm over the last axis: `x` `[.., d]`, `gamma`, `beta` `[d]`.
pub fn layer_norm<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    eps: f64,
) -> Tensor<D> {
    if fusable(&x) && !gamma.is_require_grad() && !beta.is_require_grad() {
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
    if fusable(&x) && !weight.is_require_grad() {
        Tensor::from_dispatch(<Dispatch as FusedOps>::fused_rms_norm(
            x.into_dispatch(),
            weight.into_dispatch(),
            eps,
        ))
    } else {
        let variance = x.clone().square().mean_dim(D - 1);
        x * (variance + eps).sqrt().recip() * weight.unsqueeze::<D>()
    }
}

/// `softmax(q kᵀ + bias) v`, unscaled: `q` `[B, H, Lq, dh]`, `k`, `v` `[B, H, Lk, dh]`, `bias`
/// broadcast to `[B, H, Lq, Lk]` (a constant: no gradient). Returns `[B, H, Lq, dh]`.
pub fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, bias: Tensor<4>) -> Tensor<4> {
    if fusable(&q) && !bias.is_require_grad() {
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
    t.as_slice::<f32>()
        .expect("fused ops take contiguous f32 tensors")
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

/// Applies `kernel` to the elements of [`writable`]`(t)` and returns it.
fn in_place(t: FlexTensor, kernel: impl FnOnce(&mut [f32])) -> FlexTensor {
    let mut out = writable(t);
    kernel(out.storage_mut::<f32>());
    out
}

/// Length of the last axis.
fn last_dim(t: &FlexTensor) -> usize {
    let shape = t.layout().shape();
    shape[shape.num_dims() - 1]
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

    fn fused_layer_norm(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        eps: f64,
    ) -> FlexTensor {
        let (gamma, beta) = (gamma.to_contiguous(), beta.to_contiguous());
        in_place(x, |y| {
            cpu::layer_norm_forward(y, values(&gamma), values(&beta), eps as f32)
        })
    }

    fn fused_layer_norm_backward(
        x: FlexTensor,
        gamma: FlexTensor,
        grad: FlexTensor,
        eps: f64,
    ) -> FlexTensor {
        let (x, gamma) = (x.to_contiguous(), gamma.to_contiguous());
        in_place(grad, |g| {
            cpu::layer_norm_backward(values(&x), values(&gamma), g, eps as f32)
        })
    }

    fn fused_rms_norm(x: FlexTensor, weight: FlexTensor, eps: f64) -> FlexTensor {
        let weight = weight.to_contiguous();
        in_place(x, |y| cpu::rms_norm_forward(y, values(&weight), eps as f32))
    }

    fn fused_rms_norm_backward(
        x: FlexTensor,
        weight: FlexTensor,
        grad: FlexTensor,
        eps: f64,
    ) -> FlexTensor {
        let (x, weight) = (x.to_contiguous(), weight.to_contiguous());
        in_place(grad, |g| {
            cpu::rms_norm_backward(values(&x), values(&weight), g, eps as f32)
        })
    }

    fn fused_attention(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        bias: FlexTensor,
    ) -> FlexTensor {
        Self::attention_forward(q, k, v, bias).0
    }
}

/// Flex: the batched matmuls of the textbook form around the fused softmax; the probabilities
/// are kept for the backward pass.
impl AttentionKernels for Flex {
    fn attention_forward(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        bias: FlexTensor,
    ) -> (FlexTensor, FlexTensor) {
        let scores = Flex::float_add(Flex::float_matmul(q, Flex::float_swap_dims(k, 2, 3)), bias);
        let p = Self::fused_softmax(scores);
        (Flex::float_matmul(p.clone(), v), p)
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
        let dv = Flex::float_matmul(Flex::float_swap_dims(p.clone(), 2, 3), grad.clone());
        let dp = Flex::float_matmul(grad, Flex::float_swap_dims(v, 2, 3));
        let ds = Self::fused_softmax_backward(p, dp);
        let dq = Flex::float_matmul(ds.clone(), k);
        let dk = Flex::float_matmul(Flex::float_swap_dims(ds, 2, 3), q);
        [dq, dk, dv]
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
        *t.size()
            .last()
            .expect("fused ops take tensors of rank >= 1")
    }

    impl super::AttentionKernels for LibTorch {
        fn attention_forward(
            q: TchTensor,
            k: TchTensor,
            v: TchTensor,
            bias: TchTensor,
        ) -> (TchTensor, TchTensor) {
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
            TchTensor::new(Tensor::internal_softmax_backward_data(
                &grad.tensor,
                &y.tensor,
                -1,
                Kind::Float,
            ))
        }

        fn fused_layer_norm(
            x: TchTensor,
            gamma: TchTensor,
            beta: TchTensor,
            eps: f64,
        ) -> TchTensor {
            let d = last_dim(&x.tensor);
            TchTensor::new(x.tensor.layer_norm(
                [d],
                Some(&gamma.tensor),
                Some(&beta.tensor),
                eps,
                true,
            ))
        }

        fn fused_layer_norm_backward(
            x: TchTensor,
            gamma: TchTensor,
            grad: TchTensor,
            eps: f64,
        ) -> TchTensor {
            let d = last_dim(&x.tensor);
            let (xhat, _, rstd) =
                x.tensor
                    .native_layer_norm([d], None::<Tensor>, None::<Tensor>, eps);
            let gg = &grad.tensor * &gamma.tensor;
            let a = mean_last(&gg);
            let b = mean_last(&(&gg * &xhat));
            TchTensor::new(rstd * (gg - a - xhat * b))
        }

        fn fused_rms_norm(x: TchTensor, weight: TchTensor, eps: f64) -> TchTensor {
            let r = (mean_last(&x.tensor.square()) + eps).rsqrt();
            TchTensor::new(&x.tensor * r * &weight.tensor)
        }

        fn fused_rms_norm_backward(
            x: TchTensor,
            weight: TchTensor,
            grad: TchTensor,
            eps: f64,
        ) -> TchTensor {
            let r = (mean_last(&x.tensor.square()) + eps).rsqrt();
            let gw = &grad.tensor * &weight.tensor;
            let b = mean_last(&(&gw * &x.tensor)) * r.square();
            TchTensor::new(r * (gw - &x.tensor * b))
        }
    }
}

/// Backward of GELU; state: the input.
#[derive(Debug)]
struct GeluBackward;

impl<B: FusedOps> Backward<B, 1> for GeluBackward {
    type State = FloatTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let x = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            B::fused_gelu_backward(x, grad)
        });
    }
}

/// Backward of softmax; state: the output.
#[derive(Debug)]
struct SoftmaxBackward;

impl<B: FusedOps> Backward<B, 1> for SoftmaxBackward {
    type State = FloatTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let y = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            B::fused_softmax_backward(y, grad)
        });
    }
}

/// Backward of LayerNorm to its input; state: input, gamma, eps.
#[derive(Debug)]
struct LayerNormBackward;

impl<B: FusedOps> Backward<B, 1> for LayerNormBackward {
    type State = (FloatTensor<B>, FloatTensor<B>, f64);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, gamma, eps) = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            B::fused_layer_norm_backward(x, gamma, grad, eps)
        });
    }
}

/// Backward of the RMS norm to its input; state: input, weight, eps.
#[derive(Debug)]
struct RmsNormBackward;

impl<B: FusedOps> Backward<B, 1> for RmsNormBackward {
    type State = (FloatTensor<B>, FloatTensor<B>, f64);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, weight, eps) = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            B::fused_rms_norm_backward(x, weight, grad, eps)
        });
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
    fn fused_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let bias = bias.into_primitive();
        let (out, saved) = B::attention_forward(
            q.primitive().clone(),
            k.primitive().clone(),
            v.primitive().clone(),
            bias.clone(),
        );
        match AttentionBackward
            .prepare::<C>([q.node(), k.node(), v.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let state = [
                    q.into_primitive(),
                    k.into_primitive(),
                    v.into_primitive(),
                    bias,
                    out.clone(),
                    saved,
                ];
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn fused_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let out = B::fused_gelu(x.primitive().clone());
        match GeluBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(x.into_primitive(), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn fused_gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        <Self as AutodiffBackend>::from_inner(B::fused_gelu_backward(
            x.into_primitive(),
            grad.into_primitive(),
        ))
    }

    fn fused_softmax(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let out = B::fused_softmax(x.primitive().clone());
        match SoftmaxBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(out.clone(), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn fused_softmax_backward(y: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        <Self as AutodiffBackend>::from_inner(B::fused_softmax_backward(
            y.into_primitive(),
            grad.into_primitive(),
        ))
    }

    fn fused_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self> {
        let gamma = gamma.into_primitive();
        let out = B::fused_layer_norm(
            x.primitive().clone(),
            gamma.clone(),
            beta.into_primitive(),
            eps,
        );
        match LayerNormBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((x.into_primitive(), gamma, eps), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
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

    fn fused_rms_norm(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        eps: f64,
    ) -> FloatTensor<Self> {
        let weight = weight.into_primitive();
        let out = B::fused_rms_norm(x.primitive().clone(), weight.clone(), eps);
        match RmsNormBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((x.into_primitive(), weight, eps), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
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
    use super::*;
    use burn::tensor::Distribution;

    const SHAPES: [[usize; 3]; 3] = [[2, 3, 7], [2, 5, 228], [3, 17, 384]];

    fn random(shape: [usize; 3], device: &Device, scale: f64) -> Tensor<3> {
        Tensor::<3>::random(shape, Distribution::Normal(0.0, scale), device)
    }

    /// `f` (fused) against `reference` (burn's ops): outputs, and input gradients of
    /// `Σ out ⊙ probe` on an autodiff device, compared whole at `tol`.
    fn check(
        scale: f64,
        tol: f64,
        f: impl Fn(Tensor<3>) -> Tensor<3>,
        reference: impl Fn(Tensor<3>) -> Tensor<3>,
    ) {
        check_on(&Device::flex().autodiff(), scale, tol, f, reference);
    }

    fn check_on(
        device: &Device,
        scale: f64,
        tol: f64,
        f: impl Fn(Tensor<3>) -> Tensor<3>,
        reference: impl Fn(Tensor<3>) -> Tensor<3>,
    ) {
        let device = device.clone();
        device.seed(7);
        for shape in SHAPES {
            let x = random(shape, &device, scale).require_grad();
            let probe = random(shape, &device, 1.0);
            let out = f(x.clone());
            let expected = reference(x.clone());
            out.clone().into_data().assert_approx_eq::<f32>(
                &expected.clone().into_data(),
                burn::tensor::Tolerance::absolute(tol),
            );
            let grads = (out * probe.clone()).sum().backward();
            let got = x.grad(&grads).expect("fused op gives x a gradient");
            let grads = (expected * probe).sum().backward();
            let want = x.grad(&grads).expect("reference gives x a gradient");
            got.into_data()
                .assert_approx_eq::<f32>(&want.into_data(), burn::tensor::Tolerance::absolute(tol));
        }
    }

    #[test]
    fn gelu_matches_burn() {
        check(3.0, 1e-5, gelu, burn::tensor::activation::gelu);
    }

    #[test]
    fn softmax_matches_burn() {
        check(4.0, 1e-5, softmax_last, |x| {
            burn::tensor::activation::softmax(x, 2)
        });
    }

    #[test]
    fn softmax_of_masked_scores_matches_burn() {
        let device = Device::flex();
        let scores = Tensor::<3>::random([2, 4, 9], Distribution::Normal(0.0, 1.0), &device);
        let mask = Tensor::<3>::from_floats(
            [[[0.0, 0.0, f32::MIN, 0.0, f32::MIN, 0.0, 0.0, 0.0, f32::MIN]]],
            &device,
        );
        let x = scores + mask;
        softmax_last(x.clone()).into_data().assert_approx_eq::<f32>(
            &burn::tensor::activation::softmax(x, 2).into_data(),
            burn::tensor::Tolerance::absolute(1e-6),
        );
    }

    #[test]
    fn layer_norm_matches_burn() {
        let device = Device::flex();
        for d in [7, 228, 384] {
            let gamma = Tensor::<1>::random([d], Distribution::Normal(1.0, 0.5), &device);
            let beta = Tensor::<1>::random([d], Distribution::Normal(0.0, 0.5), &device);
            let f = |x: Tensor<3>| {
                if x.dims()[2] != d {
                    return x;
                }
                layer_norm(x, gamma.clone(), beta.clone(), 1e-12)
            };
            let reference = |x: Tensor<3>| {
                if x.dims()[2] != d {
                    return x;
                }
                burn::tensor::module::layer_norm(x, gamma.clone(), Some(beta.clone()), 1e-12)
            };
            check(2.0, 2e-5, f, reference);
        }
    }

    #[test]
    fn rms_norm_matches_composed_ops() {
        let device = Device::flex();
        for d in [7, 228, 384] {
            let weight = Tensor::<1>::random([d], Distribution::Normal(1.0, 0.5), &device);
            let f = |x: Tensor<3>| {
                if x.dims()[2] != d {
                    x
                } else {
                    rms_norm(x, weight.clone(), 1e-6)
                }
            };
            let reference = |x: Tensor<3>| {
                if x.dims()[2] != d {
                    return x;
                }
                let variance = x.clone().square().mean_dim(2);
                x * (variance + 1e-6).sqrt().recip() * weight.clone().unsqueeze::<3>()
            };
            check(2.0, 2e-5, f, reference);
        }
    }

    /// Fused attention against burn's ops on `device`: output and the gradients of q, k, v,
    /// with a broadcast padding bias and with a full `[B, H, L, L]` bias.
    pub(super) fn check_attention(device: &Device, tol: f64) {
        device.seed(11);
        let normal = Distribution::Normal(0.0, 1.0);
        let [b, h, l, dh] = [2, 3, 9, 8];
        let mut keep = vec![1.0f32; b * l];
        keep[l - 1] = 0.0;
        keep[2 * l - 3] = 0.0;
        let keep = Tensor::<1>::from_floats(keep.as_slice(), device).reshape([b, 1, 1, l]);
        let padding = (keep.neg() + 1.0) * f32::MIN as f64;
        let full = padding.clone() + Tensor::<4>::random([b, h, l, l], normal, device);
        for bias in [padding, full] {
            let q = Tensor::<4>::random([b, h, l, dh], normal, device).require_grad();
            let k = Tensor::<4>::random([b, h, l, dh], normal, device).require_grad();
            let v = Tensor::<4>::random([b, h, l, dh], normal, device).require_grad();
            let probe = Tensor::<4>::random([b, h, l, dh], normal, device);
            let out = attention(q.clone(), k.clone(), v.clone(), bias.clone());
            let expected = burn::tensor::activation::softmax(
                q.clone().matmul(k.clone().swap_dims(2, 3)) + bias,
                3,
            )
            .matmul(v.clone());
            let tolerance = burn::tensor::Tolerance::absolute(tol);
            out.clone()
                .into_data()
                .assert_approx_eq::<f32>(&expected.clone().into_data(), tolerance);
            let got = (out * probe.clone()).sum().backward();
            let want = (expected * probe).sum().backward();
            for x in [&q, &k, &v] {
                let g = x
                    .grad(&got)
                    .expect("fused attention gives q, k, v gradients");
                let w = x.grad(&want).expect("reference gives q, k, v gradients");
                g.into_data()
                    .assert_approx_eq::<f32>(&w.into_data(), tolerance);
            }
        }
    }

    #[test]
    fn attention_matches_burn() {
        check_attention(&Device::flex().autodiff(), 1e-5);
    }

    #[test]
    fn non_contiguous_input_is_handled() {
        let device = Device::flex();
        let x = Tensor::<3>::random([4, 6, 10], Distribution::Normal(0.0, 2.0), &device)
            .swap_dims(1, 2);
        softmax_last(x.clone()).into_data().assert_approx_eq::<f32>(
            &burn::tensor::activation::softmax(x.clone(), 2).into_data(),
            burn::tensor::Tolerance::absolute(1e-6),
        );
        gelu(x.clone()).into_data().assert_approx_eq::<f32>(
            &burn::tensor::activation::gelu(x).into_data(),
            burn::tensor::Tolerance::absolute(1e-5),
        );
    }

    /// The libtorch implementations (torch's kernels) against burn's ops on libtorch.
    #[cfg(feature = "tch")]
    #[test]
    #[allow(deprecated)]
    fn libtorch_fused_ops_match_burn() {
        let device = Device::libtorch().autodiff();
        check_on(&device, 3.0, 1e-5, gelu, burn::tensor::activation::gelu);
        check_on(&device, 4.0, 1e-5, softmax_last, |x| {
            burn::tensor::activation::softmax(x, 2)
        });
        for shape_d in [7, 384] {
            let gamma = Tensor::<1>::random(
                [shape_d],
                Distribution::Normal(1.0, 0.5),
                &device.clone().inner(),
            );
            let beta = Tensor::<1>::random(
                [shape_d],
                Distribution::Normal(0.0, 0.5),
                &device.clone().inner(),
            );
            let pick = |x: &Tensor<3>| x.dims()[2] == shape_d;
            check_on(
                &device,
                2.0,
                2e-5,
                |x| {
                    if pick(&x) {
                        layer_norm(x, gamma.clone(), beta.clone(), 1e-12)
                    } else {
                        x
                    }
                },
                |x| {
                    if pick(&x) {
                        burn::tensor::module::layer_norm(
                            x,
                            gamma.clone(),
                            Some(beta.clone()),
                            1e-12,
                        )
                    } else {
                        x
                    }
                },
            );
            check_on(
                &device,
                2.0,
                2e-5,
                |x| {
                    if pick(&x) {
                        rms_norm(x, gamma.clone(), 1e-6)
                    } else {
                        x
                    }
                },
                |x| {
                    if !pick(&x) {
                        return x;
                    }
                    let variance = x.clone().square().mean_dim(2);
                    x * (variance + 1e-6).sqrt().recip() * gamma.clone().unsqueeze::<3>()
                },
            );
        }
        check_attention(&device, 1e-5);
    }
}
