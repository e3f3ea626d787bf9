//! Stage 2 end to end on bert-tiny and the synthetic data root, with teacher artifacts written
//! in the test.

#[path = "../../../tests/common/stage_fixtures.rs"]
mod common;

use std::path::PathBuf;

use common::*;
use mpt_core::init::{FactorInit, PromptInit};
use mpt_core::{Artifact, ArtifactKind, CoreError, InUse, Layout};
use mpt_distill::{DistillConfig, DistillError, SharedInit, run};
use mpt_train::{HeadConfig, HeadKind, Selection, Silent, TrainConfig};

const L: usize = 4;
const D: usize = 32;

fn config(tasks: &[&str]) -> DistillConfig {
    DistillConfig {
        tasks: tasks.iter().map(|t| t.to_string()).collect(),
        prompt_length: None,
        rank: 1,
        lambda: 0.9,
        temperature: 1.0,
        hidden_loss: true,
        kappa: 2,
        decomposition: true,
        shared_init: SharedInit::TeacherMean,
        factor_init: FactorInit::Ones,
        train: TrainConfig {
            max_steps: 2,
            batch_size: 4,
            eval_every: 2,
            eval_batch_size: 16,
            seed: 3,
            ..TrainConfig::default()
        },
        head: HeadConfig::default(),
        data: Selection { max_train: Some(12), max_dev: Some(6), ..Selection::default() },
    }
}

/// Teachers for `tasks` on bert-tiny in `dir/teacher-<task>`, prompt length `L`.
fn teachers(dir: &std::path::Path, tasks: &[&str]) -> Vec<Artifact> {
    let bb = backbone_of("bert-tiny");
    tasks
        .iter()
        .enumerate()
        .map(|(i, t)| teacher(&dir.join(format!("teacher-{t}")), t, L, D, &bb, 100 + i as u64))
        .collect()
}

fn dirs(ts: &[&Artifact]) -> Vec<PathBuf> {
    ts.iter().map(|a| a.dir.clone()).collect()
}

/// Numbers in the default (pair) heads of `tasks` on the width-D fixture: Σ C·4D + C.
fn heads(tasks: &[String]) -> usize {
    let width = HeadKind::default().weight_width(D);
    assert_eq!(width, 4 * D, "the default head is the pair head");
    tasks.iter().map(|t| mpt_data::lookup(t).unwrap().labels.len() * (width + 1)).sum()
}

