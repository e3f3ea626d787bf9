//! PEFT interop: exported config and keys, export → import round trips, PEFT's 2·l seq2seq
//! rows, import errors, and compressing a multitask artifact to one task's plain prompt.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use burn::prelude::*;
use common::{backbone, host, multitask_tensors, new_artifact, plain_tensors, tensor_values, values};
use mpt_core::peft::{ADAPTER_CONFIG, ADAPTER_WEIGHTS, PeftExportOptions, export_peft, export_prompt, import_peft};
use mpt_core::{Artifact, ArtifactKind, CoreError, InUse, Layout};
use mpt_models::io::{HostTensor, read_safetensors, write_safetensors};
use serde_json::{Value, json};

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The `__metadata__` of a safetensors file.
fn safetensors_metadata(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    header["__metadata__"].clone()
}

fn shapes(path: &Path) -> BTreeMap<String, Vec<usize>> {
    read_safetensors(path).unwrap().into_iter().map(|(k, t)| (k, t.shape().to_vec())).collect()
}

#[test]
fn plain_export_writes_prompt_tuning_config_and_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Artifact::write(&tmp.path().join("t"), new_artifact(ArtifactKind::Teacher, &["sst2"], plain_tensors(4, 6)))
        .unwrap();
    let out = tmp.path().join("peft");
    export_peft(&a, &out, PeftExportOptions::default()).unwrap();
    let expected = json!({
        "auto_mapping": null,
        "base_model_name_or_path": "tiny-t5",
        "inference_mode": true,
        "modules_to_save": null,
        "num_attention_heads": null,
        "num_layers": null,
        "num_transformer_submodules": 1,
        "num_virtual_tokens": 4,
        "peft_type": "PROMPT_TUNING",
        "peft_version": "0.21.2",
        "prompt_tuning_init": "RANDOM",
        "prompt_tuning_init_text": null,
        "revision": null,
        "task_type": "SEQ_2_SEQ_LM",
        "token_dim": 6,
        "tokenizer_kwargs": null,
        "tokenizer_name_or_path": null
    });
    assert_eq!(read_json(&out.join(ADAPTER_CONFIG)), expected);
    let weights = read_safetensors(&out.join(ADAPTER_WEIGHTS)).unwrap();
    assert_eq!(weights.keys().collect::<Vec<_>>(), vec!["prompt_embeddings"]);
    assert_eq!(weights["prompt_embeddings"], a.tensors["prompt_embeddings"]);
    let meta = safetensors_metadata(&out.join(ADAPTER_WEIGHTS));
    assert_eq!(meta["format"], "pt");
    assert_eq!(meta["mpt_artifact_id"], a.meta.id.as_str());
    let mut names: Vec<_> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names, vec![ADAPTER_CONFIG, ADAPTER_WEIGHTS]);
}

#[test]
fn multitask_export_writes_multitask_config_and_factor_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Artifact::write(
        &tmp.path().join("m"),
        new_artifact(ArtifactKind::Multitask, &["a", "b", "c"], multitask_tensors(3, 4, 2, 6)),
    )
    .unwrap();
    let out = tmp.path().join("peft");
    let options = PeftExportOptions {
        task_type: Some("FEATURE_EXTRACTION".into()),
        base_model: Some("org/model".into()),
        overwrite: false,
    };
    export_peft(&a, &out, options).unwrap();
    let config = read_json(&out.join(ADAPTER_CONFIG));
    assert_eq!(config["peft_type"], "MULTITASK_PROMPT_TUNING");
    assert_eq!(config["task_type"], "FEATURE_EXTRACTION");
    assert_eq!(config["base_model_name_or_path"], "org/model");
    assert_eq!(config["num_tasks"], 3);
    assert_eq!(config["num_ranks"], 2);
    assert_eq!(config["num_virtual_tokens"], 4);
    assert_eq!(config["token_dim"], 6);
    assert_eq!(config["num_transformer_submodules"], 1);
    assert_eq!(config["prompt_tuning_init"], "RANDOM");
    assert_eq!(config["prompt_tuning_init_task"], 0);
    assert_eq!(config["prompt_tuning_init_state_dict_path"], Value::Null);
    assert_eq!(config["inference_mode"], true);
    let expected: BTreeMap<String, Vec<usize>> =
        [("prefix_task_cols", vec![3, 4, 2]), ("prefix_task_rows", vec![3, 2, 6]), ("prompt_embeddings", vec![4, 6])]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
    assert_eq!(shapes(&out.join(ADAPTER_WEIGHTS)), expected);
}

