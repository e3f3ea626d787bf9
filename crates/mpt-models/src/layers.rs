//! Frozen building blocks shared by the architectures: linear maps, norms, multi-head
//! attention plumbing. Weights are plain tensors on a non-autodiff device: they never
//! receive gradients, and operations mixing them with tracked activations treat them as
//! constants.

use burn::prelude::*;

use crate::error::Result;
use crate::fused;
use crate::weights::Weights;

/// `y = x W + b`, with `W` stored `[d_in, d_out]`.
#[derive(Debug, Clone)]
pub struct Linear {
    /// `[d_in, d_out]`.
    pub weight: Tensor<2>,
    /// `[d_out]`.
    pub bias: Option<Tensor<1>>,
}

impl Linear {
    /// Loads `{prefix}.weight` (and `{prefix}.bias` when `bias`) from an HF `nn.Linear`.
    pub fn load(w: &mut Weights, prefix: &str, d_in: usize, d_out: usize, bias: bool) -> Result<Self> {
        let weight = w.linear_weight(&format!("{prefix}.weight"), d_in, d_out)?;
        let bias = if bias { Some(w.tensor(&format!("{prefix}.bias"), [d_out])?) } else { None };
        Ok(Self { weight, bias })
    }

    /// The same map times `factor`: `y = x (factor W) + factor b`.
    pub fn scaled(self, factor: f64) -> Self {
        Self { weight: self.weight * factor, bias: self.bias.map(|b| b * factor) }
    }

    /// `[.., d_in] -> [.., d_out]`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        fused::linear(x, self.weight.clone(), self.bias.clone())
    }

    /// Number of scalars.
    pub fn num_params(&self) -> usize {
        self.weight.shape().num_elements() + self.bias.as_ref().map_or(0, |b| b.dims()[0])
    }
}

/// BERT's LayerNorm (mean and variance over the last axis, affine).
#[derive(Debug, Clone)]
pub struct LayerNorm {
    /// `[d]`.
    pub weight: Tensor<1>,
    /// `[d]`.
    pub bias: Tensor<1>,
    /// Added to the variance.
    pub eps: f64,
}

impl LayerNorm {
    /// Loads `{prefix}.weight`/`.bias`, or the legacy `{prefix}.gamma`/`.beta` names.
    pub fn load(w: &mut Weights, prefix: &str, d: usize, eps: f64) -> Result<Self> {
        let legacy = !w.contains(&format!("{prefix}.weight")) && w.contains(&format!("{prefix}.gamma"));
        let (wn, bn) = if legacy { ("gamma", "beta") } else { ("weight", "bias") };
        Ok(Self {
            weight: w.tensor(&format!("{prefix}.{wn}"), [d])?,
            bias: w.tensor(&format!("{prefix}.{bn}"), [d])?,
            eps,
        })
    }

    /// `[.., d] -> [.., d]`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        fused::layer_norm(x, self.weight.clone(), self.bias.clone(), self.eps)
    }

    /// Number of scalars.
    pub fn num_params(&self) -> usize {
        2 * self.weight.dims()[0]
    }
}

/// T5's RMS norm: `x / sqrt(mean(x²) + eps) * weight`, no mean subtraction, no bias.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    /// `[d]`.
    pub weight: Tensor<1>,
    /// Added to the mean square.
    pub eps: f64,
}

impl RmsNorm {
    /// Loads `{prefix}.weight`.
    pub fn load(w: &mut Weights, prefix: &str, d: usize, eps: f64) -> Result<Self> {
        Ok(Self { weight: w.tensor(&format!("{prefix}.weight"), [d])?, eps })
    }

    /// `[B, L, d] -> [B, L, d]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        fused::rms_norm(x, self.weight.clone(), self.eps)
    }
}

/// `[B, L, H*dh] -> [B, H, L, dh]`.
pub fn split_heads(x: Tensor<3>, heads: usize) -> Tensor<4> {
    let [b, l, d] = x.dims();
    x.reshape([b, l, heads, d / heads]).swap_dims(1, 2)
}

/// `[B, H, L, dh] -> [B, L, H*dh]`.
pub fn merge_heads(x: Tensor<4>) -> Tensor<3> {
    let [b, h, l, dh] = x.dims();
    x.swap_dims(1, 2).reshape([b, l, h * dh])
}

/// Dot-product attention over `[B, H, L, dh]` heads with an additive bias broadcast to
/// `[B, H, Lq, Lk]` (padding mask and/or relative position bias): `softmax(q kᵀ + bias) v`,
/// unscaled (T5 does not scale; BERT folds 1/sqrt(dh) into its query weights). Fused where the
/// backend allows ([`fused::attention`]: torch's flash-attention CPU kernels on libtorch, the
/// per-head gemm calls around a fused softmax on flex; flex's own `attention` op is a scalar
/// loop).
pub fn attend(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, bias: Tensor<4>) -> Tensor<4> {
    fused::attention(q, k, v, bias)
}

/// Appends a layer's new key and value heads `[B, H, n, dh]` to its entry `layer` of a decoding
/// cache (created on the first step) and returns the keys and values of every position so far.
pub fn extend_cache(
    cache: &mut Vec<(Tensor<4>, Tensor<4>)>,
    layer: usize,
    k: Tensor<4>,
    v: Tensor<4>,
) -> (Tensor<4>, Tensor<4>) {
    let (k, v) = match cache.get(layer) {
        Some((past_k, past_v)) => (Tensor::cat(vec![past_k.clone(), k], 2), Tensor::cat(vec![past_v.clone(), v], 2)),
        None => (k, v),
    };
    if layer < cache.len() {
        cache[layer] = (k.clone(), v.clone());
    } else {
        cache.push((k.clone(), v.clone()));
    }
    (k, v)
}

/// Rotate-half rotary positions on heads `[B, H, L, dh]` with `cos`, `sin` tables
/// broadcastable to them (`[1, 1, L, dh]`).
pub fn rotate(x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
    let [b, h, l, dh] = x.dims();
    let first = x.clone().slice([0..b, 0..h, 0..l, 0..dh / 2]);
    let second = x.clone().slice([0..b, 0..h, 0..l, dh / 2..dh]);
    x * cos.clone() + Tensor::cat(vec![second.neg(), first], 3) * sin.clone()
}

/// Turns a `[B, L]` 0/1 attention mask into an additive bias `[B, 1, 1, L]`:
/// 0 where attended, the most negative finite f32 where masked (as Hugging Face does).
pub fn mask_bias(mask: Tensor<2, Int>) -> Tensor<4> {
    let [b, l] = mask.dims();
    let keep = mask.float();
    ((keep.neg() + 1.0) * f32::MIN as f64).reshape([b, 1, 1, l])
}
