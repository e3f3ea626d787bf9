//! The pipeline file: what a user declares, how it is parsed (unknown keys and wrong types
//! rejected with their key path) and validated (impossible values rejected before any work).
//!
//! `train`/`data` tables set defaults for every stage; `sources.train`, `distill.train` and
//! `targets.train` (and the `data` twins) override them key by key. Relative paths resolve
//! against the directory `mpt run` is started from.

use std::path::{Path, PathBuf};

use mpt_core::init::{PromptInit, TARGET_INIT_FORMS, TargetInit};
use mpt_data::Split;
use mpt_distill::SharedStart;
use mpt_train::{HeadConfig, HeadKind, Selection, TrainConfig};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{PipelineError, Result};
use mpt_data::taskfile::one_line;

/// `[prompt]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptSection {
    /// Prompt length l.
    pub length: usize,
    /// Rank r of the task factors.
    #[serde(default = "rank")]
    pub rank: usize,
    /// Fresh-prompt init: `random`, `vocab` or `text:SOME TEXT` (see [`PromptInit`]'s `FromStr`).
    #[serde(default = "prompt_init")]
    pub init: String,
}

fn rank() -> usize {
    mpt_distill::DEFAULT_RANK
}
fn prompt_init() -> String {
    PromptInit::default().to_string()
}

/// `[sources]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcesSection {
    /// Source tasks.
    pub tasks: Vec<String>,
    /// A source-prompt library (e.g. `prompts/all-MiniLM-L6-v2`): the teachers are its
    /// `<task>/` artifacts instead of trained here (`train`/`data` below then do not apply).
    #[serde(default)]
    pub from: Option<PathBuf>,
    /// Overrides of `[train]` for the teachers.
    #[serde(default)]
    pub train: toml::Table,
    /// Overrides of `[data]` for the teachers.
    #[serde(default)]
    pub data: toml::Table,
}

/// `[distill]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistillSection {
    /// λ.
    #[serde(default = "lambda")]
    pub lambda: f64,
    /// Temperature T.
    #[serde(default = "temperature")]
    pub temperature: f64,
    /// κ (default: number of source tasks).
    #[serde(default)]
    pub kappa: Option<usize>,
    /// Hidden-state MSE on/off.
    #[serde(default = "hidden_loss")]
    pub hidden_loss: bool,
    /// `teacher_mean` or `fresh` (the `[prompt] init`).
    #[serde(default)]
    pub shared_init: SharedStart,
    /// Overrides of `[train]`.
    #[serde(default)]
    pub train: toml::Table,
    /// Overrides of `[data]`.
    #[serde(default)]
    pub data: toml::Table,
}

fn lambda() -> f64 {
    mpt_distill::DEFAULT_LAMBDA
}
fn temperature() -> f64 {
    mpt_distill::DEFAULT_TEMPERATURE
}
fn hidden_loss() -> bool {
    mpt_distill::DEFAULT_HIDDEN_LOSS
}

/// `[targets]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetsSection {
    /// Target tasks, each adapted on its own.
    pub tasks: Vec<String>,
    /// Few-shot k values (k per class); empty = full training data.
    #[serde(default)]
    pub few_shot: Vec<usize>,
    /// Per-task replacement of `few_shot`, for tasks whose classes are too small for some k
    /// (e.g. `cb = [4, 16]`: CB's train split has 16 neutral examples).
    #[serde(default)]
    pub few_shot_overrides: std::collections::BTreeMap<String, Vec<usize>>,
    /// Seeds (training and few-shot draw).
    #[serde(default = "seeds")]
    pub seeds: Vec<u64>,
    /// Overrides of `[train]`.
    #[serde(default)]
    pub train: toml::Table,
    /// Overrides of `[data]`.
    #[serde(default)]
    pub data: toml::Table,
}

fn seeds() -> Vec<u64> {
    vec![0]
}

/// `[methods]`: what runs beside or instead of MPT.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodsSection {
    /// MPT target inits to run: `average`, `shared`, `source:TASK`.
    #[serde(default = "mpt_default")]
    pub mpt: Vec<String>,
    /// Vanilla prompt tuning from scratch.
    #[serde(default)]
    pub vanilla: bool,
    /// SPoT-style init from these source tasks' teachers.
    #[serde(default)]
    pub spot: Vec<String>,
    /// Ablation: multitask training without distillation (λ = 0).
    #[serde(default)]
    pub no_distillation: bool,
    /// Ablation: one shared prompt, no u, v.
    #[serde(default)]
    pub no_decomposition: bool,
    /// MPT multitask: all targets adapted jointly (shared P*, per-target u, v).
    #[serde(default)]
    pub multitask: bool,
    /// Baseline: the head alone trained over the frozen backbone and the untrained vanilla
    /// start prompt (needs `[head] kind = "linear"` or `"pair"`).
    #[serde(default)]
    pub head_only: bool,
}

