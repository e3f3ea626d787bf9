//! Empty and degenerate inputs (issue 15): the public entry points refuse them with a
//! `ModelError::Input` naming the tensor, and the fused ops never hand an empty operand to a
//! kernel (a `[0, S]` batch used to crash in gemm's microkernel, exit 139; a `[B, 0]` one to
//! panic in a reshape). A test here that regresses crashes the test process.

use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::prelude::*;
use mpt_models::fused::{self, AttentionKernels, FusedOps};
use mpt_models::io::HostTensor;
use mpt_models::{Model, ModelError, forward};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures").join(name)
}

fn load(name: &str) -> (Model, Device) {
    let device = Device::flex();
    (Model::load(&fixture(name), &device).expect("fixture loads"), device)
}

/// The name and message of an `Input` error.
fn input_err(err: ModelError) -> (String, String) {
    match err {
        ModelError::Input { name, message } => (name, message),
        other => panic!("expected ModelError::Input, got {other}"),
    }
}

fn ids(shape: [usize; 2], device: &Device) -> Tensor<2, Int> {
    Tensor::zeros(shape, device)
}

#[test]
fn fused_linear_on_empty_operands_returns_the_empty_or_bias_result() {
    for device in [Device::flex(), Device::flex().autodiff()] {
        let w = Tensor::<2>::ones([4, 3], &device);
        let b = Tensor::<1>::from_floats([1.0, 2.0, 3.0], &device);
        let out = fused::linear(Tensor::<3>::zeros([0, 5, 4], &device), w.clone(), Some(b.clone()));
        assert_eq!(out.dims(), [0, 5, 3]);
        let out = fused::linear(Tensor::<3>::zeros([2, 0, 4], &device), w, None);
        assert_eq!(out.dims(), [2, 0, 3]);
        // No inner axis: the product is zero, the bias remains.
        let out = fused::linear(Tensor::<2>::zeros([2, 0], &device), Tensor::zeros([0, 3], &device), Some(b));
        assert_eq!(out.into_data().try_to_vec::<f32>().unwrap(), [1.0, 2.0, 3.0, 1.0, 2.0, 3.0]);
        let out = fused::linear(Tensor::<2>::ones([2, 4], &device), Tensor::zeros([4, 0], &device), None);
        assert_eq!(out.dims(), [2, 0]);
    }
}

#[test]
fn fused_row_ops_and_attention_on_empty_tensors() {
    let device = Device::flex().autodiff();
    let x = Tensor::<3>::zeros([0, 5, 8], &device);
    let g = Tensor::<1>::ones([8], &device);
    assert_eq!(fused::gelu(x.clone()).dims(), [0, 5, 8]);
    assert_eq!(fused::softmax_last(Tensor::<3>::zeros([2, 3, 0], &device)).dims(), [2, 3, 0]);
    assert_eq!(fused::layer_norm(x.clone(), g.clone(), g.clone() * 0.0, 1e-12).dims(), [0, 5, 8]);
    assert_eq!(fused::rms_norm(x, g, 1e-6).dims(), [0, 5, 8]);
    let q = Tensor::<4>::zeros([0, 2, 5, 4], &device);
    assert_eq!(
        fused::attention(q.clone(), q.clone(), q.clone(), Tensor::zeros([0, 1, 1, 5], &device)).dims(),
        [0, 2, 5, 4]
    );
    // Queries but no keys: zeros, not a softmax over nothing.
    let q = Tensor::<4>::ones([1, 2, 3, 4], &device);
    let kv = Tensor::<4>::zeros([1, 2, 0, 4], &device);
    let out = fused::attention(q, kv.clone(), kv, Tensor::zeros([1, 1, 1, 0], &device));
    assert_eq!(out.dims(), [1, 2, 3, 4]);
    assert!(out.into_data().try_to_vec::<f32>().unwrap().iter().all(|&v| v == 0.0));
}

fn flex(values: Vec<f32>, shape: &[usize]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape.to_vec()))
}

