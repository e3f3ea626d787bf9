//! Losses, distillation terms, the schedule, clipping, the NaN guard, rank classification and
//! a learning sanity check, on the tiny fixture models and synthetic data.

use std::path::PathBuf;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::prelude::*;
use mpt_core::{MultitaskPrompt, SoftPrompt};
use mpt_data::DataRoot;
use mpt_models::Model;
use mpt_train::{
    Decoding, EpochSampler, EvalPoint, HeadConfig, Heads, Lengths, Objective, Output, RowSource, Selection, Silent,
    StepLoss, TaskObjective, TrainConfig, TrainError, cross_entropy, hidden_mse, kl_divergence, load_task, make_batch,
    train,
};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn load(name: &str) -> Model {
    Model::load(&fixtures().join(name), &Device::flex()).expect("fixture model loads")
}

fn root() -> DataRoot {
    DataRoot::new(fixtures().join("data"))
}

fn prompt(l: usize, d: usize, seed: u64, device: &Device) -> Tensor<2> {
    let values: Vec<f32> =
        (0..l * d).map(|i| (((i as u64 * 2654435761 + seed * 97) % 1000) as f32 / 1000.0 - 0.5) * 0.2).collect();
    Tensor::from_data(TensorData::new(values, [l, d]), device)
}

fn outputs(model: &Model, task: &str, p: Tensor<2>) -> (Output, mpt_train::Batch) {
    let device = Device::flex();
    let spec = mpt_data::lookup(task).unwrap();
    let tok = model.require_tokenizer().unwrap();
    let splits =
        load_task(&root(), spec, &Selection::default(), tok, model.backbone.arch(), Lengths::default()).unwrap();
    let heads = Heads::new(&*model.backbone, tok, &[&splits.train], linear_config(), &device).unwrap();
    let rows: Vec<(usize, usize)> = (0..6).map(|i| (0, i)).collect();
    let batch = make_batch(&[&splits.train], &rows, &*model.backbone, &device);
    let [l, d] = p.dims();
    let out = heads.forward(&*model.backbone, p.unsqueeze::<3>().expand([6, l, d]), &batch).unwrap();
    (out, batch)
}

#[test]
fn distillation_terms_vanish_when_student_equals_teacher() {
    for name in ["bert-tiny", "t5-v1_1-tiny"] {
        let model = load(name);
        let d = model.backbone.dim();
        let (teacher, _) = outputs(&model, "mnli", prompt(4, d, 1, &Device::flex()));
        let (student, _) = outputs(&model, "mnli", prompt(4, d, 1, &Device::flex()));
        let kl = kl_divergence(&teacher.logits, &student.logits, &student.mask, 2.0).into_scalar::<f32>();
        let mse = hidden_mse(&teacher.hidden, &student.hidden, &student.hidden_mask).into_scalar::<f32>();
        assert!(kl.abs() < 1e-6, "{name}: KL {kl}");
        assert!(mse.abs() < 1e-9, "{name}: MSE {mse}");
        let (other, _) = outputs(&model, "mnli", prompt(4, d, 7, &Device::flex()));
        let kl = kl_divergence(&teacher.logits, &other.logits, &other.mask, 2.0).into_scalar::<f32>();
        let mse = hidden_mse(&teacher.hidden, &other.hidden, &other.hidden_mask).into_scalar::<f32>();
        assert!(kl > 1e-6 && mse > 1e-6, "{name}: a different prompt must differ (KL {kl}, MSE {mse})");
    }
}

