//! The static task registry: one [`TaskSpec`] per task, declaring its files, readers, split
//! recipe, text-to-text template, encoder segments, label strings and metrics.
//!
//! Templates are plain strings with `{field}` placeholders filled from the canonical fields a
//! reader produces (field values are whitespace-trimmed first). Every template, segment rule
//! and label list is listed verbatim in the table of [`TASKS`] below and in `SPLITS.md`.

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
// Label lists (class-index order).

const SENTIMENT: &[&str] = &["negative", "positive"];
const NLI3: &[&str] = &["entailment", "neutral", "contradiction"];
const NLI2: &[&str] = &["entailment", "not entailment"];
const PARAPHRASE: &[&str] = &["not equivalent", "equivalent"];
const ACCEPTABILITY: &[&str] = &["unacceptable", "acceptable"];
const BOOLEAN: &[&str] = &["false", "true"];
const CHOICE: &[&str] = &["choice1", "choice2"];
/// STS-B score buckets `"0.0"`, `"0.2"`, …, `"5.0"` (26 classes; bucket `i` = score `0.2 * i`).
pub const STSB_BUCKETS: &[&str] = &[
    "0.0", "0.2", "0.4", "0.6", "0.8", "1.0", "1.2", "1.4", "1.6", "1.8", "2.0", "2.2", "2.4", "2.6", "2.8", "3.0",
    "3.2", "3.4", "3.6", "3.8", "4.0", "4.2", "4.4", "4.6", "4.8", "5.0",
];

// Raw label sets as found in the files.
const RAW01: LabelKind = LabelKind::Raw(&["0", "1"]);
const RAW_NLI2: LabelKind = LabelKind::Raw(&["entailment", "not_entailment"]);
const RAW_NLI3: LabelKind = LabelKind::Raw(&["entailment", "neutral", "contradiction"]);
const RAW_BOOL: LabelKind = LabelKind::Raw(&["false", "true"]);

// Metric sets.
const ACC: &[Metric] = &[Metric::Accuracy];
const F1_ACC: &[Metric] = &[Metric::F1, Metric::Accuracy];
const MCC: &[Metric] = &[Metric::Matthews];
const CORR: &[Metric] = &[Metric::Pearson, Metric::Spearman];
const MF1_ACC: &[Metric] = &[Metric::MacroF1, Metric::Accuracy];
const F1A_EM: &[Metric] = &[Metric::F1a, Metric::Em];

// ---------------------------------------------------------------------------------------------
// Files.

const fn tsv(
    key: &'static str,
    path: &'static str,
    header: Option<&'static [&'static str]>,
    columns: usize,
    fields: &'static [(&'static str, usize)],
    label: usize,
    labels: LabelKind,
) -> SourceFile {
    SourceFile { key, path, reader: Reader::Tsv { header, columns, fields, label, skip_malformed: false }, labels }
}

const fn jsonl(
    key: &'static str,
    path: &'static str,
    fields: &'static [(&'static str, &'static str)],
    labels: LabelKind,
) -> SourceFile {
    SourceFile { key, path, reader: Reader::Jsonl { fields, label: "/label" }, labels }
}

const fn ppft(
    key: &'static str,
    path: &'static str,
    fields: &'static [(&'static str, &'static str)],
    labels: LabelKind,
) -> SourceFile {
    SourceFile { key, path, reader: Reader::JsonObject { fields, label: "/label" }, labels }
}

const H_SST2: &[&str] = &["sentence", "label"];
const F_SENTENCE0: &[(&str, usize)] = &[("sentence", 0)];
const SST2_TRAIN: SourceFile = tsv("train", "sst-2/train.tsv", Some(H_SST2), 2, F_SENTENCE0, 1, RAW01);
const SST2_DEV: SourceFile = tsv("dev", "sst-2/dev.tsv", Some(H_SST2), 2, F_SENTENCE0, 1, RAW01);

const F_COLA: &[(&str, usize)] = &[("sentence", 3)];
const COLA_TRAIN: SourceFile = tsv("train", "cola/train.tsv", None, 4, F_COLA, 1, RAW01);
const COLA_DEV: SourceFile = tsv("dev", "cola/dev.tsv", None, 4, F_COLA, 1, RAW01);

