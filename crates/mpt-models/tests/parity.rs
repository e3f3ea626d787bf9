//! Parity with Hugging Face transformers (+ PEFT for the prompted cases) on the committed
//! fixtures made by `tests/fixtures/make_fixtures.py`: whole-tensor comparisons of encoder
//! states, logits, greedy ids, sentence embeddings and tokenization.
//!
//! The MiniLM case uses the real weights fetched by `scripts/fetch-models.sh` into
//! `models/all-MiniLM-L6-v2` (or `$MPT_MODELS_DIR/all-MiniLM-L6-v2`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::prelude::*;
use mpt_models::io::{HostTensor, read_safetensors};
use mpt_models::{Model, TextTokenizer, forward};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures").join(name)
}

fn minilm_dir() -> PathBuf {
    let root = std::env::var_os("MPT_MODELS_DIR").map(PathBuf::from).unwrap_or_else(|| repo().join("models"));
    let dir = root.join("all-MiniLM-L6-v2");
    assert!(dir.join("model.safetensors").is_file(), "{} is missing: run scripts/fetch-models.sh first", dir.display());
    dir
}

fn floats(t: &HostTensor) -> (&[f32], &[usize]) {
    match t {
        HostTensor::F32 { data, shape } => (data, shape),
        other => panic!("expected f32, got {}", other.dtype_name()),
    }
}

fn ints(t: &HostTensor) -> (&[i64], &[usize]) {
    match t {
        HostTensor::I64 { data, shape } => (data, shape),
        other => panic!("expected i64, got {}", other.dtype_name()),
    }
}

/// Whole-tensor comparison: |a - b| ≤ atol + rtol·|b| everywhere.
fn assert_close(name: &str, got: &HostTensor, want: &HostTensor, atol: f32, rtol: f32) {
    let (g, gs) = floats(got);
    let (w, ws) = floats(want);
    assert_eq!(gs, ws, "{name}: shape");
    let mut worst = (0.0f32, 0usize);
    for (i, (a, b)) in g.iter().zip(w).enumerate() {
        let excess = (a - b).abs() - (atol + rtol * b.abs());
        if excess > worst.0 {
            worst = (excess, i);
        }
    }
    assert!(
        worst.0 <= 0.0,
        "{name}: element {} is {} vs reference {} (beyond atol {atol} + rtol {rtol})",
        worst.1,
        g[worst.1],
        w[worst.1]
    );
}

fn pick(refs: &BTreeMap<String, HostTensor>, names: &[&str]) -> BTreeMap<String, HostTensor> {
    names.iter().filter_map(|n| refs.get(*n).map(|t| (n.to_string(), t.clone()))).collect()
}

fn t5_case(name: &str) {
    let dir = fixture(name);
    let device = Device::flex();
    let model = Model::load(&dir, &device).expect("fixture loads");
    let refs = read_safetensors(&dir.join("reference.safetensors")).unwrap();
    let n = ints(&refs["generated_ids"]).1[1] - 1;
    let mut inputs = pick(&refs, &["input_ids", "attention_mask", "decoder_input_ids"]);
    let out = forward::forward(&model, &inputs, Some(8), &device).unwrap();
    assert_close(
        "encoder_last_hidden_state",
        &out["encoder_last_hidden_state"],
        &refs["encoder_last_hidden_state"],
        1e-4,
        1e-4,
    );
    assert_close("lm_logits", &out["lm_logits"], &refs["lm_logits"], 1e-4, 1e-4);
    assert_eq!(out["generated_ids"], refs["generated_ids"], "generated_ids (N = {n})");

    inputs.insert("soft_prompt".into(), refs["soft_prompt"].clone());
    let out = forward::forward(&model, &inputs, Some(8), &device).unwrap();
    assert_close(
        "prompted.encoder_last_hidden_state",
        &out["encoder_last_hidden_state"],
        &refs["prompted.encoder_last_hidden_state"],
        1e-4,
        1e-4,
    );
    assert_close("prompted.lm_logits", &out["lm_logits"], &refs["prompted.lm_logits"], 1e-4, 1e-4);
    assert_eq!(out["generated_ids"], refs["prompted.generated_ids"], "prompted.generated_ids");
}