#[test]
fn cross_entropy_and_kl_match_hand_computation() {
    let device = Device::flex();
    // Two rows, one position, three classes; row 1's third class is padding-masked out of the mean.
    let logits = Tensor::<3>::from_data(TensorData::new(vec![1.0f32, 2.0, 0.5, 0.0, -1.0, 3.0], [2, 1, 3]), &device);
    let out = Output {
        logits: logits.clone(),
        targets: Tensor::from_data(TensorData::new(vec![1i64, 2], [2, 1]), &device),
        mask: Tensor::from_data(TensorData::new(vec![1.0f32, 1.0], [2, 1]), &device),
        hidden: Tensor::zeros([2, 1, 2], &device),
        hidden_mask: Tensor::ones([2, 1], &device),
    };
    let lse = |v: &[f64]| v.iter().map(|x| x.exp()).sum::<f64>().ln();
    let want = ((lse(&[1.0, 2.0, 0.5]) - 2.0) + (lse(&[0.0, -1.0, 3.0]) - 3.0)) / 2.0;
    let got = cross_entropy(&out).into_scalar::<f32>() as f64;
    assert!((got - want).abs() < 1e-5, "CE {got} vs {want}");

    let teacher = Tensor::<3>::from_data(TensorData::new(vec![0.0f32, 1.0, 0.0, 2.0, 0.0, 0.0], [2, 1, 3]), &device);
    let t = 2.0;
    let softmax = |v: [f64; 3]| {
        let z: f64 = v.iter().map(|x| (x / t).exp()).sum();
        v.map(|x| (x / t).exp() / z)
    };
    let kl = |p: [f64; 3], q: [f64; 3]| p.iter().zip(q).map(|(a, b)| a * (a / b).ln()).sum::<f64>();
    let want = (kl(softmax([0.0, 1.0, 0.0]), softmax([1.0, 2.0, 0.5]))
        + kl(softmax([2.0, 0.0, 0.0]), softmax([0.0, -1.0, 3.0])))
        / 2.0;
    let got = kl_divergence(&teacher, &logits, &out.mask, t).into_scalar::<f32>() as f64;
    assert!((got - want).abs() < 1e-5, "KL {got} vs {want}");
}

#[test]
fn schedule_warms_up_then_decays_linearly_to_zero() {
    let c = TrainConfig { max_steps: 10, warmup_steps: Some(2), learning_rate: 1.0, ..TrainConfig::default() };
    let lrs: Vec<f64> = (0..10).map(|s| c.lr_at(s)).collect();
    let want = [0.0, 0.5, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125];
    for (got, want) in lrs.iter().zip(want) {
        assert!((got - want).abs() < 1e-12, "{lrs:?}");
    }
}

#[test]
fn global_norm_clipping_scales_every_parameter_together() {
    let device = Device::flex().autodiff();
    let shared = Tensor::<2>::ones([2, 3], &device).require_grad();
    let cols = (Tensor::<3>::ones([2, 2, 1], &device) * 2.0).require_grad();
    let rows = Tensor::<3>::ones([2, 1, 3], &device).require_grad();
    let module = MultitaskPrompt::new(shared, cols, rows).unwrap();
    let loss = module.batch(&[0, 1]).sum() * 10.0;
    let mut grads = GradientsParams::from_grads(loss.backward(), &module);
    let before = mpt_train::trainer::clip_global_norm(&module, &mut grads, 1.0);
    assert!(before > 1.0, "the test needs a large gradient, got {before}");
    // Norm after clipping is 1 (computed over all three parameters).
    let mut sum = 0.0f64;
    for g in [
        grads.get::<2>(module.prompt_embeddings.id).unwrap().square().sum().into_scalar::<f32>(),
        grads.get::<3>(module.prefix_task_cols.id).unwrap().square().sum().into_scalar::<f32>(),
        grads.get::<3>(module.prefix_task_rows.id).unwrap().square().sum().into_scalar::<f32>(),
    ] {
        sum += g as f64;
    }
    assert!((sum.sqrt() - 1.0).abs() < 1e-4, "clipped norm {}", sum.sqrt());
}

struct NanAfter(usize);

impl Objective<SoftPrompt> for NanAfter {
    fn loss(&mut self, module: &SoftPrompt, step: usize) -> mpt_train::Result<StepLoss> {
        let base = module.value().sum();
        let total = if step >= self.0 { base * f32::NAN } else { base.square() };
        Ok(StepLoss { total, parts: Vec::new(), examples: 1 })
    }
    fn evaluate(&mut self, _module: &SoftPrompt, step: usize) -> mpt_train::Result<EvalPoint> {
        Ok(EvalPoint { step, score: 0.0, details: serde_json::Value::Null })
    }
}

#[test]
fn non_finite_loss_stops_the_run_with_an_error() {
    let device = Device::flex().autodiff();
    let module = SoftPrompt::new(Tensor::<2>::ones([2, 2], &device).require_grad());
    let config = TrainConfig { max_steps: 10, eval_every: 5, ..TrainConfig::default() };
    let err = train(module, &mut NanAfter(3), &config, "test", &Silent).unwrap_err();
    match err {
        TrainError::NonFinite { step, value, .. } => {
            assert_eq!(step, 3);
            assert!(value.is_nan());
        }
        other => panic!("expected NonFinite, got {other}"),
    }
}

