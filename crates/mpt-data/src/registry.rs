//! The task registry: one [`TaskSpec`] per task, declaring its files, readers, split recipe,
//! text-to-text template, encoder segments, label strings and metrics.
//!
//! The built-in tasks ([`TASKS`]) are declared in `tasks/builtin.toml`, embedded and parsed once
//! ([`crate::taskfile`] reads it as it reads a user's task file, whose tasks sit beside them).
//! Templates are plain strings with `{field}` placeholders filled from the canonical fields a
//! reader produces (field values are whitespace-trimmed first).

use std::sync::LazyLock;

use crate::example::Example;
use serde::{Deserialize, Serialize};

use crate::error::DataError;
use crate::metrics::Metric;

/// Whether a task is a multitask source (distilled into the shared prompt) or an adaptation target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Source task of the multitask distillation stage.
    Source,
    /// Target task the shared prompt is adapted to.
    Target,
}

/// Classification (label = class index) or regression (STS-B: label = score bucket index).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TaskKind {
    /// Class index into [`TaskSpec::labels`].
    Classification,
    /// Gold score in [`crate::Example::score`]; label = the score rounded to the nearest 0.2.
    Regression,
    /// Free text: the target is [`crate::Example::reference`]; scored by greedy decoding with
    /// the generation metrics (BLEU, chrF, ROUGE-L). Needs a backbone that generates (T5, a
    /// causal LM).
    Generation,
}

/// How the raw label of a file maps to a class index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelKind {
    /// Raw labels as they appear in the file, in class-index order. JSON booleans are compared as
    /// `"false"`/`"true"`, JSON integers as their decimal text.
    Raw(&'static [&'static str]),
    /// STS-B similarity score, a float in `0..=5`; class index = `round_ties_even(score * 5)`
    /// (T5's `tf.round(score * 5) / 5`), i.e. the bucket `"0.0"`, `"0.2"`, …, `"5.0"`.
    Score,
    /// Raw label -> class index, several raw values per class allowed (task files' `labels`).
    Map(&'static [(&'static str, usize)]),
    /// The raw value is a reference text ([`TaskKind::Generation`]); class index 0.
    Text,
}

/// How to read one file into canonical fields plus a raw label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reader {
    /// GLUE TSV: tab-separated, **no quoting** (a field may start with a literal `"`), LF or CRLF
    /// line ends, optional header (compared case-insensitively after stripping a UTF-8 BOM).
    Tsv {
        /// Expected header names, or `None` when the file has no header line.
        header: Option<&'static [&'static str]>,
        /// Number of tab-separated columns every row must have.
        columns: usize,
        /// `(canonical field, column index)` pairs.
        fields: &'static [(&'static str, usize)],
        /// Column index of the label.
        label: usize,
        /// Skip (and count in [`crate::LoadReport`]) rows with the wrong column count instead of
        /// failing; only for the QQP `train-subset-cutoff/new_dev.tsv` file.
        skip_malformed: bool,
    },
    /// Tab-separated with CSV quoting (pandas `to_csv(sep="\t")`): the SNLI test file.
    QuotedTsv {
        /// Expected header names.
        header: &'static [&'static str],
        /// `(canonical field, column index)` pairs.
        fields: &'static [(&'static str, usize)],
        /// Column index of the label.
        label: usize,
    },
    /// JSON Lines, one object per line; fields addressed by JSON pointer (`/target/span1_text`).
    Jsonl {
        /// `(canonical field, JSON pointer)` pairs; values must be strings.
        fields: &'static [(&'static str, &'static str)],
        /// JSON pointer of the label (string, boolean or integer).
        label: &'static str,
    },
    /// One JSON object mapping `"0"`, `"1"`, … to row objects (`train-subset-ppft/*.json`).
    JsonObject {
        /// `(canonical field, JSON pointer within the row)` pairs.
        fields: &'static [(&'static str, &'static str)],
        /// JSON pointer of the label within the row.
        label: &'static str,
    },
    /// CSV or TSV with CSV quoting and a header line (task files); fields by column index.
    Delimited {
        /// `b','` or `b'\t'`.
        delimiter: u8,
        /// The header names, as the file had them when the task was declared.
        header: &'static [&'static str],
        /// `(canonical field, column index)` pairs.
        fields: &'static [(&'static str, usize)],
        /// Column index of the label.
        label: usize,
    },
    /// WebNLG 2017 XML: a folder of `*.xml` benchmark files (read in path order, recursively)
    /// or one file; one example per `<lex>` of each `<entry>`, field `triples` = the entry's
    /// `<modifiedtripleset>` linearised as `subject | predicate | object` joined by ` && `,
    /// underscores read as spaces; the reference is the `<lex>` text.
    WebNlg,
    /// SuperGLUE MultiRC JSONL: one passage per line, one example per answer, fields
    /// `paragraph`, `question`, `answer`; group = the question.
    MultiRc,
}

