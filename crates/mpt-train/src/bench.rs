//! `mpt bench`: real steps of a stage on synthetic token ids, timed.
//!
//! Every input row has exactly `seq_len` tokens (random ids from the upper part of the
//! vocabulary, no padding); BERT rows use a two-label verbalizer, T5 rows a two-label
//! text-to-text task with targets of `target_len` tokens. Stages:
//! - `teacher`: a plain prompt, task cross-entropy, optimizer step;
//! - `distill`: the multitask prompt over 3 tasks, task loss + λ(KL + hidden MSE) with each
//!   row's frozen teacher prompt run in the same step;
//! - `adapt`: the multitask prompt with one task (P* ∘ u vᵀ), task loss;
//! - `eval`: prediction only (T5: rank classification over the two labels).

use std::time::Instant;

use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use mpt_core::{MultitaskPrompt, SoftPrompt, TaskPrompts};
use mpt_models::{Backbone, FamilyModel, TextTokenizer};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::{Batch, TaskData};
use crate::error::{Result, TrainError};
use crate::eval::{Decoding, predict};
use crate::head::{HeadConfig, Heads, cross_entropy, hidden_mse, kl_divergence};
use crate::trainer::clip_global_norm;

/// Which stage's step is timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BenchStage {
    /// Plain prompt tuning.
    Teacher,
    /// Distillation step.
    Distill,
    /// Decomposed target step.
    Adapt,
    /// Forward-only prediction.
    Eval,
}

impl std::str::FromStr for BenchStage {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "teacher" => Ok(Self::Teacher),
            "distill" => Ok(Self::Distill),
            "adapt" => Ok(Self::Adapt),
            "eval" => Ok(Self::Eval),
            _ => Err(format!("unknown stage {s:?}; expected teacher, distill, adapt or eval")),
        }
    }
}

/// What to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchConfig {
    /// Stage.
    pub stage: BenchStage,
    /// Prompt length.
    pub prompt_len: usize,
    /// Batch size.
    pub batch: usize,
    /// Input tokens per row.
    pub seq_len: usize,
    /// Timed steps.
    pub steps: usize,
    /// Untimed warm-up steps.
    pub warmup: usize,
}

/// Measured figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchResult {
    /// Stage.
    pub stage: BenchStage,
    /// Median step time (ms).
    pub step_ms_median: f64,
    /// Mean step time (ms).
    pub step_ms_mean: f64,
    /// Examples per second at the median.
    pub examples_per_sec: f64,
    /// Input tokens per second at the median (prompt excluded).
    pub tokens_per_sec: f64,
    /// Peak resident memory of the process (MiB), from /proc/self/status `VmHWM`.
    pub peak_rss_mb: f64,
    /// Every timed step (ms).
    pub steps_ms: Vec<f64>,
}

/// Peak resident set size of this process in MiB (Linux; 0 elsewhere).
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn synthetic_batch(
    backbone: &dyn Backbone,
    cfg: &BenchConfig,
    label_ids: &[Vec<i64>],
    tasks: usize,
    rng: &mut ChaCha8Rng,
    device: &Device,
) -> Batch {
    let vocab = backbone.vocab_size() as i64;
    let lo = (vocab / 4).max(5);
    let (b, s) = (cfg.batch, cfg.seq_len);
    let ids: Vec<i64> = (0..b * s).map(|_| rng.random_range(lo..vocab)).collect();
    let labels: Vec<usize> = (0..b).map(|i| i % 2).collect();
    let int2 = |v: Vec<i64>, shape: [usize; 2]| Tensor::<2, Int>::from_data(TensorData::new(v, shape), device);
    let tasks_of = (0..b).map(|i| i % tasks).collect();
    if let FamilyModel::CausalLm(_) = backbone.family() {
        // The seq_len input tokens, then the label string.
        let pairs: Vec<(&[i64], &[i64])> =
            labels.iter().enumerate().map(|(i, &y)| (&ids[i * s..(i + 1) * s], label_ids[y].as_slice())).collect();
        return crate::data::causal_rows(&pairs, backbone.pad_token_id(), device).into_batch(labels, tasks_of);
    }
    let (dec, tgt, tmask) = match backbone.family() {
        FamilyModel::Seq2Seq(m) => {
            let t = label_ids.iter().map(Vec::len).max().unwrap_or(1);
            let mut dec = Vec::new();
            let mut tgt = Vec::new();
            let mut mask = Vec::new();
            for &y in &labels {
                let ids = &label_ids[y];
                for j in 0..t {
                    dec.push(if j == 0 { m.decoder_start() } else { ids.get(j - 1).copied().unwrap_or(0) });
                    tgt.push(ids.get(j).copied().unwrap_or(0));
                    mask.push(if j < ids.len() { 1.0f32 } else { 0.0 });
                }
            }
            (
                Some(int2(dec, [b, t])),
                Some(int2(tgt, [b, t])),
                Some(Tensor::<2>::from_data(TensorData::new(mask, [b, t]), device)),
            )
        }
        FamilyModel::Encoder(_) | FamilyModel::CausalLm(_) => (None, None, None),
    };
    Batch {
        input_ids: int2(ids, [b, s]),
        attention_mask: Tensor::ones([b, s], device),
        token_type_ids: Tensor::zeros([b, s], device),
        decoder_input_ids: dec,
        target_ids: tgt,
        target_mask: tmask,
        target_positions: None,
        labels,
        tasks: tasks_of,
        segments: None,
    }
}

