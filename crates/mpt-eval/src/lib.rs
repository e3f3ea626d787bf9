//! Stage 4 of Multitask Prompt Tuning: evaluation of any artifact on a task split, with the
//! task's metrics, written as JSON and as a markdown table.
//!
//! The prompt used is the artifact's prompt for the task (its own task factors when the task
//! is among the artifact's tasks); a single plain prompt may be evaluated on any task
//! (zero-shot transfer), which the result records.

use std::path::Path;
use std::time::Instant;

use burn::prelude::*;
use mpt_core::{Artifact, BackboneRef, InUse, Layout};
use mpt_data::{DataRoot, Split};
use mpt_models::Model;
use mpt_train::{Decoding, HeadConfig, Heads, Lengths, Selection, TaskData, evaluate};
use serde::{Deserialize, Serialize};

pub mod predict;
pub use predict::{Prediction, Predictor};

/// Errors of the evaluation stage.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The artifact has no prompt for the task.
    #[error("artifact {path} has no prompt for task {task:?} (its tasks: {tasks})")]
    NoPrompt {
        /// Artifact folder.
        path: std::path::PathBuf,
        /// Requested task.
        task: String,
        /// The artifact's tasks.
        tasks: String,
    },
    /// A config value is unusable.
    #[error("eval config `{field}`: {message}")]
    Config {
        /// Field.
        field: String,
        /// What was expected.
        message: String,
    },
    /// Writing results failed.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: std::path::PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Evaluation failed.
    #[error(transparent)]
    Train(#[from] mpt_train::TrainError),
    /// Artifact error.
    #[error(transparent)]
    Core(#[from] mpt_core::CoreError),
    /// Data error.
    #[error(transparent)]
    Data(#[from] mpt_data::DataError),
    /// Backbone error.
    #[error(transparent)]
    Model(#[from] mpt_models::ModelError),
}

/// Result alias.
pub type Result<T> = std::result::Result<T, EvalError>;

/// Default split of an evaluation.
pub const DEFAULT_SPLIT: Split = Split::Test;
/// Default batch size of an evaluation.
pub const DEFAULT_BATCH_SIZE: usize = 32;

/// What to evaluate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// Task.
    pub task: String,
    /// Split.
    #[serde(default = "default_split")]
    pub split: Split,
    /// Example selection (`max_dev`/`max_test` cap the split).
    #[serde(default)]
    pub data: Selection,
    /// Batch size.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// T5 decoding.
    #[serde(default)]
    pub decoding: Decoding,
    /// Token limits.
    #[serde(default)]
    pub lengths: Lengths,
    /// Head.
    #[serde(default)]
    pub head: HeadConfig,
    /// Also score the constant and no-prompt baselines on the same rows.
    #[serde(default = "yes")]
    pub baselines: bool,
}

fn yes() -> bool {
    true
}

fn default_split() -> Split {
    DEFAULT_SPLIT
}
fn default_batch() -> usize {
    DEFAULT_BATCH_SIZE
}

/// One evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalResult {
    /// Task.
    pub task: String,
    /// Split.
    pub split: String,
    /// Artifact id.
    pub artifact_id: String,
    /// Artifact folder.
    pub artifact: String,
    /// Artifact kind.
    pub kind: String,
    /// Whether the artifact was trained on this task.
    pub in_domain: bool,
    /// Examples scored.
    pub examples: usize,
    /// Metric values (fractions).
    pub metrics: std::collections::BTreeMap<String, f64>,
    /// Mean of the task's metrics.
    pub score: f64,
    /// Tunable numbers of the artifact.
    pub tunable_params: usize,
    /// What "no learning" scores on the same rows with the same metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baselines: Option<Baselines>,
    /// Wall time.
    pub seconds: f64,
}

/// Scores that show no learning, on the rows an [`EvalResult`] scored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baselines {
    /// The train split's most frequent label (the constant predictor); for a generation task,
    /// its most frequent reference text.
    pub majority_label: String,
    /// Score of always predicting it.
    pub majority: f64,
    /// Its metric values.
    pub majority_metrics: std::collections::BTreeMap<String, f64>,
    /// Score of the frozen backbone with no prompt and the untrained head (the verbalizer).
    pub no_prompt: f64,
    /// Its metric values.
    pub no_prompt_metrics: std::collections::BTreeMap<String, f64>,
}

