//! How a frozen backbone scores a task.
//!
//! - Seq2seq (T5): text-to-text. Loss = token cross-entropy on the label string (teacher forcing);
//!   prediction = rank classification over the task's label strings (sum of token
//!   log-probabilities; the encoder runs once per example, not once per label).
//! - Encoders (BERT family): a frozen verbalizer. Each label string is embedded once by the frozen model
//!   (mean over its tokens, L2-normalised); an input's score for a label is
//!   `cos(pool(prompted input), label) / τ`, where the pool is the mean over the input's own
//!   tokens (prompt rows excluded). No trained head, so a target's tunable count stays
//!   exactly that of its prompt.
//! - Encoders with `kind = "linear"`: the standard encoder alternative (PEFT's SEQ_CLS prompt
//!   tuning trains the prompt and a classifier): `logits = pool(prompted input) · Wᵀ + b`
//!   over the same L2-normalised pool, with W `[C, d]` and b `[C]` trained beside the prompt
//!   and stored in the artifact. W starts as the verbalizer's label table / τ and b at 0, so
//!   an untrained linear head scores exactly like the verbalizer.
//! - Encoders with `kind = "pair"`: a bi-encoder (sentence-transformers' classification head,
//!   Reimers & Gurevych 2019) for what the backbone was trained as. Each segment of a pair is
//!   encoded on its own with the prompt prepended (`[CLS] a [SEP]`, `[CLS] b [SEP]`, one forward
//!   over `2B` rows), pooled as above into u and v, and
//!   `logits = [u, v, |u − v|, √d·(u ∘ v)] · Wᵀ + b` with W `[C, 4d]` (√d puts the product's
//!   entries on the scale of the others'; `Σ u∘v` is cos(u, v)). A single-sentence row has
//!   v = u. W starts as `[verbalizer / τ, 0, 0, 0]`, so an untrained pair head scores a row like
//!   the linear head scores its first segment, and on single-sentence tasks exactly like it.
//!   The width of a stored head's W (d or 4d) says which features it reads.
//!
//! - Causal LMs (Llama, Qwen2): the label string continues the input (PEFT's CAUSAL_LM). Loss =
//!   token cross-entropy on the label tokens only; prediction = rank classification over the
//!   label strings, or greedy continuation.
//!
//! All produce an [`Output`] with logits `[B, T, C]` (T5: T target tokens over the
//! vocabulary; verbalizer: T = 1 over the batch's widest label set, missing labels masked),
//! so losses and distillation are one code path.

use burn::prelude::*;
use burn::tensor::activation::{log_softmax, softmax};
use mpt_models::forward::{l2_normalize, mean_pool};
use mpt_models::{Backbone, Family, FamilyModel, TextTokenizer};
use serde::{Deserialize, Serialize};

use mpt_core::artifact::PAIR_WIDTH;

use crate::data::{Batch, TaskData};
use crate::error::{Result, TrainError};

/// Which head scores an encoder's classes. The default is [`HeadKind::Pair`]: on sentence
/// pairs it learns where the linear head stays near the majority class (MNLI 0.588 against
/// 0.469 after 600 steps on all-MiniLM-L6-v2, `docs/results/tuning/`), and on single
/// sentences it starts as the linear head does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum HeadKind {
    /// Frozen cosine verbalizer: no trained numbers beside the prompt.
    Verbalizer,
    /// Trained linear classifier per task over the pooled input (a pair encoded jointly),
    /// initialised from the verbalizer.
    Linear,
    /// Trained linear classifier per task over bi-encoder features of the two segments
    /// encoded on their own, `[u, v, |u − v|, √d·(u ∘ v)]`, initialised from the verbalizer
    /// over the first segment.
    #[default]
    Pair,
}

impl HeadKind {
    /// Width of a head's weight rows on a backbone of width `d`: `d`, or `4d` for the pair head.
    pub fn weight_width(self, d: usize) -> usize {
        match self {
            Self::Pair => PAIR_WIDTH * d,
            Self::Verbalizer | Self::Linear => d,
        }
    }

