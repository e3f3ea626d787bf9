//! Options every stage subcommand shares, and how they override a stage config.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use mpt_data::DataRoot;
use mpt_models::Model;
use mpt_train::{HeadConfig, HeadKind, Lengths, Selection, TrainConfig, TrainError};
use serde::de::DeserializeOwned;

use crate::device::parse_device;

/// Backbone, data and device.
#[derive(Debug, Args, Clone)]
pub struct EnvArgs {
    /// Hugging Face model folder of the frozen backbone.
    #[arg(long)]
    pub model: PathBuf,
    /// Benchmark data root (GLUE/SuperGLUE/... folders).
    #[arg(long, default_value = mpt_data::DEFAULT_DATA_ROOT)]
    pub data_root: PathBuf,
    /// Backend: cpu, wgpu, tch-cpu, tch-cuda, cuda (as compiled in).
    #[arg(long, default_value = crate::device::DEFAULT_DEVICE)]
    pub device: String,
    /// Hide progress bars.
    #[arg(long, short)]
    pub quiet: bool,
}

impl EnvArgs {
    /// Loads the backbone on the chosen device.
    pub fn load(&self) -> Result<(Model, burn::prelude::Device, DataRoot)> {
        let device = parse_device(&self.device)?;
        let model = Model::load(&self.model, &device)
            .with_context(|| format!("loading model folder {}", self.model.display()))?;
        Ok((model, device, DataRoot::new(&self.data_root)))
    }
}

/// Training overrides applied on top of a config file (or the defaults).
#[derive(Debug, Args, Clone, Default)]
pub struct TrainArgs {
    /// Optimizer steps.
    #[arg(long)]
    pub steps: Option<usize>,
    /// Examples per step.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Peak learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Evaluate on dev every N steps.
    #[arg(long)]
    pub eval_every: Option<usize>,
    /// Seed of batches and initialisation.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Max input tokens per example.
    #[arg(long)]
    pub max_len: Option<usize>,
    /// Max target tokens (T5 and causal LMs: a label string or, for a generation task, its
    /// reference text, EOS included).
    #[arg(long)]
    pub max_target: Option<usize>,
    /// Train on k examples per class.
    #[arg(long)]
    pub few_shot_k: Option<usize>,
    /// Seed of the few-shot draw and subsets.
    #[arg(long)]
    pub sample_seed: Option<u64>,
    /// Train on at most N examples.
    #[arg(long)]
    pub max_train: Option<usize>,
    /// Evaluate on at most N dev examples.
    #[arg(long)]
    pub max_dev: Option<usize>,
    /// Evaluate on at most N test examples.
    #[arg(long)]
    pub max_test: Option<usize>,
    /// Encoder head: pair (the default; a bi-encoder: each segment of a pair encoded on its
    /// own, a trained classifier over [u, v, |u-v|, u*v], counted in the tunable numbers),
    /// linear (a trained classifier per task over the pooled joint input) or verbalizer (frozen
    /// label-word scores, the prompt alone is trained).
    #[arg(long, value_parser = |s: &str| s.parse::<HeadKind>())]
    pub head: Option<HeadKind>,
    /// Linear learning-rate warm-up steps.
    #[arg(long)]
    pub warmup: Option<usize>,
}

impl TrainArgs {
    /// Applies the head override.
    pub fn apply_head(&self, head: &mut HeadConfig) {
        if let Some(kind) = self.head {
            head.kind = kind;
        }
    }

    /// The flag that set `field` (a key of a stage config, e.g. `data.max_train`), if one did.
    pub fn flag_for(&self, field: &str) -> Option<&'static str> {
        match field {
            "data.few_shot_k" if self.few_shot_k.is_some() => Some("--few-shot-k"),
            "data.max_train" if self.max_train.is_some() => Some("--max-train"),
            "data.max_dev" if self.max_dev.is_some() => Some("--max-dev"),
            "data.max_test" if self.max_test.is_some() => Some("--max-test"),
            "train.lengths.max_input" if self.max_len.is_some() => Some("--max-len"),
            "train.lengths.max_target" if self.max_target.is_some() => Some("--max-target"),
            _ => None,
        }
    }

    /// Applies the overrides.
    pub fn apply(&self, train: &mut TrainConfig, data: &mut Selection) {
        if let Some(v) = self.steps {
            train.max_steps = v;
            train.eval_every = train.eval_every.min(v);
        }
        if let Some(v) = self.batch_size {
            train.batch_size = v;
        }
        if let Some(v) = self.lr {
            train.learning_rate = v;
        }
        if let Some(v) = self.warmup {
            train.warmup_steps = Some(v);
        }
        if let Some(v) = self.eval_every {
            train.eval_every = v;
        }
        if let Some(v) = self.seed {
            train.seed = v;
        }
        if let Some(v) = self.max_len {
            train.lengths.max_input = v;
        }
        if let Some(v) = self.max_target {
            train.lengths.max_target = v;
        }
        if self.few_shot_k.is_some() {
            data.few_shot_k = self.few_shot_k;
        }
        if let Some(v) = self.sample_seed {
            data.sample_seed = v;
        }
        if self.max_train.is_some() {
            data.max_train = self.max_train;
        }
        if self.max_dev.is_some() {
            data.max_dev = self.max_dev;
        }
        if self.max_test.is_some() {
            data.max_test = self.max_test;
        }
    }
}

/// Checks, before the backbone is loaded, the values of a command that could only fail once
/// its data is read: the example selection ([`Selection::validate`]) and the token lengths
/// ([`Lengths::validate`], the key `{lengths_prefix}lengths.*`), the checks a pipeline's dry
/// run applies, with the same words. A value set by a flag is named by its flag (`flag_for`),
/// one from `--config` by the file and its key.
pub fn check_values(
    data: &Selection,
    lengths: &Lengths,
    lengths_prefix: &str,
    flag_for: impl Fn(&str) -> Option<&'static str>,
    config: Option<&Path>,
) -> Result<()> {
    let checked = data.validate("data.").and_then(|()| lengths.validate(lengths_prefix));
    match checked {
        Ok(()) => Ok(()),
        Err(TrainError::Config { field, message }) => match (flag_for(&field), config) {
            (Some(flag), _) => bail!("{flag}: {message}"),
            (None, Some(path)) => bail!("{}: `{field}`: {message}", path.display()),
            (None, None) => bail!("`{field}`: {message}"),
        },
        Err(other) => Err(other.into()),
    }
}

/// Reads a stage config from TOML, naming the file in errors.
pub fn read_toml<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config {}", path.display()))
}
