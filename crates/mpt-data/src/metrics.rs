//! Evaluation metrics with scikit-learn / SciPy semantics, as fractions in `[0, 1]`
//! (correlations in `[-1, 1]`).
//!
//! Conventions: arguments are `(gold, predicted)` like sklearn's `(y_true, y_pred)`. Where
//! sklearn/SciPy would divide by zero the result is `0.0` (sklearn's `zero_division` behaviour
//! for F1 and MCC; SciPy returns NaN for a constant input to `pearsonr`/`spearmanr`, which is
//! reported as `0.0` here so a constant predictor cannot poison averages). Empty inputs give
//! `0.0`. Agreement with sklearn 1.9 / SciPy 1.17 is checked to 1e-9 by
//! `tests/metrics_reference.rs` against `tests/fixtures/metrics_reference.json`.
//!
//! A prediction may be [`NO_LABEL`] (a generated string that is none of the task's labels); it is
//! scored as sklearn scores `-1` in `y_pred`: never right, never a positive of a real class, its
//! own column in macro F1 and MCC. Correlations read it as the value `-1.0` (ATTEMPT's
//! `string_to_float` default for STS-B).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::DataError;
use crate::example::Example;
use crate::registry::{TaskKind, TaskSpec};

/// The prediction for an example whose generated output is no label of the task.
pub const NO_LABEL: usize = usize::MAX;

/// A metric a task reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Fraction of exact label matches (`"accuracy"`).
    Accuracy,
    /// Binary F1 of class 1 (`"f1"`).
    F1,
    /// Matthews correlation coefficient (`"matthews"`).
    Matthews,
    /// Pearson correlation of the bucket value (STS-B: `0.2 * index`) with the gold score (`"pearson"`).
    Pearson,
    /// Spearman rank correlation, average ranks for ties (`"spearman"`).
    Spearman,
    /// Unweighted mean of per-class F1 over the labels present in gold or predictions (`"macro_f1"`).
    MacroF1,
    /// MultiRC F1 over all answers, class 1 positive (`"f1a"`).
    F1a,
    /// MultiRC exact match: fraction of questions whose answers are all right (`"em"`).
    Em,
    /// Corpus BLEU as sacreBLEU's default, as a fraction (`"bleu"`; generation tasks).
    Bleu,
    /// Corpus chrF2 as sacreBLEU's default, as a fraction (`"chrf"`; generation tasks).
    Chrf,
    /// Mean ROUGE-L F-measure as Google's `rouge_score`, as a fraction (`"rouge_l"`).
    RougeL,
}

impl Metric {
    /// All metrics.
    pub const ALL: [Metric; 11] = [
        Metric::Accuracy,
        Metric::F1,
        Metric::Matthews,
        Metric::Pearson,
        Metric::Spearman,
        Metric::MacroF1,
        Metric::F1a,
        Metric::Em,
        Metric::Bleu,
        Metric::Chrf,
        Metric::RougeL,
    ];

    /// Whether it scores generated text (BLEU, chrF, ROUGE-L) rather than classes.
    pub fn is_generation(self) -> bool {
        matches!(self, Metric::Bleu | Metric::Chrf | Metric::RougeL)
    }

    /// The metric's name as used in score maps and config.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::F1 => "f1",
            Metric::Matthews => "matthews",
            Metric::Pearson => "pearson",
            Metric::Spearman => "spearman",
            Metric::MacroF1 => "macro_f1",
            Metric::F1a => "f1a",
            Metric::Em => "em",
            Metric::Bleu => "bleu",
            Metric::Chrf => "chrf",
            Metric::RougeL => "rouge_l",
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Metric {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        Metric::ALL.into_iter().find(|m| m.name() == wanted).ok_or_else(|| DataError::UnknownMetric {
            name: s.to_string(),
            expected: Metric::ALL.map(Metric::name).join(", "),
        })
    }
}

/// Metric name → value for one evaluation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Scores(pub BTreeMap<String, f64>);

