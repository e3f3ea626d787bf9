//! T5 encoder-decoder (T5ForConditionalGeneration), v1.0 and v1.1/flan layouts.
//!
//! - v1.0: ReLU FFN (`wi`, `wo`), LM head tied to `shared`, decoder output scaled by
//!   `d_model^-0.5` before the head.
//! - v1.1 / flan: gated-GELU FFN (`wi_0`, `wi_1`, `wo`, tanh GELU), separate `lm_head`.
//!
//! The scaling follows `scale_decoder_outputs` when config.json has it (transformers 5.x
//! writes it), else `tie_word_embeddings`. `lm_head.weight` is used whenever the file has it;
//! otherwise the head is `shared`.
//!
//! Forward takes encoder input embeddings so a soft prompt can be prepended as PEFT does it
//! for seq2seq models: prompt rows in front of the encoder's input embeddings, the encoder
//! attention mask extended with ones; relative positions run over the whole length.
//!
//! HF key -> module:
//!
//! | HF key | field |
//! |---|---|
//! | `shared.weight` `[V, d]` | `shared` (`encoder.embed_tokens.weight`, `decoder.embed_tokens.weight`: tied copies, skipped) |
//! | `{encoder,decoder}.block.{i}.layer.0.layer_norm.weight` | `blocks[i].self_norm` |
//! | `{encoder,decoder}.block.{i}.layer.0.SelfAttention.{q,k,v,o}.weight` | `blocks[i].self_attn` |
//! | `{encoder,decoder}.block.0.layer.0.SelfAttention.relative_attention_bias.weight` `[buckets, H]` | `*.self_attn.relative_bias` |
//! | `decoder.block.{i}.layer.1.layer_norm.weight` | `blocks[i].cross_norm` |
//! | `decoder.block.{i}.layer.1.EncDecAttention.{q,k,v,o}.weight` | `blocks[i].cross_attn` |
//! | `{enc: layer.1, dec: layer.2}.layer_norm.weight` | `blocks[i].ff_norm` |
//! | `….DenseReluDense.{wi,wo}` or `{wi_0,wi_1,wo}` | `blocks[i].ff` |
//! | `{encoder,decoder}.final_layer_norm.weight` | `final_norm` |
//! | `lm_head.weight` `[V, d]` (optional) | `lm_head` |
//!
//! Ignored: `decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight`, which
//! original checkpoints carry but T5 never uses. Any other unknown key is an error.

use std::path::Path;

use burn::prelude::*;
use burn::tensor::activation::{gelu_approximate, relu, silu};
use serde::Deserialize;

use std::any::Any;
use std::sync::Arc;

use crate::backbone::{Arch, ArchConfig, ArchSpec, Backbone, Family, FamilyModel, Layout, Seq2Seq};
use crate::check;
use crate::error::{ModelError, Result};
use crate::layers::{Linear, RmsNorm, attend, mask_bias, merge_heads, split_heads};
use crate::weights::Weights;

/// `config.json` of a T5 model (HF field names).
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
pub struct T5Config {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Model width d.
    pub d_model: usize,
    /// Width of one attention head.
    pub d_kv: usize,
    /// FFN width.
    pub d_ff: usize,
    /// Encoder layers.
    pub num_layers: usize,
    /// Decoder layers (defaults to `num_layers`).
    #[serde(default)]
    pub num_decoder_layers: Option<usize>,
    /// Attention heads.
    pub num_heads: usize,
    /// Relative position buckets.
    #[serde(default = "default_buckets")]
    pub relative_attention_num_buckets: usize,
    /// Largest distance with its own bucket range.
    #[serde(default = "default_max_distance")]
    pub relative_attention_max_distance: usize,
    /// RMS norm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f64,
    /// `relu`, `gelu`, `gated-gelu`, `gated-silu`, ….
    #[serde(default = "default_ff_proj")]
    pub feed_forward_proj: String,
    /// Whether the LM head is tied to `shared`.
    #[serde(default = "default_true")]
    pub tie_word_embeddings: bool,
    /// transformers 5.x: whether the decoder output is scaled by `d_model^-0.5`.
    #[serde(default)]
    pub scale_decoder_outputs: Option<bool>,
    /// Padding id.
    #[serde(default)]
    pub pad_token_id: i64,
    /// End-of-sequence id.
    #[serde(default = "default_eos")]
    pub eos_token_id: i64,
    /// First decoder id (defaults to the pad id).
    #[serde(default)]
    pub decoder_start_token_id: Option<i64>,
}