const H_MRPC: &[&str] = &["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"];
const F_MRPC: &[(&str, usize)] = &[("sentence1", 3), ("sentence2", 4)];
const MRPC_TRAIN: SourceFile = tsv("train", "mrpc/train.tsv", Some(H_MRPC), 5, F_MRPC, 0, RAW01);
const MRPC_DEV: SourceFile = tsv("dev", "mrpc/dev.tsv", Some(H_MRPC), 5, F_MRPC, 0, RAW01);

const H_STSB: &[&str] =
    &["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2", "score"];
const F_STSB: &[(&str, usize)] = &[("sentence1", 7), ("sentence2", 8)];
const STSB_TRAIN: SourceFile = tsv("train", "sts-b/train.tsv", Some(H_STSB), 10, F_STSB, 9, LabelKind::Score);
const STSB_DEV: SourceFile = tsv("dev", "sts-b/dev.tsv", Some(H_STSB), 10, F_STSB, 9, LabelKind::Score);

const H_RTE: &[&str] = &["index", "sentence1", "sentence2", "label"];
const F_S1S2: &[(&str, usize)] = &[("sentence1", 1), ("sentence2", 2)];
const RTE_TRAIN: SourceFile = tsv("train", "rte/train.tsv", Some(H_RTE), 4, F_S1S2, 3, RAW_NLI2);
const RTE_DEV: SourceFile = tsv("dev", "rte/dev.tsv", Some(H_RTE), 4, F_S1S2, 3, RAW_NLI2);

const H_QNLI: &[&str] = &["index", "question", "sentence", "label"];
const F_QNLI: &[(&str, usize)] = &[("question", 1), ("sentence", 2)];
const QNLI_DEV: SourceFile = tsv("dev", "qnli/dev.tsv", Some(H_QNLI), 4, F_QNLI, 3, RAW_NLI2);

const H_PAWS: &[&str] = &["id", "sentence1", "sentence2", "label"];
const PAWS_DEV: SourceFile = tsv("dev", "paws/dev.tsv", Some(H_PAWS), 4, F_S1S2, 3, RAW01);
const PAWS_TEST: SourceFile = tsv("test", "paws/test.tsv", Some(H_PAWS), 4, F_S1S2, 3, RAW01);

const QQP_CUTOFF: SourceFile = SourceFile {
    key: "cutoff",
    path: "qqp/train-subset-cutoff/new_dev.tsv",
    reader: Reader::Tsv {
        header: None,
        columns: 6,
        fields: &[("question1", 3), ("question2", 4)],
        label: 5,
        skip_malformed: true,
    },
    labels: RAW01,
};

const SNLI_TEST: SourceFile = SourceFile {
    key: "test",
    path: "snli/test.tsv",
    reader: Reader::QuotedTsv {
        header: &["premise", "hypothesis", "label"],
        fields: &[("premise", 0), ("hypothesis", 1)],
        label: 2,
    },
    labels: LabelKind::Raw(&["0", "1", "2"]),
};

const J_PH: &[(&str, &str)] = &[("premise", "/premise"), ("hypothesis", "/hypothesis")];
const MNLI_DEV_MATCHED: SourceFile = jsonl("dev_matched", "mnli/dev_matched.jsonl", J_PH, RAW_NLI3);
const SNLI_DEV: SourceFile = jsonl("dev", "snli/dev.jsonl", J_PH, RAW_NLI3);
const SCITAIL_TEST: SourceFile = jsonl("test", "scitail/test.jsonl", J_PH, RAW_NLI2);

const P_PH: &[(&str, &str)] = &[("premise", "/text_a"), ("hypothesis", "/text_b")];
const P_QNLI: &[(&str, &str)] = &[("question", "/text_a"), ("sentence", "/text_b")];
const P_QQP: &[(&str, &str)] = &[("question1", "/text_a"), ("question2", "/text_b")];
const MNLI_PPFT_TRAIN: SourceFile = ppft("ppft_train", "mnli/train-subset-ppft/train.json", P_PH, RAW_NLI3);
const MNLI_PPFT_DEV: SourceFile = ppft("ppft_dev", "mnli/train-subset-ppft/dev.json", P_PH, RAW_NLI3);
const SNLI_PPFT_TRAIN: SourceFile = ppft("ppft_train", "snli/train-subset-ppft/train.json", P_PH, RAW_NLI3);
const SNLI_PPFT_DEV: SourceFile = ppft("ppft_dev", "snli/train-subset-ppft/dev.json", P_PH, RAW_NLI3);
const QNLI_PPFT_TRAIN: SourceFile = ppft("ppft_train", "qnli/train-subset-ppft/train.json", P_QNLI, RAW_NLI2);
const QNLI_PPFT_DEV: SourceFile = ppft("ppft_dev", "qnli/train-subset-ppft/dev.json", P_QNLI, RAW_NLI2);
const QQP_PPFT_TRAIN: SourceFile = ppft("ppft_train", "qqp/train-subset-ppft/train.json", P_QQP, RAW01);
const QQP_PPFT_DEV: SourceFile = ppft("ppft_dev", "qqp/train-subset-ppft/dev.json", P_QQP, RAW01);

