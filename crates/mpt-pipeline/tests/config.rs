//! Pipeline parsing and validation: every error names the key path, before any work.

mod common;

use std::path::Path;

use common::*;
use mpt_core::init::PromptInit;
use mpt_pipeline::{Pipeline, PipelineError};

fn base() -> String {
    tiny_toml(Path::new("/tmp/mpt-pipeline-test-run"))
}

#[test]
fn the_tiny_pipeline_is_valid_and_resolves_every_stage() {
    let p = parse(&base()).unwrap();
    assert_eq!(p.file.name, "tiny");
    assert_eq!(p.init, PromptInit::Vocab);
    assert_eq!(p.kappa(), 2);
    assert_eq!(p.data_root, fixture("data"));
    assert_eq!(p.run_dir, Path::new("/tmp/mpt-pipeline-test-run"));
    for t in [&p.teacher_train, &p.distill_train, &p.target_train] {
        assert_eq!((t.max_steps, t.batch_size, t.eval_every, t.seed), (2, 4, 2, 1));
        assert_eq!((t.lengths.max_input, t.lengths.max_target), (48, 8));
    }
    for d in [&p.teacher_data, &p.distill_data, &p.target_data] {
        assert_eq!((d.max_train, d.max_dev), (Some(12), Some(6)));
    }
    assert_eq!(p.text, base());
}

#[test]
fn section_overrides_apply_key_by_key() {
    let text = with(&base(), "distill", "train = { max_steps = 5, lengths = { max_input = 32 } }");
    let text = with(&text, "targets", "data = { max_train = 3 }");
    let p = parse(&text).unwrap();
    assert_eq!(p.distill_train.max_steps, 5);
    assert_eq!(p.distill_train.batch_size, 4, "untouched keys keep the [train] value");
    assert_eq!(p.distill_train.lengths.max_input, 32);
    assert_eq!(p.distill_train.lengths.max_target, 8, "sub-tables merge key by key too");
    assert_eq!(p.teacher_train.max_steps, 2);
    assert_eq!(p.target_train.max_steps, 2);
    assert_eq!(p.target_data.max_train, Some(3));
    assert_eq!(p.target_data.max_dev, Some(6));
    assert_eq!(p.teacher_data.max_train, Some(12));
}

#[test]
fn defaults_fill_optional_sections() {
    let p = parse(&base()).unwrap();
    assert_eq!(p.file.distill.temperature, 1.0);
    assert!(p.file.distill.hidden_loss);
    assert_eq!(p.file.distill.shared_init, mpt_distill::SharedStart::TeacherMean);
    assert!(!p.file.methods.no_distillation && !p.file.methods.no_decomposition && !p.file.methods.multitask);
    assert_eq!(p.file.eval.batch_size, 32);
    // No run_dir: runs/<name>.
    let text: String = base().lines().filter(|l| !l.starts_with("run_dir")).map(|l| format!("{l}\n")).collect();
    assert_eq!(parse(&text).unwrap().run_dir, Path::new("runs/tiny"));
}

fn assert_key(text: &str, want: &str) -> String {
    let (key, message) = error_key(text);
    assert_eq!(key, want, "message: {message}");
    // The Display form names the key too.
    let shown = parse(text).unwrap_err().to_string();
    assert!(shown.contains(&format!("`{want}`")), "{shown}");
    assert!(shown.contains("test-pipeline.toml"), "{shown}");
    message
}

#[test]
fn unknown_keys_are_named_with_their_path() {
    let msg = assert_key(&with(&base(), "", "colour = \"blue\""), "colour");
    assert!(msg.contains("colour"), "{msg}");
    assert_key(&with(&base(), "distill", "kapa = 2"), "distill.kapa");
    assert_key(&with(&base(), "prompt", "lenght = 3"), "prompt.lenght");
    assert_key(&with(&base(), "methods", "spott = []"), "methods.spott");
    assert_key(&with(&base(), "eval", "max_exampels = 3"), "eval.max_exampels");
    // Stage settings are free-form tables until they are merged and typed.
    assert_key(&with(&base(), "train", "lerning_rate = 0.1"), "train.lerning_rate");
    assert_key(&with(&base(), "data", "max_tarin = 3"), "data.max_tarin");
    assert_key(&with(&base(), "targets", "train = { foo = 1 }"), "targets.train.foo");
    assert_key(&with(&base(), "sources", "data = { few_shot = 1 }"), "sources.data.few_shot");
}