#[test]
fn prompt_tuning_fits_a_small_training_set_and_only_the_prompt_changes() {
    let model = load("bert-tiny");
    let device = Device::flex();
    let spec = mpt_data::lookup("rte").unwrap();
    let tok = model.require_tokenizer().unwrap();
    let selection = Selection { max_train: Some(8), ..Selection::default() };
    let splits = load_task(&root(), spec, &selection, tok, model.backbone.arch(), Lengths::default()).unwrap();
    let heads = Heads::new(&*model.backbone, tok, &[&splits.train], linear_config(), &device).unwrap();
    let embeddings_before = model.backbone.word_embedding_matrix().into_data();
    let autodiff = device.clone().autodiff();
    let start = prompt(4, 32, 3, &autodiff);
    let module = SoftPrompt::new(start.clone().require_grad());
    let mut objective = TaskObjective {
        backbone: &*model.backbone,
        tokenizer: tok,
        heads: &heads,
        train: vec![&splits.train],
        dev: vec![&splits.train],
        rows: RowSource::Single(EpochSampler::new(splits.train.len(), 0)),
        batch_size: 8,
        eval_batch_size: 8,
        decoding: Decoding::Rank,
        distill: None,
        device: device.clone(),
    };
    let config =
        TrainConfig { max_steps: 40, batch_size: 8, learning_rate: 0.05, eval_every: 40, ..TrainConfig::default() };
    let outcome = train(module, &mut objective, &config, "fit", &Silent).unwrap();
    let losses = &outcome.history.losses;
    let first = losses[..5].iter().map(|l| l.1).sum::<f64>() / 5.0;
    let last = losses[losses.len() - 5..].iter().map(|l| l.1).sum::<f64>() / 5.0;
    assert!(last < first * 0.8, "loss should fall on 8 examples: {first} -> {last}");
    assert!(outcome.best_eval.score >= 0.75, "fits its 8 training examples: {}", outcome.best_eval.score);
    let moved = (outcome.best.value().without_autodiff() - start.without_autodiff()).abs().max().into_scalar::<f32>();
    assert!(moved > 1e-3, "prompt moved by {moved}");
    model.backbone.word_embedding_matrix().into_data().assert_eq(&embeddings_before, true);
    assert_eq!(outcome.best.num_params(), 4 * 32, "the trained module is the prompt alone");
}

#[test]
fn rank_classification_picks_the_label_with_the_highest_likelihood() {
    let model = load("t5-v1_1-tiny");
    let device = Device::flex();
    let spec = mpt_data::lookup("mnli").unwrap();
    let tok = model.require_tokenizer().unwrap();
    let selection = Selection { max_dev: Some(5), ..Selection::default() };
    let splits = load_task(&root(), spec, &selection, tok, model.backbone.arch(), Lengths::default()).unwrap();
    let heads = Heads::new(&*model.backbone, tok, &[&splits.dev], linear_config(), &device).unwrap();
    let p = prompt(3, 32, 5, &device);
    let predicted =
        mpt_train::predict(&*model.backbone, &heads, 0, &splits.dev, Some(&p), None, 2, Decoding::Rank, tok).unwrap();
    let mpt_models::FamilyModel::Seq2Seq(t5) = model.backbone.family() else { panic!("a seq2seq fixture") };
    // Reference: score every (example, label) pair with its own teacher-forced pass.
    for (i, &pred) in predicted.iter().enumerate() {
        let mut best = (f64::NEG_INFINITY, 0);
        for (c, ids) in splits.dev.label_ids.iter().enumerate() {
            let mut data = splits.dev.clone();
            data.examples[i].label = c;
            let batch = make_batch(&[&data], &[(0, i)], &*model.backbone, &device);
            let (enc, mask) =
                t5.encode(batch.input_ids.clone(), batch.attention_mask.clone(), Some(p.clone().unsqueeze::<3>()));
            let logits = t5.lm_logits(t5.decode_hidden(batch.decoder_input_ids.clone().unwrap(), &enc, &mask));
            let logp = burn::tensor::activation::log_softmax(logits, 2);
            let t = ids.len();
            let picked =
                logp.gather(2, batch.target_ids.clone().unwrap().reshape([1, t, 1])).sum().into_scalar::<f32>() as f64;
            if picked > best.0 {
                best = (picked, c);
            }
        }
        assert_eq!(pred, best.1, "example {i}");
    }
}

