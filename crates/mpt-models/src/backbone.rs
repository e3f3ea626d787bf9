//! The backbone seam: what the workspace asks of a frozen model, by family, and the registry
//! that maps a `config.json` `model_type` to the file that implements it.
//!
//! Outside this crate code branches on the [`Family`] (encoder, seq2seq, causal LM), never on the
//! architecture. A new architecture is one file that implements [`Backbone`] and its family
//! trait, plus one [`ArchSpec`] line in [`REGISTRY`].

use std::any::Any;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use burn::prelude::*;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{ModelError, Result};
use crate::weights::Weights;

/// How a family of models turns a prompted input into scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// Encoder only (BERT family): hidden states per position, pooled by the task head.
    Encoder,
    /// Encoder-decoder (T5 family): text-to-text, the decoder scores label strings.
    Seq2Seq,
    /// Decoder-only causal LM (Llama family): the label string continues the input.
    CausalLm,
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::Encoder => "encoder",
            Family::Seq2Seq => "seq2seq",
            Family::CausalLm => "causal_lm",
        })
    }
}

/// A backbone seen through its family's interface.
#[derive(Clone, Copy)]
pub enum FamilyModel<'a> {
    /// An encoder.
    Encoder(&'a dyn Encoder),
    /// An encoder-decoder.
    Seq2Seq(&'a dyn Seq2Seq),
    /// A decoder-only causal LM.
    CausalLm(&'a dyn CausalLm),
}

impl FamilyModel<'_> {
    /// The family.
    pub fn kind(&self) -> Family {
        match self {
            FamilyModel::Encoder(_) => Family::Encoder,
            FamilyModel::Seq2Seq(_) => Family::Seq2Seq,
            FamilyModel::CausalLm(_) => Family::CausalLm,
        }
    }
}

/// What every frozen backbone offers.
pub trait Backbone: fmt::Debug {
    /// The architecture, as recorded in artifacts.
    fn arch(&self) -> Arch;
    /// The family interface (encoder pooling, seq2seq decoding).
    fn family(&self) -> FamilyModel<'_>;
    /// Model width d (the soft prompt's row size).
    fn dim(&self) -> usize;
    /// Vocabulary size.
    fn vocab_size(&self) -> usize;
    /// Padding id.
    fn pad_token_id(&self) -> i64;
    /// Number of frozen scalars.
    fn num_params(&self) -> usize;
    /// The input word-embedding matrix `[V, d]`.
    fn word_embedding_matrix(&self) -> Tensor<2>;
    /// Word embeddings `[B, S] -> [B, S, d]`.
    fn embed_tokens(&self, ids: Tensor<2, Int>) -> Tensor<3>;
    /// Layer counts and a variant line for `mpt model info`.
    fn layout(&self) -> Layout;
    /// The concrete model, for tests and tools that need one architecture's internals.
    fn as_any(&self) -> &dyn Any;
}

/// Shape facts of a backbone, for display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Variant description, e.g. "gated-gelu FFN, separate lm_head".
    pub variant: String,
    /// Encoder layers (decoder-only models: their layers).
    pub encoder_layers: usize,
    /// Decoder layers (0 for encoders).
    pub decoder_layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// FFN width.
    pub d_ff: usize,
}

/// An encoder: prompted input in, hidden states out.
pub trait Encoder {
    /// Number of token types.
    fn type_vocab_size(&self) -> usize;
    /// Hidden states `[B, l+S, d]` for ids, mask and token types `[B, S]` with an optional
    /// prompt `[B, l, d]` in front (checked inputs).
    fn forward(
        &self,
        input_ids: Tensor<2, Int>,
        attention_mask: Tensor<2, Int>,
        token_type_ids: Tensor<2, Int>,
        prompt: Option<Tensor<3>>,
    ) -> Result<Tensor<3>>;
    /// As [`Encoder::forward`], the input's own rows only: `[B, S, d]`.
    fn forward_inputs(
        &self,
        input_ids: Tensor<2, Int>,
        attention_mask: Tensor<2, Int>,
        token_type_ids: Tensor<2, Int>,
        prompt: Option<Tensor<3>>,
    ) -> Result<Tensor<3>>;
}