const H_MNLI_KSHOT: &[&str] = &[
    "index",
    "promptID",
    "pairID",
    "genre",
    "sentence1_binary_parse",
    "sentence2_binary_parse",
    "sentence1_parse",
    "sentence2_parse",
    "sentence1",
    "sentence2",
    "label1",
    "gold_label",
];
const F_MNLI_KSHOT: &[(&str, usize)] = &[("premise", 8), ("hypothesis", 9)];
const H_QQP: &[&str] = &["id", "qid1", "qid2", "question1", "question2", "is_duplicate"];
const F_QQP: &[(&str, usize)] = &[("question1", 3), ("question2", 4)];
const MNLI_EXTRA: &[SourceFile] = &[
    tsv("kshot_train", "mnli/k-shot-16-13/train.tsv", Some(H_MNLI_KSHOT), 12, F_MNLI_KSHOT, 11, RAW_NLI3),
    tsv("kshot_dev", "mnli/k-shot-16-13/dev_matched.tsv", Some(H_MNLI_KSHOT), 12, F_MNLI_KSHOT, 11, RAW_NLI3),
];
const QNLI_EXTRA: &[SourceFile] = &[
    tsv("kshot_train", "qnli/k-shot-16-13/train.tsv", Some(H_QNLI), 4, F_QNLI, 3, RAW_NLI2),
    tsv("kshot_dev", "qnli/k-shot-16-13/dev.tsv", Some(H_QNLI), 4, F_QNLI, 3, RAW_NLI2),
];
const QQP_EXTRA: &[SourceFile] = &[
    tsv("kshot_train", "qqp/k-shot-16-13/train.tsv", Some(H_QQP), 6, F_QQP, 5, RAW01),
    tsv("kshot_dev", "qqp/k-shot-16-13/dev.tsv", Some(H_QQP), 6, F_QQP, 5, RAW01),
];
const SNLI_EXTRA: &[SourceFile] = &[SNLI_DEV];
const MRPC_EXTRA: &[SourceFile] = &[tsv("msr_test", "mrpc/msr_paraphrase_test.txt", Some(H_MRPC), 5, F_MRPC, 0, RAW01)];

const J_BOOLQ: &[(&str, &str)] = &[("question", "/question"), ("passage", "/passage")];
const BOOLQ_VAL: SourceFile = jsonl("val", "boolq/val.jsonl", J_BOOLQ, RAW_BOOL);
const BOOLQ_FEW_TRAIN: SourceFile = jsonl("fewglue_train", "boolq/fewglue-32/train.jsonl", J_BOOLQ, RAW_BOOL);
const BOOLQ_FEW_DEV32: SourceFile = jsonl("fewglue_dev32", "boolq/fewglue-32/dev32.jsonl", J_BOOLQ, RAW_BOOL);

const H_E2E: &[&str] = &["mr", "ref"];
const F_E2E: &[(&str, usize)] = &[("mr", 0)];
const fn e2e(key: &'static str, path: &'static str) -> SourceFile {
    SourceFile {
        key,
        path,
        reader: Reader::Delimited { delimiter: b',', header: H_E2E, fields: F_E2E, label: 1 },
        labels: LabelKind::Text,
    }
}
const E2E_TRAIN: SourceFile = e2e("train", "e2e/trainset.csv");
const E2E_DEV: SourceFile = e2e("dev", "e2e/devset.csv");
const E2E_TEST: SourceFile = e2e("test", "e2e/testset_w_refs.csv");
const GEN: &[Metric] = &[Metric::Bleu, Metric::Chrf, Metric::RougeL];
const fn webnlg(key: &'static str, path: &'static str) -> SourceFile {
    SourceFile { key, path, reader: Reader::WebNlg, labels: LabelKind::Text }
}
const WEBNLG_TRAIN: SourceFile = webnlg("train", "webnlg/train");
const WEBNLG_DEV: SourceFile = webnlg("dev", "webnlg/dev");
const WEBNLG_TEST: SourceFile = webnlg("test", "webnlg/test/testdata_with_lex.xml");

