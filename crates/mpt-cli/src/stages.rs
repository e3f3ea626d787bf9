//! `mpt teacher|distill|adapt|eval`: each pipeline stage as its own command.

use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{Result, anyhow, bail};
use clap::Args;
use mpt_adapt::{AdaptConfig, Method};
use mpt_core::CoreError;
use mpt_core::init::{PromptInit, TargetInit};
use mpt_distill::DistillConfig;
use mpt_eval::EvalConfig;
use mpt_teacher::TeacherConfig;
use mpt_train::{Decoding, HeadConfig, Selection, TrainConfig};

use crate::common::{EnvArgs, TrainArgs, check_values, read_toml};
use crate::progress::Bars;

/// Prompt length of `mpt teacher` and `mpt adapt --method vanilla` without `--prompt-len`.
const DEFAULT_PROMPT_LEN: usize = 20;

/// Parses an `--init` value: a [`PromptInit`] (`random`, `vocab`, `text:SOME TEXT`) or a
/// [`TargetInit`] (`average`, `shared`, `source:TASK`); the error names the flag.
fn parse_init<T: FromStr<Err = CoreError>>(s: &str) -> Result<T> {
    s.parse().map_err(|e| anyhow!("--init {e}"))
}

/// Arguments of `mpt teacher`.
#[derive(Debug, Args)]
pub struct TeacherArgs {
    #[command(flatten)]
    pub env: EnvArgs,
    /// Source task (e.g. sst2, mnli, qnli, qqp, snli).
    #[arg(long)]
    pub task: Option<String>,
    /// Stage config (TOML with the fields of a teacher config); flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Prompt length l.
    #[arg(long)]
    pub prompt_len: Option<usize>,
    /// Prompt initialisation: random, vocab, or text:SOME TEXT.
    #[arg(long)]
    pub init: Option<String>,
    #[command(flatten)]
    pub train: TrainArgs,
    /// Output artifact folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Also write the run's inputs here (initial prompt, token ids, rows of every step) for
    /// an outside re-implementation (bench/reference/teacher_reference.py).
    #[arg(long, value_name = "DIR")]
    pub trace: Option<PathBuf>,
    /// Start from this teacher artifact's prompt and head (same task, backbone, prompt length
    /// and head kind) instead of `--init`, with a fresh schedule: trains a teacher further
    /// across several runs. It becomes the new artifact's parent.
    #[arg(long, value_name = "DIR")]
    pub continue_from: Option<PathBuf>,
}

/// Runs `mpt teacher`.
pub fn teacher(args: TeacherArgs) -> Result<()> {
    let mut config = match &args.config {
        Some(path) => read_toml::<TeacherConfig>(path)?,
        None => TeacherConfig {
            task: String::new(),
            prompt_length: DEFAULT_PROMPT_LEN,
            init: PromptInit::default(),
            train: TrainConfig::default(),
            head: HeadConfig::default(),
            data: Selection::default(),
        },
    };
    if let Some(task) = &args.task {
        config.task = task.clone();
    }
    if config.task.is_empty() {
        bail!("no task: pass --task NAME or a --config with `task`");
    }
    if let Some(l) = args.prompt_len {
        config.prompt_length = l;
    }
    if let Some(init) = &args.init {
        config.init = parse_init(init)?;
    }
    args.train.apply(&mut config.train, &mut config.data);
    args.train.apply_head(&mut config.head);
    check_values(&config.data, &config.train.lengths, "train.", |f| args.train.flag_for(f), args.config.as_deref())?;
    let (model, device, root) = args.env.load()?;
    let bars = Bars::new(args.env.quiet);
    let artifact = mpt_teacher::run_traced(
        &model,
        &root,
        &config,
        &args.out,
        args.trace.as_deref(),
        args.continue_from.as_deref(),
        &device,
        &bars,
    )?;
    crate::summary::print_artifact(&artifact);
    Ok(())
}

