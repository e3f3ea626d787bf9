//! File readers: GLUE TSV (no quoting), quoted TSV (SNLI test), JSON Lines (SuperGLUE and the
//! lean MNLI/SNLI/SciTail files), single-object JSON (`train-subset-ppft`) and SuperGLUE MultiRC.
//!
//! Every reader yields canonical fields plus a raw label, which [`read_file`] turns into
//! [`Example`]s with the task's templates. Malformed rows are errors naming file, 1-based line
//! and field, except in files whose [`Reader::Tsv::skip_malformed`] is set (the QQP cutoff
//! subset), where rows with the wrong column count are skipped and counted in [`LoadReport`].

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::DataError;
use crate::example::Example;
use crate::registry::{LabelKind, Reader, SourceFile, TaskSpec, render};

/// A row a lenient reader skipped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedRow {
    /// The file.
    pub path: PathBuf,
    /// 1-based line number.
    pub line: u64,
    /// Why it was skipped.
    pub reason: String,
}

/// What a load dropped on purpose (never silently).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadReport {
    /// Malformed rows skipped (only the QQP cutoff file allows this; it has exactly one).
    pub skipped: usize,
    /// Where and why each skipped row was skipped.
    pub skipped_rows: Vec<SkippedRow>,
    /// Test rows removed because they also occur in train or dev (QQP only).
    pub removed_overlap: usize,
}

impl LoadReport {
    /// Adds `other`'s counts and rows to `self`.
    pub fn merge(&mut self, other: LoadReport) {
        self.skipped += other.skipped;
        self.skipped_rows.extend(other.skipped_rows);
        self.removed_overlap += other.removed_overlap;
    }
}

/// Reads `file` (one of `task`'s files) under the data root `root`.
///
/// Fails with [`DataError::MissingFile`] (naming the task's expected layout) when it is absent.
pub fn read_source(root: &Path, task: &TaskSpec, file: &SourceFile) -> Result<(Vec<Example>, LoadReport), DataError> {
    let path = root.join(file.path);
    let present = path.is_file() || (file.reader == Reader::WebNlg && path.is_dir());
    if !present {
        return Err(DataError::MissingFile { path, task: task.name.to_string(), layout: task.layout() });
    }
    read_file(&path, task, file)
}

/// Reads the file at `path` with the reader and label mapping of `file`, rendering examples for
/// `task`. Rows keep their file order.
pub fn read_file(path: &Path, task: &TaskSpec, file: &SourceFile) -> Result<(Vec<Example>, LoadReport), DataError> {
    let mut report = LoadReport::default();
    let records = read_records(path, Some(task), file, &mut report)?;
    if records.is_empty() && report.skipped == 0 {
        return Err(DataError::Malformed {
            path: path.to_path_buf(),
            line: 1,
            field: "file".to_string(),
            expected: format!("at least one data row ({})", file.reader.describe()),
            found: "no data rows".to_string(),
        });
    }
    let examples =
        records.into_iter().map(|record| to_example(path, task, file, record)).collect::<Result<Vec<_>, _>>()?;
    Ok((examples, report))
}

/// The rows of `path` as its reader yields them.
fn read_records(
    path: &Path,
    task: Option<&TaskSpec>,
    file: &SourceFile,
    report: &mut LoadReport,
) -> Result<Vec<Record>, DataError> {
    Ok(match file.reader {
        Reader::Tsv { header, columns, fields, label, skip_malformed } => read_tsv(
            path,
            TsvLayout { quoting: false, delimiter: b'\t', header, columns, fields, label, skip_malformed },
            report,
        )?,
        Reader::QuotedTsv { header, fields, label } => read_quoted(path, b'\t', header, fields, label, report)?,
        Reader::Delimited { delimiter, header, fields, label } => {
            read_quoted(path, delimiter, header, fields, label, report)?
        }
        Reader::Jsonl { fields, label } => read_jsonl(path, fields, label)?,
        Reader::JsonObject { fields, label } => read_json_object(path, fields, label)?,
        Reader::MultiRc => read_multirc(path, task.expect("MultiRC files are read for their task"), file)?,
        Reader::WebNlg => read_webnlg(path)?,
    })
}