const CB_TRAIN: SourceFile = jsonl("train", "cb/train.jsonl", J_PH, RAW_NLI3);
const CB_VAL: SourceFile = jsonl("val", "cb/val.jsonl", J_PH, RAW_NLI3);

const J_COPA: &[(&str, &str)] =
    &[("premise", "/premise"), ("choice1", "/choice1"), ("choice2", "/choice2"), ("question", "/question")];
const COPA_TRAIN: SourceFile = jsonl("train", "copa/train.jsonl", J_COPA, RAW01);
const COPA_VAL: SourceFile = jsonl("val", "copa/val.jsonl", J_COPA, RAW01);

const J_WIC: &[(&str, &str)] = &[("word", "/word"), ("sentence1", "/sentence1"), ("sentence2", "/sentence2")];
const WIC_TRAIN: SourceFile = jsonl("train", "wic/train.jsonl", J_WIC, RAW_BOOL);
const WIC_VAL: SourceFile = jsonl("val", "wic/val.jsonl", J_WIC, RAW_BOOL);

const J_WSC: &[(&str, &str)] = &[("text", "/text"), ("span1", "/target/span1_text"), ("span2", "/target/span2_text")];
const WSC_TRAIN: SourceFile = jsonl("train", "wsc/train.jsonl", J_WSC, RAW_BOOL);
const WSC_VAL: SourceFile = jsonl("val", "wsc/val.jsonl", J_WSC, RAW_BOOL);

const MULTIRC_TRAIN: SourceFile =
    SourceFile { key: "train", path: "multirc/train.jsonl", reader: Reader::MultiRc, labels: RAW01 };
const MULTIRC_VAL: SourceFile =
    SourceFile { key: "val", path: "multirc/val.jsonl", reader: Reader::MultiRc, labels: RAW01 };

/// Official train + halved validation (ATTEMPT's small-dataset recipe).
const fn halve(train: &'static [SourceFile], val: SourceFile) -> SplitPlan {
    SplitPlan::Pool { train, pool: val, pool_to_train: 0 }
}

/// Size of the dev set held out of training data for large tasks.
pub const HOLDOUT: usize = 1000;

// ---------------------------------------------------------------------------------------------
// The table.

#[allow(clippy::too_many_arguments)]
const fn spec(
    name: &'static str,
    aliases: &'static [&'static str],
    folder: &'static str,
    role: Role,
    template: &'static str,
    segment_a: &'static str,
    segment_b: Option<&'static str>,
    labels: &'static [&'static str],
    metrics: &'static [Metric],
    plan: SplitPlan,
) -> TaskSpec {
    TaskSpec {
        name,
        aliases,
        folder,
        role,
        kind: TaskKind::Classification,
        template,
        segment_a,
        segment_b,
        labels,
        metrics,
        plan,
        grouped: false,
        substitute: None,
        extra_files: &[],
        scale: ScoreScale::STSB,
    }
}

