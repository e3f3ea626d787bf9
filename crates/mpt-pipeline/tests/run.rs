//! A real tiny pipeline run (bert-tiny, synthetic data, 2 steps everywhere): artifacts,
//! lineage, results, report, plots, resuming, `--force` and `--only`.

mod common;

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use common::*;
use mpt_core::{Artifact, ArtifactKind};
use mpt_pipeline::run::ResultFile;
use mpt_pipeline::{Pipeline, PipelineError, Plan, RunOptions, RunSummary, Ui, build, run};
use mpt_train::{Progress, Silent};

#[derive(Default)]
struct TestUi {
    started: RefCell<Vec<(usize, usize, String)>>,
    ended: RefCell<Vec<String>>,
}

impl Ui for TestUi {
    fn progress(&self) -> &dyn Progress {
        &Silent
    }
    fn stage_start(&self, index: usize, total: usize, name: &str) {
        self.started.borrow_mut().push((index, total, name.to_string()));
    }
    fn stage_end(&self, name: &str, _seconds: f64, _outcome: &str) {
        self.ended.borrow_mut().push(name.to_string());
    }
}

struct Setup {
    _tmp: tempfile::TempDir,
    run_dir: PathBuf,
    pipeline: Pipeline,
    plan: Plan,
}

fn setup(edit: impl Fn(String) -> String) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = tmp.path().join("runs/tiny");
    let text = edit(tiny_toml(&run_dir));
    let path = tmp.path().join("tiny.toml");
    std::fs::write(&path, &text).unwrap();
    let pipeline = Pipeline::load(&path).unwrap();
    let plan = build(&pipeline);
    Setup { _tmp: tmp, run_dir, pipeline, plan }
}

fn go(s: &Setup, options: RunOptions) -> Result<RunSummary, PipelineError> {
    run(&s.pipeline, &s.plan, &options, &Device::flex(), &TestUi::default())
}

fn only(patterns: &[&str]) -> RunOptions {
    RunOptions { only: patterns.iter().map(|p| p.to_string()).collect(), ..RunOptions::default() }
}

fn force(patterns: &[&str]) -> RunOptions {
    RunOptions { force: patterns.iter().map(|p| p.to_string()).collect(), ..RunOptions::default() }
}

