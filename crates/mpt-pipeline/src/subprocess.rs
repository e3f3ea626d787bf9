//! Stages as child processes: the [`Subprocess`] executor runs each stage as
//! `mpt run PIPELINE --stage NAME` (the same binary, one stage, in-process there) with its share
//! of the CPU threads and its output in `logs/stages/NAME.log`, and [`run_stage`] is what that
//! child does. The child writes only the stage's own artifact folder or result file; the
//! coordinator that started it records the outcome in the run state.
//!
//! Several children can run at once ([`crate::run::run_parallel`]); each is an independent
//! process, so the backbone is loaded once per stage.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use burn::prelude::*;
use mpt_core::Artifact;
use mpt_train::Progress;

use crate::config::Pipeline;
use crate::error::{PipelineError, Result};
use crate::execute::{Executor, InProcess, StageJob, StageOutcome};
use crate::plan::{Plan, StageKind};
use crate::run::ResultFile;

/// The environment variables that size a child's thread pools.
const THREAD_VARS: [&str; 3] = ["RAYON_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"];

/// Runs each stage as a child process of `exe`.
#[derive(Debug, Clone)]
pub struct Subprocess {
    /// The `mpt` binary.
    pub exe: PathBuf,
    /// The pipeline file the children read.
    pub pipeline: PathBuf,
    /// The run folder (passed as `--run-dir`).
    pub run_dir: PathBuf,
    /// The `--device` of the children: one, or several (`--device tch-cuda:0,tch-cuda:1`) that
    /// the running children share out, each child taking the one the fewest run on.
    pub devices: Vec<String>,
    /// Children running per device (shared by clones; sized on first use).
    pub in_use: std::sync::Arc<std::sync::Mutex<Vec<usize>>>,
    /// CPU threads per child (`RAYON_NUM_THREADS`, `OPENBLAS_NUM_THREADS`); None leaves the
    /// environment as it is.
    pub threads: Option<usize>,
    /// Task files given to this `mpt run` (`--tasks`), passed on to the children (absolute).
    pub tasks_files: Vec<PathBuf>,
}

/// The log file of stage `name` in `run_dir`.
pub fn stage_log(run_dir: &Path, name: &str) -> PathBuf {
    run_dir.join("logs").join("stages").join(format!("{name}.log"))
}

impl Subprocess {
    /// The arguments of stage `name`'s process, after the binary.
    fn args(&self, stage: &str, device: &str) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = vec!["run".into(), self.pipeline.clone().into(), "--run-dir".into()];
        args.push(self.run_dir.clone().into());
        args.extend(["--device", device, "--stage", stage, "--quiet"].map(Into::into));
        for file in &self.tasks_files {
            args.extend(["--tasks".into(), file.clone().into()]);
        }
        args
    }

    /// Takes the device with the fewest children on it; returns its index.
    fn claim(&self) -> usize {
        let mut used = self.in_use.lock().unwrap_or_else(|e| e.into_inner());
        if used.len() != self.devices.len() {
            *used = vec![0; self.devices.len()];
        }
        let i = (0..used.len()).min_by_key(|&i| (used[i], i)).unwrap_or(0);
        if let Some(n) = used.get_mut(i) {
            *n += 1;
        }
        i
    }

    fn release(&self, i: usize) {
        let mut used = self.in_use.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = used.get_mut(i) {
            *n = n.saturating_sub(1);
        }
    }

    /// The first device (what a batch script names).
    fn device(&self) -> &str {
        self.devices.first().map_or("cpu", String::as_str)
    }

    fn command(&self, stage: &str, device: &str) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.args(self.args(stage, device)).stdin(Stdio::null());
        if let Some(n) = self.threads {
            for var in THREAD_VARS {
                cmd.env(var, n.to_string());
            }
        }
        cmd
    }

    /// Stage `name`'s command as one shell line (each word single-quoted), for batch scripts.
    pub fn command_line(&self, stage: &str) -> String {
        std::iter::once(self.exe.clone().into_os_string())
            .chain(self.args(stage, self.device()))
            .map(|a| format!("'{}'", a.to_string_lossy().replace('\'', "'\\''")))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl Executor for Subprocess {
    fn execute(&self, job: &StageJob<'_>, _progress: &dyn Progress) -> Result<StageOutcome> {
        let name = &job.stage.name;
        let log = stage_log(&self.run_dir, name);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| PipelineError::Io { path, source }
        };
        if let Some(parent) = log.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let mut file = std::fs::File::create(&log).map_err(io(&log))?;
        let err_file = file.try_clone().map_err(io(&log))?;
        let slot = self.claim();
        let device = self.devices.get(slot).map_or("cpu", String::as_str);
        if self.devices.len() > 1 {
            use std::io::Write;
            writeln!(file, "mpt: stage {name} on --device {device}").map_err(io(&log))?;
        }
        let status = self.command(name, device).stdout(file).stderr(err_file).status();
        self.release(slot);
        let status = status.map_err(io(&self.exe))?;
        if !status.success() {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect();
            return Err(PipelineError::Stage {
                stage: name.clone(),
                source: format!(
                    "the stage's process ({}) ended with {status}; its log is {}{}",
                    self.exe.display(),
                    log.display(),
                    if tail.is_empty() { String::new() } else { format!(":\n    {}", tail.join("\n    ")) }
                )
                .into(),
            });
        }
        stage_output(job).ok_or_else(|| PipelineError::Stage {
            stage: name.clone(),
            source: format!("the stage's process succeeded but left no readable output; its log is {}", log.display())
                .into(),
        })
    }
}