/// The raw label of every row of `path` read as `file` says (not a MultiRC file), in file
/// order: what a task file without `labels` takes its label set from.
pub(crate) fn raw_labels(path: &Path, file: &SourceFile) -> Result<Vec<String>, DataError> {
    let mut report = LoadReport::default();
    Ok(read_records(path, None, file, &mut report)?.into_iter().map(|r| r.label).collect())
}

/// Canonical `(field, value)` pairs of one row.
type Fields = Vec<(&'static str, String)>;

/// One parsed row before templating.
struct Record {
    line: u64,
    row: usize,
    fields: Fields,
    label: String,
    group: Option<String>,
}

fn to_example(path: &Path, task: &TaskSpec, file: &SourceFile, record: Record) -> Result<Example, DataError> {
    let malformed = |field: &str, expected: &str, found: String| DataError::Malformed {
        path: path.to_path_buf(),
        line: record.line,
        field: field.to_string(),
        expected: expected.to_string(),
        found,
    };
    let unknown = |known: String| DataError::UnknownLabel {
        path: path.to_path_buf(),
        line: record.line,
        task: task.name.to_string(),
        found: record.label.clone(),
        expected: format!("one of {known}"),
    };
    let mut reference = None;
    let (label, score) = match file.labels {
        LabelKind::Text => {
            if record.label.is_empty() {
                return Err(malformed("reference", "a non-empty reference text", "an empty field".to_string()));
            }
            reference = Some(record.label.clone());
            (0, None)
        }
        LabelKind::Raw(raw) => match raw.iter().position(|r| *r == record.label) {
            Some(index) => (index, None),
            None => return Err(unknown(raw.join(", "))),
        },
        LabelKind::Map(map) => match map.iter().find(|(r, _)| *r == record.label) {
            Some((_, index)) => (*index, None),
            None => return Err(unknown(map.iter().map(|(r, _)| *r).collect::<Vec<_>>().join(", "))),
        },
        LabelKind::Score => {
            let scale = task.scale;
            let expected = format!("a score in {}..={}", scale.lo, scale.hi);
            let score: f64 =
                record.label.parse().map_err(|_| malformed("score", &expected, format!("{:?}", record.label)))?;
            if !(scale.lo..=scale.hi).contains(&score) {
                return Err(malformed("score", &expected, format!("{:?}", record.label)));
            }
            (scale.bucket(score), Some(score as f32))
        }
    };
    let fill = |template: &str| {
        render(template, &record.fields).map_err(|name| {
            malformed(&name, "a value for this template placeholder", "no such field from the reader".to_string())
        })
    };
    let input = fill(task.template)?;
    let text_a = fill(task.segment_a)?;
    let text_b = task.segment_b.map(fill).transpose()?;
    Ok(Example {
        id: format!("{}/{}/{}", task.name, file.key, record.row),
        input,
        text_a,
        text_b,
        label,
        score,
        group: record.group,
        reference,
    })
}

// ---------------------------------------------------------------------------------------------
// TSV

struct TsvLayout {
    quoting: bool,
    delimiter: u8,
    header: Option<&'static [&'static str]>,
    columns: usize,
    fields: &'static [(&'static str, usize)],
    label: usize,
    skip_malformed: bool,
}

/// A file with CSV quoting and a header line (`delimiter`-separated).
fn read_quoted(
    path: &Path,
    delimiter: u8,
    header: &'static [&'static str],
    fields: &'static [(&'static str, usize)],
    label: usize,
    report: &mut LoadReport,
) -> Result<Vec<Record>, DataError> {
    let layout = TsvLayout {
        quoting: true,
        delimiter,
        header: Some(header),
        columns: header.len(),
        fields,
        label,
        skip_malformed: false,
    };
    read_tsv(path, layout, report)
}

