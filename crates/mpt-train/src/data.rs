//! Tasks tokenized once: every example's input ids (and, for seq2seq and causal LMs, its
//! label-string target ids), kept on the host and padded into device batches on demand.
//!
//! Batches by family: encoders get the input (a sentence pair) alone; seq2seq models get the
//! input for the encoder and the label string, shifted behind the start id, for the decoder;
//! causal LMs get one sequence, the input followed by the label string, with the positions
//! whose next-token logits predict the label's tokens (PEFT's CAUSAL_LM training: the loss is
//! on the label tokens only).

use burn::prelude::*;
use mpt_data::{Example, TaskSpec};
use mpt_models::{Arch, Backbone, Family, FamilyModel, TextTokenizer};

use crate::error::{Result, TrainError};

/// Token limits for encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lengths {
    /// Input tokens per example (prompt excluded), truncated longest-first for pairs.
    pub max_input: usize,
    /// Target tokens (T5 label strings, `</s>` included).
    pub max_target: usize,
}

impl Default for Lengths {
    fn default() -> Self {
        Self { max_input: 128, max_target: 16 }
    }
}

impl Lengths {
    /// Rejects limits that leave no room for an input or a target, naming the field under
    /// `prefix` (`train.` in a stage config, empty for an evaluation). [`TaskData::encode`]
    /// checks this before tokenizing; the CLI checks its `--max-len` with it for every command.
    pub fn validate(&self, prefix: &str) -> Result<()> {
        let bad = |field: &str, message: &str| TrainError::Config {
            field: format!("{prefix}lengths.{field}"),
            message: message.into(),
        };
        if self.max_input < 4 {
            return Err(bad("max_input", "must be at least 4 (the special tokens and some input)"));
        }
        if self.max_target < 2 {
            return Err(bad("max_target", "must be at least 2 (a label token and </s>)"));
        }
        Ok(())
    }
}

/// One task's examples with their token ids.
#[derive(Debug, Clone)]
pub struct TaskData {
    /// The task.
    pub task: &'static TaskSpec,
    /// Examples, in split order.
    pub examples: Vec<Example>,
    /// `[n][S_i]` input ids (with special tokens, unpadded).
    pub input_ids: Vec<Vec<i64>>,
    /// `[n][S_i]` token type ids.
    pub token_type_ids: Vec<Vec<i64>>,
    /// Per label: its target ids (T5) — empty for encoders and generation tasks.
    pub label_ids: Vec<Vec<i64>>,
    /// Generation tasks: per example, its reference's target ids (`</s>`/EOS included);
    /// empty otherwise.
    pub target_ids: Vec<Vec<i64>>,
}

impl TaskData {
    /// Tokenizes `examples` of `task` for `arch`: T5 reads the text-to-text `input`; encoders
    /// read the `text_a`/`text_b` segments as a sentence pair.
    pub fn encode(
        task: &'static TaskSpec,
        examples: Vec<Example>,
        tokenizer: &TextTokenizer,
        arch: Arch,
        lengths: Lengths,
    ) -> Result<Self> {
        lengths.validate("")?;
        let generation = task.kind == mpt_data::TaskKind::Generation;
        if generation && arch.family() == Family::Encoder {
            return Err(TrainError::Encode {
                task: task.name.to_string(),
                message: format!(
                    "a generation task needs a backbone that generates text (T5 or a causal LM); {} is an encoder",
                    arch.name()
                ),
            });
        }
        let inputs: Vec<(&str, Option<&str>)> = examples
            .iter()
            .map(|e| match arch.family() {
                Family::Seq2Seq | Family::CausalLm => (e.input.as_str(), None),
                Family::Encoder => (e.text_a.as_str(), e.text_b.as_deref()),
            })
            .collect();
        let rows = tokenizer.encode_rows(&inputs, lengths.max_input)?;
        let (input_ids, token_type_ids) = rows.into_iter().unzip();
        let label_ids = match arch.family() {
            Family::Seq2Seq | Family::CausalLm if !generation => {
                let labels: Vec<(&str, Option<&str>)> = task.labels.iter().map(|l| (*l, None)).collect();
                let ids: Vec<Vec<i64>> =
                    tokenizer.encode_rows(&labels, lengths.max_target)?.into_iter().map(|(ids, _)| ids).collect();
                if let Some((i, _)) = ids.iter().enumerate().find(|(_, ids)| ids.is_empty()) {
                    return Err(TrainError::Encode {
                        task: task.name.to_string(),
                        message: format!("label {:?} tokenizes to nothing", task.labels[i]),
                    });
                }
                ids
            }
            _ => Vec::new(),
        };
        let target_ids = if generation {
            // Rows to predict (no reference) get no target ids.
            let targets: Vec<(&str, Option<&str>)> =
                examples.iter().map(|e| (e.reference.as_deref().unwrap_or(""), None)).collect();
            let ids: Vec<Vec<i64>> =
                tokenizer.encode_rows(&targets, lengths.max_target)?.into_iter().map(|(ids, _)| ids).collect();
            let ids: Vec<Vec<i64>> = ids
                .into_iter()
                .zip(&examples)
                .map(|(ids, e)| if e.reference.is_some() { ids } else { Vec::new() })
                .collect();
            if let Some((i, _)) =
                ids.iter().enumerate().find(|(i, ids)| ids.is_empty() && examples[*i].reference.is_some())
            {
                return Err(TrainError::Encode {
                    task: task.name.to_string(),
                    message: format!("the reference of example {} tokenizes to nothing", examples[i].id),
                });
            }
            ids
        } else {
            Vec::new()
        };
        Ok(Self { task, examples, input_ids, token_type_ids, label_ids, target_ids })
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.examples.len()
    }

