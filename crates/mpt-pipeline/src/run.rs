//! Running a plan: each stage is skipped when its artifact (or result) already exists for
//! the same config and parents, so a killed run resumes where it stopped; `--only` and
//! `--force` select stages by name or prefix (`teacher`, `adapt/mpt`, `adapt/mpt/rte/k16-s0`).
//!
//! [`run`] is plan → schedule → execute: the plan's statuses (the dry run prints them), a
//! [`Scheduler`] over the stage graph's ready set, and an [`Executor`] that runs each stage.
//! The coordinator ([`run_with`]) holds the run folder's lock and is the only writer of the run
//! state (`state.json`, `logs/run.log`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use burn::prelude::*;
use mpt_core::{Artifact, BackboneRef, InUse};
use mpt_models::{ModelConfig, ModelFiles};
use mpt_train::Progress;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Pipeline;
use crate::error::{PipelineError, Result};
use crate::execute::{Executor, InProcess, StageJob, StageOutcome};
use crate::plan::{Plan, StageKind};
use crate::schedule::Scheduler;

/// How `mpt run` was asked to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Print the plan, run nothing.
    pub dry_run: bool,
    /// Run only stages matching one of these.
    pub only: Vec<String>,
    /// Rerun stages matching one of these even when done.
    pub force: Vec<String>,
}

impl RunOptions {
    /// Whether stage `name` is selected (no `--only`, or one matches).
    pub fn selects(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|p| matches(name, p))
    }

    /// Whether stage `name` is forced (a `--force` matches).
    pub fn forces(&self, name: &str) -> bool {
        self.force.iter().any(|p| matches(name, p))
    }

    /// Every `--only`/`--force` pattern matches some stage of `plan`.
    pub(crate) fn check_patterns(&self, plan: &Plan) -> Result<()> {
        for pattern in self.only.iter().chain(&self.force) {
            if !plan.stages.iter().any(|s| matches(&s.name, pattern)) {
                return Err(PipelineError::Plan(format!(
                    "no stage matches {pattern:?}; see `mpt run --dry-run` for the stage names"
                )));
            }
        }
        Ok(())
    }
}

/// What the caller shows while stages run.
pub trait Ui {
    /// Progress reporter for a training stage.
    fn progress(&self) -> &dyn Progress;
    /// A stage begins (`index` of `total` stages that will run).
    fn stage_start(&self, index: usize, total: usize, name: &str);
    /// A stage ended.
    fn stage_end(&self, name: &str, seconds: f64, outcome: &str);
}

/// A stage's state before running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Output present for the same inputs.
    Done,
    /// Must run (why).
    Pending(String),
}

/// Per-stage record kept in `state.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StageRecord {
    /// Wall time of the last run; `None` when a run found the stage's output already there
    /// without a record (its own run was interrupted between writing it and recording it).
    #[serde(default)]
    pub seconds: Option<f64>,
    /// Unix time it finished.
    pub finished_at: u64,
    /// Artifact id or result key.
    pub output: String,
}

/// Result file of an eval stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultFile {
    /// sha256 of the eval config and the artifact id.
    pub key: String,
    /// Stage name.
    pub stage: String,
    /// The evaluation.
    pub result: mpt_eval::EvalResult,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PipelineError + '_ {
    move |source| PipelineError::Io { path: path.to_path_buf(), source }
}

/// Whether `name` is selected by `pattern` (exact, `/`-prefix, or stage kind).
pub fn matches(name: &str, pattern: &str) -> bool {
    let pattern = pattern.trim_end_matches('/');
    name == pattern || name.starts_with(&format!("{pattern}/"))
}

/// The key of an eval stage's result: sha256 of its config and the evaluated artifact's id.
pub(crate) fn eval_key(config: &mpt_eval::EvalConfig, artifact_id: &str) -> String {
    let mut h = Sha256::new();
    h.update(serde_json::to_string(config).expect("config serialises").as_bytes());
    h.update(artifact_id.as_bytes());
    hex::encode(h.finalize())
}

