//! Stage 1 of Multitask Prompt Tuning: for one source task, a soft prompt `[l, d]` is
//! prepended to the frozen backbone's input embeddings and trained on the task loss. The
//! result is a "teacher" artifact; nothing else leaves this crate.

use std::path::Path;

use burn::prelude::*;
use mpt_core::init::{PromptInit, fresh_prompt_encoded};
use mpt_core::{Artifact, ArtifactKind, BackboneRef, NewArtifact, SoftPrompt, TaskPrompts};
use mpt_data::DataRoot;
use mpt_models::Model;
use mpt_train::{
    HeadConfig, Heads, Progress, RowSource, Selection, TaskObjective, TrainConfig, final_metrics, load_task, train,
};
use serde::{Deserialize, Serialize};

/// Errors of the teacher stage.
#[derive(Debug, thiserror::Error)]
pub enum TeacherError {
    /// A config value is unusable.
    #[error("teacher config `{field}`: {message}")]
    Config {
        /// Field.
        field: String,
        /// What was expected.
        message: String,
    },
    /// Training or evaluation failed.
    #[error(transparent)]
    Train(#[from] mpt_train::TrainError),
    /// Artifact or prompt error.
    #[error(transparent)]
    Core(#[from] mpt_core::CoreError),
    /// Data error.
    #[error(transparent)]
    Data(#[from] mpt_data::DataError),
    /// Backbone error.
    #[error(transparent)]
    Model(#[from] mpt_models::ModelError),
    /// The trace folder could not be written.
    #[error("trace folder {path}")]
    Trace {
        /// Folder.
        path: std::path::PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// Result alias.
pub type Result<T> = std::result::Result<T, TeacherError>;

/// Writes `dir/trace.json`: `{"config", "labels", "train": [{"input_ids", "token_type_ids",
/// "label"}], "dev": [...], "steps": [[example index, ...] per step]}` and
/// `dir/init.safetensors` (the prompt and any head before the first step).
pub fn write_trace(
    dir: &Path,
    config: &TeacherConfig,
    splits: &mpt_train::TaskSplits,
    prompt: &SoftPrompt,
) -> Result<()> {
    let io = |source: std::io::Error| TeacherError::Trace { path: dir.to_path_buf(), source };
    std::fs::create_dir_all(dir).map_err(io)?;
    let rows = |data: &mpt_train::TaskData| -> Vec<serde_json::Value> {
        (0..data.len())
            .map(|i| {
                serde_json::json!({
                    "input_ids": data.input_ids[i],
                    "token_type_ids": data.token_type_ids[i],
                    "label": data.examples[i].label,
                })
            })
            .collect()
    };
    let mut source = RowSource::single(&splits.train, &config.train);
    let steps: Vec<Vec<usize>> = (0..config.train.max_steps)
        .map(|_| source.next(config.train.batch_size).into_iter().map(|(_, i)| i).collect())
        .collect();
    let trace = serde_json::json!({
        "config": config,
        "labels": splits.train.task.labels,
        "train": rows(&splits.train),
        "dev": rows(&splits.dev),
        "steps": steps,
    });
    mpt_models::io::write_atomic(&dir.join("trace.json"), trace.to_string().as_bytes())?;
    let bytes = mpt_models::io::to_safetensors_bytes(&prompt.host_tensors(), None)?;
    mpt_models::io::write_atomic(&dir.join("init.safetensors"), &bytes)?;
    Ok(())
}

/// Everything that determines a teacher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeacherConfig {
    /// Source task (registry name).
    pub task: String,
    /// Prompt length l.
    pub prompt_length: usize,
    /// Prompt initialisation.
    pub init: PromptInit,
    /// Training.
    pub train: TrainConfig,
    /// Head.
    #[serde(default)]
    pub head: HeadConfig,
    /// Example selection.
    #[serde(default)]
    pub data: Selection,
}

impl TeacherConfig {
    /// Checks values before any work.
    pub fn validate(&self) -> Result<()> {
        mpt_data::lookup(&self.task)?;
        if self.prompt_length == 0 {
            return Err(TeacherError::Config { field: "prompt_length".into(), message: "must be at least 1".into() });
        }
        self.train.validate("train.")?;
        self.data.validate("data.")?;
        Ok(())
    }
}

/// Trains a teacher prompt for `config.task` on `model` and writes it to `out`.
pub fn run(
    model: &Model,
    root: &DataRoot,
    config: &TeacherConfig,
    out: &Path,
    device: &Device,
    progress: &dyn Progress,
) -> Result<Artifact> {
    run_traced(model, root, config, out, None, device, progress)
}

/// As [`run`], first writing to `trace` (when given) everything an outside implementation
/// needs to repeat the run step for step: the initial tensors, the token ids of every train
/// and dev example, each step's rows and the settings (see [`write_trace`]).
pub fn run_traced(
    model: &Model,
    root: &DataRoot,
    config: &TeacherConfig,
    out: &Path,
    trace: Option<&Path>,
    device: &Device,
    progress: &dyn Progress,
) -> Result<Artifact> {
    config.validate()?;
    let task = mpt_data::lookup(&config.task)?;
    let tokenizer = model.require_tokenizer()?;
    let backbone = &*model.backbone;
    let splits = load_task(root, task, &config.data, tokenizer, backbone.arch(), config.train.lengths)?;
    let heads = Heads::new(backbone, tokenizer, &[&splits.train], config.head, device)?;
    let autodiff = device.clone().autodiff();
    let values = fresh_prompt_encoded(
        &config.init,
        config.prompt_length,
        tokenizer,
        &backbone.word_embedding_matrix(),
        config.train.seed,
        &autodiff,
    )?;
    let mut prompt = SoftPrompt::new(values.require_grad());
    if config.head.trains_linear(backbone) {
        prompt = prompt.with_classifiers(heads.initial_classifiers(&autodiff));
    }
    if let Some(dir) = trace {
        write_trace(dir, config, &splits, &prompt)?;
    }
    let mut objective = TaskObjective {
        backbone,
        tokenizer,
        heads: &heads,
        train: vec![&splits.train],
        dev: vec![&splits.dev],
        rows: RowSource::single(&splits.train, &config.train),
        batch_size: config.train.batch_size,
        eval_batch_size: config.train.eval_batch_size,
        decoding: config.train.decoding,
        distill: None,
        device: device.clone(),
    };
    let stage = format!("teacher {}", task.name);
    let outcome = train(prompt, &mut objective, &config.train, &stage, progress)?;
    let metrics = final_metrics(&outcome);
    let artifact = Artifact::write(
        out,
        NewArtifact {
            kind: ArtifactKind::Teacher,
            tasks: vec![task.name.to_string()],
            backbone: BackboneRef::new(backbone.arch(), &model.fingerprint),
            parents: Vec::new(),
            config: serde_json::to_value(config).expect("config serialises"),
            metrics,
            tensors: outcome.best.host_tensors(),
        },
    )?;
    tracing::info!(task = task.name, id = %artifact.meta.id, dir = %out.display(), "teacher written");
    Ok(artifact)
}