impl Scores {
    /// The mean of all metrics (ATTEMPT's per-task score, e.g. (F1 + acc) / 2 for MRPC);
    /// `0.0` when empty.
    pub fn primary(&self) -> f64 {
        if self.0.is_empty() { 0.0 } else { self.0.values().sum::<f64>() / self.0.len() as f64 }
    }

    /// The value of `metric`, if it was computed.
    pub fn get(&self, metric: Metric) -> Option<f64> {
        self.0.get(metric.name()).copied()
    }
}

/// Fraction of positions where `predicted == gold` (sklearn `accuracy_score`).
pub fn accuracy(gold: &[usize], predicted: &[usize]) -> f64 {
    if gold.is_empty() {
        return 0.0;
    }
    let right = gold.iter().zip(predicted).filter(|(g, p)| g == p).count();
    right as f64 / gold.len() as f64
}

/// F1 of one class treated as positive: `2tp / (2tp + fp + fn)`, 0 when undefined.
fn f1_of(gold: &[usize], predicted: &[usize], positive: usize) -> f64 {
    let (mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize);
    for (&g, &p) in gold.iter().zip(predicted) {
        match (g == positive, p == positive) {
            (true, true) => tp += 1,
            (false, true) => fp += 1,
            (true, false) => fn_ += 1,
            (false, false) => {}
        }
    }
    let denominator = 2 * tp + fp + fn_;
    if denominator == 0 { 0.0 } else { 2.0 * tp as f64 / denominator as f64 }
}

/// Binary F1 with class 1 positive (sklearn `f1_score(average="binary")`, zero division → 0).
pub fn binary_f1(gold: &[usize], predicted: &[usize]) -> f64 {
    f1_of(gold, predicted, 1)
}

/// Macro F1 over the labels present in `gold` or `predicted` (sklearn
/// `f1_score(average="macro")` with `labels=None`, zero division → 0).
pub fn macro_f1(gold: &[usize], predicted: &[usize]) -> f64 {
    let labels: BTreeSet<usize> = gold.iter().chain(predicted).copied().collect();
    if labels.is_empty() {
        return 0.0;
    }
    labels.iter().map(|&l| f1_of(gold, predicted, l)).sum::<f64>() / labels.len() as f64
}

/// Matthews correlation coefficient, multiclass form (sklearn `matthews_corrcoef`); 0 when
/// the denominator vanishes (e.g. a constant predictor).
pub fn matthews_corrcoef(gold: &[usize], predicted: &[usize]) -> f64 {
    let labels = gold.iter().chain(predicted).filter(|&&x| x != NO_LABEL);
    let real = labels.max().map_or(0, |m| m + 1);
    // NO_LABEL gets the column after the real classes.
    let index = |x: usize| if x == NO_LABEL { real } else { x };
    let classes = real + usize::from(predicted.contains(&NO_LABEL) || gold.contains(&NO_LABEL));
    if classes == 0 {
        return 0.0;
    }
    let mut t = vec![0f64; classes];
    let mut p = vec![0f64; classes];
    let mut correct = 0f64;
    for (g, q) in gold.iter().zip(predicted).map(|(&g, &q)| (index(g), index(q))) {
        t[g] += 1.0;
        p[q] += 1.0;
        if g == q {
            correct += 1.0;
        }
    }
    let s = gold.len().min(predicted.len()) as f64;
    let tp: f64 = t.iter().zip(&p).map(|(a, b)| a * b).sum();
    let cov_ytyp = correct * s - tp;
    let cov_ypyp = s * s - p.iter().map(|x| x * x).sum::<f64>();
    let cov_ytyt = s * s - t.iter().map(|x| x * x).sum::<f64>();
    if cov_ypyp * cov_ytyt == 0.0 {
        return 0.0;
    }
    cov_ytyp / (cov_ytyt * cov_ypyp).sqrt()
}

/// Pearson correlation (SciPy `pearsonr` statistic); 0 for fewer than 2 points or a constant
/// input.
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len().min(y.len());
    if n < 2 {
        return 0.0;
    }
    let mean = |v: &[f64]| v[..n].iter().sum::<f64>() / n as f64;
    let (mx, my) = (mean(x), mean(y));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (dx, dy) = (x[i] - mx, y[i] - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx == 0.0 || syy == 0.0 {
        return 0.0;
    }
    (sxy / (sxx.sqrt() * syy.sqrt())).clamp(-1.0, 1.0)
}