/// Runs the benchmark on `backbone` (non-autodiff `device`).
pub fn run(
    backbone: &dyn Backbone,
    tokenizer: &TextTokenizer,
    cfg: &BenchConfig,
    device: &Device,
) -> Result<BenchResult> {
    if cfg.steps == 0 || cfg.batch == 0 || cfg.seq_len == 0 || cfg.prompt_len == 0 {
        return Err(TrainError::Config {
            field: "bench".into(),
            message: "steps, batch, seq_len and prompt_len must be positive".into(),
        });
    }
    let task = mpt_data::lookup("sst2")?;
    let tasks = if cfg.stage == BenchStage::Distill { 3 } else { 1 };
    let empty = TaskData::encode(task, Vec::new(), tokenizer, backbone.arch(), Default::default())?;
    let task_list: Vec<&TaskData> = (0..tasks).map(|_| &empty).collect();
    let heads = Heads::new(backbone, tokenizer, &task_list, HeadConfig::default(), device)?;
    let label_ids = empty.label_ids.clone();
    let (l, d) = (cfg.prompt_len, backbone.dim());
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let autodiff = device.clone().autodiff();
    let init = |rng: &mut ChaCha8Rng, dev: &Device| {
        let v: Vec<f32> = (0..l * d).map(|_| rng.random_range(-0.05f32..0.05)).collect();
        Tensor::<2>::from_data(TensorData::new(v, [l, d]), dev)
    };
    let mut timings = Vec::with_capacity(cfg.steps);
    let mut optim = AdamWConfig::new().with_epsilon(1e-8).init();
    let mut plain = SoftPrompt::new(init(&mut rng, &autodiff).require_grad());
    let mut multi = MultitaskPrompt::new(
        init(&mut rng, &autodiff).require_grad(),
        Tensor::<3>::ones([tasks, l, 1], &autodiff).require_grad(),
        Tensor::<3>::ones([tasks, 1, d], &autodiff).require_grad(),
    )?;
    let teachers = Tensor::stack::<3>((0..tasks).map(|_| init(&mut rng, device)).collect(), 0);
    let eval_data = if cfg.stage == BenchStage::Eval {
        let examples: Vec<mpt_data::Example> = (0..cfg.batch)
            .map(|i| mpt_data::Example {
                id: format!("bench/{i}"),
                input: String::new(),
                text_a: String::new(),
                text_b: None,
                label: i % 2,
                score: None,
                group: None,
                reference: None,
            })
            .collect();
        let mut data = TaskData::encode(task, examples, tokenizer, backbone.arch(), Default::default())?;
        let vocab = backbone.vocab_size() as i64;
        let lo = (vocab / 4).max(5);
        for row in data.input_ids.iter_mut() {
            *row = (0..cfg.seq_len).map(|_| rng.random_range(lo..vocab)).collect();
        }
        for row in data.token_type_ids.iter_mut() {
            *row = vec![0; cfg.seq_len];
        }
        Some(data)
    } else {
        None
    };
    for step in 0..cfg.warmup + cfg.steps {
        let batch = synthetic_batch(backbone, cfg, &label_ids, tasks, &mut rng, device);
        let t0 = Instant::now();
        match cfg.stage {
            BenchStage::Teacher => {
                let out = heads.forward(backbone, plain.prompts_for(&batch.tasks), &batch)?;
                let loss = cross_entropy(&out);
                let _ = loss.clone().into_scalar::<f32>();
                let mut grads = GradientsParams::from_grads(loss.backward(), &plain);
                clip_global_norm(&plain, &mut grads, 1.0);
                plain = optim.step(0.01, plain, grads);
                let _ = plain.prompt_embeddings.val().sum().into_scalar::<f32>();
            }
            BenchStage::Distill | BenchStage::Adapt => {
                let out = heads.forward(backbone, multi.prompts_for(&batch.tasks), &batch)?;
                let mut loss = cross_entropy(&out);
                if cfg.stage == BenchStage::Distill {
                    let ids: Vec<i64> = batch.tasks.iter().map(|&t| t as i64).collect();
                    let ids = Tensor::<1, Int>::from_data(TensorData::new(ids, [batch.len()]), device);
                    let teacher = heads.forward(backbone, teachers.clone().select(0, ids), &batch)?;
                    let kl = kl_divergence(&teacher.logits, &out.logits, &out.mask, 1.0);
                    let mse = hidden_mse(&teacher.hidden, &out.hidden, &out.hidden_mask);
                    loss = loss + (kl + mse) * 0.9;
                }
                let _ = loss.clone().into_scalar::<f32>();
                let mut grads = GradientsParams::from_grads(loss.backward(), &multi);
                clip_global_norm(&multi, &mut grads, 1.0);
                multi = optim.step(0.01, multi, grads);
                let _ = multi.prompt_embeddings.val().sum().into_scalar::<f32>();
            }
            BenchStage::Eval => {
                let data = eval_data.as_ref().expect("built for eval");
                let p = plain.value().without_autodiff();
                let _ = predict(backbone, &heads, 0, data, Some(&p), None, cfg.batch, Decoding::Rank, tokenizer)?;
            }
        }
        if step >= cfg.warmup {
            timings.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
    }
    let mut sorted = timings.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let median = if sorted.len() % 2 == 1 {
        sorted[sorted.len() / 2]
    } else {
        (sorted[sorted.len() / 2 - 1] + sorted[sorted.len() / 2]) / 2.0
    };
    let mean = timings.iter().sum::<f64>() / timings.len() as f64;
    Ok(BenchResult {
        stage: cfg.stage,
        step_ms_median: median,
        step_ms_mean: mean,
        examples_per_sec: cfg.batch as f64 / (median / 1000.0),
        tokens_per_sec: (cfg.batch * cfg.seq_len) as f64 / (median / 1000.0),
        peak_rss_mb: peak_rss_mb(),
        steps_ms: timings,
    })
}