#[test]
fn bad_task_type_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Artifact::write(&tmp.path().join("t"), new_artifact(ArtifactKind::Teacher, &["a"], plain_tensors(2, 3)))
        .unwrap();
    let options = PeftExportOptions { task_type: Some("SEQ2SEQ".into()), ..Default::default() };
    let err = export_peft(&a, &tmp.path().join("peft"), options).unwrap_err();
    assert!(matches!(&err, CoreError::Peft { field, .. } if field == "task_type"), "{err}");
    assert!(!tmp.path().join("peft").exists());
}

#[test]
fn export_refuses_to_overwrite_unless_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Artifact::write(&tmp.path().join("t"), new_artifact(ArtifactKind::Teacher, &["a"], plain_tensors(2, 3)))
        .unwrap();
    let out = tmp.path().join("peft");
    std::fs::create_dir(&out).unwrap();
    export_peft(&a, &out, PeftExportOptions::default()).unwrap(); // empty folder: fine
    let err = export_peft(&a, &out, PeftExportOptions::default()).unwrap_err();
    assert!(matches!(err, CoreError::OutputExists { .. }), "{err}");
    let overwrite = PeftExportOptions { overwrite: true, ..Default::default() };
    export_peft(&a, &out, overwrite.clone()).unwrap();
    // An unrelated non-empty folder is never replaced.
    let other = tmp.path().join("home");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("notes.txt"), b"keep").unwrap();
    let err = export_peft(&a, &other, overwrite).unwrap_err();
    assert!(matches!(err, CoreError::OutputExists { .. }), "{err}");
    assert_eq!(std::fs::read(other.join("notes.txt")).unwrap(), b"keep");
    // No temporaries left next to the outputs.
    let hidden: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(hidden.is_empty(), "{hidden:?}");
}

#[test]
fn export_then_import_round_trips_bit_identically() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, kind, tasks, tensors) in [
        ("m", ArtifactKind::Multitask, vec!["a", "b", "c"], multitask_tensors(3, 4, 2, 6)),
        ("t", ArtifactKind::Teacher, vec!["a"], plain_tensors(4, 6)),
    ] {
        let a = Artifact::write(&tmp.path().join(name), new_artifact(kind, &tasks, tensors)).unwrap();
        let peft = tmp.path().join(format!("{name}-peft"));
        export_peft(&a, &peft, PeftExportOptions::default()).unwrap();
        let back_dir = tmp.path().join(format!("{name}-back"));
        let tasks: Vec<String> = tasks.iter().map(|s| s.to_string()).collect();
        let b = import_peft(&peft, &back_dir, backbone(), 6, kind, tasks.clone()).unwrap();
        assert_eq!(b.tensors, a.tensors, "{name}");
        let loaded = Artifact::load(&back_dir, Some(kind), Some(InUse { backbone: &backbone(), dim: 6 })).unwrap();
        assert_eq!(loaded.tensors, a.tensors);
        assert_eq!(loaded.meta.tasks, tasks);
        assert_eq!(loaded.meta.layout, a.meta.layout);
        assert_eq!((loaded.meta.prompt_length, loaded.meta.dim, loaded.meta.rank), (4, 6, a.meta.rank));
        assert!(loaded.meta.parents.is_empty());
        assert_eq!(loaded.meta.config["imported_from"], peft.to_string_lossy().as_ref());
        assert_eq!(loaded.meta.config["adapter_config"], read_json(&peft.join(ADAPTER_CONFIG)));
        assert!(loaded.meta.config.get("kept_rows").is_none());
    }
}

/// A hand-made PEFT adapter folder.
fn write_adapter(dir: &Path, config: Value, tensors: &BTreeMap<String, HostTensor>) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(ADAPTER_CONFIG), serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    write_safetensors(&dir.join(ADAPTER_WEIGHTS), tensors).unwrap();
}