    /// Whether there are no examples.
    pub fn is_empty(&self) -> bool {
        self.examples.is_empty()
    }

    /// Gold class indices.
    pub fn labels(&self) -> Vec<usize> {
        self.examples.iter().map(|e| e.label).collect()
    }

    /// The target ids of example `i`: its label string's (classification) or its reference's
    /// (generation).
    pub fn target_of(&self, i: usize) -> &[i64] {
        if self.target_ids.is_empty() { &self.label_ids[self.examples[i].label] } else { &self.target_ids[i] }
    }
}

/// A padded batch on a device. Rows may come from different tasks (`tasks[i]` is the index
/// of row i's task in the caller's task list).
#[derive(Debug, Clone)]
pub struct Batch {
    /// `[B, S]`.
    pub input_ids: Tensor<2, Int>,
    /// `[B, S]`.
    pub attention_mask: Tensor<2, Int>,
    /// `[B, S]`.
    pub token_type_ids: Tensor<2, Int>,
    /// T5: `[B, T]` decoder inputs (targets shifted right behind the start id).
    pub decoder_input_ids: Option<Tensor<2, Int>>,
    /// T5 and causal LMs: `[B, T]` target ids (padding positions hold the pad id; see
    /// `target_mask`).
    pub target_ids: Option<Tensor<2, Int>>,
    /// T5 and causal LMs: `[B, T]` 1.0 at real target tokens.
    pub target_mask: Option<Tensor<2>>,
    /// Causal LMs: `[B, T]` the position in the row (prompt not counted) whose next-token
    /// logits predict target token j: the input's length − 1 + j.
    pub target_positions: Option<Tensor<2, Int>>,
    /// Gold class per row.
    pub labels: Vec<usize>,
    /// Task index per row.
    pub tasks: Vec<usize>,
    /// Encoders: the rows' two segments encoded on their own, for the pair head.
    pub segments: Option<Segments>,
}

/// An encoder batch's sentence pairs as separate sequences (what a bi-encoder reads): rows
/// `0..B` are the first segments (`[CLS] a [SEP]`), rows `B..2B` the second (`[CLS] b [SEP]`,
/// token types 0), both as the joint row had them after truncation. A row without a second
/// segment repeats its first there, and `paired` is 0.0 for it.
#[derive(Debug, Clone)]
pub struct Segments {
    /// `[2B, S']`.
    pub input_ids: Tensor<2, Int>,
    /// `[2B, S']`.
    pub attention_mask: Tensor<2, Int>,
    /// `[B, 1]` 1.0 where the row has a second segment.
    pub paired: Tensor<2>,
    /// Whether any row has a second segment (otherwise rows `B..2B` need not be run).
    pub any_paired: bool,
}