/// All registered tasks: the 5 sources, the 12 classification targets, then E2E and WebNLG
/// (generation).
///
/// | task | T5 input template | segment A | segment B | labels |
/// |---|---|---|---|---|
/// | sst2 | `sst2 sentence: {sentence}` | `{sentence}` | – | negative, positive |
/// | mnli | `mnli premise: {premise} hypothesis: {hypothesis}` | `{premise}` | `{hypothesis}` | entailment, neutral, contradiction |
/// | qnli | `qnli question: {question} sentence: {sentence}` | `{question}` | `{sentence}` | entailment, not entailment |
/// | qqp | `qqp question1: {question1} question2: {question2}` | `{question1}` | `{question2}` | not equivalent, equivalent |
/// | snli | `snli premise: {premise} hypothesis: {hypothesis}` | `{premise}` | `{hypothesis}` | entailment, neutral, contradiction |
/// | rte | `rte sentence1: {sentence1} sentence2: {sentence2}` | `{sentence1}` | `{sentence2}` | entailment, not entailment |
/// | mrpc | `mrpc sentence1: {sentence1} sentence2: {sentence2}` | `{sentence1}` | `{sentence2}` | not equivalent, equivalent |
/// | cola | `cola sentence: {sentence}` | `{sentence}` | – | unacceptable, acceptable |
/// | stsb | `stsb sentence1: {sentence1} sentence2: {sentence2}` | `{sentence1}` | `{sentence2}` | 0.0, 0.2, …, 5.0 |
/// | cb | `cb premise: {premise} hypothesis: {hypothesis}` | `{premise}` | `{hypothesis}` | entailment, neutral, contradiction |
/// | boolq | `boolq question: {question} passage: {passage}` | `{question}` | `{passage}` | false, true |
/// | wic | `wic word: {word} sentence1: {sentence1} sentence2: {sentence2}` | `word: {word}. {sentence1}` | `{sentence2}` | false, true |
/// | wsc | `wsc text: {text} span1: {span1} span2: {span2}` | `{text}` | `Does {span2} refer to {span1}?` | false, true |
/// | copa | `copa premise: {premise} choice1: {choice1} choice2: {choice2} question: {question}` | `{premise} What was the {question}?` | `choice1: {choice1} choice2: {choice2}` | choice1, choice2 |
/// | multirc | `multirc question: {question} answer: {answer} paragraph: {paragraph}` | `{question} {answer}` | `{paragraph}` | false, true |
/// | scitail | `scitail premise: {premise} hypothesis: {hypothesis}` | `{premise}` | `{hypothesis}` | entailment, not entailment |
/// | paws | `paws sentence1: {sentence1} sentence2: {sentence2}` | `{sentence1}` | `{sentence2}` | not equivalent, equivalent |
/// | e2e | `e2e mr: {mr}` | `{mr}` | – | (generation: the `ref` text) |
/// | webnlg | `webnlg triples: {triples}` | `{triples}` | – | (generation: each `<lex>` text) |
pub static TASKS: &[TaskSpec] = &[
    // ---- sources
    TaskSpec {
        substitute: Some(
            "no official SST-2 held-out set with labels besides dev: train = train.tsv minus a seeded 1k dev (ATTEMPT recipe)",
        ),
        ..spec(
            "sst2",
            &["sst-2", "sst_2"],
            "sst-2",
            Role::Source,
            "sst2 sentence: {sentence}",
            "{sentence}",
            None,
            SENTIMENT,
            ACC,
            SplitPlan::HoldOut { pool: SST2_TRAIN, holdout: HOLDOUT, test: SST2_DEV },
        )
    },
    TaskSpec {
        substitute: Some(
            "official MNLI train is absent: train/dev = train-subset-ppft/{train,dev}.json (8,999 + 1,000 MNLI train rows); test = dev_matched.jsonl",
        ),
        extra_files: MNLI_EXTRA,
        ..spec(
            "mnli",
            &["multinli"],
            "mnli",
            Role::Source,
            "mnli premise: {premise} hypothesis: {hypothesis}",
            "{premise}",
            Some("{hypothesis}"),
            NLI3,
            ACC,
            SplitPlan::Given { train: MNLI_PPFT_TRAIN, dev: MNLI_PPFT_DEV, test: MNLI_DEV_MATCHED, dedup_test: false },
        )
    },
    TaskSpec {
        substitute: Some(
            "official QNLI train is absent: train/dev = train-subset-ppft/{train,dev}.json (8,999 + 1,000 QNLI train rows); test = official dev.tsv",
        ),
        extra_files: QNLI_EXTRA,
        ..spec(
            "qnli",
            &[],
            "qnli",
            Role::Source,
            "qnli question: {question} sentence: {sentence}",
            "{question}",
            Some("{sentence}"),
            NLI2,
            ACC,
            SplitPlan::Given { train: QNLI_PPFT_TRAIN, dev: QNLI_PPFT_DEV, test: QNLI_DEV, dedup_test: false },
        )
    },
    TaskSpec {
        substitute: Some(
            "official QQP train and dev are absent: train/dev = train-subset-ppft/{train,dev}.json (8,999 + 1,000 QQP train rows); test = train-subset-cutoff/new_dev.tsv (GLUE QQP train rows) minus its one malformed row and minus rows whose (question1, question2) occur in the ppft train or dev",
        ),
        extra_files: QQP_EXTRA,
        ..spec(
            "qqp",
            &[],
            "qqp",
            Role::Source,
            "qqp question1: {question1} question2: {question2}",
            "{question1}",
            Some("{question2}"),
            PARAPHRASE,
            F1_ACC,
            SplitPlan::Given { train: QQP_PPFT_TRAIN, dev: QQP_PPFT_DEV, test: QQP_CUTOFF, dedup_test: true },
        )
    },
    TaskSpec {
        substitute: Some(
            "official SNLI train is absent: train/dev = train-subset-ppft/{train,dev}.json (8,999 + 1,000 SNLI train rows); test = official test.tsv",
        ),
        extra_files: SNLI_EXTRA,
        ..spec(
            "snli",
            &[],
            "snli",
            Role::Source,
            "snli premise: {premise} hypothesis: {hypothesis}",
            "{premise}",
            Some("{hypothesis}"),
            NLI3,
            ACC,
            SplitPlan::Given { train: SNLI_PPFT_TRAIN, dev: SNLI_PPFT_DEV, test: SNLI_TEST, dedup_test: false },
        )
    },
    // ---- targets
    spec(
        "rte",
        &[],
        "rte",
        Role::Target,
        "rte sentence1: {sentence1} sentence2: {sentence2}",
        "{sentence1}",
        Some("{sentence2}"),
        NLI2,
        ACC,
        halve(&[RTE_TRAIN], RTE_DEV),
    ),
    TaskSpec {
        extra_files: MRPC_EXTRA,
        ..spec(
            "mrpc",
            &[],
            "mrpc",
            Role::Target,
            "mrpc sentence1: {sentence1} sentence2: {sentence2}",
            "{sentence1}",
            Some("{sentence2}"),
            PARAPHRASE,
            F1_ACC,
            halve(&[MRPC_TRAIN], MRPC_DEV),
        )
    },
    spec(
        "cola",
        &[],
        "cola",
        Role::Target,
        "cola sentence: {sentence}",
        "{sentence}",
        None,
        ACCEPTABILITY,
        MCC,
        halve(&[COLA_TRAIN], COLA_DEV),
    ),
    TaskSpec {
        kind: TaskKind::Regression,
        ..spec(
            "stsb",
            &["sts-b", "sts_b"],
            "sts-b",
            Role::Target,
            "stsb sentence1: {sentence1} sentence2: {sentence2}",
            "{sentence1}",
            Some("{sentence2}"),
            STSB_BUCKETS,
            CORR,
            halve(&[STSB_TRAIN], STSB_DEV),
        )
    },
    spec(
        "cb",
        &[],
        "cb",
        Role::Target,
        "cb premise: {premise} hypothesis: {hypothesis}",
        "{premise}",
        Some("{hypothesis}"),
        NLI3,
        MF1_ACC,
        halve(&[CB_TRAIN], CB_VAL),
    ),
    TaskSpec {
        substitute: Some(
            "official BoolQ train is absent: train = fewglue-32/{train,dev32}.jsonl (64 official train rows) + the first 1,000 rows of a seeded shuffle of val.jsonl; the remaining 2,270 val rows are halved into dev/test",
        ),
        ..spec(
            "boolq",
            &[],
            "boolq",
            Role::Target,
            "boolq question: {question} passage: {passage}",
            "{question}",
            Some("{passage}"),
            BOOLEAN,
            ACC,
            SplitPlan::Pool { train: &[BOOLQ_FEW_TRAIN, BOOLQ_FEW_DEV32], pool: BOOLQ_VAL, pool_to_train: 1000 },
        )
    },
    spec(
        "wic",
        &[],
        "wic",
        Role::Target,
        "wic word: {word} sentence1: {sentence1} sentence2: {sentence2}",
        "word: {word}. {sentence1}",
        Some("{sentence2}"),
        BOOLEAN,
        ACC,
        halve(&[WIC_TRAIN], WIC_VAL),
    ),
    spec(
        "wsc",
        &[],
        "wsc",
        Role::Target,
        "wsc text: {text} span1: {span1} span2: {span2}",
        "{text}",
        Some("Does {span2} refer to {span1}?"),
        BOOLEAN,
        ACC,
        halve(&[WSC_TRAIN], WSC_VAL),
    ),
    spec(
        "copa",
        &[],
        "copa",
        Role::Target,
        "copa premise: {premise} choice1: {choice1} choice2: {choice2} question: {question}",
        "{premise} What was the {question}?",
        Some("choice1: {choice1} choice2: {choice2}"),
        CHOICE,
        ACC,
        halve(&[COPA_TRAIN], COPA_VAL),
    ),
    TaskSpec {
        grouped: true,
        ..spec(
            "multirc",
            &[],
            "multirc",
            Role::Target,
            "multirc question: {question} answer: {answer} paragraph: {paragraph}",
            "{question} {answer}",
            Some("{paragraph}"),
            BOOLEAN,
            F1A_EM,
            halve(&[MULTIRC_TRAIN], MULTIRC_VAL),
        )
    },
    TaskSpec {
        substitute: Some(
            "only the official SciTail test set is present: a seeded shuffle of test.jsonl gives 1,000 train rows, the other 1,126 are halved into dev/test",
        ),
        ..spec(
            "scitail",
            &[],
            "scitail",
            Role::Target,
            "scitail premise: {premise} hypothesis: {hypothesis}",
            "{premise}",
            Some("{hypothesis}"),
            NLI2,
            ACC,
            SplitPlan::Pool { train: &[], pool: SCITAIL_TEST, pool_to_train: 1000 },
        )
    },
    TaskSpec {
        substitute: Some(
            "official PAWS train is absent: train = paws/dev.tsv minus a seeded 1k dev; test = paws/test.tsv",
        ),
        ..spec(
            "paws",
            &["paws-wiki", "paws_wiki"],
            "paws",
            Role::Target,
            "paws sentence1: {sentence1} sentence2: {sentence2}",
            "{sentence1}",
            Some("{sentence2}"),
            PARAPHRASE,
            ACC,
            SplitPlan::HoldOut { pool: PAWS_DEV, holdout: HOLDOUT, test: PAWS_TEST },
        )
    },
    // ---- generation targets (data-to-text; the paper's NLG targets)
    TaskSpec {
        kind: TaskKind::Generation,
        ..spec(
            "e2e",
            &["e2e_nlg"],
            "e2e",
            Role::Target,
            "e2e mr: {mr}",
            "{mr}",
            None,
            &[],
            GEN,
            SplitPlan::Given { train: E2E_TRAIN, dev: E2E_DEV, test: E2E_TEST, dedup_test: false },
        )
    },
    TaskSpec {
        kind: TaskKind::Generation,
        ..spec(
            "webnlg",
            &["webnlg2017", "web_nlg"],
            "webnlg",
            Role::Target,
            "webnlg triples: {triples}",
            "{triples}",
            None,
            &[],
            GEN,
            SplitPlan::Given { train: WEBNLG_TRAIN, dev: WEBNLG_DEV, test: WEBNLG_TEST, dedup_test: false },
        )
    },
];

