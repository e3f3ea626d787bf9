//! Artifacts: bit-exact round trips, content ids, one distinct error per kind of corruption,
//! and writes that never leave a partial artifact.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{backbone, host, multitask_tensors, new_artifact, plain_tensors};
use mpt_core::artifact::{META_FILE, TENSORS_FILE, canonical_json};
use mpt_core::{Artifact, ArtifactKind, CoreError, InUse, Layout};
use mpt_models::io::{HostTensor, to_safetensors_bytes};
use sha2::{Digest, Sha256};

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn multitask(dir: &Path) -> Artifact {
    Artifact::write(dir, new_artifact(ArtifactKind::Multitask, &["a", "b", "c"], multitask_tensors(3, 4, 2, 6)))
        .unwrap()
}

fn edit_meta(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join(META_FILE);
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

/// Replaces the tensors file and records its new checksum, so only the tensors are wrong.
fn replace_tensors(dir: &Path, tensors: &BTreeMap<String, HostTensor>) {
    let bytes = to_safetensors_bytes(tensors, None).unwrap();
    std::fs::write(dir.join(TENSORS_FILE), &bytes).unwrap();
    let sum = sha256(&bytes);
    edit_meta(dir, |v| v["tensors_sha256"] = sum.into());
}

#[test]
fn round_trip_is_bit_exact() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, new) in [
        ("mt", new_artifact(ArtifactKind::Multitask, &["a", "b", "c"], multitask_tensors(3, 4, 2, 6))),
        ("teacher", new_artifact(ArtifactKind::Teacher, &["a"], plain_tensors(4, 6))),
    ] {
        let dir = tmp.path().join(name);
        let written = Artifact::write(&dir, new.clone()).unwrap();
        let loaded = Artifact::load(&dir, Some(new.kind), Some(InUse { backbone: &backbone(), dim: 6 })).unwrap();
        assert_eq!(loaded.meta, written.meta);
        assert_eq!(loaded.tensors, new.tensors);
        for (k, t) in &new.tensors {
            let (HostTensor::F32 { data: a, .. }, HostTensor::F32 { data: b, .. }) = (t, &loaded.tensors[k]) else {
                panic!("f32 expected");
            };
            assert!(a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()), "{k} not bit-exact");
        }
        assert_eq!(loaded.meta.config, new.config);
        assert_eq!(loaded.meta.metrics, new.metrics);
        assert_eq!(loaded.meta.tasks, new.tasks);
    }
}

#[test]
fn meta_describes_the_tensors() {
    let tmp = tempfile::tempdir().unwrap();
    let a = multitask(&tmp.path().join("mt"));
    let m = &a.meta;
    assert_eq!((m.layout, m.prompt_length, m.dim, m.rank), (Layout::Multitask, 4, 6, 2));
    assert_eq!(m.tunable_params, 4 * 6 + 3 * 2 * (4 + 6));
    assert_eq!(m.format, "mpt-artifact");
    assert_eq!(m.version, 1);
    assert_eq!(m.tensors_sha256, sha256(&std::fs::read(a.dir.join(TENSORS_FILE)).unwrap()));
    let p = Artifact::write(&tmp.path().join("p"), new_artifact(ArtifactKind::Target, &["a"], plain_tensors(4, 6)))
        .unwrap();
    assert_eq!((p.meta.layout, p.meta.rank, p.meta.tunable_params), (Layout::Prompt, 0, 24));
}

#[test]
fn id_is_content_hash_of_tensors_and_config() {
    let tmp = tempfile::tempdir().unwrap();
    let new = new_artifact(ArtifactKind::Teacher, &["a"], plain_tensors(4, 6));
    let a = Artifact::write(&tmp.path().join("a"), new.clone()).unwrap();
    let b = Artifact::write(&tmp.path().join("b"), new.clone()).unwrap();
    assert_eq!(a.meta.id, b.meta.id, "same inputs, same id");
    // Rewriting in place keeps the id too.
    let a2 = Artifact::write(&tmp.path().join("a"), new.clone()).unwrap();
    assert_eq!(a.meta.id, a2.meta.id);

    let bytes = std::fs::read(a.dir.join(TENSORS_FILE)).unwrap();
    let mut h = Sha256::new();
    h.update(&bytes);
    h.update(canonical_json(&new.config).as_bytes());
    assert_eq!(a.meta.id, hex::encode(h.finalize()));

    let mut other_config = new.clone();
    other_config.config["train"]["steps"] = 11.into();
    let c = Artifact::write(&tmp.path().join("c"), other_config).unwrap();
    assert_ne!(c.meta.id, a.meta.id, "config change must change the id");
    assert_eq!(c.meta.tensors_sha256, a.meta.tensors_sha256);

    let mut other_tensors = new.clone();
    other_tensors.tensors.insert("prompt_embeddings".into(), host(&[4, 6], 9));
    let d = Artifact::write(&tmp.path().join("d"), other_tensors).unwrap();
    assert_ne!(d.meta.id, a.meta.id, "tensor change must change the id");

    // Metrics, parents and the folder are not part of the id.
    let mut other_metrics = new.clone();
    other_metrics.metrics = serde_json::json!({});
    other_metrics.parents = vec!["x".into()];
    let e = Artifact::write(&tmp.path().join("e"), other_metrics).unwrap();
    assert_eq!(e.meta.id, a.meta.id);
}

