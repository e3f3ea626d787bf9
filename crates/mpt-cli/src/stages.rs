//! `mpt teacher|distill|adapt|eval`: each pipeline stage as its own command.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use mpt_core::init::PromptInit;
use mpt_teacher::TeacherConfig;
use mpt_train::{HeadConfig, Selection, TrainConfig};

use crate::common::{EnvArgs, TrainArgs, read_toml};
use crate::progress::Bars;

/// Parses `random`, `vocab` or `text:SOME TEXT`.
pub fn parse_init(s: &str) -> Result<PromptInit> {
    Ok(match s {
        "random" => PromptInit::Random,
        "vocab" => PromptInit::Vocab,
        _ => match s.strip_prefix("text:") {
            Some(text) => PromptInit::Text { text: text.to_string() },
            None => bail!("--init {s:?}: expected random, vocab or text:SOME TEXT"),
        },
    })
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
}

/// Runs `mpt teacher`.
pub fn teacher(args: TeacherArgs) -> Result<()> {
    let mut config = match &args.config {
        Some(path) => read_toml::<TeacherConfig>(path)?,
        None => TeacherConfig {
            task: String::new(),
            prompt_length: 20,
            init: PromptInit::Vocab,
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
    let (model, device, root) = args.env.load()?;
    let bars = Bars::new(args.env.quiet);
    let artifact = mpt_teacher::run(&model, &root, &config, &args.out, &device, &bars)?;
    crate::summary::print_artifact(&artifact);
    Ok(())
}