fn mpt_default() -> Vec<String> {
    vec![TargetInit::default().to_string()]
}

/// `[eval]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSection {
    /// Split the report uses.
    #[serde(default = "test_split")]
    pub split: Split,
    /// At most this many examples per task (seeded subset).
    #[serde(default)]
    pub max_examples: Option<usize>,
    /// Batch size.
    #[serde(default = "eval_batch")]
    pub batch_size: usize,
    /// Also evaluate the teachers and the multitask prompt on the source tasks.
    #[serde(default)]
    pub sources: bool,
}

fn test_split() -> Split {
    mpt_eval::DEFAULT_SPLIT
}
fn eval_batch() -> usize {
    mpt_eval::DEFAULT_BATCH_SIZE
}

impl Default for EvalSection {
    fn default() -> Self {
        Self { split: test_split(), max_examples: None, batch_size: eval_batch(), sources: false }
    }
}

/// The pipeline file as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineFile {
    /// Name (run folder `runs/<name>` by default).
    pub name: String,
    /// Hugging Face model folder.
    pub backbone: PathBuf,
    /// Benchmark data root.
    #[serde(default)]
    pub data_root: Option<PathBuf>,
    /// Task files declaring tasks beside the built-in ones (one path or a list; relative to the
    /// working directory, like `backbone`; data paths inside are relative to each task file).
    #[serde(default, deserialize_with = "one_or_many")]
    pub tasks_file: Vec<PathBuf>,
    /// Inline task declarations, `[tasks.NAME]` tables of the task-file schema (data paths
    /// relative to the working directory).
    #[serde(default)]
    pub tasks: toml::Table,
    /// Run folder.
    #[serde(default)]
    pub run_dir: Option<PathBuf>,
    /// Prompt shape.
    pub prompt: PromptSection,
    /// Encoder head of every stage (`kind` = linear | pair | verbalizer, `tau`).
    #[serde(default)]
    pub head: HeadConfig,
    /// Training defaults.
    #[serde(default)]
    pub train: toml::Table,
    /// Data-selection defaults.
    #[serde(default)]
    pub data: toml::Table,
    /// Source tasks and teachers.
    pub sources: SourcesSection,
    /// Distillation.
    pub distill: DistillSection,
    /// Targets.
    pub targets: TargetsSection,
    /// Methods.
    #[serde(default = "methods_default")]
    pub methods: MethodsSection,
    /// Evaluation.
    #[serde(default)]
    pub eval: EvalSection,
    /// `[cluster]`: Slurm resources per stage job (`mpt run --executor slurm`); optional.
    #[serde(default)]
    pub cluster: crate::slurm::ClusterConfig,
}

/// `"a.toml"` or `["a.toml", "b.toml"]`.
fn one_or_many<'de, D: serde::Deserializer<'de>>(de: D) -> std::result::Result<Vec<PathBuf>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(PathBuf),
        Many(Vec<PathBuf>),
    }
    Ok(match OneOrMany::deserialize(de)? {
        OneOrMany::One(p) => vec![p],
        OneOrMany::Many(v) => v,
    })
}

fn methods_default() -> MethodsSection {
    MethodsSection {
        mpt: mpt_default(),
        vanilla: false,
        spot: Vec::new(),
        no_distillation: false,
        no_decomposition: false,
        multitask: false,
        head_only: false,
    }
}

/// A validated pipeline with every stage's settings resolved.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The file it came from.
    pub path: PathBuf,
    /// Its text (copied into the run folder).
    pub text: String,
    /// Parsed.
    pub file: PipelineFile,
    /// Fresh-prompt init.
    pub init: PromptInit,
    /// Teacher training.
    pub teacher_train: TrainConfig,
    /// Teacher data.
    pub teacher_data: Selection,
    /// Distillation training.
    pub distill_train: TrainConfig,
    /// Distillation data.
    pub distill_data: Selection,
    /// Target training.
    pub target_train: TrainConfig,
    /// Target data.
    pub target_data: Selection,
    /// Data root.
    pub data_root: PathBuf,
    /// Run folder.
    pub run_dir: PathBuf,
}

