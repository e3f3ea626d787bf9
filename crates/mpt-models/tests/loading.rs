//! Loading errors: missing, mis-shaped and unexpected tensors, bad configs, bad inputs.

use std::collections::BTreeMap;
use std::path::Path;

use burn::prelude::*;
use mpt_models::io::{HostTensor, write_safetensors};
use mpt_models::{Model, ModelError, forward};

const D: usize = 8;
const FF: usize = 16;
const V: usize = 20;
const P: usize = 16;

fn config() -> serde_json::Value {
    serde_json::json!({
        "model_type": "bert",
        "vocab_size": V,
        "hidden_size": D,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": FF,
        "hidden_act": "gelu",
        "max_position_embeddings": P,
        "type_vocab_size": 2,
        "layer_norm_eps": 1e-12,
        "pad_token_id": 0
    })
}

fn f32_tensor(shape: &[usize], seed: usize) -> HostTensor {
    let n: usize = shape.iter().product();
    HostTensor::F32 {
        data: (0..n).map(|i| (((i + seed) * 7919 % 101) as f32 / 101.0) - 0.5).collect(),
        shape: shape.to_vec(),
    }
}

fn weights() -> BTreeMap<String, HostTensor> {
    let mut w = BTreeMap::new();
    let mut put = |name: &str, shape: &[usize]| {
        let seed = w.len();
        w.insert(name.to_string(), f32_tensor(shape, seed));
    };
    put("embeddings.word_embeddings.weight", &[V, D]);
    put("embeddings.position_embeddings.weight", &[P, D]);
    put("embeddings.token_type_embeddings.weight", &[2, D]);
    put("embeddings.LayerNorm.weight", &[D]);
    put("embeddings.LayerNorm.bias", &[D]);
    for name in ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"] {
        put(&format!("encoder.layer.0.{name}.weight"), &[D, D]);
        put(&format!("encoder.layer.0.{name}.bias"), &[D]);
    }
    put("encoder.layer.0.intermediate.dense.weight", &[FF, D]);
    put("encoder.layer.0.intermediate.dense.bias", &[FF]);
    put("encoder.layer.0.output.dense.weight", &[D, FF]);
    put("encoder.layer.0.output.dense.bias", &[D]);
    for norm in ["attention.output.LayerNorm", "output.LayerNorm"] {
        put(&format!("encoder.layer.0.{norm}.weight"), &[D]);
        put(&format!("encoder.layer.0.{norm}.bias"), &[D]);
    }
    put("pooler.dense.weight", &[D, D]);
    put("pooler.dense.bias", &[D]);
    w.insert("embeddings.position_ids".into(), HostTensor::I64 { data: (0..P as i64).collect(), shape: vec![1, P] });
    w
}

fn write_model(dir: &Path, config: &serde_json::Value, weights: &BTreeMap<String, HostTensor>) {
    std::fs::write(dir.join("config.json"), serde_json::to_vec_pretty(config).unwrap()).unwrap();
    write_safetensors(&dir.join("model.safetensors"), weights).unwrap();
}

fn load(config: &serde_json::Value, weights: &BTreeMap<String, HostTensor>) -> Result<Model, ModelError> {
    let dir = tempfile::tempdir().unwrap();
    write_model(dir.path(), config, weights);
    Model::load(dir.path(), &Device::flex())
}

#[test]
fn position_ids_and_pooler_do_not_break_loading() {
    let model = load(&config(), &weights()).expect("loads");
    assert_eq!(model.backbone.dim(), D);
    assert_eq!(
        model.backbone.num_params(),
        mpt_models::bert::BertConfig {
            vocab_size: V,
            hidden_size: D,
            num_hidden_layers: 1,
            num_attention_heads: 2,
            intermediate_size: FF,
            hidden_act: "gelu".into(),
            max_position_embeddings: P,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            pad_token_id: 0,
            position_embedding_type: "absolute".into(),
        }
        .num_params()
    );
}

#[test]
fn missing_tensor_names_tensor_shape_and_file() {
    let mut w = weights();
    w.remove("encoder.layer.0.attention.self.key.weight");
    let err = load(&config(), &w).unwrap_err().to_string();
    assert!(err.contains("missing tensor `encoder.layer.0.attention.self.key.weight`"), "{err}");
    assert!(err.contains("[8, 8]"), "{err}");
    assert!(err.contains("model.safetensors"), "{err}");
}

#[test]
fn misshaped_tensor_names_expected_and_found() {
    let mut w = weights();
    w.insert("encoder.layer.0.intermediate.dense.weight".into(), f32_tensor(&[FF + 1, D], 0));
    let err = load(&config(), &w).unwrap_err();
    match &err {
        ModelError::ShapeMismatch { name, expected, found, path } => {
            assert_eq!(name, "encoder.layer.0.intermediate.dense.weight");
            assert_eq!(expected, &vec![FF, D]);
            assert_eq!(found, &vec![FF + 1, D]);
            assert!(path.ends_with("model.safetensors"));
        }
        other => panic!("expected ShapeMismatch, got {other}"),
    }
    assert!(err.to_string().contains("has shape [17, 8], expected [16, 8]"), "{err}");
}

