//! User task files: classification tasks declared in TOML beside the built-in registry.
//!
//! ```toml
//! [tasks.reviews]
//! format = "csv"                 # csv | tsv | jsonl
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
//! one input with several references at evaluation.
//!
//! Optional keys: `segment_a` / `segment_b` (encoder sentence pair; default: `input` as one
//! segment), `labels` as a list (raw values are the label strings; absent: the distinct values
//! of the training file, sorted), `role` (`target` | `source`), `aliases`.
//!
//! Label order (class indices): the label strings in order of first appearance, walking the
//! `labels` table by raw value (sorted as strings). CSV and TSV files need a header naming the
//! columns and may quote fields; JSONL rows are objects whose template fields are strings.
//!
//! Splits (seeded like the built-in ones, `SPLITS.md`): train, dev and test given: used as they
//! are. No test: the dev file is halved into dev and test (ATTEMPT's small-dataset recipe). No
//! dev: a tenth of a seeded shuffle of train (at least 1, at most 1000 rows) is held out as dev.
//! Neither: a tenth of train is dev and another tenth test.
//!
//! Loading a declaration reads every file it names once, so an unknown field in a template, a
//! missing column, a label value not in `labels` or a file that is not in its format fails here,
//! before any training, naming the file and line (or the task file and key). Registered tasks
//! are found by [`crate::lookup`] for the rest of the process.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Deserialize;

use crate::error::DataError;
use crate::metrics::Metric;
use crate::readers::read_file;
use crate::registry::{HOLDOUT, LabelKind, Reader, Role, ScoreScale, SourceFile, SplitPlan, TASKS, TaskKind, TaskSpec};

/// File format of a user task's data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Comma-separated with a header line; fields may be quoted.
    Csv,
    /// Tab-separated with a header line; fields may be quoted.
    Tsv,
    /// JSON Lines, one object per line.
    Jsonl,
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

/// One `[tasks.NAME]` table.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskDecl {
    /// `csv`, `tsv` or `jsonl`.
    pub format: Format,
    /// Training file.
    pub train: PathBuf,
    /// Dev file.
    #[serde(default)]
    pub dev: Option<PathBuf>,
    /// Test file.
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
    /// `classification` (default) or `generation`.
    #[serde(default)]
    pub kind: Option<String>,
    /// Classification: the field (column or JSON key) holding the gold label.
    #[serde(default)]
    pub label: Option<String>,
    /// Generation: the field holding the reference text (rows with the same input are one
    /// input with several references at evaluation).
    #[serde(default)]
    pub target: Option<String>,
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