    /// The name of the trained head whose weight rows are `width` wide on a backbone of
    /// width `d` (`linear`, `pair`, or `unknown`), for messages.
    pub fn name_of_width(width: usize, d: usize) -> &'static str {
        match width {
            w if w == d => Self::Linear.as_str(),
            w if w == PAIR_WIDTH * d => Self::Pair.as_str(),
            _ => "unknown",
        }
    }

    /// The name configs use (`verbalizer`, `linear`, `pair`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Verbalizer => "verbalizer",
            Self::Linear => "linear",
            Self::Pair => "pair",
        }
    }
}

impl std::fmt::Display for HeadKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for HeadKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "verbalizer" => Ok(Self::Verbalizer),
            "linear" => Ok(Self::Linear),
            "pair" => Ok(Self::Pair),
            _ => Err(format!("{s:?}: expected verbalizer, linear or pair")),
        }
    }
}

/// Head settings (BERT-family only; T5 always scores label strings).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadConfig {
    /// Verbalizer, trained linear head or trained pair (bi-encoder) head.
    #[serde(default)]
    pub kind: HeadKind,
    /// Temperature τ of the cosine verbalizer (and the linear head's starting scale).
    #[serde(default = "default_tau")]
    pub tau: f64,
}

fn default_tau() -> f64 {
    0.05
}

impl Default for HeadConfig {
    fn default() -> Self {
        Self { kind: HeadKind::default(), tau: default_tau() }
    }
}

impl HeadConfig {
    /// Whether stages train a head (linear or pair) on `backbone` (encoders only; seq2seq
    /// models and causal LMs score label strings).
    pub fn trains_linear(&self, backbone: &dyn Backbone) -> bool {
        matches!(self.kind, HeadKind::Linear | HeadKind::Pair) && backbone.family().kind() == Family::Encoder
    }
}

/// A linear head's values: weight `[C, d]`, bias `[C]`.
pub type LinearHead = (Tensor<2>, Tensor<1>);

/// What the heads need per task of a batch's task list.
#[derive(Debug, Clone)]
pub struct Heads {
    /// BERT: all tasks' label embeddings stacked `[ΣC, d]`, with each task's offset and
    /// count; empty for T5.
    labels: Option<(Tensor<2>, Vec<(usize, usize)>)>,
    tau: f64,
    kind: HeadKind,
    device: Device,
}

/// One forward pass through backbone and head.
#[derive(Debug, Clone)]
pub struct Output {
    /// `[B, T, C]` logits.
    pub logits: Tensor<3>,
    /// `[B, T]` gold ids into C.
    pub targets: Tensor<2, Int>,
    /// `[B, T]` 1.0 where a position counts.
    pub mask: Tensor<2>,
    /// `[B, H, d]` hidden states compared in distillation (T5: decoder final states at the
    /// target positions; causal LMs: final states at the positions that predict the targets;
    /// verbalizer: encoder final states at the input positions).
    pub hidden: Tensor<3>,
    /// `[B, H]` 1.0 where a hidden state counts.
    pub hidden_mask: Tensor<2>,
}

impl Heads {
    /// Prepares heads for `tasks` (label embeddings for encoders, computed once here).
    pub fn new(
        backbone: &dyn Backbone,
        tokenizer: &TextTokenizer,
        tasks: &[&TaskData],
        config: HeadConfig,
        device: &Device,
    ) -> Result<Self> {
        let labels = match backbone.family() {
            FamilyModel::Seq2Seq(_) | FamilyModel::CausalLm(_) => None,
            FamilyModel::Encoder(encoder) => {
                let mut all = Vec::new();
                let mut spans = Vec::with_capacity(tasks.len());
                for data in tasks {
                    spans.push((all.len(), data.task.labels.len()));
                    all.extend(data.task.labels.iter().map(|l| l.to_string()));
                }
                let inputs: Vec<(&str, Option<&str>)> = all.iter().map(|l| (l.as_str(), None)).collect();
                let enc = tokenizer.encode_batch(&inputs, 32, backbone.pad_token_id())?;
                let ids = int_rows(&enc.input_ids, device);
                let mask = int_rows(&enc.attention_mask, device);
                let types = int_rows(&enc.token_type_ids, device);
                let hidden = encoder.forward(ids, mask.clone(), types, None)?;
                let table = l2_normalize(mean_pool(hidden, mask));
                Some((table, spans))
            }
        };
        Ok(Self { labels, tau: config.tau, kind: config.kind, device: device.clone() })
    }

