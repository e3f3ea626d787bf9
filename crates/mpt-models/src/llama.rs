//! Decoder-only causal LMs with the Llama layout (`LlamaForCausalLM`) and the Qwen2 layout
//! (`Qwen2ForCausalLM`: the same blocks with q/k/v biases): RMSNorm, rotate-half rotary
//! positions (`rope_theta`; `rope_scaling` of type `linear` or `llama3`), grouped-query
//! attention, SwiGLU, tied or separate `lm_head`.
//!
//! A soft prompt goes in front of the input embeddings as PEFT does it for CAUSAL_LM: the mask
//! is extended with ones and positions run `0..l+S` over prompt and input (PEFT drops
//! `position_ids`; batches are right-padded, so a row's real tokens sit at its first positions).
//!
//! HF key -> module (the `model.` prefix of `*ForCausalLM` checkpoints; a bare `LlamaModel`
//! without it is accepted too):
//!
//! | HF key | field |
//! |---|---|
//! | `model.embed_tokens.weight` `[V, d]` | `embed_tokens` |
//! | `model.layers.{i}.input_layernorm.weight` | `layers[i].attention_norm` |
//! | `model.layers.{i}.self_attn.{q,k,v}_proj.{weight,bias}` | `layers[i].{q,k,v}` (q times 1/sqrt(head_dim); biases: Qwen2, or `attention_bias`) |
//! | `model.layers.{i}.self_attn.o_proj.{weight,bias}` | `layers[i].o` (bias with `attention_bias`) |
//! | `model.layers.{i}.post_attention_layernorm.weight` | `layers[i].mlp_norm` |
//! | `model.layers.{i}.mlp.{gate,up,down}_proj.{weight,bias}` | `layers[i].{gate,up,down}` (bias with `mlp_bias`) |
//! | `model.norm.weight` | `norm` |
//! | `lm_head.weight` `[V, d]` (absent when tied) | `lm_head` |
//!
//! Ignored: `*.rotary_emb.inv_freq` buffers (recomputed from the config). Any other key is an
//! error.

use std::any::Any;
use std::path::Path;
use std::sync::Arc;

use burn::prelude::*;
use burn::tensor::activation::silu;
use serde::Deserialize;

use crate::backbone::{Arch, ArchConfig, ArchSpec, Backbone, CausalLm, Family, FamilyModel, Layout};
use crate::check;
use crate::error::{ModelError, Result};
use crate::layers::{Linear, RmsNorm, attend, mask_bias, merge_heads, split_heads};
use crate::weights::Weights;

/// `config.json` of a Llama or Qwen2 causal LM (HF field names).
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
pub struct LlamaConfig {
    /// `llama` or `qwen2`.
    pub model_type: String,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Model width d.
    pub hidden_size: usize,
    /// SwiGLU width.
    pub intermediate_size: usize,
    /// Layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention); defaults to `num_attention_heads`.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Width of one head; defaults to `hidden_size / num_attention_heads`.
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// RMSNorm epsilon.
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// Rotary base (transformers 4.x; 5.x writes it into `rope_parameters`).
    #[serde(default)]
    pub rope_theta: Option<f64>,
    /// Rotary scaling (`{"rope_type": "linear" | "llama3", "factor": ..}`), transformers 4.x;
    /// `default` or absent: none.
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    /// Rotary base and scaling as transformers 5.x writes them (`rope_theta`, `rope_type`, the
    /// scaling's fields); used before `rope_theta`/`rope_scaling` when present.
    #[serde(default)]
    pub rope_parameters: Option<serde_json::Value>,
    /// Positions the model was trained for (a longer input is refused).
    #[serde(default = "default_positions")]
    pub max_position_embeddings: usize,
    /// Whether `lm_head` is the embedding matrix.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Llama: q/k/v/o biases.
    #[serde(default)]
    pub attention_bias: bool,
    /// Llama: gate/up/down biases.
    #[serde(default)]
    pub mlp_bias: bool,
    /// FFN activation (only `silu`).
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Qwen2: sliding-window attention (refused when on).
    #[serde(default)]
    pub use_sliding_window: bool,
    /// Padding id (Llama checkpoints often have none: then `eos_token_id`, else 0).
    #[serde(default)]
    pub pad_token_id: Option<i64>,
    /// Beginning-of-sequence id.
    #[serde(default)]
    pub bos_token_id: Option<i64>,
    /// End-of-sequence id (the first one when the config lists several).
    #[serde(default, deserialize_with = "one_or_first")]
    pub eos_token_id: Option<i64>,
}

