//! The objective every stage trains: task cross-entropy over one or more tasks, plus, for
//! distillation, `λ · (KL(teacher ‖ student) at temperature T + MSE of hidden states)` with
//! the teacher's frozen prompt run in the same step (without autodiff).

use burn::prelude::*;
use mpt_core::TaskPrompts;
use mpt_data::MultitaskSampler;
use mpt_models::{Backbone, TextTokenizer};

use crate::data::{TaskData, make_batch};
use crate::error::Result;
use crate::eval::{Decoding, evaluate};
use crate::head::{Heads, cross_entropy, hidden_mse, kl_divergence};
use crate::select::{BucketSampler, EpochSampler};
use crate::trainer::{EvalPoint, Objective, StepLoss};

/// Where a step's rows come from.
pub enum RowSource {
    /// One task: a seeded epoch sampler.
    Single(EpochSampler),
    /// One task, length-bucketed batches.
    Bucketed(BucketSampler),
    /// Several tasks: the K-task sampler (K drawn from [2, κ] each batch).
    Multi(MultitaskSampler),
}

impl RowSource {
    /// The single-task source a training config asks for: length-bucketed batches when
    /// `length_bucketing` is on, plain shuffled batches otherwise.
    pub fn single(data: &TaskData, config: &crate::trainer::TrainConfig) -> Self {
        if config.length_bucketing {
            let lengths = data.input_ids.iter().map(Vec::len).collect();
            RowSource::Bucketed(BucketSampler::new(lengths, config.seed, 32))
        } else {
            RowSource::Single(EpochSampler::new(data.len(), config.seed))
        }
    }

    /// The next batch's `(task index, example index)` rows.
    pub fn next(&mut self, batch_size: usize) -> Vec<(usize, usize)> {
        match self {
            RowSource::Single(s) => s.take(batch_size).into_iter().map(|i| (0, i)).collect(),
            RowSource::Bucketed(s) => s.take(batch_size).into_iter().map(|i| (0, i)).collect(),
            RowSource::Multi(s) => s.next_batch(),
        }
    }
}

/// Distillation terms.
pub struct Distill {
    /// Frozen teacher prompts, one per task: `[K, l, d]` (no autodiff).
    pub teacher_prompts: Tensor<3>,
    /// The teachers' trained linear heads, one per task (empty: the verbalizer).
    pub teacher_heads: Vec<crate::head::LinearHead>,
    /// λ.
    pub lambda: f64,
    /// Softmax temperature T.
    pub temperature: f64,
    /// Whether to add the hidden-state MSE.
    pub hidden: bool,
}

/// Task loss (+ distillation) over `train`, selection by mean dev score over `dev`.
pub struct TaskObjective<'a> {
    /// The frozen backbone.
    pub backbone: &'a dyn Backbone,
    /// Tokenizer (greedy decoding).
    pub tokenizer: &'a TextTokenizer,
    /// Heads for the task list.
    pub heads: &'a Heads,
    /// Training data per task.
    pub train: Vec<&'a TaskData>,
    /// Dev data per task.
    pub dev: Vec<&'a TaskData>,
    /// Row source.
    pub rows: RowSource,
    /// Examples per step.
    pub batch_size: usize,
    /// Evaluation batch size.
    pub eval_batch_size: usize,
    /// T5 decoding.
    pub decoding: Decoding,
    /// Distillation, if any.
    pub distill: Option<Distill>,
    /// Device of the backbone (non-autodiff).
    pub device: Device,
}

impl<M: TaskPrompts> Objective<M> for TaskObjective<'_> {
    fn loss(&mut self, module: &M, _step: usize) -> Result<StepLoss> {
        let rows = self.rows.next(self.batch_size);
        let batch = make_batch(&self.train, &rows, self.backbone, &self.device);
        let prompts = module.prompts_for(&batch.tasks);
        let linear: Vec<_> = module.classifiers().iter().map(|c| (c.weight.val(), c.bias.val())).collect();
        let out = self.heads.forward_with(self.backbone, Some(prompts), &linear, &batch)?;
        let task_loss = cross_entropy(&out);
        let mut parts = Vec::new();
        let total = match &self.distill {
            None => task_loss,
            Some(d) => {
                let ids: Vec<i64> = batch.tasks.iter().map(|&t| t as i64).collect();
                let ids = Tensor::<1, Int>::from_data(TensorData::new(ids, [batch.len()]), &self.device);
                let teacher = self.heads.forward_with(
                    self.backbone,
                    Some(d.teacher_prompts.clone().select(0, ids)),
                    &d.teacher_heads,
                    &batch,
                )?;
                let kl = kl_divergence(&teacher.logits, &out.logits, &out.mask, d.temperature);
                let mut extra = kl.clone();
                parts.push(("kl", kl.into_scalar::<f32>() as f64));
                if d.hidden {
                    let mse = hidden_mse(&teacher.hidden, &out.hidden, &out.hidden_mask);
                    parts.push(("mse", mse.clone().into_scalar::<f32>() as f64));
                    extra = extra + mse;
                }
                parts.insert(0, ("task", task_loss.clone().into_scalar::<f32>() as f64));
                task_loss + extra * d.lambda
            }
        };
        Ok(StepLoss { total, parts, examples: rows.len() })
    }

    fn evaluate(&mut self, module: &M, step: usize) -> Result<EvalPoint> {
        let mut per_task = serde_json::Map::new();
        let mut sum = 0.0;
        for (k, data) in self.dev.iter().enumerate() {
            let prompt = module.prompt_of(k).without_autodiff();
            let head = module.classifiers().get(k).map(|c| c.values());
            let (_, scores) = evaluate(
                self.backbone,
                self.heads,
                k,
                data,
                Some(&prompt),
                head.as_ref(),
                self.eval_batch_size,
                self.decoding,
                self.tokenizer,
            )?;
            sum += scores.primary();
            per_task.insert(data.task.name.to_string(), serde_json::to_value(&scores.0).unwrap_or_default());
        }
        Ok(EvalPoint { step, score: sum / self.dev.len().max(1) as f64, details: serde_json::Value::Object(per_task) })
    }
}
