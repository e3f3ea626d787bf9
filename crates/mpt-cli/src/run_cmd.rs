//! `mpt run PIPELINE.toml`: the declared experiment from teachers to report.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use mpt_pipeline::{Pipeline, RunOptions, Slurm, Subprocess, Ui};
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
    /// Backend: cpu, wgpu, tch-cpu, tch-cuda, cuda (as compiled in); with `--jobs N`, a
    /// comma-separated list (`tch-cuda:0,tch-cuda:1`) the stage processes share out, each
    /// starting on the device the fewest of them run on.
    #[arg(long, default_value = crate::device::DEFAULT_DEVICE)]
    pub device: String,
    /// Override the run folder (default: `run_dir` of the file, else runs/<name>).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Hide progress bars.
    #[arg(long, short)]
    pub quiet: bool,
    /// Run up to N independent stages at once, each as its own `mpt` process with 1/N of the
    /// CPU threads and its log in RUN_DIR/logs/stages/ (with `--executor slurm`: up to N jobs in
    /// the queue at once; default 64 there, 1 here).
    #[arg(long, short, value_name = "N")]
    pub jobs: Option<usize>,
    /// Where stages run: `local` (this machine) or `slurm` (each stage a batch job submitted
    /// with `sbatch --wait`; the run folder must be on storage the nodes share; resources from
    /// the pipeline's `[cluster]` table; `MPT_SBATCH` overrides the `sbatch` binary).
    #[arg(long, value_enum, default_value_t = ExecutorKind::Local)]
    pub executor: ExecutorKind,
    /// With `--executor slurm`: submit every stage to run at once, each job depending
    /// (`afterok`) on its inputs' jobs, and return; `mpt status RUN_DIR` follows them and a later
    /// `mpt run` writes the report. The job ids go to RUN_DIR/logs/slurm/jobs.json.
    #[arg(long, conflicts_with_all = ["dry_run", "jobs"])]
    pub detach: bool,
    /// Worker mode: run only the stage called NAME, in this process, without taking the run
    /// folder's lock or writing its state (what `--jobs` and `--executor slurm` start).
    #[arg(long, value_name = "NAME", hide = true, conflicts_with_all = ["dry_run", "only", "force", "jobs"])]
    pub stage: Option<String>,
}

/// Where `mpt run` runs its stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExecutorKind {
    /// On this machine: in this process, or with `--jobs N` in N child processes.
    Local,
    /// As Slurm batch jobs.
    Slurm,
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

