//! Pipeline files for the tests: the committed tiny fixtures with absolute paths.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use mpt_pipeline::{Pipeline, PipelineError};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

pub fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures").join(name)
}

/// A quickstart-like pipeline on bert-tiny and the synthetic data, tiny everywhere:
/// sources mnli + qnli, target rte, 2 training steps, capped data.
pub fn tiny_toml(run_dir: &Path) -> String {
    format!(
        r#"name = "tiny"
backbone = "{backbone}"
data_root = "{data}"
run_dir = "{run}"

[prompt]
length = 4
rank = 1
init = "vocab"

[train]
batch_size = 4
learning_rate = 0.03
max_steps = 2
eval_every = 2
eval_batch_size = 16
seed = 1

[train.lengths]
max_input = 48
max_target = 8

[data]
max_train = 12
max_dev = 6

[sources]
tasks = ["mnli", "qnli"]

[distill]
lambda = 0.9
kappa = 2

[targets]
tasks = ["rte"]
few_shot = [2]
seeds = [0, 1]

[methods]
mpt = ["average"]
vanilla = true

[eval]
split = "test"
max_examples = 8
"#,
        backbone = fixture("bert-tiny").display(),
        data = fixture("data").display(),
        run = run_dir.display(),
    )
}

/// `text` with `line` inserted right after the header `[section]` (or at the top for "").
pub fn with(text: &str, section: &str, line: &str) -> String {
    if section.is_empty() {
        return format!("{line}\n{text}");
    }
    let header = format!("[{section}]\n");
    assert!(text.contains(&header), "no [{section}] in the pipeline");
    text.replacen(&header, &format!("{header}{line}\n"), 1)
}

/// `text` with the line starting with `key =` in `[section]` replaced by `line`.
pub fn set(text: &str, section: &str, key: &str, line: &str) -> String {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut done = false;
    for l in text.lines() {
        if l.starts_with('[') {
            current = l.trim_matches(|c| c == '[' || c == ']').to_string();
        }
        if !done && current == section && l.split('=').next().map(str::trim) == Some(key) {
            out.push(line.to_string());
            done = true;
        } else {
            out.push(l.to_string());
        }
    }
    assert!(done, "no `{key}` in [{section}]");
    out.join("\n") + "\n"
}

pub fn parse(text: &str) -> Result<Pipeline, PipelineError> {
    Pipeline::parse(Path::new("test-pipeline.toml"), text)
}

/// The key path of a parse or validation error.
pub fn error_key(text: &str) -> (String, String) {
    match parse(text) {
        Err(PipelineError::Parse { key, message, .. }) | Err(PipelineError::Invalid { key, message, .. }) => {
            (key, message)
        }
        Err(other) => panic!("expected a parse/validation error, got {other:?}"),
        Ok(_) => panic!("the pipeline was accepted:\n{text}"),
    }
}
