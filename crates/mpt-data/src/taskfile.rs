//! Task files: tasks declared in TOML, one `[tasks.NAME]` table each. The built-in tasks are
//! such a file, `tasks/builtin.toml` (embedded, parsed once into [`crate::TASKS`]; its comments
//! are the schema reference); a user's task files (`--tasks FILE`) add tasks beside them.
//!
//! ```toml
//! [tasks.reviews]
//! format = "csv"                 # csv | tsv | jsonl (and the built-in file's formats)
//! train = "reviews/train.csv"    # relative to the task file
//! dev = "reviews/dev.csv"        # optional
//! test = "reviews/test.csv"      # optional
//! input = "review: {text}"       # template over the row's fields
//! label = "stars"                # the field holding the gold label
//! labels = { "1" = "negative", "5" = "positive" }   # raw value -> label string
//! metrics = ["accuracy"]
//! ```
//!
//! Generation tasks: `kind = "generation"` and `target = "FIELD"` (the reference text) instead
//! of `label`/`labels`; metrics bleu, chrf, rouge_l (the default). Rows with the same input are
//! one input with several references at evaluation. Regression: `kind = "regression"`, `range`,
//! `step`.
//!
//! Optional keys: `segment_a` / `segment_b` (encoder sentence pair; default: `input` as one
//! segment), `labels` as a list (raw values are the label strings; absent: the distinct values
//! of the training file, sorted), `role` (`target` | `source`), `aliases`; and what the
//! built-in file uses: `folder`, `files` (several files, any keys), `split` (the recipe),
//! `extra`, `substitute`, and the reader keys `header`, `columns`, `fields`, `raw_labels`,
//! `skip_malformed` (see `tasks/builtin.toml`).
//!
//! Label order (class indices): the label strings in order of first appearance, walking the
//! `labels` table by raw value (sorted as strings). CSV and TSV files need a header naming the
//! columns (read from the file unless `header` declares it) and may quote fields; JSONL rows are
//! objects whose template fields are strings.
//!
//! Splits without `split` (seeded like the built-in ones, `SPLITS.md`): train, dev and test
//! given: used as they are. No test: the dev file is halved into dev and test (ATTEMPT's
//! small-dataset recipe). No dev: a tenth of a seeded shuffle of train (at least 1, at most 1000
//! rows) is held out as dev. Neither: a tenth of train is dev and another tenth test.
//!
//! Loading a user's declaration reads every file it names once, so an unknown field in a
//! template, a missing column, a label value not in `labels` or a file that is not in its format
//! fails here, before any training, naming the file and line (or the task file and key).
//! Registered tasks are found by [`crate::lookup`] for the rest of the process. The built-in
//! file is not read against data: its paths are relative to the data root.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, de::value::MapAccessDeserializer, de::value::SeqAccessDeserializer};

use crate::error::DataError;
use crate::metrics::Metric;
use crate::readers::read_file;
use crate::registry::{HOLDOUT, LabelKind, Reader, Role, ScoreScale, SourceFile, SplitPlan, TASKS, TaskKind, TaskSpec};

/// The built-in task file, as embedded.
pub const BUILTIN_TASK_FILE: &str = include_str!("../tasks/builtin.toml");

/// The name the built-in file's errors carry.
const BUILTIN_PATH: &str = "crates/mpt-data/tasks/builtin.toml";

/// File format of a task's data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Comma-separated with a header line; fields may be quoted.
    Csv,
    /// Tab-separated with a header line; fields may be quoted.
    Tsv,
    /// JSON Lines, one object per line.
    Jsonl,
    /// GLUE TSV ([`Reader::Tsv`]): tab-separated, no quoting, a fixed column count, optional
    /// header.
    GlueTsv,
    /// [`Reader::QuotedTsv`]: `tsv` by another name (the SNLI test file).
    QuotedTsv,
    /// One JSON object mapping `"0"`, `"1"`, … to row objects ([`Reader::JsonObject`]).
    JsonObject,
    /// WebNLG 2017 XML, a file or a folder ([`Reader::WebNlg`]).
    #[serde(rename = "webnlg")]
    WebNlg,
    /// SuperGLUE MultiRC JSON Lines ([`Reader::MultiRc`]).
    #[serde(rename = "multirc")]
    MultiRc,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Tsv => "tsv",
            Format::Jsonl => "jsonl",
            Format::GlueTsv => "glue_tsv",
            Format::QuotedTsv => "quoted_tsv",
            Format::JsonObject => "json_object",
            Format::WebNlg => "webnlg",
            Format::MultiRc => "multirc",
        }
    }

    /// Whether a file of this format takes the reader key `key`.
    fn takes(self, key: &str) -> bool {
        let table = matches!(self, Format::GlueTsv | Format::Csv | Format::Tsv | Format::QuotedTsv);
        let json = matches!(self, Format::Jsonl | Format::JsonObject);
        match key {
            "header" => table,
            "columns" | "skip_malformed" => self == Format::GlueTsv,
            "fields" | "label" | "target" => table || json,
            _ => true,
        }
    }

    /// The fields a reader with fixed fields yields.
    fn fixed_fields(self) -> Option<&'static [&'static str]> {
        match self {
            Format::WebNlg => Some(&["triples"]),
            Format::MultiRc => Some(&["question", "answer", "paragraph"]),
            _ => None,
        }
    }
}

/// `labels = {...}` or `labels = [...]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum LabelsDecl {
    /// Raw value -> label string (several raw values may share a label).
    Map(BTreeMap<String, String>),
    /// The raw values, which are also the label strings, in class order.
    List(Vec<String>),
}

/// Where a field or label is: a column index (tables), or a name: a header name (tables), a
/// JSON key or a JSON pointer `/a/b` (JSON).
#[derive(Clone, PartialEq, Eq)]
pub enum Column {
    /// 0-based column index.
    Index(usize),
    /// Header name, JSON key or JSON pointer.
    Name(String),
}

impl fmt::Debug for Column {
    /// As the bare value (`3`, `"stars"`): a declaration's `Debug` is part of its digest.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Column::Index(i) => fmt::Debug::fmt(i, f),
            Column::Name(n) => fmt::Debug::fmt(n, f),
        }
    }
}