impl Reader {
    /// One-line description of the format, used in missing-file messages.
    pub fn describe(&self) -> String {
        match self {
            Reader::Tsv { header, columns, .. } => match header {
                Some(names) => format!("GLUE TSV without quoting, header: {}", names.join(", ")),
                None => format!("GLUE TSV without quoting, no header, {columns} columns"),
            },
            Reader::QuotedTsv { header, .. } => {
                format!("TSV with CSV quoting, header: {}", header.join(", "))
            }
            Reader::Delimited { delimiter, header, .. } => {
                let kind = if *delimiter == b',' { "CSV" } else { "TSV with CSV quoting" };
                format!("{kind}, header: {}", header.join(", "))
            }
            Reader::Jsonl { fields, label } => format!(
                "JSON Lines with keys {}, label {label}",
                fields.iter().map(|(_, p)| *p).collect::<Vec<_>>().join(", ")
            ),
            Reader::JsonObject { fields, label } => format!(
                "one JSON object \"0\"..\"N-1\" -> {{{}, {}}}",
                fields.iter().map(|(_, p)| p.trim_start_matches('/')).collect::<Vec<_>>().join(", "),
                label.trim_start_matches('/')
            ),
            Reader::WebNlg => "WebNLG 2017 XML (benchmark/entries/entry: modifiedtripleset, lex)".to_string(),
            Reader::MultiRc => "SuperGLUE MultiRC JSON Lines (passage.text, passage.questions[].answers[])".to_string(),
        }
    }
}

/// One data file of a task, relative to the data root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceFile {
    /// Short name used in example ids (`<task>/<key>/<row>`), e.g. `train`, `val`, `ppft_dev`.
    pub key: &'static str,
    /// Path relative to the data root, e.g. `rte/train.tsv`.
    pub path: &'static str,
    /// How to parse it.
    pub reader: Reader,
    /// How its raw labels map to class indices.
    pub labels: LabelKind,
}

/// How a task's train/dev/test splits are built from its files (see `SPLITS.md`). All shuffles
/// are seeded permutations of row indices (of question groups for MultiRC); selected rows keep
/// their file order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitPlan {
    /// train = the `train` files (in order) followed by the first `pool_to_train` units of a
    /// seeded shuffle of `pool`; of the remaining `r` units the next `r / 2` (floor) are dev and
    /// the rest test. ATTEMPT's "small dataset" recipe is `pool_to_train = 0`, `pool = validation`.
    Pool {
        /// Files used whole for training.
        train: &'static [SourceFile],
        /// The labelled file that is shuffled and divided.
        pool: SourceFile,
        /// Units of the pool moved into train before halving.
        pool_to_train: usize,
    },
    /// dev = the first `holdout` rows of a seeded shuffle of `pool`, train = the other rows,
    /// test = `test` (ATTEMPT's "large dataset" recipe).
    HoldOut {
        /// The training file (or its substitute).
        pool: SourceFile,
        /// Number of rows held out as dev.
        holdout: usize,
        /// The official labelled evaluation file.
        test: SourceFile,
    },
    /// Three given files. With `dedup_test`, test rows whose `(text_a, text_b)` also occur in
    /// train or dev are removed (counted in [`crate::LoadReport::removed_overlap`]).
    Given {
        /// Training file.
        train: SourceFile,
        /// Dev file (the held-out 1k of train).
        dev: SourceFile,
        /// Test file.
        test: SourceFile,
        /// Remove test rows that also occur in train or dev.
        dedup_test: bool,
    },
}

