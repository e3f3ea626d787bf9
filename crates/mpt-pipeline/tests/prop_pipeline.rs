//! Property tests of pipeline parsing on untrusted text (issue 15): random mutations of the tiny
//! pipeline (lines deleted, duplicated, swapped or inserted, random values for its keys, random
//! bytes) go through [`Pipeline::parse`], which must return `Ok` or an `Err`, never panic, and
//! whose errors must print (naming a file: the pipeline, or the data or task file at fault).
//!
//! `PROPTEST_CASES` overrides the case count (scripts/fuzz.sh raises it).

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use common::{set, tiny_toml};
use mpt_pipeline::Pipeline;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

const FILE: &str = "prop-pipeline.toml";

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

fn base() -> String {
    tiny_toml(Path::new("/tmp/mpt-prop-pipeline-run"))
}

/// A TOML value as text: every type, boundaries, and values a key may not take.
fn toml_value() -> impl Strategy<Value = String> {
    let scalar = prop_oneof![
        prop::sample::select(vec![
            "0",
            "1",
            "-1",
            "2",
            "3",
            "9223372036854775807",
            "-9223372036854775808",
            "4294967296",
            "0.0",
            "-0.0",
            "1e308",
            "1e-320",
            "nan",
            "inf",
            "-inf",
            "true",
            "false",
            "\"\"",
            "\"test\"",
            "\"dev\"",
            "\"vocab\"",
            "\"text:\"",
            "\"text:hello\"",
            "\"random\"",
            "\"rte\"",
            "\"mnli\"",
            "\"cb\"",
            "\"average\"",
            "\"/\"",
            "\"/nonexistent\"",
            "\"..\"",
            "1979-05-27T07:32:00Z",
            "[]",
            "{}",
            "[[]]",
            "[1, \"a\"]",
            "{ max_train = 0 }",
            "{ max_steps = 0, lengths = { max_input = 0 } }",
            "[\"mnli\", \"mnli\"]",
            "[\"rte\", \"cb\"]",
            "[0, 0]",
            "[100000]",
        ])
        .prop_map(str::to_string),
        any::<i64>().prop_map(|v| v.to_string()),
        (-1e6f64..1e6).prop_map(|v| format!("{v:e}")),
        // Any printable text, as a valid TOML string.
        "\\PC{0,16}".prop_map(|s| toml::Value::String(s).to_string()),
        // Task lists: the fixture root has mnli, qnli, rte and cb; others name missing files.
        prop::collection::vec(
            prop::sample::select(vec!["mnli", "qnli", "rte", "cb", "boolq", "multirc", "stsb", "squad", "MNLI", "x"]),
            0..4
        )
        .prop_map(|v| format!("{v:?}")),
        prop::collection::vec(0u64..20, 0..4).prop_map(|v| format!("{v:?}")),
    ];
    scalar
}

#[derive(Debug, Clone)]
enum Mutation {
    Delete(usize),
    Duplicate(usize),
    Swap(usize, usize),
    /// Replace the value of the key on line `n` (if it has one).
    Value(usize, String),
    /// Insert `key = value` after line `n`.
    Insert(usize, String, String),
    /// Overwrite bytes at a position (in 1/10000 of the length) with random bytes.
    Bytes(u32, Vec<u8>),
    /// Cut the text to a fraction (in 1/1000) of its length.
    Truncate(u32),
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "name",
            "backbone",
            "data_root",
            "run_dir",
            "tasks_file",
            "length",
            "rank",
            "init",
            "batch_size",
            "learning_rate",
            "max_steps",
            "eval_every",
            "seed",
            "max_train",
            "max_dev",
            "few_shot_k",
            "tasks",
            "kappa",
            "lambda",
            "temperature",
            "few_shot",
            "seeds",
            "mpt",
            "vanilla",
            "spot",
            "multitask",
            "max_examples",
            "split",
            "train",
            "data",
            "lengths",
            "max_input",
            "max_target",
            "[sources]",
            "[tasks.own]",
            "[cluster]",
        ])
        .prop_map(str::to_string),
        "[a-z_]{1,10}",
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        2 => any::<usize>().prop_map(Mutation::Delete),
        1 => any::<usize>().prop_map(Mutation::Duplicate),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::Swap(a, b)),
        8 => (any::<usize>(), toml_value()).prop_map(|(n, v)| Mutation::Value(n, v)),
        2 => (any::<usize>(), key(), toml_value()).prop_map(|(n, k, v)| Mutation::Insert(n, k, v)),
        1 => (0u32..10_000, prop::collection::vec(any::<u8>(), 1..6)).prop_map(|(at, b)| Mutation::Bytes(at, b)),
        1 => (0u32..1000).prop_map(Mutation::Truncate),
    ]
}