/// 1-based ranks with ties given their average rank (SciPy `rankdata(method="average")`).
pub fn average_ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        // Positions start..end hold ranks start+1 ..= end; their mean:
        let rank = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = rank;
        }
        start = end;
    }
    ranks
}

/// Spearman rank correlation (SciPy `spearmanr` statistic: Pearson of average ranks); 0 for
/// fewer than 2 points or a constant input.
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len().min(y.len());
    pearson(&average_ranks(&x[..n]), &average_ranks(&y[..n]))
}

/// MultiRC exact match: groups (questions) in which every answer is predicted right, over the
/// number of groups.
pub fn exact_match(groups: &[&str], gold: &[usize], predicted: &[usize]) -> f64 {
    let mut all_right: HashMap<&str, bool> = HashMap::new();
    for ((group, g), p) in groups.iter().zip(gold).zip(predicted) {
        let entry = all_right.entry(group).or_insert(true);
        *entry &= g == p;
    }
    if all_right.is_empty() {
        return 0.0;
    }
    all_right.values().filter(|&&ok| ok).count() as f64 / all_right.len() as f64
}

/// Scores `predicted` class indices (STS-B: bucket indices) against `examples` with the task's
/// metrics. STS-B correlations compare the bucket value `0.2 * index` with the raw gold score.
///
/// A prediction may be [`NO_LABEL`] (see the module docs).
///
/// Errors: length mismatch, no examples, a prediction outside the task's classes, or an
/// example lacking its score (STS-B) or group (MultiRC).
pub fn evaluate(task: &TaskSpec, examples: &[Example], predicted: &[usize]) -> Result<Scores, DataError> {
    if examples.len() != predicted.len() {
        return Err(DataError::LengthMismatch {
            what: format!("predictions for task {}", task.name),
            expected: examples.len(),
            found: predicted.len(),
        });
    }
    if examples.is_empty() {
        return Err(DataError::InvalidArgument {
            name: "examples",
            value: "[]".to_string(),
            expected: format!("at least one example of task {}", task.name),
        });
    }
    let bad = |example: &Example, problem: String| DataError::BadExample {
        task: task.name.to_string(),
        id: example.id.clone(),
        problem,
    };
    for (example, &p) in examples.iter().zip(predicted) {
        if p >= task.num_classes() && p != NO_LABEL {
            return Err(bad(example, format!("predicted class {p} is outside the {} classes", task.num_classes())));
        }
    }
    let gold: Vec<usize> = examples.iter().map(|e| e.label).collect();
    let mut scores = BTreeMap::new();
    for &metric in task.metrics {
        let value = match metric {
            Metric::Accuracy => accuracy(&gold, predicted),
            Metric::F1 | Metric::F1a => binary_f1(&gold, predicted),
            Metric::MacroF1 => macro_f1(&gold, predicted),
            Metric::Matthews => matthews_corrcoef(&gold, predicted),
            Metric::Pearson | Metric::Spearman => {
                let gold_scores = examples
                    .iter()
                    .map(|e| match (task.kind, e.score) {
                        (_, Some(s)) => Ok(f64::from(s)),
                        (TaskKind::Classification | TaskKind::Generation, None) => Ok(e.label as f64),
                        (TaskKind::Regression, None) => {
                            Err(bad(e, "regression example without a gold score".to_string()))
                        }
                    })
                    .collect::<Result<Vec<f64>, _>>()?;
                let values: Vec<f64> =
                    predicted.iter().map(|&p| if p == NO_LABEL { -1.0 } else { task.scale.value(p) }).collect();
                if metric == Metric::Pearson { pearson(&values, &gold_scores) } else { spearman(&values, &gold_scores) }
            }
            Metric::Em => {
                let groups = examples
                    .iter()
                    .map(|e| e.group.as_deref().ok_or_else(|| bad(e, "example without a question group".to_string())))
                    .collect::<Result<Vec<&str>, _>>()?;
                exact_match(&groups, &gold, predicted)
            }
            Metric::Bleu | Metric::Chrf | Metric::RougeL => {
                return Err(DataError::InvalidArgument {
                    name: "metric",
                    value: metric.name().to_string(),
                    expected: format!(
                        "a classification metric for class predictions of task {} (generation metrics score text: evaluate_generation)",
                        task.name
                    ),
                });
            }
        };
        scores.insert(metric.name().to_string(), value);
    }
    Ok(Scores(scores))
}