#[test]
fn canonical_json_sorts_keys_without_whitespace() {
    let v: serde_json::Value = serde_json::from_str(r#"{"b": 1, "a": {"z": [1, 2], "y": "s"}, "c": null}"#).unwrap();
    assert_eq!(canonical_json(&v), r#"{"a":{"y":"s","z":[1,2]},"b":1,"c":null}"#);
}

#[test]
fn unknown_version_is_its_own_error() {
    let tmp = tempfile::tempdir().unwrap();
    let a = multitask(&tmp.path().join("mt"));
    edit_meta(&a.dir, |v| v["version"] = 2.into());
    let err = Artifact::load(&a.dir, None, None).unwrap_err();
    assert!(matches!(err, CoreError::UnsupportedVersion { found: 2, .. }), "{err}");
    edit_meta(&a.dir, |v| v["version"] = "one".into());
    let err = Artifact::load(&a.dir, None, None).unwrap_err();
    assert!(matches!(&err, CoreError::Field { field, .. } if field == "version"), "{err}");
}

#[test]
fn wrong_format_string_is_not_an_artifact() {
    let tmp = tempfile::tempdir().unwrap();
    let a = multitask(&tmp.path().join("mt"));
    edit_meta(&a.dir, |v| v["format"] = "peft-adapter".into());
    let err = Artifact::load(&a.dir, None, None).unwrap_err();
    assert!(matches!(&err, CoreError::NotAnArtifact { found, .. } if found == "peft-adapter"), "{err}");
}

#[test]
fn wrong_kind_requested() {
    let tmp = tempfile::tempdir().unwrap();
    let a = multitask(&tmp.path().join("mt"));
    let err = Artifact::load(&a.dir, Some(ArtifactKind::Teacher), None).unwrap_err();
    assert!(
        matches!(&err, CoreError::WrongKind { expected, found, .. } if expected == "teacher" && found == "multitask"),
        "{err}"
    );
}

#[test]
fn tensor_shape_disagreeing_with_meta() {
    let tmp = tempfile::tempdir().unwrap();
    // A plain prompt rewritten with another l (checksum fixed): prompt_length disagrees.
    let p = Artifact::write(&tmp.path().join("p"), new_artifact(ArtifactKind::Teacher, &["a"], plain_tensors(4, 6)))
        .unwrap();
    replace_tensors(&p.dir, &plain_tensors(5, 6));
    let err = Artifact::load(&p.dir, None, None).unwrap_err();
    assert!(matches!(&err, CoreError::Field { field, .. } if field == "prompt_length"), "{err}");
    // Task factors for 2 tasks while artifact.json lists 3.
    let a = multitask(&tmp.path().join("mt"));
    replace_tensors(&a.dir, &multitask_tensors(2, 4, 2, 6));
    let err = Artifact::load(&a.dir, None, None).unwrap_err();
    assert!(
        matches!(&err, CoreError::TensorShape { tensor, expected, found, .. }
            if tensor == "prefix_task_cols" && expected == &vec![3, 4, 2] && found == &vec![2, 4, 2]),
        "{err}"
    );
}

#[test]
fn flipped_byte_fails_the_checksum() {
    let tmp = tempfile::tempdir().unwrap();
    let a = multitask(&tmp.path().join("mt"));
    let path = a.dir.join(TENSORS_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let err = Artifact::load(&a.dir, None, None).unwrap_err();
    assert!(matches!(&err, CoreError::Checksum { expected, .. } if expected == &a.meta.tensors_sha256), "{err}");
}

#[test]
fn backbone_mismatch() {
    let tmp = tempfile::tempdir().unwrap();
    let a = multitask(&tmp.path().join("mt"));
    let mut other = backbone();
    other.weights_sha256 = "b".repeat(64);
    let err = Artifact::load(&a.dir, None, Some(InUse { backbone: &other, dim: 6 })).unwrap_err();
    assert!(matches!(err, CoreError::BackboneMismatch { .. }), "{err}");
    // The folder name alone does not matter.
    let mut renamed = backbone();
    renamed.name = "elsewhere".into();
    Artifact::load(&a.dir, None, Some(InUse { backbone: &renamed, dim: 6 })).unwrap();
    // The same model, but a prompt width that is not its hidden size.
    let err = Artifact::load(&a.dir, None, Some(InUse { backbone: &backbone(), dim: 8 })).unwrap_err();
    let text = err.to_string();
    assert!(matches!(&err, CoreError::Field { field, .. } if field == "dim"), "{err}");
    assert!(text.contains(META_FILE) && text.contains("is 6") && text.contains("hidden size 8"), "{text}");
}

#[test]
fn missing_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let a = multitask(&tmp.path().join("mt"));
    let mut tensors = multitask_tensors(3, 4, 2, 6);
    tensors.remove("prefix_task_rows");
    replace_tensors(&a.dir, &tensors);
    let err = Artifact::load(&a.dir, None, None).unwrap_err();
    assert!(matches!(&err, CoreError::Tensor { tensor, .. } if tensor == "prefix_task_rows"), "{err}");
    replace_tensors(&a.dir, &BTreeMap::from([("other".to_string(), host(&[4, 6], 1))]));
    let err = Artifact::load(&a.dir, None, None).unwrap_err();
    assert!(matches!(&err, CoreError::Tensor { tensor, .. } if tensor == "prompt_embeddings"), "{err}");
}

#[test]
fn missing_files() {
    let tmp = tempfile::tempdir().unwrap();
    let a = multitask(&tmp.path().join("mt"));
    std::fs::remove_file(a.dir.join(TENSORS_FILE)).unwrap();
    let err = Artifact::load(&a.dir, None, None).unwrap_err();
    assert!(matches!(&err, CoreError::Io { path, .. } if path.ends_with(TENSORS_FILE)), "{err}");
    std::fs::remove_file(a.dir.join(META_FILE)).unwrap();
    let err = Artifact::load(&a.dir, None, None).unwrap_err();
    assert!(matches!(&err, CoreError::Io { path, .. } if path.ends_with(META_FILE)), "{err}");
    let err = Artifact::load(&tmp.path().join("nowhere"), None, None).unwrap_err();
    assert!(matches!(err, CoreError::Io { .. }), "{err}");
}

#[test]
fn invalid_json_and_unknown_fields() {
    let tmp = tempfile::tempdir().unwrap();
    let a = multitask(&tmp.path().join("mt"));
    edit_meta(&a.dir, |v| v["surprise"] = true.into());
    let err = Artifact::load(&a.dir, None, None).unwrap_err();
    assert!(matches!(err, CoreError::Json { .. }), "{err}");
    std::fs::write(a.dir.join(META_FILE), "{ not json").unwrap();
    let err = Artifact::load(&a.dir, None, None).unwrap_err();
    assert!(matches!(err, CoreError::Json { .. }), "{err}");
}

#[test]
fn non_f32_tensors_are_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let a = multitask(&tmp.path().join("mt"));
    let mut tensors = multitask_tensors(3, 4, 2, 6);
    tensors.insert("prompt_embeddings".into(), HostTensor::I64 { data: vec![0; 24], shape: vec![4, 6] });
    replace_tensors(&a.dir, &tensors);
    let err = Artifact::load(&a.dir, None, None).unwrap_err();
    assert!(matches!(&err, CoreError::Tensor { message, .. } if message.contains("I64")), "{err}");
}

#[test]
fn non_finite_tensors_are_refused_on_write_and_on_load() {
    let tmp = tempfile::tempdir().unwrap();
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut tensors = plain_tensors(2, 3);
        let Some(HostTensor::F32 { data, .. }) = tensors.get_mut("prompt_embeddings") else { panic!() };
        data[4] = bad;
        let dir = tmp.path().join("nan");
        let err = Artifact::write(&dir, new_artifact(ArtifactKind::Teacher, &["a"], tensors.clone())).unwrap_err();
        assert!(
            matches!(&err, CoreError::Tensor { tensor, message, .. }
                if tensor == "prompt_embeddings" && message.contains("flat index 4") && message.contains("finite")),
            "{err}"
        );
        assert!(!dir.exists(), "a refused write leaves nothing");

        let good = Artifact::write(&dir, new_artifact(ArtifactKind::Teacher, &["a"], plain_tensors(2, 3))).unwrap();
        replace_tensors(&good.dir, &tensors);
        let err = Artifact::load(&good.dir, None, None).unwrap_err();
        assert!(
            matches!(&err, CoreError::Tensor { path, message, .. }
                if path.ends_with(TENSORS_FILE) && message.contains(&format!("value {bad}"))),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

#[test]
fn failed_replacement_keeps_the_old_artifact_and_no_temporary() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mt");
    let old = multitask(&dir);
    // Block the step that sets the old artifact aside: a non-empty folder where Artifact::write
    // moves it (`.NAME.old-PID`) makes that rename fail after the new files are complete.
    let blocker = tmp.path().join(format!(".mt.old-{}", std::process::id()));
    std::fs::create_dir(&blocker).unwrap();
    std::fs::write(blocker.join("x"), b"x").unwrap();
    let mut new = new_artifact(ArtifactKind::Multitask, &["a", "b", "c"], multitask_tensors(3, 4, 2, 6));
    new.config["train"]["steps"] = 99.into();
    let err = Artifact::write(&dir, new).unwrap_err();
    assert!(matches!(err, CoreError::Io { .. }), "{err}");
    let again = Artifact::load(&dir, None, None).unwrap();
    assert_eq!(again.meta, old.meta, "the old artifact must survive");
    assert_eq!(entries(tmp.path()), vec![".mt.old-".to_string() + &std::process::id().to_string(), "mt".into()]);

    // Invalid input fails before anything is touched.
    std::fs::remove_dir_all(&blocker).unwrap();
    let err = Artifact::write(&dir, new_artifact(ArtifactKind::Multitask, &["a"], BTreeMap::new())).unwrap_err();
    assert!(matches!(err, CoreError::Tensor { .. }), "{err}");
    assert_eq!(Artifact::load(&dir, None, None).unwrap().meta, old.meta);
    assert_eq!(entries(tmp.path()), vec!["mt".to_string()]);
}

#[test]
fn failed_write_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    // The parent "folder" is a file: nothing can be created below it.
    let file = tmp.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let err = Artifact::write(&file.join("mt"), new_artifact(ArtifactKind::Teacher, &["a"], plain_tensors(2, 3)))
        .unwrap_err();
    assert!(matches!(err, CoreError::Io { .. }), "{err}");
    assert_eq!(entries(tmp.path()), vec!["file".to_string()]);
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
}

#[test]
fn successful_replacement_leaves_no_temporaries() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mt");
    multitask(&dir);
    let mut new = new_artifact(ArtifactKind::Multitask, &["a", "b", "c"], multitask_tensors(3, 4, 2, 6));
    new.config["train"]["steps"] = 99.into();
    let b = Artifact::write(&dir, new).unwrap();
    assert_eq!(Artifact::load(&dir, None, None).unwrap().meta, b.meta);
    assert_eq!(entries(tmp.path()), vec!["mt".to_string()]);
    assert_eq!(entries(&dir), vec![META_FILE.to_string(), TENSORS_FILE.to_string()]);
}

