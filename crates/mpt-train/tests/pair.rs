//! The pair (bi-encoder) head: each segment encoded on its own with the prompt, features
//! `[u, v, |u − v|, √d·(u ∘ v)]`, checked against the same computation done row by row from
//! the tokenizer's own single-text encodings; its untrained start; gradients; mixed widths.

#[path = "../../../tests/common/stage_fixtures.rs"]
mod common;

use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::Tolerance;
use common::{data_root as root, load};
use mpt_core::SoftPrompt;
use mpt_models::FamilyModel;
use mpt_models::forward::{l2_normalize, mean_pool};
use mpt_train::data::split_segments;
use mpt_train::{
    HeadConfig, HeadKind, Heads, Lengths, Selection, TaskData, TrainError, cross_entropy, load_task, make_batch,
};

fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    (0..n).map(|i| (((i as u64 * 2654435761 + seed * 97) % 1000) as f32 / 1000.0 - 0.5) * scale).collect()
}

fn pair_config() -> HeadConfig {
    HeadConfig { kind: HeadKind::Pair, ..linear_config() }
}

#[test]
fn segments_split_at_the_token_types() {
    // [CLS] a a [SEP] b b b [SEP]
    let ids = [101, 7, 8, 102, 9, 10, 11, 102];
    let types = [0, 0, 0, 0, 1, 1, 1, 1];
    let (a, b) = split_segments(&ids, &types);
    assert_eq!(a, vec![101, 7, 8, 102]);
    assert_eq!(b, Some(vec![101, 9, 10, 11, 102]));
    let (a, b) = split_segments(&ids[..4], &types[..4]);
    assert_eq!(a, vec![101, 7, 8, 102]);
    assert_eq!(b, None);
}

#[test]
fn pair_head_reads_each_segment_encoded_on_its_own() {
    let (model, device) = load("bert-tiny");
    let backbone = &*model.backbone;
    let FamilyModel::Encoder(encoder) = backbone.family() else { panic!("bert-tiny is an encoder") };
    let tok = model.require_tokenizer().unwrap();
    let rte = mpt_data::lookup("rte").unwrap();
    let lengths = Lengths { max_input: 512, ..Lengths::default() };
    let splits = load_task(&root(), rte, &Selection::default(), tok, backbone.arch(), lengths).unwrap();
    let data = &splits.train;
    let rows: Vec<(usize, usize)> = (0..5).map(|i| (0, i)).collect();
    let batch = make_batch(&[data], &rows, backbone, &device);
    let d = backbone.dim();
    let (l, c) = (3, 2);
    let prompt = Tensor::<2>::from_data(TensorData::new(values(l * d, 4, 0.2), [l, d]), &device);
    let w = Tensor::<2>::from_data(TensorData::new(values(c * 4 * d, 9, 4.0), [c, 4 * d]), &device);
    let bias = Tensor::<1>::from_data(TensorData::new(vec![0.3f32, -0.2], [c]), &device);
    let heads = Heads::new(backbone, tok, &[data], pair_config(), &device).unwrap();
    let out = heads
        .forward_with(
            backbone,
            Some(prompt.clone().unsqueeze::<3>().expand([rows.len(), l, d])),
            &[(w.clone(), bias.clone())],
            &batch,
        )
        .unwrap();
    assert_eq!(out.logits.dims(), [rows.len(), 1, c]);

    // Row by row: each text encoded alone by the tokenizer, run alone with the prompt.
    let pooled = |text: &str| {
        let enc = tok.encode_batch(&[(text, None)], 512, backbone.pad_token_id()).unwrap();
        let ids = Tensor::<2, Int>::from_data(
            TensorData::new(enc.input_ids[0].clone(), [1, enc.input_ids[0].len()]),
            &device,
        );
        let mask = ids.ones_like();
        let hidden = encoder
            .forward_inputs(ids, mask.clone(), mask.zeros_like(), Some(prompt.clone().unsqueeze::<3>()))
            .unwrap();
        l2_normalize(mean_pool(hidden, mask))
    };
    let mut want = Vec::new();
    let mut hidden_rows = 0;
    for &(_, i) in &rows {
        let e = &data.examples[i];
        let u = pooled(&e.text_a);
        let v = pooled(e.text_b.as_deref().expect("rte rows are pairs"));
        let features =
            Tensor::cat(vec![u.clone(), v.clone(), (u.clone() - v.clone()).abs(), (u * v) * (d as f64).sqrt()], 1);
        want.push(features.matmul(w.clone().transpose()) + bias.clone().unsqueeze::<2>());
        let (first, second) = split_segments(&data.input_ids[i], &data.token_type_ids[i]);
        hidden_rows = hidden_rows.max(first.len().max(second.unwrap().len()));
    }
    let want = Tensor::cat(want, 0).reshape([rows.len(), 1, c]);
    out.logits.to_data().assert_approx_eq::<f32>(&want.to_data(), Tolerance::absolute(1e-4));
    // Distillation compares both segments' states side by side.
    assert_eq!(out.hidden.dims(), [rows.len(), 2 * hidden_rows, d]);
    assert_eq!(out.hidden_mask.dims(), [rows.len(), 2 * hidden_rows]);
}