#[test]
fn seq2seq_adapter_with_two_l_rows_keeps_the_first_l() {
    let tmp = tempfile::tempdir().unwrap();
    let (l, d) = (3, 4);
    // Plain prompt, PEFT's default for SEQ_2_SEQ_LM: num_transformer_submodules absent → 2.
    let dir = tmp.path().join("pt");
    let stored = host(&[2 * l, d], 5);
    write_adapter(
        &dir,
        json!({"peft_type": "PROMPT_TUNING", "task_type": "SEQ_2_SEQ_LM", "num_virtual_tokens": l, "token_dim": d}),
        &BTreeMap::from([("prompt_embeddings".to_string(), stored.clone())]),
    );
    let a = import_peft(&dir, &tmp.path().join("a"), backbone(), d, ArtifactKind::Target, vec![]).unwrap();
    assert_eq!(a.meta.tasks, vec!["task0"]);
    assert_eq!(a.meta.prompt_length, l);
    assert_eq!(values(&a.tensors["prompt_embeddings"]), &values(&stored)[..l * d]);
    assert_eq!(a.meta.config["kept_rows"]["stored"], 2 * l);
    assert_eq!(a.meta.config["kept_rows"]["kept"], l);

    // Multitask with explicit num_transformer_submodules = 2: the first l rows of P* and of
    // every task's U.
    let (t, r) = (2, 1);
    let dir = tmp.path().join("mpt");
    let cols = host(&[t, 2 * l, r], 6);
    let tensors = BTreeMap::from([
        ("prompt_embeddings".to_string(), stored.clone()),
        ("prefix_task_cols".to_string(), cols.clone()),
        ("prefix_task_rows".to_string(), host(&[t, r, d], 7)),
    ]);
    write_adapter(
        &dir,
        json!({"peft_type": "MULTITASK_PROMPT_TUNING", "task_type": "SEQ_2_SEQ_LM", "num_virtual_tokens": l,
               "token_dim": d, "num_transformer_submodules": 2, "num_tasks": t, "num_ranks": r}),
        &tensors,
    );
    let names = vec!["x".to_string(), "y".to_string()];
    let m = import_peft(&dir, &tmp.path().join("m"), backbone(), d, ArtifactKind::Multitask, names).unwrap();
    assert_eq!(m.meta.layout, Layout::Multitask);
    assert_eq!(values(&m.tensors["prompt_embeddings"]), &values(&stored)[..l * d]);
    let c = values(&cols);
    let want: Vec<f32> = [&c[..l * r], &c[2 * l * r..3 * l * r]].concat();
    assert_eq!(values(&m.tensors["prefix_task_cols"]), want.as_slice());
    assert_eq!(m.tensors["prefix_task_rows"], tensors["prefix_task_rows"]);
    assert!(m.meta.config["kept_rows"]["note"].as_str().unwrap().contains("decoder"));
    Artifact::load(&m.dir, Some(ArtifactKind::Multitask), Some(InUse { backbone: &backbone(), dim: d })).unwrap();
}

#[test]
fn import_errors_name_file_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    let (l, d) = (3, 4);
    let prompt = BTreeMap::from([("prompt_embeddings".to_string(), host(&[l, d], 1))]);
    let base = json!({"peft_type": "PROMPT_TUNING", "task_type": "FEATURE_EXTRACTION", "num_virtual_tokens": l, "token_dim": d});
    let case = |name: &str,
                config: Value,
                tensors: &BTreeMap<String, HostTensor>,
                dim: usize,
                kind: ArtifactKind,
                tasks: &[&str]| {
        let dir = tmp.path().join(name);
        write_adapter(&dir, config, tensors);
        let tasks = tasks.iter().map(|s| s.to_string()).collect();
        let err = import_peft(&dir, &tmp.path().join(format!("{name}-out")), backbone(), dim, kind, tasks).unwrap_err();
        assert!(!tmp.path().join(format!("{name}-out")).exists(), "{name}: nothing written on error");
        err
    };
    let mut lora = base.clone();
    lora["peft_type"] = "LORA".into();
    let err = case("lora", lora, &prompt, d, ArtifactKind::Target, &[]);
    assert!(matches!(&err, CoreError::UnsupportedPeftType { found, .. } if found == "LORA"), "{err}");

    let err = case("dim", base.clone(), &prompt, d + 1, ArtifactKind::Target, &[]);
    assert!(
        matches!(&err, CoreError::Peft { field, path, .. } if field == "token_dim" && path.ends_with(ADAPTER_CONFIG)),
        "{err}"
    );

    let mut missing = base.clone();
    missing.as_object_mut().unwrap().remove("num_virtual_tokens");
    let err = case("missing", missing, &prompt, d, ArtifactKind::Target, &[]);
    assert!(matches!(&err, CoreError::Peft { field, .. } if field == "num_virtual_tokens"), "{err}");

    let mut longer = base.clone();
    longer["num_virtual_tokens"] = (l + 1).into();
    let err = case("shape", longer, &prompt, d, ArtifactKind::Target, &[]);
    assert!(
        matches!(&err, CoreError::PeftShape { tensor, expected, found, .. }
            if tensor == "prompt_embeddings" && expected == &vec![l + 1, d] && found == &vec![l, d]),
        "{err}"
    );

    let mt = json!({"peft_type": "MULTITASK_PROMPT_TUNING", "task_type": "FEATURE_EXTRACTION", "num_virtual_tokens": l,
                    "token_dim": d, "num_tasks": 2, "num_ranks": 1});
    let mut mt_tensors = prompt.clone();
    mt_tensors.insert("prefix_task_cols".into(), host(&[2, l, 1], 2));
    mt_tensors.insert("prefix_task_rows".into(), host(&[2, 2, d], 3));
    let err = case("rows", mt.clone(), &mt_tensors, d, ArtifactKind::Multitask, &[]);
    assert!(matches!(&err, CoreError::PeftShape { tensor, .. } if tensor == "prefix_task_rows"), "{err}");
    let err = case("ntasks", mt.clone(), &mt_tensors, d, ArtifactKind::Multitask, &["only"]);
    assert!(matches!(&err, CoreError::Peft { field, .. } if field == "num_tasks"), "{err}");
    let err = case("teacher-mt", mt, &mt_tensors, d, ArtifactKind::Teacher, &["a", "b"]);
    assert!(matches!(&err, CoreError::Import { message, .. } if message.contains("teacher")), "{err}");
    let err = case("teacher-unnamed", base.clone(), &prompt, d, ArtifactKind::Teacher, &[]);
    assert!(matches!(err, CoreError::Import { .. }), "{err}");

    let err = case("missing-tensor", base.clone(), &BTreeMap::new(), d, ArtifactKind::Target, &[]);
    assert!(matches!(&err, CoreError::Tensor { tensor, .. } if tensor == "prompt_embeddings"), "{err}");

    let dir = tmp.path().join("nofile");
    std::fs::create_dir(&dir).unwrap();
    let err = import_peft(&dir, &tmp.path().join("x"), backbone(), d, ArtifactKind::Target, vec![]).unwrap_err();
    assert!(matches!(&err, CoreError::Io { path, .. } if path.ends_with(ADAPTER_CONFIG)), "{err}");
    std::fs::write(dir.join(ADAPTER_CONFIG), "not json").unwrap();
    let err = import_peft(&dir, &tmp.path().join("x"), backbone(), d, ArtifactKind::Target, vec![]).unwrap_err();
    assert!(matches!(err, CoreError::JsonFile { .. }), "{err}");
}

