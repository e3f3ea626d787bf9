//! The task-independent example type every reader produces.

use serde::{Deserialize, Serialize};

use crate::registry::TaskSpec;

/// One labelled example, already rendered for both model families.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// Stable id `<task>/<source file key>/<row>`: the row is the 0-based data-row index in
    /// that file (header excluded; for MultiRC the 0-based answer index in the file; for the
    /// `train-subset-ppft` JSON files the numeric key). It identifies the source row, so it is
    /// the same whichever split (and seed) the example lands in.
    pub id: String,
    /// T5 text-to-text input rendered from [`TaskSpec::template`].
    pub input: String,
    /// Encoder segment A rendered from [`TaskSpec::segment_a`].
    pub text_a: String,
    /// Encoder segment B rendered from [`TaskSpec::segment_b`] (`None` for single-sentence tasks).
    pub text_b: Option<String>,
    /// Class index into [`TaskSpec::labels`] (STS-B: the score bucket, `round(score * 5)`).
    pub label: usize,
    /// STS-B gold similarity in `0..=5`; `None` for other tasks.
    pub score: Option<f32>,
    /// MultiRC question id (`multirc/<file key>/q<question idx>`) for exact match; `None` elsewhere.
    pub group: Option<String>,
    /// Generation tasks: the reference text (the training target). Rows with the same `input`
    /// are one input with several references at evaluation. `None` for classification.
    pub reference: Option<String>,
}

impl Example {
    /// The label string (T5 target / verbalizer word) of this example, e.g. `"entailment"`;
    /// the empty string if `label` is out of range for `task` (an example of another task).
    pub fn target<'a>(&self, task: &'a TaskSpec) -> &'a str {
        task.labels.get(self.label).copied().unwrap_or("")
    }
}