/// The state file of a run folder.
pub fn read_state(run_dir: &Path) -> BTreeMap<String, StageRecord> {
    std::fs::read(run_dir.join("state.json")).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

pub(crate) fn write_state(run_dir: &Path, state: &BTreeMap<String, StageRecord>) -> Result<()> {
    let path = run_dir.join("state.json");
    mpt_models::io::write_atomic(&path, &serde_json::to_vec_pretty(state).expect("state serialises"))?;
    Ok(())
}

/// A run in progress: the plan, where things live, and the ids of finished stages.
pub struct Runner<'a> {
    pipeline: &'a Pipeline,
    plan: &'a Plan,
    /// The backbone and its hidden size; None when the backbone folder is absent (a dry run
    /// can still show the plan).
    pub(crate) backbone: Option<(BackboneRef, usize)>,
    pub(crate) outputs: Vec<Option<String>>,
}

impl<'a> Runner<'a> {
    /// Prepares a run (computes the backbone fingerprint, not the weights). With
    /// `require_backbone = false` a missing backbone folder is tolerated (dry runs).
    pub fn new(pipeline: &'a Pipeline, plan: &'a Plan, require_backbone: bool) -> Result<Self> {
        let backbone = match ModelFiles::locate(&pipeline.file.backbone) {
            Ok(files) => {
                let config = ModelConfig::read(&files.config)?;
                Some((BackboneRef::new(config.arch(), &mpt_models::fingerprint(&files)?), config.dim()))
            }
            Err(e) if require_backbone => return Err(e.into()),
            Err(_) => None,
        };
        Ok(Self { pipeline, plan, backbone, outputs: vec![None; plan.stages.len()] })
    }

    pub(crate) fn run_dir(&self) -> &Path {
        &self.pipeline.run_dir
    }

    pub(crate) fn parent_ids(&self, i: usize) -> Option<Vec<String>> {
        self.plan.stages[i].deps.iter().map(|&d| self.outputs[d].clone()).collect()
    }

    /// Status of stage `i` given the outputs of its dependencies found so far.
    pub fn status(&self, i: usize) -> Status {
        let stage = &self.plan.stages[i];
        let Some(parents) = self.parent_ids(i) else {
            return Status::Pending("an input stage has not run".into());
        };
        match &stage.kind {
            StageKind::Eval(config) => {
                let path = self.plan.result_path(self.run_dir(), i);
                let Some(file) = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice::<ResultFile>(&b).ok())
                else {
                    return Status::Pending("no result yet".into());
                };
                if file.key == eval_key(config, &parents[0]) {
                    Status::Done
                } else {
                    Status::Pending("result is for another config or artifact".into())
                }
            }
            kind => {
                let Some((backbone, dim)) = &self.backbone else {
                    return Status::Pending("backbone folder not found".into());
                };
                let dir = self.plan.artifact_dir(self.run_dir(), i);
                if !dir.join(mpt_core::artifact::META_FILE).is_file() {
                    return Status::Pending("no artifact yet".into());
                }
                let artifact = match Artifact::load(&dir, None, Some(InUse { backbone, dim: *dim })) {
                    Ok(a) => a,
                    Err(e) => return Status::Pending(format!("existing artifact unusable: {e}")),
                };
                if let StageKind::Provided(_) = kind {
                    return if artifact.meta.kind == mpt_core::ArtifactKind::Teacher {
                        Status::Done
                    } else {
                        Status::Pending(format!("{} is not a teacher artifact", dir.display()))
                    };
                }
                let config = match kind {
                    StageKind::Provided(_) => unreachable!("returned above"),
                    StageKind::Teacher(c) => serde_json::to_value(c),
                    StageKind::Distill(c) => serde_json::to_value(c),
                    StageKind::Adapt(c) => serde_json::to_value(c),
                    StageKind::Eval(_) => unreachable!(),
                }
                .expect("configs serialise");
                if artifact.meta.config != config {
                    Status::Pending("artifact was made with another config".into())
                } else if artifact.meta.parents != parents {
                    Status::Pending("artifact was made from other inputs".into())
                } else {
                    Status::Done
                }
            }
        }
    }

    /// The error for stage `i` when an input has no output (with `--only`, an unselected input
    /// that has not run).
    fn missing_inputs(&self, i: usize) -> PipelineError {
        let stage = &self.plan.stages[i];
        let missing: Vec<&str> = stage
            .deps
            .iter()
            .filter(|&&d| self.outputs[d].is_none())
            .map(|&d| self.plan.stages[d].name.as_str())
            .collect();
        PipelineError::Plan(format!(
            "stage {} needs {}, which has not run; run without --only first",
            stage.name,
            missing.join(", ")
        ))
    }

    pub(crate) fn output_of(&self, i: usize) -> Option<String> {
        match &self.plan.stages[i].kind {
            StageKind::Eval(_) => std::fs::read(self.plan.result_path(self.run_dir(), i))
                .ok()
                .and_then(|b| serde_json::from_slice::<ResultFile>(&b).ok())
                .map(|f| f.key),
            _ => Artifact::read_meta(&self.plan.artifact_dir(self.run_dir(), i)).ok().map(|m| m.id),
        }
    }

    /// Statuses of every stage as the run would find them (the dry-run view).
    pub fn survey(&mut self) -> Vec<Status> {
        let mut out = Vec::with_capacity(self.plan.stages.len());
        for i in 0..self.plan.stages.len() {
            let status = self.status(i);
            self.outputs[i] = if status == Status::Done { self.output_of(i) } else { None };
            out.push(status);
        }
        out
    }
}