#[test]
fn export_prompt_compresses_one_task() {
    let tmp = tempfile::tempdir().unwrap();
    let (t, l, r, d) = (3, 4, 2, 6);
    let mut new = new_artifact(ArtifactKind::Multitask, &["a", "b", "c"], multitask_tensors(t, l, r, d));
    new.metrics = json!({"dev": {"a": {"acc": 0.5}, "b": {"acc": 0.25}}, "test": {"b": {"acc": 0.75}}});
    let a = Artifact::write(&tmp.path().join("m"), new).unwrap();
    let out = export_prompt(&a, &tmp.path().join("b"), Some("b")).unwrap();
    assert_eq!(out.meta.layout, Layout::Prompt);
    assert_eq!(out.meta.kind, ArtifactKind::Multitask);
    assert_eq!(out.meta.tasks, vec!["b"]);
    assert_eq!(out.meta.parents, vec![a.meta.id.clone()]);
    assert_eq!(out.meta.config, json!({"compressed_from": a.meta.id, "task": "b", "original_config": a.meta.config}));
    assert_eq!(out.meta.metrics, json!({"dev": {"b": {"acc": 0.25}}, "test": {"b": {"acc": 0.75}}}));
    // Dyadic values: P* ∘ (U_1 V_1) is exact, so it equals the burn computation bit for bit.
    let device = Device::flex();
    let want = tensor_values(a.prompt_params(&device).unwrap().task_prompt(1));
    assert_eq!(values(&out.tensors["prompt_embeddings"]), want.as_slice());
    assert_eq!(Artifact::load(&out.dir, None, None).unwrap().tensors, out.tensors);

    let err = export_prompt(&a, &tmp.path().join("x"), None).unwrap_err();
    assert!(matches!(&err, CoreError::Field { field, .. } if field == "tasks"), "{err}");
    let err = export_prompt(&a, &tmp.path().join("x"), Some("nope")).unwrap_err();
    assert!(matches!(&err, CoreError::Field { field, .. } if field == "tasks"), "{err}");
    let err = export_prompt(&out, &tmp.path().join("x"), None).unwrap_err();
    assert!(matches!(&err, CoreError::Layout { message, .. } if message.contains("already a plain prompt")), "{err}");
    assert!(!tmp.path().join("x").exists());

    // One task: no name needed.
    let single = Artifact::write(
        &tmp.path().join("s"),
        new_artifact(ArtifactKind::Target, &["z"], multitask_tensors(1, l, 1, d)),
    )
    .unwrap();
    let s = export_prompt(&single, &tmp.path().join("s-plain"), None).unwrap();
    assert_eq!(s.meta.tasks, vec!["z"]);
    assert_eq!(s.meta.kind, ArtifactKind::Target);
    let p = values(&single.tensors["prompt_embeddings"]);
    let u = values(&single.tensors["prefix_task_cols"]);
    let v = values(&single.tensors["prefix_task_rows"]);
    let hand: Vec<f32> = (0..l * d).map(|i| p[i] * u[i / d] * v[i % d]).collect();
    assert_eq!(values(&s.tensors["prompt_embeddings"]), hand.as_slice());
}
