//! Stage 1 of Multitask Prompt Tuning: for one source task, a soft prompt `[l, d]` is
//! prepended to the frozen backbone's input embeddings and trained on the task loss. The
//! result is a "teacher" artifact; nothing else leaves this crate. A run can also continue
//! from an earlier teacher of the same task (its prompt and head as the starting point, a fresh
//! schedule), so a source prompt can be trained for longer across several runs.

use std::path::Path;

use burn::prelude::*;
use mpt_core::init::{PromptInit, fresh_prompt_encoded};
use mpt_core::{Artifact, ArtifactKind, BackboneRef, InUse, Layout, NewArtifact, SoftPrompt, TaskPrompts};
use mpt_data::DataRoot;
use mpt_models::Model;
use mpt_train::{
    HeadConfig, HeadKind, Heads, Progress, RowSource, Selection, TaskObjective, TrainConfig, final_metrics, load_task,
    train,
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
    /// The teacher to continue from does not fit this run.
    #[error("teacher to continue from, {path}: {message}")]
    Continue {
        /// Its folder.
        path: std::path::PathBuf,
        /// What does not fit.
        message: String,
    },
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
    run_traced(model, root, config, out, None, None, device, progress)
}

/// Loads the teacher at `dir` to continue from and checks that it fits `config` on `model`:
/// a teacher (plain prompt) of the same task and backbone, the same prompt length, and a
/// trained head exactly when `config`'s head trains one.
pub fn load_start(model: &Model, config: &TeacherConfig, dir: &Path) -> Result<Artifact> {
    let backbone = &*model.backbone;
    let backbone_ref = BackboneRef::new(backbone.arch(), &model.fingerprint);
    let in_use = InUse { backbone: &backbone_ref, dim: backbone.dim() };
    let artifact = Artifact::load(dir, Some(ArtifactKind::Teacher), Some(in_use))?;
    let misfit = |message: String| TeacherError::Continue { path: dir.to_path_buf(), message };
    let meta = &artifact.meta;
    if meta.layout != Layout::Prompt || meta.tasks.len() != 1 {
        return Err(misfit(format!("is not a single-task prompt (layout {:?}, tasks {:?})", meta.layout, meta.tasks)));
    }
    if meta.tasks[0] != config.task {
        return Err(misfit(format!("was trained on task {:?}, this run is for {:?}", meta.tasks[0], config.task)));
    }
    if meta.prompt_length != config.prompt_length {
        return Err(misfit(format!(
            "has prompt length {}, this run's `prompt_length` is {}",
            meta.prompt_length, config.prompt_length
        )));
    }
    let linear = config.head.trains_linear(backbone);
    if linear != artifact.has_classifiers() {
        return Err(misfit(format!(
            "{} a trained linear head, this run's head {}",
            if artifact.has_classifiers() { "has" } else { "has no" },
            if linear { "trains one" } else { "is the verbalizer" }
        )));
    }
    let d = backbone.dim();
    let expected = config.head.kind.weight_width(d);
    if let Some(width) = artifact.head_width().filter(|&w| linear && w != expected) {
        return Err(misfit(format!(
            "has a {} head (classifier.0.weight of width {width}), this run's head is {} (width {expected})",
            HeadKind::name_of_width(width, d),
            HeadKind::name_of_width(expected, d)
        )));
    }
    Ok(artifact)
}

/// As [`run`], first writing to `trace` (when given) everything an outside implementation
/// needs to repeat the run step for step: the initial tensors, the token ids of every train
/// and dev example, each step's rows and the settings (see [`write_trace`]); and, when
/// `continue_from` names a teacher artifact, starting from its prompt and head (checked by
/// [`load_start`]; it becomes the new artifact's parent) instead of `config.init`.
#[allow(clippy::too_many_arguments)]
pub fn run_traced(
    model: &Model,
    root: &DataRoot,
    config: &TeacherConfig,
    out: &Path,
    trace: Option<&Path>,
    continue_from: Option<&Path>,
    device: &Device,
    progress: &dyn Progress,
) -> Result<Artifact> {
    config.validate()?;
    let task = mpt_data::lookup(&config.task)?;
    let start = continue_from.map(|dir| load_start(model, config, dir)).transpose()?;
    let tokenizer = model.require_tokenizer()?;
    let backbone = &*model.backbone;
    let splits = load_task(root, task, &config.data, tokenizer, backbone.arch(), config.train.lengths)?;
    let heads = Heads::new(backbone, tokenizer, &[&splits.train], config.head, device)?;
    let autodiff = device.clone().autodiff();
    let prompt = match &start {
        Some(artifact) => {
            let classifiers = artifact
                .classifiers(device)?
                .iter()
                .map(|c| mpt_train::head::trainable(c.values(), &autodiff))
                .collect();
            SoftPrompt::new(artifact.tensor::<2>("prompt_embeddings", &autodiff)?.require_grad())
                .with_classifiers(classifiers)
        }
        None => {
            let values = fresh_prompt_encoded(
                &config.init,
                config.prompt_length,
                tokenizer,
                &backbone.word_embedding_matrix(),
                config.train.seed,
                &autodiff,
            )?;
            let prompt = SoftPrompt::new(values.require_grad());
            if config.head.trains_linear(backbone) {
                prompt.with_classifiers(heads.initial_classifiers(&autodiff))
            } else {
                prompt
            }
        }
    };
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
            parents: start.iter().map(|a| a.meta.id.clone()).collect(),
            config: serde_json::to_value(config).expect("config serialises"),
            metrics,
            tensors: outcome.best.host_tensors(),
            frozen_prompt: false,
        },
    )?;
    tracing::info!(task = task.name, id = %artifact.meta.id, dir = %out.display(), "teacher written");
    Ok(artifact)
}