fn apply(text: &str, m: &Mutation) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let n = lines.len().max(1);
    match m {
        Mutation::Delete(i) if !lines.is_empty() => {
            lines.remove(i % n);
        }
        Mutation::Duplicate(i) if !lines.is_empty() => {
            let l = lines[i % n].clone();
            lines.insert(i % n, l);
        }
        Mutation::Swap(a, b) if !lines.is_empty() => lines.swap(a % n, b % n),
        Mutation::Value(i, v) if !lines.is_empty() => {
            let l = &mut lines[i % n];
            if let Some(eq) = l.find('=') {
                *l = format!("{} {v}", &l[..=eq]);
            }
        }
        Mutation::Insert(i, k, v) => {
            let line = if k.starts_with('[') { k.clone() } else { format!("{k} = {v}") };
            lines.insert((i % n + 1).min(lines.len()), line);
        }
        Mutation::Bytes(at, bytes) => {
            let mut b = text.as_bytes().to_vec();
            let start = (*at as usize * b.len() / 10_000).min(b.len());
            for (j, x) in bytes.iter().enumerate() {
                match b.get_mut(start + j) {
                    Some(slot) => *slot = *x,
                    None => b.push(*x),
                }
            }
            return String::from_utf8_lossy(&b).into_owned();
        }
        Mutation::Truncate(at) => {
            let b = text.as_bytes();
            return String::from_utf8_lossy(&b[..*at as usize * b.len() / 1000]).into_owned();
        }
        _ => {}
    }
    lines.join("\n") + "\n"
}

/// Parses `text`, failing the case on a panic, or on an error that prints no file.
fn check(text: &str) -> Result<(), TestCaseError> {
    let result = catch_unwind(AssertUnwindSafe(|| Pipeline::parse(Path::new(FILE), text)));
    let result = result.map_err(|p| {
        let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
        TestCaseError::fail(format!("Pipeline::parse panicked: {msg:?}\n--- text\n{text}"))
    })?;
    if let Err(e) = result {
        let shown = catch_unwind(AssertUnwindSafe(|| e.to_string()))
            .map_err(|_| TestCaseError::fail(format!("printing the error panicked\n--- text\n{text}")))?;
        // The pipeline file, or the data/task/model file the error is about.
        prop_assert!(shown.contains(FILE) || shown.contains('/'), "the error names no file: {shown}\n--- text\n{text}");
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(256))]

    /// Any mutation: most end in a syntax or type error.
    #[test]
    fn mutated_pipelines_parse_or_fail_with_a_message(mutations in prop::collection::vec(mutation(), 1..5)) {
        let text = mutations.iter().fold(base(), |text, m| apply(&text, m));
        check(&text)?;
    }

    /// Only new values for existing keys: well-formed TOML, so the checks after the syntax
    /// (types, ranges, tasks, data files, few-shot k against the classes) are reached.
    #[test]
    fn new_values_for_the_keys_parse_or_fail_with_a_message(
        values in prop::collection::vec((any::<usize>(), toml_value()), 1..4),
    ) {
        let text = values.into_iter().fold(base(), |text, (n, v)| apply(&text, &Mutation::Value(n, v)));
        check(&text)?;
    }
}

/// `(section, key)` of the tiny pipeline's numeric keys, whose small values the checks after
/// the types judge (ranges, kappa against the sources, few-shot k against each class).
const NUMBERS: &[(&str, &str)] = &[
    ("prompt", "length"),
    ("prompt", "rank"),
    ("train", "batch_size"),
    ("train", "max_steps"),
    ("train", "eval_every"),
    ("train", "eval_batch_size"),
    ("train", "learning_rate"),
    ("train.lengths", "max_input"),
    ("train.lengths", "max_target"),
    ("data", "max_train"),
    ("data", "max_dev"),
    ("distill", "lambda"),
    ("distill", "kappa"),
    ("targets", "few_shot"),
    ("targets", "seeds"),
    ("eval", "max_examples"),
];

/// A value of `key`'s type (mostly): an integer, a float, or a list of integers.
fn number_for(key: &str) -> BoxedStrategy<String> {
    let int = (0u64..40).prop_map(|v| v.to_string());
    let list = prop::collection::vec(0u64..40, 0..4).prop_map(|v| format!("{v:?}"));
    let float = prop::sample::select(vec!["0.0", "1e-9", "0.5", "0.9", "1.0", "-0.5", "1e30", "nan", "inf"])
        .prop_map(str::to_string);
    match key {
        "few_shot" | "seeds" => prop_oneof![4 => list, 1 => int].boxed(),
        "lambda" | "learning_rate" => prop_oneof![4 => float, 1 => int].boxed(),
        _ => prop_oneof![6 => int, 1 => float, 1 => list].boxed(),
    }
}

proptest! {
    #![proptest_config(cases(128))]

    /// Small numbers (and lists of them) for the numeric keys: mostly well-typed, so the range
    /// and data checks decide.
    #[test]
    fn small_numbers_for_the_numeric_keys_parse_or_fail_with_a_message(
        edits in prop::collection::vec((0..NUMBERS.len()).prop_flat_map(|i| (Just(i), number_for(NUMBERS[i].1))), 1..4),
    ) {
        let text = edits.into_iter().fold(base(), |text, (i, v)| {
            let (section, key) = NUMBERS[i];
            if text.lines().any(|l| l.split('=').next().map(str::trim) == Some(key)) {
                set(&text, section, key, &format!("{key} = {v}"))
            } else {
                text
            }
        });
        check(&text)?;
    }
}

/// The unmutated pipeline is valid (the property starts from a valid file).
#[test]
fn the_original_parses() {
    Pipeline::parse(Path::new(FILE), &base()).unwrap();
}