/// Removes what interrupted writes left in `run_dir`: `.NAME.tmp-PID` files of
/// [`mpt_models::io::write_atomic`] (`state.json`, `pipeline.toml`, `report.json`, result files)
/// and `.NAME.tmp-PID` / `.NAME.old-PID` folders of artifact writes, in the run folder itself
/// and, recursively, in the folders a run writes (`artifacts`, `results`, `logs`, `plots`).
/// Called with the run folder's lock held, so no live run's temp file is touched.
fn sweep_run_dir(run_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(run_dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if is_temp_name(&name) {
            let _ = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        }
    }
    for sub in ["artifacts", "results", "logs", "plots"] {
        remove_stale_temps(&run_dir.join(sub));
    }
}

/// `.NAME.tmp-PID` or `.NAME.old-PID`.
fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && (name.contains(".tmp-") || name.contains(".old-"))
}

fn remove_stale_temps(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if is_temp_name(&name) {
            let _ = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        } else if path.is_dir() {
            remove_stale_temps(&path);
        }
    }
}

/// The lock file of a run folder.
pub const LOCK_FILE: &str = ".run.lock";

/// A run folder held by this process: an exclusive advisory lock (`flock`) on
/// [`LOCK_FILE`], which holds the holder's pid. The kernel drops the lock when the holder
/// exits, however it exits, so the lock of a killed run is taken over by the next one; the file
/// itself stays. Released on drop.
#[derive(Debug)]
pub struct RunLock {
    _file: std::fs::File,
}

impl RunLock {
    /// Whether a process holds `run_dir`'s lock (`Some(pid)` as its lock file records it),
    /// found with a shared lock taken and dropped at once; writes nothing.
    pub fn holder(run_dir: &Path) -> Option<Option<u32>> {
        let path = run_dir.join(LOCK_FILE);
        let file = std::fs::File::open(&path).ok()?;
        match file.try_lock_shared() {
            Ok(()) => None,
            Err(_) => Some(std::fs::read_to_string(&path).ok().and_then(|t| t.trim().parse().ok())),
        }
    }

    /// Takes the lock of `run_dir` (creating the folder), or fails with
    /// [`PipelineError::Locked`] naming the holder's pid while another process holds it.
    pub fn acquire(run_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(run_dir).map_err(io(run_dir))?;
        let path = run_dir.join(LOCK_FILE);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                return Err(PipelineError::Locked {
                    path: run_dir.to_path_buf(),
                    lock: path,
                    pid: text.trim().parse().ok(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&path)(e)),
        }
        let pid = format!("{}\n", std::process::id());
        file.set_len(0).map_err(io(&path))?;
        file.write_all(pid.as_bytes()).map_err(io(&path))?;
        file.sync_all().map_err(io(&path))?;
        Ok(Self { _file: file })
    }
}

/// Checks the data selection of every stage (`[data]` and its `sources.data`, `distill.data`,
/// `targets.data` overrides) with [`mpt_train::Selection::validate`], the check the stage
/// commands apply to their flags, so values that could only fail once the data is loaded
/// (`max_train = 0`, `max_dev = 0`) are refused before any work, dry runs included, naming the
/// key that set them.
pub fn check_data(pipeline: &Pipeline) -> Result<()> {
    let f = &pipeline.file;
    for (section, table, data) in [
        ("sources.data", &f.sources.data, &pipeline.teacher_data),
        ("distill.data", &f.distill.data, &pipeline.distill_data),
        ("targets.data", &f.targets.data, &pipeline.target_data),
    ] {
        data.validate("").map_err(|e| {
            let (key, message) = match e {
                mpt_train::TrainError::Config { field, message } => {
                    let from = if table.contains_key(&field) { section } else { "data" };
                    (format!("{from}.{field}"), message)
                }
                other => (section.to_string(), other.to_string()),
            };
            PipelineError::Invalid { path: pipeline.path.clone(), key, message }
        })?;
    }
    Ok(())
}