fn parse_err(path: &Path, key: impl Into<String>, message: impl Into<String>) -> PipelineError {
    PipelineError::Parse { path: path.to_path_buf(), key: key.into(), message: message.into() }
}

fn invalid(path: &Path, key: impl Into<String>, message: impl Into<String>) -> PipelineError {
    PipelineError::Invalid { path: path.to_path_buf(), key: key.into(), message: message.into() }
}

/// `base` overlaid with `over`, recursing into sub-tables.
fn overlay(base: &toml::Table, over: &toml::Table) -> toml::Table {
    let mut out = base.clone();
    for (k, v) in over {
        match (out.get(k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => {
                let merged = overlay(b, o);
                out.insert(k.clone(), toml::Value::Table(merged));
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    out
}

/// Deserializes `table` (defaults overlaid with a section's overrides) into `T`; errors
/// name the key under `section` when the section set it, else under the defaults table.
fn typed<T: DeserializeOwned>(
    path: &Path,
    defaults_name: &str,
    defaults: &toml::Table,
    section_name: &str,
    section: &toml::Table,
) -> Result<T> {
    let merged = overlay(defaults, section);
    let value = toml::Value::Table(merged);
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let inner = e.path().to_string();
        let first = inner.split(['.', '[']).next().unwrap_or("");
        let prefix = if section.contains_key(first) { section_name } else { defaults_name };
        let key = if inner == "." || inner.is_empty() { prefix.to_string() } else { format!("{prefix}.{inner}") };
        parse_err(path, key, one_line(&e.into_inner().to_string()))
    })
}

impl Pipeline {
    /// Reads, parses and validates `path` (data-dependent checks included: tasks exist,
    /// data files exist, few-shot k fits every class).
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).map_err(|source| PipelineError::Io { path: path.to_path_buf(), source })?;
        Self::parse(path, &text)
    }

    /// [`Pipeline::load`] on text already read.
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let de = toml::Deserializer::parse(text).map_err(|e| parse_err(path, "(syntax)", e.to_string()))?;
        let file: PipelineFile = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            parse_err(path, key, one_line(&e.into_inner().to_string()))
        })?;
        // Declared tasks first: everything below looks tasks up by name.
        // Their errors name the task file (or this file) and key, or the data file and line.
        for tasks_file in &file.tasks_file {
            mpt_data::load_task_file(tasks_file)?;
        }
        mpt_data::taskfile::register_table(path, &file.tasks, Path::new("."))?;
        let init: PromptInit =
            file.prompt.init.parse().map_err(|e: mpt_core::CoreError| invalid(path, "prompt.init", e.to_string()))?;
        let teacher_train = typed(path, "train", &file.train, "sources.train", &file.sources.train)?;
        let teacher_data = typed(path, "data", &file.data, "sources.data", &file.sources.data)?;
        let distill_train = typed(path, "train", &file.train, "distill.train", &file.distill.train)?;
        let distill_data = typed(path, "data", &file.data, "distill.data", &file.distill.data)?;
        let target_train = typed(path, "train", &file.train, "targets.train", &file.targets.train)?;
        let target_data = typed(path, "data", &file.data, "targets.data", &file.targets.data)?;
        let data_root = file.data_root.clone().unwrap_or_else(|| PathBuf::from(mpt_data::DEFAULT_DATA_ROOT));
        let run_dir = file.run_dir.clone().unwrap_or_else(|| PathBuf::from("runs").join(&file.name));
        let pipeline = Self {
            path: path.to_path_buf(),
            text: text.to_string(),
            file,
            init,
            teacher_train,
            teacher_data,
            distill_train,
            distill_data,
            target_train,
            target_data,
            data_root,
            run_dir,
        };
        pipeline.validate()?;
        Ok(pipeline)
    }

    fn validate(&self) -> Result<()> {
        let p = &self.path;
        let f = &self.file;
        if f.name.is_empty() || f.name.contains(['/', '\\']) {
            return Err(invalid(p, "name", "must be a non-empty folder name"));
        }
        if f.prompt.length == 0 {
            return Err(invalid(p, "prompt.length", "must be at least 1"));
        }
        if f.prompt.rank == 0 {
            return Err(invalid(p, "prompt.rank", "must be at least 1"));
        }
        let check_tasks = |key: &str, tasks: &[String]| -> Result<()> {
            for (i, t) in tasks.iter().enumerate() {
                mpt_data::lookup(t).map_err(|e| invalid(p, format!("{key}[{i}]"), e.to_string()))?;
                if tasks[..i].contains(t) {
                    return Err(invalid(p, format!("{key}[{i}]"), format!("{t:?} is listed twice")));
                }
            }
            Ok(())
        };
        check_tasks("sources.tasks", &f.sources.tasks)?;
        check_tasks("targets.tasks", &f.targets.tasks)?;
        if f.sources.tasks.len() < 2 {
            return Err(invalid(p, "sources.tasks", "MPT distils at least 2 source tasks"));
        }
        if f.targets.tasks.is_empty() {
            return Err(invalid(p, "targets.tasks", "needs at least one target task"));
        }
        let kappa = f.distill.kappa.unwrap_or(f.sources.tasks.len());
        if kappa < 2 || kappa > f.sources.tasks.len() {
            return Err(invalid(
                p,
                "distill.kappa",
                format!("must be in [2, {}] (the number of source tasks), got {kappa}", f.sources.tasks.len()),
            ));
        }
        if !(f.distill.lambda.is_finite() && f.distill.lambda >= 0.0) {
            return Err(invalid(p, "distill.lambda", "must be zero or positive"));
        }
        if !(f.distill.temperature.is_finite() && f.distill.temperature > 0.0) {
            return Err(invalid(p, "distill.temperature", "must be positive"));
        }
        if self.distill_train.batch_size < kappa {
            return Err(invalid(p, "distill.train.batch_size", format!("must be at least kappa ({kappa})")));
        }
        for (key, train) in [
            ("sources.train", &self.teacher_train),
            ("distill.train", &self.distill_train),
            ("targets.train", &self.target_train),
        ] {
            train.validate("").map_err(|e| match e {
                mpt_train::TrainError::Config { field, message } => invalid(p, format!("{key}.{field}"), message),
                other => invalid(p, key, other.to_string()),
            })?;
        }
        if f.targets.seeds.is_empty() {
            return Err(invalid(p, "targets.seeds", "needs at least one seed"));
        }
        for (i, s) in f.targets.seeds.iter().enumerate() {
            if f.targets.seeds[..i].contains(s) {
                return Err(invalid(p, format!("targets.seeds[{i}]"), format!("seed {s} is listed twice")));
            }
        }
        self.mpt_inits()?;
        for (i, src) in f.methods.spot.iter().enumerate() {
            let known = mpt_data::lookup(src).is_ok_and(|spec| {
                f.sources.tasks.iter().any(|s| mpt_data::lookup(s).is_ok_and(|x| x.name == spec.name))
            });
            if !known {
                return Err(invalid(p, format!("methods.spot[{i}]"), format!("{src:?} is not one of sources.tasks")));
            }
        }
        if f.methods.head_only && f.head.kind == HeadKind::Verbalizer {
            return Err(invalid(
                p,
                "methods.head_only",
                "the verbalizer head trains nothing; set [head] kind = \"linear\" or \"pair\"",
            ));
        }
        if f.methods.multitask && (f.targets.tasks.len() < 2 || f.methods.mpt.is_empty()) {
            return Err(invalid(p, "methods.multitask", "needs at least 2 target tasks and an MPT method"));
        }
        if f.eval.batch_size == 0 {
            return Err(invalid(p, "eval.batch_size", "must be at least 1"));
        }
        if f.eval.max_examples == Some(0) {
            return Err(invalid(p, "eval.max_examples", "must be at least 1 (or absent)"));
        }
        crate::run::check_data(self)?;
        // Data: files exist and few-shot k fits every class of every target's train split.
        let root = mpt_data::DataRoot::new(&self.data_root);
        for (key, tasks) in [("sources.tasks", &f.sources.tasks), ("targets.tasks", &f.targets.tasks)] {
            for (i, t) in tasks.iter().enumerate() {
                let spec = mpt_data::lookup(t).expect("checked above");
                root.check_task(spec).map_err(|e| invalid(p, format!("{key}[{i}]"), e.to_string()))?;
            }
        }
        if let Some(lib) = &f.sources.from {
            for (i, t) in f.sources.tasks.iter().enumerate() {
                let name = mpt_data::lookup(t).expect("checked above").name;
                let dir = lib.join(name);
                let meta = mpt_core::Artifact::read_meta(&dir).map_err(|e| {
                    invalid(p, format!("sources.tasks[{i}]"), format!("no teacher for {name} in sources.from: {e}"))
                })?;
                if meta.kind != mpt_core::ArtifactKind::Teacher || meta.tasks != [name] {
                    return Err(invalid(
                        p,
                        "sources.from",
                        format!(
                            "{} is a {} artifact for {:?}, expected a teacher for {name:?}",
                            dir.display(),
                            meta.kind,
                            meta.tasks
                        ),
                    ));
                }
                // A teacher that trained a head (more tunable numbers than its prompt) is only
                // usable with that head: distillation reads its head's width and scores.
                let theirs = meta.config.pointer("/head/kind").and_then(|k| k.as_str()).unwrap_or("linear");
                let trained_head = meta.tunable_params > meta.prompt_length * meta.dim;
                let ours = f.head.kind;
                if trained_head && theirs != ours.as_str() {
                    return Err(invalid(
                        p,
                        "head.kind",
                        format!(
                            "is {ours} (the default is {}), but the library teacher {} was trained with the \
                             {theirs} head: set [head] kind = \"{theirs}\" to use this library, or train a \
                             library with the {ours} head (HEAD={ours} scripts/train-source-prompts.sh)",
                            HeadKind::default(),
                            dir.display()
                        ),
                    ));
                }
            }
        }
        for task in f.targets.few_shot_overrides.keys() {
            let known = mpt_data::lookup(task).is_ok_and(|spec| {
                f.targets.tasks.iter().any(|t| mpt_data::lookup(t).is_ok_and(|x| x.name == spec.name))
            });
            if !known {
                return Err(invalid(p, format!("targets.few_shot_overrides.{task}"), "is not one of targets.tasks"));
            }
        }
        for t in &f.targets.tasks {
            let spec = mpt_data::lookup(t).expect("checked above");
            let (list, list_key) = match f
                .targets
                .few_shot_overrides
                .iter()
                .find(|(k, _)| mpt_data::lookup(k).is_ok_and(|x| x.name == spec.name))
            {
                Some((k, v)) => (v, format!("targets.few_shot_overrides.{k}")),
                None => (&f.targets.few_shot, "targets.few_shot".to_string()),
            };
            if list.is_empty() {
                continue;
            }
            let (train, _) =
                root.load_split(spec, Split::Train, self.target_data.split_seed).map_err(PipelineError::Data)?;
            for (ki, &k) in list.iter().enumerate() {
                let key = format!("{list_key}[{ki}]");
                if k == 0 {
                    return Err(invalid(p, key, "k must be at least 1"));
                }
                mpt_data::sample_few_shot(spec, &train, k, 0)
                    .map_err(|e| invalid(p, &key, format!("k = {k} does not fit task {}: {e}", spec.name)))?;
            }
        }
        Ok(())
    }

    /// The few-shot k values of target `task` (empty = full data).
    pub fn few_shot_for(&self, task: &str) -> Vec<usize> {
        let name = mpt_data::lookup(task).map(|t| t.name).unwrap_or(task);
        self.file
            .targets
            .few_shot_overrides
            .iter()
            .find(|(k, _)| mpt_data::lookup(k).is_ok_and(|x| x.name == name))
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| self.file.targets.few_shot.clone())
    }

    /// The target inits of `methods.mpt`, in order, a `source:TASK`'s task by its registry name
    /// (an error names the entry that is none of the forms or whose TASK is not a source task).
    pub fn mpt_inits(&self) -> Result<Vec<TargetInit>> {
        let f = &self.file;
        let is_source = |spec: &mpt_data::TaskSpec| {
            f.sources.tasks.iter().any(|s| mpt_data::lookup(s).is_ok_and(|x| x.name == spec.name))
        };
        let mut inits = Vec::with_capacity(f.methods.mpt.len());
        for (i, text) in f.methods.mpt.iter().enumerate() {
            let bad = || {
                invalid(
                    &self.path,
                    format!("methods.mpt[{i}]"),
                    format!("{text:?}: expected {TARGET_INIT_FORMS} with TASK a source task"),
                )
            };
            let mut init: TargetInit = text.parse().map_err(|_| bad())?;
            if let TargetInit::Source { task } = &mut init {
                let spec = mpt_data::lookup(task).ok().filter(|spec| is_source(spec)).ok_or_else(bad)?;
                *task = spec.name.to_string();
            }
            inits.push(init);
        }
        Ok(inits)
    }

    /// κ of the distillation.
    pub fn kappa(&self) -> usize {
        self.file.distill.kappa.unwrap_or(self.file.sources.tasks.len())
    }
}