/// An encoder-decoder: prompted input encoded once, label strings decoded against it.
pub trait Seq2Seq {
    /// The decoder start id.
    fn decoder_start(&self) -> i64;
    /// Encoder states `[B, l+S, d]` and the extended mask `[B, l+S]` for ids and mask
    /// `[B, S]` with an optional prompt `[B, l, d]` in front (inputs unchecked).
    fn encode(
        &self,
        input_ids: Tensor<2, Int>,
        attention_mask: Tensor<2, Int>,
        prompt: Option<Tensor<3>>,
    ) -> (Tensor<3>, Tensor<2, Int>);
    /// [`Seq2Seq::encode`] with empty or mismatched inputs refused as [`ModelError::Input`].
    fn try_encode(
        &self,
        input_ids: Tensor<2, Int>,
        attention_mask: Tensor<2, Int>,
        prompt: Option<Tensor<3>>,
    ) -> Result<(Tensor<3>, Tensor<2, Int>)>;
    /// Decoder final hidden states `[B, T, d]` for teacher-forced ids `[B, T]`.
    fn decode_hidden(
        &self,
        decoder_input_ids: Tensor<2, Int>,
        encoder_states: &Tensor<3>,
        encoder_mask: &Tensor<2, Int>,
    ) -> Tensor<3>;
    /// LM logits `[B, T, V]` from decoder hidden states `[B, T, d]`.
    fn lm_logits(&self, decoder_hidden: Tensor<3>) -> Tensor<3>;
    /// Teacher-forced logits `[B, T, V]`, empty or mismatched inputs refused.
    fn try_decode(
        &self,
        decoder_input_ids: Tensor<2, Int>,
        encoder_states: &Tensor<3>,
        encoder_mask: &Tensor<2, Int>,
    ) -> Result<Tensor<3>>;
    /// Greedy decoding of up to `max_new_tokens` tokens: `[B][≤N+1]` ids.
    fn generate_greedy(
        &self,
        encoder_states: &Tensor<3>,
        encoder_mask: &Tensor<2, Int>,
        max_new_tokens: usize,
    ) -> Vec<Vec<i64>>;
}

/// A decoder-only causal LM: prompt and input in, hidden states and next-token logits out.
pub trait CausalLm {
    /// The end-of-sequence id, if the config has one.
    fn eos_token_id(&self) -> Option<i64>;
    /// Final hidden states `[B, l+S, d]` for right-padded ids and mask `[B, S]` with an
    /// optional prompt `[B, l, d]` in front (inputs unchecked).
    fn forward_hidden(
        &self,
        input_ids: Tensor<2, Int>,
        attention_mask: Tensor<2, Int>,
        prompt: Option<Tensor<3>>,
    ) -> Tensor<3>;
    /// [`CausalLm::forward_hidden`] with empty, mismatched or too long inputs refused as
    /// [`ModelError::Input`].
    fn try_forward_hidden(
        &self,
        input_ids: Tensor<2, Int>,
        attention_mask: Tensor<2, Int>,
        prompt: Option<Tensor<3>>,
    ) -> Result<Tensor<3>>;
    /// Next-token logits `[B, T, V]` from hidden states `[B, T, d]`.
    fn lm_logits(&self, hidden: Tensor<3>) -> Tensor<3>;
    /// Greedy continuation of each row of `input_ids` (its real tokens, no padding) behind
    /// `prompt` `[l, d]`: `[B][N]` new tokens, the pad id after EOS.
    fn generate(
        &self,
        input_ids: &[Vec<i64>],
        prompt: Option<&Tensor<2>>,
        max_new_tokens: usize,
        device: &Device,
    ) -> Vec<Vec<i64>>;
}

/// Prepends `prompt` `[B, l, d]` to `embeds` `[B, S, d]` the way PEFT does it: the mask is
/// extended with ones and token types (when the family has them) with zeros. Positions are
/// the family's business (they run over the whole length in every family here). Without a
/// prompt the inputs come back unchanged.
pub fn prepend_prompt(
    embeds: Tensor<3>,
    mask: Tensor<2, Int>,
    token_type_ids: Option<Tensor<2, Int>>,
    prompt: Option<Tensor<3>>,
) -> (Tensor<3>, Tensor<2, Int>, Option<Tensor<2, Int>>) {
    let Some(prompt) = prompt else {
        return (embeds, mask, token_type_ids);
    };
    let [b, l, _] = prompt.dims();
    let device = mask.device();
    let ones = Tensor::<2, Int>::ones([b, l], &device);
    let types = token_type_ids.map(|t| Tensor::cat(vec![Tensor::<2, Int>::zeros([b, l], &device), t], 1));
    (Tensor::cat(vec![prompt, embeds], 1), Tensor::cat(vec![ones, mask], 1), types)
}