pub(crate) fn log_line(run_dir: &Path, line: &str) {
    let path = run_dir.join("logs").join("run.log");
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(&path) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let _ = writeln!(f, "{now} {line}");
    }
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    /// Stages that ran.
    pub ran: Vec<String>,
    /// Stages skipped because they were done.
    pub skipped: Vec<String>,
    /// Stages not selected by `--only`.
    pub unselected: Vec<String>,
    /// The report files.
    pub report: Option<PathBuf>,
}

/// Runs (or, with `dry_run`, describes) `plan`, every stage in this process ([`InProcess`]).
pub fn run(pipeline: &Pipeline, plan: &Plan, options: &RunOptions, device: &Device, ui: &dyn Ui) -> Result<RunSummary> {
    let executor = InProcess::new(&pipeline.file.backbone, &pipeline.data_root, device);
    run_with(pipeline, plan, options, &executor, ui)
}

/// Runs (or, with `dry_run`, describes) `plan`, each stage that must run handed to `executor`:
/// the statuses of the plan, then stages in the [`Scheduler`]'s order, each settled by the
/// coordinator (not selected, already done, or executed and recorded), then the report.
pub fn run_with(
    pipeline: &Pipeline,
    plan: &Plan,
    options: &RunOptions,
    executor: &dyn Executor,
    ui: &dyn Ui,
) -> Result<RunSummary> {
    let Some(mut coordinator) = open(pipeline, plan, options)? else {
        return Ok(RunSummary::default());
    };
    let mut schedule = Scheduler::for_plan(plan);
    while let Some(i) = schedule.next_ready() {
        if let Err(e) = coordinator.step(i, executor, ui) {
            log_line(&pipeline.run_dir, &format!("failed {}", plan.stages[i].name));
            return Err(e);
        }
        schedule.settle(i);
    }
    check_settled(plan, &schedule)?;
    coordinator.finish()
}

/// The checks every run makes, then the dry-run view (None) or the coordinator of a real run.
fn open<'a>(pipeline: &'a Pipeline, plan: &'a Plan, options: &'a RunOptions) -> Result<Option<Coordinator<'a>>> {
    options.check_patterns(plan)?;
    check_data(pipeline)?;
    let mut runner = Runner::new(pipeline, plan, !options.dry_run)?;
    if options.dry_run {
        print_dry_run(&mut runner, options);
        return Ok(None);
    }
    Coordinator::open(runner, options).map(Some)
}

fn check_settled(plan: &Plan, schedule: &Scheduler) -> Result<()> {
    match schedule.unsettled().first() {
        Some(&i) => {
            Err(PipelineError::Plan(format!("stage {} waits on inputs that never finish", plan.stages[i].name)))
        }
        None => Ok(()),
    }
}