/// The score range and bucket width of a regression task: class `i` is the score
/// `lo + i * step`, a gold score falls in bucket `round_ties_even((score - lo) * (1 / step))`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScoreScale {
    /// Lowest score.
    pub lo: f64,
    /// Highest score.
    pub hi: f64,
    /// Bucket width.
    pub step: f64,
}

impl ScoreScale {
    /// STS-B: 0 to 5 in steps of 0.2 (T5's `tf.round(score * 5) / 5`; 26 buckets).
    pub const STSB: ScoreScale = ScoreScale { lo: 0.0, hi: 5.0, step: 0.2 };

    /// The bucket of `score` (in range).
    pub fn bucket(&self, score: f64) -> usize {
        ((score - self.lo) * (1.0 / self.step)).round_ties_even().max(0.0) as usize
    }

    /// The score bucket `index` stands for.
    pub fn value(&self, index: usize) -> f64 {
        self.lo + index as f64 * self.step
    }

    /// Number of buckets from `lo` to `hi`.
    pub fn buckets(&self) -> usize {
        self.bucket(self.hi) + 1
    }

    /// The few-shot stratum of `score`: one of 5 equal-width bins over the range (STS-B:
    /// `[0,1)`, …, `[4,5]`).
    pub fn bin(&self, score: f64) -> usize {
        (((score - self.lo).max(0.0) / ((self.hi - self.lo) / 5.0)).floor() as usize).min(4)
    }
}

/// Everything the pipeline needs to know about one task.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TaskSpec {
    /// Canonical lowercase name (also the T5 input prefix).
    pub name: &'static str,
    /// Other accepted spellings (lookup is case-insensitive).
    pub aliases: &'static [&'static str],
    /// Folder under the data root.
    pub folder: &'static str,
    /// Source or target task.
    pub role: Role,
    /// Classification or regression.
    pub kind: TaskKind,
    /// T5 text-to-text input template, e.g. `rte sentence1: {sentence1} sentence2: {sentence2}`.
    pub template: &'static str,
    /// Encoder segment A template (BERT-style sentence pair).
    pub segment_a: &'static str,
    /// Encoder segment B template, `None` for single-sentence tasks.
    pub segment_b: Option<&'static str>,
    /// Label strings in class-index order (T5 targets and verbalizer words).
    pub labels: &'static [&'static str],
    /// Metrics reported for the task; [`crate::Scores::primary`] is their mean.
    pub metrics: &'static [Metric],
    /// Split recipe.
    pub plan: SplitPlan,
    /// Examples come in groups that must not be split (MultiRC questions).
    pub grouped: bool,
    /// Note on substitute data, when the official files are not all available.
    pub substitute: Option<&'static str>,
    /// Further files of the task that the readers handle but the split recipe does not use
    /// (official SNLI dev, LM-BFF k-shot files, MRPC's labelled MSR test file). Optional: not
    /// required by [`crate::DataRoot::check_task`]; read them with [`crate::read_source`].
    pub extra_files: &'static [SourceFile],
    /// Regression tasks: the score range and buckets ([`ScoreScale::STSB`] elsewhere, unused).
    pub scale: ScoreScale,
}

impl TaskSpec {
    /// Number of classes (26 buckets for STS-B).
    pub fn num_classes(&self) -> usize {
        self.labels.len()
    }

    /// Every file the task reads, in plan order, without duplicates.
    pub fn files(&self) -> Vec<SourceFile> {
        let mut out: Vec<SourceFile> = Vec::new();
        let mut push = |f: &SourceFile| {
            if !out.iter().any(|g| g.path == f.path) {
                out.push(*f);
            }
        };
        match &self.plan {
            SplitPlan::Pool { train, pool, .. } => {
                train.iter().for_each(&mut push);
                push(pool);
            }
            SplitPlan::HoldOut { pool, test, .. } => {
                push(pool);
                push(test);
            }
            SplitPlan::Given { train, dev, test, .. } => {
                push(train);
                push(dev);
                push(test);
            }
        }
        out
    }

