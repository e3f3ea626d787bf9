//! A tensor-shape error of an artifact says where each expected number comes from (issue 15:
//! a width taken from `prompt_embeddings` was reported as "(from artifact.json)").

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{multitask_tensors, new_artifact};
use mpt_core::artifact::{META_FILE, TENSORS_FILE};
use mpt_core::{Artifact, ArtifactKind, CoreError};
use mpt_models::io::{HostTensor, to_safetensors_bytes};
use sha2::{Digest, Sha256};

/// Replaces the tensors file, keeping the checksum in artifact.json valid.
fn replace_tensors(dir: &Path, tensors: &BTreeMap<String, HostTensor>) {
    let bytes = to_safetensors_bytes(tensors, None).unwrap();
    std::fs::write(dir.join(TENSORS_FILE), &bytes).unwrap();
    let path = dir.join(META_FILE);
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    v["tensors_sha256"] = hex::encode(Sha256::digest(&bytes)).into();
    std::fs::write(&path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

#[test]
fn shape_errors_name_the_source_of_each_number() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Artifact::write(
        &tmp.path().join("mt"),
        new_artifact(ArtifactKind::Multitask, &["a", "b", "c"], multitask_tensors(3, 4, 2, 6)),
    )
    .unwrap();
    // Task factors for 2 tasks while artifact.json lists 3.
    replace_tensors(&a.dir, &multitask_tensors(2, 4, 2, 6));
    let err = Artifact::load(&a.dir, None, None).unwrap_err();
    assert!(matches!(&err, CoreError::TensorShape { tensor, .. } if tensor == "prefix_task_cols"), "{err}");
    assert!(err.to_string().contains("tasks from artifact.json, l from prompt_embeddings"), "{err}");
    // A width that disagrees with prompt_embeddings: d comes from the tensor, not artifact.json.
    let mut tensors = multitask_tensors(3, 4, 2, 6);
    tensors.insert("prefix_task_rows".into(), HostTensor::F32 { data: vec![0.0; 3 * 2 * 5], shape: vec![3, 2, 5] });
    replace_tensors(&a.dir, &tensors);
    let err = Artifact::load(&a.dir, None, None).unwrap_err();
    assert!(
        matches!(&err, CoreError::TensorShape { tensor, expected, found, .. }
            if tensor == "prefix_task_rows" && expected == &vec![3, 2, 6] && found == &vec![3, 2, 5]),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("d from prompt_embeddings") && !text.contains("(from artifact.json)"), "{text}");
}
