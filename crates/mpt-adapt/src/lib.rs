//! Stage 3 of Multitask Prompt Tuning: target adaptation.
//!
//! Methods:
//! - `mpt`: start from a multitask artifact's `P* ∘ (u vᵀ)` with u, v averaged over the source
//!   tasks, copied from one source task, or fresh (PEFT's three modes), and train P*, u, v on
//!   the target: l·d + r·(l + d) tunable numbers per target. With several targets this is the
//!   paper's "MPT multitask": one shared prompt, per-target u, v, (l·d) + r·(l+d)·τ numbers,
//!   batches mixing the targets with the K-task sampler. A multitask artifact made without
//!   decomposition (the ablation) gives a plain prompt initialised from its shared prompt.
//! - `vanilla`: prompt tuning from scratch (random, vocabulary or text init).
//! - `spot`: SPoT-style transfer, a plain prompt initialised from one teacher's prompt.
//!
//! With `freeze_prompt` the start prompt is held fixed and only the head trains: the head-only
//! probe a prompt-tuning result should beat (for `vanilla`, a linear probe of the frozen
//! backbone seen through an untrained prompt).
//!
//! The result is a "target" artifact whose parent is the artifact it started from.

use std::path::Path;

use burn::prelude::*;
use mpt_core::init::{FactorInit, PromptInit, TargetInit, fresh_prompt_encoded, target_from_multitask};
use mpt_core::{Artifact, ArtifactKind, BackboneRef, InUse, Layout, NewArtifact, SoftPrompt, TaskPrompts};
use mpt_data::{DataRoot, MultitaskSampler};
use mpt_models::Model;
use mpt_train::{
    HeadConfig, HeadKind, Heads, Progress, RowSource, Selection, TaskObjective, TaskSplits, TrainConfig, final_metrics,
    load_task, train,
};
use serde::{Deserialize, Serialize};

/// Errors of the adaptation stage.
#[derive(Debug, thiserror::Error)]
pub enum AdaptError {
    /// A config value is unusable.
    #[error("adapt config `{field}`: {message}")]
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
}

/// Result alias.
pub type Result<T> = std::result::Result<T, AdaptError>;

/// How the target prompt starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Method {
    /// From a multitask artifact.
    Mpt {
        /// Which factors.
        init: TargetInit,
        /// How fresh factors start (for `init = shared`).
        #[serde(default)]
        fresh: FactorInit,
    },
    /// From scratch.
    Vanilla {
        /// How.
        init: PromptInit,
    },
    /// From one teacher's prompt.
    Spot,
}

impl Method {
    /// Which artifact kind the method starts from, if any.
    pub fn source_kind(&self) -> Option<ArtifactKind> {
        match self {
            Method::Mpt { .. } => Some(ArtifactKind::Multitask),
            Method::Vanilla { .. } => None,
            Method::Spot => Some(ArtifactKind::Teacher),
        }
    }
}

/// Everything that determines a target prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdaptConfig {
    /// Target tasks (one, or several for multi-target adaptation).
    pub targets: Vec<String>,
    /// How the prompt starts.
    pub method: Method,
    /// Prompt length l (vanilla only; otherwise it comes from the source artifact).
    #[serde(default)]
    pub prompt_length: Option<usize>,
    /// Most targets per batch κ for multi-target adaptation (default: all).
    #[serde(default)]
    pub kappa: Option<usize>,
    /// Training.
    pub train: TrainConfig,
    /// Head.
    #[serde(default)]
    pub head: HeadConfig,
    /// Example selection (applied to every target).
    #[serde(default)]
    pub data: Selection,
    /// Hold the start prompt fixed and train the head alone (needs a trained head: linear or
    /// pair on an encoder).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub freeze_prompt: bool,
}

impl AdaptConfig {
    /// Checks values before any work.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, message: String| AdaptError::Config { field: field.into(), message };
        if self.targets.is_empty() {
            return Err(bad("targets", "needs at least one target task".into()));
        }
        for (i, t) in self.targets.iter().enumerate() {
            mpt_data::lookup(t)?;
            if self.targets[..i].contains(t) {
                return Err(bad("targets", format!("{t:?} is listed twice")));
            }
        }
        match (&self.method, self.prompt_length) {
            (Method::Vanilla { .. }, None | Some(0)) => {
                return Err(bad("prompt_length", "vanilla prompt tuning needs a prompt length ≥ 1".into()));
            }
            (Method::Mpt { .. } | Method::Spot, Some(_)) => {
                return Err(bad("prompt_length", "comes from the source artifact; leave it out".into()));
            }
            _ => {}
        }
        if self.freeze_prompt && self.head.kind == HeadKind::Verbalizer {
            return Err(bad(
                "freeze_prompt",
                "the verbalizer head trains nothing, so a frozen prompt leaves nothing to train; use the linear or \
                 pair head"
                    .into(),
            ));
        }
        if let Some(k) = self.kappa
            && (k < 2 || k > self.targets.len())
        {
            return Err(bad("kappa", format!("must be in [2, {}] (number of targets), got {k}", self.targets.len())));
        }
        self.train.validate("train.")?;
        self.data.validate("data.")?;
        Ok(())
    }
}

