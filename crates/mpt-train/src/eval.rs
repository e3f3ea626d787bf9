//! Prediction and scoring of a task split under a fixed prompt (no autodiff).
//!
//! Examples are batched in order of length to keep padding low, then put back in split order.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use mpt_data::metrics::{NO_LABEL, Scores};
use mpt_models::{Backbone, CausalLm, FamilyModel, Seq2Seq};
use serde::{Deserialize, Serialize};

use crate::data::{TaskData, make_batch};
use crate::error::Result;
use crate::head::{Heads, LinearHead};

/// How T5 turns outputs into a class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Decoding {
    /// Highest total log-probability among the label strings.
    #[default]
    Rank,
    /// Greedy generation; the text must equal a label string (else counted wrong).
    Greedy,
}

/// Predicted class per example of `data` (task `task_index` of `heads`'s task list), with
/// `prompt` `[l, d]` prepended (none: the backbone alone), scored by `linear` when given (else
/// the frozen head). A greedy
/// output that matches no label yields [`mpt_data::metrics::NO_LABEL`].
#[allow(clippy::too_many_arguments)]
pub fn predict(
    backbone: &dyn Backbone,
    heads: &Heads,
    task_index: usize,
    data: &TaskData,
    prompt: Option<&Tensor<2>>,
    linear: Option<&LinearHead>,
    batch_size: usize,
    decoding: Decoding,
    tokenizer: &mpt_models::TextTokenizer,
) -> Result<Vec<usize>> {
    let device = heads.device();
    let prompt = prompt.map(|p| p.clone().without_autodiff());
    let mut order: Vec<usize> = (0..data.len()).collect();
    order.sort_by_key(|&i| data.input_ids[i].len());
    let mut predictions = vec![NO_LABEL; data.len()];
    let tasks = [data];
    // The head of task_index sits at that index of the list forward_with reads.
    let linear: Vec<LinearHead> = match linear {
        Some(head) => vec![head.clone(); task_index + 1],
        None => Vec::new(),
    };
    for chunk in order.chunks(batch_size.max(1)) {
        let rows: Vec<(usize, usize)> = chunk.iter().map(|&i| (0, i)).collect();
        let mut batch = make_batch(&tasks, &rows, backbone, &device);
        batch.tasks = vec![task_index; rows.len()];
        let b = rows.len();
        let prompt_b = prompt.as_ref().map(|p| {
            let [l, d] = p.dims();
            p.clone().unsqueeze::<3>().expand([b, l, d])
        });
        let chosen: Vec<usize> = match backbone.family() {
            FamilyModel::Encoder(_) => {
                let out = heads.forward_with(backbone, prompt_b, &linear, &batch)?;
                let width = out.logits.dims()[2];
                argmax_rows(out.logits.reshape([b, width]))
            }
            FamilyModel::CausalLm(m) => match decoding {
                Decoding::Rank => rank_continuations(m, backbone.pad_token_id(), prompt.as_ref(), chunk, data, &device),
                Decoding::Greedy => {
                    let max_len = data.label_ids.iter().map(Vec::len).max().unwrap_or(1);
                    let rows: Vec<Vec<i64>> = chunk.iter().map(|&i| data.input_ids[i].clone()).collect();
                    m.generate(&rows, prompt.as_ref(), max_len, &device)
                        .iter()
                        .map(|ids| {
                            let text = tokenizer.decode(ids).unwrap_or_default();
                            data.task.labels.iter().position(|label| *label == text.trim()).unwrap_or(NO_LABEL)
                        })
                        .collect()
                }
            },
            FamilyModel::Seq2Seq(m) => {
                let (enc, enc_mask) = m.encode(batch.input_ids.clone(), batch.attention_mask.clone(), prompt_b);
                match decoding {
                    Decoding::Rank => {
                        rank_labels(m, backbone.pad_token_id(), &enc, &enc_mask, &data.label_ids, &device)
                    }
                    Decoding::Greedy => {
                        let max_len = data.label_ids.iter().map(Vec::len).max().unwrap_or(1);
                        let generated = m.generate_greedy(&enc, &enc_mask, max_len);
                        generated
                            .iter()
                            .map(|ids| {
                                let text = tokenizer.decode(&ids[1..]).unwrap_or_default();
                                data.task.labels.iter().position(|label| *label == text.trim()).unwrap_or(NO_LABEL)
                            })
                            .collect()
                    }
                }
            }
        };
        for (&i, c) in chunk.iter().zip(chosen) {
            predictions[i] = c;
        }
    }
    Ok(predictions)
}

fn argmax_rows(scores: Tensor<2>) -> Vec<usize> {
    scores.argmax(1).try_into_vec_as::<i64>().expect("argmax gives integers").into_iter().map(|v| v as usize).collect()
}