/// The flex implementations themselves (what the autodiff ops and other callers reach).
#[test]
fn flex_fused_ops_take_empty_operands_without_a_kernel() {
    let w = flex(vec![1.0; 12], &[4, 3]);
    let b = flex(vec![1.0, 2.0, 3.0], &[3]);
    let out = <Flex as FusedOps>::fused_linear(flex(vec![], &[0, 4]), w.clone(), b);
    assert_eq!(out.layout().shape().to_vec(), [0, 3]);
    let out = <Flex as FusedOps>::fused_linear_no_bias(flex(vec![], &[2, 0, 4]), w.clone());
    assert_eq!(out.layout().shape().to_vec(), [2, 0, 3]);
    let out = <Flex as FusedOps>::fused_linear_no_bias(flex(vec![], &[0, 5, 4]), w.clone());
    assert_eq!(out.layout().shape().to_vec(), [0, 5, 3]);
    let out = <Flex as FusedOps>::fused_linear_backward(w, flex(vec![], &[0, 3]));
    assert_eq!(out.layout().shape().to_vec(), [0, 4]);
    let out = <Flex as FusedOps>::fused_softmax(flex(vec![], &[3, 0]));
    assert_eq!(out.layout().shape().to_vec(), [3, 0]);
    let out = <Flex as FusedOps>::fused_layer_norm(
        flex(vec![], &[0, 2]),
        flex(vec![1.0; 2], &[2]),
        flex(vec![0.0; 2], &[2]),
        1e-12,
    );
    assert_eq!(out.layout().shape().to_vec(), [0, 2]);
    let q = flex(vec![], &[0, 2, 3, 4]);
    let bias = flex(vec![], &[0, 1, 1, 3]);
    let (out, p) = <Flex as AttentionKernels>::attention_forward(q.clone(), q.clone(), q.clone(), bias.clone());
    assert_eq!(out.layout().shape().to_vec(), [0, 2, 3, 4]);
    assert_eq!(p.layout().shape().to_vec(), [0, 2, 3, 3]);
    let [dq, dk, dv] = <Flex as AttentionKernels>::attention_backward(q.clone(), q.clone(), q.clone(), bias, out, p, q);
    for d in [dq, dk, dv] {
        assert_eq!(d.layout().shape().to_vec(), [0, 2, 3, 4]);
    }
}

#[test]
fn bert_refuses_empty_batches_rows_and_prompts() {
    let (model, device) = load("bert-tiny");
    let bert = model.backbone.as_any().downcast_ref::<mpt_models::bert::Bert>().expect("bert-tiny is a BERT");
    for (shape, needle) in [([0, 5], "empty batch"), ([2, 0], "rows of length 0")] {
        let (name, message) =
            input_err(bert.forward(ids(shape, &device), ids(shape, &device), ids(shape, &device), None).unwrap_err());
        assert_eq!(name, "input_ids");
        assert!(message.contains(needle) && message.contains(&format!("{shape:?}")), "{message}");
        let (name, _) = input_err(
            bert.forward_inputs(ids(shape, &device), ids(shape, &device), ids(shape, &device), None).unwrap_err(),
        );
        assert_eq!(name, "input_ids");
    }
    let good = ids([2, 3], &device);
    let (name, message) = input_err(bert.forward(good.clone(), ids([2, 4], &device), good.clone(), None).unwrap_err());
    assert!(name == "attention_mask" && message.contains("[2, 4]") && message.contains("[2, 3]"), "{name}: {message}");
    let (name, _) = input_err(bert.forward(good.clone(), good.clone(), ids([1, 3], &device), None).unwrap_err());
    assert_eq!(name, "token_type_ids");
    for prompt in [[2, 0, 32], [1, 4, 32], [2, 4, 16]] {
        let p = Tensor::<3>::zeros(prompt, &device);
        let (name, message) = input_err(bert.forward(good.clone(), good.clone(), good.clone(), Some(p)).unwrap_err());
        assert!(name == "prompt" && message.contains(&format!("{prompt:?}")), "{name}: {message}");
    }
    let (name, _) = input_err(
        bert.forward_embeds(Tensor::zeros([0, 3, 32], &device), ids([0, 3], &device), ids([0, 3], &device))
            .unwrap_err(),
    );
    assert_eq!(name, "inputs_embeds");
    let (name, _) = input_err(
        bert.forward_embeds_from(Tensor::zeros([2, 3, 32], &device), good.clone(), good.clone(), 3).unwrap_err(),
    );
    assert_eq!(name, "from");
    // A valid call still works.
    assert_eq!(bert.forward(good.clone(), good.clone() + 1, good, None).unwrap().dims(), [2, 3, 32]);
}