fn artifact(s: &Setup, name: &str) -> Artifact {
    Artifact::load(&s.run_dir.join("artifacts").join(name), None, None).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn result(s: &Setup, name: &str) -> ResultFile {
    let path = s.run_dir.join("results").join(format!("{name}.json"));
    serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

fn all_names(s: &Setup) -> Vec<String> {
    s.plan.stages.iter().map(|st| st.name.clone()).collect()
}

const EXPECTED: [&str; 11] = [
    "teacher/mnli",
    "teacher/qnli",
    "distill/mpt",
    "adapt/mpt/rte/k2-s0",
    "eval/mpt/rte/k2-s0",
    "adapt/vanilla/rte/k2-s0",
    "eval/vanilla/rte/k2-s0",
    "adapt/mpt/rte/k2-s1",
    "eval/mpt/rte/k2-s1",
    "adapt/vanilla/rte/k2-s1",
    "eval/vanilla/rte/k2-s1",
];

fn sample_std(v: &[f64]) -> f64 {
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (v.len() as f64 - 1.0)).sqrt()
}

#[test]
fn a_full_tiny_run_then_resume_rerun_and_force() {
    let s = setup(|t| t);
    assert_eq!(all_names(&s), EXPECTED);
    let ui = TestUi::default();
    let first = run(&s.pipeline, &s.plan, &RunOptions::default(), &Device::flex(), &ui).unwrap();
    assert_eq!(first.ran, EXPECTED);
    assert!(first.skipped.is_empty() && first.unselected.is_empty());
    let started = ui.started.borrow();
    assert_eq!(started.len(), EXPECTED.len());
    assert!(started.iter().enumerate().all(|(i, (idx, total, _))| *idx == i + 1 && *total == EXPECTED.len()));
    assert_eq!(*ui.ended.borrow(), EXPECTED);

    // Artifacts and lineage.
    let teachers = [artifact(&s, "teacher/mnli"), artifact(&s, "teacher/qnli")];
    for (t, task) in teachers.iter().zip(["mnli", "qnli"]) {
        assert_eq!(t.meta.kind, ArtifactKind::Teacher);
        assert_eq!(t.meta.tasks, [task]);
        assert_eq!(t.meta.prompt_length, 4);
        assert_eq!(t.meta.metrics["curve"]["losses"].as_array().unwrap().len(), 2);
    }
    let distill = artifact(&s, "distill/mpt");
    assert_eq!(distill.meta.kind, ArtifactKind::Multitask);
    assert_eq!(distill.meta.parents, [teachers[0].meta.id.clone(), teachers[1].meta.id.clone()]);
    for seed in [0, 1] {
        let mpt = artifact(&s, &format!("adapt/mpt/rte/k2-s{seed}"));
        assert_eq!(mpt.meta.kind, ArtifactKind::Target);
        assert_eq!(mpt.meta.parents, std::slice::from_ref(&distill.meta.id));
        // Prompt (+ u, v) and the default pair head over RTE's 2 classes (2·4·32 + 2).
        assert_eq!(mpt.meta.tunable_params, 4 * 32 + 4 + 32 + 258);
        assert_eq!(mpt.meta.config["data"]["few_shot_k"], 2);
        assert_eq!(mpt.meta.config["train"]["seed"], seed);
        let vanilla = artifact(&s, &format!("adapt/vanilla/rte/k2-s{seed}"));
        assert!(vanilla.meta.parents.is_empty());
        assert_eq!(vanilla.meta.tunable_params, 4 * 32 + 258);
        for (method, a) in [("mpt", &mpt), ("vanilla", &vanilla)] {
            let name = format!("eval/{method}/rte/k2-s{seed}");
            let r = result(&s, &name);
            assert_eq!(r.stage, name);
            assert_eq!(r.result.artifact_id, a.meta.id);
            assert_eq!(r.result.task, "rte");
            assert_eq!(r.result.split, "test");
            assert_eq!(r.result.examples, 8, "eval.max_examples caps the tiny rte test split (20)");
        }
    }
    assert_ne!(
        artifact(&s, "adapt/mpt/rte/k2-s0").meta.id,
        artifact(&s, "adapt/mpt/rte/k2-s1").meta.id,
        "seeds give different artifacts"
    );

    // Run folder files.
    assert_eq!(std::fs::read_to_string(s.run_dir.join("pipeline.toml")).unwrap(), s.pipeline.text);
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.run_dir.join("state.json")).unwrap()).unwrap();
    for name in EXPECTED {
        assert!(state[name]["seconds"].is_number(), "state.json lacks {name}");
    }
    assert_eq!(state["distill/mpt"]["output"], distill.meta.id.as_str());
    assert!(s.run_dir.join("logs/run.log").is_file());
    assert_eq!(first.report.as_deref(), Some(s.run_dir.join("report.md").as_path()));

    // report.json: one row per (method, seed), summary over the 2 seeds.
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.run_dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["pipeline"], "tiny");
    assert_eq!(report["prompt_length"], 4);
    assert_eq!(report["split"], "test");
    assert_eq!(report["backbone"]["name"], "bert-tiny");
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "{rows:?}");
    let summary = report["summary"].as_array().unwrap();
    assert_eq!(summary.len(), 2, "{summary:?}");
    for method in ["mpt", "vanilla"] {
        let mine: Vec<&serde_json::Value> = rows.iter().filter(|r| r["method"] == method).collect();
        assert_eq!(mine.len(), 2);
        let mut seeds: Vec<u64> = mine.iter().map(|r| r["seed"].as_u64().unwrap()).collect();
        seeds.sort();
        assert_eq!(seeds, [0, 1]);
        for r in &mine {
            assert_eq!(r["k"], 2);
            assert_eq!(r["task"], "rte");
            assert_eq!(r["examples"], 8);
            let seed = r["seed"].as_u64().unwrap();
            let res = result(&s, &format!("eval/{method}/rte/k2-s{seed}"));
            assert_eq!(r["score"].as_f64().unwrap(), res.result.score);
            assert_eq!(r["artifact_id"], res.result.artifact_id.as_str());
        }
        let sm = summary.iter().find(|x| x["method"] == method).unwrap();
        assert_eq!(sm["n"], 2);
        assert_eq!(sm["k"], 2);
        let scores: Vec<f64> = mine.iter().map(|r| r["score"].as_f64().unwrap()).collect();
        let mean = scores.iter().sum::<f64>() / 2.0;
        assert!((sm["mean"].as_f64().unwrap() - mean).abs() < 1e-12);
        assert!((sm["std"].as_f64().unwrap() - sample_std(&scores)).abs() < 1e-12, "{sm}");
        let tunable = if method == "mpt" { 4 * 32 + 4 + 32 + 258 } else { 4 * 32 + 258 };
        assert_eq!(sm["tunable_per_task"], tunable);
    }
    assert!(report["missing"].as_array().unwrap().is_empty());
    let stage_seconds = report["stage_seconds"].as_object().unwrap();
    assert_eq!(stage_seconds.len(), EXPECTED.len());

    // report.md and plots.
    let md = std::fs::read_to_string(s.run_dir.join("report.md")).unwrap();
    assert!(md.starts_with("# tiny"), "{md}");
    assert!(md.contains("## k=2"), "{md}");
    assert!(md.contains(" mpt |"), "{md}");
    assert!(md.contains("vanilla"), "{md}");
    assert!(md.contains("(2)"), "n = 2 seeds shown: {md}");
    let plots: Vec<String> =
        report["plots"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_string()).collect();
    assert!(!plots.is_empty());
    for p in &plots {
        assert!(p.ends_with(".svg"), "{p}");
        let svg = std::fs::read_to_string(s.run_dir.join(p)).unwrap();
        assert!(svg.contains("<svg"), "{p} is not an SVG");
        assert!(md.contains(p.as_str()), "report.md links {p}");
    }

    // Second run: everything is done.
    let ids_before: Vec<String> =
        EXPECTED.iter().filter(|n| !n.starts_with("eval/")).map(|n| artifact(&s, n).meta.id).collect();
    let second = go(&s, RunOptions::default()).unwrap();
    assert!(second.ran.is_empty(), "{:?}", second.ran);
    assert_eq!(second.skipped, EXPECTED);
    assert!(s.run_dir.join("report.md").is_file());

    // Delete one adapt artifact: only it (and at most its evaluation) runs again.
    let victim = "adapt/vanilla/rte/k2-s1";
    std::fs::remove_dir_all(s.run_dir.join("artifacts").join(victim)).unwrap();
    let third = go(&s, RunOptions::default()).unwrap();
    eprintln!("rerun after deleting {victim}: {:?}", third.ran);
    assert_eq!(third.ran.first().map(String::as_str), Some(victim), "{:?}", third.ran);
    assert!(third.ran.iter().all(|n| n == victim || n == "eval/vanilla/rte/k2-s1"), "{:?}", third.ran);
    assert_eq!(third.ran.len() + third.skipped.len(), EXPECTED.len());
    let ids_after: Vec<String> =
        EXPECTED.iter().filter(|n| !n.starts_with("eval/")).map(|n| artifact(&s, n).meta.id).collect();
    assert_eq!(ids_before, ids_after, "the rerun stage is deterministic");

    // Delete one result: only that evaluation runs again.
    std::fs::remove_file(s.run_dir.join("results/eval/mpt/rte/k2-s0.json")).unwrap();
    let fourth = go(&s, RunOptions::default()).unwrap();
    assert_eq!(fourth.ran, ["eval/mpt/rte/k2-s0"]);

    // --force teacher reruns both teachers (same ids, so nothing downstream changes).
    let forced = go(&s, force(&["teacher"])).unwrap();
    eprintln!("--force teacher ran {:?}", forced.ran);
    assert_eq!(&forced.ran[..2], ["teacher/mnli", "teacher/qnli"]);
    assert!(forced.ran.iter().all(|n| n.starts_with("teacher/")), "{:?}", forced.ran);
    assert_eq!(artifact(&s, "distill/mpt").meta.parents, distill.meta.parents);

    // --force on one exact stage.
    let one = go(&s, force(&["eval/vanilla/rte/k2-s0"])).unwrap();
    assert_eq!(one.ran, ["eval/vanilla/rte/k2-s0"]);
}