/// The logits a causal LM gives label `c` of example `i` when the row runs alone (no padding):
/// `[T, V]` at the positions that predict the label's tokens, behind prompt `p` `[l, d]`.
fn causal_label_logits(model: &Model, data: &mpt_train::TaskData, i: usize, c: usize, p: &Tensor<2>) -> Tensor<2> {
    let mpt_models::FamilyModel::CausalLm(lm) = model.backbone.family() else { panic!("a causal-LM fixture") };
    let device = p.device();
    let (input, label) = (&data.input_ids[i], &data.label_ids[c]);
    let ids: Vec<i64> = input.iter().chain(label).copied().collect();
    let n = ids.len();
    let hidden = lm.forward_hidden(
        Tensor::from_data(TensorData::new(ids, [1, n]), &device),
        Tensor::ones([1, n], &device),
        Some(p.clone().unsqueeze::<3>()),
    );
    let [l, d] = p.dims();
    let from = l + input.len() - 1;
    let t = label.len();
    lm.lm_logits(hidden.slice([0..1, from..from + t, 0..d])).reshape([t, model.backbone.vocab_size()])
}

#[test]
fn causal_lm_batches_score_label_tokens_like_rows_run_alone() {
    for name in ["llama-tiny", "qwen2-tiny"] {
        let model = load(name);
        let device = Device::flex();
        let tok = model.require_tokenizer().unwrap();
        let spec = mpt_data::lookup("mnli").unwrap();
        let selection = Selection { max_dev: Some(5), ..Selection::default() };
        let splits = load_task(&root(), spec, &selection, tok, model.backbone.arch(), Lengths::default()).unwrap();
        let dev = &splits.dev;
        let heads = Heads::new(&*model.backbone, tok, &[dev], linear_config(), &device).unwrap();
        let p = prompt(3, 32, 7, &device);

        // Training: a right-padded batch's logits at the target positions are the lone rows'.
        let rows: Vec<(usize, usize)> = (0..dev.len()).map(|i| (0, i)).collect();
        let batch = make_batch(&[dev], &rows, &*model.backbone, &device);
        let b = rows.len();
        let out = heads.forward(&*model.backbone, p.clone().unsqueeze::<3>().expand([b, 3, 32]), &batch).unwrap();
        for (i, example) in dev.examples.iter().enumerate() {
            let want = causal_label_logits(&model, dev, i, example.label, &p);
            let [t, v] = want.dims();
            let got = out.logits.clone().slice([i..i + 1, 0..t, 0..v]).reshape([t, v]);
            let diff = (got - want).abs().max().into_scalar::<f32>();
            assert!(diff < 1e-4, "{name} example {i}: batch vs lone row differ by {diff}");
        }

        // Prediction: rank classification picks the label with the highest summed log-probability.
        let predicted =
            mpt_train::predict(&*model.backbone, &heads, 0, dev, Some(&p), None, 2, Decoding::Rank, tok).unwrap();
        for (i, &pred) in predicted.iter().enumerate() {
            let score = |c: usize| {
                let logp = burn::tensor::activation::log_softmax(causal_label_logits(&model, dev, i, c, &p), 1);
                let ids = &dev.label_ids[c];
                let t = ids.len();
                let index = Tensor::<2, Int>::from_data(TensorData::new(ids.clone(), [t, 1]), &device);
                logp.gather(1, index).sum().into_scalar::<f32>()
            };
            let best = (0..dev.label_ids.len()).max_by(|&a, &b| score(a).total_cmp(&score(b))).unwrap();
            assert_eq!(pred, best, "{name} example {i}");
        }
    }
}

