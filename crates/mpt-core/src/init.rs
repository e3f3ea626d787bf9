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
//!
//! Both are written as text the same way everywhere (`--init`, pipeline keys): see their
//! `FromStr` impls.

use std::fmt;
use std::str::FromStr;

use burn::prelude::*;
use mpt_models::TextTokenizer;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Uniform};
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};

/// How a fresh `[l, d]` prompt is filled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PromptInit {
    /// N(0, σ²), σ = std of the word embeddings.
    Random,
    /// Word embeddings of uniformly drawn token ids.
    #[default]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TargetInit {
    /// Mean of the source tasks' `U`, `V` (PEFT `AVERAGE_SOURCE_TASKS`).
    #[default]
    Average,
    /// One source task's `U`, `V` (PEFT `EXACT_SOURCE_TASK`).
    Source {
        /// Source task name.
        task: String,
    },
    /// `P*` only, fresh factors (PEFT `ONLY_SOURCE_SHARED`).
    Shared,
}

/// The text forms of [`PromptInit`], as error messages name them.
pub const PROMPT_INIT_FORMS: &str = "random, vocab or text:SOME TEXT";

/// The text forms of [`TargetInit`], as error messages name them.
pub const TARGET_INIT_FORMS: &str = "average, shared or source:TASK";

impl FromStr for PromptInit {
    type Err = CoreError;

    /// `random`, `vocab` or `text:SOME TEXT` (the text may be empty: special tokens only).
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "random" => Ok(Self::Random),
            "vocab" => Ok(Self::Vocab),
            _ => s
                .strip_prefix("text:")
                .map(|text| Self::Text { text: text.to_string() })
                .ok_or_else(|| CoreError::UnknownInit { found: s.to_string(), expected: PROMPT_INIT_FORMS }),
        }
    }
}

impl fmt::Display for PromptInit {
    /// The form [`PromptInit::from_str`] reads.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Random => f.write_str("random"),
            Self::Vocab => f.write_str("vocab"),
            Self::Text { text } => write!(f, "text:{text}"),
        }
    }
}

impl FromStr for TargetInit {
    type Err = CoreError;

    /// `average`, `shared` or `source:TASK` (TASK as written; not checked against a registry).
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "average" => Ok(Self::Average),
            "shared" => Ok(Self::Shared),
            _ => match s.strip_prefix("source:") {
                Some(task) if !task.is_empty() => Ok(Self::Source { task: task.to_string() }),
                _ => Err(CoreError::UnknownInit { found: s.to_string(), expected: TARGET_INIT_FORMS }),
            },
        }
    }
}

impl fmt::Display for TargetInit {
    /// The form [`TargetInit::from_str`] reads.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Average => f.write_str("average"),
            Self::Shared => f.write_str("shared"),
            Self::Source { task } => write!(f, "source:{task}"),
        }
    }
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
            let values: Vec<f32> = embeddings
                .clone()
                .try_into_vec_as::<f32>()
                .map_err(|e| CoreError::Shape { what: "word embeddings".into(), message: format!("{e:?}") })?;
            let n = values.len() as f64;
            let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
            let var = values.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
            let normal = Normal::new(0.0f32, var.sqrt() as f32)
                .map_err(|e| CoreError::Shape { what: "random init".into(), message: e.to_string() })?;
            let data: Vec<f32> = (0..l * d).map(|_| normal.sample(&mut rng)).collect();
            Ok(Tensor::from_data(TensorData::new(data, [l, d]), device))
        }
        PromptInit::Vocab => {
            let uniform = Uniform::new(0, vocab as i64)
                .map_err(|e| CoreError::Shape { what: "vocab init".into(), message: e.to_string() })?;
            Ok(gather((0..l).map(|_| uniform.sample(&mut rng)).collect()))
        }
        PromptInit::Text { text } => {
            let ids = text_ids
                .filter(|ids| !ids.is_empty())
                .ok_or_else(|| CoreError::Init { message: format!("text init {text:?} gave no token ids") })?;
            Ok(gather(ids.iter().copied().cycle().take(l).collect()))
        }
    }
}

/// Most token ids a `text` init's text is encoded to.
pub const INIT_TEXT_MAX_TOKENS: usize = 512;

/// [`fresh_prompt`] with a `text` init's text encoded by `tokenizer` (with special tokens, at
/// most [`INIT_TEXT_MAX_TOKENS`] ids): the one place a prompt init becomes `[l, d]` values for
/// the stages. `embeddings` is the backbone's `[V, d]` word-embedding matrix.
pub fn fresh_prompt_encoded(
    init: &PromptInit,
    l: usize,
    tokenizer: &TextTokenizer,
    embeddings: &Tensor<2>,
    seed: u64,
    device: &Device,
) -> Result<Tensor<2>> {
    let text_ids = match init {
        PromptInit::Text { text } => Some(tokenizer.encode_ids(text, INIT_TEXT_MAX_TOKENS)?),
        _ => None,
    };
    fresh_prompt(init, l, embeddings, text_ids.as_deref(), seed, device)
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
        FactorInit::Ones => (Tensor::ones([tasks, l, r], device), Tensor::ones([tasks, r, d], device) / r as f64),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_inits_parse_and_print_back() {
        for (text, init) in [
            ("random", PromptInit::Random),
            ("vocab", PromptInit::Vocab),
            ("text:classify the sentiment", PromptInit::Text { text: "classify the sentiment".into() }),
            ("text:", PromptInit::Text { text: String::new() }),
            ("text:a:b", PromptInit::Text { text: "a:b".into() }),
        ] {
            assert_eq!(text.parse::<PromptInit>().unwrap(), init, "{text}");
            assert_eq!(init.to_string(), text);
        }
        assert_eq!(PromptInit::default(), PromptInit::Vocab);
    }

    #[test]
    fn unknown_prompt_inits_name_the_known_forms() {
        for bad in ["zeros", "", "Vocab", "text", "source:mnli"] {
            let e = bad.parse::<PromptInit>().unwrap_err();
            assert!(matches!(&e, CoreError::UnknownInit { found, .. } if found == bad), "{bad}: {e:?}");
            assert_eq!(e.to_string(), format!("{bad:?}: expected random, vocab or text:SOME TEXT"));
        }
    }

    #[test]
    fn target_inits_parse_and_print_back() {
        for (text, init) in [
            ("average", TargetInit::Average),
            ("shared", TargetInit::Shared),
            ("source:mnli", TargetInit::Source { task: "mnli".into() }),
        ] {
            assert_eq!(text.parse::<TargetInit>().unwrap(), init, "{text}");
            assert_eq!(init.to_string(), text);
        }
        assert_eq!(TargetInit::default(), TargetInit::Average);
    }

    #[test]
    fn unknown_target_inits_name_the_known_forms() {
        for bad in ["middle", "", "Average", "source:", "source", "vocab"] {
            let e = bad.parse::<TargetInit>().unwrap_err();
            assert!(matches!(&e, CoreError::UnknownInit { found, .. } if found == bad), "{bad}: {e:?}");
            assert_eq!(e.to_string(), format!("{bad:?}: expected average, shared or source:TASK"));
        }
    }
}
