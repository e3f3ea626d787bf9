//! `mpt merge`: stages run at once in copies of a run folder brought back into one folder and
//! one report, imported only where `mpt run` would then skip them.

mod common;

use std::path::{Path, PathBuf};

use burn::prelude::*;
use common::*;
use mpt_pipeline::run::{RunLock, StageRecord, read_state};
use mpt_pipeline::{Pipeline, PipelineError, Plan, RunOptions, Ui, build, merge, run};
use mpt_train::{Progress, Silent};

struct Quiet;

impl Ui for Quiet {
    fn progress(&self) -> &dyn Progress {
        &Silent
    }
    fn stage_start(&self, _: usize, _: usize, _: &str) {}
    fn stage_end(&self, _: &str, _: f64, _: &str) {}
}

fn only(patterns: &[&str]) -> RunOptions {
    RunOptions { only: patterns.iter().map(|p| p.to_string()).collect(), ..RunOptions::default() }
}

fn at(pipeline: &Pipeline, dir: &Path) -> Pipeline {
    Pipeline { run_dir: dir.to_path_buf(), ..pipeline.clone() }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            copy_dir(&path, &to.join(entry.file_name()));
        } else {
            std::fs::copy(&path, to.join(entry.file_name())).unwrap();
        }
    }
}

fn names(list: &[(String, PathBuf)]) -> Vec<&str> {
    list.iter().map(|(s, _)| s.as_str()).collect()
}

/// The tiny pipeline; its teachers and distillation run in `runs/tiny`, then the vanilla and
/// MPT targets each in a copy of it, as two `mpt run --only` would at once.
fn split_run() -> (tempfile::TempDir, Pipeline, Plan, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let main = tmp.path().join("runs/tiny");
    let path = tmp.path().join("tiny.toml");
    std::fs::write(&path, tiny_toml(&main)).unwrap();
    let pipeline = Pipeline::load(&path).unwrap();
    let plan = build(&pipeline);
    let device = Device::flex();
    run(&pipeline, &plan, &only(&["teacher", "distill"]), &device, &Quiet).unwrap();
    let (a, b) = (tmp.path().join("runs/tiny-mpt"), tmp.path().join("runs/tiny-vanilla"));
    copy_dir(&main, &a);
    copy_dir(&main, &b);
    run(&at(&pipeline, &a), &plan, &only(&["adapt/mpt", "eval/mpt"]), &device, &Quiet).unwrap();
    run(&at(&pipeline, &b), &plan, &only(&["adapt/vanilla", "eval/vanilla"]), &device, &Quiet).unwrap();
    (tmp, pipeline, plan, a, b)
}

#[test]
fn stages_run_in_copies_merge_into_one_run_that_then_has_nothing_left_to_do() {
    let (_tmp, pipeline, plan, a, b) = split_run();
    let main = pipeline.run_dir.clone();
    let sources = [a.clone(), b.clone()];

    // A dry run names what it would import and writes nothing.
    let before = std::fs::read(main.join("state.json")).unwrap();
    let dry = merge(&pipeline, &plan, &sources, &RunOptions { dry_run: true, ..RunOptions::default() }).unwrap();
    assert_eq!(dry.imported.len(), 8);
    assert!(dry.report.is_none());
    assert!(!main.join("artifacts/adapt").exists() && !main.join("results/eval").exists());
    assert_eq!(std::fs::read(main.join("state.json")).unwrap(), before);

    let merged = merge(&pipeline, &plan, &sources, &RunOptions::default()).unwrap();
    let mut want: Vec<(String, PathBuf)> = Vec::new();
    for seed in [0, 1] {
        for (method, dir) in [("mpt", &a), ("vanilla", &b)] {
            for kind in ["adapt", "eval"] {
                want.push((format!("{kind}/{method}/rte/k2-s{seed}"), dir.clone()));
            }
        }
    }
    assert_eq!(merged.imported, want);
    assert_eq!(merged.already, ["teacher/mnli", "teacher/qnli", "distill/mpt"]);
    assert!(merged.pending.is_empty());

    // Byte-for-byte copies, and the wall times of the runs that made them.
    let (state, state_a) = (read_state(&main), read_state(&a));
    for name in ["adapt/mpt/rte/k2-s0", "adapt/mpt/rte/k2-s1"] {
        for file in ["artifact.json", "tensors.safetensors"] {
            let rel = Path::new("artifacts").join(name).join(file);
            assert_eq!(std::fs::read(main.join(&rel)).unwrap(), std::fs::read(a.join(&rel)).unwrap(), "{name}");
        }
        let record: &StageRecord = &state[name];
        assert_eq!(record, &state_a[name]);
        assert!(record.seconds.is_some());
    }
    let result = Path::new("results/eval/vanilla/rte/k2-s1.json");
    assert_eq!(std::fs::read(main.join(result)).unwrap(), std::fs::read(b.join(result)).unwrap());

    // One report with every row; a run of the merged folder has nothing left to run.
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(merged.report.unwrap().with_extension("json")).unwrap()).unwrap();
    assert_eq!(report["rows"].as_array().unwrap().len(), 4);
    assert!(report["missing"].as_array().unwrap().is_empty());
    let rerun = run(&pipeline, &plan, &RunOptions::default(), &Device::flex(), &Quiet).unwrap();
    assert!(rerun.ran.is_empty(), "{:?}", rerun.ran);
    assert_eq!(rerun.skipped.len(), plan.stages.len());
    let log = std::fs::read_to_string(main.join("logs/run.log")).unwrap();
    assert!(log.contains(&format!("merged eval/vanilla/rte/k2-s0 from {}", b.display())), "{log}");

    // Merging again imports nothing.
    let again = merge(&pipeline, &plan, &sources, &RunOptions::default()).unwrap();
    assert!(again.imported.is_empty());
    assert_eq!(again.already.len(), plan.stages.len());
}

