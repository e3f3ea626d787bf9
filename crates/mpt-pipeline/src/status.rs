//! `mpt status RUN_DIR`: every stage's state, read from the run folder (its copy of the
//! pipeline, the artifacts and results, `logs/run.log`, the lock) and, for a folder the Slurm
//! executor has used (it has `logs/slurm/`) with `squeue` on `PATH`, from Slurm's queue. Writes
//! nothing; safe while a run is going. A folder never run on Slurm does not ask `squeue`, which
//! can take seconds to time out where Slurm is installed but its controller is not running.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::config::Pipeline;
use crate::error::{PipelineError, Result};
use crate::run::{LOCK_FILE, RunLock, Runner, Status, read_state};
use crate::subprocess::stage_log;

/// Where one stage stands.
#[derive(Debug, Clone, PartialEq)]
pub enum StageState {
    /// Its output is there for the same config and inputs (with the wall time recorded).
    Done(Option<f64>),
    /// In Slurm's queue (`PENDING`, `RUNNING`, ...).
    Queued(String),
    /// Begun by the run that holds the folder's lock, not ended.
    Running,
    /// The last run recorded it as failed.
    Failed,
    /// Still to run (why).
    Pending(String),
}

/// One row of the status.
#[derive(Debug, Clone, PartialEq)]
pub struct StageStatus {
    /// Stage name.
    pub name: String,
    /// Its state.
    pub state: StageState,
    /// Its log when it has one (`logs/stages/NAME.log`: stages run with `--jobs` or on Slurm).
    pub log: Option<PathBuf>,
}

/// The run folder's status.
#[derive(Debug, Clone)]
pub struct RunStatus {
    /// The pipeline's name.
    pub name: String,
    /// The pid of the `mpt run` holding the folder, if one does.
    pub holder: Option<Option<u32>>,
    /// Every stage in plan order.
    pub stages: Vec<StageStatus>,
}

/// Reads the status of `run_dir` (a folder `mpt run` wrote: it holds `pipeline.toml`).
pub fn status(run_dir: &Path) -> Result<RunStatus> {
    let copy = run_dir.join("pipeline.toml");
    if !copy.is_file() {
        let why = if run_dir.join(LOCK_FILE).is_file() {
            "not a run folder yet: a run started here and stopped before it copied its pipeline file, \
             so nothing has run (`mpt run PIPELINE` starts it again)"
        } else {
            "not a run folder: `mpt run` copies the pipeline file there when it starts"
        };
        return Err(PipelineError::Io { path: copy, source: std::io::Error::new(std::io::ErrorKind::NotFound, why) });
    }
    let mut pipeline = Pipeline::load(&copy)?;
    pipeline.run_dir = run_dir.to_path_buf();
    let plan = crate::build(&pipeline);
    let holder = RunLock::holder(run_dir);
    let LastRun { begun, failed, submitted } = last_run_log(run_dir);
    let queue = if run_dir.join("logs").join("slurm").is_dir() { slurm_queue() } else { None };
    let state = read_state(run_dir);
    let mut runner = Runner::new(&pipeline, &plan, false)?;
    let statuses = runner.survey();
    let stages = plan
        .stages
        .iter()
        .zip(statuses)
        .map(|(stage, status)| {
            let name = stage.name.clone();
            let log = Some(stage_log(run_dir, &name)).filter(|p| p.is_file());
            let state = match status {
                Status::Done => StageState::Done(state.get(&name).and_then(|r| r.seconds)),
                Status::Pending(why) => {
                    if let Some(q) = queue.as_ref().and_then(|q| q.of(&name, submitted.get(&name).map(String::as_str)))
                    {
                        StageState::Queued(q.clone())
                    } else if holder.is_some() && begun.contains(&name) {
                        StageState::Running
                    } else if failed.contains(&name) {
                        StageState::Failed
                    } else if let Some(job) = submitted.get(&name) {
                        // A detached job: out of the queue without its output means it failed
                        // or was cancelled (a dependency failed); without squeue we cannot tell.
                        match &queue {
                            Some(_) => StageState::Failed,
                            None => StageState::Pending(format!("submitted as Slurm job {job}; squeue not found")),
                        }
                    } else {
                        StageState::Pending(why)
                    }
                }
            };
            StageStatus { name, state, log }
        })
        .collect();
    Ok(RunStatus { name: pipeline.file.name.clone(), holder, stages })
}