    /// The (non-autodiff) device the heads were built on.
    pub fn device(&self) -> Device {
        self.device.clone()
    }

    /// Linear heads that score like the verbalizer, one per task (weight = label table / τ,
    /// bias 0), on the heads' device; for the pair head the weight is `[table / τ, 0, 0, 0]`
    /// `[C, 4d]` (the verbalizer over the first segment). Empty for T5.
    pub fn initial_heads(&self) -> Vec<LinearHead> {
        let Some((table, spans)) = &self.labels else {
            return Vec::new();
        };
        spans
            .iter()
            .map(|&(offset, count)| {
                let mut w = table.clone().slice([offset..offset + count]) / self.tau;
                if self.kind == HeadKind::Pair {
                    let d = w.dims()[1];
                    let rest = Tensor::<2>::zeros([count, (PAIR_WIDTH - 1) * d], &self.device);
                    w = Tensor::cat(vec![w, rest], 1);
                }
                (w, Tensor::<1>::zeros([count], &self.device))
            })
            .collect()
    }

    /// [`Heads::initial_heads`] as trainable parameters on the autodiff device `device`.
    pub fn initial_classifiers(&self, device: &Device) -> Vec<mpt_core::Classifier> {
        self.initial_heads().into_iter().map(|head| trainable(head, device)).collect()
    }

    /// Runs backbone and the frozen head with `prompt` `[B, l, d]` (may be tracked by autodiff).
    pub fn forward(&self, backbone: &dyn Backbone, prompt: Tensor<3>, batch: &Batch) -> Result<Output> {
        self.forward_with(backbone, Some(prompt), &[], batch)
    }

    /// As [`Heads::forward`], with no prompt at all when `prompt` is `None`, scoring with
    /// `linear[t]` for rows of task t when `linear` is not empty (one head per task of the
    /// list, encoders only).
    pub fn forward_with(
        &self,
        backbone: &dyn Backbone,
        prompt: Option<Tensor<3>>,
        linear: &[LinearHead],
        batch: &Batch,
    ) -> Result<Output> {
        let device = batch.input_ids.device();
        let b = batch.len();
        match backbone.family() {
            FamilyModel::Seq2Seq(m) => {
                let (enc, enc_mask) = m.encode(batch.input_ids.clone(), batch.attention_mask.clone(), prompt);
                let dec_in = batch.decoder_input_ids.clone().expect("T5 batches carry decoder inputs");
                let hidden = m.decode_hidden(dec_in, &enc, &enc_mask);
                let logits = m.lm_logits(hidden.clone());
                let mask = batch.target_mask.clone().expect("T5 batches carry a target mask");
                Ok(Output {
                    logits,
                    targets: batch.target_ids.clone().expect("T5 batches carry targets"),
                    mask: mask.clone(),
                    hidden,
                    hidden_mask: mask,
                })
            }
            FamilyModel::CausalLm(m) => {
                let l = prompt.as_ref().map_or(0, |p| p.dims()[1]);
                let hidden = m.forward_hidden(batch.input_ids.clone(), batch.attention_mask.clone(), prompt);
                let positions = batch.target_positions.clone().expect("causal-LM batches carry target positions");
                let [_, t] = positions.dims();
                let d = hidden.dims()[2];
                let index = (positions + l as i64).reshape([b, t, 1]).expand([b, t, d]);
                let at_targets = hidden.gather(1, index);
                let mask = batch.target_mask.clone().expect("causal-LM batches carry a target mask");
                Ok(Output {
                    logits: m.lm_logits(at_targets.clone()),
                    targets: batch.target_ids.clone().expect("causal-LM batches carry targets"),
                    mask: mask.clone(),
                    hidden: at_targets,
                    hidden_mask: mask,
                })
            }
            FamilyModel::Encoder(m) => {
                let (table, spans) = self.labels.as_ref().expect("encoder heads carry label embeddings");
                let d = backbone.dim();
                let pair = pair_head(linear, d)?;
                // The linear head and the verbalizer read the pooled joint input as `features`.
                let (features, hidden, hidden_mask) = if pair {
                    pair_features(m, prompt, batch)?
                } else {
                    let input_hidden = m.forward_inputs(
                        batch.input_ids.clone(),
                        batch.attention_mask.clone(),
                        batch.token_type_ids.clone(),
                        prompt,
                    )?;
                    let pooled = l2_normalize(mean_pool(input_hidden.clone(), batch.attention_mask.clone()));
                    (pooled, input_hidden, batch.attention_mask.clone().float())
                };
                let width = batch.tasks.iter().map(|&t| spans[t].1).max().unwrap_or(1);
                let mut index = Vec::with_capacity(b * width);
                let mut bias = Vec::with_capacity(b * width);
                for &t in &batch.tasks {
                    let (offset, count) = spans[t];
                    for c in 0..width {
                        index.push((offset + c.min(count - 1)) as i64);
                        bias.push(if c < count { 0.0f32 } else { -1e9 });
                    }
                }
                let bias = Tensor::<3>::from_data(TensorData::new(bias, [b, 1, width]), &device);
                let logits = if linear.is_empty() {
                    let index = Tensor::<1, Int>::from_data(TensorData::new(index, [b * width]), &device);
                    let candidates = table.clone().select(0, index).reshape([b, width, d]);
                    let cos = features.unsqueeze_dim::<3>(1).matmul(candidates.swap_dims(1, 2));
                    cos / self.tau + bias
                } else {
                    linear_logits(&features, linear, &batch.tasks, width, &device).reshape([b, 1, width]) + bias
                };
                let targets: Vec<i64> = batch.labels.iter().map(|&y| y as i64).collect();
                Ok(Output {
                    logits,
                    targets: Tensor::from_data(TensorData::new(targets, [b, 1]), &device),
                    mask: Tensor::ones([b, 1], &device),
                    hidden,
                    hidden_mask,
                })
            }
        }
    }
}