#[test]
fn untrained_linear_head_scores_like_the_verbalizer_and_trains() {
    let model = load("bert-tiny");
    let device = Device::flex();
    let tok = model.require_tokenizer().unwrap();
    let mnli = mpt_data::lookup("mnli").unwrap();
    let rte = mpt_data::lookup("rte").unwrap();
    let lengths = Lengths::default();
    let a = load_task(&root(), mnli, &Selection::default(), tok, model.backbone.arch(), lengths).unwrap();
    let b = load_task(&root(), rte, &Selection::default(), tok, model.backbone.arch(), lengths).unwrap();
    let heads = Heads::new(&*model.backbone, tok, &[&a.train, &b.train], linear_config(), &device).unwrap();
    // Rows of both tasks (3 and 2 classes) in one batch.
    let rows: Vec<(usize, usize)> = vec![(0, 0), (1, 0), (0, 1), (1, 1), (1, 2)];
    let batch = make_batch(&[&a.train, &b.train], &rows, &*model.backbone, &device);
    let d = model.backbone.dim();
    let p = prompt(4, d, 3, &device).unsqueeze::<3>().expand([rows.len(), 4, d]);
    let frozen = heads.forward(&*model.backbone, p.clone(), &batch).unwrap();
    let linear = heads.initial_heads();
    assert_eq!(linear.len(), 2);
    assert_eq!(linear[0].0.dims(), [3, d]);
    assert_eq!(linear[1].1.dims(), [2]);
    let out = heads.forward_with(&*model.backbone, Some(p.clone()), &linear, &batch).unwrap();
    out.logits.to_data().assert_approx_eq::<f32>(&frozen.logits.to_data(), burn::tensor::Tolerance::absolute(1e-4));
    // A changed bias moves exactly that task's rows and class.
    let mut shifted = linear.clone();
    shifted[1].1 = Tensor::from_data(TensorData::new(vec![0.0f32, 2.5], [2]), &device);
    let moved = heads.forward_with(&*model.backbone, Some(p), &shifted, &batch).unwrap();
    let diff: Vec<f32> = (moved.logits - out.logits).into_data().try_to_vec::<f32>().unwrap();
    let expect: Vec<f32> =
        [[0.0, 0.0, 0.0], [0.0, 2.5, 0.0], [0.0, 0.0, 0.0], [0.0, 2.5, 0.0], [0.0, 2.5, 0.0]].concat();
    for (i, (got, want)) in diff.iter().zip(&expect).enumerate() {
        assert!((got - want).abs() < 1e-4, "logit {i}: moved by {got}, expected {want}");
    }
}

#[test]
fn linear_head_parameters_receive_gradients() {
    let model = load("bert-tiny");
    let device = Device::flex();
    let autodiff = device.clone().autodiff();
    let tok = model.require_tokenizer().unwrap();
    let spec = mpt_data::lookup("rte").unwrap();
    let splits =
        load_task(&root(), spec, &Selection::default(), tok, model.backbone.arch(), Lengths::default()).unwrap();
    let heads = Heads::new(&*model.backbone, tok, &[&splits.train], linear_config(), &device).unwrap();
    let d = model.backbone.dim();
    let module = SoftPrompt::new(prompt(4, d, 5, &autodiff).require_grad())
        .with_classifiers(heads.initial_classifiers(&autodiff));
    assert_eq!(module.num_tunable(), 4 * d + 2 * d + 2);
    let rows: Vec<(usize, usize)> = (0..4).map(|i| (0, i)).collect();
    let batch = make_batch(&[&splits.train], &rows, &*model.backbone, &device);
    let linear: Vec<_> = module.classifiers.iter().map(|c| (c.weight.val(), c.bias.val())).collect();
    let out = heads.forward_with(&*model.backbone, Some(module.batch(4)), &linear, &batch).unwrap();
    let grads = GradientsParams::from_grads(cross_entropy(&out).backward(), &module);
    for (name, id) in [("weight", module.classifiers[0].weight.id), ("bias", module.classifiers[0].bias.id)] {
        let g: Tensor<1> = match name {
            "weight" => grads.get::<2>(id).expect("weight gradient").flatten(0, 1),
            _ => grads.get::<1>(id).expect("bias gradient"),
        };
        let norm = g.square().sum().into_scalar::<f32>();
        assert!(norm > 0.0, "classifier {name} got a zero gradient");
    }
    assert!(grads.get::<2>(module.prompt_embeddings.id).is_some(), "the prompt still trains");
}

#[test]
fn warmup_defaults_to_a_tenth_of_the_steps() {
    let c = TrainConfig { max_steps: 20, learning_rate: 1.0, ..TrainConfig::default() };
    assert_eq!((c.warmup_steps, c.warmup()), (None, 2));
    assert_eq!((c.lr_at(0), c.lr_at(1), c.lr_at(2)), (0.0, 0.5, 1.0));
    assert_eq!(TrainConfig { max_steps: 3, ..c.clone() }.warmup(), 0, "0.3 rounds to no warm-up");
    let bad = TrainConfig { warmup_ratio: 1.0, ..c }.validate("train.").unwrap_err().to_string();
    assert!(bad.contains("train.warmup_ratio"), "{bad}");
}

/// The linear head (the default head is the pair head).
fn linear_config() -> HeadConfig {
    HeadConfig { kind: mpt_train::HeadKind::Linear, ..HeadConfig::default() }
}