/// What stage `job` left on disk: its artifact id, or its result key.
pub(crate) fn stage_output(job: &StageJob<'_>) -> Option<StageOutcome> {
    let output = match job.stage.kind {
        StageKind::Eval(_) => {
            let bytes = std::fs::read(&job.result_path).ok()?;
            serde_json::from_slice::<ResultFile>(&bytes).ok()?.key
        }
        _ => Artifact::read_meta(&job.out_dir).ok()?.id,
    };
    Some(StageOutcome { output })
}

/// The child's side (`mpt run PIPELINE --stage NAME`): runs stage `name` of `plan` in this
/// process, its inputs read from the run folder (they must be done), without taking the run
/// folder's lock or writing its state (the coordinator that started this process holds both).
pub fn run_stage(
    pipeline: &Pipeline,
    plan: &Plan,
    name: &str,
    device: &Device,
    progress: &dyn Progress,
) -> Result<StageOutcome> {
    let i = plan.stages.iter().position(|s| s.name == name).ok_or_else(|| {
        PipelineError::Plan(format!("no stage is called {name:?}; see `mpt run --dry-run` for the stage names"))
    })?;
    let stage = &plan.stages[i];
    if let StageKind::Provided(dir) = &stage.kind {
        return Err(PipelineError::Plan(format!(
            "stage {name}: a library teacher ({}) is used as it is, not run",
            dir.display()
        )));
    }
    let run_dir = &pipeline.run_dir;
    let mut parent_ids = Vec::with_capacity(stage.deps.len());
    for &d in &stage.deps {
        let dir = plan.artifact_dir(run_dir, d);
        let id = Artifact::read_meta(&dir).map_err(|e| {
            PipelineError::Plan(format!(
                "stage {name} needs {}, which has no artifact at {}: {e}",
                plan.stages[d].name,
                dir.display()
            ))
        })?;
        parent_ids.push(id.id);
    }
    let job = StageJob {
        stage,
        out_dir: plan.artifact_dir(run_dir, i),
        result_path: plan.result_path(run_dir, i),
        parent_dirs: stage.deps.iter().map(|&d| plan.artifact_dir(run_dir, d)).collect(),
        parent_ids,
    };
    let executor = InProcess::new(&pipeline.file.backbone, &pipeline.data_root, device);
    executor.prepare()?;
    executor.execute(&job, progress)
}