#[test]
fn t5_v1_0_matches_transformers_and_peft() {
    t5_case("t5-v1_0-tiny");
}

#[test]
fn t5_v1_1_matches_transformers_and_peft() {
    t5_case("t5-v1_1-tiny");
}

/// A decoder-only fixture (tests/fixtures/make_decoder_fixtures.py): logits and hidden states
/// at every position of right-padded rows, plain and behind a soft prompt (PEFT CAUSAL_LM), and
/// greedy continuations.
fn causal_case(name: &str) {
    let dir = fixture(name);
    let device = Device::flex();
    let model = Model::load(&dir, &device).expect("fixture loads");
    let refs = read_safetensors(&dir.join("reference.safetensors")).unwrap();
    let n = ints(&refs["generated_ids"]).1[1];
    let mut inputs = pick(&refs, &["input_ids", "attention_mask"]);
    let out = forward::forward(&model, &inputs, Some(n), &device).unwrap();
    // Padding positions are compared too: their values are well defined (they attend to the
    // real tokens before them).
    assert_close("logits", &out["logits"], &refs["logits"], 1e-4, 1e-4);
    assert_close("last_hidden_state", &out["last_hidden_state"], &refs["last_hidden_state"], 1e-4, 1e-4);
    assert_eq!(out["generated_ids"], refs["generated_ids"], "generated_ids");

    inputs.insert("soft_prompt".into(), refs["soft_prompt"].clone());
    let out = forward::forward(&model, &inputs, Some(n), &device).unwrap();
    assert_close("prompted.logits", &out["logits"], &refs["prompted.logits"], 1e-4, 1e-4);
    assert_close(
        "prompted.last_hidden_state",
        &out["last_hidden_state"],
        &refs["prompted.last_hidden_state"],
        1e-4,
        1e-4,
    );
    assert_eq!(out["generated_ids"], refs["prompted.generated_ids"], "prompted.generated_ids");
}

#[test]
fn llama_matches_transformers_and_peft() {
    causal_case("llama-tiny");
}

#[test]
fn qwen2_matches_transformers_and_peft() {
    causal_case("qwen2-tiny");
}

fn zero_types(t: &HostTensor) -> HostTensor {
    let (data, shape) = ints(t);
    HostTensor::I64 { data: vec![0; data.len()], shape: shape.to_vec() }
}