#[test]
fn a_changed_config_reruns_the_stages_it_affects() {
    let s = setup(|t| t);
    go(&s, only(&["adapt/vanilla/rte/k2-s0"])).unwrap();
    // Same pipeline with more target steps: the vanilla adapt stages are stale.
    let text = with(&s.pipeline.text, "targets", "train = { max_steps = 3, eval_every = 3 }");
    let path = s.run_dir.parent().unwrap().join("changed.toml");
    std::fs::write(&path, text).unwrap();
    let changed = Pipeline::load(&path).unwrap();
    let plan = build(&changed);
    let summary =
        run(&changed, &plan, &only(&["adapt/vanilla/rte/k2-s0"]), &Device::flex(), &TestUi::default()).unwrap();
    assert_eq!(summary.ran, ["adapt/vanilla/rte/k2-s0"]);
    let a = artifact(&s, "adapt/vanilla/rte/k2-s0");
    assert_eq!(a.meta.config["train"]["max_steps"], 3);
}

#[test]
fn only_vanilla_on_a_fresh_run_dir_runs_just_those_stages() {
    let s = setup(|t| t);
    let summary = go(&s, only(&["adapt/vanilla"])).unwrap();
    assert_eq!(summary.ran, ["adapt/vanilla/rte/k2-s0", "adapt/vanilla/rte/k2-s1"]);
    assert!(summary.skipped.is_empty());
    assert_eq!(summary.unselected.len(), EXPECTED.len() - 2);
    assert!(!s.run_dir.join("artifacts/teacher").exists());
    assert!(!s.run_dir.join("artifacts/distill").exists());
    for seed in [0, 1] {
        artifact(&s, &format!("adapt/vanilla/rte/k2-s{seed}"));
    }
    // The report lists the evaluations that have no result yet.
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.run_dir.join("report.json")).unwrap()).unwrap();
    assert!(report["rows"].as_array().unwrap().is_empty());
    assert_eq!(report["missing"].as_array().unwrap().len(), 4);
    // Then their evaluations alone.
    let evals = go(&s, only(&["eval/vanilla"])).unwrap();
    assert_eq!(evals.ran, ["eval/vanilla/rte/k2-s0", "eval/vanilla/rte/k2-s1"]);
}

