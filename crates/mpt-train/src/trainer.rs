//! The training loop every stage shares.
//!
//! AdamW or Adafactor (burn-optim), linear warmup then linear decay to zero (as
//! transformers' `get_linear_schedule_with_warmup`), clipping by the global gradient norm
//! (as `torch.nn.utils.clip_grad_norm_`), evaluation every N steps, the best module by dev
//! score kept, early stopping after `patience` evaluations without improvement, and a
//! NaN/inf loss stops the stage with an error. Only the prompt module's parameters live on
//! the autodiff device, so nothing else receives gradients.

use std::time::Instant;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{AdafactorConfig, AdamWConfig, GradientsParams};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::Lengths;
use crate::error::{Result, TrainError};
use crate::eval::Decoding;

/// Optimizer choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// AdamW (β = 0.9, 0.999; ε = 1e-8).
    #[default]
    Adamw,
    /// Adafactor with an absolute learning rate (no relative step, no parameter scaling),
    /// as the paper uses for T5.
    Adafactor,
}

/// Settings of one training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Optimizer steps.
    pub max_steps: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Optimizer.
    pub optimizer: OptimizerKind,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Linear warmup steps (when absent: `warmup_ratio` of `max_steps`, rounded).
    pub warmup_steps: Option<usize>,
    /// Warm-up as a fraction of `max_steps` when `warmup_steps` is absent.
    pub warmup_ratio: f64,
    /// Global gradient-norm clip (none when absent).
    pub max_grad_norm: Option<f64>,
    /// Evaluate on dev every N steps (and after the last step).
    pub eval_every: usize,
    /// Stop after this many evaluations without a better dev score.
    pub patience: Option<usize>,
    /// Batch size for evaluation.
    pub eval_batch_size: usize,
    /// Evaluate on at most this many dev examples (a seeded subset).
    pub max_eval_examples: Option<usize>,
    /// Seed for batches and initialisation.
    pub seed: u64,
    /// Token limits.
    pub lengths: Lengths,
    /// T5 prediction mode.
    pub decoding: Decoding,
    /// Batch single-task training rows of similar length (less padding).
    pub length_bucketing: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            max_steps: 200,
            batch_size: 16,
            learning_rate: 0.1,
            optimizer: OptimizerKind::Adamw,
            weight_decay: 1e-5,
            warmup_steps: None,
            warmup_ratio: 0.1,
            max_grad_norm: Some(1.0),
            eval_every: 50,
            patience: None,
            eval_batch_size: 32,
            max_eval_examples: None,
            seed: 42,
            lengths: Lengths::default(),
            decoding: Decoding::Rank,
            length_bucketing: true,
        }
    }
}

impl TrainConfig {
    /// Rejects unusable values, naming the field under `prefix`.
    pub fn validate(&self, prefix: &str) -> Result<()> {
        let bad = |field: &str, message: &str| TrainError::Config {
            field: format!("{prefix}{field}"),
            message: message.into(),
        };
        if self.max_steps == 0 {
            return Err(bad("max_steps", "must be at least 1"));
        }
        if self.batch_size == 0 {
            return Err(bad("batch_size", "must be at least 1"));
        }
        if self.eval_batch_size == 0 {
            return Err(bad("eval_batch_size", "must be at least 1"));
        }
        if self.eval_every == 0 {
            return Err(bad("eval_every", "must be at least 1"));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(bad("learning_rate", "must be a positive number"));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(bad("weight_decay", "must be zero or positive"));
        }
        if self.max_grad_norm.is_some_and(|n| !(n.is_finite() && n > 0.0)) {
            return Err(bad("max_grad_norm", "must be a positive number"));
        }
        if self.warmup_steps.is_some_and(|w| w >= self.max_steps && w > 0) {
            return Err(bad("warmup_steps", "must be smaller than max_steps"));
        }
        if !(self.warmup_ratio.is_finite() && (0.0..1.0).contains(&self.warmup_ratio)) {
            return Err(bad("warmup_ratio", "must be in [0, 1)"));
        }
        if self.patience == Some(0) {
            return Err(bad("patience", "must be at least 1 (or absent)"));
        }
        self.lengths.validate(prefix)?;
        Ok(())
    }

    /// Warm-up steps in effect.
    pub fn warmup(&self) -> usize {
        self.warmup_steps.unwrap_or_else(|| (self.warmup_ratio * self.max_steps as f64).round() as usize)
    }

    /// Learning rate at 0-based step `s` (transformers' linear schedule with warmup).
    pub fn lr_at(&self, s: usize) -> f64 {
        let (s, w, n) = (s as f64, self.warmup() as f64, self.max_steps as f64);
        let factor = if s < w { s / w.max(1.0) } else { ((n - s) / (n - w).max(1.0)).max(0.0) };
        self.learning_rate * factor
    }
}

/// One step's loss: the tracked scalar to differentiate and named parts to log.
pub struct StepLoss {
    /// `[1]`, tracked.
    pub total: Tensor<1>,
    /// Named components (host values), e.g. task / kl / mse.
    pub parts: Vec<(&'static str, f64)>,
    /// Examples in the step.
    pub examples: usize,
}

/// A dev evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalPoint {
    /// Step.
    pub step: usize,
    /// Score used for selection (higher is better).
    pub score: f64,
    /// Everything measured (e.g. per task metrics), for reports.
    pub details: serde_json::Value,
}