fn default_eps() -> f64 {
    1e-6
}
fn default_positions() -> usize {
    2048
}
fn default_act() -> String {
    "silu".into()
}

fn one_or_first<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(i64),
        Many(Vec<i64>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => None,
        Some(OneOrMany::One(v)) => Some(v),
        Some(OneOrMany::Many(v)) => v.first().copied(),
    })
}

impl LlamaConfig {
    /// Whether this is the Qwen2 layout (q/k/v biases always).
    pub fn is_qwen2(&self) -> bool {
        self.model_type == "qwen2"
    }

    /// Key/value heads.
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Width of one head.
    pub fn head_width(&self) -> usize {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// The id used to pad batches: `pad_token_id`, else `eos_token_id`, else 0.
    pub fn pad_id(&self) -> i64 {
        self.pad_token_id.or(self.eos_token_id).unwrap_or(0)
    }

    fn field_err(path: &Path, field: &str, message: String) -> ModelError {
        ModelError::ConfigValue { path: path.to_path_buf(), field: field.into(), message }
    }

    /// Checks what the loader relies on.
    pub fn validate(&self, path: &Path) -> Result<()> {
        for (field, value) in [
            ("num_attention_heads", self.num_attention_heads),
            ("num_hidden_layers", self.num_hidden_layers),
            ("hidden_size", self.hidden_size),
            ("num_key_value_heads", self.kv_heads()),
            ("head_dim", self.head_width()),
        ] {
            if value == 0 {
                return Err(Self::field_err(path, field, "must be positive".into()));
            }
        }
        if !self.num_attention_heads.is_multiple_of(self.kv_heads()) {
            return Err(Self::field_err(
                path,
                "num_key_value_heads",
                format!("{} does not divide num_attention_heads {}", self.kv_heads(), self.num_attention_heads),
            ));
        }
        if !self.head_width().is_multiple_of(2) {
            return Err(Self::field_err(
                path,
                "head_dim",
                format!("{} is odd; rotary positions need pairs", self.head_width()),
            ));
        }
        if self.hidden_act != "silu" {
            return Err(Self::field_err(path, "hidden_act", format!("{:?}; expected \"silu\"", self.hidden_act)));
        }
        if self.use_sliding_window {
            return Err(Self::field_err(
                path,
                "use_sliding_window",
                "sliding-window attention is not implemented".into(),
            ));
        }
        if let Some(id) =
            self.pad_token_id.into_iter().chain(self.eos_token_id).find(|&id| id < 0 || id as usize >= self.vocab_size)
        {
            return Err(Self::field_err(
                path,
                "pad_token_id",
                format!("special id {id} outside the vocabulary 0..{}", self.vocab_size),
            ));
        }
        self.inv_freq(path).map(|_| ())
    }

    /// The rotary base: `rope_parameters.rope_theta`, else `rope_theta`, else 10000.
    pub fn theta(&self) -> f64 {
        self.rope_parameters
            .as_ref()
            .and_then(|p| p.get("rope_theta"))
            .and_then(|v| v.as_f64())
            .or(self.rope_theta)
            .unwrap_or(10000.0)
    }

    /// Rotary inverse frequencies `[head_dim / 2]`, scaled as `rope_parameters` (or
    /// `rope_scaling`) says, as transformers' `ROPE_INIT_FUNCTIONS` compute them, in f32.
    pub fn inv_freq(&self, path: &Path) -> Result<Vec<f32>> {
        let hd = self.head_width();
        let theta = self.theta() as f32;
        let base: Vec<f32> = (0..hd / 2).map(|i| 1.0 / theta.powf((2 * i) as f32 / hd as f32)).collect();
        let scaling = self.rope_parameters.as_ref().or(self.rope_scaling.as_ref()).filter(|v| !v.is_null());
        let Some(scaling) = scaling else {
            return Ok(base);
        };
        let kind =
            scaling.get("rope_type").or_else(|| scaling.get("type")).and_then(|v| v.as_str()).unwrap_or("default");
        let num = |key: &str| -> Result<f32> {
            scaling.get(key).and_then(|v| v.as_f64()).map(|v| v as f32).ok_or_else(|| {
                Self::field_err(path, &format!("rope_scaling.{key}"), format!("missing; a {kind:?} scaling needs it"))
            })
        };
        match kind {
            "default" => Ok(base),
            "linear" => {
                let factor = num("factor")?;
                Ok(base.into_iter().map(|f| f / factor).collect())
            }
            "llama3" => {
                let factor = num("factor")?;
                let low = num("low_freq_factor")?;
                let high = num("high_freq_factor")?;
                let old = num("original_max_position_embeddings")?;
                let (low_wavelen, high_wavelen) = (old / low, old / high);
                Ok(base
                    .into_iter()
                    .map(|f| {
                        let wavelen = 2.0 * std::f32::consts::PI / f;
                        let scaled = if wavelen > low_wavelen { f / factor } else { f };
                        if wavelen < high_wavelen || wavelen > low_wavelen {
                            scaled
                        } else {
                            let smooth = (old / wavelen - low) / (high - low);
                            (1.0 - smooth) * scaled / factor + smooth * scaled
                        }
                    })
                    .collect())
            }
            other => Err(Self::field_err(
                path,
                "rope_scaling.rope_type",
                format!("{other:?} is not implemented; expected default, linear or llama3"),
            )),
        }
    }
}

#[derive(Debug, Clone)]
struct Block {
    attention_norm: RmsNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    mlp_norm: RmsNorm,
    gate: Linear,
    up: Linear,
    down: Linear,
}

/// A Llama or Qwen2 causal LM.
#[derive(Debug, Clone)]
pub struct Llama {
    /// The config it was built from.
    pub config: LlamaConfig,
    embed_tokens: Tensor<2>,
    layers: Vec<Block>,
    norm: RmsNorm,
    /// `[d, V]` (transposed for `linear`).
    lm_head: Tensor<2>,
    /// `[head_dim / 2]`.
    inv_freq: Vec<f32>,
    num_params: usize,
    /// Whether the file had its own `lm_head.weight`.
    pub separate_head: bool,
}

impl Llama {
    /// Builds the model from `weights`; `config_path` names config.json in errors.
    pub fn load(config: LlamaConfig, config_path: &Path, mut w: Weights) -> Result<Self> {
        config.validate(config_path)?;
        let inv_freq = config.inv_freq(config_path)?;
        let prefix = if w.contains("model.embed_tokens.weight") { "model." } else { "" };
        let p = |s: &str| format!("{prefix}{s}");
        let (v, d, ff) = (config.vocab_size, config.hidden_size, config.intermediate_size);
        let (h, kv, hd) = (config.num_attention_heads, config.kv_heads(), config.head_width());
        let eps = config.rms_norm_eps;
        let qkv_bias = config.is_qwen2() || config.attention_bias;
        let scale = 1.0 / (hd as f64).sqrt();
        let embed_tokens = w.tensor(&p("embed_tokens.weight"), [v, d])?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let l = |s: &str| p(&format!("layers.{i}.{s}"));
            layers.push(Block {
                attention_norm: RmsNorm::load(&mut w, &l("input_layernorm"), d, eps)?,
                // 1/sqrt(head_dim) folded into the query map (rotary positions are linear in q).
                q: Linear::load(&mut w, &l("self_attn.q_proj"), d, h * hd, qkv_bias)?.scaled(scale),
                k: Linear::load(&mut w, &l("self_attn.k_proj"), d, kv * hd, qkv_bias)?,
                v: Linear::load(&mut w, &l("self_attn.v_proj"), d, kv * hd, qkv_bias)?,
                o: Linear::load(&mut w, &l("self_attn.o_proj"), h * hd, d, config.attention_bias)?,
                mlp_norm: RmsNorm::load(&mut w, &l("post_attention_layernorm"), d, eps)?,
                gate: Linear::load(&mut w, &l("mlp.gate_proj"), d, ff, config.mlp_bias)?,
                up: Linear::load(&mut w, &l("mlp.up_proj"), d, ff, config.mlp_bias)?,
                down: Linear::load(&mut w, &l("mlp.down_proj"), ff, d, config.mlp_bias)?,
            });
        }
        let norm = RmsNorm::load(&mut w, &p("norm"), d, eps)?;
        let separate_head = w.contains("lm_head.weight") && !config.tie_word_embeddings;
        let lm_head = if separate_head {
            w.linear_weight("lm_head.weight", d, v)?
        } else {
            w.skip("lm_head.weight");
            embed_tokens.clone().transpose()
        };
        w.finish(arch_name(&config), |name| name.ends_with("rotary_emb.inv_freq"))?;
        let bias = |on: bool, n: usize| if on { n } else { 0 };
        let attn = d * h * hd
            + 2 * d * kv * hd
            + h * hd * d
            + bias(qkv_bias, h * hd + 2 * kv * hd)
            + bias(config.attention_bias, d);
        let mlp = 3 * d * ff + bias(config.mlp_bias, 2 * ff + d);
        let num_params =
            v * d + config.num_hidden_layers * (attn + mlp + 2 * d) + d + if separate_head { v * d } else { 0 };
        Ok(Self { config, embed_tokens, layers, norm, lm_head, inv_freq, num_params, separate_head })
    }

