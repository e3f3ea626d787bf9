//! Stage 2 of Multitask Prompt Tuning: prompt decomposition and distillation.
//!
//! One shared prompt `P*` `[l, d]` and rank-r factors per source task (`u_k` `[l, r]`,
//! `v_k` `[r, d]`; the paper uses r = 1) give the student prompt `P* ∘ (u_k v_kᵀ)`. Each step
//! draws K uniformly from [2, κ], then K distinct source tasks, then examples from them; the
//! loss is the task loss plus `λ · (KL(teacher ‖ student) at temperature T + MSE of hidden
//! states)`, with every row's teacher prompt (from the teacher artifacts) run in the same step
//! without autodiff. The result is one "multitask" artifact whose parents are the teachers.
//!
//! The paper's ablations are settings of the same stage: `lambda = 0` (multitask training
//! without distillation; no teachers needed) and `decomposition = false` (one shared prompt
//! for all tasks, no u, v).

use std::path::{Path, PathBuf};

use burn::prelude::*;
use mpt_core::init::{FactorInit, PromptInit, fresh_factors, fresh_prompt_encoded};
use mpt_core::{Artifact, ArtifactKind, BackboneRef, InUse, MultitaskPrompt, NewArtifact, SoftPrompt, TaskPrompts};
use mpt_data::{DataRoot, MultitaskSampler};
use mpt_models::Model;
use mpt_train::{
    Distill, HeadConfig, HeadKind, Heads, Progress, RowSource, Selection, TaskObjective, TaskSplits, TrainConfig,
    final_metrics, load_task, train,
};
use serde::{Deserialize, Serialize};

/// Errors of the distillation stage.
#[derive(Debug, thiserror::Error)]
pub enum DistillError {
    /// A config value is unusable.
    #[error("distill config `{field}`: {message}")]
    Config {
        /// Field.
        field: String,
        /// What was expected.
        message: String,
    },
    /// The teacher artifacts do not fit the config.
    #[error("teacher {path}: {message}")]
    Teacher {
        /// Teacher artifact folder.
        path: PathBuf,
        /// What is wrong.
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
}

/// Result alias.
pub type Result<T> = std::result::Result<T, DistillError>;

/// How the shared prompt `P*` starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum SharedInit {
    /// The mean of the teacher prompts.
    #[default]
    TeacherMean,
    /// A fresh prompt.
    Fresh {
        /// How.
        init: PromptInit,
    },
}

impl SharedInit {
    /// Where `P*` starts, without the fresh prompt's init.
    pub fn start(&self) -> SharedStart {
        match self {
            SharedInit::TeacherMean => SharedStart::TeacherMean,
            SharedInit::Fresh { .. } => SharedStart::Fresh,
        }
    }
}

/// Where `P*` starts, named without the init of a fresh `P*`: what a pipeline's
/// `distill.shared_init` says (`teacher_mean` or `fresh`), the init coming from elsewhere
/// (the pipeline's `[prompt] init`). [`SharedStart::with_init`] makes the [`SharedInit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SharedStart {
    /// [`SharedInit::TeacherMean`].
    #[default]
    TeacherMean,
    /// [`SharedInit::Fresh`].
    Fresh,
}

impl SharedStart {
    /// The [`SharedInit`], with `init` for a fresh `P*`.
    pub fn with_init(self, init: &PromptInit) -> SharedInit {
        match self {
            SharedStart::TeacherMean => SharedInit::TeacherMean,
            SharedStart::Fresh => SharedInit::Fresh { init: init.clone() },
        }
    }
}

/// Default rank r of the task factors (the paper's).
pub const DEFAULT_RANK: usize = 1;
/// Default weight λ of the distillation terms.
pub const DEFAULT_LAMBDA: f64 = 0.9;
/// Default softmax temperature T of the KL term.
pub const DEFAULT_TEMPERATURE: f64 = 1.0;
/// Whether the hidden-state MSE is on by default.
pub const DEFAULT_HIDDEN_LOSS: bool = true;