#[test]
fn untrained_pair_head_scores_single_sentences_like_the_linear_head() {
    let (model, device) = load("bert-tiny");
    let backbone = &*model.backbone;
    let tok = model.require_tokenizer().unwrap();
    let rte = mpt_data::lookup("rte").unwrap();
    let lengths = Lengths::default();
    let splits = load_task(&root(), rte, &Selection::default(), tok, backbone.arch(), lengths).unwrap();
    // The pairs' first segments alone: a single-sentence task.
    let single: Vec<_> = splits.train.examples[..6]
        .iter()
        .cloned()
        .map(|mut e| {
            e.text_b = None;
            e
        })
        .collect();
    let data = TaskData::encode(rte, single, tok, backbone.arch(), lengths).unwrap();
    let rows: Vec<(usize, usize)> = (0..6).map(|i| (0, i)).collect();
    let batch = make_batch(&[&data], &rows, backbone, &device);
    let d = backbone.dim();
    let p = Tensor::<2>::from_data(TensorData::new(values(4 * d, 2, 0.2), [4, d]), &device).unsqueeze::<3>().expand([
        rows.len(),
        4,
        d,
    ]);
    let linear = Heads::new(backbone, tok, &[&data], linear_config(), &device).unwrap();
    let pair = Heads::new(backbone, tok, &[&data], pair_config(), &device).unwrap();
    let start = pair.initial_heads();
    assert_eq!(start[0].0.dims(), [2, 4 * d]);
    let want = linear.forward_with(backbone, Some(p.clone()), &linear.initial_heads(), &batch).unwrap();
    let got = pair.forward_with(backbone, Some(p), &start, &batch).unwrap();
    got.logits.to_data().assert_approx_eq::<f32>(&want.logits.to_data(), Tolerance::absolute(1e-4));
    // No second segment in the batch: only the first segments ran.
    assert_eq!(got.hidden.dims(), want.hidden.dims());
}

#[test]
fn every_block_of_the_pair_head_and_the_prompt_receive_gradients() {
    let (model, device) = load("bert-tiny");
    let autodiff = device.clone().autodiff();
    let backbone = &*model.backbone;
    let tok = model.require_tokenizer().unwrap();
    let spec = mpt_data::lookup("mnli").unwrap();
    let splits = load_task(&root(), spec, &Selection::default(), tok, backbone.arch(), Lengths::default()).unwrap();
    let heads = Heads::new(backbone, tok, &[&splits.train], pair_config(), &device).unwrap();
    let d = backbone.dim();
    let module = SoftPrompt::new(
        Tensor::<2>::from_data(TensorData::new(values(4 * d, 5, 0.2), [4, d]), &autodiff).require_grad(),
    )
    .with_classifiers(heads.initial_classifiers(&autodiff));
    assert_eq!(module.num_tunable(), 4 * d + 3 * 4 * d + 3);
    let rows: Vec<(usize, usize)> = (0..4).map(|i| (0, i)).collect();
    let batch = make_batch(&[&splits.train], &rows, backbone, &device);
    let linear: Vec<_> = module.classifiers.iter().map(|c| (c.weight.val(), c.bias.val())).collect();
    let out = heads.forward_with(backbone, Some(module.batch(4)), &linear, &batch).unwrap();
    let grads = GradientsParams::from_grads(cross_entropy(&out).backward(), &module);
    let w = grads.get::<2>(module.classifiers[0].weight.id).expect("weight gradient");
    for (block, name) in ["u", "v", "|u - v|", "u * v"].iter().enumerate() {
        let g = w.clone().slice([0..3, block * d..(block + 1) * d]).square().sum().into_scalar::<f32>();
        assert!(g > 0.0, "block {name} of the pair head got a zero gradient");
    }
    let g = grads.get::<2>(module.prompt_embeddings.id).expect("prompt gradient");
    assert!(g.square().sum().into_scalar::<f32>() > 0.0, "the prompt trains through both segments");
}

#[test]
fn heads_of_two_widths_in_one_batch_are_an_error() {
    let (model, device) = load("bert-tiny");
    let backbone = &*model.backbone;
    let tok = model.require_tokenizer().unwrap();
    let mnli = mpt_data::lookup("mnli").unwrap();
    let rte = mpt_data::lookup("rte").unwrap();
    let lengths = Lengths::default();
    let a = load_task(&root(), mnli, &Selection::default(), tok, backbone.arch(), lengths).unwrap();
    let b = load_task(&root(), rte, &Selection::default(), tok, backbone.arch(), lengths).unwrap();
    let linear = Heads::new(backbone, tok, &[&a.train, &b.train], linear_config(), &device).unwrap();
    let pair = Heads::new(backbone, tok, &[&a.train, &b.train], pair_config(), &device).unwrap();
    let mixed = vec![linear.initial_heads()[0].clone(), pair.initial_heads()[1].clone()];
    let rows = vec![(0, 0), (1, 0)];
    let batch = make_batch(&[&a.train, &b.train], &rows, backbone, &device);
    let err = pair.forward_with(backbone, None, &mixed, &batch).unwrap_err();
    let d = backbone.dim();
    match &err {
        TrainError::Config { field, message } => {
            assert_eq!(field, "head.kind");
            assert!(message.contains(&format!("[{d}, {}]", 4 * d)), "{message}");
        }
        other => panic!("expected a config error, got {other}"),
    }
}

/// The linear head (the default head is the pair head).
fn linear_config() -> HeadConfig {
    HeadConfig { kind: mpt_train::HeadKind::Linear, ..HeadConfig::default() }
}