    /// `cos`, `sin` tables `[1, 1, L, head_dim]` for positions `0..len` (rotate-half layout:
    /// the frequencies repeated over both halves).
    fn rotary(&self, len: usize, device: &Device) -> (Tensor<4>, Tensor<4>) {
        let half = self.inv_freq.len();
        let hd = 2 * half;
        let mut cos = Vec::with_capacity(len * hd);
        let mut sin = Vec::with_capacity(len * hd);
        for pos in 0..len {
            for j in 0..hd {
                let angle = pos as f32 * self.inv_freq[j % half];
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        let t = |v: Vec<f32>| Tensor::<2>::from_data(TensorData::new(v, [len, hd]), device).unsqueeze::<4>();
        (t(cos), t(sin))
    }

    /// Decoder stack over input embeddings `[B, L, d]` with mask `[B, L]` (right-padded):
    /// final hidden states `[B, L, d]` after the last norm. Inputs unchecked.
    pub fn forward_embeds(&self, embeds: Tensor<3>, attention_mask: Tensor<2, Int>) -> Tensor<3> {
        let [b, l, _] = embeds.dims();
        let device = attention_mask.device();
        let (h, kv, hd) = (self.config.num_attention_heads, self.config.kv_heads(), self.config.head_width());
        let causal: Vec<f32> = (0..l).flat_map(|q| (0..l).map(move |k| if k > q { f32::MIN } else { 0.0 })).collect();
        let causal = Tensor::<2>::from_data(TensorData::new(causal, [l, l]), &device).unsqueeze::<4>();
        let bias = (causal + mask_bias(attention_mask)).clamp_min(f32::MIN);
        let (cos, sin) = self.rotary(l, &device);
        let rope = |x: Tensor<4>| crate::layers::rotate(x, &cos, &sin);
        let repeat = |x: Tensor<4>| {
            if kv == h {
                return x;
            }
            x.unsqueeze_dim::<5>(2).expand([b, kv, h / kv, l, hd]).reshape([b, h, l, hd])
        };
        let mut hidden = embeds;
        for block in &self.layers {
            let x = block.attention_norm.forward(hidden.clone());
            let q = rope(split_heads(block.q.forward(x.clone()), h));
            let k = repeat(rope(split_heads(block.k.forward(x.clone()), kv)));
            let v = repeat(split_heads(block.v.forward(x), kv));
            hidden = hidden + block.o.forward(merge_heads(attend(q, k, v, bias.clone())));
            let x = block.mlp_norm.forward(hidden.clone());
            hidden = hidden + block.down.forward(silu(block.gate.forward(x.clone())) * block.up.forward(x));
        }
        self.norm.forward(hidden)
    }

    /// Greedy decoding's step with a key/value cache: hidden states `[1, n, d]` of `embeds`
    /// `[1, n, d]` at positions `offset..offset + n`, attending to the `offset` positions whose
    /// keys and values `cache` holds (one `([1, kv, offset, hd], same)` per layer, empty at the
    /// start) and to themselves causally; appends their keys and values to `cache`. The same
    /// arithmetic as [`Llama::forward_embeds`] on the whole sequence, one row, no padding.
    fn forward_cached(&self, embeds: Tensor<3>, offset: usize, cache: &mut Vec<(Tensor<4>, Tensor<4>)>) -> Tensor<3> {
        let [_, n, _] = embeds.dims();
        let device = embeds.device();
        let (h, kv, hd) = (self.config.num_attention_heads, self.config.kv_heads(), self.config.head_width());
        let total = offset + n;
        let causal: Vec<f32> =
            (0..n).flat_map(|q| (0..total).map(move |k| if k > offset + q { f32::MIN } else { 0.0 })).collect();
        let bias = Tensor::<2>::from_data(TensorData::new(causal, [n, total]), &device).unsqueeze::<4>();
        let (cos, sin) = self.rotary(total, &device);
        let (cos, sin) = (cos.slice([0..1, 0..1, offset..total, 0..hd]), sin.slice([0..1, 0..1, offset..total, 0..hd]));
        let rope = |x: Tensor<4>| crate::layers::rotate(x, &cos, &sin);
        let repeat = |x: Tensor<4>| {
            if kv == h {
                return x;
            }
            x.unsqueeze_dim::<5>(2).expand([1, kv, h / kv, total, hd]).reshape([1, h, total, hd])
        };
        let mut hidden = embeds;
        for (i, block) in self.layers.iter().enumerate() {
            let x = block.attention_norm.forward(hidden.clone());
            let q = rope(split_heads(block.q.forward(x.clone()), h));
            let k = rope(split_heads(block.k.forward(x.clone()), kv));
            let v = split_heads(block.v.forward(x), kv);
            let (k, v) = crate::layers::extend_cache(cache, i, k, v);
            hidden = hidden + block.o.forward(merge_heads(attend(q, repeat(k), repeat(v), bias.clone())));
            let x = block.mlp_norm.forward(hidden.clone());
            hidden = hidden + block.down.forward(silu(block.gate.forward(x.clone())) * block.up.forward(x));
        }
        self.norm.forward(hidden)
    }

    /// The checks of [`Llama::try_forward`]: ids `[B, S]` with `B, S ≥ 1`, a mask of the same
    /// shape, a prompt `[B, l ≥ 1, d]`, `l + S` within `max_position_embeddings`.
    pub fn check_forward(
        &self,
        input_ids: &Tensor<2, Int>,
        attention_mask: &Tensor<2, Int>,
        prompt: Option<&Tensor<3>>,
    ) -> Result<()> {
        let dims = input_ids.dims();
        check::rows("input_ids", &dims)?;
        check::same("attention_mask", &attention_mask.dims(), &dims, "the shape of input_ids")?;
        let l = match prompt {
            Some(p) => {
                check::prompt(p.dims(), dims[0], self.config.hidden_size)?;
                p.dims()[1]
            }
            None => 0,
        };
        if l + dims[1] > self.config.max_position_embeddings {
            return Err(ModelError::Input {
                name: "input_ids".into(),
                message: format!(
                    "sequence length {} (prompt included) exceeds max_position_embeddings {}",
                    l + dims[1],
                    self.config.max_position_embeddings
                ),
            });
        }
        Ok(())
    }

    /// Final hidden states `[B, l+S, d]` for ids and mask `[B, S]` with an optional prompt
    /// `[B, l, d]` in front (PEFT semantics). Inputs unchecked.
    pub fn forward_hidden(
        &self,
        input_ids: Tensor<2, Int>,
        attention_mask: Tensor<2, Int>,
        prompt: Option<Tensor<3>>,
    ) -> Tensor<3> {
        let embeds = burn::tensor::module::embedding(self.embed_tokens.clone(), input_ids);
        let (embeds, mask, _) = crate::prepend_prompt(embeds, attention_mask, None, prompt);
        self.forward_embeds(embeds, mask)
    }

    /// LM logits `[B, T, V]` from hidden states `[B, T, d]`.
    pub fn lm_logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        burn::tensor::module::linear(hidden, self.lm_head.clone(), None)
    }

    /// Greedy decoding of up to `max_new_tokens` per row, like `generate(do_sample=False)` on
    /// each row alone: the prompt and the row's tokens in one pass, then one token at a time
    /// against the cached keys and values ([`Llama::forward_cached`]). Returns `[B][N]` new
    /// tokens; after EOS a row holds the pad id.
    pub fn generate(
        &self,
        input_ids: &[Vec<i64>],
        prompt: Option<&Tensor<2>>,
        max_new_tokens: usize,
        device: &Device,
    ) -> Vec<Vec<i64>> {
        let (pad, eos) = (self.config.pad_id(), self.config.eos_token_id);
        input_ids
            .iter()
            .map(|row| {
                let mut out = Vec::with_capacity(max_new_tokens);
                let mut cache = Vec::with_capacity(self.layers.len());
                let n = row.len();
                let t = Tensor::<2, Int>::from_data(TensorData::new(row.clone(), [1, n]), device);
                let mut step = burn::tensor::module::embedding(self.embed_tokens.clone(), t);
                if let Some(p) = prompt {
                    step = Tensor::cat(vec![p.clone().unsqueeze::<3>(), step], 1);
                }
                let mut offset = 0;
                let mut done = false;
                for _ in 0..max_new_tokens {
                    if done {
                        out.push(pad);
                        continue;
                    }
                    let [_, len, d] = step.dims();
                    let hidden = self.forward_cached(step, offset, &mut cache);
                    offset += len;
                    let last = self.lm_logits(hidden.slice([0..1, len - 1..len, 0..d]));
                    let next = last.argmax(2).into_scalar::<i64>();
                    out.push(next);
                    done = Some(next) == eos;
                    let t = Tensor::<2, Int>::from_data(TensorData::new(vec![next], [1, 1]), device);
                    step = burn::tensor::module::embedding(self.embed_tokens.clone(), t);
                }
                out
            })
            .collect()
    }
}

/// The registered name of `config`'s layout.
fn arch_name(config: &LlamaConfig) -> &'static str {
    if config.is_qwen2() { QWEN2.name } else { ARCH.name }
}

