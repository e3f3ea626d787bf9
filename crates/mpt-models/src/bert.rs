//! BERT-family encoder (BertModel), e.g. all-MiniLM-L6-v2.
//!
//! Forward takes input embeddings so a soft prompt can be prepended the way PEFT does it:
//! prompt rows go in front of the word embeddings, then position and token-type embeddings
//! are added over the whole length (prompt included), the attention mask is extended with
//! ones and token types with zeros.
//!
//! HF key -> module (an optional `bert.` prefix, as in `BertFor*` checkpoints, is accepted):
//!
//! | HF key | field |
//! |---|---|
//! | `embeddings.word_embeddings.weight` `[V, d]` | `word_embeddings` |
//! | `embeddings.position_embeddings.weight` `[P, d]` | `position_embeddings` |
//! | `embeddings.token_type_embeddings.weight` `[T, d]` | `token_type_embeddings` |
//! | `embeddings.LayerNorm.{weight,bias}` (or `gamma`/`beta`) | `embeddings_norm` |
//! | `encoder.layer.{i}.attention.self.{query,key,value}.{weight,bias}` | `layers[i].{query,key,value}` (query times 1/sqrt(d_head)) |
//! | `encoder.layer.{i}.attention.output.dense.{weight,bias}` | `layers[i].attention_output` |
//! | `encoder.layer.{i}.attention.output.LayerNorm.*` | `layers[i].attention_norm` |
//! | `encoder.layer.{i}.intermediate.dense.{weight,bias}` | `layers[i].intermediate` |
//! | `encoder.layer.{i}.output.dense.{weight,bias}` | `layers[i].output` |
//! | `encoder.layer.{i}.output.LayerNorm.*` | `layers[i].output_norm` |
//!
//! Ignored: `embeddings.position_ids` (an int64 buffer), `pooler.*`, and task heads
//! (`cls.*`, `classifier.*`, `qa_outputs.*`). Any other key is an error.

use std::path::Path;

use burn::prelude::*;
use burn::tensor::activation::{gelu_approximate, relu};
use serde::Deserialize;

use std::any::Any;
use std::sync::Arc;

use crate::backbone::{Arch, ArchConfig, ArchSpec, Backbone, Encoder, Family, FamilyModel, Layout};
use crate::check;
use crate::error::{ModelError, Result};
use crate::layers::{LayerNorm, Linear, attend, mask_bias, merge_heads, split_heads};
use crate::weights::Weights;

/// `config.json` of a BERT model (HF field names).
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
pub struct BertConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Model width d.
    pub hidden_size: usize,
    /// Number of layers.
    pub num_hidden_layers: usize,
    /// Heads per layer.
    pub num_attention_heads: usize,
    /// FFN width.
    pub intermediate_size: usize,
    /// FFN activation: `gelu`, `gelu_new`, `relu`.
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    /// Number of learned positions.
    pub max_position_embeddings: usize,
    /// Number of token types.
    #[serde(default = "default_type_vocab_size")]
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    /// Padding id.
    #[serde(default)]
    pub pad_token_id: i64,
    /// Only `absolute` is supported.
    #[serde(default = "default_position_embedding_type")]
    pub position_embedding_type: String,
}

fn default_hidden_act() -> String {
    "gelu".into()
}
fn default_type_vocab_size() -> usize {
    2
}
fn default_layer_norm_eps() -> f64 {
    1e-12
}
fn default_position_embedding_type() -> String {
    "absolute".into()
}

#[derive(Debug, Clone, Copy)]
enum Act {
    Gelu,
    GeluNew,
    Relu,
}

impl Act {
    fn apply(self, x: Tensor<3>) -> Tensor<3> {
        match self {
            Act::Gelu => crate::fused::gelu(x),
            Act::GeluNew => gelu_approximate(x),
            Act::Relu => relu(x),
        }
    }
}

impl BertConfig {
    /// Checks values the loader relies on; `path` names config.json in errors.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let bad = |field: &str, message: String| ModelError::ConfigValue {
            path: path.to_path_buf(),
            field: field.into(),
            message,
        };
        if self.num_attention_heads == 0 || !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(bad(
                "num_attention_heads",
                format!("{} does not divide hidden_size {}", self.num_attention_heads, self.hidden_size),
            ));
        }
        if self.position_embedding_type != "absolute" {
            return Err(bad(
                "position_embedding_type",
                format!("{:?} is not supported; expected \"absolute\"", self.position_embedding_type),
            ));
        }
        self.act(path)?;
        Ok(())
    }

    fn act(&self, path: &Path) -> Result<Act> {
        match self.hidden_act.as_str() {
            "gelu" => Ok(Act::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" => Ok(Act::GeluNew),
            "relu" => Ok(Act::Relu),
            other => Err(ModelError::ConfigValue {
                path: path.to_path_buf(),
                field: "hidden_act".into(),
                message: format!("{other:?} is not supported; expected gelu, gelu_new or relu"),
            }),
        }
    }

    /// Number of scalars in the encoder (pooler excluded).
    pub fn num_params(&self) -> usize {
        let d = self.hidden_size;
        let ff = self.intermediate_size;
        let emb = (self.vocab_size + self.max_position_embeddings + self.type_vocab_size) * d + 2 * d;
        let layer = 4 * (d * d + d) + 2 * d + (d * ff + ff) + (ff * d + d) + 2 * d;
        emb + self.num_hidden_layers * layer
    }
}