/// The train split's most frequent label of `task` (ties: the lower index).
pub fn majority_label(root: &DataRoot, task: &'static mpt_data::TaskSpec, split_seed: u64) -> Result<usize> {
    let (train, _) = root.load_split(task, Split::Train, split_seed)?;
    let mut counts = vec![0usize; task.labels.len().max(1)];
    for e in &train {
        if let Some(c) = counts.get_mut(e.label) {
            *c += 1;
        }
    }
    Ok(counts.iter().enumerate().max_by_key(|&(i, &c)| (c, std::cmp::Reverse(i))).map_or(0, |(i, _)| i))
}

/// The train split's most frequent reference text of a generation `task` (ties: the first
/// seen): the constant predictor of a generation task.
pub fn majority_reference(root: &DataRoot, task: &'static mpt_data::TaskSpec, split_seed: u64) -> Result<String> {
    let (train, _) = root.load_split(task, Split::Train, split_seed)?;
    let mut counts: std::collections::HashMap<&str, (usize, usize)> = std::collections::HashMap::new();
    for (i, e) in train.iter().enumerate() {
        if let Some(r) = e.reference.as_deref() {
            counts.entry(r).or_insert((0, i)).0 += 1;
        }
    }
    Ok(counts
        .into_iter()
        .max_by_key(|&(_, (c, first))| (c, std::cmp::Reverse(first)))
        .map_or_else(String::new, |(r, _)| r.to_string()))
}

/// The prompt `[l, d]` (and trained head, when stored) `artifact` uses for `task`: the task's
/// own prompt when the task is among the artifact's tasks, a plain artifact's prompt on any
/// task (zero-shot transfer), an error for a multitask artifact without the task.
pub fn task_prompt(
    artifact: &Artifact,
    task: &mpt_data::TaskSpec,
    device: &Device,
) -> Result<(Tensor<2>, Option<mpt_train::LinearHead>)> {
    let index = artifact.meta.tasks.iter().position(|t| t == task.name);
    match (index, artifact.meta.layout) {
        (Some(k), _) => {
            let params = artifact.prompt_params(device)?;
            let head = params.classifier(k).map(|c| c.values());
            Ok((params.task_prompt(k), head))
        }
        (None, Layout::Prompt) => Ok((artifact.tensor::<2>("prompt_embeddings", device)?, None)),
        (None, Layout::Multitask) => Err(EvalError::NoPrompt {
            path: artifact.dir.clone(),
            task: task.name.into(),
            tasks: artifact.meta.tasks.join(", "),
        }),
    }
}

