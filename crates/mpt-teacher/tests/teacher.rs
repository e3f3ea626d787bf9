//! Stage 1 end to end on the committed tiny fixtures: bert-tiny / t5-v1_0-tiny and the
//! synthetic data root `tests/fixtures/data` (see tests/fixtures/make_tiny_data.py).

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use mpt_core::init::PromptInit;
use mpt_core::{Artifact, ArtifactKind, BackboneRef, InUse, Layout};
use mpt_data::{DataError, DataRoot};
use mpt_models::Model;
use mpt_teacher::{TeacherConfig, TeacherError, run};
use mpt_train::{EvalPoint, HeadConfig, Progress, Selection, Silent, TrainConfig, TrainError};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures").join(name)
}

fn data_root() -> DataRoot {
    DataRoot::new(fixture("data"))
}

fn load(name: &str) -> (Model, Device) {
    let device = Device::flex();
    let model = Model::load(&fixture(name), &device).expect("tiny fixture model loads");
    (model, device)
}

fn config(task: &str, l: usize, steps: usize) -> TeacherConfig {
    TeacherConfig {
        task: task.into(),
        prompt_length: l,
        init: PromptInit::Vocab,
        train: TrainConfig {
            max_steps: steps,
            batch_size: 4,
            eval_every: steps,
            eval_batch_size: 16,
            seed: 7,
            ..TrainConfig::default()
        },
        head: HeadConfig::default(),
        data: Selection { max_train: Some(24), max_dev: Some(8), ..Selection::default() },
    }
}

/// Records what the training loop reports.
#[derive(Default)]
struct Recorder {
    begins: RefCell<Vec<(String, usize)>>,
    steps: RefCell<Vec<usize>>,
    evals: RefCell<Vec<usize>>,
}

impl Progress for Recorder {
    fn begin(&self, stage: &str, total: usize) {
        self.begins.borrow_mut().push((stage.to_string(), total));
    }
    fn step(&self, step: usize, _loss: f64, _rate: f64) {
        self.steps.borrow_mut().push(step);
    }
    fn eval(&self, point: &EvalPoint, _best: f64) {
        self.evals.borrow_mut().push(point.step);
    }
}

fn prompt_values(a: &Artifact) -> Vec<f32> {
    match &a.tensors["prompt_embeddings"] {
        mpt_models::io::HostTensor::F32 { data, .. } => data.clone(),
        other => panic!("prompt_embeddings is {}", other.dtype_name()),
    }
}

fn check_teacher(a: &Artifact, model: &Model, task: &str, l: usize, steps: usize) {
    let m = &a.meta;
    assert_eq!(m.kind, ArtifactKind::Teacher);
    assert_eq!(m.tasks, vec![task.to_string()]);
    assert_eq!(m.layout, Layout::Prompt);
    assert_eq!(m.prompt_length, l);
    assert_eq!(m.dim, 32);
    assert_eq!(m.rank, 0);
    // BERT trains a head beside the prompt: C·w + C more numbers, w = d (the default linear
    // head) or 4d (the pair head).
    let head = match model.backbone.arch().family() {
        mpt_models::Family::Encoder => {
            let c = mpt_data::lookup(task).unwrap().labels.len();
            let width = if m.config["head"]["kind"] == "pair" { 4 * 32 } else { 32 };
            assert_eq!(a.tensors["classifier.0.weight"].shape(), &[c, width]);
            c * width + c
        }
        _ => {
            assert!(!a.has_classifiers(), "T5 has no linear head");
            0
        }
    };
    assert_eq!(m.tunable_params, l * 32 + head);
    assert!(m.parents.len() <= 1, "a teacher has no parents or the teacher it continued: {:?}", m.parents);
    assert_eq!(m.backbone, BackboneRef::new(model.backbone.arch(), &model.fingerprint));
    assert_eq!(a.tensors["prompt_embeddings"].shape(), &[l, 32]);
    assert!(prompt_values(a).iter().all(|v| v.is_finite()));
    let dev = &m.metrics["dev"][task];
    assert!(dev.is_object(), "metrics.dev.{task} missing: {}", m.metrics);
    let acc = dev["accuracy"].as_f64().expect("dev accuracy recorded");
    assert!((0.0..=1.0).contains(&acc), "accuracy {acc}");
    assert!(m.metrics["dev_score"].as_f64().is_some());
    assert_eq!(m.metrics["steps"].as_u64(), Some(steps as u64));
    let losses = m.metrics["curve"]["losses"].as_array().expect("curve.losses");
    assert_eq!(losses.len(), steps, "one loss per step: {losses:?}");
    for (i, p) in losses.iter().enumerate() {
        assert_eq!(p[0].as_u64(), Some(i as u64 + 1), "losses are (step, loss) with 1-based steps");
        let loss = p[1].as_f64().unwrap();
        assert!(loss.is_finite() && loss > 0.0, "loss {loss}");
    }
    let evals = m.metrics["curve"]["evals"].as_array().expect("curve.evals");
    assert_eq!(evals.len(), 1, "eval_every = steps: one evaluation");
}

