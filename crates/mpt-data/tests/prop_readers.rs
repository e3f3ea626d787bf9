//! Property tests of the data readers on untrusted bytes (issue 15): the synthetic RTE (GLUE
//! TSV) and CB (SuperGLUE JSON Lines) files of tests/fixtures/data, mutated row by row and byte
//! by byte, and plain random bytes for every file of every registered task, go through
//! [`mpt_data::read_file`], which must return `Ok` or an `Err` naming the file, never panic.
//!
//! `PROPTEST_CASES` overrides the case count (scripts/fuzz.sh raises it).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use mpt_data::{SourceFile, TASKS, TaskSpec, lookup, read_file};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

/// `default` cases (`PROPTEST_CASES` wins) from a fixed seed (`PROPTEST_RNG_SEED` wins), so
/// the suite is the same on every run; scripts/fuzz.sh explores new seeds.
fn cases(default: u32) -> Config {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
    Config {
        cases: env("PROPTEST_CASES").map_or(default, |c: u64| c as u32),
        rng_seed: RngSeed::Fixed(env("PROPTEST_RNG_SEED").unwrap_or(15)),
        failure_persistence: None,
        ..Config::default()
    }
}

fn fixture_data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/data")
}

/// `task`'s file whose path ends with `suffix`, and that file's committed fixture text.
fn source(task: &str, suffix: &str) -> (&'static TaskSpec, SourceFile, String) {
    let spec = lookup(task).unwrap();
    let file = spec.files().into_iter().find(|f| f.path.ends_with(suffix)).unwrap();
    let text = std::fs::read_to_string(fixture_data().join(file.path)).unwrap();
    (spec, file, text)
}

/// Writes `bytes` to a fresh file and reads it, asserting no panic and an error naming the file.
fn check(spec: &TaskSpec, file: &SourceFile, bytes: &[u8]) -> Result<(), TestCaseError> {
    let tmp = tempfile::tempdir().unwrap();
    let name = Path::new(file.path).file_name().unwrap();
    let path = tmp.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    let result = catch_unwind(AssertUnwindSafe(|| read_file(&path, spec, file))).map_err(|p| {
        let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
        TestCaseError::fail(format!(
            "read_file({}, {}) panicked: {msg:?}\n--- input\n{:?}",
            spec.name,
            file.path,
            String::from_utf8_lossy(bytes)
        ))
    })?;
    if let Err(e) = result {
        let shown = e.to_string();
        prop_assert!(
            shown.contains(&path.display().to_string()),
            "the error does not name {}: {shown}",
            path.display()
        );
    }
    Ok(())
}

/// A cell or JSON value that a reader may meet.
fn cell() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "",
            "entailment",
            "not_entailment",
            "neutral",
            "contradiction",
            "0",
            "1",
            "-1",
            "2",
            "99999999999999999999",
            "true",
            "null",
            "\"",
            "\"\"",
            "\t",
            "\r",
            "\u{feff}",
            "é",
            "\u{0}",
        ])
        .prop_map(str::to_string),
        "\\PC{0,12}",
    ]
}

#[derive(Debug, Clone)]
enum Row {
    Delete(usize),
    Duplicate(usize),
    /// Replace tab-separated field `f` of line `n`.
    Cell(usize, usize, String),
    /// Remove or add a tab-separated field of line `n`.
    DropCell(usize, usize),
    AddCell(usize, String),
    /// Replace the value of JSON key `k` (by index) on line `n` with raw JSON text.
    Json(usize, usize, String),
    /// Overwrite bytes (position in 1/10000 of the length).
    Bytes(u32, Vec<u8>),
    Truncate(u32),
    /// Line ends: LF to CRLF, or a BOM in front.
    Crlf,
    Bom,
}

fn json_value() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "null",
            "true",
            "false",
            "0",
            "1",
            "-1",
            "2",
            "1.5",
            "1e400",
            "\"\"",
            "[]",
            "{}",
            "[\"a\"]",
            "{\"a\": 1}",
            "\"entailment\"",
            "\"neutral\"",
            "\"contradiction\"",
            "\"\\ud800\"",
            "\"\\u0000\"",
        ])
        .prop_map(str::to_string),
        cell().prop_map(|s| serde_json::to_string(&s).unwrap()),
        any::<i64>().prop_map(|v| v.to_string()),
    ]
}

fn row_mutation() -> impl Strategy<Value = Row> {
    prop_oneof![
        2 => any::<usize>().prop_map(Row::Delete),
        1 => any::<usize>().prop_map(Row::Duplicate),
        4 => (any::<usize>(), 0usize..6, cell()).prop_map(|(n, f, c)| Row::Cell(n, f, c)),
        1 => (any::<usize>(), 0usize..6).prop_map(|(n, f)| Row::DropCell(n, f)),
        1 => (any::<usize>(), cell()).prop_map(|(n, c)| Row::AddCell(n, c)),
        4 => (any::<usize>(), 0usize..6, json_value()).prop_map(|(n, k, v)| Row::Json(n, k, v)),
        2 => (0u32..10_000, prop::collection::vec(any::<u8>(), 1..6)).prop_map(|(at, b)| Row::Bytes(at, b)),
        1 => (0u32..1000).prop_map(Row::Truncate),
        1 => Just(Row::Crlf),
        1 => Just(Row::Bom),
    ]
}