fn with_heads(mut tensors: BTreeMap<String, HostTensor>, classes: &[usize], d: usize) -> BTreeMap<String, HostTensor> {
    for (k, &c) in classes.iter().enumerate() {
        tensors.insert(format!("classifier.{k}.weight"), host(&[c, d], k));
        tensors.insert(format!("classifier.{k}.bias"), host(&[c], 10 + k));
    }
    tensors
}

#[test]
fn trained_heads_round_trip_and_count_as_tunable() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mt");
    let new = new_artifact(ArtifactKind::Multitask, &["a", "b"], with_heads(multitask_tensors(2, 4, 1, 6), &[3, 2], 6));
    let written = Artifact::write(&dir, new.clone()).unwrap();
    assert_eq!(written.meta.tunable_params, 4 * 6 + 2 * (4 + 6) + (3 * 6 + 3) + (2 * 6 + 2));
    let loaded = Artifact::load(&dir, None, Some(InUse { backbone: &backbone(), dim: 6 })).unwrap();
    assert!(loaded.has_classifiers());
    assert_eq!(loaded.tensors, new.tensors);
    let params = loaded.prompt_params(&burn::prelude::Device::flex()).unwrap();
    assert_eq!(params.num_tunable(), written.meta.tunable_params);
    let head = params.classifier(1).expect("task 1 has a head");
    assert_eq!(head.weight.val().dims(), [2, 6]);
    assert!(params.classifier(2).is_none());
}