/// As [`run_with`], with up to `jobs` stages executing at once: the coordinator (this thread)
/// hands each ready stage to `executor` on its own thread and records outcomes as they arrive,
/// so it stays the only writer of the run state. After a failure no further stage starts;
/// the running ones finish and are recorded, then the first error is returned (the stages
/// that depend on the failed one never start). `jobs <= 1` is [`run_with`].
pub fn run_parallel(
    pipeline: &Pipeline,
    plan: &Plan,
    options: &RunOptions,
    executor: &(dyn Executor + Sync),
    ui: &dyn Ui,
    jobs: usize,
) -> Result<RunSummary> {
    if jobs <= 1 {
        return run_with(pipeline, plan, options, executor, ui);
    }
    let Some(mut coordinator) = open(pipeline, plan, options)? else {
        return Ok(RunSummary::default());
    };
    let mut schedule = Scheduler::for_plan(plan);
    let mut failure: Option<PipelineError> = None;
    std::thread::scope(|scope| {
        let (done_tx, done_rx) = std::sync::mpsc::channel::<(usize, Result<StageOutcome>, f64)>();
        let mut running = 0usize;
        loop {
            while failure.is_none() && running < jobs {
                let Some(i) = schedule.next_ready() else { break };
                match coordinator.begin(i, executor, ui) {
                    Ok(Next::Settled) => schedule.settle(i),
                    Ok(Next::Run(job, t0)) => {
                        running += 1;
                        let done_tx = done_tx.clone();
                        scope.spawn(move || {
                            let outcome = executor.execute(&job, &mpt_train::Silent);
                            let _ = done_tx.send((i, outcome, t0.elapsed().as_secs_f64()));
                        });
                    }
                    Err(e) => failure = Some(e),
                }
            }
            if running == 0 {
                break;
            }
            let (i, outcome, seconds) = done_rx.recv().expect("a running stage reports back");
            running -= 1;
            let recorded = outcome.and_then(|o| coordinator.end(i, o.output, seconds, ui));
            match recorded {
                Ok(()) => schedule.settle(i),
                Err(e) => {
                    ui.stage_end(&plan.stages[i].name, seconds, "failed");
                    log_line(&pipeline.run_dir, &format!("failed {}", plan.stages[i].name));
                    failure.get_or_insert(e);
                }
            }
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    check_settled(plan, &schedule)?;
    coordinator.finish()
}

/// `mpt run --executor slurm --detach`: submits every stage that must run as a Slurm job at
/// once, each waiting (`afterok` / `aftercorr`) for the jobs of its inputs submitted with it,
/// stages of one kind with the same inputs as job arrays (see [`crate::slurm`]); writes stage ->
/// job (`ID` or `ID_TASK`) to `logs/slurm/jobs.json` and returns without waiting. Nothing
/// records the jobs' outcomes in `state.json` meanwhile; `mpt status` follows them, and a later
/// `mpt run` finds their artifacts done and writes the report. Returns `(stage, job)` in plan
/// order.
pub fn submit_detached(
    pipeline: &Pipeline,
    plan: &Plan,
    options: &RunOptions,
    slurm: &crate::slurm::Slurm,
) -> Result<Vec<(String, String)>> {
    options.check_patterns(plan)?;
    check_data(pipeline)?;
    let mut runner = Runner::new(pipeline, plan, true)?;
    let _lock = RunLock::acquire(&pipeline.run_dir)?;
    let jobs_path = pipeline.run_dir.join("logs").join("slurm").join("jobs.json");
    let earlier: BTreeMap<String, String> =
        std::fs::read(&jobs_path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    open_run_dir(pipeline)?;
    let statuses = runner.survey();
    let mut to_submit = Vec::new();
    for (i, stage) in plan.stages.iter().enumerate() {
        let runs = options.selects(&stage.name) && (options.forces(&stage.name) || statuses[i] != Status::Done);
        if !runs {
            continue;
        }
        if let StageKind::Provided(dir) = &stage.kind {
            provided_output(&stage.name, dir, &statuses[i], runner.output_of(i))?;
            continue;
        }
        if stage.deps.iter().any(|&d| runner.outputs[d].is_none() && !to_submit.contains(&d)) {
            return Err(runner.missing_inputs(i));
        }
        to_submit.push(i);
    }
    // Nothing is submitted twice: a stage still queued from an earlier submission (by its job
    // name, or by the job or array task jobs.json gave it) stops this one before any job is sent.
    let queue = crate::status::slurm_queue().unwrap_or_default();
    for &i in &to_submit {
        let name = &plan.stages[i].name;
        let queued = queue.of(name, earlier.get(name).map(String::as_str));
        if let Some(state) = queued {
            return Err(PipelineError::Stage {
                stage: name.clone(),
                source: format!(
                    "already in Slurm's queue ({state}, job {}): wait for it (`mpt status`) or scancel it",
                    earlier.get(name).map_or_else(|| format!("name mpt:{name}"), Clone::clone)
                )
                .into(),
            });
        }
    }
    let jobs = submit_graph(plan, &to_submit, slurm, &pipeline.run_dir)?;
    let submitted: Vec<(String, String)> =
        to_submit.iter().map(|&i| (plan.stages[i].name.clone(), jobs[i].clone().expect("submitted"))).collect();
    if let Some(parent) = jobs_path.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let map: BTreeMap<&str, &str> = submitted.iter().map(|(s, j)| (s.as_str(), j.as_str())).collect();
    mpt_models::io::write_atomic(&jobs_path, &serde_json::to_vec_pretty(&map).expect("job ids serialise"))?;
    Ok(submitted)
}

/// Submits the stages `to_submit` (in plan order, inputs first) level by level: level 0 has no
/// input among them, level `n` waits for level `n - 1` at most. At each level, stages of one
/// kind (`teacher`, `adapt`, ...) waiting for the same jobs go as one array (chunks of
/// [`crate::slurm::MAX_ARRAY`]); a kind whose stages each wait for a different task of one
/// array, covering the whole array, goes as an array with `aftercorr`. Returns each stage's job
/// (`ID` for a lone job, `ID_TASK` for an array task), `None` for stages not submitted.
fn submit_graph(
    plan: &Plan,
    to_submit: &[usize],
    slurm: &crate::slurm::Slurm,
    run_dir: &Path,
) -> Result<Vec<Option<String>>> {
    use crate::slurm::{Dependency, MAX_ARRAY};
    let n = plan.stages.len();
    let mut jobs: Vec<Option<String>> = vec![None; n];
    // Array job id -> its size, for aftercorr.
    let mut arrays: BTreeMap<String, usize> = BTreeMap::new();
    let mut level = vec![0usize; n];
    for &i in to_submit {
        level[i] =
            plan.stages[i].deps.iter().filter(|d| to_submit.contains(d)).map(|&d| level[d] + 1).max().unwrap_or(0);
    }
    let max_level = to_submit.iter().map(|&i| level[i]).max().unwrap_or(0);
    for l in 0..=max_level {
        let mut groups: Vec<Group> = Vec::new();
        for &i in to_submit.iter().filter(|&&i| level[i] == l) {
            let stage = &plan.stages[i];
            let kind = stage.name.split('/').next().unwrap_or(&stage.name);
            let after: Vec<String> = stage.deps.iter().filter_map(|&d| jobs[d].clone()).collect();
            match groups.iter_mut().find(|g| g.kind == kind && g.after == after) {
                Some(g) => g.members.push(i),
                None => groups.push(Group { kind, after, members: vec![i] }),
            }
        }
        let mut corr: Vec<Corr> = Vec::new();
        let mut rest = Vec::new();
        for g in groups {
            let task = match (g.members.as_slice(), g.after.as_slice()) {
                ([i], [job]) => {
                    job.rsplit_once('_').and_then(|(a, t)| Some((a.to_string(), t.parse::<usize>().ok()?, *i)))
                }
                _ => None,
            };
            match task {
                Some((array, t, i)) => match corr.iter_mut().find(|c| c.kind == g.kind && c.array == array) {
                    Some(c) => c.tasks.push((t, i)),
                    None => corr.push(Corr { kind: g.kind, array, tasks: vec![(t, i)] }),
                },
                None => rest.push(g),
            }
        }
        let mut counter = 0;
        let mut label = |kind: &str| {
            counter += 1;
            format!("array-{l}-{kind}-{counter}")
        };
        for Corr { kind, array, tasks: mut list } in corr {
            list.sort();
            let covers = arrays.get(&array) == Some(&list.len()) && list.iter().enumerate().all(|(k, (t, _))| k == *t);
            if covers && list.len() > 1 {
                let names: Vec<&str> = list.iter().map(|&(_, i)| plan.stages[i].name.as_str()).collect();
                let id = slurm.submit_array(&label(kind), &names, &Dependency::AfterCorr(array.clone()))?;
                record_array(
                    run_dir,
                    &id,
                    &list.iter().map(|&(_, i)| i).collect::<Vec<_>>(),
                    plan,
                    &mut jobs,
                    &mut arrays,
                );
            } else {
                for (t, i) in list {
                    rest.push(Group { kind, after: vec![format!("{array}_{t}")], members: vec![i] });
                }
            }
        }
        for Group { kind, after, members } in rest {
            if let [i] = members.as_slice() {
                let id = slurm.submit(&plan.stages[*i].name, &after)?;
                log_line(run_dir, &format!("submitted {} {id}", plan.stages[*i].name));
                jobs[*i] = Some(id);
                continue;
            }
            for chunk in members.chunks(MAX_ARRAY) {
                let names: Vec<&str> = chunk.iter().map(|&i| plan.stages[i].name.as_str()).collect();
                let id = slurm.submit_array(&label(kind), &names, &Dependency::AfterOk(after.clone()))?;
                record_array(run_dir, &id, chunk, plan, &mut jobs, &mut arrays);
            }
        }
    }
    Ok(jobs)
}

/// Stages of one level and kind that wait for the same jobs, in plan order.
struct Group<'a> {
    kind: &'a str,
    after: Vec<String>,
    members: Vec<usize>,
}

/// Lone stages of one kind, each after a different task of `array`: (task, stage).
struct Corr<'a> {
    kind: &'a str,
    array: String,
    tasks: Vec<(usize, usize)>,
}

/// Records array `id`'s tasks: stage `members[t]` is job `ID_t`.
fn record_array(
    run_dir: &Path,
    id: &str,
    members: &[usize],
    plan: &Plan,
    jobs: &mut [Option<String>],
    arrays: &mut BTreeMap<String, usize>,
) {
    arrays.insert(id.to_string(), members.len());
    for (t, &i) in members.iter().enumerate() {
        let job = format!("{id}_{t}");
        log_line(run_dir, &format!("submitted {} {job}", plan.stages[i].name));
        jobs[i] = Some(job);
    }
}

/// What the coordinator decided for a stage.
enum Next<'a> {
    /// Nothing to execute: not selected, done, or a library teacher (recorded).
    Settled,
    /// Hand this job to an executor; the stage started at this instant.
    Run(StageJob<'a>, Instant),
}

/// The one writer of a run's state: holds the run folder's lock, decides what each stage
/// needs, and records what ran in `state.json` and `logs/run.log`.
struct Coordinator<'a> {
    runner: Runner<'a>,
    options: &'a RunOptions,
    state: BTreeMap<String, StageRecord>,
    summary: RunSummary,
    /// Stages that will run (for `[i/total]`), and how many have started.
    total: usize,
    started: usize,
    _lock: RunLock,
}

impl<'a> Coordinator<'a> {
    /// Takes the run folder's lock, readies the folder and finds what is already done.
    fn open(mut runner: Runner<'a>, options: &'a RunOptions) -> Result<Self> {
        let (pipeline, plan) = (runner.pipeline, runner.plan);
        let lock = RunLock::acquire(&pipeline.run_dir)?;
        open_run_dir(pipeline)?;
        let state = read_state(&pipeline.run_dir);
        let statuses = runner.survey();
        let total = plan
            .stages
            .iter()
            .zip(&statuses)
            .filter(|(s, st)| options.selects(&s.name) && (options.forces(&s.name) || **st != Status::Done))
            .count();
        Ok(Self { runner, options, state, summary: RunSummary::default(), total, started: 0, _lock: lock })
    }

    /// Settles stage `i` (its inputs settled): not selected, already done, or run by
    /// `executor` and recorded.
    fn step(&mut self, i: usize, executor: &dyn Executor, ui: &dyn Ui) -> Result<()> {
        let Next::Run(job, t0) = self.begin(i, executor, ui)? else {
            return Ok(());
        };
        let outcome = executor.execute(&job, ui.progress())?;
        self.end(i, outcome.output, t0.elapsed().as_secs_f64(), ui)
    }

    /// The coordinator's part before stage `i` runs: settles it at once when it is not
    /// selected, already done or a library teacher; otherwise announces it and returns the job
    /// for an executor.
    fn begin(&mut self, i: usize, executor: &dyn Executor, ui: &dyn Ui) -> Result<Next<'a>> {
        let (pipeline, plan) = (self.runner.pipeline, self.runner.plan);
        let stage = &plan.stages[i];
        let status = self.runner.status(i);
        if !self.options.selects(&stage.name) {
            self.runner.outputs[i] = if status == Status::Done { self.runner.output_of(i) } else { None };
            self.summary.unselected.push(stage.name.clone());
            return Ok(Next::Settled);
        }
        if status == Status::Done && !self.options.forces(&stage.name) {
            self.runner.outputs[i] = self.runner.output_of(i);
            self.summary.skipped.push(stage.name.clone());
            // An output made by a run stopped before it recorded it: recorded now (no wall time).
            if let Some(output) = self.runner.outputs[i].clone()
                && self.state.get(&stage.name).is_none_or(|r| r.output != output)
            {
                let finished_at = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
                self.state.insert(stage.name.clone(), StageRecord { seconds: None, finished_at, output });
                write_state(&pipeline.run_dir, &self.state)?;
            }
            return Ok(Next::Settled);
        }
        let parents = self.runner.parent_ids(i).ok_or_else(|| self.runner.missing_inputs(i))?;
        executor.prepare()?;
        self.started += 1;
        ui.stage_start(self.started, self.total, &stage.name);
        let run_dir = &pipeline.run_dir;
        log_line(run_dir, &format!("begin {}", stage.name));
        let t0 = Instant::now();
        if let StageKind::Provided(dir) = &stage.kind {
            let output = provided_output(&stage.name, dir, &status, self.runner.output_of(i))?;
            self.end(i, output, t0.elapsed().as_secs_f64(), ui)?;
            return Ok(Next::Settled);
        }
        let job = StageJob {
            stage,
            out_dir: plan.artifact_dir(run_dir, i),
            result_path: plan.result_path(run_dir, i),
            parent_dirs: stage.deps.iter().map(|&d| plan.artifact_dir(run_dir, d)).collect(),
            parent_ids: parents,
        };
        Ok(Next::Run(job, t0))
    }

    /// The coordinator's part after stage `i` made `output` in `seconds`: records it.
    fn end(&mut self, i: usize, output: String, seconds: f64, ui: &dyn Ui) -> Result<()> {
        let name = self.runner.plan.stages[i].name.clone();
        self.record(i, output, seconds)?;
        ui.stage_end(&name, seconds, "done");
        self.summary.ran.push(name);
        Ok(())
    }

    /// Records that stage `i` made `output` in `seconds`.
    fn record(&mut self, i: usize, output: String, seconds: f64) -> Result<()> {
        let run_dir = &self.runner.pipeline.run_dir;
        let name = &self.runner.plan.stages[i].name;
        self.runner.outputs[i] = Some(output.clone());
        self.state.insert(
            name.clone(),
            StageRecord {
                seconds: Some(seconds),
                finished_at: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
                output,
            },
        );
        write_state(run_dir, &self.state)?;
        log_line(run_dir, &format!("end {name} {seconds:.1}s"));
        Ok(())
    }

    /// Writes the report; the lock is released on return.
    fn finish(mut self) -> Result<RunSummary> {
        let pipeline = self.runner.pipeline;
        let (backbone, _) = self.runner.backbone.clone().expect("a real run requires the backbone");
        let report = crate::report::write(pipeline, self.runner.plan, &backbone)?;
        log_line(&pipeline.run_dir, &format!("report {}", report.display()));
        self.summary.report = Some(report);
        Ok(self.summary)
    }
}

