//! Prompt initialisation, seeded and backend-independent (values are drawn on the host).
//!
//! Fresh prompts (PEFT's `PromptTuningInit`): `random` — N(0, σ²) with σ the standard
//! deviation of the backbone's word embeddings (PEFT draws N(0, 1), far off the embedding
//! scale of most encoders); `vocab` — rows of the word-embedding matrix at uniformly drawn
//! token ids; `text` — the embeddings of a text's tokens, repeated and cut to length l.
//!
//! Targets from a multitask prompt (PEFT's `MultitaskPromptTuningInit`): `average` — mean of
//! the source tasks' `U`, `V`; `source` — one source task's `U`, `V`; `shared` — `P*` only,
//! with fresh `U`, `V`.

use burn::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Uniform};
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};

/// How a fresh `[l, d]` prompt is filled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PromptInit {
    /// N(0, σ²), σ = std of the word embeddings.
    Random,
    /// Word embeddings of uniformly drawn token ids.
    Vocab,
    /// Embeddings of the given text's token ids (with special tokens), repeated to length l.
    Text {
        /// The text.
        text: String,
    },
}

/// How fresh task factors `U` `[T, l, r]`, `V` `[T, r, d]` are filled.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FactorInit {
    /// `U = 1`, `V = 1/r`, so `U V = 1` and every task starts at `P*`.
    #[default]
    Ones,
    /// N(0, 0.02²) for both, as PEFT does.
    Normal,
}

/// How a target's factors come from a multitask artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TargetInit {
    /// Mean of the source tasks' `U`, `V` (PEFT `AVERAGE_SOURCE_TASKS`).
    Average,
    /// One source task's `U`, `V` (PEFT `EXACT_SOURCE_TASK`).
    Source {
        /// Source task name.
        task: String,
    },
    /// `P*` only, fresh factors (PEFT `ONLY_SOURCE_SHARED`).
    Shared,
}

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// `[l, d]` values for a fresh prompt. `embeddings` is the backbone's `[V, d]` word-embedding
/// matrix; `text_ids` the token ids of the init text (only for [`PromptInit::Text`]).
pub fn fresh_prompt(
    init: &PromptInit,
    l: usize,
    embeddings: &Tensor<2>,
    text_ids: Option<&[i64]>,
    seed: u64,
    device: &Device,
) -> Result<Tensor<2>> {
    let [vocab, d] = embeddings.dims();
    let mut rng = rng(seed);
    let gather = |ids: Vec<i64>| {
        let ids = Tensor::<1, Int>::from_data(TensorData::new(ids, [l]), &embeddings.device());
        Tensor::<2>::from_data(embeddings.clone().select(0, ids).into_data(), device)
    };
    match init {
        PromptInit::Random => {
            let values: Vec<f32> = embeddings.clone().try_into_vec_as::<f32>().map_err(|e| {
                CoreError::Shape {
                    what: "word embeddings".into(),
                    message: format!("{e:?}"),
                }
            })?;
            let n = values.len() as f64;
            let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
            let var = values.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
            let normal = Normal::new(0.0f32, var.sqrt() as f32).map_err(|e| CoreError::Shape {
                what: "random init".into(),
                message: e.to_string(),
            })?;
            let data: Vec<f32> = (0..l * d).map(|_| normal.sample(&mut rng)).collect();
            Ok(Tensor::from_data(TensorData::new(data, [l, d]), device))
        }
        PromptInit::Vocab => {
            let uniform = Uniform::new(0, vocab as i64).map_err(|e| CoreError::Shape {
                what: "vocab init".into(),
                message: e.to_string(),
            })?;
            Ok(gather((0..l).map(|_| uniform.sample(&mut rng)).collect()))
        }
        PromptInit::Text { text } => {
            let ids = text_ids.filter(|ids| !ids.is_empty()).ok_or_else(|| CoreError::Init {
                message: format!("text init {text:?} gave no token ids"),
            })?;
            Ok(gather(ids.iter().copied().cycle().take(l).collect()))
        }
    }
}

/// Fresh task factors `U` `[T, l, r]`, `V` `[T, r, d]`.
pub fn fresh_factors(
    init: FactorInit,
    tasks: usize,
    l: usize,
    r: usize,
    d: usize,
    seed: u64,
    device: &Device,
) -> (Tensor<3>, Tensor<3>) {
    match init {
        FactorInit::Ones => (
            Tensor::ones([tasks, l, r], device),
            Tensor::ones([tasks, r, d], device) / r as f64,
        ),
        FactorInit::Normal => {
            let mut rng = rng(seed);
            let normal = Normal::new(0.0f32, 0.02).expect("valid std");
            let mut draw = |n: usize| -> Vec<f32> { (0..n).map(|_| normal.sample(&mut rng)).collect() };
            let cols = draw(tasks * l * r);
            let rows = draw(tasks * r * d);
            (
                Tensor::from_data(TensorData::new(cols, [tasks, l, r]), device),
                Tensor::from_data(TensorData::new(rows, [tasks, r, d]), device),
            )
        }
    }
}

/// A target prompt for `targets` target tasks from a multitask artifact: `P*` copied, and for
/// every target the factors chosen by `init` (fresh ones drawn with `fresh`, `seed`).
pub fn target_from_multitask(
    artifact: &crate::artifact::Artifact,
    init: &TargetInit,
    fresh: FactorInit,
    targets: usize,
    seed: u64,
    device: &Device,
) -> Result<crate::prompt::MultitaskPrompt> {
    use crate::artifact::{ArtifactKind, Layout};
    if artifact.meta.kind != ArtifactKind::Multitask {
        return Err(CoreError::WrongKind {
            path: artifact.dir.clone(),
            expected: ArtifactKind::Multitask.to_string(),
            found: artifact.meta.kind.to_string(),
        });
    }
    let shared = artifact.tensor::<2>("prompt_embeddings", device)?;
    let [l, d] = shared.dims();
    if artifact.meta.layout == Layout::Prompt {
        // A multitask artifact without decomposition (the ablation): one shared prompt,
        // factors always fresh.
        let (cols, rows) = fresh_factors(fresh, targets, l, 1, d, seed, device);
        return crate::prompt::MultitaskPrompt::new(shared, cols, rows);
    }
    let cols = artifact.tensor::<3>("prefix_task_cols", device)?;
    let rows = artifact.tensor::<3>("prefix_task_rows", device)?;
    let r = cols.dims()[2];
    let (cols, rows) = match init {
        TargetInit::Average => (cols.mean_dim(0), rows.mean_dim(0)),
        TargetInit::Source { task } => {
            let k = artifact.task_index(task)?;
            (cols.narrow(0, k, 1), rows.narrow(0, k, 1))
        }
        TargetInit::Shared => {
            let (cols, rows) = fresh_factors(fresh, targets, l, r, d, seed, device);
            return crate::prompt::MultitaskPrompt::new(shared, cols, rows);
        }
    };
    let cols = cols.repeat_dim(0, targets);
    let rows = rows.repeat_dim(0, targets);
    crate::prompt::MultitaskPrompt::new(shared, cols, rows)
}