/// Validates `decl`, reads its files, and registers it as task `name`.
pub fn register(
    origin: &Path,
    key: &str,
    name: &str,
    decl: &TaskDecl,
    base: &Path,
) -> Result<&'static TaskSpec, DataError> {
    let name = name.trim().to_ascii_lowercase();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(bad(origin, key, "a task name is letters, digits, '_' and '-'"));
    }
    let mut names = vec![name.clone()];
    names.extend(decl.aliases.iter().map(|a| a.trim().to_ascii_lowercase()));
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
    let spec = build(origin, key, &name, names, decl, &base)?;
    let digest = {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(definition.as_bytes());
        for file in spec.files() {
            let bytes = std::fs::read(file.path).map_err(|source| DataError::Io { path: file.path.into(), source })?;
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(&bytes);
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

fn build(
    origin: &Path,
    key: &str,
    name: &str,
    names: Vec<String>,
    decl: &TaskDecl,
    base: &Path,
) -> Result<&'static TaskSpec, DataError> {
    let role = match decl.role.as_deref().map(str::trim) {
        None | Some("target") => Role::Target,
        Some("source") => Role::Source,
        Some(other) => {
            return Err(bad(origin, format!("{key}.role"), format!("expected target or source, found {other:?}")));
        }
    };
    let (generation, regression) = match decl.kind.as_deref().map(str::trim) {
        None | Some("classification") => (false, false),
        Some("generation") => (true, false),
        Some("regression") => (false, true),
        Some(other) => {
            return Err(bad(
                origin,
                format!("{key}.kind"),
                format!("expected classification, regression or generation, found {other:?}"),
            ));
        }
    };
    let scale = if regression { Some(score_scale(origin, key, decl)?) } else { None };
    if !regression && (decl.range.is_some() || decl.step.is_some()) {
        let k = if decl.range.is_some() { "range" } else { "step" };
        return Err(bad(
            origin,
            format!("{key}.{k}"),
            "only a regression task (kind = \"regression\") has a score range",
        ));
    }
    let metrics: Vec<Metric> = match &decl.metrics {
        None if generation => vec![Metric::Bleu, Metric::Chrf, Metric::RougeL],
        None if regression => vec![Metric::Pearson, Metric::Spearman],
        None => vec![Metric::Accuracy],
        Some(list) if list.is_empty() => return Err(bad(origin, format!("{key}.metrics"), "name at least one metric")),
        Some(list) => list
            .iter()
            .map(|m| m.parse::<Metric>().map_err(|e| bad(origin, format!("{key}.metrics"), e.to_string())))
            .collect::<Result<_, _>>()?,
    };
    let fits = |m: &Metric| {
        if generation {
            m.is_generation()
        } else if regression {
            matches!(m, Metric::Pearson | Metric::Spearman)
        } else {
            matches!(m, Metric::Accuracy | Metric::F1 | Metric::Matthews | Metric::MacroF1)
        }
    };
    if let Some(m) = metrics.iter().find(|m| !fits(m)) {
        let what = if generation {
            "a generation task's metrics are bleu, chrf and rouge_l"
        } else if regression {
            "a regression task's metrics are pearson and spearman"
        } else {
            "a classification task's metrics are accuracy, f1, matthews and macro_f1"
        };
        return Err(bad(origin, format!("{key}.metrics"), format!("{} does not fit: {what}", m.name())));
    }
    if decl.input.trim().is_empty() {
        return Err(bad(origin, format!("{key}.input"), "the input template is empty"));
    }
    let mut fields: Vec<String> = Vec::new();
    for (k, template) in
        [("input", Some(&decl.input)), ("segment_a", decl.segment_a.as_ref()), ("segment_b", decl.segment_b.as_ref())]
    {
        let Some(template) = template else { continue };
        for f in placeholders(template).map_err(|e| bad(origin, format!("{key}.{k}"), e))? {
            if !fields.contains(&f) {
                fields.push(f);
            }
        }
    }
    let label_field = match (generation, &decl.label, &decl.target) {
        (false, Some(l), None) if !l.trim().is_empty() => l.trim().to_string(),
        (true, None, Some(t)) if !t.trim().is_empty() => t.trim().to_string(),
        (false, _, Some(_)) => {
            return Err(bad(
                origin,
                format!("{key}.target"),
                "only a generation task (kind = \"generation\") has a target",
            ));
        }
        (true, Some(_), _) => {
            return Err(bad(
                origin,
                format!("{key}.label"),
                "a generation task names its reference field with `target`",
            ));
        }
        (false, _, _) => return Err(bad(origin, format!("{key}.label"), "name the field holding the gold label")),
        (true, _, _) => return Err(bad(origin, format!("{key}.target"), "name the field holding the reference text")),
    };
    if (generation || regression) && decl.labels.is_some() {
        let what = if generation {
            "a generation task has no label set"
        } else {
            "a regression task's labels are its score buckets (range, step)"
        };
        return Err(bad(origin, format!("{key}.labels"), what));
    }
    let resolve = |p: &PathBuf| if p.is_absolute() { p.clone() } else { base.join(p) };
    let files: Vec<(&str, PathBuf)> =
        [("train", Some(&decl.train)), ("dev", decl.dev.as_ref()), ("test", decl.test.as_ref())]
            .into_iter()
            .filter_map(|(k, p)| p.map(|p| (k, resolve(p))))
            .collect();
    for (k, path) in &files {
        if !path.is_file() {
            return Err(bad(origin, format!("{key}.{k}"), format!("no such file {}", path.display())));
        }
    }
    // Readers, with the fields resolved against each file's header.
    let field_names: &'static [&'static str] = leak_slice(fields.iter().map(|f| leak(f.clone())).collect());
    let reader_for = |path: &Path| -> Result<Reader, DataError> {
        match decl.format {
            Format::Jsonl => Ok(Reader::Jsonl {
                fields: leak_slice(field_names.iter().map(|f| (*f, leak(format!("/{f}")))).collect()),
                label: leak(format!("/{label_field}")),
            }),
            Format::Csv | Format::Tsv => {
                let delimiter = if decl.format == Format::Csv { b',' } else { b'\t' };
                let columns = header(path, delimiter)?;
                let index = |field: &str, what: &str| {
                    columns.iter().position(|c| c == field).ok_or_else(|| DataError::Malformed {
                        path: path.to_path_buf(),
                        line: 1,
                        field: field.to_string(),
                        expected: format!("a column {field:?} ({what}, task file {} key {key})", origin.display()),
                        found: format!("the columns {}", columns.join(", ")),
                    })
                };
                let fields = field_names
                    .iter()
                    .map(|f| index(f, "a template placeholder").map(|i| (*f, i)))
                    .collect::<Result<Vec<_>, _>>()?;
                let label = index(&label_field, if generation { "the target field" } else { "the label field" })?;
                Ok(Reader::Delimited {
                    delimiter,
                    header: leak_slice(columns.iter().map(|c| leak(c.clone())).collect()),
                    fields: leak_slice(fields),
                    label,
                })
            }
        }
    };
    let readers: Vec<Reader> = files.iter().map(|(_, p)| reader_for(p)).collect::<Result<_, _>>()?;
    // Labels: raw value -> class index.
    let (raw_to_label, labels): (Vec<(String, String)>, Vec<String>) = match &decl.labels {
        _ if generation => (Vec::new(), Vec::new()),
        _ if regression => (Vec::new(), bucket_labels(scale.expect("regression has a scale"))),
        Some(LabelsDecl::Map(map)) => {
            if map.is_empty() {
                return Err(bad(origin, format!("{key}.labels"), "map at least two raw values to labels"));
            }
            let mut labels: Vec<String> = Vec::new();
            for l in map.values() {
                if !labels.contains(l) {
                    labels.push(l.clone());
                }
            }
            (map.iter().map(|(r, l)| (r.clone(), l.clone())).collect(), labels)
        }
        Some(LabelsDecl::List(list)) => {
            let mut labels: Vec<String> = Vec::new();
            for l in list {
                if labels.contains(l) {
                    return Err(bad(origin, format!("{key}.labels"), format!("{l:?} is listed twice")));
                }
                labels.push(l.clone());
            }
            (list.iter().map(|l| (l.clone(), l.clone())).collect(), labels)
        }
        None => {
            // The distinct raw values of the training file.
            let probe = SourceFile { key: "train", path: "", reader: readers[0], labels: LabelKind::Map(&[]) };
            let mut labels = crate::readers::raw_labels(&files[0].1, &probe)?;
            labels.sort();
            labels.dedup();
            (labels.iter().map(|l| (l.clone(), l.clone())).collect(), labels)
        }
    };
    if !generation && labels.len() < 2 {
        return Err(bad(
            origin,
            format!("{key}.labels"),
            format!("a classification task needs at least two labels, found {}", labels.len()),
        ));
    }
    if let Some(empty) = labels.iter().find(|l| l.trim().is_empty()) {
        return Err(bad(origin, format!("{key}.labels"), format!("label {empty:?} is empty")));
    }
    let map: &'static [(&'static str, usize)] = leak_slice(
        raw_to_label
            .iter()
            .map(|(raw, label)| (leak(raw.clone()), labels.iter().position(|l| l == label).expect("label listed")))
            .collect(),
    );
    let source_files: Vec<SourceFile> = files
        .iter()
        .zip(&readers)
        .map(|((k, path), reader)| SourceFile {
            key: leak(*k),
            path: leak(path.to_string_lossy().into_owned()),
            reader: *reader,
            labels: if generation {
                LabelKind::Text
            } else if regression {
                LabelKind::Score
            } else {
                LabelKind::Map(map)
            },
        })
        .collect();
    // Read every file once: bad rows and unknown labels fail now, naming file and line.
    let mut counts = Vec::new();
    let check = TaskSpec {
        name: leak(name),
        aliases: &[],
        folder: leak(base.to_string_lossy().into_owned()),
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
        grouped: false,
        substitute: None,
        extra_files: &[],
        scale: scale.unwrap_or(ScoreScale::STSB),
    };
    for (file, (_, path)) in source_files.iter().zip(&files) {
        let (examples, _) = read_file(path, &check, file)?;
        counts.push(examples.len());
    }
    let n_train = counts[0];
    let held = (n_train / 10).clamp(1, HOLDOUT);
    let by_key = |k: &str| source_files.iter().zip(&files).find(|(_, (key, _))| *key == k).map(|(f, _)| *f);
    let plan = match (by_key("dev"), by_key("test")) {
        (Some(dev), Some(test)) => SplitPlan::Given { train: source_files[0], dev, test, dedup_test: false },
        (Some(dev), None) => SplitPlan::Pool { train: leak_slice(vec![source_files[0]]), pool: dev, pool_to_train: 0 },
        (None, Some(test)) => SplitPlan::HoldOut { pool: source_files[0], holdout: held, test },
        (None, None) => {
            if n_train < 3 {
                return Err(bad(
                    origin,
                    format!("{key}.train"),
                    format!("{n_train} rows: too few to split into train, dev and test (give dev and test files)"),
                ));
            }
            SplitPlan::Pool { train: &[], pool: source_files[0], pool_to_train: n_train - 2 * held }
        }
    };
    let aliases: Vec<&'static str> = names.into_iter().skip(1).map(leak).collect();
    Ok(Box::leak(Box::new(TaskSpec { aliases: leak_slice(aliases), plan, ..check })))
}