#[test]
fn distils_teachers_into_a_multitask_artifact_in_config_order() {
    let (model, device) = load("bert-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let ts = teachers(tmp.path(), &["mnli", "qnli", "rte"]);
    let (mnli, qnli, rte) = (&ts[0], &ts[1], &ts[2]);
    // Teachers given in another order than the tasks.
    let cfg = config(&["qnli", "rte", "mnli"]);
    let out = tmp.path().join("mt");
    let progress = Recorder::default();
    let a = run(&model, &data_root(), &cfg, &dirs(&[rte, mnli, qnli]), &out, &device, &progress).unwrap();
    let m = &a.meta;
    assert_eq!(m.kind, ArtifactKind::Multitask);
    assert_eq!(m.tasks, ["qnli", "rte", "mnli"]);
    assert_eq!(m.parents, [qnli.meta.id.clone(), rte.meta.id.clone(), mnli.meta.id.clone()]);
    assert_eq!(m.layout, Layout::Multitask);
    assert_eq!((m.prompt_length, m.dim, m.rank), (L, D, 1));
    assert_eq!(m.tunable_params, L * D + 3 * (L + D) + heads(&m.tasks));
    assert_eq!(a.tensors["prompt_embeddings"].shape(), &[L, D]);
    assert_eq!(a.tensors["prefix_task_cols"].shape(), &[3, L, 1]);
    assert_eq!(a.tensors["prefix_task_rows"].shape(), &[3, 1, D]);
    for t in ["qnli", "rte", "mnli"] {
        assert!(m.metrics["dev"][t]["accuracy"].is_number(), "dev metrics of {t}: {}", m.metrics);
    }
    assert_eq!(m.metrics["curve"]["losses"].as_array().unwrap().len(), 2);
    assert_eq!(*progress.begins.borrow(), [("distill".to_string(), 2)]);
    let recorded: DistillConfig = serde_json::from_value(m.config.clone()).unwrap();
    assert_eq!(recorded, cfg);
    Artifact::load(&out, Some(ArtifactKind::Multitask), Some(InUse { backbone: &backbone_of("bert-tiny"), dim: D }))
        .unwrap();
}

#[test]
fn teacher_mean_init_starts_the_shared_prompt_at_the_mean_of_the_teachers() {
    // With a vanishing learning rate the trained tensors stay at their init: P* = mean of the
    // teacher prompts, U = V = 1 (FactorInit::Ones, r = 1).
    let (model, device) = load("bert-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let ts = teachers(tmp.path(), &["mnli", "qnli"]);
    let mut cfg = config(&["mnli", "qnli"]);
    cfg.train.learning_rate = 1e-9;
    cfg.train.max_steps = 1;
    cfg.train.eval_every = 1;
    let a =
        run(&model, &data_root(), &cfg, &dirs(&[&ts[0], &ts[1]]), &tmp.path().join("mt"), &device, &Silent).unwrap();
    let p = floats(&a.tensors["prompt_embeddings"]);
    let t0 = floats(&ts[0].tensors["prompt_embeddings"]);
    let t1 = floats(&ts[1].tensors["prompt_embeddings"]);
    for i in 0..L * D {
        let mean = (t0[i] + t1[i]) / 2.0;
        assert!((p[i] - mean).abs() < 1e-5, "P*[{i}] = {}, teacher mean {mean}", p[i]);
    }
    for name in ["prefix_task_cols", "prefix_task_rows"] {
        assert!(floats(&a.tensors[name]).iter().all(|v| (v - 1.0).abs() < 1e-5), "{name} should start at 1");
    }
}

#[test]
fn the_distillation_term_changes_the_result() {
    let (model, device) = load("bert-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let ts = teachers(tmp.path(), &["mnli", "qnli"]);
    let ds = dirs(&[&ts[0], &ts[1]]);
    let with =
        run(&model, &data_root(), &config(&["mnli", "qnli"]), &ds, &tmp.path().join("a"), &device, &Silent).unwrap();
    let mut cfg = config(&["mnli", "qnli"]);
    cfg.lambda = 0.0; // teachers still give P*'s init (teacher_mean)
    let without = run(&model, &data_root(), &cfg, &ds, &tmp.path().join("b"), &device, &Silent).unwrap();
    assert_eq!(without.meta.parents, with.meta.parents, "teacher_mean uses the teachers, so they are parents");
    assert_ne!(with.tensors, without.tensors);
    // Same inputs twice: same artifact.
    let again =
        run(&model, &data_root(), &config(&["mnli", "qnli"]), &ds, &tmp.path().join("c"), &device, &Silent).unwrap();
    assert_eq!(again.meta.id, with.meta.id);
}

#[test]
fn without_decomposition_the_layout_is_plain() {
    let (model, device) = load("bert-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let ts = teachers(tmp.path(), &["mnli", "qnli"]);
    let mut cfg = config(&["mnli", "qnli"]);
    cfg.decomposition = false;
    let a =
        run(&model, &data_root(), &cfg, &dirs(&[&ts[0], &ts[1]]), &tmp.path().join("mt"), &device, &Silent).unwrap();
    assert_eq!(a.meta.kind, ArtifactKind::Multitask);
    assert_eq!(a.meta.layout, Layout::Prompt);
    assert_eq!(a.meta.rank, 0);
    assert_eq!(a.meta.tunable_params, L * D + heads(&a.meta.tasks));
    assert_eq!(a.meta.tasks, ["mnli", "qnli"]);
    assert_eq!(
        a.tensors.keys().collect::<Vec<_>>(),
        ["classifier.0.bias", "classifier.0.weight", "classifier.1.bias", "classifier.1.weight", "prompt_embeddings"]
    );
    assert_eq!(a.meta.parents, [ts[0].meta.id.clone(), ts[1].meta.id.clone()]);
}

#[test]
fn lambda_zero_with_fresh_init_needs_no_teachers() {
    let (model, device) = load("bert-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(&["mnli", "qnli", "rte"]);
    cfg.lambda = 0.0;
    cfg.shared_init = SharedInit::Fresh { init: PromptInit::Random };
    cfg.prompt_length = Some(3);
    cfg.rank = 2;
    cfg.kappa = 3;
    assert!(!cfg.needs_teachers());
    let a = run(&model, &data_root(), &cfg, &[], &tmp.path().join("mt"), &device, &Silent).unwrap();
    assert_eq!(a.meta.kind, ArtifactKind::Multitask);
    assert!(a.meta.parents.is_empty());
    assert_eq!(a.meta.tasks, ["mnli", "qnli", "rte"]);
    assert_eq!((a.meta.prompt_length, a.meta.rank), (3, 2));
    assert_eq!(a.tensors["prefix_task_cols"].shape(), &[3, 3, 2]);
    assert_eq!(a.tensors["prefix_task_rows"].shape(), &[3, 2, D]);
    assert_eq!(a.meta.tunable_params, 3 * D + 3 * 2 * (3 + D) + heads(&a.meta.tasks));
}

fn expect_config_error(err: DistillError, field: &str) -> String {
    match &err {
        DistillError::Config { field: f, .. } => assert_eq!(f, field, "{err}"),
        other => panic!("expected a config error on `{field}`, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains(field), "{msg}");
    msg
}

#[test]
fn missing_teachers_or_length_are_config_errors() {
    let (model, device) = load("bert-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("mt");
    let progress = Recorder::default();
    // Distillation on, no teachers.
    let err = run(&model, &data_root(), &config(&["mnli", "qnli"]), &[], &out, &device, &progress).unwrap_err();
    expect_config_error(err, "lambda");
    // No distillation, but teacher_mean needs the teachers too.
    let mut cfg = config(&["mnli", "qnli"]);
    cfg.lambda = 0.0;
    assert!(cfg.needs_teachers());
    let err = run(&model, &data_root(), &cfg, &[], &out, &device, &progress).unwrap_err();
    assert!(matches!(err, DistillError::Config { .. }), "{err:?}");
    // Fresh init without teachers needs a prompt length.
    cfg.shared_init = SharedInit::Fresh { init: PromptInit::Vocab };
    let err = run(&model, &data_root(), &cfg, &[], &out, &device, &progress).unwrap_err();
    expect_config_error(err, "prompt_length");
    assert!(!progress.trained());
    assert!(!out.exists());
}

#[test]
fn kappa_out_of_range_is_rejected_before_training() {
    let (model, device) = load("bert-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let ts = teachers(tmp.path(), &["mnli", "qnli", "rte"]);
    let ds = dirs(&[&ts[0], &ts[1], &ts[2]]);
    let out = tmp.path().join("mt");
    let progress = Recorder::default();
    for kappa in [0, 1, 4] {
        let mut cfg = config(&["mnli", "qnli", "rte"]);
        cfg.kappa = kappa;
        let msg =
            expect_config_error(run(&model, &data_root(), &cfg, &ds, &out, &device, &progress).unwrap_err(), "kappa");
        assert!(msg.contains(&kappa.to_string()), "{msg}");
    }
    // batch_size below kappa.
    let mut cfg = config(&["mnli", "qnli", "rte"]);
    cfg.kappa = 3;
    cfg.train.batch_size = 2;
    expect_config_error(
        run(&model, &data_root(), &cfg, &ds, &out, &device, &progress).unwrap_err(),
        "train.batch_size",
    );
    // Fewer than two tasks, duplicates, rank 0.
    let cfg = config(&["mnli"]);
    expect_config_error(run(&model, &data_root(), &cfg, &ds[..1], &out, &device, &progress).unwrap_err(), "tasks");
    let cfg = config(&["mnli", "mnli"]);
    expect_config_error(run(&model, &data_root(), &cfg, &ds, &out, &device, &progress).unwrap_err(), "tasks");
    let mut cfg = config(&["mnli", "qnli"]);
    cfg.rank = 0;
    expect_config_error(run(&model, &data_root(), &cfg, &ds[..2], &out, &device, &progress).unwrap_err(), "rank");
    assert!(!progress.trained());
    assert!(!out.exists());
}

#[test]
fn teachers_of_different_prompt_lengths_are_rejected() {
    let (model, device) = load("bert-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let bb = backbone_of("bert-tiny");
    let a = teacher(&tmp.path().join("a"), "mnli", L, D, &bb, 1);
    let b = teacher(&tmp.path().join("b"), "qnli", L + 2, D, &bb, 2);
    let out = tmp.path().join("mt");
    let progress = Recorder::default();
    let err =
        run(&model, &data_root(), &config(&["mnli", "qnli"]), &dirs(&[&a, &b]), &out, &device, &progress).unwrap_err();
    match &err {
        DistillError::Teacher { path, message } => {
            assert_eq!(path, &b.dir);
            assert!(message.contains("prompt length") && message.contains(&(L + 2).to_string()), "{message}");
        }
        other => panic!("expected a teacher error, got {other:?}"),
    }
    // A prompt_length that disagrees with (consistent) teachers.
    let b = teacher(&tmp.path().join("b2"), "qnli", L, D, &bb, 2);
    let mut cfg = config(&["mnli", "qnli"]);
    cfg.prompt_length = Some(L + 1);
    expect_config_error(
        run(&model, &data_root(), &cfg, &dirs(&[&a, &b]), &out, &device, &progress).unwrap_err(),
        "prompt_length",
    );
    assert!(!progress.trained());
    assert!(!out.exists());
}

#[test]
fn teacher_sets_that_do_not_match_the_tasks_are_rejected() {
    let (model, device) = load("bert-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let ts = teachers(tmp.path(), &["mnli", "qnli", "cb"]);
    let out = tmp.path().join("mt");
    let progress = Recorder::default();
    // An extra teacher (cb) for a task that is not distilled.
    let err = run(
        &model,
        &data_root(),
        &config(&["mnli", "qnli"]),
        &dirs(&[&ts[0], &ts[1], &ts[2]]),
        &out,
        &device,
        &progress,
    )
    .unwrap_err();
    match &err {
        DistillError::Teacher { path, message } => {
            assert_eq!(path, &ts[2].dir);
            assert!(message.contains("cb"), "{message}");
        }
        other => panic!("expected a teacher error naming the cb teacher, got {other:?}"),
    }
    // A task without a teacher.
    let err = run(&model, &data_root(), &config(&["mnli", "rte"]), &dirs(&[&ts[0], &ts[1]]), &out, &device, &progress)
        .unwrap_err();
    let msg = expect_config_error(err, "tasks");
    assert!(msg.contains("rte"), "{msg}");
    assert!(!progress.trained());
    assert!(!out.exists());
}

#[test]
fn a_teacher_of_the_wrong_kind_is_rejected() {
    let (model, device) = load("bert-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let bb = backbone_of("bert-tiny");
    let a = teacher(&tmp.path().join("a"), "mnli", L, D, &bb, 1);
    let tensors = std::collections::BTreeMap::from([("prompt_embeddings".to_string(), host(&[L, D], 9))]);
    let target = write_artifact(&tmp.path().join("target"), ArtifactKind::Target, &["qnli"], &bb, tensors, 9);
    let out = tmp.path().join("mt");
    let err = run(&model, &data_root(), &config(&["mnli", "qnli"]), &dirs(&[&a, &target]), &out, &device, &Silent)
        .unwrap_err();
    match &err {
        DistillError::Core(CoreError::WrongKind { path, expected, found }) => {
            assert_eq!(path, &target.dir);
            assert_eq!((expected.as_str(), found.as_str()), ("teacher", "target"));
        }
        other => panic!("expected WrongKind, got {other:?}"),
    }
    // A "teacher" holding a multitask layout.
    let mt = multitask(&tmp.path().join("mtt"), &["qnli", "rte"], L, 1, D, &bb, 5);
    let mut meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(mt.dir.join("artifact.json")).unwrap()).unwrap();
    meta["kind"] = "teacher".into();
    std::fs::write(mt.dir.join("artifact.json"), serde_json::to_vec(&meta).unwrap()).unwrap();
    let err =
        run(&model, &data_root(), &config(&["mnli", "qnli"]), &dirs(&[&a, &mt]), &out, &device, &Silent).unwrap_err();
    assert!(matches!(&err, DistillError::Teacher { path, .. } if path == &mt.dir), "{err:?}");
    assert!(!out.exists());
}

#[test]
fn a_teacher_of_another_backbone_is_rejected() {
    let (model, device) = load("bert-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let bert = backbone_of("bert-tiny");
    let t5 = backbone_of("t5-v1_1-tiny");
    let a = teacher(&tmp.path().join("a"), "mnli", L, D, &bert, 1);
    let b = teacher(&tmp.path().join("b"), "qnli", L, D, &t5, 2);
    let out = tmp.path().join("mt");
    let progress = Recorder::default();
    let err =
        run(&model, &data_root(), &config(&["mnli", "qnli"]), &dirs(&[&a, &b]), &out, &device, &progress).unwrap_err();
    match &err {
        DistillError::Core(CoreError::BackboneMismatch { path, .. }) => assert_eq!(path, &b.dir),
        other => panic!("expected BackboneMismatch, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("t5-v1_1-tiny") && msg.contains("bert-tiny"), "{msg}");
    assert!(!progress.trained());
    assert!(!out.exists());
}

#[test]
fn a_teacher_of_another_width_is_an_error_not_a_panic() {
    // Same backbone identity, but the prompt is [l, 16] on a d = 32 model.
    let (model, device) = load("bert-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let bb = backbone_of("bert-tiny");
    let a = teacher(&tmp.path().join("a"), "mnli", L, 16, &bb, 1);
    let b = teacher(&tmp.path().join("b"), "qnli", L, 16, &bb, 2);
    let out = tmp.path().join("mt");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run(&model, &data_root(), &config(&["mnli", "qnli"]), &dirs(&[&a, &b]), &out, &device, &Silent)
    }));
    match result {
        Ok(Err(e)) => assert!(e.to_string().contains("16") || e.to_string().contains("32"), "{e}"),
        Ok(Ok(_)) => panic!("a [l, 16] teacher was accepted for a d = 32 backbone"),
        Err(_) => panic!("a teacher prompt of the wrong width panicked instead of returning an error"),
    }
    assert!(!out.exists());
}

#[test]
fn pair_teachers_distil_into_pair_heads_and_a_linear_teacher_does_not_fit_a_pair_run() {
    let (model, device) = load("bert-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let bb = backbone_of("bert-tiny");
    let with_head = |task: &str, width: usize, seed: u64| {
        let c = mpt_data::lookup(task).unwrap().labels.len();
        let tensors = std::collections::BTreeMap::from([
            ("prompt_embeddings".to_string(), host(&[L, D], seed)),
            ("classifier.0.weight".to_string(), host(&[c, width], seed + 1)),
            ("classifier.0.bias".to_string(), host(&[c], seed + 2)),
        ]);
        let dir = tmp.path().join(format!("{task}-{width}"));
        write_artifact(&dir, ArtifactKind::Teacher, &[task], &bb, tensors, seed)
    };
    let (mnli, rte) = (with_head("mnli", 4 * D, 1), with_head("rte", 4 * D, 5));
    let mut cfg = config(&["mnli", "rte"]);
    cfg.head.kind = HeadKind::Pair;
    let a = run(&model, &data_root(), &cfg, &dirs(&[&mnli, &rte]), &tmp.path().join("mt"), &device, &Silent).unwrap();
    assert_eq!(a.tensors["classifier.0.weight"].shape(), &[3, 4 * D]);
    assert_eq!(a.tensors["classifier.1.weight"].shape(), &[2, 4 * D]);
    assert_eq!(a.meta.tunable_params, L * D + 2 * (L + D) + (3 + 2) * (4 * D + 1));
    let linear = with_head("rte", D, 9);
    let out = tmp.path().join("bad");
    let err = run(&model, &data_root(), &cfg, &dirs(&[&mnli, &linear]), &out, &device, &Silent).unwrap_err();
    match &err {
        DistillError::Teacher { path, message } => {
            assert_eq!(path, &linear.dir);
            assert_eq!(
                message,
                &format!(
                    "has a linear head (classifier.0.weight of width {D}), this run's `head.kind` trains a pair head (width {})",
                    4 * D
                )
            );
        }
        other => panic!("expected a teacher error, got {other}"),
    }
    assert!(!out.exists());
}