/// Whether `linear` are pair heads (weights `[C, 4d]`) rather than linear ones (`[C, d]`);
/// false for none. Heads of both widths, or of another width, are an error.
fn pair_head(linear: &[LinearHead], d: usize) -> Result<bool> {
    let widths: Vec<usize> = linear.iter().map(|(w, _)| w.dims()[1]).collect();
    let Some(&first) = widths.first() else {
        return Ok(false);
    };
    if widths.iter().any(|&w| w != first) || (first != d && first != PAIR_WIDTH * d) {
        return Err(TrainError::Config {
            field: "head.kind".into(),
            message: format!(
                "the heads in use have weight widths {widths:?}; expected all {d} (linear) or all {} (pair) on this backbone",
                PAIR_WIDTH * d
            ),
        });
    }
    Ok(first != d)
}

/// The pair head's inputs: features `[B, 4d]`, and hidden states `[B, 2S', d]` with their
/// mask `[B, 2S']` (both segments' input rows side by side; only the first's when no row of
/// the batch is a pair) for distillation.
fn pair_features(
    m: &dyn mpt_models::Encoder,
    prompt: Option<Tensor<3>>,
    batch: &Batch,
) -> Result<(Tensor<2>, Tensor<3>, Tensor<2>)> {
    let segments = batch.segments.as_ref().ok_or_else(|| TrainError::Config {
        field: "head.kind".into(),
        message: "the pair head needs batches that carry each segment on its own (make_batch's)".into(),
    })?;
    let b = batch.len();
    let [rows, s] = segments.input_ids.dims();
    let run = if segments.any_paired { rows } else { b };
    let ids = segments.input_ids.clone().slice([0..run, 0..s]);
    let mask = segments.attention_mask.clone().slice([0..run, 0..s]);
    let prompt = prompt.map(|p| if run > b { Tensor::cat(vec![p.clone(), p], 0) } else { p });
    let hidden = m.forward_inputs(ids, mask.clone(), mask.zeros_like(), prompt)?;
    let pooled = l2_normalize(mean_pool(hidden.clone(), mask.clone()));
    let d = pooled.dims()[1];
    let u = pooled.clone().slice([0..b, 0..d]);
    let (v, hidden, hidden_mask) = if run > b {
        let paired = segments.paired.clone();
        let v = pooled.slice([b..run, 0..d]) * paired.clone() + u.clone() * (paired.neg() + 1.0);
        let first = hidden.clone().slice([0..b, 0..s]);
        let second = hidden.slice([b..run, 0..s]);
        let mask = mask.float();
        let masks = Tensor::cat(vec![mask.clone().slice([0..b, 0..s]), mask.slice([b..run, 0..s])], 1);
        (v, Tensor::cat(vec![first, second], 1), masks)
    } else {
        (u.clone(), hidden, mask.float())
    };
    let features =
        Tensor::cat(vec![u.clone(), v.clone(), (u.clone() - v.clone()).abs(), (u * v) * (d as f64).sqrt()], 1);
    Ok((features, hidden, hidden_mask))
}