#[derive(Debug, Clone)]
struct BertLayer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_output: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
}

/// A frozen BERT encoder.
#[derive(Debug, Clone)]
pub struct Bert {
    /// The config it was built from.
    pub config: BertConfig,
    word_embeddings: Tensor<2>,
    position_embeddings: Tensor<2>,
    token_type_embeddings: Tensor<2>,
    embeddings_norm: LayerNorm,
    layers: Vec<BertLayer>,
    act: Act,
}

impl Bert {
    /// Builds the encoder from `weights`; `config_path` names config.json in errors.
    pub fn load(config: BertConfig, config_path: &Path, mut w: Weights) -> Result<Self> {
        config.validate(config_path)?;
        let act = config.act(config_path)?;
        let prefix = if w.contains("embeddings.word_embeddings.weight")
            || !w.contains("bert.embeddings.word_embeddings.weight")
        {
            ""
        } else {
            "bert."
        };
        let d = config.hidden_size;
        let ff = config.intermediate_size;
        let eps = config.layer_norm_eps;
        let p = |s: &str| format!("{prefix}{s}");
        let word_embeddings = w.tensor(&p("embeddings.word_embeddings.weight"), [config.vocab_size, d])?;
        let position_embeddings =
            w.tensor(&p("embeddings.position_embeddings.weight"), [config.max_position_embeddings, d])?;
        let token_type_embeddings =
            w.tensor(&p("embeddings.token_type_embeddings.weight"), [config.type_vocab_size, d])?;
        let embeddings_norm = LayerNorm::load(&mut w, &p("embeddings.LayerNorm"), d, eps)?;
        // 1/sqrt(d_head) is folded into the query projection: softmax(q kᵀ / sqrt(dh)) without a
        // pass over the [B, H, L, L] scores, forward and backward.
        let scale = 1.0 / ((d / config.num_attention_heads) as f64).sqrt();
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let l = |s: &str| p(&format!("encoder.layer.{i}.{s}"));
            layers.push(BertLayer {
                query: Linear::load(&mut w, &l("attention.self.query"), d, d, true)?.scaled(scale),
                key: Linear::load(&mut w, &l("attention.self.key"), d, d, true)?,
                value: Linear::load(&mut w, &l("attention.self.value"), d, d, true)?,
                attention_output: Linear::load(&mut w, &l("attention.output.dense"), d, d, true)?,
                attention_norm: LayerNorm::load(&mut w, &l("attention.output.LayerNorm"), d, eps)?,
                intermediate: Linear::load(&mut w, &l("intermediate.dense"), d, ff, true)?,
                output: Linear::load(&mut w, &l("output.dense"), ff, d, true)?,
                output_norm: LayerNorm::load(&mut w, &l("output.LayerNorm"), d, eps)?,
            });
        }
        w.finish("bert", |name| {
            let name = name.strip_prefix("bert.").unwrap_or(name);
            name == "embeddings.position_ids"
                || ["pooler.", "cls.", "classifier.", "qa_outputs."].iter().any(|head| name.starts_with(head))
        })?;
        Ok(Self { config, word_embeddings, position_embeddings, token_type_embeddings, embeddings_norm, layers, act })
    }

    /// Model width d.
    pub fn dim(&self) -> usize {
        self.config.hidden_size
    }

    /// The word-embedding matrix `[V, d]`.
    pub fn word_embedding_matrix(&self) -> Tensor<2> {
        self.word_embeddings.clone()
    }

    /// Word embeddings only: `[B, S] -> [B, S, d]`.
    pub fn embed_tokens(&self, input_ids: Tensor<2, Int>) -> Tensor<3> {
        burn::tensor::module::embedding(self.word_embeddings.clone(), input_ids)
    }

    /// Encodes already-looked-up word embeddings (with any prompt rows in front).
    ///
    /// - `inputs_embeds`: `[B, L, d]`
    /// - `attention_mask`: `[B, L]`, 1 = attend
    /// - `token_type_ids`: `[B, L]`
    ///
    /// Positions are `0..L` over the whole length. Returns `[B, L, d]`. An empty batch or
    /// sequence, or a mask or token types of another shape, is an [`ModelError::Input`].
    pub fn forward_embeds(
        &self,
        inputs_embeds: Tensor<3>,
        attention_mask: Tensor<2, Int>,
        token_type_ids: Tensor<2, Int>,
    ) -> Result<Tensor<3>> {
        self.forward_embeds_from(inputs_embeds, attention_mask, token_type_ids, 0)
    }

    /// [`Bert::forward_embeds`] for the rows `from..L` only: `[B, L - from, d]`, equal to
    /// `forward_embeds(..).slice([.., from..L])`. The last layer still attends over all `L`
    /// keys and values but runs its queries, output map and feed-forward only on the rows
    /// returned (with a prompt of length `from`, what a head reading the input's own
    /// positions needs).
    pub fn forward_embeds_from(
        &self,
        inputs_embeds: Tensor<3>,
        attention_mask: Tensor<2, Int>,
        token_type_ids: Tensor<2, Int>,
        from: usize,
    ) -> Result<Tensor<3>> {
        let [b, l, d] = inputs_embeds.dims();
        check::states("inputs_embeds", [b, l, d], self.config.hidden_size, "hidden_size")?;
        check::same("attention_mask", &attention_mask.dims(), &[b, l], "the first two axes of inputs_embeds")?;
        check::same("token_type_ids", &token_type_ids.dims(), &[b, l], "the first two axes of inputs_embeds")?;
        if from >= l {
            return Err(ModelError::Input {
                name: "from".into(),
                message: format!("first row {from} leaves no rows of the sequence length {l}"),
            });
        }
        if l > self.config.max_position_embeddings {
            return Err(ModelError::Input {
                name: "inputs_embeds".into(),
                message: format!(
                    "sequence length {l} (prompt included) exceeds max_position_embeddings {}",
                    self.config.max_position_embeddings
                ),
            });
        }
        let positions = self.position_embeddings.clone().slice([0..l]).unsqueeze::<3>();
        let types = burn::tensor::module::embedding(self.token_type_embeddings.clone(), token_type_ids);
        let mut hidden = self.embeddings_norm.forward(inputs_embeds + positions + types);
        let bias = mask_bias(attention_mask);
        let heads = self.config.num_attention_heads;
        let last = self.layers.len().saturating_sub(1);
        if from > 0 && self.layers.is_empty() {
            hidden = hidden.slice([0..b, from..l, 0..d]);
        }
        for (i, layer) in self.layers.iter().enumerate() {
            let rows = match i == last && from > 0 {
                true => hidden.clone().slice([0..b, from..l, 0..d]),
                false => hidden.clone(),
            };
            let q = split_heads(layer.query.forward(rows.clone()), heads);
            let k = split_heads(layer.key.forward(hidden.clone()), heads);
            let v = split_heads(layer.value.forward(hidden), heads);
            let context = merge_heads(attend(q, k, v, bias.clone()));
            let attended = layer.attention_norm.forward(layer.attention_output.forward(context) + rows);
            let inner = self.act.apply(layer.intermediate.forward(attended.clone()));
            hidden = layer.output_norm.forward(layer.output.forward(inner) + attended);
        }
        debug_assert_eq!(hidden.dims(), [b, l - from, d]);
        Ok(hidden)
    }

    /// Full forward with an optional soft prompt `[B, l, d]` prepended (PEFT semantics).
    ///
    /// `input_ids`, `attention_mask`, `token_type_ids`: `[B, S]`. Returns `[B, l+S, d]`. An empty
    /// batch (`B = 0`), empty rows (`S = 0`), a zero-length prompt or companions of another
    /// shape are an [`ModelError::Input`], raised before any kernel runs.
    pub fn forward(
        &self,
        input_ids: Tensor<2, Int>,
        attention_mask: Tensor<2, Int>,
        token_type_ids: Tensor<2, Int>,
        prompt: Option<Tensor<3>>,
    ) -> Result<Tensor<3>> {
        self.check_inputs(&input_ids, &attention_mask, &token_type_ids, prompt.as_ref())?;
        let embeds = self.embed_tokens(input_ids);
        let (embeds, mask, types) = prepend(embeds, attention_mask, token_type_ids, prompt);
        self.forward_embeds(embeds, mask, types)
    }

    /// [`Bert::forward`] returning only the input's own rows: `[B, S, d]`, equal to
    /// `forward(..).slice([.., l..l+S])` for a prompt of length `l`, without the last layer's
    /// work on the prompt rows (see [`Bert::forward_embeds_from`]).
    pub fn forward_inputs(
        &self,
        input_ids: Tensor<2, Int>,
        attention_mask: Tensor<2, Int>,
        token_type_ids: Tensor<2, Int>,
        prompt: Option<Tensor<3>>,
    ) -> Result<Tensor<3>> {
        self.check_inputs(&input_ids, &attention_mask, &token_type_ids, prompt.as_ref())?;
        let from = prompt.as_ref().map_or(0, |p| p.dims()[1]);
        let embeds = self.embed_tokens(input_ids);
        let (embeds, mask, types) = prepend(embeds, attention_mask, token_type_ids, prompt);
        self.forward_embeds_from(embeds, mask, types, from)
    }

    /// The checks of [`Bert::forward`]: ids `[B, S]` with `B, S ≥ 1`, mask and token types of
    /// the same shape, a prompt `[B, l ≥ 1, d]`.
    pub fn check_inputs(
        &self,
        input_ids: &Tensor<2, Int>,
        attention_mask: &Tensor<2, Int>,
        token_type_ids: &Tensor<2, Int>,
        prompt: Option<&Tensor<3>>,
    ) -> Result<()> {
        let dims = input_ids.dims();
        check::rows("input_ids", &dims)?;
        check::same("attention_mask", &attention_mask.dims(), &dims, "the shape of input_ids")?;
        check::same("token_type_ids", &token_type_ids.dims(), &dims, "the shape of input_ids")?;
        if let Some(p) = prompt {
            check::prompt(p.dims(), dims[0], self.config.hidden_size)?;
        }
        Ok(())
    }

    /// Number of scalars in the encoder.
    pub fn num_params(&self) -> usize {
        self.config.num_params()
    }
}