fn apply(bytes: Vec<u8>, m: &Row) -> Vec<u8> {
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
    let n = lines.len();
    match m {
        Row::Delete(i) => {
            lines.remove(i % n);
        }
        Row::Duplicate(i) => {
            let l = lines[i % n].clone();
            lines.insert(i % n, l);
        }
        Row::Cell(i, f, c) => {
            let mut cells: Vec<String> = lines[i % n].split('\t').map(str::to_string).collect();
            let k = f % cells.len();
            cells[k] = c.clone();
            lines[i % n] = cells.join("\t");
        }
        Row::DropCell(i, f) => {
            let mut cells: Vec<String> = lines[i % n].split('\t').map(str::to_string).collect();
            cells.remove(f % cells.len());
            lines[i % n] = cells.join("\t");
        }
        Row::AddCell(i, c) => lines[i % n] = format!("{}\t{c}", lines[i % n]),
        Row::Json(i, k, v) => {
            if let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(&lines[i % n]) {
                let mut parts: Vec<String> =
                    map.iter().map(|(key, val)| format!("{}: {}", serde_json::to_string(key).unwrap(), val)).collect();
                if !parts.is_empty() {
                    let j = k % parts.len();
                    let key = map.keys().nth(j).unwrap();
                    parts[j] = format!("{}: {v}", serde_json::to_string(key).unwrap());
                }
                lines[i % n] = format!("{{{}}}", parts.join(", "));
            }
        }
        Row::Bytes(at, new) => {
            let mut b = bytes;
            let start = (*at as usize * b.len() / 10_000).min(b.len());
            for (j, x) in new.iter().enumerate() {
                match b.get_mut(start + j) {
                    Some(slot) => *slot = *x,
                    None => b.push(*x),
                }
            }
            return b;
        }
        Row::Truncate(at) => return bytes[..*at as usize * bytes.len() / 1000].to_vec(),
        Row::Crlf => return text.replace('\n', "\r\n").into_bytes(),
        Row::Bom => return [&b"\xef\xbb\xbf"[..], &bytes].concat(),
    }
    lines.join("\n").into_bytes()
}

proptest! {
    #![proptest_config(cases(256))]

    /// GLUE TSV (RTE's train file, header and 4 columns).
    #[test]
    fn mutated_tsv_rows_read_or_fail_naming_the_file(mutations in prop::collection::vec(row_mutation(), 1..5)) {
        let (spec, file, text) = source("rte", "train.tsv");
        let bytes = mutations.iter().fold(text.into_bytes(), apply);
        check(spec, &file, &bytes)?;
    }

    /// SuperGLUE JSON Lines (CB's val file).
    #[test]
    fn mutated_jsonl_rows_read_or_fail_naming_the_file(mutations in prop::collection::vec(row_mutation(), 1..5)) {
        let (spec, file, text) = source("cb", "val.jsonl");
        let bytes = mutations.iter().fold(text.into_bytes(), apply);
        check(spec, &file, &bytes)?;
    }

    /// Random bytes (or random text lines) for any file of any registered task, every reader.
    #[test]
    fn random_bytes_for_any_task_file_read_or_fail_naming_the_file(
        task in 0..TASKS.len(),
        which in any::<usize>(),
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..256),
            prop::collection::vec(prop::collection::vec(cell(), 0..6).prop_map(|c| c.join("\t")), 0..6)
                .prop_map(|l| l.join("\n").into_bytes()),
            prop::collection::vec(prop::collection::vec(json_value(), 0..4), 0..5).prop_map(|rows| rows
                .iter()
                .map(|vals| format!("{{{}}}", vals.iter().enumerate()
                    .map(|(i, v)| format!("\"{}\": {v}", ["premise", "hypothesis", "label", "idx"][i]))
                    .collect::<Vec<_>>().join(", ")))
                .collect::<Vec<_>>().join("\n").into_bytes()),
        ],
    ) {
        let spec = &TASKS[task];
        let files = spec.files();
        let file = files[which % files.len()];
        check(spec, &file, &bytes)?;
    }
}

/// The unmutated fixtures read (the properties above start from valid files).
#[test]
fn the_fixtures_read() {
    for (task, suffix) in [("rte", "train.tsv"), ("cb", "val.jsonl")] {
        let (spec, file, _) = source(task, suffix);
        let (rows, _) = read_file(&fixture_data().join(file.path), spec, &file).unwrap();
        assert!(!rows.is_empty());
    }
}
