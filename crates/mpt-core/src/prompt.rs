//! Trainable prompts: a plain soft prompt `[l, d]` and the multitask decomposition
//! `P_k = P* ∘ (U_k V_k)` with `P*` `[l, d]`, `U` `[T, l, r]`, `V` `[T, r, d]` (rank r; the
//! paper uses r = 1, i.e. `u_k v_kᵀ`). Tensor names follow PEFT (`prompt_embeddings`,
//! `prefix_task_cols`, `prefix_task_rows`) so the two interoperate.
//!
//! Either kind may carry one trained linear classification head per task (encoders only,
//! PEFT's SEQ_CLS prompt tuning trains the prompt and the classifier): `classifier.{k}.weight`
//! `[C_k, d]` and `classifier.{k}.bias` `[C_k]` for the k-th task of the artifact.

use std::collections::BTreeMap;

use burn::module::{Module, Param};
use burn::prelude::*;
use mpt_models::io::HostTensor;

use crate::error::{CoreError, Result};

/// A linear classification head over the pooled input: `logits = pooled · weightᵀ + bias`.
#[derive(Module, Debug)]
pub struct Classifier {
    /// `[C, d]`.
    pub weight: Param<Tensor<2>>,
    /// `[C]`.
    pub bias: Param<Tensor<1>>,
}

impl Classifier {
    /// Wraps `[C, d]` and `[C]` values as trainable parameters.
    pub fn new(weight: Tensor<2>, bias: Tensor<1>) -> Self {
        Self { weight: Param::from_tensor(weight), bias: Param::from_tensor(bias) }
    }

    /// `(weight [C, d], bias [C])` without autodiff.
    pub fn values(&self) -> (Tensor<2>, Tensor<1>) {
        (self.weight.val().without_autodiff(), self.bias.val().without_autodiff())
    }

    /// C·d + C.
    pub fn num_tunable(&self) -> usize {
        self.weight.val().shape().num_elements() + self.bias.val().shape().num_elements()
    }
}

/// The stored names of task `k`'s head.
pub fn classifier_names(k: usize) -> (String, String) {
    (format!("classifier.{k}.weight"), format!("classifier.{k}.bias"))
}

fn classifiers_to_host(classifiers: &[Classifier], out: &mut BTreeMap<String, HostTensor>) {
    for (k, c) in classifiers.iter().enumerate() {
        let (w, b) = classifier_names(k);
        let (weight, bias) = c.values();
        out.insert(w, HostTensor::from_float(weight));
        out.insert(b, HostTensor::from_float(bias));
    }
}

/// A plain soft prompt.
#[derive(Module, Debug)]
pub struct SoftPrompt {
    /// `[l, d]`.
    pub prompt_embeddings: Param<Tensor<2>>,
    /// Trained heads, one per task (empty with the frozen verbalizer or T5).
    pub classifiers: Vec<Classifier>,
}

impl SoftPrompt {
    /// Wraps `[l, d]` values as a trainable parameter.
    pub fn new(values: Tensor<2>) -> Self {
        Self { prompt_embeddings: Param::from_tensor(values), classifiers: Vec::new() }
    }

    /// The same prompt with trained heads.
    pub fn with_classifiers(mut self, classifiers: Vec<Classifier>) -> Self {
        self.classifiers = classifiers;
        self
    }

    /// The same module with the prompt held fixed (no gradient reaches it); the heads still train.
    pub fn with_frozen_prompt(mut self) -> Self {
        self.prompt_embeddings = self.prompt_embeddings.set_require_grad(false);
        self
    }

    /// `[l, d]`.
    pub fn value(&self) -> Tensor<2> {
        self.prompt_embeddings.val()
    }

    /// Prompt length l.
    pub fn len(&self) -> usize {
        self.prompt_embeddings.val().dims()[0]
    }

    /// Whether l = 0 (never true for a valid prompt).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The same prompt for every row of a batch: `[B, l, d]`.
    pub fn batch(&self, batch: usize) -> Tensor<3> {
        let [l, d] = self.prompt_embeddings.val().dims();
        self.value().unsqueeze::<3>().expand([batch, l, d])
    }

    /// Number of tunable scalars: l·d (+ the heads').
    pub fn num_tunable(&self) -> usize {
        self.prompt_embeddings.val().shape().num_elements()
            + self.classifiers.iter().map(Classifier::num_tunable).sum::<usize>()
    }

