//! The crate's single error type.

use std::path::PathBuf;

/// Every failure of `mpt-data`, with enough structured context (file, line, field, what was
/// expected) to fix the input without a debugger.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file a task needs is absent; `layout` says what the task expects under the data root.
    #[error("missing file {}: task {task} expects {layout}", path.display())]
    MissingFile {
        /// The missing file.
        path: PathBuf,
        /// Canonical task name.
        task: String,
        /// Human-readable description of every file the task expects and its format.
        layout: String,
    },
    /// An I/O error while reading a file.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file being read.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The CSV/TSV parser failed (e.g. invalid UTF-8 or unbalanced quotes).
    #[error("{}:{line}: cannot parse TSV row: {source}", path.display())]
    Csv {
        /// The file being read.
        path: PathBuf,
        /// 1-based line number (0 when unknown).
        line: u64,
        /// The underlying error.
        #[source]
        source: csv::Error,
    },
    /// A line (JSONL) or file (single-object JSON) is not valid JSON.
    #[error("{}:{line}: invalid JSON: {source}", path.display())]
    Json {
        /// The file being read.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// A row is present but a field is missing or has the wrong shape.
    #[error("{}:{line}: field `{field}`: expected {expected}, found {found}", path.display())]
    Malformed {
        /// The file being read.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// The field (column name, JSON key, or `row` for the whole row).
        field: String,
        /// What the reader expected.
        expected: String,
        /// What it found.
        found: String,
    },
    /// A gold label outside the task's label set.
    #[error("{}:{line}: label {found:?} is not a label of task {task} (expected {expected})", path.display())]
    UnknownLabel {
        /// The file being read.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// Canonical task name.
        task: String,
        /// The raw label as found in the file.
        found: String,
        /// The accepted raw labels.
        expected: String,
    },
    /// A task declaration is invalid (not its data: bad rows are [`DataError::Malformed`]).
    #[error("{}: `{key}`: {message}", path.display())]
    TaskFile {
        /// The task file (or pipeline) declaring the task.
        path: PathBuf,
        /// The key at fault, e.g. `tasks.reviews.labels`.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A task name that is neither a canonical name nor an alias (built-in or declared).
    #[error("unknown task {name:?} (known tasks: {known})")]
    UnknownTask {
        /// The name asked for.
        name: String,
        /// Comma-separated canonical names.
        known: String,
    },
    /// A split name other than train/dev/test.
    #[error("unknown split {name:?} (expected train, dev or test)")]
    UnknownSplit {
        /// The name asked for.
        name: String,
    },
    /// A metric name not in [`crate::Metric`].
    #[error("unknown metric {name:?} (expected one of {expected})")]
    UnknownMetric {
        /// The name asked for.
        name: String,
        /// Comma-separated metric names.
        expected: String,
    },
    /// A split recipe needs more rows than a file holds.
    #[error("task {task}: {what} has {available} rows, fewer than the {needed} the split needs")]
    TooFewRows {
        /// Canonical task name.
        task: String,
        /// Which file or pool.
        what: String,
        /// Rows available.
        available: usize,
        /// Rows needed.
        needed: usize,
    },
    /// Few-shot sampling asked for more examples of a class than exist.
    #[error("few-shot sampling for task {task}: class {class:?} has {available} examples, fewer than k = {k}")]
    FewShot {
        /// Canonical task name.
        task: String,
        /// The class (label string, STS-B score bin, or `question groups` for MultiRC).
        class: String,
        /// Examples (or groups) available for that class.
        available: usize,
        /// Examples (or groups) requested.
        k: usize,
    },
    /// An argument outside its valid range.
    #[error("invalid {name} = {value}: expected {expected}")]
    InvalidArgument {
        /// Argument name.
        name: &'static str,
        /// The value given.
        value: String,
        /// The valid range.
        expected: String,
    },
    /// Two sequences that must be aligned have different lengths.
    #[error("{what}: expected length {expected}, found {found}")]
    LengthMismatch {
        /// What was compared.
        what: String,
        /// Expected length.
        expected: usize,
        /// Actual length.
        found: usize,
    },
    /// An example (or a prediction for it) is unusable for the task.
    #[error("task {task}: example {id}: {problem}")]
    BadExample {
        /// Canonical task name.
        task: String,
        /// The example id.
        id: String,
        /// What is wrong.
        problem: String,
    },
}