#[test]
fn only_mpt_on_a_fresh_run_dir_names_the_missing_input() {
    let s = setup(|t| t);
    let err = go(&s, only(&["adapt/mpt"])).unwrap_err();
    match &err {
        PipelineError::Plan(msg) => {
            assert!(msg.contains("adapt/mpt/rte/k2-s0") && msg.contains("distill/mpt"), "{msg}");
        }
        other => panic!("expected a plan error, got {other:?}"),
    }
    assert!(!s.run_dir.join("artifacts/adapt").exists());
    // Same for a distillation without its teachers.
    let err = go(&s, only(&["distill"])).unwrap_err();
    assert!(err.to_string().contains("teacher/mnli"), "{err}");
}

#[test]
fn patterns_that_match_nothing_are_rejected_before_work() {
    let s = setup(|t| t);
    for options in [only(&["adapt/nothing"]), force(&["teachers"]), only(&["adapt/mp"])] {
        let err = go(&s, options).unwrap_err();
        assert!(matches!(&err, PipelineError::Plan(m) if m.contains("no stage matches")), "{err:?}");
    }
    assert!(!s.run_dir.exists());
}

#[test]
fn dry_run_writes_nothing() {
    let s = setup(|t| t);
    let summary = go(&s, RunOptions { dry_run: true, ..RunOptions::default() }).unwrap();
    assert!(summary.ran.is_empty() && summary.report.is_none());
    assert!(!s.run_dir.exists());
}

#[test]
fn a_missing_backbone_fails_a_real_run() {
    let s = setup(|t| {
        let missing = Path::new("/nonexistent/mpt-model");
        set(&t, "", "backbone", &format!("backbone = \"{}\"", missing.display()))
    });
    let err = go(&s, RunOptions::default()).unwrap_err();
    assert!(err.to_string().contains("mpt-model"), "{err}");
    // A dry run still shows the plan.
    go(&s, RunOptions { dry_run: true, ..RunOptions::default() }).unwrap();
}

#[test]
fn sources_from_a_library_replace_the_teacher_stages() {
    // A first run trains the teachers; they become a library for a second pipeline.
    let first = setup(|t| t);
    go(&first, only(&["teacher"])).unwrap();
    let lib = first.run_dir.parent().unwrap().join("library");
    for task in ["mnli", "qnli"] {
        let from = first.run_dir.join("artifacts/teacher").join(task);
        std::fs::create_dir_all(lib.join(task)).unwrap();
        for f in ["artifact.json", "tensors.safetensors"] {
            std::fs::copy(from.join(f), lib.join(task).join(f)).unwrap();
        }
    }
    let lib_line = format!("tasks = [\"mnli\", \"qnli\"]\nfrom = \"{}\"", lib.display());
    let second = setup(|t| t.replace("tasks = [\"mnli\", \"qnli\"]", &lib_line));
    let summary = go(&second, only(&["distill"])).unwrap();
    assert_eq!(summary.ran, ["distill/mpt"], "the library teachers are not retrained");
    let distill = artifact(&second, "distill/mpt");
    let ids: Vec<String> = ["mnli", "qnli"].iter().map(|t| Artifact::read_meta(&lib.join(t)).unwrap().id).collect();
    assert_eq!(distill.meta.parents, ids);
    assert!(!second.run_dir.join("artifacts/teacher").exists(), "nothing is written for provided teachers");

    // Teachers trained with the default (pair) head are refused by a pipeline with another
    // head before any work, naming the key and the head they need.
    let text = std::fs::read_to_string(&second.pipeline.path).unwrap();
    let linear = second.pipeline.path.with_file_name("linear.toml");
    std::fs::write(&linear, format!("{text}\n[head]\nkind = \"linear\"\n")).unwrap();
    let err = Pipeline::load(&linear).unwrap_err().to_string();
    assert!(err.contains("head.kind") && err.contains("kind = \"pair\""), "{err}");

    // A library without one of the tasks is refused before any work, naming the key.
    std::fs::remove_dir_all(lib.join("qnli")).unwrap();
    let err = Pipeline::load(&second.pipeline.path).unwrap_err().to_string();
    assert!(err.contains("sources.tasks[1]") && err.contains("qnli"), "{err}");
}