    /// Host copy under PEFT's name (and the heads').
    pub fn to_host(&self) -> BTreeMap<String, HostTensor> {
        let mut out = BTreeMap::from([(
            "prompt_embeddings".to_string(),
            HostTensor::from_float(self.value().without_autodiff()),
        )]);
        classifiers_to_host(&self.classifiers, &mut out);
        out
    }
}

/// The multitask prompt: one shared prompt and a rank-r factor pair per task.
#[derive(Module, Debug)]
pub struct MultitaskPrompt {
    /// Shared prompt P* `[l, d]`.
    pub prompt_embeddings: Param<Tensor<2>>,
    /// Task columns U `[T, l, r]`.
    pub prefix_task_cols: Param<Tensor<3>>,
    /// Task rows V `[T, r, d]`.
    pub prefix_task_rows: Param<Tensor<3>>,
    /// Trained heads, one per task (empty with the frozen verbalizer or T5).
    pub classifiers: Vec<Classifier>,
}

impl MultitaskPrompt {
    /// Assembles the prompt from its three tensors, checking their shapes agree.
    pub fn new(shared: Tensor<2>, cols: Tensor<3>, rows: Tensor<3>) -> Result<Self> {
        let [l, d] = shared.dims();
        let [t, lc, r] = cols.dims();
        let [tr, rr, dr] = rows.dims();
        if lc != l || tr != t || rr != r || dr != d {
            return Err(CoreError::Shape {
                what: "multitask prompt".into(),
                message: format!(
                    "prompt_embeddings {:?}, prefix_task_cols {:?}, prefix_task_rows {:?} do not fit [l,d], [T,l,r], [T,r,d]",
                    [l, d],
                    [t, lc, r],
                    [tr, rr, dr]
                ),
            });
        }
        Ok(Self {
            prompt_embeddings: Param::from_tensor(shared),
            prefix_task_cols: Param::from_tensor(cols),
            prefix_task_rows: Param::from_tensor(rows),
            classifiers: Vec::new(),
        })
    }

    /// The same prompt with trained heads.
    pub fn with_classifiers(mut self, classifiers: Vec<Classifier>) -> Self {
        self.classifiers = classifiers;
        self
    }

    /// The same module with P*, U and V held fixed (no gradient reaches them); the heads still
    /// train.
    pub fn with_frozen_prompt(mut self) -> Self {
        self.prompt_embeddings = self.prompt_embeddings.set_require_grad(false);
        self.prefix_task_cols = self.prefix_task_cols.set_require_grad(false);
        self.prefix_task_rows = self.prefix_task_rows.set_require_grad(false);
        self
    }

    /// Number of tasks T.
    pub fn num_tasks(&self) -> usize {
        self.prefix_task_cols.val().dims()[0]
    }

    /// Rank r.
    pub fn rank(&self) -> usize {
        self.prefix_task_cols.val().dims()[2]
    }

    /// Prompt length l.
    pub fn len(&self) -> usize {
        self.prompt_embeddings.val().dims()[0]
    }

    /// Whether l = 0.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Width d.
    pub fn dim(&self) -> usize {
        self.prompt_embeddings.val().dims()[1]
    }

    /// Per-row task prompts `P* ∘ (U_{t_i} V_{t_i})` for `task_ids` `[B]`: `[B, l, d]`
    /// (PEFT's `MultitaskPromptEmbedding.forward`).
    pub fn batch(&self, task_ids: &[usize]) -> Tensor<3> {
        let device = self.prompt_embeddings.val().device();
        let ids: Vec<i64> = task_ids.iter().map(|&t| t as i64).collect();
        let ids = Tensor::<1, Int>::from_data(TensorData::new(ids, [task_ids.len()]), &device);
        let cols = self.prefix_task_cols.val().select(0, ids.clone());
        let rows = self.prefix_task_rows.val().select(0, ids);
        let [b, l, _] = cols.dims();
        let d = self.dim();
        cols.matmul(rows) * self.prompt_embeddings.val().unsqueeze::<3>().expand([b, l, d])
    }

    /// The prompt of task `k` alone: `[l, d]`.
    pub fn task_prompt(&self, k: usize) -> Tensor<2> {
        let (l, d) = (self.len(), self.dim());
        self.batch(&[k]).reshape([l, d])
    }