/// What `logs/run.log` says of the last run.
struct LastRun {
    /// Stages begun and not ended.
    begun: Vec<String>,
    /// Stages that failed.
    failed: Vec<String>,
    /// Stages submitted as detached Slurm jobs (`--detach`): stage -> job id.
    submitted: BTreeMap<String, String>,
}

/// Reads the last run (from its `start` line on) of `logs/run.log`.
fn last_run_log(run_dir: &Path) -> LastRun {
    let text = std::fs::read_to_string(run_dir.join("logs").join("run.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let last = lines.iter().rposition(|l| l.split_whitespace().nth(1) == Some("start")).unwrap_or(0);
    let (mut begun, mut failed, mut submitted) = (Vec::new(), Vec::new(), BTreeMap::new());
    for line in &lines[last..] {
        let mut words = line.split_whitespace().skip(1);
        match (words.next(), words.next()) {
            (Some("submitted"), Some(name)) => {
                submitted.insert(name.to_string(), words.next().unwrap_or("?").to_string());
            }
            (Some("begin"), Some(name)) => begun.push(name.to_string()),
            (Some("end"), Some(name)) => begun.retain(|b| b != name),
            (Some("failed"), Some(name)) => {
                begun.retain(|b| b != name);
                failed.push(name.to_string());
            }
            _ => {}
        }
    }
    LastRun { begun, failed, submitted }
}

/// This user's Slurm jobs: by job name (`mpt:STAGE`, the jobs of a waiting run and lone
/// detached jobs) and by job id (`ID`, or `ID_TASK` for each task of an array: `squeue -r`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Queue {
    by_name: BTreeMap<String, String>,
    by_id: BTreeMap<String, String>,
}

impl Queue {
    /// The state of stage `name`'s job, found by its job name or by `job` (its id, from
    /// `jobs.json` or `logs/run.log`).
    pub(crate) fn of(&self, name: &str, job: Option<&str>) -> Option<&String> {
        self.by_name.get(name).or_else(|| job.and_then(|j| self.by_id.get(j)))
    }
}

/// This user's jobs (`squeue -h --me -r -o %i|%j|%T`); `None` when `squeue` cannot be run (not
/// installed, or the controller does not answer).
pub(crate) fn slurm_queue() -> Option<Queue> {
    let squeue = std::env::var_os("MPT_SQUEUE").unwrap_or_else(|| "squeue".into());
    let out = Command::new(squeue).args(["-h", "--me", "-r", "-o", "%i|%j|%T"]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let mut queue = Queue::default();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut parts = line.split('|').map(str::trim);
        let (Some(id), Some(job), Some(state)) = (parts.next(), parts.next(), parts.next()) else { continue };
        if let Some(stage) = job.strip_prefix("mpt:") {
            queue.by_name.insert(stage.to_string(), state.to_string());
        }
        queue.by_id.insert(id.to_string(), state.to_string());
    }
    Some(queue)
}

impl RunStatus {
    /// The text `mpt status` prints.
    pub fn render(&self, run_dir: &Path) -> String {
        let mut out = format!("{} in {}: ", self.name, run_dir.display());
        out += &match self.holder {
            Some(Some(pid)) => format!("a run is in progress (pid {pid}, {LOCK_FILE})\n"),
            Some(None) => format!("a run is in progress ({LOCK_FILE})\n"),
            None => "no run in progress\n".into(),
        };
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for s in &self.stages {
            let (word, detail) = match &s.state {
                StageState::Done(Some(secs)) => ("done", format!("{secs:.1}s")),
                StageState::Done(None) => ("done", String::new()),
                StageState::Queued(q) => ("queued", format!("Slurm {q}")),
                StageState::Running => ("running", String::new()),
                StageState::Failed => ("failed", String::new()),
                StageState::Pending(why) => ("pending", why.clone()),
            };
            *counts.entry(word).or_default() += 1;
            let log = match (&s.state, &s.log) {
                (StageState::Done(_) | StageState::Pending(_), _) | (_, None) => String::new(),
                (_, Some(log)) => format!("  log: {}", log.display()),
            };
            out += &format!("  {:<48} {word:<8} {detail}{log}\n", s.name);
        }
        let summary: Vec<String> = counts.iter().map(|(w, n)| format!("{n} {w}")).collect();
        out += &format!("{} stages: {}\n", self.stages.len(), summary.join(", "));
        out
    }
}
