//! Stage 3 end to end on bert-tiny and the synthetic data root, from multitask and teacher
//! artifacts written in the test.

#[path = "../../../tests/common/stage_fixtures.rs"]
mod common;

use std::path::Path;

use common::*;
use mpt_adapt::{AdaptConfig, AdaptError, Method, run};
use mpt_core::init::{FactorInit, PromptInit, TargetInit};
use mpt_core::{Artifact, ArtifactKind, CoreError, InUse, Layout};
use mpt_data::DataError;
use mpt_train::{HeadConfig, Selection, Silent, TrainConfig, TrainError};

const L: usize = 4;
const D: usize = 32;

fn train(steps: usize) -> TrainConfig {
    TrainConfig {
        max_steps: steps,
        batch_size: 4,
        eval_every: steps,
        eval_batch_size: 16,
        seed: 5,
        ..TrainConfig::default()
    }
}

fn config(targets: &[&str], method: Method) -> AdaptConfig {
    AdaptConfig {
        targets: targets.iter().map(|t| t.to_string()).collect(),
        prompt_length: matches!(method, Method::Vanilla { .. }).then_some(L),
        method,
        kappa: None,
        train: train(2),
        head: HeadConfig::default(),
        data: Selection { max_train: Some(12), max_dev: Some(6), ..Selection::default() },
        freeze_prompt: false,
    }
}

fn mpt(init: TargetInit) -> Method {
    Method::Mpt { init, fresh: FactorInit::Ones }
}

/// A 2-task multitask artifact (mnli, qnli) on bert-tiny.
fn source(dir: &Path) -> Artifact {
    multitask(&dir.join("mt"), &["mnli", "qnli"], L, 1, D, &backbone_of("bert-tiny"), 11)
}

fn assert_close(name: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol, "{name}[{i}]: {g} vs {w}");
    }
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Numbers in the default (pair) heads of `tasks` on the width-D fixture: `C·4D + C` each.
fn heads(tasks: &[&str]) -> usize {
    let width = mpt_train::HeadKind::default().weight_width(D);
    assert_eq!(width, 4 * D, "the default head is the pair head");
    tasks.iter().map(|t| mpt_data::lookup(t).unwrap().labels.len() * (width + 1)).sum()
}

fn check_target(a: &Artifact, targets: &[&str], layout: Layout, tunable: usize, parents: &[&Artifact]) {
    let m = &a.meta;
    assert_eq!(m.kind, ArtifactKind::Target);
    assert_eq!(m.tasks, targets);
    assert_eq!(m.layout, layout);
    // + the default pair head of each target (C·4D + C).
    assert_eq!(m.tunable_params, tunable + heads(targets));
    assert_eq!(m.parents, parents.iter().map(|p| p.meta.id.clone()).collect::<Vec<_>>());
    for t in targets {
        assert!(m.metrics["dev"][*t].is_object(), "dev metrics of {t}: {}", m.metrics);
    }
    Artifact::load(&a.dir, Some(ArtifactKind::Target), Some(InUse { backbone: &backbone_of("bert-tiny"), dim: D }))
        .unwrap();
}