    /// Describes the expected layout, e.g. `<root>/rte/train.tsv (GLUE TSV without quoting,
    /// header: index, sentence1, sentence2, label); <root>/rte/dev.tsv (...)`.
    pub fn layout(&self) -> String {
        self.files()
            .iter()
            .map(|f| format!("<root>/{} ({})", f.path, f.reader.describe()))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

// ---------------------------------------------------------------------------------------------
// The built-in tasks.

/// STS-B score buckets `"0.0"`, `"0.2"`, …, `"5.0"` (26 classes; bucket `i` = score `0.2 * i`).
pub const STSB_BUCKETS: &[&str] = &[
    "0.0", "0.2", "0.4", "0.6", "0.8", "1.0", "1.2", "1.4", "1.6", "1.8", "2.0", "2.2", "2.4", "2.6", "2.8", "3.0",
    "3.2", "3.4", "3.6", "3.8", "4.0", "4.2", "4.4", "4.6", "4.8", "5.0",
];

/// The most rows a task file's default split holds out of train as dev (a tenth of train, at
/// least 1); the built-in large tasks hold out as many.
pub const HOLDOUT: usize = 1000;

/// All built-in tasks: the 5 sources, the 12 classification targets, then E2E and WebNLG
/// (generation), as `tasks/builtin.toml` ([`crate::taskfile::BUILTIN_TASK_FILE`]) declares
/// them: files, readers, split recipe, templates, segments, labels, metrics. Parsed on first use.
pub static TASKS: LazyLock<Vec<TaskSpec>> = LazyLock::new(|| {
    crate::taskfile::builtin_tasks(crate::taskfile::BUILTIN_TASK_FILE)
        .unwrap_or_else(|e| panic!("the built-in task file does not parse (a bug: the tests parse it): {e}"))
});

/// Canonical names of the source tasks, in registry order.
pub static SOURCE_TASKS: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| tasks_with_role(Role::Source).map(|t| t.name).collect());
/// Canonical names of the target tasks, in registry order.
pub static TARGET_TASKS: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| tasks_with_role(Role::Target).map(|t| t.name).collect());

/// Looks a task up by canonical name or alias, case-insensitively (`"SST-2"`, `"sts_b"`, …).
///
/// Tasks declared in task files ([`crate::taskfile`]) are found too once registered.
pub fn lookup(name: &str) -> Result<&'static TaskSpec, DataError> {
    let wanted = name.trim().to_ascii_lowercase();
    TASKS
        .iter()
        .find(|t| t.name == wanted || t.aliases.contains(&wanted.as_str()))
        .or_else(|| crate::taskfile::registered(&wanted))
        .ok_or_else(|| {
            let mut known: Vec<&str> = TASKS.iter().map(|t| t.name).collect();
            let user = crate::taskfile::registered_names();
            let hint = if user.is_empty() { "; declare your own with --tasks FILE" } else { "" };
            known.extend(user);
            DataError::UnknownTask { name: name.to_string(), known: format!("{}{hint}", known.join(", ")) }
        })
}

/// All tasks with the given role, in registry order.
pub fn tasks_with_role(role: Role) -> impl Iterator<Item = &'static TaskSpec> {
    TASKS.iter().filter(move |t| t.role == role)
}

impl TaskSpec {
    /// The `{field}` placeholders its templates read (text-to-text input and encoder
    /// segments), in order of first use: the fields a prediction input must carry.
    pub fn fields(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = Vec::new();
        for template in [Some(self.template), Some(self.segment_a), self.segment_b].into_iter().flatten() {
            let mut rest = template;
            while let Some(open) = rest.find('{') {
                let after = &rest[open + 1..];
                let Some(close) = after.find('}') else { break };
                if !out.contains(&&after[..close]) {
                    out.push(&after[..close]);
                }
                rest = &after[close + 1..];
            }
        }
        out
    }