impl<'de> Deserialize<'de> for Column {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Column;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name, JSON pointer or 0-based column index")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Column, E> {
                usize::try_from(v).map(Column::Index).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Column, E> {
                usize::try_from(v).map(Column::Index).map_err(|_| E::custom(format!("a negative column {v}")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Column, E> {
                Ok(Column::Name(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// One data file: `KEY = PATH` or `KEY = { path = PATH, ... }` under `files`, with reader keys
/// that replace the task's for this file.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDecl {
    /// Path relative to the task's folder.
    pub path: PathBuf,
    /// File format (default: the task's).
    #[serde(default)]
    pub format: Option<Format>,
    /// Header names.
    #[serde(default)]
    pub header: Option<Vec<String>>,
    /// `glue_tsv`: the column count (default: the header's).
    #[serde(default)]
    pub columns: Option<usize>,
    /// Template field -> column, key or JSON pointer, for fields not found under their own name.
    #[serde(default)]
    pub fields: Option<BTreeMap<String, Column>>,
    /// Where the gold label is.
    #[serde(default)]
    pub label: Option<Column>,
    /// Generation: where the reference text is.
    #[serde(default)]
    pub target: Option<Column>,
    /// The raw label values in class order.
    #[serde(default)]
    pub raw_labels: Option<Vec<String>>,
    /// `glue_tsv`: skip and count rows with another column count.
    #[serde(default)]
    pub skip_malformed: Option<bool>,
}

/// [`FileDecl`] from a path string or a table.
fn file_decl<'de, D: Deserializer<'de>>(d: D) -> Result<FileDecl, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = FileDecl;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a path or a table { path = ..., format = ..., ... }")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<FileDecl, E> {
            Ok(FileDecl { path: PathBuf::from(v), ..FileDecl::default() })
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FileDecl, A::Error> {
            FileDecl::deserialize(MapAccessDeserializer::new(map))
        }
    }
    d.deserialize_any(V)
}

fn files_table<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, FileDecl>, D::Error> {
    #[derive(Deserialize)]
    struct Entry(#[serde(deserialize_with = "file_decl")] FileDecl);
    Ok(BTreeMap::<String, Entry>::deserialize(d)?.into_iter().map(|(k, Entry(f))| (k, f)).collect())
}

/// One file key or a list of them.
fn keys<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a file key or a list of file keys")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<String>, E> {
            Ok(vec![v.to_string()])
        }
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Vec<String>, A::Error> {
            Vec::deserialize(SeqAccessDeserializer::new(seq))
        }
    }
    d.deserialize_any(V).map(Some)
}

/// A split recipe ([`SplitPlan`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Recipe {
    /// [`SplitPlan::Pool`]: `train` files + `pool_to_train` units of `pool`, the rest halved.
    Pool,
    /// [`SplitPlan::HoldOut`]: `holdout` rows of `pool` are dev, the rest train; `test` given.
    #[serde(rename = "holdout")]
    HoldOut,
    /// [`SplitPlan::Given`]: `train`, `dev`, `test` as they are (`dedup_test`).
    Given,
}

/// `split = { recipe = ..., ... }`: file keys and counts of a split recipe.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitDecl {
    /// Which recipe.
    pub recipe: Recipe,
    /// Pool: the files used whole for training (a list); given: the training file.
    #[serde(default, deserialize_with = "keys")]
    pub train: Option<Vec<String>>,
    /// Given: the dev file.
    #[serde(default)]
    pub dev: Option<String>,
    /// Hold-out and given: the test file.
    #[serde(default)]
    pub test: Option<String>,
    /// Pool and hold-out: the file that is shuffled and divided.
    #[serde(default)]
    pub pool: Option<String>,
    /// Pool: units of the pool moved into train before halving (default 0).
    #[serde(default)]
    pub pool_to_train: Option<usize>,
    /// Hold-out: rows held out as dev.
    #[serde(default)]
    pub holdout: Option<usize>,
    /// Given: drop test rows whose (segment A, segment B) occur in train or dev.
    #[serde(default)]
    pub dedup_test: Option<bool>,
}

/// One `[tasks.NAME]` table.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskDecl {
    /// File format of every file (a file may name its own).
    #[serde(default)]
    pub format: Option<Format>,
    /// Training file (file key `train`).
    #[serde(default)]
    pub train: Option<PathBuf>,
    /// Dev file (file key `dev`).
    #[serde(default)]
    pub dev: Option<PathBuf>,
    /// Test file (file key `test`).
    #[serde(default)]
    pub test: Option<PathBuf>,
    /// Text-to-text input template, e.g. `review: {text}`.
    pub input: String,
    /// Encoder segment A template (default: `input`).
    #[serde(default)]
    pub segment_a: Option<String>,
    /// Encoder segment B template (sentence pairs).
    #[serde(default)]
    pub segment_b: Option<String>,
    /// `classification` (default), `regression` or `generation`.
    #[serde(default)]
    pub kind: Option<String>,
    /// Classification and regression: the field (column or JSON key) holding the gold label.
    #[serde(default)]
    pub label: Option<Column>,
    /// Generation: the field holding the reference text (rows with the same input are one
    /// input with several references at evaluation).
    #[serde(default)]
    pub target: Option<Column>,
    /// Regression: `[lowest, highest]` score.
    #[serde(default)]
    pub range: Option<[f64; 2]>,
    /// Regression: the bucket width (default: a 25th of the range, STS-B's 26 buckets).
    #[serde(default)]
    pub step: Option<f64>,
    /// Raw label values -> label strings.
    #[serde(default)]
    pub labels: Option<LabelsDecl>,
    /// Metrics (default: accuracy).
    #[serde(default)]
    pub metrics: Option<Vec<String>>,
    /// `target` (default) or `source`.
    #[serde(default)]
    pub role: Option<String>,
    /// Other names the task answers to.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// The folder the data paths are relative to (itself relative to the task file's folder;
    /// in the built-in file, to the data root).
    #[serde(default)]
    pub folder: Option<String>,
    /// Note on substitute data ([`TaskSpec::substitute`]).
    #[serde(default)]
    pub substitute: Option<String>,
    /// Header names of every file.
    #[serde(default)]
    pub header: Option<Vec<String>>,
    /// `glue_tsv`: the column count (default: the header's).
    #[serde(default)]
    pub columns: Option<usize>,
    /// Template field -> column, key or JSON pointer, for fields not found under their own name.
    #[serde(default)]
    pub fields: Option<BTreeMap<String, Column>>,
    /// The raw label values in class order ([`LabelKind::Raw`]); `labels` are then the label
    /// strings in that order (default: the raw values).
    #[serde(default)]
    pub raw_labels: Option<Vec<String>>,
    /// `glue_tsv`: skip and count rows with another column count.
    #[serde(default)]
    pub skip_malformed: Option<bool>,
    /// Files by key, beside `train` / `dev` / `test`.
    #[serde(default, deserialize_with = "files_table")]
    pub files: BTreeMap<String, FileDecl>,
    /// The split recipe (default: from which of the keys train, dev, test are files).
    #[serde(default)]
    pub split: Option<SplitDecl>,
    /// Keys of files the split does not use ([`TaskSpec::extra_files`]), in order.
    #[serde(default)]
    pub extra: Vec<String>,
}