impl TsvLayout {
    fn separated(&self) -> &'static str {
        if self.delimiter == b',' { "comma-separated" } else { "tab-separated" }
    }
}

fn read_tsv(path: &Path, layout: TsvLayout, report: &mut LoadReport) -> Result<Vec<Record>, DataError> {
    let handle = File::open(path).map_err(|source| DataError::Io { path: path.to_path_buf(), source })?;
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(layout.delimiter)
        .has_headers(false)
        .flexible(true)
        .quoting(layout.quoting)
        .from_reader(handle);
    let mut out = Vec::new();
    let mut first = true;
    let mut row = 0usize;
    let mut last_line = 0u64;
    for result in reader.records() {
        let record = result.map_err(|source| DataError::Csv {
            path: path.to_path_buf(),
            line: source.position().map(|p| p.line()).unwrap_or(last_line + 1),
            source,
        })?;
        let line = record.position().map(|p| p.line()).unwrap_or(last_line + 1);
        last_line = line;
        // The first field of the file may carry a UTF-8 byte-order mark (MRPC).
        let is_first = std::mem::take(&mut first);
        let get = |i: usize| {
            let value = record.get(i).unwrap_or("");
            let value = if is_first && i == 0 { value.trim_start_matches('\u{feff}') } else { value };
            value.trim().to_string()
        };
        if is_first && let Some(names) = layout.header {
            let found: Vec<String> = (0..record.len()).map(get).collect();
            let matches = found.len() == names.len() && found.iter().zip(names).all(|(f, n)| f.eq_ignore_ascii_case(n));
            if !matches {
                return Err(DataError::Malformed {
                    path: path.to_path_buf(),
                    line,
                    field: "header".to_string(),
                    expected: format!("the header line `{}`", names.join("\\t")),
                    found: format!("`{}`", found.join("\\t")),
                });
            }
            continue;
        }
        let this_row = row;
        row += 1;
        if record.len() != layout.columns {
            let found = format!("{} columns", record.len());
            if layout.skip_malformed {
                report.skipped += 1;
                report.skipped_rows.push(SkippedRow {
                    path: path.to_path_buf(),
                    line,
                    reason: format!("expected {} {} columns, found {found}", layout.columns, layout.separated()),
                });
                continue;
            }
            return Err(DataError::Malformed {
                path: path.to_path_buf(),
                line,
                field: "row".to_string(),
                expected: format!("{} {} columns", layout.columns, layout.separated()),
                found,
            });
        }
        out.push(Record {
            line,
            row: this_row,
            fields: layout.fields.iter().map(|(name, i)| (*name, get(*i))).collect(),
            label: get(layout.label),
            group: None,
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// JSON

fn describe(value: Option<&Value>) -> String {
    match value {
        None => "no such key".to_string(),
        Some(Value::Null) => "null".to_string(),
        Some(Value::Bool(b)) => format!("boolean {b}"),
        Some(Value::Number(n)) => format!("number {n}"),
        Some(Value::String(s)) => {
            let short: String = s.chars().take(40).collect();
            format!("string {short:?}")
        }
        Some(Value::Array(_)) => "an array".to_string(),
        Some(Value::Object(_)) => "an object".to_string(),
    }
}

/// The file as text; bytes that are not UTF-8 are an error naming their line and column (as
/// the TSV reader's are), not an I/O error without a position.
fn read_text(path: &Path) -> Result<String, DataError> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Io { path: path.to_path_buf(), source })?;
    String::from_utf8(bytes).map_err(|e| {
        let bytes = e.as_bytes();
        let at = e.utf8_error().valid_up_to();
        let line_start = bytes[..at].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        DataError::Malformed {
            path: path.to_path_buf(),
            line: bytes[..at].iter().filter(|&&b| b == b'\n').count() as u64 + 1,
            field: "row".into(),
            expected: "UTF-8 text".into(),
            found: format!("byte 0x{:02x} at byte {} of the line", bytes[at], at - line_start + 1),
        }
    })
}

/// Raw label text of a JSON label: strings as is, booleans as `true`/`false`, integers in decimal.
fn json_label(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.trim().to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) if n.is_u64() || n.is_i64() => Some(n.to_string()),
        _ => None,
    }
}