fn bert_case(model_dir: PathBuf, refs_dir: PathBuf) {
    let device = Device::flex();
    let model = Model::load(&model_dir, &device).expect("model loads");
    let refs = read_safetensors(&refs_dir.join("reference.safetensors")).unwrap();
    let mut inputs = pick(&refs, &["input_ids", "attention_mask", "token_type_ids"]);
    let out = forward::forward(&model, &inputs, None, &device).unwrap();
    assert_close("last_hidden_state", &out["last_hidden_state"], &refs["last_hidden_state"], 1e-4, 1e-4);
    assert_close("sentence_embedding", &out["sentence_embedding"], &refs["sentence_embedding"], 1e-5, 1e-4);

    // mpt: prompt rows get token type 0, input rows keep theirs.
    inputs.insert("soft_prompt".into(), refs["soft_prompt"].clone());
    let out = forward::forward(&model, &inputs, None, &device).unwrap();
    if let Some(want) = refs.get("prompted_keep_tt.last_hidden_state") {
        assert_close("prompted_keep_tt.last_hidden_state", &out["last_hidden_state"], want, 1e-4, 1e-4);
    }
    assert_close(
        "prompted_keep_tt.sentence_embedding",
        &out["sentence_embedding"],
        &refs["prompted_keep_tt.sentence_embedding"],
        1e-5,
        1e-4,
    );

    // PEFT drops token type ids when a prompt is present: with all-zero types we match it.
    let types = zero_types(&inputs["token_type_ids"]);
    inputs.insert("token_type_ids".into(), types);
    let out = forward::forward(&model, &inputs, None, &device).unwrap();
    assert_close(
        "prompted.last_hidden_state",
        &out["last_hidden_state"],
        &refs["prompted.last_hidden_state"],
        1e-4,
        1e-4,
    );
    assert_close(
        "prompted.sentence_embedding",
        &out["sentence_embedding"],
        &refs["prompted.sentence_embedding"],
        1e-5,
        1e-4,
    );

    // Training heads read only the input's rows: the last layer skips the prompt rows' queries.
    let bert = model.backbone.as_any().downcast_ref::<mpt_models::bert::Bert>().expect("a BERT model");
    let (ids, [b, s]) = int2(&inputs["input_ids"]);
    let (mask, _) = int2(&inputs["attention_mask"]);
    let (types, _) = int2(&inputs["token_type_ids"]);
    let (prompt, prompt_shape) = floats(&refs["soft_prompt"]);
    let [l, d] = [prompt_shape[0], prompt_shape[1]];
    let prompt = Tensor::<2>::from_data(TensorData::new(prompt.to_vec(), [l, d]), &device);
    let int = |v: Vec<i64>| Tensor::<2, Int>::from_data(TensorData::new(v, [b, s]), &device);
    let rows =
        bert.forward_inputs(int(ids), int(mask), int(types), Some(prompt.unsqueeze::<3>().expand([b, l, d]))).unwrap();
    let (want, want_shape) = floats(&refs["prompted.last_hidden_state"]);
    let total = want_shape[1];
    assert_eq!(total, l + s);
    let want: Vec<f32> = want.chunks(total * d).flat_map(|batch| batch[l * d..].to_vec()).collect();
    let want = HostTensor::F32 { data: want, shape: vec![b, s, d] };
    assert_close("prompted.last_hidden_state[:, l:]", &HostTensor::from_float(rows), &want, 1e-4, 1e-4);
}

#[test]
fn bert_input_rows_forward_has_the_gradients_of_the_full_forward() {
    let device = Device::flex();
    let model = Model::load(&fixture("bert-tiny"), &device).expect("model loads");
    let bert = model.backbone.as_any().downcast_ref::<mpt_models::bert::Bert>().expect("a BERT model");
    let refs = read_safetensors(&fixture("bert-tiny/reference.safetensors")).unwrap();
    let (ids, [b, s]) = int2(&refs["input_ids"]);
    let (mask, _) = int2(&refs["attention_mask"]);
    let (l, d) = (5, bert.dim());
    let int = |v: &[i64]| Tensor::<2, Int>::from_data(TensorData::new(v.to_vec(), [b, s]), &device);
    let normal = |shape: [usize; 3]| Tensor::<3>::random(shape, burn::tensor::Distribution::Normal(0.0, 1.0), &device);
    let (start, probe) = (normal([b, l, d]), normal([b, s, d]));
    let grad = |rows_only: bool| {
        let prompt = Tensor::<3>::from_data(start.to_data(), &device.clone().autodiff()).require_grad();
        let (ids, mask, types) = (int(&ids), int(&mask), Tensor::zeros([b, s], &device));
        let out = match rows_only {
            true => bert.forward_inputs(ids, mask, types, Some(prompt.clone())).unwrap(),
            false => bert.forward(ids, mask, types, Some(prompt.clone())).unwrap().slice([0..b, l..l + s, 0..d]),
        };
        let grads = (out.clone() * probe.clone()).sum().backward();
        let grad = prompt.grad(&grads).expect("the prompt is tracked");
        (HostTensor::from_float(out.without_autodiff()), HostTensor::from_float(grad))
    };
    let ((out, got), (want_out, want)) = (grad(true), grad(false));
    assert_close("input rows", &out, &want_out, 1e-5, 1e-5);
    assert_close("prompt gradient", &got, &want, 1e-5, 1e-4);
}

fn int2(t: &HostTensor) -> (Vec<i64>, [usize; 2]) {
    let (data, shape) = ints(t);
    (data.to_vec(), [shape[0], shape[1]])
}

#[test]
fn bert_tiny_matches_transformers_and_peft() {
    bert_case(fixture("bert-tiny"), fixture("bert-tiny"));
}