#[test]
fn pair_heads_four_times_the_width_load_beside_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pair");
    let new =
        new_artifact(ArtifactKind::Multitask, &["a", "b"], with_heads(multitask_tensors(2, 4, 1, 6), &[3, 2], 24));
    let written = Artifact::write(&dir, new.clone()).unwrap();
    assert_eq!(written.meta.tunable_params, 4 * 6 + 2 * (4 + 6) + (3 * 24 + 3) + (2 * 24 + 2));
    let loaded = Artifact::load(&dir, None, Some(InUse { backbone: &backbone(), dim: 6 })).unwrap();
    let params = loaded.prompt_params(&burn::prelude::Device::flex()).unwrap();
    assert_eq!(params.classifier(0).expect("task 0 has a head").weight.val().dims(), [3, 24]);
    // One head of each width: refused, naming the second.
    let mut mixed = with_heads(multitask_tensors(2, 4, 1, 6), &[3], 6);
    mixed.insert("classifier.1.weight".into(), host(&[2, 24], 1));
    mixed.insert("classifier.1.bias".into(), host(&[2], 11));
    let err = Artifact::write(&tmp.path().join("mixed"), new_artifact(ArtifactKind::Multitask, &["a", "b"], mixed))
        .unwrap_err()
        .to_string();
    assert!(err.contains("classifier.1.weight") && err.contains("every task's head is of one kind"), "{err}");
    // Neither d nor 4d.
    let err = Artifact::write(
        &tmp.path().join("three"),
        new_artifact(ArtifactKind::Multitask, &["a", "b"], with_heads(multitask_tensors(2, 4, 1, 6), &[3, 2], 18)),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("expected [C, 6] (linear head) or [C, 24] (pair head)"), "{err}");
}