impl fmt::Debug for TaskDecl {
    /// The keys task files had before `folder`, `files`, … as their derived `Debug` printed
    /// them, then the newer keys that are set: a declaration's `Debug` is part of its digest,
    /// which must not change for an unchanged file.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Bare<'a, T>(&'a Option<T>);
        impl<T: fmt::Debug> fmt::Debug for Bare<'_, T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.0 {
                    Some(v) => v.fmt(f),
                    None => f.write_str("None"),
                }
            }
        }
        let mut s = f.debug_struct("TaskDecl");
        s.field("format", &Bare(&self.format))
            .field("train", &Bare(&self.train))
            .field("dev", &self.dev)
            .field("test", &self.test)
            .field("input", &self.input)
            .field("segment_a", &self.segment_a)
            .field("segment_b", &self.segment_b)
            .field("kind", &self.kind)
            .field("label", &self.label)
            .field("target", &self.target)
            .field("range", &self.range)
            .field("step", &self.step)
            .field("labels", &self.labels)
            .field("metrics", &self.metrics)
            .field("role", &self.role)
            .field("aliases", &self.aliases);
        let newer: [(&str, Option<&dyn fmt::Debug>); 10] = [
            ("folder", self.folder.as_ref().map(|v| v as _)),
            ("substitute", self.substitute.as_ref().map(|v| v as _)),
            ("header", self.header.as_ref().map(|v| v as _)),
            ("columns", self.columns.as_ref().map(|v| v as _)),
            ("fields", self.fields.as_ref().map(|v| v as _)),
            ("raw_labels", self.raw_labels.as_ref().map(|v| v as _)),
            ("skip_malformed", self.skip_malformed.as_ref().map(|v| v as _)),
            ("files", Some(&self.files as _).filter(|_| !self.files.is_empty())),
            ("split", self.split.as_ref().map(|v| v as _)),
            ("extra", Some(&self.extra as _).filter(|_| !self.extra.is_empty())),
        ];
        for (name, value) in newer {
            if let Some(value) = value {
                s.field(name, value);
            }
        }
        s.finish()
    }
}

/// A task file: `[tasks.NAME]` tables.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskFile {
    tasks: BTreeMap<String, toml::Value>,
}

/// Tasks registered in this process: (spec, what it was declared from, its definition, the
/// digest of the definition and its data files).
static REGISTERED: Mutex<Vec<(&'static TaskSpec, PathBuf, String, String)>> = Mutex::new(Vec::new());

/// The sha256 (hex) of a registered task's declaration and the bytes of its data files, `None`
/// for a built-in or unknown task: what pipelines put in a stage's config so that editing a
/// declaration or its data reruns the stages on it.
pub fn digest(name: &str) -> Option<String> {
    let wanted = name.trim().to_ascii_lowercase();
    let tasks = REGISTERED.lock().unwrap_or_else(|e| e.into_inner());
    tasks.iter().find(|(t, ..)| t.name == wanted || t.aliases.contains(&wanted.as_str())).map(|(.., d)| d.clone())
}

/// The registered user task called (or aliased) `wanted` (lowercase).
pub(crate) fn registered(wanted: &str) -> Option<&'static TaskSpec> {
    let tasks = REGISTERED.lock().unwrap_or_else(|e| e.into_inner());
    tasks.iter().map(|(t, ..)| *t).find(|t| t.name == wanted || t.aliases.contains(&wanted))
}

/// Names of the registered user tasks, in registration order.
pub(crate) fn registered_names() -> Vec<&'static str> {
    REGISTERED.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(t, ..)| t.name).collect()
}

fn bad(path: &Path, key: impl Into<String>, message: impl Into<String>) -> DataError {
    DataError::TaskFile { path: path.to_path_buf(), key: key.into(), message: message.into() }
}

fn leak(s: impl Into<String>) -> &'static str {
    Box::leak(s.into().into_boxed_str())
}

fn leak_slice<T>(v: Vec<T>) -> &'static [T] {
    Box::leak(v.into_boxed_slice())
}

/// The built-in tasks, in file order, from the text of the built-in task file (paths relative
/// to the data root; no file is read).
pub(crate) fn builtin_tasks(text: &str) -> Result<Vec<TaskSpec>, DataError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        tasks: BTreeMap<String, toml::Spanned<TaskDecl>>,
    }
    let origin = Path::new(BUILTIN_PATH);
    let file: File = toml::from_str(text).map_err(|e| bad(origin, "(parse)", one_line(&e.to_string())))?;
    let mut decls: Vec<(String, toml::Spanned<TaskDecl>)> = file.tasks.into_iter().collect();
    decls.sort_by_key(|(_, decl)| decl.span().start);
    let mut seen: Vec<String> = Vec::new();
    let mut out = Vec::with_capacity(decls.len());
    for (name, decl) in &decls {
        let key = format!("tasks.{name}");
        let names = names_of(origin, &key, name, decl.get_ref())?;
        if let Some(n) = names.iter().find(|n| seen.contains(n)) {
            return Err(bad(origin, &key, format!("{n:?} names two built-in tasks")));
        }
        seen.extend(names.iter().cloned());
        let canonical = names[0].clone();
        out.push(build(origin, &key, &canonical, names, decl.get_ref(), Base::DataRoot)?);
    }
    Ok(out)
}

/// Reads the task file at `path` and registers its tasks (data paths relative to its folder).
/// Registering the same declaration again is a no-op; returns the tasks in name order.
pub fn load_task_file(path: &Path) -> Result<Vec<&'static TaskSpec>, DataError> {
    let text = std::fs::read_to_string(path).map_err(|source| DataError::Io { path: path.to_path_buf(), source })?;
    let file: TaskFile = toml::from_str(&text).map_err(|e| bad(path, "(syntax)", one_line(&e.to_string())))?;
    let base = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    file.tasks.iter().map(|(name, value)| register_value(path, &format!("tasks.{name}"), name, value, base)).collect()
}

/// Registers the tasks of a `tasks` table found in `origin` (e.g. a pipeline's inline
/// `[tasks.NAME]` tables), data paths relative to `base`.
pub fn register_table(origin: &Path, table: &toml::Table, base: &Path) -> Result<Vec<&'static TaskSpec>, DataError> {
    table.iter().map(|(name, value)| register_value(origin, &format!("tasks.{name}"), name, value, base)).collect()
}

fn register_value(
    origin: &Path,
    key: &str,
    name: &str,
    value: &toml::Value,
    base: &Path,
) -> Result<&'static TaskSpec, DataError> {
    let decl: TaskDecl = value.clone().try_into().map_err(|e: toml::de::Error| {
        let text = e.to_string();
        // serde names the nested key on a line of its own: `in `format``.
        let inner = text.lines().find_map(|l| l.trim().strip_prefix("in `")?.strip_suffix('`').map(str::to_string));
        bad(origin, inner.map_or_else(|| key.to_string(), |k| format!("{key}.{k}")), one_line(&text))
    })?;
    register(origin, key, name, &decl, base)
}

