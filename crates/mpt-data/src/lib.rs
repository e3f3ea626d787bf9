//! Data layer of Multitask Prompt Tuning (MPT): which tasks exist and how their files are read
//! ([`registry`], declared in `tasks/builtin.toml` and user task files, [`taskfile`];
//! [`readers`]), how they are split ([`splits`], ATTEMPT's recipe with the
//! substitutes documented in `SPLITS.md`), where the data lives ([`DataRoot`]), few-shot and
//! multitask sampling ([`fewshot`], [`sampler`]) and the task metrics ([`metrics`]; BLEU, chrF and
//! ROUGE-L of generated text in [`genmetrics`]).
//!
//! No tensors here: everything is plain text, indices and `f64` scores.

#![warn(missing_docs)]

pub mod error;
pub mod example;
pub mod fewshot;
pub mod genmetrics;
pub mod metrics;
pub mod readers;
pub mod registry;
mod rng;
pub mod root;
pub mod sampler;
pub mod splits;
pub mod taskfile;

pub use error::DataError;
pub use example::Example;
pub use fewshot::{STSB_FEW_SHOT_BINS, few_shot_stratum, sample_few_shot};
pub use genmetrics::{Bleu, corpus_bleu, corpus_chrf, corpus_rouge_l};
pub use metrics::{Metric, Scores, evaluate};
pub use readers::{LoadReport, SkippedRow, read_file, read_source};
pub use registry::{
    LabelKind, Reader, Role, SOURCE_TASKS, ScoreScale, SourceFile, SplitPlan, TARGET_TASKS, TASKS, TaskKind, TaskSpec,
    lookup, tasks_with_role,
};
pub use root::{DEFAULT_DATA_ROOT, DataRoot};
pub use sampler::MultitaskSampler;
pub use splits::{DEFAULT_SEED, Split, SplitSet, load_split, load_splits};
pub use taskfile::{TaskDecl, load_task_file};