/// Arguments of `mpt distill`.
#[derive(Debug, Args)]
pub struct DistillArgs {
    #[command(flatten)]
    pub env: EnvArgs,
    /// Teacher artifact folders (one per source task).
    #[arg(long = "teacher", value_name = "DIR")]
    pub teachers: Vec<PathBuf>,
    /// Source tasks in factor order (repeatable or comma-separated; default: the teachers'
    /// tasks in the order given).
    #[arg(long = "task", value_name = "TASK", value_delimiter = ',')]
    pub task_order: Vec<String>,
    /// Stage config (TOML with the fields of a distill config); flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Most tasks per batch κ (K is drawn from [2, κ]).
    #[arg(long)]
    pub kappa: Option<usize>,
    /// Weight λ of the distillation terms (0 = no distillation).
    #[arg(long)]
    pub lambda: Option<f64>,
    /// Softmax temperature of the KL term.
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Rank of the task factors.
    #[arg(long)]
    pub rank: Option<usize>,
    /// One shared prompt, no task factors (ablation).
    #[arg(long)]
    pub no_decomposition: bool,
    /// Prompt length (only without teachers).
    #[arg(long)]
    pub prompt_len: Option<usize>,
    #[command(flatten)]
    pub train: TrainArgs,
    /// Output artifact folder.
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `mpt distill`.
pub fn distill(args: DistillArgs) -> Result<()> {
    let mut config = match &args.config {
        Some(path) => read_toml::<DistillConfig>(path)?,
        None => DistillConfig {
            tasks: Vec::new(),
            prompt_length: None,
            rank: mpt_distill::DEFAULT_RANK,
            lambda: mpt_distill::DEFAULT_LAMBDA,
            temperature: mpt_distill::DEFAULT_TEMPERATURE,
            hidden_loss: mpt_distill::DEFAULT_HIDDEN_LOSS,
            kappa: 0,
            decomposition: true,
            shared_init: Default::default(),
            factor_init: Default::default(),
            train: TrainConfig::default(),
            head: HeadConfig::default(),
            data: Selection::default(),
        },
    };
    if !args.task_order.is_empty() {
        config.tasks = args.task_order.clone();
    }
    if config.tasks.is_empty() {
        for dir in &args.teachers {
            let meta = mpt_core::Artifact::read_meta(dir)?;
            config.tasks.extend(meta.tasks);
        }
    }
    if let Some(k) = args.kappa {
        config.kappa = k;
    }
    if config.kappa == 0 {
        config.kappa = config.tasks.len();
    }
    if let Some(v) = args.lambda {
        config.lambda = v;
    }
    if let Some(v) = args.temperature {
        config.temperature = v;
    }
    if let Some(v) = args.rank {
        config.rank = v;
    }
    if args.no_decomposition {
        config.decomposition = false;
    }
    if args.prompt_len.is_some() {
        config.prompt_length = args.prompt_len;
    }
    args.train.apply(&mut config.train, &mut config.data);
    args.train.apply_head(&mut config.head);
    check_values(&config.data, &config.train.lengths, "train.", |f| args.train.flag_for(f), args.config.as_deref())?;
    let (model, device, root) = args.env.load()?;
    let bars = Bars::new(args.env.quiet);
    let artifact = mpt_distill::run(&model, &root, &config, &args.teachers, &args.out, &device, &bars)?;
    crate::summary::print_artifact(&artifact);
    Ok(())
}

/// Arguments of `mpt adapt`.
#[derive(Debug, Args)]
pub struct AdaptArgs {
    #[command(flatten)]
    pub env: EnvArgs,
    /// Target task(s); several = multi-target adaptation.
    #[arg(long = "target", value_name = "TASK")]
    pub targets: Vec<String>,
    /// mpt (from a multitask artifact), vanilla (from scratch) or spot (from a teacher).
    #[arg(long, default_value = "mpt")]
    pub method: String,
    /// The artifact to start from (multitask for mpt, teacher for spot).
    #[arg(long, value_name = "DIR")]
    pub from: Option<PathBuf>,
    /// mpt: average, shared, or source:TASK; vanilla: random, vocab, or text:SOME TEXT.
    #[arg(long)]
    pub init: Option<String>,
    /// Prompt length (vanilla only).
    #[arg(long)]
    pub prompt_len: Option<usize>,
    /// Hold the start prompt fixed and train the head alone (the head-only probe; needs the
    /// linear or pair head).
    #[arg(long)]
    pub freeze_prompt: bool,
    /// Stage config (TOML with the fields of an adapt config); flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub train: TrainArgs,
    /// Output artifact folder.
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `mpt adapt`.
pub fn adapt(args: AdaptArgs) -> Result<()> {
    let method = match (args.method.as_str(), args.init.as_deref()) {
        ("mpt", init) => Method::Mpt {
            init: init.map(parse_init::<TargetInit>).transpose()?.unwrap_or_default(),
            fresh: Default::default(),
        },
        ("vanilla", init) => {
            Method::Vanilla { init: init.map(parse_init::<PromptInit>).transpose()?.unwrap_or_default() }
        }
        ("spot", None) => Method::Spot,
        ("spot", Some(_)) => bail!("--method spot starts from the teacher's prompt; --init does not apply"),
        (other, _) => bail!("--method {other:?}: expected mpt, vanilla or spot"),
    };
    let mut config = match &args.config {
        Some(path) => read_toml::<AdaptConfig>(path)?,
        None => AdaptConfig {
            targets: Vec::new(),
            method: method.clone(),
            prompt_length: None,
            kappa: None,
            train: TrainConfig::default(),
            head: HeadConfig::default(),
            data: Selection::default(),
            freeze_prompt: false,
        },
    };
    config.freeze_prompt |= args.freeze_prompt;
    if args.config.is_none() || args.init.is_some() {
        config.method = method;
    }
    if !args.targets.is_empty() {
        config.targets = args.targets.clone();
    }
    if args.prompt_len.is_some() {
        config.prompt_length = args.prompt_len;
    }
    if matches!(config.method, Method::Vanilla { .. }) && config.prompt_length.is_none() {
        config.prompt_length = Some(DEFAULT_PROMPT_LEN);
    }
    args.train.apply(&mut config.train, &mut config.data);
    args.train.apply_head(&mut config.head);
    check_values(&config.data, &config.train.lengths, "train.", |f| args.train.flag_for(f), args.config.as_deref())?;
    let (model, device, root) = args.env.load()?;
    let bars = Bars::new(args.env.quiet);
    let artifact = mpt_adapt::run(&model, &root, &config, args.from.as_deref(), &args.out, &device, &bars)?;
    crate::summary::print_artifact(&artifact);
    Ok(())
}

/// Arguments of `mpt eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub env: EnvArgs,
    /// Artifact folder to evaluate.
    #[arg(long)]
    pub artifact: PathBuf,
    /// Task (default: every task of the artifact).
    #[arg(long)]
    pub task: Vec<String>,
    /// Split: train, dev or test.
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Evaluate on at most N examples (seeded subset).
    #[arg(long)]
    pub max_examples: Option<usize>,
    /// Batch size.
    #[arg(long, default_value_t = mpt_eval::DEFAULT_BATCH_SIZE)]
    pub batch_size: usize,
    /// T5: greedy decoding instead of rank classification.
    #[arg(long)]
    pub greedy: bool,
    /// Max input tokens per example.
    #[arg(long)]
    pub max_len: Option<usize>,
    /// Max target tokens (a generation task: the longest text generated, EOS included).
    #[arg(long)]
    pub max_target: Option<usize>,
    /// Write results as JSON here (and markdown next to it, .md).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Skip the majority-class and no-prompt scores beside each result.
    #[arg(long)]
    pub no_baselines: bool,
}

/// Runs `mpt eval`.
pub fn eval(args: EvalArgs) -> Result<()> {
    let split: mpt_data::Split = args.split.parse()?;
    let tasks =
        if args.task.is_empty() { mpt_core::Artifact::read_meta(&args.artifact)?.tasks } else { args.task.clone() };
    let mut lengths = mpt_train::Lengths::default();
    if let Some(v) = args.max_len {
        lengths.max_input = v;
    }
    if let Some(v) = args.max_target {
        lengths.max_target = v;
    }
    let mut data = Selection::default();
    match split {
        mpt_data::Split::Dev => data.max_dev = args.max_examples,
        mpt_data::Split::Test => data.max_test = args.max_examples,
        mpt_data::Split::Train => data.max_train = args.max_examples,
    }
    // The checks (and words) of `mpt teacher` and the pipelines.
    let flag_for = |field: &str| match field {
        "lengths.max_input" => Some("--max-len"),
        "lengths.max_target" => Some("--max-target"),
        _ if field.starts_with("data.") => Some("--max-examples"),
        _ => None,
    };
    check_values(&data, &lengths, "", flag_for, None)?;
    if args.batch_size == 0 {
        bail!("--batch-size: must be at least 1");
    }
    let (model, device, root) = args.env.load()?;
    let mut results = Vec::new();
    for task in tasks {
        let config = EvalConfig {
            task,
            split,
            data: data.clone(),
            batch_size: args.batch_size,
            decoding: if args.greedy { Decoding::Greedy } else { Decoding::Rank },
            lengths,
            head: HeadConfig::default(),
            baselines: !args.no_baselines,
        };
        results.push(mpt_eval::run(&model, &root, &args.artifact, &config, &device)?);
    }
    print!("{}", mpt_eval::to_markdown(&results));
    if let Some(json) = &args.json {
        let md = json.with_extension("md");
        mpt_eval::write_results(&results, json, &md)?;
        println!("results: {} and {}", json.display(), md.display());
    }
    Ok(())
}