/// One line from a toml/serde message: the reason, then where (`line L, column C`) if known
/// (also what `mpt-pipeline` shows for its own TOML).
pub fn one_line(message: &str) -> String {
    let lines: Vec<&str> = message.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let at = lines.iter().find_map(|l| l.strip_prefix("TOML parse error at ")).map(|a| format!(" ({a})"));
    let reason = lines
        .iter()
        .rev()
        .find(|l| {
            !l.starts_with("TOML parse error") && !l.starts_with('|') && !l.starts_with("in `") && !l.contains(" | ")
        })
        .copied()
        .unwrap_or(message);
    format!("{reason}{}", at.unwrap_or_default())
}

/// The task's canonical name (lowercase) followed by its aliases.
fn names_of(origin: &Path, key: &str, name: &str, decl: &TaskDecl) -> Result<Vec<String>, DataError> {
    let name = name.trim().to_ascii_lowercase();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(bad(origin, key, "a task name is letters, digits, '_' and '-'"));
    }
    let mut names = vec![name];
    names.extend(decl.aliases.iter().map(|a| a.trim().to_ascii_lowercase()));
    Ok(names)
}

/// Validates `decl`, reads its files, and registers it as task `name`.
pub fn register(
    origin: &Path,
    key: &str,
    name: &str,
    decl: &TaskDecl,
    base: &Path,
) -> Result<&'static TaskSpec, DataError> {
    let names = names_of(origin, key, name, decl)?;
    let name = names[0].clone();
    for n in &names {
        if let Some(t) = TASKS.iter().find(|t| t.name == n.as_str() || t.aliases.contains(&n.as_str())) {
            return Err(bad(origin, key, format!("{n:?} is the built-in task {}; choose another name", t.name)));
        }
    }
    let base = std::path::absolute(base).map_err(|source| DataError::Io { path: base.to_path_buf(), source })?;
    let definition = format!("{:?} {decl:?}", base);
    {
        let tasks = REGISTERED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((t, from, def, _)) = tasks.iter().find(|(t, ..)| names.iter().any(|n| t.name == n.as_str())) {
            if *def == definition && t.name == name {
                return Ok(*t);
            }
            return Err(bad(
                origin,
                key,
                format!("task {:?} is already declared differently in {}", t.name, from.display()),
            ));
        }
    }
    let spec: &'static TaskSpec = Box::leak(Box::new(build(origin, key, &name, names, decl, Base::Dir(&base))?));
    let digest = {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(definition.as_bytes());
        for file in spec.files() {
            hash_data(&mut h, Path::new(file.path))?;
        }
        hex::encode(h.finalize())
    };
    let mut tasks = REGISTERED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((t, _, def, _)) = tasks.iter().find(|(t, ..)| t.name == name) {
        // Registered meanwhile by another thread.
        return if *def == definition {
            Ok(*t)
        } else {
            Err(bad(origin, key, format!("task {name:?} is declared twice with different definitions")))
        };
    }
    tasks.push((spec, origin.to_path_buf(), definition, digest));
    Ok(spec)
}

/// Adds a data file's length and bytes to `h`; a folder (WebNLG): each entry's name and data,
/// in name order.
fn hash_data(h: &mut sha2::Sha256, path: &Path) -> Result<(), DataError> {
    use sha2::Digest;
    let io = |source| DataError::Io { path: path.to_path_buf(), source };
    if path.is_dir() {
        let mut entries: Vec<PathBuf> =
            std::fs::read_dir(path).map_err(io)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>().map_err(io)?;
        entries.sort();
        for entry in entries {
            let name = entry.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            h.update((name.len() as u64).to_le_bytes());
            h.update(name.as_bytes());
            hash_data(h, &entry)?;
        }
        return Ok(());
    }
    let bytes = std::fs::read(path).map_err(io)?;
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(&bytes);
    Ok(())
}

/// The score scale of a regression declaration: `range` required, `step` a whole fraction of it.
fn score_scale(origin: &Path, key: &str, decl: &TaskDecl) -> Result<ScoreScale, DataError> {
    let Some([lo, hi]) = decl.range else {
        return Err(bad(origin, format!("{key}.range"), "a regression task needs range = [lowest, highest]"));
    };
    if !(lo.is_finite() && hi.is_finite() && lo < hi) {
        return Err(bad(
            origin,
            format!("{key}.range"),
            format!("expected finite [lowest, highest] with lowest < highest, found [{lo}, {hi}]"),
        ));
    }
    let step = decl.step.unwrap_or((hi - lo) / 25.0);
    let steps = (hi - lo) / step;
    if !(step.is_finite() && step > 0.0) || (steps - steps.round()).abs() > 1e-6 || steps.round() > 1000.0 {
        return Err(bad(
            origin,
            format!("{key}.step"),
            format!("expected a positive width that divides the range into at most 1000 buckets, found {step}"),
        ));
    }
    Ok(ScoreScale { lo, hi, step })
}

/// The label strings of a scale's buckets (`"0.0"`, `"0.2"`, … with as many decimals as the
/// step and the lowest score need).
fn bucket_labels(scale: ScoreScale) -> Vec<String> {
    let exact = |x: f64, d: i32| ((x * 10f64.powi(d)).round() - x * 10f64.powi(d)).abs() < 1e-6;
    let decimals = (0..=6).find(|&d| exact(scale.step, d) && exact(scale.lo, d)).unwrap_or(6).max(1) as usize;
    (0..scale.buckets()).map(|i| format!("{:.*}", decimals, scale.value(i))).collect()
}

/// The `{field}` placeholders of `template`; `Err` for an unterminated one.
fn placeholders(template: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or_else(|| format!("unterminated placeholder `{{{after}`"))?;
        let field = after[..close].trim();
        if field.is_empty() {
            return Err("empty placeholder `{}`".into());
        }
        if !out.iter().any(|f| f == field) {
            out.push(field.to_string());
        }
        rest = &after[close + 1..];
    }
    Ok(out)
}

/// The header of a CSV/TSV file (BOM stripped, trimmed).
fn header(path: &Path, delimiter: u8) -> Result<Vec<String>, DataError> {
    let handle = std::fs::File::open(path).map_err(|source| DataError::Io { path: path.to_path_buf(), source })?;
    let mut reader = csv::ReaderBuilder::new().delimiter(delimiter).has_headers(false).from_reader(handle);
    let mut record = csv::StringRecord::new();
    let got = reader.read_record(&mut record).map_err(|source| DataError::Csv {
        path: path.to_path_buf(),
        line: source.position().map_or(1, |p| p.line()),
        source,
    })?;
    if !got {
        return Err(DataError::Malformed {
            path: path.to_path_buf(),
            line: 1,
            field: "header".into(),
            expected: "a header line naming the columns".into(),
            found: "an empty file".into(),
        });
    }
    Ok(record
        .iter()
        .enumerate()
        .map(|(i, f)| if i == 0 { f.trim_start_matches('\u{feff}') } else { f })
        .map(|f| f.trim().to_string())
        .collect())
}