#[test]
fn mpt_average_init() {
    let (model, device) = load("bert-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let src = source(tmp.path());
    let cfg = config(&["rte"], mpt(TargetInit::Average));
    let a = run(&model, &data_root(), &cfg, Some(&src.dir), &tmp.path().join("t"), &device, &Silent).unwrap();
    check_target(&a, &["rte"], Layout::Multitask, L * D + L + D, &[&src]);
    assert_eq!((a.meta.prompt_length, a.meta.dim, a.meta.rank), (L, D, 1));
    assert_eq!(a.tensors["prefix_task_cols"].shape(), &[1, L, 1]);
    assert_eq!(a.tensors["prefix_task_rows"].shape(), &[1, 1, D]);
    assert_eq!(a.meta.metrics["curve"]["losses"].as_array().unwrap().len(), 2);
    let recorded: AdaptConfig = serde_json::from_value(a.meta.config.clone()).unwrap();
    assert_eq!(recorded, cfg);
}

/// Runs with a vanishing learning rate, so the stored tensors are the init.
fn init_of(method: Method, targets: &[&str], src: &Artifact, out: &Path) -> Artifact {
    let (model, device) = load("bert-tiny");
    let mut cfg = config(targets, method);
    cfg.train = train(1);
    cfg.train.learning_rate = 1e-9;
    run(&model, &data_root(), &cfg, Some(&src.dir), out, &device, &Silent).unwrap()
}

#[test]
fn mpt_inits_take_the_right_factors() {
    let tmp = tempfile::tempdir().unwrap();
    let src = source(tmp.path());
    let p_star = floats(&src.tensors["prompt_embeddings"]);
    let cols = floats(&src.tensors["prefix_task_cols"]); // [2, L, 1]
    let rows = floats(&src.tensors["prefix_task_rows"]); // [2, 1, D]
    let mean = |v: &[f32], n: usize| -> Vec<f32> { (0..n).map(|i| (v[i] + v[n + i]) / 2.0).collect() };
    let tol = 1e-5;

    let avg = init_of(mpt(TargetInit::Average), &["rte"], &src, &tmp.path().join("avg"));
    assert_eq!(avg.meta.tunable_params, L * D + L + D + heads(&["rte"]));
    assert_close("P*", floats(&avg.tensors["prompt_embeddings"]), p_star, tol);
    assert_close("U average", floats(&avg.tensors["prefix_task_cols"]), &mean(cols, L), tol);
    assert_close("V average", floats(&avg.tensors["prefix_task_rows"]), &mean(rows, D), tol);

    let qnli = init_of(mpt(TargetInit::Source { task: "qnli".into() }), &["rte"], &src, &tmp.path().join("src"));
    assert_eq!(qnli.meta.tunable_params, L * D + L + D + heads(&["rte"]));
    assert_close("U source", floats(&qnli.tensors["prefix_task_cols"]), &cols[L..], tol);
    assert_close("V source", floats(&qnli.tensors["prefix_task_rows"]), &rows[D..], tol);
    assert_eq!(qnli.meta.parents, std::slice::from_ref(&src.meta.id));

    let shared = init_of(mpt(TargetInit::Shared), &["rte"], &src, &tmp.path().join("shared"));
    assert_eq!(shared.meta.tunable_params, L * D + L + D + heads(&["rte"]));
    assert_close("P* shared", floats(&shared.tensors["prompt_embeddings"]), p_star, tol);
    assert_close("U fresh", floats(&shared.tensors["prefix_task_cols"]), &[1.0; L], tol);
    assert_close("V fresh", floats(&shared.tensors["prefix_task_rows"]), &[1.0; D], tol);
}

#[test]
fn mpt_source_init_of_an_unknown_source_task_is_an_error() {
    let (model, device) = load("bert-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let src = source(tmp.path());
    let out = tmp.path().join("t");
    let cfg = config(&["rte"], mpt(TargetInit::Source { task: "cb".into() }));
    let err = run(&model, &data_root(), &cfg, Some(&src.dir), &out, &device, &Silent).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("\"cb\"") && msg.contains("mnli"), "{msg}");
    assert!(!out.exists());
}

#[test]
fn multi_target_shares_p_star_with_factors_per_target() {
    let (model, device) = load("bert-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let src = source(tmp.path());
    let cfg = config(&["rte", "cb"], mpt(TargetInit::Average));
    let a = run(&model, &data_root(), &cfg, Some(&src.dir), &tmp.path().join("t"), &device, &Silent).unwrap();
    check_target(&a, &["rte", "cb"], Layout::Multitask, L * D + (L + D) * 2, &[&src]);
    assert_eq!(a.tensors["prefix_task_cols"].shape(), &[2, L, 1]);
    assert_eq!(a.tensors["prefix_task_rows"].shape(), &[2, 1, D]);
    assert!(a.meta.metrics["dev"]["cb"]["macro_f1"].is_number(), "{}", a.meta.metrics);
    // Explicit κ = 2 is valid; 1 and 3 are not.
    let out = tmp.path().join("bad");
    for kappa in [1, 3] {
        let mut bad = cfg.clone();
        bad.kappa = Some(kappa);
        match run(&model, &data_root(), &bad, Some(&src.dir), &out, &device, &Silent).unwrap_err() {
            AdaptError::Config { field, .. } => assert_eq!(field, "kappa"),
            other => panic!("expected a kappa error, got {other:?}"),
        }
    }
    assert!(!out.exists());
}

#[test]
fn vanilla_starts_from_scratch() {
    let (model, device) = load("bert-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(&["rte"], Method::Vanilla { init: PromptInit::Random });
    let a = run(&model, &data_root(), &cfg, None, &tmp.path().join("t"), &device, &Silent).unwrap();
    check_target(&a, &["rte"], Layout::Prompt, L * D, &[]);
    assert_eq!(a.tensors.keys().collect::<Vec<_>>(), ["classifier.0.bias", "classifier.0.weight", "prompt_embeddings"]);
    assert_eq!(a.tensors["prompt_embeddings"].shape(), &[L, D]);
}

#[test]
fn vanilla_on_t5() {
    let (model, device) = load("t5-v1_1-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg =
        config(&["cb"], Method::Vanilla { init: PromptInit::Text { text: "natural language inference".into() } });
    cfg.prompt_length = Some(6);
    let a = run(&model, &data_root(), &cfg, None, &tmp.path().join("t"), &device, &Silent).unwrap();
    assert_eq!(a.meta.kind, ArtifactKind::Target);
    assert_eq!(a.meta.tunable_params, 6 * D);
    assert_eq!(a.meta.backbone.arch.name(), "t5");
    assert!(a.meta.metrics["dev"]["cb"]["accuracy"].is_number());
}

#[test]
fn spot_starts_from_the_teacher_prompt() {
    let (model, device) = load("bert-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let t = teacher(&tmp.path().join("teacher"), "mnli", L, D, &backbone_of("bert-tiny"), 21);
    let start = floats(&t.tensors["prompt_embeddings"]);
    // Tiny learning rate: the result is (almost) the teacher's prompt.
    let mut cfg = config(&["rte"], Method::Spot);
    cfg.train.learning_rate = 1e-6;
    let near = run(&model, &data_root(), &cfg, Some(&t.dir), &tmp.path().join("near"), &device, &Silent).unwrap();
    check_target(&near, &["rte"], Layout::Prompt, L * D, &[&t]);
    assert_close("spot init", floats(&near.tensors["prompt_embeddings"]), start, 1e-4);
    // Normal learning rate: the prompt moved (so it was trained, not just copied).
    let cfg = config(&["rte"], Method::Spot);
    let moved = run(&model, &data_root(), &cfg, Some(&t.dir), &tmp.path().join("moved"), &device, &Silent).unwrap();
    let diff = max_diff(floats(&moved.tensors["prompt_embeddings"]), start);
    assert!(diff > 1e-3, "prompt barely moved: {diff}");
    assert_eq!(moved.meta.parents, std::slice::from_ref(&t.meta.id));
}

#[test]
fn a_frozen_prompt_stays_the_start_prompt_and_only_the_head_trains() {
    let (model, device) = load("bert-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let t = teacher(&tmp.path().join("teacher"), "mnli", L, D, &backbone_of("bert-tiny"), 21);
    let mut cfg = config(&["rte"], Method::Spot);
    cfg.freeze_prompt = true;
    let frozen = run(&model, &data_root(), &cfg, Some(&t.dir), &tmp.path().join("frozen"), &device, &Silent).unwrap();
    assert_close(
        "frozen prompt",
        floats(&frozen.tensors["prompt_embeddings"]),
        floats(&t.tensors["prompt_embeddings"]),
        0.0,
    );
    // Only the head's numbers are tunable, and the head did train: it left its start (the head
    // of a run whose learning rate is too small to move anything).
    check_target(&frozen, &["rte"], Layout::Prompt, 0, &[&t]);
    let recorded: AdaptConfig = serde_json::from_value(frozen.meta.config.clone()).unwrap();
    assert!(recorded.freeze_prompt);
    cfg.freeze_prompt = false;
    cfg.train.learning_rate = 1e-6;
    let still = run(&model, &data_root(), &cfg, Some(&t.dir), &tmp.path().join("still"), &device, &Silent).unwrap();
    let moved = max_diff(floats(&frozen.tensors["classifier.0.weight"]), floats(&still.tensors["classifier.0.weight"]));
    assert!(moved > 1e-3, "the head barely moved: {moved}");
    // An unfrozen run's config has no `freeze_prompt` key, so earlier artifacts keep their ids.
    assert!(still.meta.config.get("freeze_prompt").is_none(), "{}", still.meta.config);

    // MPT: P*, u and v all stay where they started.
    let src = source(tmp.path());
    let mut cfg = config(&["rte"], mpt(TargetInit::Average));
    cfg.freeze_prompt = true;
    let a = run(&model, &data_root(), &cfg, Some(&src.dir), &tmp.path().join("mpt"), &device, &Silent).unwrap();
    check_target(&a, &["rte"], Layout::Multitask, 0, &[&src]);
    let start = init_of(mpt(TargetInit::Average), &["rte"], &src, &tmp.path().join("init"));
    for name in ["prompt_embeddings", "prefix_task_cols", "prefix_task_rows"] {
        assert_close(name, floats(&a.tensors[name]), floats(&start.tensors[name]), 1e-4);
    }
    // Unfrozen, all three train.
    cfg.freeze_prompt = false;
    let trained =
        run(&model, &data_root(), &cfg, Some(&src.dir), &tmp.path().join("mpt-trained"), &device, &Silent).unwrap();
    for name in ["prompt_embeddings", "prefix_task_cols", "prefix_task_rows"] {
        let moved = max_diff(floats(&trained.tensors[name]), floats(&start.tensors[name]));
        assert!(moved > 1e-4, "{name} barely moved: {moved}");
    }
}

#[test]
fn a_frozen_prompt_under_the_verbalizer_is_refused() {
    let (model, device) = load("bert-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(&["rte"], Method::Vanilla { init: PromptInit::Random });
    cfg.freeze_prompt = true;
    cfg.head.kind = mpt_train::HeadKind::Verbalizer;
    let err = run(&model, &data_root(), &cfg, None, &tmp.path().join("t"), &device, &Silent).unwrap_err();
    match &err {
        AdaptError::Config { field, .. } => assert_eq!(field, "freeze_prompt", "{err}"),
        other => panic!("expected a config error on `freeze_prompt`, got {other:?}"),
    }
    assert!(!tmp.path().join("t").exists());
}

#[test]
fn mpt_from_a_multitask_artifact_without_decomposition_is_a_plain_prompt() {
    let (model, device) = load("bert-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let tensors = std::collections::BTreeMap::from([("prompt_embeddings".to_string(), host(&[L, D], 31))]);
    let src = write_artifact(
        &tmp.path().join("mt"),
        ArtifactKind::Multitask,
        &["mnli", "qnli"],
        &backbone_of("bert-tiny"),
        tensors,
        31,
    );
    let mut cfg = config(&["rte"], mpt(TargetInit::Average));
    cfg.train = train(1);
    cfg.train.learning_rate = 1e-9;
    let a = run(&model, &data_root(), &cfg, Some(&src.dir), &tmp.path().join("t"), &device, &Silent).unwrap();
    check_target(&a, &["rte"], Layout::Prompt, L * D, &[&src]);
    assert_close(
        "shared prompt",
        floats(&a.tensors["prompt_embeddings"]),
        floats(&src.tensors["prompt_embeddings"]),
        1e-5,
    );
}

fn expect_method_error(err: AdaptError) {
    match &err {
        AdaptError::Config { field, .. } => assert_eq!(field, "method", "{err}"),
        other => panic!("expected a config error on `method`, got {other:?}"),
    }
}

#[test]
fn source_presence_and_kind_must_fit_the_method() {
    let (model, device) = load("bert-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let src = source(tmp.path());
    let t = teacher(&tmp.path().join("teacher"), "mnli", L, D, &backbone_of("bert-tiny"), 21);
    let out = tmp.path().join("out");
    let progress = Recorder::default();
    let root = data_root();
    // mpt from a teacher.
    let err = run(&model, &root, &config(&["rte"], mpt(TargetInit::Average)), Some(&t.dir), &out, &device, &progress)
        .unwrap_err();
    match &err {
        AdaptError::Core(CoreError::WrongKind { path, expected, found }) => {
            assert_eq!(path, &t.dir);
            assert_eq!((expected.as_str(), found.as_str()), ("multitask", "teacher"));
        }
        other => panic!("expected WrongKind, got {other:?}"),
    }
    // spot from a multitask artifact.
    let err =
        run(&model, &root, &config(&["rte"], Method::Spot), Some(&src.dir), &out, &device, &progress).unwrap_err();
    assert!(matches!(err, AdaptError::Core(CoreError::WrongKind { .. })), "{err:?}");
    // vanilla with a source; mpt and spot without one.
    let vanilla = config(&["rte"], Method::Vanilla { init: PromptInit::Vocab });
    expect_method_error(run(&model, &root, &vanilla, Some(&src.dir), &out, &device, &progress).unwrap_err());
    expect_method_error(
        run(&model, &root, &config(&["rte"], mpt(TargetInit::Average)), None, &out, &device, &progress).unwrap_err(),
    );
    let err = run(&model, &root, &config(&["rte"], Method::Spot), None, &out, &device, &progress).unwrap_err();
    expect_method_error(err);
    assert!(!progress.trained());
    assert!(!out.exists());
}

#[test]
fn prompt_length_and_targets_are_checked() {
    let (model, device) = load("bert-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let src = source(tmp.path());
    let out = tmp.path().join("out");
    let progress = Recorder::default();
    let root = data_root();
    let field = |e: AdaptError| match e {
        AdaptError::Config { field, .. } => field,
        other => panic!("expected a config error, got {other:?}"),
    };
    let mut vanilla = config(&["rte"], Method::Vanilla { init: PromptInit::Vocab });
    vanilla.prompt_length = None;
    assert_eq!(field(run(&model, &root, &vanilla, None, &out, &device, &progress).unwrap_err()), "prompt_length");
    vanilla.prompt_length = Some(0);
    assert_eq!(field(run(&model, &root, &vanilla, None, &out, &device, &progress).unwrap_err()), "prompt_length");
    let mut m = config(&["rte"], mpt(TargetInit::Average));
    m.prompt_length = Some(L);
    assert_eq!(field(run(&model, &root, &m, Some(&src.dir), &out, &device, &progress).unwrap_err()), "prompt_length");
    let none = config(&[], mpt(TargetInit::Average));
    assert_eq!(field(run(&model, &root, &none, Some(&src.dir), &out, &device, &progress).unwrap_err()), "targets");
    let twice = config(&["rte", "rte"], mpt(TargetInit::Average));
    assert_eq!(field(run(&model, &root, &twice, Some(&src.dir), &out, &device, &progress).unwrap_err()), "targets");
    let unknown = config(&["nope"], mpt(TargetInit::Average));
    let err = run(&model, &root, &unknown, Some(&src.dir), &out, &device, &progress).unwrap_err();
    assert!(matches!(err, AdaptError::Data(DataError::UnknownTask { .. })), "{err:?}");
    assert!(!progress.trained());
    assert!(!out.exists());
}

#[test]
fn a_source_of_another_backbone_is_rejected() {
    let (model, device) = load("bert-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let src = multitask(&tmp.path().join("mt"), &["mnli", "qnli"], L, 1, D, &backbone_of("t5-v1_0-tiny"), 3);
    let out = tmp.path().join("out");
    let err =
        run(&model, &data_root(), &config(&["rte"], mpt(TargetInit::Average)), Some(&src.dir), &out, &device, &Silent)
            .unwrap_err();
    assert!(matches!(&err, AdaptError::Core(CoreError::BackboneMismatch { path, .. }) if path == &src.dir), "{err:?}");
    assert!(!out.exists());
}

#[test]
fn few_shot_selection_on_cb() {
    let (model, device) = load("bert-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let src = source(tmp.path());
    let mut cfg = config(&["cb"], mpt(TargetInit::Average));
    cfg.data.few_shot_k = Some(2);
    cfg.data.max_train = None;
    let a = run(&model, &data_root(), &cfg, Some(&src.dir), &tmp.path().join("a"), &device, &Silent).unwrap();
    check_target(&a, &["cb"], Layout::Multitask, L * D + L + D, &[&src]);
    assert_eq!(a.meta.config["data"]["few_shot_k"], 2);
    // Another draw (sample_seed) trains on other examples: other tensors, same training seed.
    let mut other = cfg.clone();
    other.data.sample_seed = 1;
    let b = run(&model, &data_root(), &other, Some(&src.dir), &tmp.path().join("b"), &device, &Silent).unwrap();
    assert_ne!(a.tensors, b.tensors);
    // The same draw again is identical.
    let c = run(&model, &data_root(), &cfg, Some(&src.dir), &tmp.path().join("c"), &device, &Silent).unwrap();
    assert_eq!(a.tensors, c.tensors);
    // The tiny cb train split has 16 rows per class: k = 17 cannot be drawn.
    let mut too_many = cfg.clone();
    too_many.data.few_shot_k = Some(17);
    let out = tmp.path().join("d");
    let err = run(&model, &data_root(), &too_many, Some(&src.dir), &out, &device, &Silent).unwrap_err();
    match &err {
        AdaptError::Train(TrainError::Data(DataError::FewShot { task, k, available, .. }))
        | AdaptError::Data(DataError::FewShot { task, k, available, .. }) => {
            assert_eq!((task.as_str(), *k, *available), ("cb", 17, 16));
        }
        other => panic!("expected a few-shot error, got {other:?}"),
    }
    assert!(!out.exists());
}

#[test]
fn a_source_of_another_width_is_an_error_not_a_panic() {
    let (model, device) = load("bert-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let t = teacher(&tmp.path().join("teacher"), "mnli", L, 16, &backbone_of("bert-tiny"), 21);
    let out = tmp.path().join("t");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run(&model, &data_root(), &config(&["rte"], Method::Spot), Some(&t.dir), &out, &device, &Silent)
    }));
    match result {
        Ok(Err(e)) => assert!(e.to_string().contains("16") || e.to_string().contains("32"), "{e}"),
        Ok(Ok(_)) => panic!("a [l, 16] source was accepted for a d = 32 backbone"),
        Err(_) => panic!("a source prompt of the wrong width panicked instead of returning an error"),
    }
    assert!(!out.exists());
}
