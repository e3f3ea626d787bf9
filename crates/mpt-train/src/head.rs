//! How a frozen backbone scores a task.
//!
//! - T5: text-to-text. Loss = token cross-entropy on the label string (teacher forcing);
//!   prediction = rank classification over the task's label strings (sum of token
//!   log-probabilities; the encoder runs once per example, not once per label).
//! - BERT-family: a frozen verbalizer. Each label string is embedded once by the frozen model
//!   (mean over its tokens, L2-normalised); an input's score for a label is
//!   `cos(pool(prompted input), label) / τ`, where the pool is the mean over the input's own
//!   tokens (prompt rows excluded). No trained head, so a target's tunable count stays
//!   exactly that of its prompt.
//!
//! Both produce an [`Output`] with logits `[B, T, C]` (T5: T target tokens over the
//! vocabulary; verbalizer: T = 1 over the batch's widest label set, missing labels masked),
//! so losses and distillation are one code path.

use burn::prelude::*;
use burn::tensor::activation::{log_softmax, softmax};
use mpt_models::forward::{l2_normalize, mean_pool};
use mpt_models::{Backbone, TextTokenizer};
use serde::{Deserialize, Serialize};

use crate::data::{Batch, TaskData};
use crate::error::Result;

/// Verbalizer settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadConfig {
    /// Temperature τ of the cosine verbalizer (BERT-family only).
    #[serde(default = "default_tau")]
    pub tau: f64,
}

fn default_tau() -> f64 {
    0.05
}

impl Default for HeadConfig {
    fn default() -> Self {
        Self { tau: default_tau() }
    }
}

/// What the heads need per task of a batch's task list.
#[derive(Debug, Clone)]
pub struct Heads {
    /// BERT: all tasks' label embeddings stacked `[ΣC, d]`, with each task's offset and
    /// count; empty for T5.
    labels: Option<(Tensor<2>, Vec<(usize, usize)>)>,
    tau: f64,
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
    /// target positions; verbalizer: encoder final states at the input positions).
    pub hidden: Tensor<3>,
    /// `[B, H]` 1.0 where a hidden state counts.
    pub hidden_mask: Tensor<2>,
}

impl Heads {
    /// Prepares heads for `tasks` (label embeddings for encoders, computed once here).
    pub fn new(
        backbone: &Backbone,
        tokenizer: &TextTokenizer,
        tasks: &[&TaskData],
        config: HeadConfig,
        device: &Device,
    ) -> Result<Self> {
        let labels = match backbone {
            Backbone::T5(_) => None,
            Backbone::Bert(bert) => {
                let mut all = Vec::new();
                let mut spans = Vec::with_capacity(tasks.len());
                for data in tasks {
                    spans.push((all.len(), data.task.labels.len()));
                    all.extend(data.task.labels.iter().map(|l| l.to_string()));
                }
                let inputs: Vec<(&str, Option<&str>)> = all.iter().map(|l| (l.as_str(), None)).collect();
                let enc = tokenizer.encode_batch(&inputs, 32, bert.config.pad_token_id)?;
                let ids = int_rows(&enc.input_ids, device);
                let mask = int_rows(&enc.attention_mask, device);
                let types = int_rows(&enc.token_type_ids, device);
                let hidden = bert.forward(ids, mask.clone(), types, None)?;
                let table = l2_normalize(mean_pool(hidden, mask));
                Some((table, spans))
            }
        };
        Ok(Self {
            labels,
            tau: config.tau,
        })
    }

    /// Runs backbone and head with `prompt` `[B, l, d]` (may be tracked by autodiff).
    pub fn forward(&self, backbone: &Backbone, prompt: Tensor<3>, batch: &Batch) -> Result<Output> {
        let device = batch.input_ids.device();
        let b = batch.len();
        match backbone {
            Backbone::T5(m) => {
                let (enc, enc_mask) = m.encode(batch.input_ids.clone(), batch.attention_mask.clone(), Some(prompt));
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
            Backbone::Bert(m) => {
                let (table, spans) = self.labels.as_ref().expect("encoder heads carry label embeddings");
                let input_hidden = m.forward_inputs(
                    batch.input_ids.clone(),
                    batch.attention_mask.clone(),
                    batch.token_type_ids.clone(),
                    Some(prompt),
                )?;
                let d = input_hidden.dims()[2];
                let pooled = l2_normalize(mean_pool(input_hidden.clone(), batch.attention_mask.clone()));
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
                let index = Tensor::<1, Int>::from_data(TensorData::new(index, [b * width]), &device);
                let candidates = table.clone().select(0, index).reshape([b, width, d]);
                let cos = pooled.unsqueeze_dim::<3>(1).matmul(candidates.swap_dims(1, 2));
                let bias = Tensor::<3>::from_data(TensorData::new(bias, [b, 1, width]), &device);
                let logits = cos / self.tau + bias;
                let targets: Vec<i64> = batch.labels.iter().map(|&y| y as i64).collect();
                Ok(Output {
                    logits,
                    targets: Tensor::from_data(TensorData::new(targets, [b, 1]), &device),
                    mask: Tensor::ones([b, 1], &device),
                    hidden: input_hidden,
                    hidden_mask: batch.attention_mask.clone().float(),
                })
            }
        }
    }
}

fn int_rows(rows: &[Vec<i64>], device: &Device) -> Tensor<2, Int> {
    let cols = rows.first().map_or(0, Vec::len);
    Tensor::from_data(
        TensorData::new(rows.iter().flatten().copied().collect::<Vec<_>>(), [rows.len(), cols]),
        device,
    )
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