/// Where a declaration's data paths lead.
#[derive(Clone, Copy)]
enum Base<'a> {
    /// The built-in file: relative to the data root, and no file is read.
    DataRoot,
    /// A user's task file: relative to this (absolute) folder, and every file is read.
    Dir(&'a Path),
}

/// One data file of a declaration.
struct FileIn {
    /// Its key (example ids `<task>/<key>/<row>`).
    key: String,
    /// Its key in the task file, for errors: `tasks.x.train`, `tasks.x.files.val`.
    at: String,
    /// Declared under `files` (its own reader keys are named under `at`).
    table: bool,
    /// The reader keys the file sets itself.
    own: Vec<&'static str>,
    /// Its keys with the task's reader keys filled in.
    decl: FileDecl,
    format: Format,
    /// The resolved path (user: under the task file's folder; built-in: under the data root).
    path: PathBuf,
}

impl FileIn {
    /// Where this file's reader key `k` was given, for errors.
    fn key_of(&self, task_key: &str, k: &str) -> String {
        if self.table && self.own.contains(&k) { format!("{}.{k}", self.at) } else { format!("{task_key}.{k}") }
    }
}

/// The reader keys `file` sets.
fn set_keys(file: &FileDecl) -> Vec<&'static str> {
    [
        ("header", file.header.is_some()),
        ("columns", file.columns.is_some()),
        ("fields", file.fields.is_some()),
        ("label", file.label.is_some()),
        ("target", file.target.is_some()),
        ("raw_labels", file.raw_labels.is_some()),
        ("skip_malformed", file.skip_malformed.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, set)| set.then_some(k))
    .collect()
}

/// `file`'s reader keys, the task's where the file sets none.
fn merged(decl: &TaskDecl, file: &FileDecl) -> FileDecl {
    FileDecl {
        path: file.path.clone(),
        format: file.format.or(decl.format),
        header: file.header.clone().or_else(|| decl.header.clone()),
        columns: file.columns.or(decl.columns),
        fields: file.fields.clone().or_else(|| decl.fields.clone()),
        label: file.label.clone().or_else(|| decl.label.clone()),
        target: file.target.clone().or_else(|| decl.target.clone()),
        raw_labels: file.raw_labels.clone().or_else(|| decl.raw_labels.clone()),
        skip_malformed: file.skip_malformed.or(decl.skip_malformed),
    }
}

