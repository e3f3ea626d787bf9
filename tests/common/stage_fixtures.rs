//! Helpers shared by the stage-crate tests (mpt-adapt, mpt-distill, mpt-eval; included with
//! `#[path]`): the committed tiny fixtures and artifacts written directly with
//! `Artifact::write` (stage crates never depend on each other).
#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use mpt_core::{Artifact, ArtifactKind, BackboneRef, NewArtifact};
use mpt_data::DataRoot;
use mpt_models::io::HostTensor;
use mpt_models::{Model, ModelConfig, ModelFiles};
use mpt_train::{EvalPoint, Progress};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures").join(name)
}

pub fn data_root() -> DataRoot {
    DataRoot::new(fixture("data"))
}

pub fn load(name: &str) -> (Model, Device) {
    let device = Device::flex();
    let model = Model::load(&fixture(name), &device).expect("tiny fixture model loads");
    (model, device)
}

/// The identity of a fixture model folder, computed without loading it.
pub fn backbone_of(name: &str) -> BackboneRef {
    let files = ModelFiles::locate(&fixture(name)).unwrap();
    let arch = ModelConfig::read(&files.config).unwrap().arch();
    BackboneRef::new(arch, &mpt_models::fingerprint(&files).unwrap())
}

/// Deterministic small values in [-0.05, 0.05], varied by `seed`.
pub fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((x >> 33) as f32 / (1u64 << 31) as f32 - 0.5) * 0.1
        })
        .collect()
}

pub fn host(shape: &[usize], seed: u64) -> HostTensor {
    HostTensor::F32 { data: values(shape.iter().product(), seed), shape: shape.to_vec() }
}

pub fn floats(t: &HostTensor) -> &[f32] {
    match t {
        HostTensor::F32 { data, .. } => data,
        other => panic!("expected f32, got {}", other.dtype_name()),
    }
}

/// Writes an artifact of `kind` for `tasks` with the given tensors.
pub fn write_artifact(
    dir: &Path,
    kind: ArtifactKind,
    tasks: &[&str],
    backbone: &BackboneRef,
    tensors: BTreeMap<String, HostTensor>,
    seed: u64,
) -> Artifact {
    Artifact::write(
        dir,
        NewArtifact {
            kind,
            tasks: tasks.iter().map(|t| t.to_string()).collect(),
            backbone: backbone.clone(),
            parents: Vec::new(),
            config: serde_json::json!({"written_by": "test", "seed": seed, "tasks": tasks}),
            metrics: serde_json::json!({}),
            tensors,
            frozen_prompt: false,
        },
    )
    .unwrap()
}

/// A teacher artifact: one task, a plain `[l, d]` prompt.
pub fn teacher(dir: &Path, task: &str, l: usize, d: usize, backbone: &BackboneRef, seed: u64) -> Artifact {
    let tensors = BTreeMap::from([("prompt_embeddings".to_string(), host(&[l, d], seed))]);
    write_artifact(dir, ArtifactKind::Teacher, &[task], backbone, tensors, seed)
}

/// A multitask artifact: `P*` `[l, d]`, `U` `[T, l, r]`, `V` `[T, r, d]`.
pub fn multitask(
    dir: &Path,
    tasks: &[&str],
    l: usize,
    r: usize,
    d: usize,
    backbone: &BackboneRef,
    seed: u64,
) -> Artifact {
    let t = tasks.len();
    let tensors = BTreeMap::from([
        ("prompt_embeddings".to_string(), host(&[l, d], seed)),
        ("prefix_task_cols".to_string(), host(&[t, l, r], seed + 1)),
        ("prefix_task_rows".to_string(), host(&[t, r, d], seed + 2)),
    ]);
    write_artifact(dir, ArtifactKind::Multitask, tasks, backbone, tensors, seed)
}

/// Records what the training loop reports.
#[derive(Default)]
pub struct Recorder {
    pub begins: RefCell<Vec<(String, usize)>>,
    pub steps: RefCell<Vec<usize>>,
}

impl Progress for Recorder {
    fn begin(&self, stage: &str, total: usize) {
        self.begins.borrow_mut().push((stage.to_string(), total));
    }
    fn step(&self, step: usize, _loss: f64, _rate: f64) {
        self.steps.borrow_mut().push(step);
    }
    fn eval(&self, _point: &EvalPoint, _best: f64) {}
}

impl Recorder {
    pub fn trained(&self) -> bool {
        !self.begins.borrow().is_empty()
    }
}