/// Adapts to `config.targets`, starting from `source` (a multitask artifact for `mpt`, a
/// teacher for `spot`, none for `vanilla`), and writes a target artifact to `out`.
pub fn run(
    model: &Model,
    root: &DataRoot,
    config: &AdaptConfig,
    source: Option<&Path>,
    out: &Path,
    device: &Device,
    progress: &dyn Progress,
) -> Result<Artifact> {
    config.validate()?;
    let backbone = &*model.backbone;
    let backbone_ref = BackboneRef::new(backbone.arch(), &model.fingerprint);
    let source = match (config.method.source_kind(), source) {
        (None, None) => None,
        (None, Some(_)) => {
            return Err(AdaptError::Config {
                field: "method".into(),
                message: "vanilla prompt tuning starts from scratch; no source artifact is used".into(),
            });
        }
        (Some(kind), None) => {
            return Err(AdaptError::Config {
                field: "method".into(),
                message: format!("this method starts from a {kind} artifact; give its folder"),
            });
        }
        (Some(kind), Some(path)) => {
            let in_use = InUse { backbone: &backbone_ref, dim: backbone.dim() };
            let a = Artifact::load(path, Some(kind), Some(in_use))?;
            Some(a)
        }
    };
    if config.freeze_prompt && !config.head.trains_linear(backbone) {
        return Err(AdaptError::Config {
            field: "freeze_prompt".into(),
            message: format!(
                "{} scores label strings and trains no head, so a frozen prompt leaves nothing to train",
                backbone.arch()
            ),
        });
    }
    let tokenizer = model.require_tokenizer()?;
    let mut splits: Vec<TaskSplits> = Vec::with_capacity(config.targets.len());
    for name in &config.targets {
        let task = mpt_data::lookup(name)?;
        splits.push(load_task(root, task, &config.data, tokenizer, backbone.arch(), config.train.lengths)?);
    }
    let train_data: Vec<_> = splits.iter().map(|s| &s.train).collect();
    let heads = Heads::new(backbone, tokenizer, &train_data, config.head, device)?;
    let tau = config.targets.len();
    let rows = if tau == 1 {
        RowSource::single(&splits[0].train, &config.train)
    } else {
        let sizes: Vec<usize> = train_data.iter().map(|d| d.len()).collect();
        let kappa = config.kappa.unwrap_or(tau);
        RowSource::Multi(MultitaskSampler::new(&sizes, kappa, config.train.batch_size, config.train.seed)?)
    };
    let mut objective = TaskObjective {
        backbone,
        tokenizer,
        heads: &heads,
        train: train_data.clone(),
        dev: splits.iter().map(|s| &s.dev).collect(),
        rows,
        batch_size: config.train.batch_size,
        eval_batch_size: config.train.eval_batch_size,
        decoding: config.train.decoding,
        distill: None,
        device: device.clone(),
    };
    let stage = format!("adapt {}", config.targets.join("+"));
    let autodiff = device.clone().autodiff();
    let seed = config.train.seed;
    let fresh_heads =
        || if config.head.trains_linear(backbone) { heads.initial_classifiers(&autodiff) } else { Vec::new() };
    let plain = |values: Tensor<2>| {
        let module = SoftPrompt::new(values).with_classifiers(fresh_heads());
        if config.freeze_prompt { module.with_frozen_prompt() } else { module }
    };
    let (tensors, metrics) = match (&config.method, &source) {
        (Method::Mpt { init, fresh }, Some(artifact)) if artifact.meta.layout == Layout::Multitask => {
            let module =
                target_from_multitask(artifact, init, *fresh, tau, seed, &autodiff)?.with_classifiers(fresh_heads());
            let module = if config.freeze_prompt { module.with_frozen_prompt() } else { module };
            let outcome = train(module, &mut objective, &config.train, &stage, progress)?;
            let m = final_metrics(&outcome);
            (outcome.best.host_tensors(), m)
        }
        (Method::Mpt { .. } | Method::Spot, Some(artifact)) => {
            let module = plain(artifact.tensor::<2>("prompt_embeddings", &autodiff)?);
            let outcome = train(module, &mut objective, &config.train, &stage, progress)?;
            let m = final_metrics(&outcome);
            (outcome.best.host_tensors(), m)
        }
        (Method::Vanilla { init }, None) => {
            let l = config.prompt_length.expect("validated");
            let values = fresh_prompt_encoded(init, l, tokenizer, &backbone.word_embedding_matrix(), seed, &autodiff)?;
            let module = plain(values);
            let outcome = train(module, &mut objective, &config.train, &stage, progress)?;
            let m = final_metrics(&outcome);
            (outcome.best.host_tensors(), m)
        }
        _ => unreachable!("source presence was checked against the method"),
    };
    let artifact = Artifact::write(
        out,
        NewArtifact {
            kind: ArtifactKind::Target,
            tasks: splits.iter().map(|s| s.train.task.name.to_string()).collect(),
            backbone: backbone_ref,
            parents: source.iter().map(|s| s.meta.id.clone()).collect(),
            config: serde_json::to_value(config).expect("config serialises"),
            metrics,
            tensors,
            frozen_prompt: config.freeze_prompt,
        },
    )?;
    tracing::info!(id = %artifact.meta.id, dir = %out.display(), "target prompt written");
    Ok(artifact)
}
