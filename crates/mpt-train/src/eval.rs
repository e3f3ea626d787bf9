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
/// the frozen head): the argmax of [`label_scores`] with rank decoding (and always on
/// encoders), the label string a greedy decode spells otherwise. A greedy output that matches
/// no label yields [`mpt_data::metrics::NO_LABEL`].
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
    let greedy = decoding == Decoding::Greedy && backbone.family().kind() != mpt_models::Family::Encoder;
    if !greedy {
        let scores = label_scores(backbone, heads, task_index, data, prompt, linear, batch_size)?;
        return Ok(scores.iter().map(|row| argmax(row)).collect());
    }
    let max_len = data.label_ids.iter().map(Vec::len).max().unwrap_or(1);
    let rows: Vec<usize> = (0..data.len()).collect();
    let texts = greedy_texts(backbone, data, &rows, prompt, batch_size, max_len, tokenizer, &heads.device())?;
    Ok(texts
        .iter()
        .map(|text| data.task.labels.iter().position(|label| *label == text.trim()).unwrap_or(NO_LABEL))
        .collect())
}

/// Per example of `data`, a score per label of its task (higher is likelier; a softmax over
/// them gives the label probabilities): encoders, the head's logits; seq2seq and causal LMs,
/// the summed log-probability of the label string (rank classification). Arguments as in
/// [`predict`].
#[allow(clippy::too_many_arguments)]
pub fn label_scores(
    backbone: &dyn Backbone,
    heads: &Heads,
    task_index: usize,
    data: &TaskData,
    prompt: Option<&Tensor<2>>,
    linear: Option<&LinearHead>,
    batch_size: usize,
) -> Result<Vec<Vec<f32>>> {
    let device = heads.device();
    let prompt = prompt.map(|p| p.clone().without_autodiff());
    let classes = data.task.labels.len();
    let mut out = vec![Vec::new(); data.len()];
    // The head of task_index sits at that index of the list forward_with reads.
    let linear: Vec<LinearHead> = match linear {
        Some(head) => vec![head.clone(); task_index + 1],
        None => Vec::new(),
    };
    for chunk in by_length(data).chunks(batch_size.max(1)) {
        let rows: Vec<(usize, usize)> = chunk.iter().map(|&i| (0, i)).collect();
        let b = rows.len();
        let scores: Tensor<2> = match backbone.family() {
            FamilyModel::Encoder(_) => {
                let mut batch = make_batch(&[data], &rows, backbone, &device);
                batch.tasks = vec![task_index; b];
                let out = heads.forward_with(backbone, batched(prompt.as_ref(), b), &linear, &batch)?;
                let width = out.logits.dims()[2];
                out.logits.reshape([b, width]).slice([0..b, 0..classes.min(width)])
            }
            FamilyModel::CausalLm(m) => {
                rank_continuations(m, backbone.pad_token_id(), prompt.as_ref(), chunk, data, &device)
            }
            FamilyModel::Seq2Seq(m) => {
                let batch = make_batch(&[data], &rows, backbone, &device);
                let (enc, enc_mask) = m.encode(batch.input_ids, batch.attention_mask, batched(prompt.as_ref(), b));
                rank_labels(m, backbone.pad_token_id(), &enc, &enc_mask, &data.label_ids, &device)
            }
        };
        let c = scores.dims()[1];
        let flat: Vec<f32> = scores.into_data().try_to_vec::<f32>().expect("scores are f32");
        for (&i, row) in chunk.iter().zip(flat.chunks(c.max(1))) {
            out[i] = row.to_vec();
        }
    }
    Ok(out)
}

/// Example indices of `data`, shortest input first (less padding per batch).
fn by_length(data: &TaskData) -> Vec<usize> {
    let mut order: Vec<usize> = (0..data.len()).collect();
    order.sort_by_key(|&i| data.input_ids[i].len());
    order
}

/// `prompt` `[l, d]` repeated for `b` rows: `[b, l, d]`.
fn batched(prompt: Option<&Tensor<2>>, b: usize) -> Option<Tensor<3>> {
    prompt.map(|p| {
        let [l, d] = p.dims();
        p.clone().unsqueeze::<3>().expand([b, l, d])
    })
}

/// Index of the largest value (the first of equal ones).
fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

/// Rank classification scores `[B, C]`: for each of the B encoded inputs, the summed
/// log-probability of each label's ids. The encoder states are reused for every label.
fn rank_labels(
    m: &dyn Seq2Seq,
    pad: i64,
    enc: &Tensor<3>,
    enc_mask: &Tensor<2, Int>,
    label_ids: &[Vec<i64>],
    device: &Device,
) -> Tensor<2> {
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
    (logp * mask).sum_dim(1).reshape([b, c])
}

