//! Predictions on new inputs: a [`Predictor`] holds a backbone, an artifact's prompt (and head)
//! for one task, and turns rows of named fields (the task's template fields) into a label with
//! a probability per label. `mpt predict` is a thin JSONL front end over it; a service embedding
//! mpt can call it directly.

use std::collections::BTreeMap;
use std::path::Path;

use burn::prelude::*;
use mpt_core::{Artifact, BackboneRef, InUse};
use mpt_models::Model;
use mpt_train::{HeadConfig, Heads, Lengths, LinearHead, TaskData, label_scores};
use serde::Serialize;

use crate::{EvalError, Result, task_prompt};

/// One prediction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    /// The predicted label string (a generation task: the generated text).
    pub prediction: String,
    /// Its class index (0 for a generation task).
    pub index: usize,
    /// Probability of every label (softmax over the label scores); empty for a generation task.
    pub scores: BTreeMap<String, f64>,
}

/// An artifact ready to predict one task on `model`.
pub struct Predictor<'m> {
    model: &'m Model,
    task: &'static mpt_data::TaskSpec,
    prompt: Tensor<2>,
    head: Option<LinearHead>,
    head_config: HeadConfig,
    lengths: Lengths,
    batch_size: usize,
    device: Device,
}

impl<'m> Predictor<'m> {
    /// Loads `artifact_dir` for `task` (None: the artifact's only task) on `model`. A multitask
    /// artifact needs `task`; a plain prompt may be used on any task.
    pub fn new(
        model: &'m Model,
        artifact_dir: &Path,
        task: Option<&str>,
        head_config: HeadConfig,
        batch_size: usize,
        device: &Device,
    ) -> Result<Self> {
        let backbone_ref = BackboneRef::new(model.backbone.arch(), &model.fingerprint);
        let in_use = InUse { backbone: &backbone_ref, dim: model.backbone.dim() };
        let artifact = Artifact::load(artifact_dir, None, Some(in_use))?;
        let name = match (task, artifact.meta.tasks.as_slice()) {
            (Some(t), _) => t.to_string(),
            (None, [only]) => only.clone(),
            (None, tasks) => {
                return Err(EvalError::Config {
                    field: "task".into(),
                    message: format!(
                        "{} holds prompts for several tasks ({}); name one with --task",
                        artifact_dir.display(),
                        tasks.join(", ")
                    ),
                });
            }
        };
        let task = mpt_data::lookup(&name)?;
        let (prompt, head) = task_prompt(&artifact, task, device)?;
        model.require_tokenizer()?;
        if batch_size == 0 {
            return Err(EvalError::Config { field: "batch_size".into(), message: "must be at least 1".into() });
        }
        Ok(Self {
            model,
            task,
            prompt,
            head,
            head_config,
            lengths: Lengths::default(),
            batch_size,
            device: device.clone(),
        })
    }

    /// Sets the token limits (input, and the generated text's length for a generation task).
    pub fn with_lengths(mut self, lengths: Lengths) -> Self {
        self.lengths = lengths;
        self
    }

    /// The task predicted.
    pub fn task(&self) -> &'static mpt_data::TaskSpec {
        self.task
    }

    /// The fields an input row must have (the task's template placeholders).
    pub fn fields(&self) -> Vec<&'static str> {
        self.task.fields()
    }

    /// Predicts each row of named field values. `Err((row, field))`-style problems (a missing
    /// field) are reported as [`EvalError::Config`] naming the row's index and the field.
    pub fn predict(&self, rows: &[Vec<(String, String)>]) -> Result<Vec<Prediction>> {
        let mut examples = Vec::with_capacity(rows.len());
        for (i, fields) in rows.iter().enumerate() {
            let named: Vec<(&str, String)> = fields.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
            let example =
                self.task.example_from_fields(format!("input/{i}"), &named).map_err(|field| EvalError::Config {
                    field: format!("row {i}: {field}"),
                    message: format!("missing; task {} reads the fields {}", self.task.name, self.fields().join(", ")),
                })?;
            examples.push(example);
        }
        let tokenizer = self.model.require_tokenizer()?;
        let backbone = &*self.model.backbone;
        let data = TaskData::encode(self.task, examples, tokenizer, backbone.arch(), self.lengths)?;
        if self.task.kind == mpt_data::TaskKind::Generation {
            // Greedy, up to the target limit; one text per distinct input, copied to its rows.
            let texts = mpt_train::eval::generate(
                backbone,
                &data,
                Some(&self.prompt),
                self.batch_size,
                self.lengths.max_target,
                tokenizer,
                &self.device,
            )?;
            let mut out = vec![String::new(); data.len()];
            for ((rows, _), text) in mpt_data::metrics::generation_inputs(&data.examples).into_iter().zip(texts) {
                for i in rows {
                    out[i] = text.clone();
                }
            }
            return Ok(out
                .into_iter()
                .map(|prediction| Prediction { prediction, index: 0, scores: BTreeMap::new() })
                .collect());
        }
        let heads = Heads::new(backbone, tokenizer, &[&data], self.head_config, &self.device)?;
        let scores = label_scores(backbone, &heads, 0, &data, Some(&self.prompt), self.head.as_ref(), self.batch_size)?;
        Ok(scores.iter().map(|row| self.prediction(row)).collect())
    }

    fn prediction(&self, row: &[f32]) -> Prediction {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let exp: Vec<f64> = row.iter().map(|&v| (v as f64 - max).exp()).collect();
        let total: f64 = exp.iter().sum();
        let index = (0..row.len()).fold(0, |best, i| if row[i] > row[best] { i } else { best });
        Prediction {
            prediction: self.task.labels.get(index).map_or_else(String::new, |l| l.to_string()),
            index,
            scores: self.task.labels.iter().zip(&exp).map(|(l, e)| (l.to_string(), e / total)).collect(),
        }
    }
}
