//! Stages as Slurm jobs: the [`Slurm`] executor submits each ready stage with
//! `sbatch --wait` as a batch job that runs `mpt run PIPELINE --stage NAME` (the same binary,
//! against the same run folder, which must be on storage the nodes share) and waits for it.
//! The coordinator submits a stage only when its inputs are done, so dependencies are kept by
//! the coordinator rather than by `--dependency`; with [`crate::run::run_parallel`] up to
//! `--jobs` stages are queued at once and Slurm places them. A failed job is reported with its
//! stage, job id and log; stages that depend on it are not submitted.
//!
//! Resources come from the pipeline's optional `[cluster]` table ([`ClusterConfig`]); none of
//! it is needed on a default Slurm.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use mpt_train::Progress;
use serde::{Deserialize, Serialize};

use crate::error::{PipelineError, Result};
use crate::execute::{Executor, StageJob, StageOutcome};
use crate::subprocess::{Subprocess, stage_log};

/// `[cluster]`: what every stage's job asks Slurm for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// `--partition`.
    pub partition: Option<String>,
    /// `--account`.
    pub account: Option<String>,
    /// `--time` (e.g. `"02:00:00"`).
    pub time: Option<String>,
    /// `--cpus-per-task` (also the job's thread count).
    pub cpus: Option<usize>,
    /// `--mem` (e.g. `"8G"`).
    pub mem: Option<String>,
    /// `--gpus`.
    pub gpus: Option<usize>,
    /// Further `#SBATCH` lines, written as given (e.g. `"--qos=short"`).
    #[serde(default)]
    pub extra: Vec<String>,
}

/// Submits each stage to Slurm and waits for it.
#[derive(Debug, Clone)]
pub struct Slurm {
    /// The command each job runs (binary, pipeline, run folder, device).
    pub stage: Subprocess,
    /// Resources per job.
    pub cluster: ClusterConfig,
    /// The `sbatch` to call (`MPT_SBATCH` or `sbatch` on `PATH`).
    pub sbatch: PathBuf,
}

impl Slurm {
    /// Writes stage `name`'s batch script (`logs/slurm/NAME.sh`) and makes its log folder.
    fn write_script(&self, name: &str) -> Result<PathBuf> {
        let log = stage_log(&self.stage.run_dir, name);
        let script_path = self.stage.run_dir.join("logs").join("slurm").join(format!("{name}.sh"));
        for dir in [log.parent(), script_path.parent()].into_iter().flatten() {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        std::fs::write(&script_path, self.script(name)).map_err(io(&script_path))?;
        Ok(script_path)
    }

    /// Submits stage `name` without waiting, to start once the jobs `after` succeeded
    /// (`--dependency=afterok`; `--kill-on-invalid-dep=yes` cancels it when one of them
    /// fails). Returns the job id.
    pub fn submit(&self, name: &str, after: &[String]) -> Result<String> {
        let mut flags = vec!["--kill-on-invalid-dep=yes".to_string()];
        if !after.is_empty() {
            flags.push(format!("--dependency=afterok:{}", after.join(":")));
        }
        let (out, job_id) = self.sbatch(name, &flags)?;
        if !out.status.success() || job_id.is_empty() {
            return Err(PipelineError::Stage {
                stage: name.to_string(),
                source: format!(
                    "sbatch did not take the job ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                )
                .into(),
            });
        }
        Ok(job_id)
    }

    /// Writes stage `name`'s script and runs `sbatch --parsable FLAGS SCRIPT`; returns its
    /// output and the job id it printed (empty if none).
    fn sbatch(&self, name: &str, flags: &[String]) -> Result<(std::process::Output, String)> {
        let script_path = self.write_script(name)?;
        let out = Command::new(&self.sbatch)
            .arg("--parsable")
            .args(flags)
            .arg(&script_path)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| PipelineError::Io { path: self.sbatch.clone(), source })?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let job_id = stdout.lines().next().unwrap_or("").split(';').next().unwrap_or("").trim().to_string();
        Ok((out, job_id))
    }

    /// The batch script of stage `name`: `#SBATCH` lines, then the stage's command.
    pub fn script(&self, name: &str) -> String {
        let c = &self.cluster;
        let mut lines = vec!["#!/bin/sh".to_string(), format!("#SBATCH --job-name=mpt:{name}")];
        let log = stage_log(&self.stage.run_dir, name);
        lines.push(format!("#SBATCH --output={}", log.display()));
        for (flag, value) in [
            ("partition", c.partition.clone()),
            ("account", c.account.clone()),
            ("time", c.time.clone()),
            ("cpus-per-task", c.cpus.map(|n| n.to_string())),
            ("mem", c.mem.clone()),
            ("gpus", c.gpus.map(|n| n.to_string())),
        ] {
            if let Some(v) = value {
                lines.push(format!("#SBATCH --{flag}={v}"));
            }
        }
        lines.extend(c.extra.iter().map(|e| format!("#SBATCH {e}")));
        if let Some(n) = c.cpus.or(self.stage.threads) {
            lines.push(format!("export RAYON_NUM_THREADS={n} OPENBLAS_NUM_THREADS={n} OMP_NUM_THREADS={n}"));
        }
        let cmd = self.stage.command_line(name);
        lines.push(format!("exec {cmd}"));
        lines.join("\n") + "\n"
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PipelineError + '_ {
    move |source| PipelineError::Io { path: path.to_path_buf(), source }
}

impl Executor for Slurm {
    fn execute(&self, job: &StageJob<'_>, _progress: &dyn Progress) -> Result<StageOutcome> {
        let name = &job.stage.name;
        let log = stage_log(&self.stage.run_dir, name);
        let (out, job_id) = self.sbatch(name, &["--wait".to_string()])?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(PipelineError::Stage {
                stage: name.clone(),
                source: format!(
                    "Slurm job {} ended with {} (sbatch: {}); its log is {}",
                    if job_id.is_empty() { "(not submitted)" } else { &job_id },
                    out.status,
                    stderr.trim(),
                    log.display()
                )
                .into(),
            });
        }
        crate::subprocess::stage_output(job).ok_or_else(|| PipelineError::Stage {
            stage: name.clone(),
            source: format!("Slurm job {job_id} succeeded but left no readable output; its log is {}", log.display())
                .into(),
        })
    }
}