/// Everything that determines a multitask prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistillConfig {
    /// Source tasks, in the order of the task factors.
    pub tasks: Vec<String>,
    /// Prompt length l (must equal the teachers'; required without teachers).
    #[serde(default)]
    pub prompt_length: Option<usize>,
    /// Rank r of the task factors.
    #[serde(default = "default_rank")]
    pub rank: usize,
    /// Weight λ of the distillation terms (0 = no distillation).
    #[serde(default = "default_lambda")]
    pub lambda: f64,
    /// Softmax temperature T of the KL term.
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    /// Whether the hidden-state MSE is part of the distillation term.
    #[serde(default = "default_hidden_loss")]
    pub hidden_loss: bool,
    /// Most tasks per batch κ (K is drawn from [2, κ]).
    pub kappa: usize,
    /// Decompose into P* ∘ (u vᵀ) (false: one shared prompt, the ablation).
    #[serde(default = "default_true")]
    pub decomposition: bool,
    /// How P* starts.
    #[serde(default)]
    pub shared_init: SharedInit,
    /// How u, v start.
    #[serde(default)]
    pub factor_init: FactorInit,
    /// Training.
    pub train: TrainConfig,
    /// Head.
    #[serde(default)]
    pub head: HeadConfig,
    /// Example selection (applied to every source task).
    #[serde(default)]
    pub data: Selection,
}

fn default_rank() -> usize {
    DEFAULT_RANK
}
fn default_lambda() -> f64 {
    DEFAULT_LAMBDA
}
fn default_temperature() -> f64 {
    DEFAULT_TEMPERATURE
}
fn default_hidden_loss() -> bool {
    DEFAULT_HIDDEN_LOSS
}
fn default_true() -> bool {
    true
}

impl DistillConfig {
    /// Checks values before any work.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, message: String| DistillError::Config { field: field.into(), message };
        if self.tasks.len() < 2 {
            return Err(bad("tasks", format!("needs at least 2 source tasks, got {}", self.tasks.len())));
        }
        for (i, t) in self.tasks.iter().enumerate() {
            mpt_data::lookup(t)?;
            if self.tasks[..i].contains(t) {
                return Err(bad("tasks", format!("{t:?} is listed twice")));
            }
        }
        if self.kappa < 2 || self.kappa > self.tasks.len() {
            return Err(bad(
                "kappa",
                format!("must be in [2, {}] (number of tasks), got {}", self.tasks.len(), self.kappa),
            ));
        }
        if self.rank == 0 {
            return Err(bad("rank", "must be at least 1".into()));
        }
        if !(self.lambda.is_finite() && self.lambda >= 0.0) {
            return Err(bad("lambda", "must be zero or positive".into()));
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(bad("temperature", "must be positive".into()));
        }
        if self.prompt_length == Some(0) {
            return Err(bad("prompt_length", "must be at least 1".into()));
        }
        if self.train.batch_size < self.kappa {
            return Err(bad("train.batch_size", format!("must be at least kappa ({})", self.kappa)));
        }
        self.train.validate("train.")?;
        self.data.validate("data.")?;
        Ok(())
    }

    /// Whether the teachers are needed (distillation on, or P* starts from their mean).
    pub fn needs_teachers(&self) -> bool {
        self.lambda > 0.0 || self.shared_init == SharedInit::TeacherMean
    }
}