#[test]
fn malformed_heads_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, BTreeMap<String, HostTensor>, &str)> = vec![
        ("missing-task", with_heads(multitask_tensors(2, 4, 1, 6), &[3], 6), "classifier.1.weight"),
        ("wrong-width", with_heads(multitask_tensors(2, 4, 1, 5), &[3, 2], 6), "classifier.0.weight"),
        ("extra", with_heads(multitask_tensors(2, 4, 1, 6), &[3, 2, 2], 6), "classifier.2"),
        (
            "unknown",
            {
                let mut t = multitask_tensors(2, 4, 1, 6);
                t.insert("lm_head".into(), host(&[2, 2], 0));
                t
            },
            "lm_head",
        ),
        (
            "bias",
            {
                let mut t = with_heads(multitask_tensors(2, 4, 1, 6), &[3, 2], 6);
                t.insert("classifier.0.bias".into(), host(&[2], 0));
                t
            },
            "classifier.0.bias",
        ),
    ];
    for (name, tensors, named) in cases {
        let err = Artifact::write(&tmp.path().join(name), new_artifact(ArtifactKind::Multitask, &["a", "b"], tensors))
            .expect_err(name)
            .to_string();
        assert!(err.contains(named), "{name}: {err}");
        assert!(!tmp.path().join(name).exists(), "{name}: nothing written");
    }
}

#[test]
fn copy_is_byte_for_byte_replaces_only_when_complete_and_refuses_a_corrupt_source() {
    let tmp = tempfile::tempdir().unwrap();
    let a = multitask(&tmp.path().join("src"));
    let to = tmp.path().join("deep/dst");
    let copied = Artifact::copy(&a.dir, &to).unwrap();
    assert_eq!(copied.meta, a.meta);
    assert_eq!(copied.dir, to);
    for name in [META_FILE, TENSORS_FILE] {
        assert_eq!(std::fs::read(to.join(name)).unwrap(), std::fs::read(a.dir.join(name)).unwrap(), "{name}");
    }
    // Over an existing artifact: replaced by the copy, no temporary folder left.
    let other =
        Artifact::write(&tmp.path().join("other"), new_artifact(ArtifactKind::Teacher, &["a"], plain_tensors(4, 6)))
            .unwrap();
    let replaced = Artifact::copy(&other.dir, &to).unwrap();
    assert_eq!(replaced.meta.id, other.meta.id);
    let leftovers: Vec<_> =
        std::fs::read_dir(tmp.path().join("deep")).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(leftovers, [std::ffi::OsString::from("dst")]);
    // A corrupt source is refused by its checksum and the destination is left as it was.
    let path = a.dir.join(TENSORS_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let err = Artifact::copy(&a.dir, &to).unwrap_err();
    assert!(matches!(&err, CoreError::Checksum { .. }), "{err}");
    assert_eq!(Artifact::load(&to, None, None).unwrap().meta.id, other.meta.id);
    let leftovers: Vec<_> =
        std::fs::read_dir(tmp.path().join("deep")).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(leftovers, [std::ffi::OsString::from("dst")]);
}