/// What a stage asks of the loop.
pub trait Objective<M> {
    /// The loss of step `step` (0-based).
    fn loss(&mut self, module: &M, step: usize) -> Result<StepLoss>;
    /// Dev evaluation of `module` (its parameters used without autodiff).
    fn evaluate(&mut self, module: &M, step: usize) -> Result<EvalPoint>;
}

/// Progress reporting; the CLI draws bars, libraries and tests stay silent.
pub trait Progress {
    /// A run of `total` steps starts.
    fn begin(&self, _stage: &str, _total: usize) {}
    /// A step finished.
    fn step(&self, _step: usize, _loss: f64, _examples_per_sec: f64) {}
    /// A dev evaluation finished.
    fn eval(&self, _point: &EvalPoint, _best: f64) {}
    /// The run ended.
    fn end(&self) {}
}

/// A [`Progress`] that reports nothing.
pub struct Silent;
impl Progress for Silent {}

/// Loss and evaluation curves.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// `(step, loss)` per step.
    pub losses: Vec<(usize, f64)>,
    /// Dev evaluations.
    pub evals: Vec<EvalPoint>,
}

/// The result of a run.
#[derive(Debug)]
pub struct TrainOutcome<M> {
    /// The module with the best dev score.
    pub best: M,
    /// Its evaluation.
    pub best_eval: EvalPoint,
    /// Curves.
    pub history: History,
    /// Steps run.
    pub steps: usize,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// Wall time.
    pub seconds: f64,
}

struct GradNorm<'a> {
    grads: &'a GradientsParams,
    sum_sq: f64,
}

impl ModuleVisitor for GradNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            self.sum_sq += g.square().sum().into_scalar::<f32>() as f64;
        }
    }
}

struct ScaleGrads<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl ModuleVisitor for ScaleGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            self.grads.register(param.id, g * self.factor);
        }
    }
}

/// Clips `grads` of `module` to a global L2 norm of `max_norm`; returns the norm before.
pub fn clip_global_norm<M: Module>(module: &M, grads: &mut GradientsParams, max_norm: f64) -> f64 {
    let mut norm = GradNorm { grads, sum_sq: 0.0 };
    module.visit(&mut norm);
    let total = norm.sum_sq.sqrt();
    if total > max_norm {
        let mut scale = ScaleGrads { grads, factor: max_norm / (total + 1e-6) };
        module.visit(&mut scale);
    }
    total
}

/// Trains `module` (on an autodiff device) for `objective`.
pub fn train<M: Module + Clone>(
    mut module: M,
    objective: &mut impl Objective<M>,
    config: &TrainConfig,
    stage: &str,
    progress: &dyn Progress,
) -> Result<TrainOutcome<M>> {
    config.validate("")?;
    let mut optimizer = match config.optimizer {
        OptimizerKind::Adamw => {
            AdamWConfig::new().with_epsilon(1e-8).with_weight_decay(config.weight_decay as f32).init()
        }
        OptimizerKind::Adafactor => AdafactorConfig::new()
            .with_relative_step(false)
            .with_scale_parameter(false)
            .with_weight_decay(config.weight_decay as f32)
            .init(),
    };
    let started = Instant::now();
    let mut history = History::default();
    let mut best: Option<(M, EvalPoint)> = None;
    let mut since_best = 0usize;
    let mut stopped_early = false;
    let mut steps = 0;
    progress.begin(stage, config.max_steps);
    for step in 0..config.max_steps {
        let t0 = Instant::now();
        let loss = objective.loss(&module, step)?;
        let value = loss.total.clone().into_scalar::<f32>();
        if !value.is_finite() {
            progress.end();
            return Err(TrainError::NonFinite { stage: stage.into(), step, value });
        }
        let grads = loss.total.backward();
        let mut grads = GradientsParams::from_grads(grads, &module);
        if let Some(max_norm) = config.max_grad_norm {
            clip_global_norm(&module, &mut grads, max_norm);
        }
        module = optimizer.step(config.lr_at(step), module, grads);
        steps = step + 1;
        history.losses.push((steps, value as f64));
        let rate = loss.examples as f64 / t0.elapsed().as_secs_f64().max(1e-9);
        progress.step(steps, value as f64, rate);
        tracing::debug!(stage, step = steps, loss = value, parts = ?loss.parts, "step");
        if steps % config.eval_every == 0 || steps == config.max_steps {
            let point = objective.evaluate(&module, steps)?;
            let improved = best.as_ref().is_none_or(|(_, b)| point.score > b.score);
            progress
                .eval(&point, if improved { point.score } else { best.as_ref().map_or(point.score, |(_, b)| b.score) });
            tracing::info!(stage, step = steps, score = point.score, improved, "eval");
            history.evals.push(point.clone());
            if improved {
                best = Some((module.clone(), point));
                since_best = 0;
            } else {
                since_best += 1;
                if config.patience.is_some_and(|p| since_best >= p) {
                    stopped_early = true;
                    break;
                }
            }
        }
    }
    progress.end();
    let (best, best_eval) = best.expect("the last step always evaluates");
    Ok(TrainOutcome { best, best_eval, history, steps, stopped_early, seconds: started.elapsed().as_secs_f64() })
}