    /// An unlabelled example of this task (label 0) from named field values, rendered with
    /// its templates as the readers do (values whitespace-trimmed). `Err` names the first
    /// field the templates need and `fields` lacks.
    pub fn example_from_fields(&self, id: String, fields: &[(&str, String)]) -> Result<Example, String> {
        let trimmed: Vec<(&str, String)> = fields.iter().map(|(k, v)| (*k, v.trim().to_string())).collect();
        let fill = |template: &str| render(template, &trimmed);
        Ok(Example {
            id,
            input: fill(self.template)?,
            text_a: fill(self.segment_a)?,
            text_b: self.segment_b.map(fill).transpose()?,
            label: 0,
            score: None,
            group: None,
            reference: None,
        })
    }
}

/// Fills `{field}` placeholders of `template` from `fields`; `None` names the first
/// placeholder that has no value (or is unterminated).
pub(crate) fn render(template: &str, fields: &[(&str, String)]) -> Result<String, String> {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or_else(|| after.to_string())?;
        let name = &after[..close];
        let value = fields.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str()).ok_or_else(|| name.to_string())?;
        out.push_str(value);
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_accepts_aliases_and_case() {
        assert_eq!(lookup("SST-2").map(|t| t.name).ok(), Some("sst2"));
        assert_eq!(lookup("sst2").map(|t| t.name).ok(), Some("sst2"));
        assert_eq!(lookup("sts-b").map(|t| t.name).ok(), Some("stsb"));
        assert_eq!(lookup("STSB").map(|t| t.name).ok(), Some("stsb"));
        let err = lookup("winogrande").unwrap_err().to_string();
        assert!(err.contains("winogrande") && err.contains("rte"), "{err}");
    }

    #[test]
    fn registry_is_consistent() {
        assert_eq!(*SOURCE_TASKS, ["sst2", "mnli", "qnli", "qqp", "snli"]);
        assert_eq!(
            *TARGET_TASKS,
            [
                "rte", "mrpc", "cola", "stsb", "cb", "boolq", "wic", "wsc", "copa", "multirc", "scitail", "paws",
                "e2e", "webnlg"
            ]
        );
        assert_eq!(TASKS.len(), SOURCE_TASKS.len() + TARGET_TASKS.len());
        for name in SOURCE_TASKS.iter() {
            assert_eq!(lookup(name).map(|t| t.role).ok(), Some(Role::Source));
        }
        for name in TARGET_TASKS.iter() {
            assert_eq!(lookup(name).map(|t| t.role).ok(), Some(Role::Target));
        }
        assert_eq!(lookup("stsb").map(|t| t.labels).ok(), Some(STSB_BUCKETS));
        for task in TASKS.iter() {
            assert!(task.template.starts_with(&format!("{} ", task.name)), "{}", task.name);
            assert!(!task.metrics.is_empty());
            for file in task.files().iter().chain(task.extra_files) {
                assert!(file.path.starts_with(&format!("{}/", task.folder)), "{}", file.path);
                if let LabelKind::Raw(raw) = file.labels {
                    assert_eq!(raw.len(), task.num_classes(), "{} {}", task.name, file.path);
                }
            }
        }
        assert_eq!(STSB_BUCKETS.len(), 26);
        for (i, b) in STSB_BUCKETS.iter().enumerate() {
            assert_eq!(*b, format!("{:.1}", i as f64 * 0.2));
        }
    }

    #[test]
    fn render_fills_and_reports_missing() {
        let fields = [("a", "x".to_string()), ("b", "y".to_string())];
        assert_eq!(render("t a: {a} b: {b}.", &fields), Ok("t a: x b: y.".to_string()));
        assert_eq!(render("{c}", &fields), Err("c".to_string()));
    }

    #[test]
    fn layout_names_files_and_format() {
        let rte = lookup("rte").unwrap();
        let layout = rte.layout();
        assert!(
            layout.contains(
                "<root>/rte/train.tsv (GLUE TSV without quoting, header: index, sentence1, sentence2, label)"
            ),
            "{layout}"
        );
        assert!(layout.contains("<root>/rte/dev.tsv"), "{layout}");
    }
}