/// Evaluates the artifact at `artifact_dir` on `config.task`/`config.split`.
pub fn run(
    model: &Model,
    root: &DataRoot,
    artifact_dir: &Path,
    config: &EvalConfig,
    device: &Device,
) -> Result<EvalResult> {
    if config.batch_size == 0 {
        return Err(EvalError::Config { field: "batch_size".into(), message: "must be at least 1".into() });
    }
    config.data.validate("data.")?;
    config.lengths.validate("")?;
    let started = Instant::now();
    let task = mpt_data::lookup(&config.task)?;
    let backbone = &*model.backbone;
    let backbone_ref = BackboneRef::new(backbone.arch(), &model.fingerprint);
    let in_use = InUse { backbone: &backbone_ref, dim: model.backbone.dim() };
    let artifact = Artifact::load(artifact_dir, None, Some(in_use))?;
    let (prompt, head) = task_prompt(&artifact, task, device)?;
    let tokenizer = model.require_tokenizer()?;
    root.check_task(task)?;
    let (examples, _) = root.load_split(task, config.split, config.data.split_seed)?;
    let cap = match config.split {
        Split::Dev => config.data.max_dev,
        Split::Test => config.data.max_test,
        Split::Train => config.data.max_train,
    };
    let examples = mpt_train::select::cap(examples, cap, config.data.sample_seed.wrapping_add(2));
    let data = TaskData::encode(task, examples, tokenizer, backbone.arch(), config.lengths)?;
    let heads = Heads::new(backbone, tokenizer, &[&data], config.head, device)?;
    let (_, scores) = evaluate(
        backbone,
        &heads,
        0,
        &data,
        Some(&prompt),
        head.as_ref(),
        config.batch_size,
        config.decoding,
        tokenizer,
    )?;
    let baselines = if config.baselines && task.kind == mpt_data::TaskKind::Generation {
        let constant = majority_reference(root, task, config.data.split_seed)?;
        let inputs = mpt_data::metrics::generation_inputs(&data.examples).len();
        let scores = mpt_data::metrics::evaluate_generation(task, &data.examples, &vec![constant.clone(); inputs])?;
        let (_, bare) =
            evaluate(backbone, &heads, 0, &data, None, None, config.batch_size, config.decoding, tokenizer)?;
        Some(Baselines {
            majority_label: constant,
            majority: scores.primary(),
            majority_metrics: scores.0,
            no_prompt: bare.primary(),
            no_prompt_metrics: bare.0,
        })
    } else if config.baselines {
        let label = majority_label(root, task, config.data.split_seed)?;
        let constant = mpt_data::metrics::evaluate(task, &data.examples, &vec![label; data.len()])?;
        let (_, bare) =
            evaluate(backbone, &heads, 0, &data, None, None, config.batch_size, config.decoding, tokenizer)?;
        Some(Baselines {
            majority_label: task.labels.get(label).map_or_else(String::new, |l| l.to_string()),
            majority: constant.primary(),
            majority_metrics: constant.0,
            no_prompt: bare.primary(),
            no_prompt_metrics: bare.0,
        })
    } else {
        None
    };
    Ok(EvalResult {
        task: task.name.into(),
        split: config.split.to_string(),
        artifact_id: artifact.meta.id.clone(),
        artifact: artifact_dir.display().to_string(),
        kind: artifact.meta.kind.to_string(),
        in_domain: artifact.meta.tasks.iter().any(|t| t == task.name),
        examples: data.len(),
        score: scores.primary(),
        metrics: scores.0,
        tunable_params: artifact.meta.tunable_params,
        baselines,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// `text` cut to 40 characters (a generation task's constant reference in a table cell).
fn short(text: &str) -> String {
    if text.chars().count() <= 40 {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(39).collect::<String>())
    }
}

/// A markdown table of results, one row each, with the majority-class and no-prompt scores of
/// the same rows beside the score.
pub fn to_markdown(results: &[EvalResult]) -> String {
    let mut out = String::from(
        "| task | split | artifact | kind | examples | metrics | score | majority class | no prompt |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    let pct = |v: Option<f64>| v.map_or_else(|| "–".to_string(), |v| format!("{:.2}", v * 100.0));
    for r in results {
        let metrics: Vec<String> = r.metrics.iter().map(|(k, v)| format!("{k} {:.2}", v * 100.0)).collect();
        let b = r.baselines.as_ref();
        out.push_str(&format!(
            "| {} | {} | `{}` | {} | {} | {} | {:.2} | {} | {} |\n",
            r.task,
            r.split,
            &r.artifact_id[..12.min(r.artifact_id.len())],
            r.kind,
            r.examples,
            metrics.join(", "),
            r.score * 100.0,
            b.map_or_else(|| "–".to_string(), |b| format!("{} ({})", pct(Some(b.majority)), short(&b.majority_label))),
            pct(b.map(|b| b.no_prompt)),
        ));
    }
    out
}

/// Writes `results` as `<stem>.json` and `<stem>.md` (atomically).
pub fn write_results(results: &[EvalResult], json_path: &Path, md_path: &Path) -> Result<()> {
    let json = serde_json::to_vec_pretty(results).expect("results serialise");
    mpt_models::io::write_atomic(json_path, &json)?;
    mpt_models::io::write_atomic(md_path, to_markdown(results).as_bytes())?;
    Ok(())
}