#[test]
fn bert_teacher_writes_a_verified_artifact() {
    let (model, device) = load("bert-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("teacher-mnli");
    let cfg = config("mnli", 4, 3);
    let progress = Recorder::default();
    let a = run(&model, &data_root(), &cfg, &out, &device, &progress).unwrap();
    check_teacher(&a, &model, "mnli", 4, 3);
    assert!(a.meta.parents.is_empty(), "a fresh teacher has no parents: {:?}", a.meta.parents);
    assert_eq!(a.dir, out);
    assert_eq!(*progress.begins.borrow(), vec![("teacher mnli".to_string(), 3)]);
    assert_eq!(*progress.steps.borrow(), vec![1, 2, 3]);
    assert_eq!(*progress.evals.borrow(), vec![3]);
    // The config is recorded as given.
    let recorded: TeacherConfig = serde_json::from_value(a.meta.config.clone()).unwrap();
    assert_eq!(recorded, cfg);
    // Loading verifies kind, checksum, shapes and backbone, and gives the same artifact.
    let backbone = BackboneRef::new(model.backbone.arch(), &model.fingerprint);
    let loaded = Artifact::load(
        &out,
        Some(ArtifactKind::Teacher),
        Some(InUse { backbone: &backbone, dim: model.backbone.dim() }),
    )
    .unwrap();
    // (metrics hold f32 losses as f64; serde_json's default parser may change their last
    // digit, so everything but the curve is compared exactly)
    let mut on_disk = loaded.meta.clone();
    let mut in_memory = a.meta.clone();
    on_disk.metrics["curve"] = serde_json::Value::Null;
    in_memory.metrics["curve"] = serde_json::Value::Null;
    assert_eq!(on_disk, in_memory);
    assert_eq!(loaded.tensors, a.tensors);
    // No staging folders left next to it.
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "teacher-mnli")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn training_moves_the_prompt_away_from_its_init() {
    // Vocab init copies embedding rows; after steps with lr 0.03 the stored prompt must differ
    // from every embedding row it could have started from.
    let (model, device) = load("bert-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let a = run(&model, &data_root(), &config("mnli", 4, 2), &tmp.path().join("t"), &device, &Silent).unwrap();
    let emb = model.backbone.word_embedding_matrix().try_into_vec_as::<f32>().unwrap();
    let p = prompt_values(&a);
    for row in p.chunks(32) {
        let matches_some_row = emb.chunks(32).any(|e| e.iter().zip(row).all(|(x, y)| (x - y).abs() < 1e-7));
        assert!(!matches_some_row, "a prompt row is still an untouched embedding row");
    }
}

#[test]
fn same_config_gives_the_same_artifact_id() {
    let (model, device) = load("bert-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config("mnli", 4, 2);
    let a = run(&model, &data_root(), &cfg, &tmp.path().join("a"), &device, &Silent).unwrap();
    let b = run(&model, &data_root(), &cfg, &tmp.path().join("b"), &device, &Silent).unwrap();
    assert_eq!(a.meta.id, b.meta.id, "flex training must be deterministic");
    assert_eq!(a.meta.tensors_sha256, b.meta.tensors_sha256);
    assert_eq!(a.tensors, b.tensors);
    // Another seed gives another prompt (so the id depends on the run, not just the config shape).
    let mut other = cfg.clone();
    other.train.seed = 8;
    let c = run(&model, &data_root(), &other, &tmp.path().join("c"), &device, &Silent).unwrap();
    assert_ne!(c.meta.id, a.meta.id);
    assert_ne!(c.tensors, a.tensors);
}

#[test]
fn rewriting_an_existing_folder_replaces_it() {
    let (model, device) = load("bert-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("t");
    let first = run(&model, &data_root(), &config("mnli", 4, 2), &out, &device, &Silent).unwrap();
    let second = run(&model, &data_root(), &config("mnli", 3, 2), &out, &device, &Silent).unwrap();
    assert_ne!(first.meta.id, second.meta.id);
    let loaded = Artifact::load(&out, Some(ArtifactKind::Teacher), None).unwrap();
    assert_eq!(loaded.meta.id, second.meta.id);
    assert_eq!(loaded.meta.prompt_length, 3);
}

#[test]
fn t5_teacher_works() {
    let (model, device) = load("t5-v1_0-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("teacher-rte");
    let a = run(&model, &data_root(), &config("rte", 5, 2), &out, &device, &Silent).unwrap();
    check_teacher(&a, &model, "rte", 5, 2);
    assert_eq!(a.meta.backbone.arch.name(), "t5");
    assert_eq!(a.meta.backbone.name, "t5-v1_0-tiny");
}

fn assert_nothing_happened(progress: &Recorder, out: &Path) {
    assert!(progress.begins.borrow().is_empty(), "training started before the config was checked");
    assert!(!out.exists(), "an artifact folder was created");
}

#[test]
fn unknown_task_is_a_config_error_before_training() {
    let (model, device) = load("bert-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("t");
    let progress = Recorder::default();
    let cfg = config("no-such-task", 4, 2);
    assert!(cfg.validate().is_err());
    let err = run(&model, &data_root(), &cfg, &out, &device, &progress).unwrap_err();
    match &err {
        TeacherError::Data(DataError::UnknownTask { name, .. }) => assert_eq!(name, "no-such-task"),
        other => panic!("expected an unknown-task error, got {other:?}"),
    }
    assert!(err.to_string().contains("no-such-task"), "{err}");
    assert_nothing_happened(&progress, &out);
}

#[test]
fn zero_prompt_length_is_a_config_error_before_training() {
    let (model, device) = load("bert-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("t");
    let progress = Recorder::default();
    let err = run(&model, &data_root(), &config("mnli", 0, 2), &out, &device, &progress).unwrap_err();
    match &err {
        TeacherError::Config { field, .. } => assert_eq!(field, "prompt_length"),
        other => panic!("expected a config error, got {other:?}"),
    }
    assert!(err.to_string().contains("prompt_length"), "{err}");
    assert_nothing_happened(&progress, &out);
}

#[test]
fn bad_training_values_name_the_field() {
    let (model, device) = load("bert-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("t");
    let progress = Recorder::default();
    let mut cfg = config("mnli", 4, 2);
    cfg.train.max_steps = 0;
    let err = run(&model, &data_root(), &cfg, &out, &device, &progress).unwrap_err();
    match &err {
        TeacherError::Train(TrainError::Config { field, .. }) => assert_eq!(field, "train.max_steps"),
        other => panic!("expected a train config error, got {other:?}"),
    }
    cfg.train.max_steps = 2;
    cfg.train.learning_rate = -1.0;
    let err = run(&model, &data_root(), &cfg, &out, &device, &progress).unwrap_err();
    assert!(err.to_string().contains("train.learning_rate"), "{err}");
    assert_nothing_happened(&progress, &out);
}

fn missing_file_of(err: &TeacherError) -> Option<&Path> {
    match err {
        TeacherError::Data(DataError::MissingFile { path, .. })
        | TeacherError::Train(TrainError::Data(DataError::MissingFile { path, .. })) => Some(path),
        _ => None,
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

#[test]
fn missing_data_file_is_a_data_error_naming_the_file() {
    let (model, device) = load("bert-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    copy_dir(&fixture("data/mnli"), &root.join("mnli"));
    let gone = root.join("mnli/train-subset-ppft/train.json");
    std::fs::remove_file(&gone).unwrap();
    let out = tmp.path().join("t");
    let progress = Recorder::default();
    let err = run(&model, &DataRoot::new(&root), &config("mnli", 4, 2), &out, &device, &progress).unwrap_err();
    let path = missing_file_of(&err).unwrap_or_else(|| panic!("expected DataError::MissingFile, got {err:?}"));
    assert_eq!(path, gone);
    let msg = err.to_string();
    assert!(msg.contains("missing file") && msg.contains("train-subset-ppft/train.json"), "{msg}");
    assert_nothing_happened(&progress, &out);
}

#[test]
fn empty_data_root_names_the_first_missing_file() {
    let (model, device) = load("bert-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("t");
    let err = run(&model, &DataRoot::new(tmp.path()), &config("rte", 4, 2), &out, &device, &Silent).unwrap_err();
    let path = missing_file_of(&err).unwrap_or_else(|| panic!("expected DataError::MissingFile, got {err:?}"));
    assert!(path.starts_with(tmp.path()) && path.to_string_lossy().contains("rte/"), "{}", path.display());
    assert!(!out.exists());
}

#[test]
fn a_run_can_continue_from_an_earlier_teacher() {
    let (model, device) = load("bert-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config("mnli", 4, 2);
    let first = run(&model, &data_root(), &cfg, &tmp.path().join("first"), &device, &Silent).unwrap();
    assert!(first.has_classifiers());
    let trace = tmp.path().join("trace");
    let mut more = cfg.clone();
    more.train.seed = 8;
    let second = mpt_teacher::run_traced(
        &model,
        &data_root(),
        &more,
        &tmp.path().join("second"),
        Some(&trace),
        Some(&first.dir),
        &device,
        &Silent,
    )
    .unwrap();
    // It starts from the first run's prompt and head, not from `init`, and records it as parent.
    let start = mpt_models::io::read_safetensors(&trace.join("init.safetensors")).unwrap();
    assert_eq!(start, first.tensors);
    assert_eq!(second.meta.parents, vec![first.meta.id.clone()]);
    check_teacher(&second, &model, "mnli", 4, 2);
    assert_ne!(second.tensors, first.tensors, "the continued run trained");
    // A fresh run with the same config is another prompt.
    let fresh = run(&model, &data_root(), &more, &tmp.path().join("fresh"), &device, &Silent).unwrap();
    assert_ne!(fresh.tensors, second.tensors);
    assert!(fresh.meta.parents.is_empty());
}

#[test]
fn continuing_from_a_teacher_that_does_not_fit_is_an_error_before_training() {
    let (model, device) = load("bert-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let mut linear = config("mnli", 4, 2);
    linear.head.kind = mpt_train::HeadKind::Linear;
    let first = run(&model, &data_root(), &linear, &tmp.path().join("first"), &device, &Silent).unwrap();
    let mut verbalizer = config("mnli", 4, 2);
    verbalizer.head.kind = mpt_train::HeadKind::Verbalizer;
    let mut pair = config("mnli", 4, 2);
    pair.head.kind = mpt_train::HeadKind::Pair;
    let d = model.backbone.dim();
    let pair_says =
        format!("has a linear head (classifier.0.weight of width {d}), this run's head is pair (width {})", 4 * d);
    for (cfg, says) in [
        (config("rte", 4, 2), "was trained on task \"mnli\", this run is for \"rte\""),
        (config("mnli", 3, 2), "has prompt length 4, this run's `prompt_length` is 3"),
        (verbalizer, "has a trained linear head, this run's head is the verbalizer"),
        (pair, pair_says.as_str()),
    ] {
        let out = tmp.path().join("second");
        let progress = Recorder::default();
        let err = mpt_teacher::run_traced(&model, &data_root(), &cfg, &out, None, Some(&first.dir), &device, &progress)
            .unwrap_err();
        match &err {
            TeacherError::Continue { path, message } => {
                assert_eq!(path, &first.dir);
                assert_eq!(message, says);
            }
            other => panic!("expected a Continue error, got {other}"),
        }
        assert!(err.to_string().contains(&first.dir.display().to_string()), "{err}");
        assert_nothing_happened(&progress, &out);
    }
    // Not a teacher folder at all: the artifact error names the file.
    let err = mpt_teacher::run_traced(
        &model,
        &data_root(),
        &config("mnli", 4, 2),
        &tmp.path().join("x"),
        None,
        Some(tmp.path()),
        &device,
        &Silent,
    )
    .unwrap_err();
    assert!(matches!(err, TeacherError::Core(_)), "{err}");
}

#[test]
fn pair_head_teacher_stores_a_head_four_times_the_width_and_evaluates() {
    let (model, device) = load("bert-tiny");
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config("rte", 4, 3);
    cfg.head.kind = mpt_train::HeadKind::Pair;
    let a = run(&model, &data_root(), &cfg, &tmp.path().join("t"), &device, &Silent).unwrap();
    let d = model.backbone.dim();
    assert_eq!(a.tensors["classifier.0.weight"].shape(), &[2, 4 * d]);
    assert_eq!(a.meta.tunable_params, 4 * d + 2 * 4 * d + 2);
    check_teacher(&a, &model, "rte", 4, 3);
    // A pair teacher continues as a pair teacher.
    let more = mpt_teacher::run_traced(
        &model,
        &data_root(),
        &cfg,
        &tmp.path().join("more"),
        None,
        Some(&a.dir),
        &device,
        &Silent,
    )
    .unwrap();
    assert_eq!(more.meta.parents, vec![a.meta.id.clone()]);
    assert_eq!(more.tensors["classifier.0.weight"].shape(), &[2, 4 * d]);
}
