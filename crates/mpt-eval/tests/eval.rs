//! Stage 4 on bert-tiny / t5-v1_1-tiny and the synthetic data root, with artifacts written in
//! the test.

#[path = "../../../tests/common/stage_fixtures.rs"]
mod common;

use std::collections::BTreeMap;

use common::*;
use mpt_core::{ArtifactKind, CoreError};
use mpt_data::Split;
use mpt_eval::{EvalConfig, EvalError, EvalResult, run, to_markdown, write_results};
use mpt_train::{Decoding, HeadConfig, Lengths, Selection};

const L: usize = 4;
const D: usize = 32;

fn config(task: &str, split: Split) -> EvalConfig {
    EvalConfig {
        task: task.into(),
        split,
        data: Selection::default(),
        batch_size: 8,
        decoding: Decoding::Rank,
        lengths: Lengths::default(),
        head: HeadConfig::default(),
        baselines: false,
    }
}

fn split_size(task: &str, split: Split) -> usize {
    let spec = mpt_data::lookup(task).unwrap();
    data_root().load_split(spec, split, mpt_data::DEFAULT_SEED).unwrap().0.len()
}

fn metric_names(task: &str) -> Vec<String> {
    let mut names: Vec<String> = mpt_data::lookup(task).unwrap().metrics.iter().map(|m| m.name().to_string()).collect();
    names.sort();
    names
}

fn check_scores(r: &EvalResult, task: &str) {
    assert_eq!(r.task, task);
    assert_eq!(r.metrics.keys().cloned().collect::<Vec<_>>(), metric_names(task));
    let mean = r.metrics.values().sum::<f64>() / r.metrics.len() as f64;
    assert!((r.score - mean).abs() < 1e-12, "score {} is not the mean of {:?}", r.score, r.metrics);
    for (name, v) in &r.metrics {
        assert!((0.0..=1.0).contains(v), "{name} = {v}");
    }
    assert!(r.seconds >= 0.0);
}