/// Prints the plan with what a run would do with each stage (the `--dry-run` view).
fn print_dry_run(runner: &mut Runner<'_>, options: &RunOptions) {
    let (pipeline, plan) = (runner.pipeline, runner.plan);
    let statuses = runner.survey();
    println!("plan for {} ({} stages) in {}", pipeline.file.name, plan.stages.len(), pipeline.run_dir.display());
    if runner.backbone.is_none() {
        println!(
            "  (backbone folder {} not found: a real run needs it; statuses below assume nothing has run)",
            pipeline.file.backbone.display()
        );
    }
    for (stage, status) in plan.stages.iter().zip(statuses) {
        let what = match (&status, options.forces(&stage.name), options.selects(&stage.name)) {
            (_, _, false) => "skip (not selected)".to_string(),
            (_, true, true) => "run (forced)".to_string(),
            (Status::Done, _, _) => "done".to_string(),
            (Status::Pending(why), _, _) => format!("run ({why})"),
        };
        println!("  {:<48} {what}", stage.name);
    }
}

/// Readies a locked run folder: leftovers of interrupted writes removed, the output folders
/// made, the pipeline file copied in, the start logged.
pub(crate) fn open_run_dir(pipeline: &Pipeline) -> Result<()> {
    let run_dir = &pipeline.run_dir;
    sweep_run_dir(run_dir);
    for sub in ["artifacts", "results", "logs"] {
        let d = run_dir.join(sub);
        std::fs::create_dir_all(&d).map_err(io(&d))?;
    }
    let copy = run_dir.join("pipeline.toml");
    mpt_models::io::write_atomic(&copy, pipeline.text.as_bytes())?;
    log_line(run_dir, &format!("start {} ({})", pipeline.file.name, pipeline.path.display()));
    Ok(())
}

/// The output of a library teacher (`sources.from`): its artifact id, used as it is (never
/// retrained, even when forced), or an error when the library has no usable teacher there.
fn provided_output(stage: &str, dir: &Path, status: &Status, id: Option<String>) -> Result<String> {
    match (status, id) {
        (Status::Done, Some(id)) => Ok(id),
        (Status::Pending(why), _) => Err(PipelineError::Plan(format!(
            "stage {stage}: the source-prompt library has no usable teacher at {}: {why}",
            dir.display()
        ))),
        (Status::Done, None) => unreachable!("a done stage has an artifact id"),
    }
}