/// A head's values as a trainable [`mpt_core::Classifier`] on the autodiff device `device`.
pub fn trainable((w, b): LinearHead, device: &Device) -> mpt_core::Classifier {
    mpt_core::Classifier::new(
        Tensor::from_data(w.into_data(), device).require_grad(),
        Tensor::from_data(b.into_data(), device).require_grad(),
    )
}

/// `[B, width]`: row i scored by its task's head, classes beyond that task's count left at 0
/// (the caller masks them).
fn linear_logits(
    pooled: &Tensor<2>,
    linear: &[LinearHead],
    tasks: &[usize],
    width: usize,
    device: &Device,
) -> Tensor<2> {
    let b = tasks.len();
    let mut total: Option<Tensor<2>> = None;
    for (t, (w, bias)) in linear.iter().enumerate() {
        if !tasks.contains(&t) {
            continue;
        }
        let c = w.dims()[0];
        let mut logits = pooled.clone().matmul(w.clone().transpose()) + bias.clone().unsqueeze::<2>();
        if c < width {
            logits = Tensor::cat(vec![logits, Tensor::zeros([b, width - c], device)], 1);
        }
        let rows: Vec<f32> = tasks.iter().map(|&r| if r == t { 1.0 } else { 0.0 }).collect();
        let rows = Tensor::<2>::from_data(TensorData::new(rows, [b, 1]), device);
        let part = logits * rows;
        total = Some(match total {
            None => part,
            Some(sum) => sum + part,
        });
    }
    total.unwrap_or_else(|| Tensor::zeros([b, width], device))
}

fn int_rows(rows: &[Vec<i64>], device: &Device) -> Tensor<2, Int> {
    let cols = rows.first().map_or(0, Vec::len);
    Tensor::from_data(TensorData::new(rows.iter().flatten().copied().collect::<Vec<_>>(), [rows.len(), cols]), device)
}

fn masked_mean(values: Tensor<2>, mask: Tensor<2>) -> Tensor<1> {
    (values * mask.clone()).sum() / mask.sum().clamp_min(1.0)
}

/// Mean cross-entropy over the counted positions. Scalar `[1]`.
pub fn cross_entropy(out: &Output) -> Tensor<1> {
    let [b, t, _] = out.logits.dims();
    let logp = log_softmax(out.logits.clone(), 2);
    let picked = logp.gather(2, out.targets.clone().reshape([b, t, 1])).reshape([b, t]);
    masked_mean(picked.neg(), out.mask.clone())
}

/// KL(teacher ‖ student) of the temperature-`T` softened distributions, summed over the
/// classes/vocabulary and averaged over the counted positions. Scalar `[1]`.
pub fn kl_divergence(teacher: &Tensor<3>, student: &Tensor<3>, mask: &Tensor<2>, temperature: f64) -> Tensor<1> {
    let [b, t, _] = student.dims();
    let p_t = softmax(teacher.clone() / temperature, 2);
    let log_t = log_softmax(teacher.clone() / temperature, 2);
    let log_s = log_softmax(student.clone() / temperature, 2);
    let kl = (p_t * (log_t - log_s)).sum_dim(2).reshape([b, t]);
    masked_mean(kl, mask.clone())
}

/// Mean squared error between hidden states over the counted positions (averaged over
/// positions and width). Scalar `[1]`.
pub fn hidden_mse(teacher: &Tensor<3>, student: &Tensor<3>, mask: &Tensor<2>) -> Tensor<1> {
    let [b, h, d] = student.dims();
    let sq = (student.clone() - teacher.clone()).square().sum_dim(2).reshape([b, h]) / d as f64;
    masked_mean(sq, mask.clone())
}