/// Canonical names of the source tasks, in registry order.
pub const SOURCE_TASKS: &[&str] = &["sst2", "mnli", "qnli", "qqp", "snli"];
/// Canonical names of the target tasks, in registry order.
pub const TARGET_TASKS: &[&str] = &[
    "rte", "mrpc", "cola", "stsb", "cb", "boolq", "wic", "wsc", "copa", "multirc", "scitail", "paws", "e2e", "webnlg",
];

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
        assert_eq!(TASKS.len(), SOURCE_TASKS.len() + TARGET_TASKS.len());
        for name in SOURCE_TASKS {
            assert_eq!(lookup(name).map(|t| t.role).ok(), Some(Role::Source));
        }
        for name in TARGET_TASKS {
            assert_eq!(lookup(name).map(|t| t.role).ok(), Some(Role::Target));
        }
        for task in TASKS {
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

    /// Parity of `tasks/builtin.toml` with the Rust table it replaces, field by field.
    #[test]
    fn the_builtin_file_declares_the_table() {
        let parsed =
            crate::taskfile::builtin_tasks(crate::taskfile::BUILTIN_TASK_FILE).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed.iter().map(|t| t.name).collect::<Vec<_>>(), TASKS.iter().map(|t| t.name).collect::<Vec<_>>());
        for (got, want) in parsed.iter().zip(TASKS) {
            macro_rules! same {
                ($($field:ident),*) => {
                    $( assert_eq!(got.$field, want.$field, "{}.{}", want.name, stringify!($field)); )*
                };
            }
            same!(name, aliases, folder, role, kind, template, segment_a, segment_b, labels, metrics);
            same!(plan, grouped, substitute, extra_files, scale);
            assert_eq!(got, want);
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