/// [`crate::prepend_prompt`] with token types, which BERT always has.
fn prepend(
    embeds: Tensor<3>,
    mask: Tensor<2, Int>,
    token_type_ids: Tensor<2, Int>,
    prompt: Option<Tensor<3>>,
) -> (Tensor<3>, Tensor<2, Int>, Tensor<2, Int>) {
    let (embeds, mask, types) = crate::prepend_prompt(embeds, mask, Some(token_type_ids), prompt);
    (embeds, mask, types.expect("token types in, token types out"))
}

/// The registry entry: `model_type` `bert`.
pub(crate) const ARCH: ArchSpec = ArchSpec {
    name: "bert",
    model_types: &["bert"],
    family: Family::Encoder,
    parse: |value| Ok(Box::new(serde_json::from_value::<BertConfig>(value)?)),
};

impl ArchConfig for BertConfig {
    fn dim(&self) -> usize {
        self.hidden_size
    }

    fn load(&self, config_path: &Path, weights: Weights) -> Result<Arc<dyn Backbone>> {
        Ok(Arc::new(Bert::load(self.clone(), config_path, weights)?))
    }
}

impl Backbone for Bert {
    fn arch(&self) -> Arch {
        Arch::named(ARCH.name).expect("registered")
    }

    fn family(&self) -> FamilyModel<'_> {
        FamilyModel::Encoder(self)
    }

    fn dim(&self) -> usize {
        self.config.hidden_size
    }

    fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }

    fn pad_token_id(&self) -> i64 {
        self.config.pad_token_id
    }

    fn num_params(&self) -> usize {
        self.config.num_params()
    }

    fn word_embedding_matrix(&self) -> Tensor<2> {
        self.word_embeddings.clone()
    }

    fn embed_tokens(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        Bert::embed_tokens(self, ids)
    }

    fn layout(&self) -> Layout {
        let c = &self.config;
        Layout {
            variant: format!("{} FFN, {} positions", c.hidden_act, c.max_position_embeddings),
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

impl Encoder for Bert {
    fn type_vocab_size(&self) -> usize {
        self.config.type_vocab_size
    }

    fn forward(
        &self,
        input_ids: Tensor<2, Int>,
        attention_mask: Tensor<2, Int>,
        token_type_ids: Tensor<2, Int>,
        prompt: Option<Tensor<3>>,
    ) -> Result<Tensor<3>> {
        Bert::forward(self, input_ids, attention_mask, token_type_ids, prompt)
    }

    fn forward_inputs(
        &self,
        input_ids: Tensor<2, Int>,
        attention_mask: Tensor<2, Int>,
        token_type_ids: Tensor<2, Int>,
        prompt: Option<Tensor<3>>,
    ) -> Result<Tensor<3>> {
        Bert::forward_inputs(self, input_ids, attention_mask, token_type_ids, prompt)
    }
}