#[test]
fn t5_refuses_empty_batches_rows_and_decoder_inputs() {
    let (model, device) = load("t5-v1_1-tiny");
    let t5 = model.backbone.as_any().downcast_ref::<mpt_models::t5::T5>().expect("a T5 fixture");
    for (shape, needle) in [([0, 5], "empty batch"), ([2, 0], "rows of length 0")] {
        let (name, message) = input_err(t5.try_encode(ids(shape, &device), ids(shape, &device), None).unwrap_err());
        assert!(name == "input_ids" && message.contains(needle), "{name}: {message}");
    }
    let good = ids([2, 3], &device);
    let (name, _) = input_err(t5.try_encode(good.clone(), ids([2, 2], &device), None).unwrap_err());
    assert_eq!(name, "attention_mask");
    let (name, _) =
        input_err(t5.try_encode(good.clone(), good.clone(), Some(Tensor::zeros([2, 0, 32], &device))).unwrap_err());
    assert_eq!(name, "prompt");
    let (enc, mask) = t5.try_encode(good.clone(), good.clone() + 1, None).unwrap();
    let (name, message) = input_err(t5.try_decode(ids([2, 0], &device), &enc, &mask).unwrap_err());
    assert!(name == "decoder_input_ids" && message.contains("rows of length 0"), "{name}: {message}");
    let (name, _) = input_err(t5.try_decode(ids([3, 1], &device), &enc, &mask).unwrap_err());
    assert_eq!(name, "decoder_input_ids");
    assert_eq!(t5.try_decode(ids([2, 1], &device), &enc, &mask).unwrap().dims(), [2, 1, 400]);
    // No rows to generate for: nothing, without a step.
    assert!(t5.generate_greedy(&Tensor::zeros([0, 3, 32], &device), &ids([0, 3], &device), 4).is_empty());
}

fn int_input(shape: [usize; 2]) -> HostTensor {
    HostTensor::I64 { data: vec![0; shape[0] * shape[1]], shape: shape.to_vec() }
}

#[test]
fn the_forward_contract_refuses_empty_inputs_naming_the_tensor() {
    for name in ["bert-tiny", "t5-v1_0-tiny"] {
        let (model, device) = load(name);
        for shape in [[0, 5], [2, 0]] {
            let inputs = BTreeMap::from([
                ("input_ids".to_string(), int_input(shape)),
                ("attention_mask".to_string(), int_input(shape)),
            ]);
            let (tensor, message) = input_err(forward::forward(&model, &inputs, None, &device).unwrap_err());
            assert!(tensor == "input_ids" && message.contains(&format!("{shape:?}")), "{name}: {tensor}: {message}");
        }
        let mut inputs = BTreeMap::from([
            ("input_ids".to_string(), int_input([2, 3])),
            ("attention_mask".to_string(), int_input([2, 3])),
        ]);
        let mut prompt = vec![0.0f32; 2 * 32];
        prompt[33] = f32::NAN;
        inputs.insert("soft_prompt".into(), HostTensor::F32 { data: prompt, shape: vec![2, 32] });
        let (tensor, message) = input_err(forward::forward(&model, &inputs, None, &device).unwrap_err());
        assert!(tensor == "soft_prompt" && message.contains("NaN") && message.contains("row 1"), "{name}: {message}");
        if name.starts_with("t5") {
            inputs.remove("soft_prompt");
            inputs.insert("decoder_input_ids".into(), int_input([2, 0]));
            let (tensor, _) = input_err(forward::forward(&model, &inputs, None, &device).unwrap_err());
            assert_eq!(tensor, "decoder_input_ids");
        }
    }
}
