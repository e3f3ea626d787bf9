//! Stages as Slurm jobs: the [`Slurm`] executor submits each ready stage with
//! `sbatch --wait` as a batch job that runs `mpt run PIPELINE --stage NAME` (the same binary,
//! against the same run folder, which must be on storage the nodes share) and waits for it.
//! The coordinator submits a stage only when its inputs are done, so dependencies are kept by
//! the coordinator rather than by `--dependency`; with [`crate::run::run_parallel`] up to
//! `--jobs` stages are queued at once and Slurm places them. A failed job is reported with its
//! stage, job id and log; stages that depend on it are not submitted.
//!
//! `--detach` submits the whole remaining graph at once ([`crate::run::submit_detached`]):
//! stages of one kind with the same dependencies go as one job array (`--array=0-N`, at most
//! [`MAX_ARRAY`] tasks, task `i` runs the array's `i`-th stage), and a kind whose stages each
//! wait for the matching task of one array (every eval after its adapt) goes as an array with
//! `--dependency=aftercorr:ARRAY`; the others wait with `afterok` on job ids or on array
//! tasks (`JOB_TASK`). Every job has `--kill-on-invalid-dep=yes`, so a failed stage cancels
//! what depends on it.
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
        let script = self.write_script(name)?;
        self.submit_script(name, &script, &Dependency::AfterOk(after.to_vec()))
    }

    /// Submits `names` (stages of one kind, none depending on another) as one job array
    /// without waiting: task `i` runs `names[i]`, its log is that stage's log. The script is
    /// `logs/slurm/LABEL.sh`. Returns the array's job id (task `i` is `ID_i`).
    pub fn submit_array(&self, label: &str, names: &[&str], dependency: &Dependency) -> Result<String> {
        assert!(!names.is_empty() && names.len() <= MAX_ARRAY, "1..={MAX_ARRAY} stages per array");
        let slurm_dir = self.stage.run_dir.join("logs").join("slurm");
        let script_path = slurm_dir.join(format!("{label}.sh"));
        let mut dirs = vec![slurm_dir.clone()];
        dirs.extend(names.iter().filter_map(|n| stage_log(&self.stage.run_dir, n).parent().map(Path::to_path_buf)));
        for dir in &dirs {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        let header = self.header(
            &format!("mpt-array:{label}"),
            &slurm_dir.join(format!("{label}-%a.out")),
            &[format!("--array=0-{}", names.len() - 1)],
        );
        let mut lines = header;
        lines.push("case \"$SLURM_ARRAY_TASK_ID\" in".to_string());
        for (i, name) in names.iter().enumerate() {
            let log = shell_quote(&stage_log(&self.stage.run_dir, name).to_string_lossy());
            lines.push(format!("{i}) exec {} > {log} 2>&1 ;;", self.stage.command_line(name)));
        }
        lines.push("esac".to_string());
        lines.push("echo \"mpt: no stage for array task $SLURM_ARRAY_TASK_ID\" >&2".to_string());
        lines.push("exit 2".to_string());
        std::fs::write(&script_path, lines.join("\n") + "\n").map_err(io(&script_path))?;
        self.submit_script(&format!("{} (array {label})", names[0]), &script_path, dependency)
    }

    /// `sbatch --parsable --kill-on-invalid-dep=yes [--dependency=...] SCRIPT` without waiting;
    /// the job id, or an error naming `what`.
    fn submit_script(&self, what: &str, script: &Path, dependency: &Dependency) -> Result<String> {
        let mut flags = vec!["--kill-on-invalid-dep=yes".to_string()];
        flags.extend(dependency.flag());
        let (out, job_id) = self.sbatch_script(script, &flags)?;
        if !out.status.success() || job_id.is_empty() {
            return Err(PipelineError::Stage {
                stage: what.to_string(),
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
        self.sbatch_script(&script_path, flags)
    }

    fn sbatch_script(&self, script_path: &Path, flags: &[String]) -> Result<(std::process::Output, String)> {
        let out = Command::new(&self.sbatch)
            .arg("--parsable")
            .args(flags)
            .arg(script_path)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| PipelineError::Io { path: self.sbatch.clone(), source })?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let job_id = stdout.lines().next().unwrap_or("").split(';').next().unwrap_or("").trim().to_string();
        Ok((out, job_id))
    }

    /// The batch script of stage `name`: `#SBATCH` lines, then the stage's command.
    pub fn script(&self, name: &str) -> String {
        let mut lines = self.header(&format!("mpt:{name}"), &stage_log(&self.stage.run_dir, name), &[]);
        let cmd = self.stage.command_line(name);
        lines.push(format!("exec {cmd}"));
        lines.join("\n") + "\n"
    }

    /// `#!/bin/sh`, the `#SBATCH` lines (job name, output, `more`, the `[cluster]` table) and
    /// the thread-count exports.
    fn header(&self, job_name: &str, output: &Path, more: &[String]) -> Vec<String> {
        let c = &self.cluster;
        let mut lines = vec!["#!/bin/sh".to_string(), format!("#SBATCH --job-name={job_name}")];
        lines.push(format!("#SBATCH --output={}", output.display()));
        lines.extend(more.iter().map(|m| format!("#SBATCH {m}")));
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
        lines
    }
}

/// Most tasks in one job array (Slurm's default `MaxArraySize` is 1001: indices 0..=1000).
pub const MAX_ARRAY: usize = 1000;

/// What a detached job waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dependency {
    /// These jobs or array tasks (`ID` or `ID_TASK`) succeeded; none when empty.
    AfterOk(Vec<String>),
    /// Task `i` of this job array succeeded, for task `i` of the array being submitted.
    AfterCorr(String),
}

impl Dependency {
    /// The `--dependency=` flag, if any.
    fn flag(&self) -> Option<String> {
        match self {
            Dependency::AfterOk(jobs) if jobs.is_empty() => None,
            Dependency::AfterOk(jobs) => Some(format!("--dependency=afterok:{}", jobs.join(":"))),
            Dependency::AfterCorr(array) => Some(format!("--dependency=aftercorr:{array}")),
        }
    }
}

/// `s` in single quotes for `sh`.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
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