/// Splits a joint encoder row (`[CLS] a [SEP] b [SEP]`, token types 0 then 1) into its two
/// segments, each as the tokenizer encodes a single text: `[CLS] a [SEP]` and
/// `[CLS] b [SEP]`; `None` for the second when the row has no type-1 token.
pub fn split_segments(ids: &[i64], types: &[i64]) -> (Vec<i64>, Option<Vec<i64>>) {
    let first: Vec<i64> = ids.iter().zip(types).filter(|&(_, &t)| t == 0).map(|(&i, _)| i).collect();
    let rest: Vec<i64> = ids.iter().zip(types).filter(|&(_, &t)| t != 0).map(|(&i, _)| i).collect();
    if rest.is_empty() {
        return (first, None);
    }
    let second = ids.first().copied().into_iter().chain(rest).collect();
    (first, Some(second))
}

fn segments(rows: &[(&[i64], &[i64])], pad: i64, device: &Device) -> Segments {
    let b = rows.len();
    let split: Vec<(Vec<i64>, Option<Vec<i64>>)> = rows.iter().map(|(ids, types)| split_segments(ids, types)).collect();
    let paired: Vec<f32> = split.iter().map(|(_, second)| if second.is_some() { 1.0 } else { 0.0 }).collect();
    let any_paired = paired.iter().any(|&p| p > 0.0);
    let seqs: Vec<&[i64]> = split
        .iter()
        .map(|(first, _)| first.as_slice())
        .chain(split.iter().map(|(first, second)| second.as_deref().unwrap_or(first)))
        .collect();
    let zeros: Vec<Vec<i64>> = seqs.iter().map(|s| vec![0; s.len()]).collect();
    let padded = mpt_models::pad_rows(seqs.iter().zip(&zeros).map(|(s, z)| (*s, z.as_slice())), pad);
    Segments {
        input_ids: int2(&padded.input_ids, device),
        attention_mask: int2(&padded.attention_mask, device),
        paired: Tensor::from_data(TensorData::new(paired, [b, 1]), device),
        any_paired,
    }
}