#[test]
fn unknown_keys_under_train_lengths_are_named() {
    assert_key(&with(&base(), "train.lengths", "max_inptu = 3"), "train.lengths.max_inptu");
    assert_key(&with(&base(), "distill", "train = { lengths = { bad = 1 } }"), "distill.train.lengths.bad");
}

#[test]
fn wrong_types_are_named_with_their_path() {
    assert_key(&set(&base(), "prompt", "length", "length = \"x\""), "prompt.length");
    assert_key(&set(&base(), "distill", "kappa", "kappa = \"two\""), "distill.kappa");
    assert_key(&set(&base(), "targets", "seeds", "seeds = [0, \"one\"]"), "targets.seeds[1]");
    assert_key(&set(&base(), "train", "max_steps", "max_steps = -1"), "train.max_steps");
    assert_key(&set(&base(), "train", "batch_size", "batch_size = 1.5"), "train.batch_size");
    assert_key(&with(&base(), "targets", "train = { learning_rate = \"fast\" }"), "targets.train.learning_rate");
    assert_key(&set(&base(), "eval", "split", "split = \"holdout\""), "eval.split");
}

#[test]
fn missing_required_keys_are_reported() {
    let text: String = base().lines().filter(|l| !l.starts_with("length")).map(|l| format!("{l}\n")).collect();
    let (key, message) = error_key(&text);
    assert!(key == "prompt" || key == "prompt.length", "{key}: {message}");
    assert!(message.contains("length"), "{message}");
}

#[test]
fn syntax_errors_are_reported() {
    let (key, _) = error_key(&format!("{}\n[prompt\n", base()));
    assert_eq!(key, "(syntax)");
}

#[test]
fn impossible_values_are_named_with_their_path() {
    let msg = assert_key(&set(&base(), "distill", "kappa", "kappa = 1"), "distill.kappa");
    assert!(msg.contains("[2, 2]") && msg.contains('1'), "{msg}");
    assert_key(&set(&base(), "distill", "kappa", "kappa = 3"), "distill.kappa");
    assert_key(&set(&base(), "prompt", "rank", "rank = 0"), "prompt.rank");
    assert_key(&set(&base(), "prompt", "length", "length = 0"), "prompt.length");
    let msg = assert_key(&set(&base(), "prompt", "init", "init = \"zeros\""), "prompt.init");
    assert_eq!(msg, "\"zeros\": expected random, vocab or text:SOME TEXT");
    assert_key(&set(&base(), "distill", "lambda", "lambda = -0.5"), "distill.lambda");
    assert_key(&with(&base(), "distill", "temperature = 0.0"), "distill.temperature");
    let msg = assert_key(&with(&base(), "distill", "shared_init = \"mean\""), "distill.shared_init");
    assert!(msg.contains("`mean`") && msg.contains("teacher_mean") && msg.contains("fresh"), "{msg}");
    // A bad [train] default is reported under the first stage section that inherits it.
    let (key, _) = error_key(&set(&base(), "train", "max_steps", "max_steps = 0"));
    assert!(key.ends_with("train.max_steps"), "{key}");
    assert_key(&with(&base(), "targets", "train = { learning_rate = 0.0 }"), "targets.train.learning_rate");
    assert_key(&with(&base(), "distill", "train = { batch_size = 1 }"), "distill.train.batch_size");
    assert_key(&set(&base(), "targets", "seeds", "seeds = []"), "targets.seeds");
    assert_key(&set(&base(), "targets", "seeds", "seeds = [3, 3]"), "targets.seeds[1]");
    assert_key(&set(&base(), "methods", "mpt", "mpt = [\"source:rte\"]"), "methods.mpt[0]");
    let msg = assert_key(&set(&base(), "methods", "mpt", "mpt = [\"average\", \"middle\"]"), "methods.mpt[1]");
    assert_eq!(msg, "\"middle\": expected average, shared or source:TASK with TASK a source task");
    assert_key(&with(&base(), "methods", "spot = [\"cb\"]"), "methods.spot[0]");
    assert_key(&with(&base(), "methods", "multitask = true"), "methods.multitask");
    assert_key(&set(&base(), "eval", "max_examples", "max_examples = 0"), "eval.max_examples");
    assert_key(&with(&base(), "eval", "batch_size = 0"), "eval.batch_size");
    assert_key(&set(&base(), "", "name", "name = \"a/b\""), "name");
    assert_key(&set(&base(), "sources", "tasks", "tasks = [\"mnli\"]"), "sources.tasks");
    assert_key(&set(&base(), "targets", "tasks", "tasks = []"), "targets.tasks");
}