/// Rank classification scores `[B, C]` on a causal LM: for each example of `chunk`, the summed
/// log-probability of each label's ids as a continuation of the input (behind `prompt`
/// `[l, d]`). One row per (example, label).
fn rank_continuations(
    m: &dyn CausalLm,
    pad: i64,
    prompt: Option<&Tensor<2>>,
    chunk: &[usize],
    data: &TaskData,
    device: &Device,
) -> Tensor<2> {
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
    (logp * rows.target_mask).sum_dim(1).reshape([chunk.len(), c])
}

/// Greedy generations, one per distinct input of `data` (a generation task), in the order of
/// [`mpt_data::metrics::generation_inputs`], with `prompt` `[l, d]` prepended; at most `max_len`
/// tokens each (EOS included).
pub fn generate(
    backbone: &dyn Backbone,
    data: &TaskData,
    prompt: Option<&Tensor<2>>,
    batch_size: usize,
    max_len: usize,
    tokenizer: &mpt_models::TextTokenizer,
    device: &Device,
) -> Result<Vec<String>> {
    let firsts: Vec<usize> =
        mpt_data::metrics::generation_inputs(&data.examples).into_iter().map(|(rows, _)| rows[0]).collect();
    let texts = greedy_texts(backbone, data, &firsts, prompt, batch_size, max_len.max(1), tokenizer, device)?;
    Ok(texts.into_iter().map(|t| t.trim().to_string()).collect())
}

/// The greedy decodes of examples `rows` of `data` (in that order), batched shortest input
/// first, at most `max_len` tokens each; the text is decoded as generated (not trimmed).
#[allow(clippy::too_many_arguments)]
fn greedy_texts(
    backbone: &dyn Backbone,
    data: &TaskData,
    rows: &[usize],
    prompt: Option<&Tensor<2>>,
    batch_size: usize,
    max_len: usize,
    tokenizer: &mpt_models::TextTokenizer,
    device: &Device,
) -> Result<Vec<String>> {
    let prompt = prompt.map(|p| p.clone().without_autodiff());
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&j| data.input_ids[rows[j]].len());
    let mut out = vec![String::new(); rows.len()];
    for chunk in order.chunks(batch_size.max(1)) {
        let texts: Vec<String> = match backbone.family() {
            FamilyModel::CausalLm(m) => {
                let ids: Vec<Vec<i64>> = chunk.iter().map(|&j| data.input_ids[rows[j]].clone()).collect();
                let generated = m.generate(&ids, prompt.as_ref(), max_len, device);
                generated.iter().map(|ids| tokenizer.decode(ids).unwrap_or_default()).collect()
            }
            FamilyModel::Seq2Seq(m) => {
                let pairs: Vec<(usize, usize)> = chunk.iter().map(|&j| (0, rows[j])).collect();
                let batch = make_batch(&[data], &pairs, backbone, device);
                let (enc, enc_mask) =
                    m.encode(batch.input_ids, batch.attention_mask, batched(prompt.as_ref(), pairs.len()));
                let generated = m.generate_greedy(&enc, &enc_mask, max_len);
                generated.iter().map(|ids| tokenizer.decode(&ids[1..]).unwrap_or_default()).collect()
            }
            FamilyModel::Encoder(_) => {
                return Err(crate::error::TrainError::Encode {
                    task: data.task.name.to_string(),
                    message: "an encoder does not generate text".into(),
                });
            }
        };
        for (&j, text) in chunk.iter().zip(texts) {
            out[j] = text;
        }
    }
    Ok(out)
}

/// Predictions and the task's metrics on `data` (a generation task: no class predictions, the
/// generation metrics of [`generate`]'s texts).
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
    if data.task.kind == mpt_data::TaskKind::Generation {
        // As long as the longest reference target (truncated to the target limit).
        let max_len = data.target_ids.iter().map(Vec::len).max().unwrap_or(1);
        let texts = generate(backbone, data, prompt, batch_size, max_len, tokenizer, &heads.device())?;
        let scores = mpt_data::metrics::evaluate_generation(data.task, &data.examples, &texts)?;
        return Ok((Vec::new(), scores));
    }
    let predicted = predict(backbone, heads, task_index, data, prompt, linear, batch_size, decoding, tokenizer)?;
    let scores = mpt_data::metrics::evaluate(data.task, &data.examples, &predicted)?;
    Ok((predicted, scores))
}