/// The distinct inputs of generation examples in first-seen order, each with the indices of
/// its rows and their references: E2E has several reference rows per meaning representation.
pub fn generation_inputs(examples: &[Example]) -> Vec<(Vec<usize>, Vec<String>)> {
    let mut order: Vec<(Vec<usize>, Vec<String>)> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, e) in examples.iter().enumerate() {
        let slot = *index.entry(e.input.as_str()).or_insert_with(|| {
            order.push((Vec::new(), Vec::new()));
            order.len() - 1
        });
        order[slot].0.push(i);
        if let Some(r) = &e.reference {
            order[slot].1.push(r.clone());
        }
    }
    order
}

/// The generation metrics of `task` for `hypotheses`, one per distinct input of `examples` in
/// the order of [`generation_inputs`], against every reference of that input.
pub fn evaluate_generation(task: &TaskSpec, examples: &[Example], hypotheses: &[String]) -> Result<Scores, DataError> {
    let inputs = generation_inputs(examples);
    if inputs.len() != hypotheses.len() {
        return Err(DataError::LengthMismatch {
            what: format!("generated texts for the distinct inputs of task {}", task.name),
            expected: inputs.len(),
            found: hypotheses.len(),
        });
    }
    if inputs.is_empty() {
        return Err(DataError::InvalidArgument {
            name: "examples",
            value: "[]".to_string(),
            expected: format!("at least one example of task {}", task.name),
        });
    }
    if let Some((rows, _)) = inputs.iter().find(|(_, refs)| refs.is_empty()) {
        return Err(DataError::BadExample {
            task: task.name.to_string(),
            id: examples[rows[0]].id.clone(),
            problem: "a generation example without a reference text".to_string(),
        });
    }
    let references: Vec<Vec<String>> = inputs.into_iter().map(|(_, refs)| refs).collect();
    let mut scores = BTreeMap::new();
    for &metric in task.metrics {
        let value = match metric {
            Metric::Bleu => crate::genmetrics::corpus_bleu(hypotheses, &references)?.score / 100.0,
            Metric::Chrf => crate::genmetrics::corpus_chrf(hypotheses, &references)? / 100.0,
            Metric::RougeL => crate::genmetrics::corpus_rouge_l(hypotheses, &references)? / 100.0,
            other => {
                return Err(DataError::InvalidArgument {
                    name: "metric",
                    value: other.name().to_string(),
                    expected: format!("a generation metric (bleu, chrf, rouge_l) for task {}", task.name),
                });
            }
        };
        scores.insert(metric.name().to_string(), value);
    }
    Ok(Scores(scores))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::lookup;

    #[test]
    fn metric_names_round_trip() {
        for m in Metric::ALL {
            assert_eq!(m.name().parse::<Metric>().ok(), Some(m));
        }
        assert!("meteor".parse::<Metric>().is_err());
    }

    #[test]
    fn small_hand_checked_values() {
        assert_eq!(accuracy(&[0, 1, 1, 0], &[0, 1, 0, 0]), 0.75);
        assert!((binary_f1(&[0, 1, 1, 0], &[0, 1, 0, 0]) - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(binary_f1(&[0, 0], &[0, 0]), 0.0);
        assert_eq!(matthews_corrcoef(&[0, 1, 0, 1], &[0, 0, 0, 0]), 0.0);
        assert_eq!(matthews_corrcoef(&[0, 1, 0, 1], &[0, 1, 0, 1]), 1.0);
        assert_eq!(average_ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
        assert_eq!(pearson(&[1.0, 1.0], &[0.0, 2.0]), 0.0);
        assert_eq!(exact_match(&["a", "a", "b"], &[1, 0, 1], &[1, 0, 0]), 0.5);
    }

    fn ex(label: usize, score: Option<f32>, group: Option<&str>) -> Example {
        Example {
            id: "t/f/0".to_string(),
            input: String::new(),
            text_a: String::new(),
            text_b: None,
            label,
            score,
            group: group.map(str::to_string),
            reference: None,
        }
    }

    #[test]
    fn evaluate_uses_task_metrics_and_primary_mean() {
        let mrpc = lookup("mrpc").unwrap();
        let examples = vec![ex(1, None, None), ex(0, None, None), ex(1, None, None)];
        let scores = evaluate(mrpc, &examples, &[1, 1, 1]).unwrap();
        assert_eq!(scores.0.keys().collect::<Vec<_>>(), ["accuracy", "f1"]);
        assert!((scores.primary() - (0.8 + 2.0 / 3.0) / 2.0).abs() < 1e-12);

        let stsb = lookup("stsb").unwrap();
        let examples = vec![ex(0, Some(0.1), None), ex(10, Some(2.0), None), ex(25, Some(5.0), None)];
        let scores = evaluate(stsb, &examples, &[0, 10, 25]).unwrap();
        assert!((scores.get(Metric::Spearman).unwrap() - 1.0).abs() < 1e-12);
        assert!(scores.get(Metric::Pearson).unwrap() > 0.99);

        let multirc = lookup("multirc").unwrap();
        let examples = vec![ex(1, None, Some("q1")), ex(0, None, Some("q1")), ex(1, None, Some("q2"))];
        let scores = evaluate(multirc, &examples, &[1, 0, 0]).unwrap();
        assert_eq!(scores.get(Metric::Em), Some(0.5));
        assert!((scores.get(Metric::F1a).unwrap() - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn evaluate_scores_no_label_predictions_as_sklearn_scores_minus_one() {
        // Gold 0 predicted NO_LABEL: wrong, but no false positive of class 1.
        let mrpc = lookup("mrpc").unwrap();
        let examples = vec![ex(1, None, None), ex(0, None, None), ex(1, None, None)];
        let scores = evaluate(mrpc, &examples, &[1, NO_LABEL, NO_LABEL]).unwrap();
        assert!((scores.get(Metric::Accuracy).unwrap() - 1.0 / 3.0).abs() < 1e-12);
        assert!((scores.get(Metric::F1).unwrap() - 2.0 / 3.0).abs() < 1e-12);
        // STS-B: NO_LABEL is the value -1.0, below every bucket.
        let stsb = lookup("stsb").unwrap();
        let examples = vec![ex(0, Some(0.1), None), ex(10, Some(2.0), None), ex(25, Some(5.0), None)];
        let scores = evaluate(stsb, &examples, &[NO_LABEL, 10, 25]).unwrap();
        assert!((scores.get(Metric::Spearman).unwrap() - 1.0).abs() < 1e-12);
        // CoLA's MCC gives NO_LABEL its own column instead of failing on the index.
        let cola = lookup("cola").unwrap();
        let examples = vec![ex(1, None, None), ex(0, None, None), ex(1, None, None), ex(0, None, None)];
        let mcc = evaluate(cola, &examples, &[1, 0, NO_LABEL, 0]).unwrap().get(Metric::Matthews).unwrap();
        assert!(mcc > 0.0 && mcc < 1.0, "{mcc}");
    }

    #[test]
    fn evaluate_rejects_bad_input() {
        let rte = lookup("rte").unwrap();
        let examples = vec![ex(1, None, None)];
        assert!(matches!(evaluate(rte, &examples, &[]), Err(DataError::LengthMismatch { .. })));
        let msg = evaluate(rte, &examples, &[2]).unwrap_err().to_string();
        assert!(msg.contains("predicted class 2"), "{msg}");
        assert!(evaluate(rte, &[], &[]).is_err());
        let multirc = lookup("multirc").unwrap();
        assert!(evaluate(multirc, &examples, &[1]).is_err());
    }
}