/// A file key: letters, digits, `_` and `-` (it is part of example ids).
fn valid_key(k: &str) -> bool {
    !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Builds the [`TaskSpec`] of `decl`. A user's declaration (`Base::Dir`) has its files read:
/// headers and label sets that are not declared come from them, and every row is checked.
fn build(
    origin: &Path,
    key: &str,
    name: &str,
    names: Vec<String>,
    decl: &TaskDecl,
    base: Base,
) -> Result<TaskSpec, DataError> {
    let at = |k: &str| format!("{key}.{k}");
    let role = match decl.role.as_deref().map(str::trim) {
        None | Some("target") => Role::Target,
        Some("source") => Role::Source,
        Some(other) => {
            return Err(bad(origin, at("role"), format!("expected target or source, found {other:?}")));
        }
    };
    let (generation, regression) = match decl.kind.as_deref().map(str::trim) {
        None | Some("classification") => (false, false),
        Some("generation") => (true, false),
        Some("regression") => (false, true),
        Some(other) => {
            return Err(bad(
                origin,
                at("kind"),
                format!("expected classification, regression or generation, found {other:?}"),
            ));
        }
    };
    let scale = if regression { Some(score_scale(origin, key, decl)?) } else { None };
    if !regression && (decl.range.is_some() || decl.step.is_some()) {
        let k = if decl.range.is_some() { "range" } else { "step" };
        return Err(bad(origin, at(k), "only a regression task (kind = \"regression\") has a score range"));
    }

    // The files: `train` / `dev` / `test` and `files`, each with the task's reader keys filled in.
    let folder = decl.folder.as_deref().map(str::trim).unwrap_or("");
    let resolve = |p: &Path| -> PathBuf {
        match base {
            Base::DataRoot if folder.is_empty() => p.to_path_buf(),
            Base::DataRoot => PathBuf::from(format!("{folder}/{}", p.to_string_lossy())),
            Base::Dir(_) if p.is_absolute() => p.to_path_buf(),
            Base::Dir(dir) if folder.is_empty() => dir.join(p),
            Base::Dir(dir) => dir.join(folder).join(p),
        }
    };
    let shorthand =
        [("train", &decl.train), ("dev", &decl.dev), ("test", &decl.test)].into_iter().filter_map(|(k, p)| {
            p.as_ref().map(|p| (k.to_string(), at(k), false, FileDecl { path: p.clone(), ..FileDecl::default() }))
        });
    let tables = decl.files.iter().map(|(k, f)| (k.clone(), at(&format!("files.{k}")), true, f.clone()));
    let mut files: Vec<FileIn> = Vec::new();
    for (file_key, file_at, table, own) in shorthand.chain(tables) {
        if !valid_key(&file_key) {
            return Err(bad(origin, file_at, "a file key is letters, digits, '_' and '-'"));
        }
        if files.iter().any(|f| f.key == file_key) {
            return Err(bad(origin, file_at, format!("file {file_key:?} is declared twice")));
        }
        let merged = merged(decl, &own);
        let Some(format) = merged.format else {
            let k = if table { format!("{file_at}.format") } else { at("format") };
            return Err(bad(origin, k, "name the format of the file (format = \"csv\", \"tsv\", \"jsonl\", ...)"));
        };
        let path = resolve(&own.path);
        files.push(FileIn { key: file_key, at: file_at, table, own: set_keys(&own), decl: merged, format, path });
    }
    if files.is_empty() {
        return Err(bad(origin, at("train"), "name the training file (train = PATH), or declare files"));
    }
    let grouped = files.iter().any(|f| f.format == Format::MultiRc);

    let metrics: Vec<Metric> = match &decl.metrics {
        None if generation => vec![Metric::Bleu, Metric::Chrf, Metric::RougeL],
        None if regression => vec![Metric::Pearson, Metric::Spearman],
        None => vec![Metric::Accuracy],
        Some(list) if list.is_empty() => return Err(bad(origin, at("metrics"), "name at least one metric")),
        Some(list) => list
            .iter()
            .map(|m| m.parse::<Metric>().map_err(|e| bad(origin, at("metrics"), e.to_string())))
            .collect::<Result<_, _>>()?,
    };
    let fits = |m: &Metric| {
        if generation {
            m.is_generation()
        } else if regression {
            matches!(m, Metric::Pearson | Metric::Spearman)
        } else {
            matches!(m, Metric::Accuracy | Metric::F1 | Metric::Matthews | Metric::MacroF1)
                || (grouped && matches!(m, Metric::F1a | Metric::Em))
        }
    };
    if let Some(m) = metrics.iter().find(|m| !fits(m)) {
        let what = if generation {
            "a generation task's metrics are bleu, chrf and rouge_l"
        } else if regression {
            "a regression task's metrics are pearson and spearman"
        } else if grouped {
            "a multirc task's metrics are accuracy, f1, matthews, macro_f1, f1a and em"
        } else {
            "a classification task's metrics are accuracy, f1, matthews and macro_f1 (f1a and em: multirc files)"
        };
        return Err(bad(origin, at("metrics"), format!("{} does not fit: {what}", m.name())));
    }

    // Templates and the fields they read.
    if decl.input.trim().is_empty() {
        return Err(bad(origin, at("input"), "the input template is empty"));
    }
    let mut fields: Vec<String> = Vec::new();
    for (k, template) in
        [("input", Some(&decl.input)), ("segment_a", decl.segment_a.as_ref()), ("segment_b", decl.segment_b.as_ref())]
    {
        let Some(template) = template else { continue };
        for f in placeholders(template).map_err(|e| bad(origin, at(k), e))? {
            if let Some(fixed) = files.iter().find_map(|file| file.format.fixed_fields())
                && !fixed.contains(&f.as_str())
            {
                return Err(bad(
                    origin,
                    at(k),
                    format!("{{{f}}}: the fields of this task's files are {}", fixed.join(", ")),
                ));
            }
            if !fields.contains(&f) {
                fields.push(f);
            }
        }
    }

    // Labels and targets: where each file has them.
    let target_named = decl.target.is_some() || files.iter().any(|f| f.own.contains(&"target"));
    let label_named = decl.label.is_some() || files.iter().any(|f| f.own.contains(&"label"));
    if !generation && target_named {
        return Err(bad(origin, at("target"), "only a generation task (kind = \"generation\") has a target"));
    }
    if generation && label_named {
        return Err(bad(origin, at("label"), "a generation task names its reference field with `target`"));
    }
    if (generation || regression) && decl.labels.is_some() {
        let what = if generation {
            "a generation task has no label set"
        } else {
            "a regression task's labels are its score buckets (range, step)"
        };
        return Err(bad(origin, at("labels"), what));
    }
    if (generation || regression) && (decl.raw_labels.is_some() || files.iter().any(|f| f.own.contains(&"raw_labels")))
    {
        return Err(bad(origin, at("raw_labels"), "only a classification task has raw labels"));
    }
    for file in &files {
        let needs = file.format.takes("label");
        let given = if generation { file.decl.target.is_some() } else { file.decl.label.is_some() };
        if needs && !given {
            return Err(if generation {
                bad(origin, at("target"), "name the field holding the reference text")
            } else {
                bad(origin, at("label"), "name the field holding the gold label")
            });
        }
        if file.format == Format::WebNlg && !generation {
            return Err(bad(origin, at("kind"), "webnlg files hold reference texts: kind = \"generation\""));
        }
        if file.format == Format::MultiRc && (generation || regression) {
            return Err(bad(origin, at("kind"), "multirc files hold class labels: a classification task"));
        }
        // File keys its format does not read.
        if let Some(k) = file.own.iter().find(|k| !file.format.takes(k)) {
            return Err(bad(origin, format!("{}.{k}", file.at), format!("a {} file has no {k}", file.format.name())));
        }
        if let Some(map) = &file.decl.fields
            && let Some(f) = map.keys().find(|f| !fields.contains(f))
        {
            return Err(bad(
                origin,
                file.key_of(key, "fields"),
                format!("{f:?} is no {{field}} of the templates ({})", fields.join(", ")),
            ));
        }
    }
    // Task-level reader keys no file reads.
    for k in set_keys(&merged(decl, &FileDecl::default())) {
        if !files.iter().any(|f| f.format.takes(k)) {
            let formats: Vec<&str> = files.iter().map(|f| f.format.name()).collect();
            return Err(bad(origin, at(k), format!("no file of this task ({}) has a {k}", formats.join(", "))));
        }
    }

    // Readers, with named columns resolved against each file's header.
    let reading = matches!(base, Base::Dir(_));
    if reading {
        for file in &files {
            let present = file.path.is_file() || (file.format == Format::WebNlg && file.path.is_dir());
            if !present {
                return Err(bad(origin, &file.at, format!("no such file {}", file.path.display())));
            }
        }
    }
    let field_names: &'static [&'static str] = leak_slice(fields.iter().map(|f| leak(f.clone())).collect());
    let reader_for = |file: &FileIn| -> Result<Reader, DataError> {
        let d = &file.decl;
        let label = if generation { d.target.as_ref() } else { d.label.as_ref() };
        let column = |field: &str| d.fields.as_ref().and_then(|m| m.get(field)).cloned();
        match file.format {
            Format::WebNlg => Ok(Reader::WebNlg),
            Format::MultiRc => Ok(Reader::MultiRc),
            Format::Jsonl | Format::JsonObject => {
                let pointer = |c: Column, k: &str| match c {
                    Column::Name(n) if n.starts_with('/') => Ok(leak(n)),
                    Column::Name(n) => Ok(leak(format!("/{n}"))),
                    Column::Index(i) => Err(bad(
                        origin,
                        file.key_of(key, k),
                        format!("column {i}: a JSON file names its fields by key or JSON pointer"),
                    )),
                };
                let fields = field_names
                    .iter()
                    .map(|f| {
                        pointer(column(f).unwrap_or_else(|| Column::Name(f.to_string())), "fields").map(|p| (*f, p))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let label_key = if generation { "target" } else { "label" };
                let label = pointer(label.cloned().unwrap_or_else(|| Column::Name(String::new())), label_key)?;
                let fields = leak_slice(fields);
                Ok(if file.format == Format::Jsonl {
                    Reader::Jsonl { fields, label }
                } else {
                    Reader::JsonObject { fields, label }
                })
            }
            Format::GlueTsv | Format::Csv | Format::Tsv | Format::QuotedTsv => {
                let delimiter = if file.format == Format::Csv { b',' } else { b'\t' };
                // The header: declared, or (a user's csv/tsv) the file's first line.
                let (names, from_file): (Option<Vec<String>>, bool) = match &d.header {
                    Some(h) => (Some(h.clone()), false),
                    None if file.format == Format::GlueTsv => (None, false),
                    None if reading => (Some(header(&file.path, delimiter)?), true),
                    None => {
                        return Err(bad(
                            origin,
                            file.key_of(key, "header"),
                            format!("declare the header of a {} file (header = [...])", file.format.name()),
                        ));
                    }
                };
                let columns = match (file.format, d.columns, &names) {
                    (Format::GlueTsv, Some(n), Some(h)) if n != h.len() => {
                        return Err(bad(
                            origin,
                            file.key_of(key, "columns"),
                            format!("{n} columns but a header of {}", h.len()),
                        ));
                    }
                    (Format::GlueTsv, Some(n), _) => n,
                    (_, _, Some(h)) => h.len(),
                    (_, _, None) => {
                        return Err(bad(
                            origin,
                            file.key_of(key, "columns"),
                            "a glue_tsv file without a header needs columns = N",
                        ));
                    }
                };
                let index = |c: Column, k: &str, what: &str| -> Result<usize, DataError> {
                    match c {
                        Column::Index(i) if i < columns => Ok(i),
                        Column::Index(i) => Err(bad(
                            origin,
                            file.key_of(key, k),
                            format!("column {i} of a file with {columns} columns (0-based)"),
                        )),
                        Column::Name(n) => match &names {
                            Some(h) => h.iter().position(|c| *c == n).ok_or_else(|| {
                                if from_file {
                                    DataError::Malformed {
                                        path: file.path.clone(),
                                        line: 1,
                                        field: n.clone(),
                                        expected: format!(
                                            "a column {n:?} ({what}, task file {} key {key})",
                                            origin.display()
                                        ),
                                        found: format!("the columns {}", h.join(", ")),
                                    }
                                } else {
                                    bad(
                                        origin,
                                        file.key_of(key, k),
                                        format!("no column {n:?} in the header: {}", h.join(", ")),
                                    )
                                }
                            }),
                            None => Err(bad(
                                origin,
                                file.key_of(key, k),
                                format!("column {n:?}: a file without a header names its columns by index"),
                            )),
                        },
                    }
                };
                let fields = field_names
                    .iter()
                    .map(|f| {
                        index(
                            column(f).unwrap_or_else(|| Column::Name(f.to_string())),
                            "fields",
                            "a template placeholder",
                        )
                        .map(|i| (*f, i))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let (label_key, what) =
                    if generation { ("target", "the target field") } else { ("label", "the label field") };
                let label = index(label.cloned().unwrap_or_else(|| Column::Name(String::new())), label_key, what)?;
                let fields = leak_slice(fields);
                let header = names.map(|h| leak_slice(h.into_iter().map(leak).collect()));
                Ok(match (file.format, header) {
                    (Format::GlueTsv, header) => Reader::Tsv {
                        header,
                        columns,
                        fields,
                        label,
                        skip_malformed: d.skip_malformed.unwrap_or(false),
                    },
                    (Format::QuotedTsv, Some(header)) => Reader::QuotedTsv { header, fields, label },
                    (_, Some(header)) => Reader::Delimited { delimiter, header, fields, label },
                    (_, None) => unreachable!("a csv or tsv file has a header here"),
                })
            }
        }
    };
    let readers: Vec<Reader> = files.iter().map(reader_for).collect::<Result<_, _>>()?;

    // Which file trains: where a label set is taken from when none is declared.
    let train_key: Option<String> = match &decl.split {
        Some(SplitDecl { recipe: Recipe::Pool, train: Some(t), .. }) if !t.is_empty() => Some(t[0].clone()),
        Some(SplitDecl { recipe: Recipe::Pool | Recipe::HoldOut, pool, .. }) => pool.clone(),
        Some(SplitDecl { recipe: Recipe::Given, train, .. }) => train.as_ref().and_then(|t| t.first().cloned()),
        None => Some("train".to_string()),
    };

    // Labels: the label strings and, per file, how raw values map to class indices.
    let (raw_to_label, labels): (Vec<(String, String)>, Vec<String>) = match (&decl.labels, &decl.raw_labels) {
        _ if generation => (Vec::new(), Vec::new()),
        _ if regression => (Vec::new(), bucket_labels(scale.expect("regression has a scale"))),
        (Some(LabelsDecl::Map(_)), Some(_)) => {
            return Err(bad(origin, at("raw_labels"), "a labels map already says which raw value is which label"));
        }
        (Some(LabelsDecl::Map(map)), None) => {
            if map.is_empty() {
                return Err(bad(origin, at("labels"), "map at least two raw values to labels"));
            }
            let mut labels: Vec<String> = Vec::new();
            for l in map.values() {
                if !labels.contains(l) {
                    labels.push(l.clone());
                }
            }
            (map.iter().map(|(r, l)| (r.clone(), l.clone())).collect(), labels)
        }
        (Some(LabelsDecl::List(list)), _) | (None, Some(list)) => {
            let k = if decl.labels.is_some() { "labels" } else { "raw_labels" };
            let mut labels: Vec<String> = Vec::new();
            for l in list {
                if labels.contains(l) {
                    return Err(bad(origin, at(k), format!("{l:?} is listed twice")));
                }
                labels.push(l.clone());
            }
            (list.iter().map(|l| (l.clone(), l.clone())).collect(), labels)
        }
        (None, None) => {
            // The distinct raw values of the training file.
            let train = files.iter().position(|f| Some(&f.key) == train_key.as_ref());
            let (Some(i), true) = (train, reading) else {
                return Err(bad(origin, at("labels"), "declare the labels (label strings in class order)"));
            };
            let probe = SourceFile { key: "train", path: "", reader: readers[i], labels: LabelKind::Map(&[]) };
            let mut labels = crate::readers::raw_labels(&files[i].path, &probe)?;
            labels.sort();
            labels.dedup();
            (labels.iter().map(|l| (l.clone(), l.clone())).collect(), labels)
        }
    };
    if !generation && labels.len() < 2 {
        return Err(bad(
            origin,
            at("labels"),
            format!("a classification task needs at least two labels, found {}", labels.len()),
        ));
    }
    if let Some(empty) = labels.iter().find(|l| l.trim().is_empty()) {
        return Err(bad(origin, at("labels"), format!("label {empty:?} is empty")));
    }
    let map: &'static [(&'static str, usize)] = leak_slice(
        raw_to_label
            .iter()
            .map(|(raw, label)| (leak(raw.clone()), labels.iter().position(|l| l == label).expect("label listed")))
            .collect(),
    );
    let mut source_files: Vec<SourceFile> = Vec::with_capacity(files.len());
    for (file, reader) in files.iter().zip(&readers) {
        let kind = if generation {
            LabelKind::Text
        } else if regression {
            LabelKind::Score
        } else if let Some(raw) = &file.decl.raw_labels {
            let k = file.key_of(key, "raw_labels");
            if raw.len() != labels.len() {
                return Err(bad(origin, k, format!("{} raw labels for {} labels", raw.len(), labels.len())));
            }
            if let Some((i, r)) = raw.iter().enumerate().find(|(i, r)| raw[..*i].contains(r)) {
                return Err(bad(origin, k, format!("{r:?} is listed twice (at {i})")));
            }
            LabelKind::Raw(leak_slice(raw.iter().map(|r| leak(r.clone())).collect()))
        } else {
            LabelKind::Map(map)
        };
        source_files.push(SourceFile {
            key: leak(file.key.clone()),
            path: leak(file.path.to_string_lossy().into_owned()),
            reader: *reader,
            labels: kind,
        });
    }

    let check = TaskSpec {
        name: leak(name),
        aliases: &[],
        folder: leak(match base {
            Base::DataRoot => folder.to_string(),
            Base::Dir(dir) if folder.is_empty() => dir.to_string_lossy().into_owned(),
            Base::Dir(dir) => dir.join(folder).to_string_lossy().into_owned(),
        }),
        role,
        kind: if generation {
            TaskKind::Generation
        } else if regression {
            TaskKind::Regression
        } else {
            TaskKind::Classification
        },
        template: leak(decl.input.clone()),
        segment_a: leak(decl.segment_a.clone().unwrap_or_else(|| decl.input.clone())),
        segment_b: decl.segment_b.clone().map(leak),
        labels: leak_slice(labels.iter().map(|l| leak(l.clone())).collect()),
        metrics: leak_slice(metrics),
        plan: SplitPlan::Pool { train: &[], pool: source_files[0], pool_to_train: 0 },
        grouped,
        substitute: decl.substitute.clone().map(leak),
        extra_files: &[],
        scale: scale.unwrap_or(ScoreScale::STSB),
    };
    // A user's files: read every one once, so bad rows and unknown labels fail now, naming file
    // and line.
    let mut counts = Vec::new();
    if reading {
        for (file, source) in files.iter().zip(&source_files) {
            let (examples, _) = read_file(&file.path, &check, source)?;
            counts.push(examples.len());
        }
    }

    // The split recipe.
    let mut used: Vec<String> = Vec::new();
    let mut by_key = |k: &str, what: &str| -> Result<SourceFile, DataError> {
        let i = files.iter().position(|f| f.key == k).ok_or_else(|| {
            let known: Vec<&str> = files.iter().map(|f| f.key.as_str()).collect();
            bad(origin, at(&format!("split.{what}")), format!("no file {k:?} (the files: {})", known.join(", ")))
        })?;
        used.push(k.to_string());
        Ok(source_files[i])
    };
    let plan = match &decl.split {
        Some(split) => {
            let given: [(&str, bool); 7] = [
                ("train", split.train.is_some()),
                ("dev", split.dev.is_some()),
                ("test", split.test.is_some()),
                ("pool", split.pool.is_some()),
                ("pool_to_train", split.pool_to_train.is_some()),
                ("holdout", split.holdout.is_some()),
                ("dedup_test", split.dedup_test.is_some()),
            ];
            let (recipe, takes): (&str, &[&str]) = match split.recipe {
                Recipe::Pool => ("pool", &["train", "pool", "pool_to_train"]),
                Recipe::HoldOut => ("holdout", &["pool", "holdout", "test"]),
                Recipe::Given => ("given", &["train", "dev", "test", "dedup_test"]),
            };
            if let Some((k, _)) = given.iter().find(|(k, set)| *set && !takes.contains(k)) {
                return Err(bad(
                    origin,
                    at(&format!("split.{k}")),
                    format!("a {recipe} split takes {}", takes.join(", ")),
                ));
            }
            let need = |v: Option<&String>, k: &str| {
                v.cloned().ok_or_else(|| bad(origin, at("split"), format!("a {recipe} split needs {k}")))
            };
            match split.recipe {
                Recipe::Pool => {
                    let mut train = Vec::new();
                    for k in split.train.iter().flatten() {
                        train.push(by_key(k, "train")?);
                    }
                    SplitPlan::Pool {
                        train: leak_slice(train),
                        pool: by_key(&need(split.pool.as_ref(), "pool")?, "pool")?,
                        pool_to_train: split.pool_to_train.unwrap_or(0),
                    }
                }
                Recipe::HoldOut => SplitPlan::HoldOut {
                    pool: by_key(&need(split.pool.as_ref(), "pool")?, "pool")?,
                    holdout: split
                        .holdout
                        .ok_or_else(|| bad(origin, at("split"), "a holdout split needs holdout = ROWS"))?,
                    test: by_key(&need(split.test.as_ref(), "test")?, "test")?,
                },
                Recipe::Given => {
                    let train = match split.train.as_deref() {
                        Some([one]) => one.clone(),
                        Some(_) => return Err(bad(origin, at("split.train"), "a given split trains on one file")),
                        None => need(None, "train")?,
                    };
                    SplitPlan::Given {
                        train: by_key(&train, "train")?,
                        dev: by_key(&need(split.dev.as_ref(), "dev")?, "dev")?,
                        test: by_key(&need(split.test.as_ref(), "test")?, "test")?,
                        dedup_test: split.dedup_test.unwrap_or(false),
                    }
                }
            }
        }
        None => {
            let present = |k: &str| files.iter().any(|f| f.key == k);
            if !present("train") {
                return Err(bad(origin, at("train"), "name the training file (train = PATH), or declare split"));
            }
            let (has_dev, has_test) = (present("dev"), present("test"));
            let train = by_key("train", "train")?;
            let n_train = files.iter().position(|f| f.key == "train").and_then(|i| counts.get(i).copied());
            let counted = |n: Option<usize>| {
                n.ok_or_else(|| {
                    bad(origin, at("split"), "declare the split: the built-in file reads no data to size it")
                })
            };
            match (has_dev, has_test) {
                (true, true) => SplitPlan::Given {
                    train,
                    dev: by_key("dev", "dev")?,
                    test: by_key("test", "test")?,
                    dedup_test: false,
                },
                (true, false) => {
                    SplitPlan::Pool { train: leak_slice(vec![train]), pool: by_key("dev", "dev")?, pool_to_train: 0 }
                }
                (false, true) => {
                    let held = (counted(n_train)? / 10).clamp(1, HOLDOUT);
                    SplitPlan::HoldOut { pool: train, holdout: held, test: by_key("test", "test")? }
                }
                (false, false) => {
                    let n_train = counted(n_train)?;
                    let held = (n_train / 10).clamp(1, HOLDOUT);
                    if n_train < 3 {
                        return Err(bad(
                            origin,
                            at("train"),
                            format!(
                                "{n_train} rows: too few to split into train, dev and test (give dev and test files)"
                            ),
                        ));
                    }
                    SplitPlan::Pool { train: &[], pool: train, pool_to_train: n_train - 2 * held }
                }
            }
        }
    };
    // Files the split does not use are `extra`, in its order.
    let mut extra_files = Vec::new();
    for k in &decl.extra {
        let Some(i) = files.iter().position(|f| f.key == *k) else {
            return Err(bad(origin, at("extra"), format!("no file {k:?}")));
        };
        if used.contains(k) {
            return Err(bad(origin, at("extra"), format!("{k:?} is a file of the split")));
        }
        extra_files.push(source_files[i]);
    }
    if let Some(unused) = files.iter().find(|f| !used.contains(&f.key) && !decl.extra.contains(&f.key)) {
        return Err(bad(origin, &unused.at, format!("file {:?} is not used: name it in split or extra", unused.key)));
    }
    let aliases: Vec<&'static str> = names.into_iter().skip(1).map(leak).collect();
    Ok(TaskSpec { aliases: leak_slice(aliases), plan, extra_files: leak_slice(extra_files), ..check })
}
