//! Shared helpers of the mpt-core integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;

use burn::prelude::*;
use mpt_core::{ArtifactKind, BackboneRef, NewArtifact};
use mpt_models::Arch;
use mpt_models::io::HostTensor;

/// A made-up backbone identity.
pub fn backbone() -> BackboneRef {
    BackboneRef {
        name: "tiny-t5".into(),
        arch: Arch::named("t5").expect("t5 is registered"),
        config_sha256: "c".repeat(64),
        weights_sha256: "a".repeat(64),
    }
}

/// Values that are small multiples of 1/8 (exact in f32, so products of two and sums of a few
/// are exact too), varied by `seed`, never all equal.
pub fn dyadic(n: usize, seed: usize) -> Vec<f32> {
    (0..n).map(|i| (((i * 7 + seed * 13) % 17) as f32 - 8.0) / 8.0).collect()
}

/// An f32 host tensor of `shape` filled by [`dyadic`].
pub fn host(shape: &[usize], seed: usize) -> HostTensor {
    HostTensor::F32 { data: dyadic(shape.iter().product(), seed), shape: shape.to_vec() }
}

/// `prompt_embeddings` `[l, d]` only.
pub fn plain_tensors(l: usize, d: usize) -> BTreeMap<String, HostTensor> {
    BTreeMap::from([("prompt_embeddings".to_string(), host(&[l, d], 1))])
}

/// `P*` `[l, d]`, `U` `[t, l, r]`, `V` `[t, r, d]`.
pub fn multitask_tensors(t: usize, l: usize, r: usize, d: usize) -> BTreeMap<String, HostTensor> {
    BTreeMap::from([
        ("prompt_embeddings".to_string(), host(&[l, d], 1)),
        ("prefix_task_cols".to_string(), host(&[t, l, r], 2)),
        ("prefix_task_rows".to_string(), host(&[t, r, d], 3)),
    ])
}

/// A `NewArtifact` with a small integer-only config.
pub fn new_artifact(kind: ArtifactKind, tasks: &[&str], tensors: BTreeMap<String, HostTensor>) -> NewArtifact {
    NewArtifact {
        kind,
        tasks: tasks.iter().map(|s| s.to_string()).collect(),
        backbone: backbone(),
        parents: Vec::new(),
        config: serde_json::json!({"prompt_length": 4, "train": {"steps": 10, "seed": 7}, "init": "random"}),
        metrics: serde_json::json!({"dev": {"a": {"accuracy": 0.5}}}),
        tensors,
        frozen_prompt: false,
    }
}

/// f32 values of a host tensor.
pub fn values(t: &HostTensor) -> &[f32] {
    match t {
        HostTensor::F32 { data, .. } => data,
        other => panic!("expected f32, found {}", other.dtype_name()),
    }
}

/// f32 values of a device tensor.
pub fn tensor_values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.try_into_vec_as::<f32>().expect("f32 tensor")
}

/// A device tensor from host values.
pub fn tensor<const D: usize>(data: Vec<f32>, shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(data, shape), device)
}