fn json_fields(
    path: &Path,
    line: u64,
    object: &Value,
    fields: &'static [(&'static str, &'static str)],
    label: &'static str,
) -> Result<(Fields, String), DataError> {
    let malformed = |field: &str, expected: &str, found: Option<&Value>| DataError::Malformed {
        path: path.to_path_buf(),
        line,
        field: field.trim_start_matches('/').replace('/', "."),
        expected: expected.to_string(),
        found: describe(found),
    };
    let mut out = Vec::with_capacity(fields.len());
    for (name, pointer) in fields {
        let value = object.pointer(pointer);
        match value {
            Some(Value::String(s)) => out.push((*name, s.trim().to_string())),
            other => return Err(malformed(pointer, "a string", other)),
        }
    }
    let value = object.pointer(label);
    let raw = json_label(value).ok_or_else(|| malformed(label, "a label (string, boolean or integer)", value))?;
    Ok((out, raw))
}

/// Non-blank lines with their 1-based line numbers.
fn lines(text: &str) -> impl Iterator<Item = (u64, &str)> {
    text.split('\n')
        .enumerate()
        .map(|(i, l)| (i as u64 + 1, l.trim_end_matches('\r')))
        .filter(|(_, l)| !l.trim().is_empty())
}

fn parse_line(path: &Path, line: u64, text: &str) -> Result<Value, DataError> {
    serde_json::from_str(text).map_err(|source| DataError::Json { path: path.to_path_buf(), line, source })
}

fn read_jsonl(
    path: &Path,
    fields: &'static [(&'static str, &'static str)],
    label: &'static str,
) -> Result<Vec<Record>, DataError> {
    let text = read_text(path)?;
    lines(&text)
        .enumerate()
        .map(|(row, (line, content))| {
            let object = parse_line(path, line, content)?;
            let (fields, label) = json_fields(path, line, &object, fields, label)?;
            Ok(Record { line, row, fields, label, group: None })
        })
        .collect()
}

/// Line numbers of the keys of the top-level JSON object in `text` (a tiny scanner tracking
/// strings and nesting depth), so errors in single-object files can name a line.
fn top_level_key_lines(text: &str) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    let mut line = 1u64;
    let mut depth = 0usize;
    let mut chars = text.chars();
    let mut expecting_key = false;
    while let Some(c) = chars.next() {
        match c {
            '\n' => line += 1,
            '{' | '[' => {
                depth += 1;
                expecting_key = depth == 1 && c == '{';
            }
            '}' | ']' => depth = depth.saturating_sub(1),
            ',' if depth == 1 => expecting_key = true,
            '"' => {
                let start_line = line;
                let mut content = String::new();
                let mut escaped = false;
                for s in chars.by_ref() {
                    if s == '\n' {
                        line += 1;
                    }
                    if escaped {
                        escaped = false;
                        content.push(s);
                    } else if s == '\\' {
                        escaped = true;
                    } else if s == '"' {
                        break;
                    } else {
                        content.push(s);
                    }
                }
                if depth == 1 && expecting_key {
                    out.insert(content, start_line);
                    expecting_key = false;
                }
            }
            _ => {}
        }
    }
    out
}