#[test]
fn a_stage_is_imported_only_with_the_inputs_it_was_made_from() {
    let (tmp, pipeline, plan, a, _b) = split_run();
    // A fresh folder has no distillation: `adapt/mpt` alone cannot come over, its input is missing.
    let fresh = at(&pipeline, &tmp.path().join("runs/fresh"));
    let partial = merge(&fresh, &plan, std::slice::from_ref(&a), &only(&["adapt/mpt", "eval/mpt"])).unwrap();
    assert!(partial.imported.is_empty());
    assert_eq!(partial.pending.len(), 4);
    assert!(!fresh.run_dir.join("artifacts/adapt").exists());
    // With its inputs selected too, the chain comes over in order.
    let whole = merge(&fresh, &plan, std::slice::from_ref(&a), &only(&["teacher", "distill", "adapt/mpt"])).unwrap();
    assert_eq!(
        names(&whole.imported),
        ["teacher/mnli", "teacher/qnli", "distill/mpt", "adapt/mpt/rte/k2-s0", "adapt/mpt/rte/k2-s1"]
    );

    // A source whose distillation was made with another config gives nothing that depends on it.
    let other_dir = tmp.path().join("runs/other");
    let edited = set(&pipeline.text, "distill", "lambda", "lambda = 0.5");
    let path = tmp.path().join("other.toml");
    std::fs::write(&path, edited).unwrap();
    let other = Pipeline { run_dir: other_dir.clone(), ..Pipeline::load(&path).unwrap() };
    let other_plan = build(&other);
    run(&other, &other_plan, &only(&["teacher", "distill", "adapt/mpt"]), &Device::flex(), &Quiet).unwrap();
    let target = at(&pipeline, &tmp.path().join("runs/target"));
    let from_other = merge(&target, &plan, std::slice::from_ref(&other_dir), &RunOptions::default()).unwrap();
    assert_eq!(names(&from_other.imported), ["teacher/mnli", "teacher/qnli"]);
    assert!(from_other.pending.iter().any(|s| s == "distill/mpt"));
    assert!(from_other.pending.iter().any(|s| s == "adapt/mpt/rte/k2-s0"));
}

#[test]
fn bad_sources_and_a_busy_destination_are_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let main = tmp.path().join("runs/tiny");
    let path = tmp.path().join("tiny.toml");
    std::fs::write(&path, tiny_toml(&main)).unwrap();
    let pipeline = Pipeline::load(&path).unwrap();
    let plan = build(&pipeline);
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::create_dir_all(&main).unwrap();
    std::fs::write(main.join("state.json"), "{}").unwrap();
    for (src, says) in [
        (tmp.path().join("missing"), "no such run folder"),
        (empty.clone(), "not a run folder"),
        (main.clone(), "is the run folder being merged into"),
    ] {
        let err = merge(&pipeline, &plan, std::slice::from_ref(&src), &RunOptions::default()).unwrap_err();
        match &err {
            PipelineError::RunDir { path, message } => {
                assert_eq!(path, &src);
                assert!(message.contains(says), "{message}");
            }
            other => panic!("expected a run-folder error, got {other:?}"),
        }
    }
    let source = tmp.path().join("runs/copy");
    copy_dir(&main, &source);
    let _held = RunLock::acquire(&main).unwrap();
    let err = merge(&pipeline, &plan, &[source], &RunOptions::default()).unwrap_err();
    assert!(matches!(err, PipelineError::Locked { .. }), "{err:?}");
    assert!(!main.join("artifacts").exists() && !main.join("report.md").exists());
}