/// Loads teacher artifacts and orders them like `config.tasks`.
fn load_teachers(
    paths: &[PathBuf],
    config: &DistillConfig,
    backbone: &BackboneRef,
    dim: usize,
) -> Result<Vec<Artifact>> {
    let mut by_task = Vec::with_capacity(config.tasks.len());
    let mut loaded = Vec::new();
    for path in paths {
        let a = Artifact::load(path, Some(ArtifactKind::Teacher), Some(InUse { backbone, dim }))?;
        if a.meta.tasks.len() != 1 || a.meta.layout != mpt_core::Layout::Prompt {
            return Err(DistillError::Teacher {
                path: path.clone(),
                message: "a teacher holds one plain prompt for one task".into(),
            });
        }
        loaded.push(a);
    }
    for task in &config.tasks {
        let canonical = mpt_data::lookup(task)?.name;
        let i = loaded.iter().position(|a| a.meta.tasks[0] == canonical).ok_or_else(|| DistillError::Config {
            field: "tasks".into(),
            message: format!("no teacher artifact for task {canonical:?} among {} given", paths.len()),
        })?;
        by_task.push(loaded.remove(i));
    }
    if let Some(extra) = loaded.first() {
        return Err(DistillError::Teacher {
            path: extra.dir.clone(),
            message: format!("task {:?} is not in the distillation tasks", extra.meta.tasks[0]),
        });
    }
    let l = by_task[0].meta.prompt_length;
    if let Some(t) = by_task.iter().find(|a| a.meta.prompt_length != l) {
        return Err(DistillError::Teacher {
            path: t.dir.clone(),
            message: format!("prompt length {} differs from the first teacher's {l}", t.meta.prompt_length),
        });
    }
    if let Some(want) = config.prompt_length
        && want != l
    {
        return Err(DistillError::Config {
            field: "prompt_length".into(),
            message: format!("is {want}, but the teachers have l = {l}"),
        });
    }
    Ok(by_task)
}

