//! `mpt run PIPELINE.toml`: the declared experiment from teachers to report.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use mpt_pipeline::{Pipeline, RunOptions, Ui};
use mpt_train::Progress;

use crate::device::parse_device;
use crate::progress::Bars;

/// Arguments of `mpt run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The pipeline file (see pipelines/*.toml).
    pub pipeline: PathBuf,
    /// Validate and print the stage plan with each stage's status; run nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Run only stages whose name equals or starts with STAGE (repeatable), e.g. `teacher`,
    /// `adapt/mpt/rte`. Their inputs must already exist.
    #[arg(long, value_name = "STAGE")]
    pub only: Vec<String>,
    /// Rerun stages whose name equals or starts with STAGE even if they are done.
    #[arg(long, value_name = "STAGE")]
    pub force: Vec<String>,
    /// Backend: cpu, wgpu, tch-cpu, tch-cuda, cuda (as compiled in).
    #[arg(long, default_value = crate::device::DEFAULT_DEVICE)]
    pub device: String,
    /// Override the run folder (default: `run_dir` of the file, else runs/<name>).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Hide progress bars.
    #[arg(long, short)]
    pub quiet: bool,
}

struct CliUi {
    bars: Bars,
}

impl Ui for CliUi {
    fn progress(&self) -> &dyn Progress {
        &self.bars
    }
    fn stage_start(&self, index: usize, total: usize, name: &str) {
        eprintln!("[{index}/{total}] {name}");
    }
    fn stage_end(&self, name: &str, seconds: f64, outcome: &str) {
        eprintln!("      {name}: {outcome} in {seconds:.1}s");
    }
}

/// Runs `mpt run`.
pub fn run(args: RunArgs) -> Result<()> {
    let mut pipeline = Pipeline::load(&args.pipeline)?;
    // Also checked by `mpt_pipeline::run`; here so the error reads like the other validation
    // errors of the file.
    mpt_pipeline::run::check_data(&pipeline)?;
    if let Some(dir) = &args.run_dir {
        pipeline.run_dir = dir.clone();
    }
    let plan = mpt_pipeline::build(&pipeline);
    let options = RunOptions {
        dry_run: args.dry_run,
        only: args.only.clone(),
        force: args.force.clone(),
    };
    let device = parse_device(&args.device)?;
    let ui = CliUi {
        bars: Bars::new(args.quiet),
    };
    let started = std::time::Instant::now();
    let summary = mpt_pipeline::run(&pipeline, &plan, &options, &device, &ui)
        .with_context(|| format!("pipeline {}", args.pipeline.display()))?;
    if args.dry_run {
        return Ok(());
    }
    println!(
        "{}: {} stage(s) ran, {} already done, {} not selected, in {:.1} min",
        pipeline.file.name,
        summary.ran.len(),
        summary.skipped.len(),
        summary.unselected.len(),
        started.elapsed().as_secs_f64() / 60.0
    );
    if let Some(report) = summary.report {
        println!("report: {}", report.display());
        println!("        {}", report.with_extension("json").display());
    }
    Ok(())
}