#[test]
fn minilm_real_weights_match_transformers_and_peft() {
    bert_case(minilm_dir(), fixture("minilm"));
}

fn tokenizer_case(tokenizer_path: PathBuf, cases_path: PathBuf) {
    let tok = TextTokenizer::from_file(&tokenizer_path).unwrap();
    let cases: serde_json::Value = serde_json::from_slice(&std::fs::read(&cases_path).unwrap()).unwrap();
    let cases = cases["cases"].as_array().expect("cases");
    assert!(!cases.is_empty());
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let pair = case.get("text_pair").and_then(|p| p.as_str());
        let rows = tok.encode_rows(&[(text, pair)], 100_000).unwrap();
        let want: Vec<i64> = serde_json::from_value(case["ids"].clone()).unwrap();
        let want_types: Vec<i64> = serde_json::from_value(case["type_ids"].clone()).unwrap();
        assert_eq!(rows[0].0, want, "ids of {text:?} / {pair:?}");
        assert_eq!(rows[0].1, want_types, "type ids of {text:?} / {pair:?}");
    }
}

#[test]
fn tokenizers_match_hugging_face() {
    for name in ["t5-v1_0-tiny", "t5-v1_1-tiny", "bert-tiny"] {
        tokenizer_case(fixture(name).join("tokenizer.json"), fixture(name).join("tokenized.json"));
    }
    tokenizer_case(minilm_dir().join("tokenizer.json"), fixture("minilm/tokenized.json"));
}

#[test]
fn batch_encoding_pads_like_the_reference() {
    let tok = TextTokenizer::from_file(&minilm_dir().join("tokenizer.json")).unwrap();
    let refs = read_safetensors(&fixture("minilm/reference.safetensors")).unwrap();
    let meta = std::fs::read(fixture("minilm/reference.safetensors")).unwrap();
    let header_len = u64::from_le_bytes(meta[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&meta[8..8 + header_len]).unwrap();
    let fixture_meta: serde_json::Value =
        serde_json::from_str(header["__metadata__"]["mpt_fixture"].as_str().unwrap()).unwrap();
    let texts = fixture_meta["texts"].as_array().unwrap();
    let owned: Vec<(String, Option<String>)> = texts
        .iter()
        .map(|t| match t {
            serde_json::Value::String(s) => (s.clone(), None),
            serde_json::Value::Array(p) => (p[0].as_str().unwrap().into(), Some(p[1].as_str().unwrap().into())),
            other => panic!("unexpected text {other}"),
        })
        .collect();
    let inputs: Vec<(&str, Option<&str>)> = owned.iter().map(|(a, b)| (a.as_str(), b.as_deref())).collect();
    let batch = tok.encode_batch(&inputs, 512, 0).unwrap();
    assert_eq!(HostTensor::from_rows(&batch.input_ids), refs["input_ids"]);
    assert_eq!(HostTensor::from_rows(&batch.attention_mask), refs["attention_mask"]);
    assert_eq!(HostTensor::from_rows(&batch.token_type_ids), refs["token_type_ids"]);
}

#[test]
fn relative_position_buckets_match_known_values() {
    use mpt_models::t5::relative_position_bucket as bucket;
    // Values from transformers' T5Attention._relative_position_bucket (32 buckets, 128).
    assert_eq!(bucket(0, true, 32, 128), 0);
    assert_eq!(bucket(1, true, 32, 128), 17);
    assert_eq!(bucket(-1, true, 32, 128), 1);
    assert_eq!(bucket(7, true, 32, 128), 23);
    assert_eq!(bucket(8, true, 32, 128), 24);
    assert_eq!(bucket(-20, true, 32, 128), 10);
    assert_eq!(bucket(200, true, 32, 128), 31);
    assert_eq!(bucket(-200, true, 32, 128), 15);
    assert_eq!(bucket(5, false, 32, 128), 0);
    assert_eq!(bucket(-5, false, 32, 128), 5);
    assert_eq!(bucket(-40, false, 32, 128), 23);
    assert_eq!(bucket(-500, false, 32, 128), 31);
}