/// Rank classification: for each of the B encoded inputs, the label whose ids have the
/// highest summed log-probability. The encoder states are reused for every label.
fn rank_labels(
    m: &dyn Seq2Seq,
    pad: i64,
    enc: &Tensor<3>,
    enc_mask: &Tensor<2, Int>,
    label_ids: &[Vec<i64>],
    device: &Device,
) -> Vec<usize> {
    let b = enc.dims()[0];
    let c = label_ids.len();
    let t = label_ids.iter().map(Vec::len).max().unwrap_or(1);
    let start = m.decoder_start();
    let mut dec = Vec::with_capacity(c * t);
    let mut tgt = Vec::with_capacity(c * t);
    let mut mask = Vec::with_capacity(c * t);
    for ids in label_ids {
        for j in 0..t {
            dec.push(if j == 0 { start } else { ids.get(j - 1).copied().unwrap_or(pad) });
            tgt.push(ids.get(j).copied().unwrap_or(pad));
            mask.push(if j < ids.len() { 1.0f32 } else { 0.0 });
        }
    }
    // Row (i, k) = example i, label k.
    let repeat = |v: &[i64]| -> Vec<i64> { (0..b).flat_map(|_| v.iter().copied()).collect() };
    let repeat_f = |v: &[f32]| -> Vec<f32> { (0..b).flat_map(|_| v.iter().copied()).collect() };
    let dec = Tensor::<2, Int>::from_data(TensorData::new(repeat(&dec), [b * c, t]), device);
    let tgt = Tensor::<2, Int>::from_data(TensorData::new(repeat(&tgt), [b * c, t]), device);
    let mask = Tensor::<2>::from_data(TensorData::new(repeat_f(&mask), [b * c, t]), device);
    let rows: Vec<i64> = (0..b as i64).flat_map(|i| std::iter::repeat_n(i, c)).collect();
    let rows = Tensor::<1, Int>::from_data(TensorData::new(rows, [b * c]), device);
    let enc_r = enc.clone().select(0, rows.clone());
    let mask_r = enc_mask.clone().select(0, rows);
    let logits = m.lm_logits(m.decode_hidden(dec, &enc_r, &mask_r));
    let logp = log_softmax(logits, 2).gather(2, tgt.reshape([b * c, t, 1])).reshape([b * c, t]);
    let scores = (logp * mask).sum_dim(1).reshape([b, c]);
    argmax_rows(scores)
}

/// Rank classification on a causal LM: for each example of `chunk`, the label whose ids, as a
/// continuation of the input (behind `prompt` `[l, d]`), have the highest summed
/// log-probability. One row per (example, label).
fn rank_continuations(
    m: &dyn CausalLm,
    pad: i64,
    prompt: Option<&Tensor<2>>,
    chunk: &[usize],
    data: &TaskData,
    device: &Device,
) -> Vec<usize> {
    let c = data.label_ids.len();
    let pairs: Vec<(&[i64], &[i64])> = chunk
        .iter()
        .flat_map(|&i| data.label_ids.iter().map(move |label| (data.input_ids[i].as_slice(), label.as_slice())))
        .collect();
    let rows = crate::data::causal_rows(&pairs, pad, device);
    let n = pairs.len();
    let prompt = prompt.map(|p| {
        let [l, d] = p.dims();
        p.clone().unsqueeze::<3>().expand([n, l, d])
    });
    let l = prompt.as_ref().map_or(0, |p| p.dims()[1]);
    let hidden = m.forward_hidden(rows.input_ids, rows.attention_mask, prompt);
    let [_, t] = rows.target_positions.dims();
    let d = hidden.dims()[2];
    let index = (rows.target_positions + l as i64).reshape([n, t, 1]).expand([n, t, d]);
    let logits = m.lm_logits(hidden.gather(1, index));
    let logp = log_softmax(logits, 2).gather(2, rows.target_ids.reshape([n, t, 1])).reshape([n, t]);
    let scores = (logp * rows.target_mask).sum_dim(1).reshape([chunk.len(), c]);
    argmax_rows(scores)
}

/// Predictions and the task's metrics on `data`.
#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    backbone: &dyn Backbone,
    heads: &Heads,
    task_index: usize,
    data: &TaskData,
    prompt: Option<&Tensor<2>>,
    linear: Option<&LinearHead>,
    batch_size: usize,
    decoding: Decoding,
    tokenizer: &mpt_models::TextTokenizer,
) -> Result<(Vec<usize>, Scores)> {
    let predicted = predict(backbone, heads, task_index, data, prompt, linear, batch_size, decoding, tokenizer)?;
    let scores = mpt_data::metrics::evaluate(data.task, &data.examples, &predicted)?;
    Ok((predicted, scores))
}