fn parse(value: serde_json::Value) -> serde_json::Result<Box<dyn ArchConfig>> {
    Ok(Box::new(serde_json::from_value::<LlamaConfig>(value)?))
}

/// The registry entry of the Llama layout.
pub(crate) const ARCH: ArchSpec = ArchSpec { name: "llama", model_types: &["llama"], family: Family::CausalLm, parse };

/// The registry entry of the Qwen2 layout (q/k/v biases).
pub(crate) const QWEN2: ArchSpec = ArchSpec { name: "qwen2", model_types: &["qwen2"], family: Family::CausalLm, parse };

impl ArchConfig for LlamaConfig {
    fn dim(&self) -> usize {
        self.hidden_size
    }

    fn load(&self, config_path: &Path, weights: Weights) -> Result<Arc<dyn Backbone>> {
        Ok(Arc::new(Llama::load(self.clone(), config_path, weights)?))
    }
}

impl Backbone for Llama {
    fn arch(&self) -> Arch {
        Arch::named(arch_name(&self.config)).expect("registered")
    }

    fn family(&self) -> FamilyModel<'_> {
        FamilyModel::CausalLm(self)
    }

    fn dim(&self) -> usize {
        self.config.hidden_size
    }

    fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }

    fn pad_token_id(&self) -> i64 {
        self.config.pad_id()
    }

    fn num_params(&self) -> usize {
        self.num_params
    }

    fn word_embedding_matrix(&self) -> Tensor<2> {
        self.embed_tokens.clone()
    }

    fn embed_tokens(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        burn::tensor::module::embedding(self.embed_tokens.clone(), ids)
    }

    fn layout(&self) -> Layout {
        let c = &self.config;
        let head = if self.separate_head { "separate lm_head" } else { "tied lm_head" };
        Layout {
            variant: format!(
                "{} heads / {} key-value heads of {}, SwiGLU, rope_theta {}, {head}",
                c.num_attention_heads,
                c.kv_heads(),
                c.head_width(),
                c.theta()
            ),
            encoder_layers: c.num_hidden_layers,
            decoder_layers: 0,
            heads: c.num_attention_heads,
            d_ff: c.intermediate_size,
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl CausalLm for Llama {
    fn eos_token_id(&self) -> Option<i64> {
        self.config.eos_token_id
    }

    fn forward_hidden(
        &self,
        input_ids: Tensor<2, Int>,
        attention_mask: Tensor<2, Int>,
        prompt: Option<Tensor<3>>,
    ) -> Tensor<3> {
        Llama::forward_hidden(self, input_ids, attention_mask, prompt)
    }

    fn try_forward_hidden(
        &self,
        input_ids: Tensor<2, Int>,
        attention_mask: Tensor<2, Int>,
        prompt: Option<Tensor<3>>,
    ) -> Result<Tensor<3>> {
        self.check_forward(&input_ids, &attention_mask, prompt.as_ref())?;
        Ok(Llama::forward_hidden(self, input_ids, attention_mask, prompt))
    }

    fn lm_logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        Llama::lm_logits(self, hidden)
    }

    fn generate(
        &self,
        input_ids: &[Vec<i64>],
        prompt: Option<&Tensor<2>>,
        max_new_tokens: usize,
        device: &Device,
    ) -> Vec<Vec<i64>> {
        Llama::generate(self, input_ids, prompt, max_new_tokens, device)
    }
}