#[test]
fn unexpected_tensor_is_an_error() {
    let mut w = weights();
    w.insert("encoder.layer.1.output.dense.weight".into(), f32_tensor(&[D, FF], 0));
    let err = load(&config(), &w).unwrap_err().to_string();
    assert!(err.contains("unexpected tensor(s)"), "{err}");
    assert!(err.contains("`encoder.layer.1.output.dense.weight` [8, 16]"), "{err}");
}

#[test]
fn unknown_model_type_is_an_error() {
    let mut c = config();
    c["model_type"] = "gpt2".into();
    let err = load(&c, &weights()).unwrap_err().to_string();
    assert!(err.contains("unknown model_type \"gpt2\""), "{err}");
    assert!(err.contains("config.json"), "{err}");
}

#[test]
fn bad_config_value_names_field() {
    let mut c = config();
    c["num_attention_heads"] = 3.into();
    let err = load(&c, &weights()).unwrap_err().to_string();
    assert!(err.contains("field `num_attention_heads`"), "{err}");
}

#[test]
fn missing_weights_file_says_what_is_expected() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), serde_json::to_vec(&config()).unwrap()).unwrap();
    std::fs::write(dir.path().join("pytorch_model.bin"), b"pickle").unwrap();
    let err = Model::load(dir.path(), &Device::flex()).unwrap_err().to_string();
    assert!(err.contains("model.safetensors"), "{err}");
    assert!(err.contains("never reads pickle"), "{err}");
}

#[test]
fn empty_or_truncated_weights_file_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_model(dir.path(), &config(), &weights());
    let file = dir.path().join("model.safetensors");
    let full = std::fs::read(&file).unwrap();
    for len in [0, full.len() - 5] {
        std::fs::write(&file, &full[..len]).unwrap();
        let err = Model::load(dir.path(), &Device::flex()).unwrap_err();
        assert!(matches!(err, ModelError::Safetensors { .. }), "{len} bytes: {err}");
        let err = err.to_string();
        assert!(err.contains("model.safetensors: invalid safetensors file"), "{err}");
    }
}

#[test]
fn forward_rejects_bad_inputs() {
    let model = load(&config(), &weights()).unwrap();
    let device = Device::flex();
    let ids = |data: Vec<i64>, shape: Vec<usize>| HostTensor::I64 { data, shape };
    let mut inputs = BTreeMap::new();
    inputs.insert("input_ids".to_string(), f32_tensor(&[1, 3], 0));
    inputs.insert("attention_mask".to_string(), ids(vec![1, 1, 1], vec![1, 3]));
    let err = forward::forward(&model, &inputs, None, &device).unwrap_err().to_string();
    assert!(err.contains("`input_ids`") && err.contains("expected I64"), "{err}");

    inputs.insert("input_ids".to_string(), ids(vec![1, 2, V as i64], vec![1, 3]));
    let err = forward::forward(&model, &inputs, None, &device).unwrap_err().to_string();
    assert!(err.contains("out of range 0..20"), "{err}");

    inputs.insert("input_ids".to_string(), ids(vec![1, 2, 3], vec![1, 3]));
    inputs.insert("attention_mask".to_string(), ids(vec![1, 1], vec![1, 2]));
    let err = forward::forward(&model, &inputs, None, &device).unwrap_err().to_string();
    assert!(err.contains("`attention_mask`") && err.contains("expected [1, 3]"), "{err}");

    inputs.insert("attention_mask".to_string(), ids(vec![1, 1, 1], vec![1, 3]));
    inputs.insert("soft_prompt".to_string(), f32_tensor(&[2, D + 1], 0));
    let err = forward::forward(&model, &inputs, None, &device).unwrap_err().to_string();
    assert!(err.contains("`soft_prompt`") && err.contains("expected [l, 8]"), "{err}");

    inputs.remove("soft_prompt");
    let err = forward::forward(&model, &inputs, Some(3), &device).unwrap_err().to_string();
    assert!(err.contains("need a T5 model"), "{err}");

    let out = forward::forward(&model, &inputs, None, &device).unwrap();
    assert_eq!(out["last_hidden_state"].shape(), &[1, 3, D]);
    assert_eq!(out["sentence_embedding"].shape(), &[1, D]);
}

#[test]
fn prompt_extends_sequence_and_pooling_skips_prompt_rows() {
    let model = load(&config(), &weights()).unwrap();
    let device = Device::flex();
    let mut inputs = BTreeMap::new();
    inputs.insert("input_ids".to_string(), HostTensor::I64 { data: vec![2, 5, 7, 0], shape: vec![1, 4] });
    inputs.insert("attention_mask".to_string(), HostTensor::I64 { data: vec![1, 1, 1, 0], shape: vec![1, 4] });
    inputs.insert("soft_prompt".to_string(), f32_tensor(&[3, D], 1));
    let out = forward::forward(&model, &inputs, None, &device).unwrap();
    assert_eq!(out["last_hidden_state"].shape(), &[1, 7, D]);
    let HostTensor::F32 { data, .. } = &out["sentence_embedding"] else { panic!() };
    let norm: f32 = data.iter().map(|v| v * v).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "normalised, got {norm}");
}
