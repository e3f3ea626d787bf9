//! `mpt merge`: the finished stages of other run folders of the same pipeline brought into
//! this one, so stages run in separate folders at once (each `mpt run` locks its folder) end up
//! in one run and one report.
//!
//! A stage is imported only when it is not done here and a source has it done for the same
//! config and the same inputs as this folder's (its parents' ids, after the imports before it),
//! which is exactly when `mpt run` would then skip it. Artifacts are copied byte for byte and
//! checked ([`Artifact::copy`]), result files and stage logs are copied, and the state record
//! (wall time) comes along; the destination's lock is held throughout, a source's is not needed
//! (finished outputs are never rewritten in place), so a run still going in a source can be
//! merged from as its stages finish.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use mpt_core::Artifact;

use crate::config::Pipeline;
use crate::error::{PipelineError, Result};
use crate::plan::{Plan, StageKind};
use crate::run::{
    RunLock, RunOptions, Runner, StageRecord, Status, check_data, log_line, open_run_dir, read_state, write_state,
};

/// What a merge did (or, dry, would do).
#[derive(Debug, Clone, Default)]
pub struct MergeSummary {
    /// Stages imported, each with the folder it came from, in plan order.
    pub imported: Vec<(String, PathBuf)>,
    /// Selected stages already done here.
    pub already: Vec<String>,
    /// Selected stages neither done here nor importable from a source.
    pub pending: Vec<String>,
    /// The report, rewritten after a real merge.
    pub report: Option<PathBuf>,
}

/// Imports into `pipeline.run_dir` every stage selected by `options.only` that a folder of
/// `sources` has done for the same config and inputs, then writes the report. With
/// `options.dry_run` nothing is written and no lock is taken. A source must be an existing run
/// folder other than the destination.
pub fn merge(pipeline: &Pipeline, plan: &Plan, sources: &[PathBuf], options: &RunOptions) -> Result<MergeSummary> {
    options.check_patterns(plan)?;
    check_data(pipeline)?;
    let dest = &pipeline.run_dir;
    let mut source_pipelines = Vec::with_capacity(sources.len());
    for src in sources {
        check_source(src, dest)?;
        source_pipelines.push(Pipeline { run_dir: src.clone(), ..pipeline.clone() });
    }
    let mut from = Vec::with_capacity(sources.len());
    for p in &source_pipelines {
        let mut runner = Runner::new(p, plan, true)?;
        let statuses = runner.survey();
        from.push((runner, statuses));
    }
    let mut runner = Runner::new(pipeline, plan, true)?;
    let _lock = if options.dry_run { None } else { Some(RunLock::acquire(dest)?) };
    if !options.dry_run {
        open_run_dir(pipeline)?;
    }
    let mut state = read_state(dest);
    let mut summary = MergeSummary::default();
    for (i, stage) in plan.stages.iter().enumerate() {
        let selected = options.selects(&stage.name);
        if runner.status(i) == Status::Done {
            runner.outputs[i] = runner.output_of(i);
            if selected {
                summary.already.push(stage.name.clone());
            }
            continue;
        }
        runner.outputs[i] = None;
        // A library teacher lives outside the run folder: nothing to bring.
        if !selected || matches!(stage.kind, StageKind::Provided(_)) {
            if selected {
                summary.pending.push(stage.name.clone());
            }
            continue;
        }
        let parents = runner.parent_ids(i);
        let found = from
            .iter()
            .find(|(src, statuses)| statuses[i] == Status::Done && parents.is_some() && src.parent_ids(i) == parents);
        let Some((src, _)) = found else {
            summary.pending.push(stage.name.clone());
            continue;
        };
        let src_dir = src.run_dir().to_path_buf();
        let output = src.outputs[i].clone().expect("a done stage has an output");
        if !options.dry_run {
            import(plan, i, &src_dir, dest)?;
            if runner.status(i) != Status::Done {
                return Err(PipelineError::Plan(format!(
                    "stage {}: the copy from {} is not usable here: {}",
                    stage.name,
                    src_dir.display(),
                    match runner.status(i) {
                        Status::Pending(why) => why,
                        Status::Done => unreachable!(),
                    }
                )));
            }
            let record = read_state(&src_dir).remove(&stage.name).filter(|r| r.output == output).unwrap_or_else(|| {
                let finished_at = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
                StageRecord { seconds: None, finished_at, output: output.clone() }
            });
            state.insert(stage.name.clone(), record);
            write_state(dest, &state)?;
            log_line(dest, &format!("merged {} from {}", stage.name, src_dir.display()));
        }
        runner.outputs[i] = Some(output);
        summary.imported.push((stage.name.clone(), src_dir));
    }
    if !options.dry_run {
        let (backbone, _) = runner.backbone.clone().expect("Runner::new(.., true) found the backbone");
        let report = crate::report::write(pipeline, plan, &backbone)?;
        log_line(dest, &format!("report {}", report.display()));
        summary.report = Some(report);
    }
    Ok(summary)
}

/// A source must be a run folder (it has `state.json` or `artifacts/`) and not the destination.
fn check_source(src: &Path, dest: &Path) -> Result<()> {
    let bad = |message: &str| PipelineError::RunDir { path: src.to_path_buf(), message: message.to_string() };
    if !src.is_dir() {
        return Err(bad("no such run folder"));
    }
    if !src.join("state.json").is_file() && !src.join("artifacts").is_dir() {
        return Err(bad("not a run folder: it has neither state.json nor artifacts/"));
    }
    let same = match (std::fs::canonicalize(src), std::fs::canonicalize(dest)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        return Err(bad("is the run folder being merged into; name another folder with --from"));
    }
    Ok(())
}

/// Copies stage `i`'s output (artifact or result file) and its log from `src` to `dest`.
fn import(plan: &Plan, i: usize, src: &Path, dest: &Path) -> Result<()> {
    match plan.stages[i].kind {
        StageKind::Eval(_) => {
            let (from, to) = (plan.result_path(src, i), plan.result_path(dest, i));
            let bytes = std::fs::read(&from).map_err(|source| PipelineError::Io { path: from.clone(), source })?;
            create_parent(&to)?;
            mpt_models::io::write_atomic(&to, &bytes)?;
        }
        _ => {
            Artifact::copy(&plan.artifact_dir(src, i), &plan.artifact_dir(dest, i))?;
        }
    }
    let (from, to) = (
        crate::subprocess::stage_log(src, &plan.stages[i].name),
        crate::subprocess::stage_log(dest, &plan.stages[i].name),
    );
    if from.is_file() {
        let bytes = std::fs::read(&from).map_err(|source| PipelineError::Io { path: from.clone(), source })?;
        create_parent(&to)?;
        mpt_models::io::write_atomic(&to, &bytes)?;
    }
    Ok(())
}

fn create_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(parent) => {
            std::fs::create_dir_all(parent).map_err(|source| PipelineError::Io { path: parent.to_path_buf(), source })
        }
        None => Ok(()),
    }
}