fn read_json_object(
    path: &Path,
    fields: &'static [(&'static str, &'static str)],
    label: &'static str,
) -> Result<Vec<Record>, DataError> {
    let text = read_text(path)?;
    let value: Value = serde_json::from_str(&text).map_err(|source| DataError::Json {
        path: path.to_path_buf(),
        line: source.line() as u64,
        source,
    })?;
    let Value::Object(map) = value else {
        return Err(DataError::Malformed {
            path: path.to_path_buf(),
            line: 1,
            field: "file".to_string(),
            expected: "one JSON object mapping \"0\", \"1\", ... to rows".to_string(),
            found: describe(Some(&value)),
        });
    };
    let key_lines = top_level_key_lines(&text);
    let mut rows = Vec::with_capacity(map.len());
    for (key, row) in &map {
        let line = key_lines.get(key).copied().unwrap_or(1);
        let index: usize = key.parse().map_err(|_| DataError::Malformed {
            path: path.to_path_buf(),
            line,
            field: "key".to_string(),
            expected: "a row number \"0\", \"1\", ...".to_string(),
            found: format!("{key:?}"),
        })?;
        rows.push((index, line, row));
    }
    rows.sort_by_key(|(index, _, _)| *index);
    rows.into_iter()
        .map(|(row, line, object)| {
            let (fields, label) = json_fields(path, line, object, fields, label)?;
            Ok(Record { line, row, fields, label, group: None })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// WebNLG

/// `*.xml` files under `dir`, recursively, in path order.
fn xml_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), DataError> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| DataError::Io { path: dir.to_path_buf(), source })?
        .map(|e| e.map(|e| e.path()).map_err(|source| DataError::Io { path: dir.to_path_buf(), source }))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for p in entries {
        if p.is_dir() {
            xml_files(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "xml") {
            out.push(p);
        }
    }
    Ok(())
}

/// Reads a WebNLG file or folder (see [`Reader::WebNlg`]); rows are numbered across files.
fn read_webnlg(path: &Path) -> Result<Vec<Record>, DataError> {
    let mut files = Vec::new();
    if path.is_dir() {
        xml_files(path, &mut files)?;
    } else {
        files.push(path.to_path_buf());
    }
    let mut out = Vec::new();
    for file in files {
        let text = read_text(&file)?;
        let line_of = |pos: usize| text[..pos.min(text.len())].bytes().filter(|&b| b == b'\n').count() as u64 + 1;
        let doc = roxmltree::Document::parse(&text).map_err(|e| DataError::Malformed {
            path: file.clone(),
            line: u64::from(e.pos().row),
            field: "xml".to_string(),
            expected: "a WebNLG benchmark XML file".to_string(),
            found: e.to_string(),
        })?;
        for entry in doc.descendants().filter(|n| n.has_tag_name("entry")) {
            let line = line_of(entry.range().start);
            let malformed = |field: &str, expected: &str, found: String| DataError::Malformed {
                path: file.clone(),
                line,
                field: field.to_string(),
                expected: expected.to_string(),
                found,
            };
            let triples: Vec<String> = entry
                .children()
                .filter(|n| n.has_tag_name("modifiedtripleset"))
                .flat_map(|set| set.children().filter(|n| n.has_tag_name("mtriple")))
                .map(|t| {
                    let parts: Vec<String> =
                        t.text().unwrap_or("").split('|').map(|p| p.trim().replace('_', " ")).collect();
                    parts.join(" | ")
                })
                .collect();
            if triples.is_empty() || triples.iter().any(|t| t.split(" | ").count() != 3) {
                return Err(malformed(
                    "modifiedtripleset",
                    "one or more <mtriple> elements `subject | predicate | object`",
                    format!("{} triples", triples.len()),
                ));
            }
            let triples = triples.join(" && ");
            for lex in entry.children().filter(|n| n.has_tag_name("lex")) {
                let reference = lex.text().unwrap_or("").trim().to_string();
                if reference.is_empty() {
                    return Err(DataError::Malformed {
                        path: file.clone(),
                        line: line_of(lex.range().start),
                        field: "lex".to_string(),
                        expected: "a reference text".to_string(),
                        found: "an empty <lex>".to_string(),
                    });
                }
                let row = out.len();
                out.push(Record {
                    line: line_of(lex.range().start),
                    row,
                    fields: vec![("triples", triples.clone())],
                    label: reference,
                    group: None,
                });
            }
        }
    }
    Ok(out)
}

fn read_multirc(path: &Path, task: &TaskSpec, file: &SourceFile) -> Result<Vec<Record>, DataError> {
    let text = read_text(path)?;
    let mut out = Vec::new();
    for (line, content) in lines(&text) {
        let passage = parse_line(path, line, content)?;
        let malformed = |field: String, expected: &str, found: Option<&Value>| DataError::Malformed {
            path: path.to_path_buf(),
            line,
            field,
            expected: expected.to_string(),
            found: describe(found),
        };
        let paragraph = match passage.pointer("/passage/text") {
            Some(Value::String(s)) => s.trim().to_string(),
            other => return Err(malformed("passage.text".into(), "a string", other)),
        };
        let questions = match passage.pointer("/passage/questions") {
            Some(Value::Array(a)) => a,
            other => return Err(malformed("passage.questions".into(), "an array", other)),
        };
        for (qi, question) in questions.iter().enumerate() {
            let q_text = match question.get("question") {
                Some(Value::String(s)) => s.trim().to_string(),
                other => {
                    let field = format!("passage.questions[{qi}].question");
                    return Err(malformed(field, "a string", other));
                }
            };
            let q_idx = match question.get("idx") {
                Some(Value::Number(n)) => n.to_string(),
                other => {
                    let field = format!("passage.questions[{qi}].idx");
                    return Err(malformed(field, "an integer question id", other));
                }
            };
            let answers = match question.get("answers") {
                Some(Value::Array(a)) => a,
                other => {
                    let field = format!("passage.questions[{qi}].answers");
                    return Err(malformed(field, "an array", other));
                }
            };
            let group = format!("{}/{}/q{q_idx}", task.name, file.key);
            for (ai, answer) in answers.iter().enumerate() {
                let a_text = match answer.get("text") {
                    Some(Value::String(s)) => s.trim().to_string(),
                    other => {
                        let field = format!("passage.questions[{qi}].answers[{ai}].text");
                        return Err(malformed(field, "a string", other));
                    }
                };
                let value = answer.get("label");
                let label = json_label(value).ok_or_else(|| {
                    let field = format!("passage.questions[{qi}].answers[{ai}].label");
                    malformed(field, "a label 0 or 1", value)
                })?;
                let row = out.len();
                out.push(Record {
                    line,
                    row,
                    fields: vec![("question", q_text.clone()), ("answer", a_text), ("paragraph", paragraph.clone())],
                    label,
                    group: Some(group.clone()),
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::lookup;

    fn file_of(task: &str, path_suffix: &str) -> (&'static TaskSpec, SourceFile) {
        let task = lookup(task).unwrap();
        let file = task.files().into_iter().find(|f| f.path.ends_with(path_suffix)).unwrap();
        (task, file)
    }

    fn write(dir: &tempfile::TempDir, name: &str, content: &str) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    #[test]
    fn glue_tsv_keeps_quotes_strips_bom_and_crlf() {
        let dir = tempfile::tempdir().unwrap();
        let (task, file) = file_of("mrpc", "train.tsv");
        let path = write(
            &dir,
            "train.tsv",
            "\u{feff}Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\r\n1\t1\t2\t\"Quoted start\tplain \r\n0\t3\t4\ta\tb\n",
        );
        let (examples, report) = read_file(&path, task, &file).unwrap();
        assert_eq!(report, LoadReport::default());
        assert_eq!(examples.len(), 2);
        assert_eq!(examples[0].text_a, "\"Quoted start");
        assert_eq!(examples[0].text_b.as_deref(), Some("plain"));
        assert_eq!(examples[0].input, "mrpc sentence1: \"Quoted start sentence2: plain");
        assert_eq!(examples[0].label, 1);
        assert_eq!(examples[0].id, "mrpc/train/0");
        assert_eq!(examples[1].id, "mrpc/train/1");
        assert_eq!(examples[1].target(task), "not equivalent");
    }

    #[test]
    fn malformed_tsv_row_names_file_line_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let (task, file) = file_of("rte", "train.tsv");
        let path = write(
            &dir,
            "train.tsv",
            "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\ta\tb not_entailment\n",
        );
        let err = read_file(&path, task, &file).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&format!("{}:3:", path.display())), "{msg}");
        assert!(msg.contains("field `row`") && msg.contains("4 tab-separated columns"), "{msg}");
        assert!(matches!(err, DataError::Malformed { line: 3, .. }));
    }

    #[test]
    fn unknown_label_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let (task, file) = file_of("rte", "dev.tsv");
        let path = write(&dir, "dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tmaybe\n");
        let msg = read_file(&path, task, &file).unwrap_err().to_string();
        assert!(msg.contains(&format!("{}:2:", path.display())), "{msg}");
        assert!(msg.contains("\"maybe\"") && msg.contains("entailment, not_entailment"), "{msg}");
    }

    #[test]
    fn empty_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (task, file) = file_of("rte", "dev.tsv");
        for content in ["", "index\tsentence1\tsentence2\tlabel\n"] {
            let path = write(&dir, "dev.tsv", content);
            let msg = read_file(&path, task, &file).unwrap_err().to_string();
            assert!(msg.contains(":1: field `file`") && msg.contains("no data rows"), "{msg}");
        }
    }

    #[test]
    fn wrong_header_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (task, file) = file_of("rte", "dev.tsv");
        let path = write(&dir, "dev.tsv", "a\tb\tc\td\n0\ta\tb\tentailment\n");
        let msg = read_file(&path, task, &file).unwrap_err().to_string();
        assert!(msg.contains(":1: field `header`"), "{msg}");
    }

    #[test]
    fn qqp_cutoff_skips_and_counts_malformed_rows() {
        let dir = tempfile::tempdir().unwrap();
        let (task, file) = file_of("qqp", "new_dev.tsv");
        let path = write(&dir, "new_dev.tsv", "1\t2\t3\tq1?\tq2? 0\n4\t5\t6\tq3?\tq4?\t1\n");
        let (examples, report) = read_file(&path, task, &file).unwrap();
        assert_eq!(examples.len(), 1);
        assert_eq!(examples[0].id, "qqp/cutoff/1");
        assert_eq!(report.skipped, 1);
        assert_eq!(report.skipped_rows[0].line, 1);
    }

    #[test]
    fn quoted_tsv_unquotes() {
        let dir = tempfile::tempdir().unwrap();
        let (task, file) = file_of("snli", "test.tsv");
        let path = write(&dir, "test.tsv", "premise\thypothesis\tlabel\n\"A \"\"quoted\"\" man.\"\tA man.\t2\n");
        let (examples, _) = read_file(&path, task, &file).unwrap();
        assert_eq!(examples[0].text_a, "A \"quoted\" man.");
        assert_eq!(examples[0].target(task), "contradiction");
    }

    #[test]
    fn jsonl_errors_name_line_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let (task, file) = file_of("boolq", "val.jsonl");
        let path = write(
            &dir,
            "val.jsonl",
            "{\"question\": \"q\", \"passage\": \"p\", \"label\": true}\n\n{\"question\": \"q\", \"label\": false}\n",
        );
        let msg = read_file(&path, task, &file).unwrap_err().to_string();
        assert!(msg.contains(&format!("{}:3:", path.display())), "{msg}");
        assert!(msg.contains("field `passage`") && msg.contains("no such key"), "{msg}");
        let path = write(&dir, "bad.jsonl", "{\"question\": \n");
        let msg = read_file(&path, task, &file).unwrap_err().to_string();
        assert!(msg.contains("bad.jsonl:1: invalid JSON"), "{msg}");
    }

    #[test]
    fn bytes_that_are_not_utf8_are_named_by_line() {
        let dir = tempfile::tempdir().unwrap();
        let (task, file) = file_of("boolq", "val.jsonl");
        let path = dir.path().join("val.jsonl");
        let mut bytes = b"{\"question\": \"q\", \"passage\": \"p\", \"label\": true}\n".to_vec();
        bytes.extend_from_slice(b"{\"question\": \"q\xff\", \"passage\": \"p\", \"label\": true}\n");
        std::fs::write(&path, bytes).unwrap();
        let err = read_file(&path, task, &file).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("{}:2:", path.display())) && msg.contains("UTF-8") && msg.contains("0xff"),
            "{msg}"
        );
        assert!(msg.contains("byte 16 of the line"), "{msg}");
        assert!(matches!(err, DataError::Malformed { line: 2, .. }));
    }

    #[test]
    fn json_object_rows_in_numeric_order_with_lines() {
        let dir = tempfile::tempdir().unwrap();
        let (task, file) = file_of("qnli", "ppft/dev.json");
        let body = "{\n  \"0\": {\"text_a\": \"q0\", \"text_b\": \"s0\", \"label\": \"entailment\"},\n  \"10\": {\"text_a\": \"q10\", \"text_b\": \"s10\", \"label\": \"entailment\"},\n  \"2\": {\"text_a\": \"q2\", \"text_b\": \"s2\", \"label\": \"wrong\"}\n}\n";
        let path = write(&dir, "dev.json", body);
        let msg = read_file(&path, task, &file).unwrap_err().to_string();
        assert!(msg.contains(&format!("{}:4:", path.display())), "{msg}");
        let path = write(&dir, "ok.json", &body.replace("wrong", "not_entailment"));
        let (examples, _) = read_file(&path, task, &file).unwrap();
        let ids: Vec<&str> = examples.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["qnli/ppft_dev/0", "qnli/ppft_dev/2", "qnli/ppft_dev/10"]);
        assert_eq!(examples[1].input, "qnli question: q2 sentence: s2");
        assert_eq!(examples[1].target(task), "not entailment");
    }

    #[test]
    fn stsb_score_buckets_round_half_to_even() {
        let dir = tempfile::tempdir().unwrap();
        let (task, file) = file_of("stsb", "dev.tsv");
        let header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n";
        let rows = ["5.000", "3.800", "4.750", "0.100", "0.300", "0.000"]
            .iter()
            .map(|s| format!("0\tg\tf\ty\t0\tn\tn\ta\tb\t{s}\n"))
            .collect::<String>();
        let path = write(&dir, "dev.tsv", &format!("{header}{rows}"));
        let (examples, _) = read_file(&path, task, &file).unwrap();
        let buckets: Vec<&str> = examples.iter().map(|e| e.target(task)).collect();
        assert_eq!(buckets, ["5.0", "3.8", "4.8", "0.0", "0.4", "0.0"]);
        assert_eq!(examples[2].score, Some(4.75));
        let path = write(&dir, "bad.tsv", &format!("{header}0\tg\tf\ty\t0\tn\tn\ta\tb\t5.5\n"));
        let msg = read_file(&path, task, &file).unwrap_err().to_string();
        assert!(msg.contains(":2: field `score`"), "{msg}");
    }

    #[test]
    fn multirc_one_example_per_answer_grouped_by_question() {
        let dir = tempfile::tempdir().unwrap();
        let (task, file) = file_of("multirc", "val.jsonl");
        let line = r#"{"idx": 0, "passage": {"text": "P.", "questions": [{"question": "Q?", "idx": 7, "answers": [{"text": "A", "idx": 0, "label": 1}, {"text": "B", "idx": 1, "label": 0}]}]}}"#;
        let path = write(&dir, "val.jsonl", &format!("{line}\n"));
        let (examples, _) = read_file(&path, task, &file).unwrap();
        assert_eq!(examples.len(), 2);
        assert_eq!(examples[0].input, "multirc question: Q? answer: A paragraph: P.");
        assert_eq!(examples[0].text_a, "Q? A");
        assert_eq!(examples[0].group.as_deref(), Some("multirc/val/q7"));
        assert_eq!(examples[1].label, 0);
        assert_eq!(examples[1].id, "multirc/val/1");
    }
}