#[test]
fn teacher_on_its_own_task_scores_the_whole_test_split() {
    let (model, device) = load("bert-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let t = teacher(&tmp.path().join("t"), "rte", L, D, &backbone_of("bert-tiny"), 1);
    let r = run(&model, &data_root(), &t.dir, &config("rte", Split::Test), &device).unwrap();
    check_scores(&r, "rte");
    let n = split_size("rte", Split::Test);
    assert!(n > 0);
    assert_eq!(r.examples, n);
    assert_eq!(r.split, "test");
    assert_eq!(r.artifact_id, t.meta.id);
    assert_eq!(r.artifact, t.dir.display().to_string());
    assert_eq!(r.kind, "teacher");
    assert!(r.in_domain);
    assert_eq!(r.tunable_params, L * D);
}

#[test]
fn caps_apply_to_the_requested_split() {
    let (model, device) = load("bert-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let t = teacher(&tmp.path().join("t"), "rte", L, D, &backbone_of("bert-tiny"), 1);
    let mut cfg = config("rte", Split::Test);
    cfg.data.max_test = Some(7);
    cfg.data.max_dev = Some(3); // not the split evaluated
    assert_eq!(run(&model, &data_root(), &t.dir, &cfg, &device).unwrap().examples, 7);
    let mut cfg = config("rte", Split::Dev);
    cfg.data.max_dev = Some(5);
    let r = run(&model, &data_root(), &t.dir, &cfg, &device).unwrap();
    assert_eq!((r.examples, r.split.as_str()), (5, "dev"));
    // A cap above the split size keeps the whole split.
    let mut cfg = config("rte", Split::Dev);
    cfg.data.max_dev = Some(10_000);
    assert_eq!(run(&model, &data_root(), &t.dir, &cfg, &device).unwrap().examples, split_size("rte", Split::Dev));
}

#[test]
fn batch_size_does_not_change_the_scores() {
    let (model, device) = load("bert-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let t = teacher(&tmp.path().join("t"), "cb", L, D, &backbone_of("bert-tiny"), 4);
    let mut one = config("cb", Split::Test);
    one.batch_size = 1;
    let mut all = config("cb", Split::Test);
    all.batch_size = 64;
    let a = run(&model, &data_root(), &t.dir, &one, &device).unwrap();
    let b = run(&model, &data_root(), &t.dir, &all, &device).unwrap();
    check_scores(&a, "cb");
    assert_eq!(a.metrics, b.metrics);
    assert_eq!(a.examples, split_size("cb", Split::Test));
}

#[test]
fn a_plain_prompt_transfers_zero_shot_to_another_task() {
    let (model, device) = load("bert-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let t = teacher(&tmp.path().join("t"), "mnli", L, D, &backbone_of("bert-tiny"), 2);
    let r = run(&model, &data_root(), &t.dir, &config("cb", Split::Test), &device).unwrap();
    check_scores(&r, "cb");
    assert!(!r.in_domain);
}

#[test]
fn multitask_artifact_uses_its_task_prompt_and_refuses_other_tasks() {
    let (model, device) = load("bert-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let mt = multitask(&tmp.path().join("mt"), &["mnli", "rte"], L, 1, D, &backbone_of("bert-tiny"), 3);
    let r = run(&model, &data_root(), &mt.dir, &config("rte", Split::Test), &device).unwrap();
    check_scores(&r, "rte");
    assert!(r.in_domain);
    assert_eq!(r.kind, "multitask");
    assert_eq!(r.tunable_params, L * D + 2 * (L + D));
    let err = run(&model, &data_root(), &mt.dir, &config("cb", Split::Test), &device).unwrap_err();
    match &err {
        EvalError::NoPrompt { path, task, tasks } => {
            assert_eq!(path, &mt.dir);
            assert_eq!(task, "cb");
            assert!(tasks.contains("mnli") && tasks.contains("rte"), "{tasks}");
        }
        other => panic!("expected NoPrompt, got {other:?}"),
    }
    assert!(err.to_string().contains("cb"), "{err}");
}

fn t5_cb_teacher(dir: &std::path::Path) -> mpt_core::Artifact {
    teacher(&dir.join("t"), "cb", L, D, &backbone_of("t5-v1_1-tiny"), 5)
}

#[test]
fn t5_rank_decoding() {
    let (model, device) = load("t5-v1_1-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let t = t5_cb_teacher(tmp.path());
    let mut cfg = config("cb", Split::Dev);
    cfg.data.max_dev = Some(6);
    let rank = run(&model, &data_root(), &t.dir, &cfg, &device).unwrap();
    check_scores(&rank, "cb");
    assert_eq!(rank.examples, 6);
}

#[test]
fn t5_greedy_decoding_counts_non_label_outputs_as_wrong() {
    // An untrained random prompt on the random tiny T5 generates text that is no cb label.
    let (model, device) = load("t5-v1_1-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let t = t5_cb_teacher(tmp.path());
    let mut cfg = config("cb", Split::Dev);
    cfg.data.max_dev = Some(6);
    cfg.decoding = Decoding::Greedy;
    let greedy = run(&model, &data_root(), &t.dir, &cfg, &device).unwrap();
    check_scores(&greedy, "cb");
    assert_eq!(greedy.examples, 6);
}

#[test]
fn bad_inputs_are_errors() {
    let (model, device) = load("bert-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let t = teacher(&tmp.path().join("t"), "rte", L, D, &backbone_of("bert-tiny"), 1);
    let mut cfg = config("rte", Split::Test);
    cfg.batch_size = 0;
    match run(&model, &data_root(), &t.dir, &cfg, &device).unwrap_err() {
        EvalError::Config { field, .. } => assert_eq!(field, "batch_size"),
        other => panic!("expected a batch_size error, got {other:?}"),
    }
    let err = run(&model, &data_root(), &t.dir, &config("nope", Split::Test), &device).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
    let t5 = teacher(&tmp.path().join("t5"), "rte", L, D, &backbone_of("t5-v1_0-tiny"), 1);
    let err = run(&model, &data_root(), &t5.dir, &config("rte", Split::Test), &device).unwrap_err();
    assert!(matches!(err, EvalError::Core(CoreError::BackboneMismatch { .. })), "{err:?}");
    let err = run(&model, &data_root(), &tmp.path().join("absent"), &config("rte", Split::Test), &device).unwrap_err();
    assert!(matches!(err, EvalError::Core(_)), "{err:?}");
    let err =
        run(&model, &mpt_data::DataRoot::new(tmp.path()), &t.dir, &config("rte", Split::Test), &device).unwrap_err();
    assert!(err.to_string().contains("missing file"), "{err}");
}

fn result(task: &str, id: &str, acc: f64) -> EvalResult {
    EvalResult {
        task: task.into(),
        split: "test".into(),
        artifact_id: id.into(),
        artifact: format!("/runs/x/{task}"),
        kind: ArtifactKind::Target.to_string(),
        in_domain: true,
        examples: 20,
        metrics: BTreeMap::from([("accuracy".to_string(), acc)]),
        score: acc,
        tunable_params: 160,
        baselines: None,
        seconds: 0.5,
    }
}

#[test]
fn markdown_has_one_row_per_result() {
    let results = vec![
        result("rte", "0123456789abcdef0123", 0.5),
        result("cb", "fedcba9876543210fedc", 0.25),
        result("mnli", "short", 1.0),
    ];
    let md = to_markdown(&results);
    let lines: Vec<&str> = md.lines().collect();
    assert_eq!(lines.len(), 2 + results.len(), "{md}");
    assert!(lines[0].starts_with("| task |"));
    for (line, r) in lines[2..].iter().zip(&results) {
        assert!(line.starts_with(&format!("| {} | test |", r.task)), "{line}");
        let short = &r.artifact_id[..12.min(r.artifact_id.len())];
        assert!(line.contains(&format!("`{short}`")), "{line}");
        assert!(line.contains(&format!("{:.2}", r.score * 100.0)), "{line}");
    }
    assert!(!lines[2].contains("0123456789abcdef"), "ids are cut to 12 characters");
    assert_eq!(to_markdown(&[]).lines().count(), 2);
}

#[test]
fn write_results_writes_json_and_markdown() {
    let tmp = tempfile::tempdir().unwrap();
    let results = vec![result("rte", "0123456789abcdef", 0.5), result("cb", "fedcba9876543210", 0.75)];
    let json = tmp.path().join("r.json");
    let md = tmp.path().join("r.md");
    write_results(&results, &json, &md).unwrap();
    let back: Vec<EvalResult> = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(back, results);
    assert_eq!(std::fs::read_to_string(&md).unwrap(), to_markdown(&results));
    // Rewriting replaces the files, and leaves no temporary files behind.
    write_results(&results[..1], &json, &md).unwrap();
    let back: Vec<EvalResult> = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(back.len(), 1);
    let mut names: Vec<String> =
        std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["r.json", "r.md"]);
    // An unwritable destination is an error, not a panic.
    assert!(write_results(&results, &tmp.path().join("no/such/dir/r.json"), &md).is_err());
}

#[test]
fn an_artifact_of_another_width_is_an_error_not_a_panic() {
    let (model, device) = load("bert-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let t = teacher(&tmp.path().join("t"), "rte", L, 16, &backbone_of("bert-tiny"), 1);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run(&model, &data_root(), &t.dir, &config("rte", Split::Test), &device)
    }));
    match result {
        Ok(Err(e)) => assert!(e.to_string().contains("16") || e.to_string().contains("32"), "{e}"),
        Ok(Ok(_)) => panic!("a [l, 16] prompt was evaluated on a d = 32 backbone"),
        Err(_) => panic!("a prompt of the wrong width panicked instead of returning an error"),
    }
}

#[test]
fn baselines_score_the_constant_and_the_bare_backbone_on_the_same_rows() {
    let (model, device) = load("bert-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let t = teacher(&tmp.path().join("t"), "rte", L, D, &backbone_of("bert-tiny"), 1);
    let mut cfg = config("rte", Split::Test);
    cfg.baselines = true;
    let r = run(&model, &data_root(), &t.dir, &cfg, &device).unwrap();
    let b = r.baselines.clone().expect("baselines asked for");
    // The constant predictor by hand: the train split's most frequent label, scored on test.
    let spec = mpt_data::lookup("rte").unwrap();
    let (train, _) = data_root().load_split(spec, Split::Train, mpt_data::DEFAULT_SEED).unwrap();
    let (test, _) = data_root().load_split(spec, Split::Test, mpt_data::DEFAULT_SEED).unwrap();
    let ones = train.iter().filter(|e| e.label == 1).count();
    let label = usize::from(ones * 2 > train.len());
    assert_eq!(b.majority_label, spec.labels[label]);
    let hits = test.iter().filter(|e| e.label == label).count() as f64 / test.len() as f64;
    assert!((b.majority - hits).abs() < 1e-12, "majority {} vs {hits}", b.majority);
    // No prompt: a different score source than the prompted one, in [0, 1], same metric names.
    assert_eq!(b.no_prompt_metrics.keys().collect::<Vec<_>>(), r.metrics.keys().collect::<Vec<_>>());
    assert!((0.0..=1.0).contains(&b.no_prompt));
    let md = to_markdown(std::slice::from_ref(&r));
    assert!(md.contains(&format!("{:.2} ({})", b.majority * 100.0, b.majority_label)), "{md}");
}