fn default_buckets() -> usize {
    32
}
fn default_max_distance() -> usize {
    128
}
fn default_eps() -> f64 {
    1e-6
}
fn default_ff_proj() -> String {
    "relu".into()
}
fn default_true() -> bool {
    true
}
fn default_eos() -> i64 {
    1
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Act {
    Relu,
    Gelu,
    GeluNew,
    Silu,
}

impl Act {
    fn apply(self, x: Tensor<3>) -> Tensor<3> {
        match self {
            Act::Relu => relu(x),
            Act::Gelu => crate::fused::gelu(x),
            Act::GeluNew => gelu_approximate(x),
            Act::Silu => silu(x),
        }
    }
}

impl T5Config {
    /// Decoder depth.
    pub fn decoder_layers(&self) -> usize {
        self.num_decoder_layers.unwrap_or(self.num_layers)
    }

    /// Whether the decoder output is multiplied by `d_model^-0.5` before the LM head.
    pub fn scales_decoder_output(&self) -> bool {
        self.scale_decoder_outputs.unwrap_or(self.tie_word_embeddings)
    }

    /// The id the decoder starts from.
    pub fn decoder_start(&self) -> i64 {
        self.decoder_start_token_id.unwrap_or(self.pad_token_id)
    }

    /// (gated, activation), as transformers derives them from `feed_forward_proj`.
    fn ff_kind(&self, path: &Path) -> Result<(bool, Act)> {
        let proj = self.feed_forward_proj.as_str();
        let (gated, act) = match proj.split_once('-') {
            Some(("gated", act)) => (true, act),
            Some(_) => (false, ""),
            None => (false, proj),
        };
        let act = match (gated, act) {
            (true, "gelu") => Act::GeluNew,
            (_, "relu") => Act::Relu,
            (false, "gelu") => Act::Gelu,
            (_, "gelu_new") => Act::GeluNew,
            (_, "silu") => Act::Silu,
            _ => {
                return Err(ModelError::ConfigValue {
                    path: path.to_path_buf(),
                    field: "feed_forward_proj".into(),
                    message: format!("{proj:?} is not supported; expected relu, gelu, gated-gelu or gated-silu"),
                });
            }
        };
        Ok((gated, act))
    }

    /// Checks values the loader relies on.
    pub fn validate(&self, path: &Path) -> Result<()> {
        self.ff_kind(path)?;
        for (field, value) in [
            ("num_heads", self.num_heads),
            ("d_kv", self.d_kv),
            ("relative_attention_num_buckets", self.relative_attention_num_buckets),
        ] {
            if value == 0 {
                return Err(ModelError::ConfigValue {
                    path: path.to_path_buf(),
                    field: field.into(),
                    message: "must be positive".into(),
                });
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    /// `[buckets, H]`, only in the first block's self-attention.
    relative_bias: Option<Tensor<2>>,
}

impl Attention {
    fn load(w: &mut Weights, prefix: &str, c: &T5Config, relative: bool) -> Result<Self> {
        let inner = c.num_heads * c.d_kv;
        let relative_bias = if relative {
            Some(w.tensor(
                &format!("{prefix}.relative_attention_bias.weight"),
                [c.relative_attention_num_buckets, c.num_heads],
            )?)
        } else {
            None
        };
        Ok(Self {
            q: Linear::load(w, &format!("{prefix}.q"), c.d_model, inner, false)?,
            k: Linear::load(w, &format!("{prefix}.k"), c.d_model, inner, false)?,
            v: Linear::load(w, &format!("{prefix}.v"), c.d_model, inner, false)?,
            o: Linear::load(w, &format!("{prefix}.o"), inner, c.d_model, false)?,
            relative_bias,
        })
    }

    /// `x`: `[B, Lq, d]`, `kv`: `[B, Lk, d]`, `bias`: broadcastable to `[B, H, Lq, Lk]`.
    fn forward(&self, x: Tensor<3>, kv: Tensor<3>, bias: Tensor<4>, heads: usize) -> Tensor<3> {
        let (k, v) = self.keys_values(kv, heads);
        self.forward_kv(x, k, v, bias, heads)
    }

    /// The key and value heads `[B, H, Lk, dk]` of `kv` `[B, Lk, d]`.
    fn keys_values(&self, kv: Tensor<3>, heads: usize) -> (Tensor<4>, Tensor<4>) {
        (split_heads(self.k.forward(kv.clone()), heads), split_heads(self.v.forward(kv), heads))
    }

    /// `x` `[B, Lq, d]` attending to key and value heads `[B, H, Lk, dk]`.
    fn forward_kv(&self, x: Tensor<3>, k: Tensor<4>, v: Tensor<4>, bias: Tensor<4>, heads: usize) -> Tensor<3> {
        let q = split_heads(self.q.forward(x), heads);
        // T5 does not scale scores by 1/sqrt(d_kv): the scale is folded into the weights.
        self.o.forward(merge_heads(attend(q, k, v, bias)))
    }
}

#[derive(Debug, Clone)]
enum FeedForward {
    Plain { wi: Linear, wo: Linear },
    Gated { wi_0: Linear, wi_1: Linear, wo: Linear },
}

impl FeedForward {
    fn load(w: &mut Weights, prefix: &str, c: &T5Config, gated: bool) -> Result<Self> {
        let (d, ff) = (c.d_model, c.d_ff);
        Ok(if gated {
            FeedForward::Gated {
                wi_0: Linear::load(w, &format!("{prefix}.wi_0"), d, ff, false)?,
                wi_1: Linear::load(w, &format!("{prefix}.wi_1"), d, ff, false)?,
                wo: Linear::load(w, &format!("{prefix}.wo"), ff, d, false)?,
            }
        } else {
            FeedForward::Plain {
                wi: Linear::load(w, &format!("{prefix}.wi"), d, ff, false)?,
                wo: Linear::load(w, &format!("{prefix}.wo"), ff, d, false)?,
            }
        })
    }

    fn forward(&self, x: Tensor<3>, act: Act) -> Tensor<3> {
        match self {
            FeedForward::Plain { wi, wo } => wo.forward(act.apply(wi.forward(x))),
            FeedForward::Gated { wi_0, wi_1, wo } => wo.forward(act.apply(wi_0.forward(x.clone())) * wi_1.forward(x)),
        }
    }
}

#[derive(Debug, Clone)]
struct Block {
    self_norm: RmsNorm,
    self_attn: Attention,
    cross: Option<(RmsNorm, Attention)>,
    ff_norm: RmsNorm,
    ff: FeedForward,
}

#[derive(Debug, Clone)]
struct Stack {
    blocks: Vec<Block>,
    final_norm: RmsNorm,
    bidirectional: bool,
}

impl Stack {
    fn load(w: &mut Weights, name: &str, c: &T5Config, layers: usize, gated: bool) -> Result<Self> {
        let decoder = name == "decoder";
        let eps = c.layer_norm_epsilon;
        let mut blocks = Vec::with_capacity(layers);
        for i in 0..layers {
            let l = |j: usize, s: &str| format!("{name}.block.{i}.layer.{j}.{s}");
            let cross = if decoder {
                Some((
                    RmsNorm::load(w, &l(1, "layer_norm"), c.d_model, eps)?,
                    Attention::load(w, &l(1, "EncDecAttention"), c, false)?,
                ))
            } else {
                None
            };
            let ff_index = if decoder { 2 } else { 1 };
            blocks.push(Block {
                self_norm: RmsNorm::load(w, &l(0, "layer_norm"), c.d_model, eps)?,
                self_attn: Attention::load(w, &l(0, "SelfAttention"), c, i == 0)?,
                cross,
                ff_norm: RmsNorm::load(w, &l(ff_index, "layer_norm"), c.d_model, eps)?,
                ff: FeedForward::load(w, &l(ff_index, "DenseReluDense"), c, gated)?,
            });
        }
        Ok(Self {
            blocks,
            final_norm: RmsNorm::load(w, &format!("{name}.final_layer_norm"), c.d_model, eps)?,
            bidirectional: !decoder,
        })
    }

    /// Relative position bias `[1, H, Lq, Lk]` from the first block's table.
    fn position_bias(&self, c: &T5Config, lq: usize, lk: usize, device: &Device) -> Tensor<4> {
        self.position_bias_from(c, 0, lq, lk, device)
    }

    /// [`Stack::position_bias`] for queries at positions `first..first + lq`.
    fn position_bias_from(&self, c: &T5Config, first: usize, lq: usize, lk: usize, device: &Device) -> Tensor<4> {
        let table =
            self.blocks[0].self_attn.relative_bias.clone().expect("first block carries the relative attention bias");
        let buckets: Vec<i64> = (0..lq)
            .flat_map(|q| (0..lk).map(move |k| (q, k)))
            .map(|(q, k)| {
                relative_position_bucket(
                    k as i64 - (first + q) as i64,
                    self.bidirectional,
                    c.relative_attention_num_buckets,
                    c.relative_attention_max_distance,
                )
            })
            .collect();
        let ids = Tensor::<1, Int>::from_data(TensorData::new(buckets, [lq * lk]), device);
        table.select(0, ids).reshape([lq, lk, c.num_heads]).permute([2, 0, 1]).unsqueeze::<4>()
    }

    fn forward(
        &self,
        c: &T5Config,
        act: Act,
        mut hidden: Tensor<3>,
        self_bias: Tensor<4>,
        cross: Option<(&Tensor<3>, &Tensor<4>)>,
    ) -> Tensor<3> {
        for block in &self.blocks {
            let normed = block.self_norm.forward(hidden.clone());
            hidden = hidden + block.self_attn.forward(normed.clone(), normed, self_bias.clone(), c.num_heads);
            if let (Some((norm, attn)), Some((memory, bias))) = (&block.cross, cross) {
                let normed = norm.forward(hidden.clone());
                hidden = hidden + attn.forward(normed, memory.clone(), bias.clone(), c.num_heads);
            }
            let normed = block.ff_norm.forward(hidden.clone());
            hidden = hidden + block.ff.forward(normed, act);
        }
        self.final_norm.forward(hidden)
    }

    /// The decoder's step at `position` with a cache: hidden states `[B, 1, d]` of the token
    /// embeddings `hidden` `[B, 1, d]`, attending to the keys and values of the positions before
    /// (`cache`, one `[B, H, position, dk]` pair per block, appended to here) and to the encoder's
    /// (`cross`: one pair per block, and the encoder mask's bias). The arithmetic of [`Stack::forward`] with
    /// a causal mask, for the last position only.
    fn forward_step(
        &self,
        c: &T5Config,
        act: Act,
        mut hidden: Tensor<3>,
        position: usize,
        cache: &mut Vec<(Tensor<4>, Tensor<4>)>,
        (cross, cross_bias): (&[(Tensor<4>, Tensor<4>)], &Tensor<4>),
    ) -> Tensor<3> {
        let self_bias = self.position_bias_from(c, position, 1, position + 1, &hidden.device());
        for (i, block) in self.blocks.iter().enumerate() {
            let normed = block.self_norm.forward(hidden.clone());
            let (k, v) = block.self_attn.keys_values(normed.clone(), c.num_heads);
            let (k, v) = crate::layers::extend_cache(cache, i, k, v);
            hidden = hidden + block.self_attn.forward_kv(normed, k, v, self_bias.clone(), c.num_heads);
            if let (Some((norm, attn)), Some((ck, cv))) = (&block.cross, cross.get(i)) {
                let normed = norm.forward(hidden.clone());
                hidden = hidden + attn.forward_kv(normed, ck.clone(), cv.clone(), cross_bias.clone(), c.num_heads);
            }
            let normed = block.ff_norm.forward(hidden.clone());
            hidden = hidden + block.ff.forward(normed, act);
        }
        self.final_norm.forward(hidden)
    }
}

/// Hugging Face's `_relative_position_bucket`, computed in f32 like PyTorch does.
/// `relative_position` = key position − query position.
pub fn relative_position_bucket(
    relative_position: i64,
    bidirectional: bool,
    num_buckets: usize,
    max_distance: usize,
) -> i64 {
    let mut num_buckets = num_buckets as i64;
    let mut bucket = 0i64;
    let mut rp = relative_position;
    if bidirectional {
        num_buckets /= 2;
        if rp > 0 {
            bucket += num_buckets;
        }
        rp = rp.abs();
    } else {
        rp = -rp.min(0);
    }
    let max_exact = num_buckets / 2;
    if rp < max_exact {
        bucket + rp
    } else {
        let ratio = (rp as f32 / max_exact as f32).ln() / ((max_distance as f64 / max_exact as f64).ln() as f32)
            * (num_buckets - max_exact) as f32;
        let large = (max_exact + ratio as i64).min(num_buckets - 1);
        bucket + large
    }
}

/// A frozen T5 encoder-decoder.
#[derive(Debug, Clone)]
pub struct T5 {
    /// The config it was built from.
    pub config: T5Config,
    shared: Tensor<2>,
    encoder: Stack,
    decoder: Stack,
    /// `[d, V]` (transposed for `linear`).
    lm_head: Tensor<2>,
    act: Act,
    num_params: usize,
    /// Whether the file had its own `lm_head.weight`.
    pub separate_head: bool,
}

impl T5 {
    /// Builds the model from `weights`; `config_path` names config.json in errors.
    pub fn load(config: T5Config, config_path: &Path, mut w: Weights) -> Result<Self> {
        config.validate(config_path)?;
        let (gated, act) = config.ff_kind(config_path)?;
        let (v, d) = (config.vocab_size, config.d_model);
        let shared = w.tensor("shared.weight", [v, d])?;
        w.skip("encoder.embed_tokens.weight");
        w.skip("decoder.embed_tokens.weight");
        let encoder = Stack::load(&mut w, "encoder", &config, config.num_layers, gated)?;
        let decoder = Stack::load(&mut w, "decoder", &config, config.decoder_layers(), gated)?;
        let separate_head = w.contains("lm_head.weight");
        let lm_head = if separate_head { w.linear_weight("lm_head.weight", d, v)? } else { shared.clone().transpose() };
        w.finish("t5", |name| name == "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight")?;
        let inner = config.num_heads * config.d_kv;
        let attn = 4 * d * inner;
        let ff = if gated { 3 * d * config.d_ff } else { 2 * d * config.d_ff };
        let bias = config.relative_attention_num_buckets * config.num_heads;
        let enc = config.num_layers * (attn + ff + 2 * d) + bias + d;
        let dec = config.decoder_layers() * (2 * attn + ff + 3 * d) + bias + d;
        let head = if separate_head { v * d } else { 0 };
        let num_params = v * d + enc + dec + head;
        Ok(Self { config, shared, encoder, decoder, lm_head, act, num_params, separate_head })
    }

    /// Model width d.
    pub fn dim(&self) -> usize {
        self.config.d_model
    }

    /// The shared embedding matrix `[V, d]`.
    pub fn word_embedding_matrix(&self) -> Tensor<2> {
        self.shared.clone()
    }

    /// `[B, S] -> [B, S, d]`.
    pub fn embed_tokens(&self, input_ids: Tensor<2, Int>) -> Tensor<3> {
        burn::tensor::module::embedding(self.shared.clone(), input_ids)
    }

    /// Encoder over input embeddings `[B, L, d]` with mask `[B, L]`. Returns `[B, L, d]`.
    pub fn encode_embeds(&self, inputs_embeds: Tensor<3>, attention_mask: Tensor<2, Int>) -> Tensor<3> {
        let [_, l, _] = inputs_embeds.dims();
        let device = attention_mask.device();
        let bias = self.encoder.position_bias(&self.config, l, l, &device) + mask_bias(attention_mask);
        self.encoder.forward(&self.config, self.act, inputs_embeds, bias, None)
    }

    /// The checks of [`T5::try_encode`]: ids `[B, S]` with `B, S ≥ 1`, a mask of the same
    /// shape, a prompt `[B, l ≥ 1, d]`.
    pub fn check_encode(
        &self,
        input_ids: &Tensor<2, Int>,
        attention_mask: &Tensor<2, Int>,
        prompt: Option<&Tensor<3>>,
    ) -> Result<()> {
        let dims = input_ids.dims();
        check::rows("input_ids", &dims)?;
        check::same("attention_mask", &attention_mask.dims(), &dims, "the shape of input_ids")?;
        if let Some(p) = prompt {
            check::prompt(p.dims(), dims[0], self.config.d_model)?;
        }
        Ok(())
    }

    /// [`T5::encode`] after [`T5::check_encode`]: an empty batch (`B = 0`), empty rows
    /// (`S = 0`), a zero-length prompt or a mask of another shape is an [`ModelError::Input`],
    /// raised before any kernel runs.
    pub fn try_encode(
        &self,
        input_ids: Tensor<2, Int>,
        attention_mask: Tensor<2, Int>,
        prompt: Option<Tensor<3>>,
    ) -> Result<(Tensor<3>, Tensor<2, Int>)> {
        self.check_encode(&input_ids, &attention_mask, prompt.as_ref())?;
        Ok(self.encode(input_ids, attention_mask, prompt))
    }

    /// Encoder over token ids with an optional prompt `[B, l, d]` in front (PEFT semantics).
    /// Returns the encoder states `[B, l+S, d]` and the extended mask `[B, l+S]`. The inputs
    /// are not checked: [`T5::try_encode`] refuses empty and mismatched ones with an error.
    pub fn encode(
        &self,
        input_ids: Tensor<2, Int>,
        attention_mask: Tensor<2, Int>,
        prompt: Option<Tensor<3>>,
    ) -> (Tensor<3>, Tensor<2, Int>) {
        let embeds = self.embed_tokens(input_ids);
        let (embeds, mask, _) = crate::prepend_prompt(embeds, attention_mask, None, prompt);
        (self.encode_embeds(embeds, mask.clone()), mask)
    }

    /// Decoder final hidden states `[B, T, d]` (after the final norm, before any scaling)
    /// for teacher-forced `decoder_input_ids` `[B, T]`.
    pub fn decode_hidden(
        &self,
        decoder_input_ids: Tensor<2, Int>,
        encoder_states: &Tensor<3>,
        encoder_mask: &Tensor<2, Int>,
    ) -> Tensor<3> {
        let [_, t] = decoder_input_ids.dims();
        let device = decoder_input_ids.device();
        let causal: Vec<f32> = (0..t).flat_map(|q| (0..t).map(move |k| if k > q { f32::MIN } else { 0.0 })).collect();
        let causal = Tensor::<2>::from_data(TensorData::new(causal, [t, t]), &device).unsqueeze::<4>();
        let self_bias = self.decoder.position_bias(&self.config, t, t, &device) + causal;
        let cross_bias = mask_bias(encoder_mask.clone());
        let embeds = self.embed_tokens(decoder_input_ids);
        self.decoder.forward(&self.config, self.act, embeds, self_bias, Some((encoder_states, &cross_bias)))
    }

    /// LM logits `[B, T, V]` from decoder hidden states `[B, T, d]`.
    pub fn lm_logits(&self, decoder_hidden: Tensor<3>) -> Tensor<3> {
        let hidden = if self.config.scales_decoder_output() {
            decoder_hidden * (self.config.d_model as f64).powf(-0.5)
        } else {
            decoder_hidden
        };
        burn::tensor::module::linear(hidden, self.lm_head.clone(), None)
    }

    /// The checks of [`T5::try_decode`]: decoder ids `[B, T]` with `T ≥ 1`, encoder states
    /// `[B, L ≥ 1, d]` and their mask `[B, L]`.
    pub fn check_decode(
        &self,
        decoder_input_ids: &Tensor<2, Int>,
        encoder_states: &Tensor<3>,
        encoder_mask: &Tensor<2, Int>,
    ) -> Result<()> {
        let [b, l, d] = encoder_states.dims();
        check::states("encoder_states", [b, l, d], self.config.d_model, "d_model")?;
        check::same("encoder_mask", &encoder_mask.dims(), &[b, l], "the first two axes of encoder_states")?;
        let dec = decoder_input_ids.dims();
        check::rows("decoder_input_ids", &dec)?;
        if dec[0] != b {
            return Err(ModelError::Input {
                name: "decoder_input_ids".into(),
                message: format!("shape {dec:?}, expected [{b}, T] (one row per encoder row)"),
            });
        }
        Ok(())
    }

    /// [`T5::decode`] after [`T5::check_decode`]: empty or mismatched inputs are an
    /// [`ModelError::Input`], raised before any kernel runs.
    pub fn try_decode(
        &self,
        decoder_input_ids: Tensor<2, Int>,
        encoder_states: &Tensor<3>,
        encoder_mask: &Tensor<2, Int>,
    ) -> Result<Tensor<3>> {
        self.check_decode(&decoder_input_ids, encoder_states, encoder_mask)?;
        Ok(self.decode(decoder_input_ids, encoder_states, encoder_mask))
    }

    /// Teacher-forced logits `[B, T, V]` (inputs unchecked: see [`T5::try_decode`]).
    pub fn decode(
        &self,
        decoder_input_ids: Tensor<2, Int>,
        encoder_states: &Tensor<3>,
        encoder_mask: &Tensor<2, Int>,
    ) -> Tensor<3> {
        self.lm_logits(self.decode_hidden(decoder_input_ids, encoder_states, encoder_mask))
    }

    /// Greedy decoding of up to `max_new_tokens` tokens, like `generate(do_sample=False,
    /// num_beams=1)`: rows start with the decoder start id; a row that produced EOS is padded
    /// with the pad id; decoding stops when every row is done. Each step runs the decoder for
    /// the newest token only, against cached self-attention keys/values and the encoder's keys
    /// and values computed once. Returns `[B][≤N+1]` ids.
    pub fn generate_greedy(
        &self,
        encoder_states: &Tensor<3>,
        encoder_mask: &Tensor<2, Int>,
        max_new_tokens: usize,
    ) -> Vec<Vec<i64>> {
        let [b, _, _] = encoder_states.dims();
        if b == 0 {
            return Vec::new();
        }
        let device = encoder_mask.device();
        let (pad, eos) = (self.config.pad_token_id, self.config.eos_token_id);
        let mut rows: Vec<Vec<i64>> = vec![vec![self.config.decoder_start()]; b];
        let mut done = vec![false; b];
        let cross: Vec<(Tensor<4>, Tensor<4>)> = self
            .decoder
            .blocks
            .iter()
            .filter_map(|block| block.cross.as_ref())
            .map(|(_, attn)| attn.keys_values(encoder_states.clone(), self.config.num_heads))
            .collect();
        let cross_bias = mask_bias(encoder_mask.clone());
        let mut cache = Vec::with_capacity(self.decoder.blocks.len());
        for step in 0..max_new_tokens {
            let newest: Vec<i64> = rows.iter().map(|r| r[r.len() - 1]).collect();
            let ids = Tensor::<2, Int>::from_data(TensorData::new(newest, [b, 1]), &device);
            let hidden = self.decoder.forward_step(
                &self.config,
                self.act,
                self.embed_tokens(ids),
                step,
                &mut cache,
                (&cross, &cross_bias),
            );
            let logits = self.lm_logits(hidden);
            let vocab = logits.dims()[2];
            let last = logits.reshape([b, vocab]);
            let next: Vec<i64> = last.argmax(1).try_into_vec_as::<i64>().expect("argmax gives integers");
            for (row, (&token, finished)) in rows.iter_mut().zip(next.iter().zip(done.iter_mut())) {
                if *finished {
                    row.push(pad);
                } else {
                    row.push(token);
                    *finished = token == eos;
                }
            }
            if done.iter().all(|&d| d) {
                break;
            }
        }
        rows
    }

    /// Number of scalars (a tied head counted once).
    pub fn num_params(&self) -> usize {
        self.num_params
    }
}

/// The registry entry: `model_type` `t5` and `mt5`.
pub(crate) const ARCH: ArchSpec = ArchSpec {
    name: "t5",
    model_types: &["t5", "mt5"],
    family: Family::Seq2Seq,
    parse: |value| Ok(Box::new(serde_json::from_value::<T5Config>(value)?)),
};

impl ArchConfig for T5Config {
    fn dim(&self) -> usize {
        self.d_model
    }

    fn load(&self, config_path: &Path, weights: Weights) -> Result<Arc<dyn Backbone>> {
        Ok(Arc::new(T5::load(self.clone(), config_path, weights)?))
    }
}

impl Backbone for T5 {
    fn arch(&self) -> Arch {
        Arch::named(ARCH.name).expect("registered")
    }

    fn family(&self) -> FamilyModel<'_> {
        FamilyModel::Seq2Seq(self)
    }

    fn dim(&self) -> usize {
        self.config.d_model
    }

    fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }

    fn pad_token_id(&self) -> i64 {
        self.config.pad_token_id
    }

    fn num_params(&self) -> usize {
        self.num_params
    }

    fn word_embedding_matrix(&self) -> Tensor<2> {
        self.shared.clone()
    }

    fn embed_tokens(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        T5::embed_tokens(self, ids)
    }

    fn layout(&self) -> Layout {
        let c = &self.config;
        let head = if self.separate_head { "separate lm_head" } else { "tied lm_head" };
        let scale = if c.scales_decoder_output() { ", decoder output scaled by d_model^-0.5" } else { "" };
        Layout {
            variant: format!("{} FFN, {head}{scale}", c.feed_forward_proj),
            encoder_layers: c.num_layers,
            decoder_layers: c.decoder_layers(),
            heads: c.num_heads,
            d_ff: c.d_ff,
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Seq2Seq for T5 {
    fn decoder_start(&self) -> i64 {
        self.config.decoder_start()
    }

    fn encode(
        &self,
        input_ids: Tensor<2, Int>,
        attention_mask: Tensor<2, Int>,
        prompt: Option<Tensor<3>>,
    ) -> (Tensor<3>, Tensor<2, Int>) {
        T5::encode(self, input_ids, attention_mask, prompt)
    }

    fn try_encode(
        &self,
        input_ids: Tensor<2, Int>,
        attention_mask: Tensor<2, Int>,
        prompt: Option<Tensor<3>>,
    ) -> Result<(Tensor<3>, Tensor<2, Int>)> {
        T5::try_encode(self, input_ids, attention_mask, prompt)
    }

    fn decode_hidden(
        &self,
        decoder_input_ids: Tensor<2, Int>,
        encoder_states: &Tensor<3>,
        encoder_mask: &Tensor<2, Int>,
    ) -> Tensor<3> {
        T5::decode_hidden(self, decoder_input_ids, encoder_states, encoder_mask)
    }

    fn lm_logits(&self, decoder_hidden: Tensor<3>) -> Tensor<3> {
        T5::lm_logits(self, decoder_hidden)
    }

    fn try_decode(
        &self,
        decoder_input_ids: Tensor<2, Int>,
        encoder_states: &Tensor<3>,
        encoder_mask: &Tensor<2, Int>,
    ) -> Result<Tensor<3>> {
        T5::try_decode(self, decoder_input_ids, encoder_states, encoder_mask)
    }

    fn generate_greedy(
        &self,
        encoder_states: &Tensor<3>,
        encoder_mask: &Tensor<2, Int>,
        max_new_tokens: usize,
    ) -> Vec<Vec<i64>> {
        T5::generate_greedy(self, encoder_states, encoder_mask, max_new_tokens)
    }
}