/// A parsed `config.json` of one architecture.
pub trait ArchConfig: fmt::Debug {
    /// Hidden size d.
    fn dim(&self) -> usize;
    /// Builds the model from `weights`; `config_path` names config.json in errors.
    fn load(&self, config_path: &Path, weights: Weights) -> Result<Arc<dyn Backbone>>;
}

/// One registered architecture.
pub struct ArchSpec {
    /// Name recorded in artifacts (`backbone.arch`).
    pub name: &'static str,
    /// The `config.json` `model_type` values it reads.
    pub model_types: &'static [&'static str],
    /// Its family.
    pub family: Family,
    /// Parses `config.json`.
    pub parse: fn(serde_json::Value) -> serde_json::Result<Box<dyn ArchConfig>>,
}

/// Every architecture this build knows, one line each.
pub static REGISTRY: &[ArchSpec] = &[crate::t5::ARCH, crate::bert::ARCH, crate::llama::ARCH, crate::llama::QWEN2];

/// An architecture name from [`REGISTRY`]; serialised as its name (`"t5"`, `"bert"`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Arch(&'static str);

impl Arch {
    /// The registered architecture called `name`.
    pub fn named(name: &str) -> Option<Self> {
        REGISTRY.iter().find(|s| s.name == name).map(|s| Arch(s.name))
    }

    /// The architecture's name.
    pub fn name(&self) -> &'static str {
        self.0
    }

    /// Its family.
    pub fn family(&self) -> Family {
        self.spec().family
    }

    fn spec(&self) -> &'static ArchSpec {
        REGISTRY.iter().find(|s| s.name == self.0).expect("an Arch is only made from a registered name")
    }

    /// The registered names, comma-separated (for error messages).
    pub fn known() -> String {
        REGISTRY.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl fmt::Debug for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Arch({})", self.0)
    }
}

impl Serialize for Arch {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.0)
    }
}

impl<'de> Deserialize<'de> for Arch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Arch::named(&name).ok_or_else(|| {
            serde::de::Error::custom(format!("unknown architecture {name:?}; this build knows {}", Arch::known()))
        })
    }
}

/// Parsed `config.json`: the architecture its `model_type` names and that architecture's
/// config.
#[derive(Debug)]
pub struct ModelConfig {
    arch: Arch,
    config: Box<dyn ArchConfig>,
}

impl ModelConfig {
    /// Reads and parses `path`, dispatching on `model_type` through [`REGISTRY`].
    pub fn read(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ModelError::Io { path: path.to_path_buf(), source })?;
        let parse_err = |source| ModelError::ConfigParse { path: path.to_path_buf(), source };
        let value: serde_json::Value = serde_json::from_str(&text).map_err(parse_err)?;
        let model_type = value.get("model_type").and_then(|v| v.as_str()).unwrap_or("").to_string();
        let Some(spec) = REGISTRY.iter().find(|s| s.model_types.contains(&model_type.as_str())) else {
            return Err(ModelError::UnknownModelType {
                path: path.to_path_buf(),
                found: model_type,
                supported: REGISTRY.iter().flat_map(|s| s.model_types.iter().copied()).collect::<Vec<_>>().join(", "),
            });
        };
        Ok(Self { arch: Arch(spec.name), config: (spec.parse)(value).map_err(parse_err)? })
    }

    /// Architecture.
    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// Hidden size `d`: the width of a soft prompt.
    pub fn dim(&self) -> usize {
        self.config.dim()
    }

    /// Builds the model from `weights`.
    pub fn load(&self, config_path: &Path, weights: Weights) -> Result<Arc<dyn Backbone>> {
        self.config.load(config_path, weights)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_model_types_are_unique() {
        let mut names: Vec<_> = REGISTRY.iter().map(|s| s.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), REGISTRY.len());
        let mut types: Vec<_> = REGISTRY.iter().flat_map(|s| s.model_types.iter()).collect();
        let n = types.len();
        types.sort();
        types.dedup();
        assert_eq!(types.len(), n);
    }

    #[test]
    fn arch_serialises_as_its_name_and_refuses_unknown_names() {
        let t5 = Arch::named("t5").unwrap();
        assert_eq!(serde_json::to_string(&t5).unwrap(), "\"t5\"");
        assert_eq!(serde_json::from_str::<Arch>("\"bert\"").unwrap().family(), Family::Encoder);
        let err = serde_json::from_str::<Arch>("\"gpt9\"").unwrap_err().to_string();
        assert!(err.contains("unknown architecture \"gpt9\"") && err.contains("t5, bert, llama, qwen2"), "{err}");
    }
}