impl Batch {
    /// Batch size.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

fn int2(rows: &[Vec<i64>], device: &Device) -> Tensor<2, Int> {
    let cols = rows.first().map_or(0, Vec::len);
    let flat: Vec<i64> = rows.iter().flatten().copied().collect();
    Tensor::from_data(TensorData::new(flat, [rows.len(), cols]), device)
}

/// Builds a batch from `(task index, example index)` rows over `tasks`.
pub fn make_batch(tasks: &[&TaskData], rows: &[(usize, usize)], backbone: &dyn Backbone, device: &Device) -> Batch {
    let pad = backbone.pad_token_id();
    let labels: Vec<usize> = rows.iter().map(|&(t, i)| tasks[t].examples[i].label).collect();
    let tasks_of = rows.iter().map(|&(t, _)| t).collect();
    if let FamilyModel::CausalLm(_) = backbone.family() {
        let pairs: Vec<(&[i64], &[i64])> =
            rows.iter().map(|&(t, i)| (tasks[t].input_ids[i].as_slice(), tasks[t].target_of(i))).collect();
        return causal_rows(&pairs, pad, device).into_batch(labels, tasks_of);
    }
    let padded = mpt_models::pad_rows(
        rows.iter().map(|&(t, i)| {
            let data = tasks[t];
            (data.input_ids[i].as_slice(), data.token_type_ids[i].as_slice())
        }),
        pad,
    );
    let segments = match backbone.family() {
        FamilyModel::Encoder(_) => {
            let joint: Vec<(&[i64], &[i64])> = rows
                .iter()
                .map(|&(t, i)| (tasks[t].input_ids[i].as_slice(), tasks[t].token_type_ids[i].as_slice()))
                .collect();
            Some(segments(&joint, pad, device))
        }
        _ => None,
    };
    let (decoder_input_ids, target_ids, target_mask) = match backbone.family() {
        FamilyModel::Seq2Seq(m) => {
            let targets: Vec<&[i64]> = rows.iter().map(|&(t, i)| tasks[t].target_of(i)).collect();
            let t_len = targets.iter().map(|t| t.len()).max().unwrap_or(1);
            let start = m.decoder_start();
            let mut dec = Vec::with_capacity(rows.len());
            let mut tgt = Vec::with_capacity(rows.len());
            let mut mask = Vec::with_capacity(rows.len() * t_len);
            for target in targets {
                let mut d: Vec<i64> = std::iter::once(start).chain(target.iter().copied()).collect();
                d.truncate(target.len());
                d.resize(t_len, pad);
                let mut t = target.to_vec();
                mask.extend((0..t_len).map(|j| if j < t.len() { 1.0f32 } else { 0.0 }));
                t.resize(t_len, pad);
                dec.push(d);
                tgt.push(t);
            }
            (
                Some(int2(&dec, device)),
                Some(int2(&tgt, device)),
                Some(Tensor::from_data(TensorData::new(mask, [rows.len(), t_len]), device)),
            )
        }
        FamilyModel::Encoder(_) | FamilyModel::CausalLm(_) => (None, None, None),
    };
    Batch {
        input_ids: int2(&padded.input_ids, device),
        attention_mask: int2(&padded.attention_mask, device),
        token_type_ids: int2(&padded.token_type_ids, device),
        decoder_input_ids,
        target_ids,
        target_mask,
        target_positions: None,
        labels,
        tasks: tasks_of,
        segments,
    }
}

/// Causal-LM rows on a device: each input followed by its target, right-padded.
#[derive(Debug, Clone)]
pub struct CausalRows {
    /// `[B, S]` input then target ids.
    pub input_ids: Tensor<2, Int>,
    /// `[B, S]` 1 at real tokens.
    pub attention_mask: Tensor<2, Int>,
    /// `[B, T]` target ids (pad beyond a row's target).
    pub target_ids: Tensor<2, Int>,
    /// `[B, T]` 1.0 at real target tokens.
    pub target_mask: Tensor<2>,
    /// `[B, T]` positions whose next-token logits predict the targets (input length − 1 + j).
    pub target_positions: Tensor<2, Int>,
}

impl CausalRows {
    /// The batch these rows make, with gold class `labels` and task index `tasks` per row.
    pub fn into_batch(self, labels: Vec<usize>, tasks: Vec<usize>) -> Batch {
        let [b, s] = self.input_ids.dims();
        let device = self.input_ids.device();
        Batch {
            input_ids: self.input_ids,
            attention_mask: self.attention_mask,
            token_type_ids: Tensor::zeros([b, s], &device),
            decoder_input_ids: None,
            target_ids: Some(self.target_ids),
            target_mask: Some(self.target_mask),
            target_positions: Some(self.target_positions),
            labels,
            tasks,
            segments: None,
        }
    }
}

/// Lays out `(input, target)` pairs as causal-LM rows (inputs non-empty).
pub fn causal_rows(pairs: &[(&[i64], &[i64])], pad: i64, device: &Device) -> CausalRows {
    let s = pairs.iter().map(|(i, t)| i.len() + t.len()).max().unwrap_or(1).max(1);
    let t_len = pairs.iter().map(|(_, t)| t.len()).max().unwrap_or(1).max(1);
    let b = pairs.len();
    let (mut ids, mut mask) = (Vec::with_capacity(b * s), Vec::with_capacity(b * s));
    let (mut tgt, mut tmask, mut pos) =
        (Vec::with_capacity(b * t_len), Vec::with_capacity(b * t_len), Vec::with_capacity(b * t_len));
    for (input, target) in pairs {
        let n = input.len() + target.len();
        ids.extend(input.iter().chain(target.iter()).copied().chain(std::iter::repeat_n(pad, s - n)));
        mask.extend((0..s).map(|j| i64::from(j < n)));
        for j in 0..t_len {
            let real = j < target.len();
            tgt.push(if real { target[j] } else { pad });
            tmask.push(if real { 1.0f32 } else { 0.0 });
            pos.push((input.len() - 1 + j.min(target.len().saturating_sub(1))) as i64);
        }
    }
    let int = |v: Vec<i64>, shape: [usize; 2]| Tensor::<2, Int>::from_data(TensorData::new(v, shape), device);
    CausalRows {
        input_ids: int(ids, [b, s]),
        attention_mask: int(mask, [b, s]),
        target_ids: int(tgt, [b, t_len]),
        target_mask: Tensor::from_data(TensorData::new(tmask, [b, t_len]), device),
        target_positions: int(pos, [b, t_len]),
    }
}