    /// Tunable scalars: l·d + T·r·(l + d) (+ the heads').
    pub fn num_tunable(&self) -> usize {
        let (l, d, t, r) = (self.len(), self.dim(), self.num_tasks(), self.rank());
        l * d + t * r * (l + d) + self.classifiers.iter().map(Classifier::num_tunable).sum::<usize>()
    }

    /// Host copies under PEFT's names (and the heads').
    pub fn to_host(&self) -> BTreeMap<String, HostTensor> {
        let mut out = BTreeMap::from([
            ("prompt_embeddings".to_string(), HostTensor::from_float(self.prompt_embeddings.val().without_autodiff())),
            ("prefix_task_cols".to_string(), HostTensor::from_float(self.prefix_task_cols.val().without_autodiff())),
            ("prefix_task_rows".to_string(), HostTensor::from_float(self.prefix_task_rows.val().without_autodiff())),
        ]);
        classifiers_to_host(&self.classifiers, &mut out);
        out
    }
}

/// Either kind of trainable prompt, as stored in an artifact.
#[derive(Debug)]
pub enum PromptParams {
    /// A plain `[l, d]` prompt.
    Plain(SoftPrompt),
    /// The decomposed multitask prompt.
    Multitask(MultitaskPrompt),
}

impl PromptParams {
    /// Prompt length.
    pub fn len(&self) -> usize {
        match self {
            PromptParams::Plain(p) => p.len(),
            PromptParams::Multitask(p) => p.len(),
        }
    }

    /// Whether l = 0.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Host tensors under PEFT's names.
    pub fn to_host(&self) -> BTreeMap<String, HostTensor> {
        match self {
            PromptParams::Plain(p) => p.to_host(),
            PromptParams::Multitask(p) => p.to_host(),
        }
    }

    /// Tunable scalars.
    pub fn num_tunable(&self) -> usize {
        match self {
            PromptParams::Plain(p) => p.num_tunable(),
            PromptParams::Multitask(p) => p.num_tunable(),
        }
    }

    /// The prompt for task `k` as one `[l, d]` matrix (plain prompts ignore `k`).
    pub fn task_prompt(&self, k: usize) -> Tensor<2> {
        match self {
            PromptParams::Plain(p) => p.value(),
            PromptParams::Multitask(p) => p.task_prompt(k),
        }
    }

    /// Task `k`'s trained head, if the artifact has one.
    pub fn classifier(&self, k: usize) -> Option<&Classifier> {
        match self {
            PromptParams::Plain(p) => p.classifiers.get(k),
            PromptParams::Multitask(p) => p.classifiers.get(k),
        }
    }
}

/// A trainable prompt module that yields one prompt per task.
pub trait TaskPrompts: Module + Clone {
    /// Prompts for a batch whose row i belongs to task `tasks[i]`: `[B, l, d]`.
    fn prompts_for(&self, tasks: &[usize]) -> Tensor<3>;
    /// Task `k`'s prompt: `[l, d]`.
    fn prompt_of(&self, k: usize) -> Tensor<2>;
    /// Tunable scalars.
    fn tunable(&self) -> usize;
    /// Host tensors under PEFT names.
    fn host_tensors(&self) -> BTreeMap<String, HostTensor>;
    /// Trained heads, one per task (empty with a frozen head).
    fn classifiers(&self) -> &[Classifier];
}

impl TaskPrompts for SoftPrompt {
    fn prompts_for(&self, tasks: &[usize]) -> Tensor<3> {
        self.batch(tasks.len())
    }
    fn prompt_of(&self, _k: usize) -> Tensor<2> {
        self.value()
    }
    fn tunable(&self) -> usize {
        self.num_tunable()
    }
    fn host_tensors(&self) -> BTreeMap<String, HostTensor> {
        self.to_host()
    }
    fn classifiers(&self) -> &[Classifier] {
        &self.classifiers
    }
}

impl TaskPrompts for MultitaskPrompt {
    fn prompts_for(&self, tasks: &[usize]) -> Tensor<3> {
        self.batch(tasks)
    }
    fn prompt_of(&self, k: usize) -> Tensor<2> {
        self.task_prompt(k)
    }
    fn tunable(&self) -> usize {
        self.num_tunable()
    }
    fn host_tensors(&self) -> BTreeMap<String, HostTensor> {
        self.to_host()
    }
    fn classifiers(&self) -> &[Classifier] {
        &self.classifiers
    }
}