#[test]
fn unknown_or_duplicate_tasks_are_named_with_their_index() {
    let msg = assert_key(&set(&base(), "sources", "tasks", "tasks = [\"mnli\", \"mnly\"]"), "sources.tasks[1]");
    assert!(msg.contains("mnly"), "{msg}");
    assert_key(&set(&base(), "targets", "tasks", "tasks = [\"rte\", \"nope\"]"), "targets.tasks[1]");
    assert_key(&set(&base(), "sources", "tasks", "tasks = [\"mnli\", \"qnli\", \"mnli\"]"), "sources.tasks[2]");
}

#[test]
fn data_files_are_checked_up_front() {
    // sst2 is a known task but has no files in the tiny data root.
    let msg = assert_key(&set(&base(), "sources", "tasks", "tasks = [\"mnli\", \"sst2\"]"), "sources.tasks[1]");
    assert!(msg.contains("missing file") && msg.contains("sst"), "{msg}");
    let tmp = tempfile::tempdir().unwrap();
    let text = set(&base(), "", "data_root", &format!("data_root = \"{}\"", tmp.path().display()));
    let msg = assert_key(&text, "sources.tasks[0]");
    assert!(msg.contains("missing file"), "{msg}");
}

#[test]
fn few_shot_k_must_fit_every_class() {
    // cb's tiny train split has 16 examples per class (rte's has 30).
    let cb_only = set(&base(), "targets", "tasks", "tasks = [\"cb\"]");
    let msg = assert_key(&set(&cb_only, "targets", "few_shot", "few_shot = [32]"), "targets.few_shot[0]");
    assert!(msg.contains("cb") && msg.contains("32"), "{msg}");
    let text = set(&base(), "targets", "tasks", "tasks = [\"rte\", \"cb\"]");
    parse(&set(&text, "targets", "few_shot", "few_shot = [2, 16]")).unwrap();
    let bad = set(&text, "targets", "few_shot", "few_shot = [2, 20]");
    let msg = assert_key(&bad, "targets.few_shot[1]");
    assert!(msg.contains("cb") && msg.contains("20") && msg.contains("16"), "{msg}");
    let msg = assert_key(&set(&text, "targets", "few_shot", "few_shot = [17]"), "targets.few_shot[0]");
    assert!(msg.contains("16"), "{msg}");
    assert_key(&set(&text, "targets", "few_shot", "few_shot = [0]"), "targets.few_shot[0]");
    // A per-task override replaces the list for that task only.
    let over = with(&bad, "targets", "few_shot_overrides = { cb = [2, 4] }");
    let p = parse(&over).unwrap();
    assert_eq!(p.few_shot_for("cb"), [2, 4]);
    assert_eq!(p.few_shot_for("rte"), [2, 20]);
    assert_key(&with(&bad, "targets", "few_shot_overrides = { cb = [2, 40] }"), "targets.few_shot_overrides.cb[1]");
    assert_key(&with(&text, "targets", "few_shot_overrides = { mnli = [2] }"), "targets.few_shot_overrides.mnli");
}

#[test]
fn task_aliases_are_accepted() {
    let text = set(&base(), "sources", "tasks", "tasks = [\"MNLI\", \"qnli\"]");
    parse(&text).unwrap();
}

#[test]
fn load_reads_the_file_and_reports_missing_files() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("p.toml");
    std::fs::write(&path, base()).unwrap();
    let p = Pipeline::load(&path).unwrap();
    assert_eq!(p.path, path);
    assert_eq!(p.text, base());
    let err = Pipeline::load(&tmp.path().join("absent.toml")).unwrap_err();
    assert!(matches!(err, PipelineError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("absent.toml"), "{err}");
}