/// Runs `mpt run`; `tasks_files` are the `--tasks` files (already registered).
pub fn run(args: RunArgs, tasks_files: &[PathBuf]) -> Result<()> {
    let mut pipeline = Pipeline::load(&args.pipeline)?;
    // Also checked by `mpt_pipeline::run`; here so the error reads like the other validation
    // errors of the file.
    mpt_pipeline::run::check_data(&pipeline)?;
    if let Some(dir) = &args.run_dir {
        pipeline.run_dir = dir.clone();
    }
    let plan = mpt_pipeline::build(&pipeline);
    let options = RunOptions { dry_run: args.dry_run, only: args.only.clone(), force: args.force.clone() };
    // `--device a,b`: a list the `--jobs` children share out; each entry must be usable here.
    let devices: Vec<&str> = args.device.split(',').map(str::trim).collect();
    if devices.len() > 1 && (args.executor != ExecutorKind::Local || args.jobs.unwrap_or(1) < 2) {
        anyhow::bail!(
            "--device {}: a device list is shared out between the stage processes of `--jobs N` (N >= 2) on this machine",
            args.device
        );
    }
    for d in &devices[1..] {
        parse_device(d)?;
    }
    let device = parse_device(devices[0])?;
    let ui = CliUi { bars: Bars::new(args.quiet) };
    if let Some(stage) = &args.stage {
        let outcome = mpt_pipeline::run_stage(&pipeline, &plan, stage, &device, &ui.bars)
            .with_context(|| format!("pipeline {}, stage {stage}", args.pipeline.display()))?;
        println!("{stage}: {}", outcome.output);
        return Ok(());
    }
    if args.detach && args.executor != ExecutorKind::Slurm {
        anyhow::bail!(
            "--detach needs --executor slurm: only a cluster's queue keeps stages running after `mpt run` returns"
        );
    }
    let started = std::time::Instant::now();
    let summary = match (args.executor, args.jobs) {
        (ExecutorKind::Local, None | Some(0 | 1)) => mpt_pipeline::run(&pipeline, &plan, &options, &device, &ui),
        (kind, jobs) => {
            let stage = Subprocess {
                exe: std::env::current_exe().context("locating the mpt binary for the stage processes")?,
                pipeline: std::path::absolute(&args.pipeline)
                    .with_context(|| format!("resolving {}", args.pipeline.display()))?,
                run_dir: std::path::absolute(&pipeline.run_dir)
                    .with_context(|| format!("resolving {}", pipeline.run_dir.display()))?,
                devices: args.device.split(',').map(|d| d.trim().to_string()).collect(),
                in_use: Default::default(),
                threads: None,
                tasks_files: tasks_files
                    .iter()
                    .map(|f| std::path::absolute(f).with_context(|| format!("resolving {}", f.display())))
                    .collect::<Result<_>>()?,
            };
            match kind {
                ExecutorKind::Local => {
                    let jobs = jobs.unwrap_or(1);
                    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
                    // CPU threads are split between the children; on accelerators each child's
                    // host threads still share the cores.
                    let executor = Subprocess { threads: Some((cores / jobs).max(1)), ..stage };
                    mpt_pipeline::run_parallel(&pipeline, &plan, &options, &executor, &ui, jobs)
                }
                ExecutorKind::Slurm => {
                    let executor = Slurm {
                        stage,
                        cluster: pipeline.file.cluster.clone(),
                        sbatch: std::env::var_os("MPT_SBATCH").map_or_else(|| "sbatch".into(), PathBuf::from),
                    };
                    if args.detach {
                        let jobs = mpt_pipeline::run::submit_detached(&pipeline, &plan, &options, &executor)
                            .with_context(|| format!("pipeline {}", args.pipeline.display()))?;
                        for (stage, id) in &jobs {
                            println!("{stage}: Slurm job {id}");
                        }
                        println!(
                            "{}: {} stage(s) submitted; follow them with `mpt status {}`, then `mpt run {}` writes the report",
                            pipeline.file.name,
                            jobs.len(),
                            pipeline.run_dir.display(),
                            args.pipeline.display()
                        );
                        return Ok(());
                    }
                    mpt_pipeline::run_parallel(&pipeline, &plan, &options, &executor, &ui, jobs.unwrap_or(64).max(1))
                }
            }
        }
    }
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

/// Arguments of `mpt status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The run folder (`runs/<name>` or a `--run-dir`).
    pub run_dir: PathBuf,
}

/// Runs `mpt status`: every stage's state from the run folder (and Slurm's queue).
pub fn status(args: StatusArgs) -> Result<()> {
    let status = mpt_pipeline::status::status(&args.run_dir)
        .with_context(|| format!("reading run folder {}", args.run_dir.display()))?;
    print!("{}", status.render(&args.run_dir));
    Ok(())
}

/// Arguments of `mpt merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The pipeline file the run folders belong to.
    pub pipeline: PathBuf,
    /// A run folder of the same pipeline to take finished stages from (repeatable; the first
    /// that has a stage done for the same config and inputs gives it). It may still be running.
    #[arg(long, value_name = "DIR", required = true)]
    pub from: Vec<PathBuf>,
    /// The folder to merge into (default: `run_dir` of the file, else runs/<name>).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Merge only stages whose name equals or starts with STAGE (repeatable).
    #[arg(long, value_name = "STAGE")]
    pub only: Vec<String>,
    /// Print what would be imported; write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs `mpt merge`: imports finished stages, then writes the report.
pub fn merge(args: MergeArgs) -> Result<()> {
    let mut pipeline = Pipeline::load(&args.pipeline)?;
    if let Some(dir) = &args.run_dir {
        pipeline.run_dir = dir.clone();
    }
    let plan = mpt_pipeline::build(&pipeline);
    let options = RunOptions { dry_run: args.dry_run, only: args.only.clone(), force: Vec::new() };
    let summary = mpt_pipeline::merge(&pipeline, &plan, &args.from, &options).with_context(|| {
        format!("pipeline {}, merging into {}", args.pipeline.display(), pipeline.run_dir.display())
    })?;
    let verb = if args.dry_run { "would import" } else { "imported" };
    for (stage, from) in &summary.imported {
        println!("  {stage:<48} {verb} from {}", from.display());
    }
    println!(
        "{}: {} stage(s) {verb}, {} already done, {} still to run",
        pipeline.file.name,
        summary.imported.len(),
        summary.already.len(),
        summary.pending.len()
    );
    if let Some(report) = summary.report {
        println!("report: {}", report.display());
    }
    Ok(())
}