/// Distils `teachers` (artifact folders, any order) into a multitask artifact at `out`.
pub fn run(
    model: &Model,
    root: &DataRoot,
    config: &DistillConfig,
    teachers: &[PathBuf],
    out: &Path,
    device: &Device,
    progress: &dyn Progress,
) -> Result<Artifact> {
    config.validate()?;
    let backbone = &*model.backbone;
    let backbone_ref = BackboneRef::new(backbone.arch(), &model.fingerprint);
    let teachers = if teachers.is_empty() && !config.needs_teachers() {
        Vec::new()
    } else {
        if teachers.is_empty() {
            return Err(DistillError::Config {
                field: "lambda".into(),
                message: "distillation (lambda > 0) or shared_init = teacher_mean needs teacher artifacts".into(),
            });
        }
        load_teachers(teachers, config, &backbone_ref, backbone.dim())?
    };
    let l = teachers.first().map(|t| t.meta.prompt_length).or(config.prompt_length).ok_or_else(|| {
        DistillError::Config { field: "prompt_length".into(), message: "required when no teachers are given".into() }
    })?;
    let d = backbone.dim();
    let tokenizer = model.require_tokenizer()?;
    let mut splits: Vec<TaskSplits> = Vec::with_capacity(config.tasks.len());
    for name in &config.tasks {
        let task = mpt_data::lookup(name)?;
        splits.push(load_task(root, task, &config.data, tokenizer, backbone.arch(), config.train.lengths)?);
    }
    let train_data: Vec<_> = splits.iter().map(|s| &s.train).collect();
    let heads = Heads::new(backbone, tokenizer, &train_data, config.head, device)?;
    let teacher_prompts: Vec<Tensor<2>> =
        teachers.iter().map(|t| t.tensor::<2>("prompt_embeddings", device)).collect::<std::result::Result<_, _>>()?;

    let autodiff = device.clone().autodiff();
    let shared = match &config.shared_init {
        SharedInit::TeacherMean if !teacher_prompts.is_empty() => {
            let stacked = Tensor::stack::<3>(teacher_prompts.clone(), 0);
            Tensor::<2>::from_data(stacked.mean_dim(0).reshape([l, d]).into_data(), &autodiff)
        }
        SharedInit::TeacherMean => unreachable!("needs_teachers() guarantees teachers for teacher_mean"),
        SharedInit::Fresh { init } => {
            fresh_prompt_encoded(init, l, tokenizer, &backbone.word_embedding_matrix(), config.train.seed, &autodiff)?
        }
    };
    let sizes: Vec<usize> = splits.iter().map(|s| s.train.len()).collect();
    let sampler = MultitaskSampler::new(&sizes, config.kappa, config.train.batch_size, config.train.seed)?;
    // Each teacher's own head scores its distribution (the verbalizer's values where a teacher
    // has none, so teacher and student encode a batch the same way, jointly or segment by
    // segment); the student starts from the teachers' heads when it trains one.
    let mut teacher_heads = Vec::new();
    let width = config.head.kind.weight_width(d);
    let trains_head = config.head.trains_linear(backbone);
    if trains_head {
        let frozen = heads.initial_heads();
        for (t, verbalizer) in teachers.iter().zip(frozen) {
            if let Some(found) = t.head_width().filter(|&w| w != width) {
                return Err(DistillError::Teacher {
                    path: t.dir.clone(),
                    message: format!(
                        "has a {} head (classifier.0.weight of width {found}), this run's `head.kind` trains a {} head (width {width})",
                        HeadKind::name_of_width(found, d),
                        HeadKind::name_of_width(width, d)
                    ),
                });
            }
            teacher_heads.push(t.classifiers(device)?.first().map_or(verbalizer, |c| c.values()));
        }
    }
    let student_heads: Vec<mpt_core::Classifier> = if !trains_head {
        Vec::new()
    } else if teacher_heads.is_empty() {
        heads.initial_classifiers(&autodiff)
    } else {
        teacher_heads.iter().map(|h| mpt_train::head::trainable(h.clone(), &autodiff)).collect()
    };
    let distill = (config.lambda > 0.0).then(|| Distill {
        teacher_prompts: Tensor::stack::<3>(teacher_prompts.clone(), 0),
        teacher_heads,
        lambda: config.lambda,
        temperature: config.temperature,
        hidden: config.hidden_loss,
    });
    let mut objective = TaskObjective {
        backbone,
        tokenizer,
        heads: &heads,
        train: train_data.clone(),
        dev: splits.iter().map(|s| &s.dev).collect(),
        rows: RowSource::Multi(sampler),
        batch_size: config.train.batch_size,
        eval_batch_size: config.train.eval_batch_size,
        decoding: config.train.decoding,
        distill,
        device: device.clone(),
    };
    let parents: Vec<String> = teachers.iter().map(|t| t.meta.id.clone()).collect();
    let tasks: Vec<String> = splits.iter().map(|s| s.train.task.name.to_string()).collect();
    let stage = "distill";
    let (tensors, metrics) = if config.decomposition {
        let (cols, rows) =
            fresh_factors(config.factor_init, tasks.len(), l, config.rank, d, config.train.seed, &autodiff);
        let module = MultitaskPrompt::new(shared.require_grad(), cols.require_grad(), rows.require_grad())?
            .with_classifiers(student_heads);
        let outcome = train(module, &mut objective, &config.train, stage, progress)?;
        let metrics = final_metrics(&outcome);
        (outcome.best.host_tensors(), metrics)
    } else {
        let module = SoftPrompt::new(shared.require_grad()).with_classifiers(student_heads);
        let outcome = train(module, &mut objective, &config.train, stage, progress)?;
        let metrics = final_metrics(&outcome);
        (outcome.best.host_tensors(), metrics)
    };
    let artifact = Artifact::write(
        out,
        NewArtifact {
            kind: ArtifactKind::Multitask,
            tasks,
            backbone: backbone_ref,
            parents,
            config: serde_json::to_value(config).expect("config serialises"),
            metrics,
            tensors,
            frozen_prompt: false,
        },
    )?;
    tracing::info!(id = %artifact.meta.id, dir = %out.display(), "multitask prompt written");
    Ok(artifact)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_start_with_an_init_is_the_shared_init_it_names() {
        let init = PromptInit::Text { text: "hello".into() };
        assert_eq!(SharedStart::TeacherMean.with_init(&init), SharedInit::TeacherMean);
        assert_eq!(SharedStart::Fresh.with_init(&init), SharedInit::Fresh { init: init.clone() });
        for start in [SharedStart::TeacherMean, SharedStart::Fresh] {
            assert_eq!(start.with_init(&init).start(), start);
        }
        assert_eq!(SharedStart::default().with_init(&init), SharedInit::default());
    }
}
