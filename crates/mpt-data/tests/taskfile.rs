//! Task files: declared tasks register, split and read like built-in ones; bad declarations and
//! bad data fail at load naming the file, line and key. Each test uses its own task names (the
//! registry is per process).

use std::path::Path;

use mpt_data::{DataRoot, load_task_file, lookup};

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    path
}

fn reviews_csv(rows: usize) -> String {
    let mut out = String::from("id,text,stars\n");
    for i in 0..rows {
        let (text, stars) = if i % 2 == 0 { ("\"great, loved it\"", 5) } else { ("awful", 1) };
        out.push_str(&format!("{i},{text},{stars}\n"));
    }
    out
}

#[test]
fn a_csv_task_registers_reads_and_splits() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "data/train.csv", &reviews_csv(30));
    let file = write(
        tmp.path(),
        "tasks.toml",
        r#"
[tasks.reviews_a]
format = "csv"
train = "data/train.csv"
input = "review: {text}"
label = "stars"
labels = { "1" = "negative", "5" = "positive" }
metrics = ["accuracy", "f1"]
aliases = ["my-reviews"]
"#,
    );
    let tasks = load_task_file(&file).unwrap();
    assert_eq!(tasks.len(), 1);
    let task = lookup("My-Reviews").unwrap();
    assert_eq!(task.name, "reviews_a");
    assert_eq!(task.labels, ["negative", "positive"]);
    assert_eq!(task.fields(), ["text"]);
    // Loading it again is a no-op.
    assert!(std::ptr::eq(load_task_file(&file).unwrap()[0], task));
    // Paths are relative to the task file, so the data root does not matter.
    let splits = DataRoot::new("/nonexistent").load_splits(task, 42).unwrap();
    assert_eq!((splits.train.len(), splits.dev.len(), splits.test.len()), (24, 3, 3));
    let first =
        splits.train.iter().chain(&splits.dev).chain(&splits.test).find(|e| e.id == "reviews_a/train/0").unwrap();
    assert_eq!(first.input, "review: great, loved it", "quoted CSV field");
    assert_eq!(first.label, 1);
    assert_eq!(first.text_a, first.input);
}

#[test]
fn a_jsonl_task_with_dev_and_test_files_and_a_label_list() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = |n: usize| {
        (0..n)
            .map(|i| format!("{{\"q\": \"question {i}\", \"a\": \"answer\", \"ok\": {}}}\n", i % 2 == 0))
            .collect::<String>()
    };
    write(tmp.path(), "t/train.jsonl", &rows(8));
    write(tmp.path(), "t/dev.jsonl", &rows(4));
    write(tmp.path(), "t/test.jsonl", &rows(6));
    let file = write(
        tmp.path(),
        "t/tasks.toml",
        r#"
[tasks.qa_b]
format = "jsonl"
train = "train.jsonl"
dev = "dev.jsonl"
test = "test.jsonl"
input = "qa_b question: {q} answer: {a}"
segment_a = "{q}"
segment_b = "{a}"
label = "ok"
labels = ["false", "true"]
role = "source"
"#,
    );
    load_task_file(&file).unwrap();
    let task = lookup("qa_b").unwrap();
    assert_eq!(task.role, mpt_data::Role::Source);
    let splits = DataRoot::default().load_splits(task, 1).unwrap();
    assert_eq!((splits.train.len(), splits.dev.len(), splits.test.len()), (8, 4, 6));
    assert_eq!(splits.train[0].text_b.as_deref(), Some("answer"));
    assert_eq!(splits.train[0].label, 1, "true");
}

#[test]
fn labels_default_to_the_training_files_values() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "train.tsv", "sentence\tlabel\n\"a \"\"quoted\"\" one\"\tz\nb\ty\nc\tz\nd\ty\ne\tx\n");
    write(tmp.path(), "test.tsv", "sentence\tlabel\nf\tx\n");
    let file = write(
        tmp.path(),
        "tasks.toml",
        "[tasks.tsv_c]\nformat = \"tsv\"\ntrain = \"train.tsv\"\ntest = \"test.tsv\"\ninput = \"{sentence}\"\nlabel = \"label\"\n",
    );
    let task = load_task_file(&file).unwrap()[0];
    assert_eq!(task.labels, ["x", "y", "z"]);
    let splits = DataRoot::default().load_splits(task, 7).unwrap();
    assert_eq!((splits.train.len(), splits.dev.len(), splits.test.len()), (4, 1, 1));
    let quoted = splits.train.iter().chain(&splits.dev).find(|e| e.id == "tsv_c/train/0").unwrap();
    assert_eq!(quoted.input, "a \"quoted\" one");
}

/// Loads a one-task file `[tasks.NAME]` + `body` beside `train.csv` = `csv`; returns the error.
fn error_of(name: &str, body: &str, csv: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "train.csv", csv);
    let file = write(tmp.path(), "tasks.toml", &format!("[tasks.{name}]\n{body}"));
    let err = load_task_file(&file).unwrap_err().to_string();
    err.replace(&tmp.path().display().to_string(), "DIR")
}

const OK_BODY: &str = "format = \"csv\"\ntrain = \"train.csv\"\ninput = \"review: {text}\"\nlabel = \"stars\"\nlabels = { \"1\" = \"negative\", \"5\" = \"positive\" }\n";

#[test]
fn bad_declarations_name_the_file_line_and_key() {
    let csv = reviews_csv(10);
    // An unknown field in a template: the data file, its header line, the field.
    let err = error_of("bad_a", &OK_BODY.replace("{text}", "{body}"), &csv);
    assert!(err.contains("DIR/train.csv:1: field `body`") && err.contains("tasks.bad_a"), "{err}");
    // The label column missing.
    let err = error_of("bad_b", &OK_BODY.replace("label = \"stars\"", "label = \"rating\""), &csv);
    assert!(err.contains("DIR/train.csv:1: field `rating`") && err.contains("the label field"), "{err}");
    // A label value not in `labels`: the row's line.
    let err = error_of("bad_c", OK_BODY, &format!("{csv}11,meh,3\n"));
    assert!(err.contains("DIR/train.csv:12: label \"3\"") && err.contains("one of 1, 5"), "{err}");
    // A file that is not CSV (JSON Lines given as csv): no such columns.
    let err = error_of("bad_d", OK_BODY, "{\"text\": \"x\", \"stars\": 1}\n{\"text\": \"y\", \"stars\": 5}\n");
    assert!(err.contains("DIR/train.csv:1: field `text`"), "{err}");
    // Unknown keys, formats and metrics; a built-in name; a missing file.
    let err = error_of("bad_e", &format!("{OK_BODY}templete = \"x\"\n"), &csv);
    assert!(err.contains("DIR/tasks.toml: `tasks.bad_e`: unknown field `templete`"), "{err}");
    let err = error_of("bad_f", &OK_BODY.replace("\"csv\"", "\"xlsx\""), &csv);
    assert!(err.contains("tasks.bad_f") && err.contains("xlsx"), "{err}");
    let err = error_of("bad_g", &format!("{OK_BODY}metrics = [\"bleu\"]\n"), &csv);
    assert!(err.contains("`tasks.bad_g.metrics`") && err.contains("bleu"), "{err}");
    let err = error_of("rte", OK_BODY, &csv);
    assert!(err.contains("tasks.rte") && err.contains("built-in task rte"), "{err}");
    let err = error_of("bad_h", &OK_BODY.replace("train.csv", "nope.csv"), &csv);
    assert!(err.contains("`tasks.bad_h.train`: no such file DIR/nope.csv"), "{err}");
    let err = error_of("bad_i", &OK_BODY.replace("{text}", "{text"), &csv);
    assert!(err.contains("`tasks.bad_i.input`: unterminated placeholder"), "{err}");
    let err = error_of("bad_j", OK_BODY, "id,text,stars\n0,\"unclosed,5\n");
    assert!(err.contains("DIR/train.csv"), "{err}");
    let err = error_of("bad_k", OK_BODY, "id,text,stars\n0,a,5,extra\n");
    assert!(err.contains("DIR/train.csv:2") && err.contains("3 comma-separated columns"), "{err}");
    // Syntax errors name the task file.
    let tmp = tempfile::tempdir().unwrap();
    let file = write(tmp.path(), "tasks.toml", "[tasks.x\n");
    let err = load_task_file(&file).unwrap_err().to_string();
    assert!(err.contains("tasks.toml: `(syntax)`"), "{err}");
}

#[test]
fn a_name_declared_twice_differently_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "train.csv", &reviews_csv(10));
    let a = write(tmp.path(), "a.toml", &format!("[tasks.twice_l]\n{OK_BODY}"));
    let b = write(tmp.path(), "b.toml", &format!("[tasks.twice_l]\n{}", OK_BODY.replace("review:", "text:")));
    load_task_file(&a).unwrap();
    let err = load_task_file(&b).unwrap_err().to_string();
    assert!(err.contains("already declared differently") && err.contains("a.toml"), "{err}");
}

#[test]
fn a_regression_task_buckets_its_scores() {
    let tmp = tempfile::tempdir().unwrap();
    let mut csv = String::from("text,rating\n");
    for i in 0..20 {
        csv.push_str(&format!("item {i},{}\n", 1.0 + (i % 9) as f64 * 0.5));
    }
    write(tmp.path(), "train.csv", &csv);
    let file = write(
        tmp.path(),
        "tasks.toml",
        "[tasks.ratings_r]\nkind = \"regression\"\nformat = \"csv\"\ntrain = \"train.csv\"\ninput = \"{text}\"\n\
         label = \"rating\"\nrange = [1, 5]\nstep = 0.5\n",
    );
    let task = load_task_file(&file).unwrap()[0];
    assert_eq!(task.kind, mpt_data::TaskKind::Regression);
    assert_eq!(task.labels, ["1.0", "1.5", "2.0", "2.5", "3.0", "3.5", "4.0", "4.5", "5.0"]);
    let names: Vec<&str> = task.metrics.iter().map(|m| m.name()).collect();
    assert_eq!(names, ["pearson", "spearman"]);
    let splits = DataRoot::default().load_splits(task, 3).unwrap();
    let e = splits.train.iter().chain(&splits.dev).chain(&splits.test).find(|e| e.id == "ratings_r/train/3").unwrap();
    assert_eq!((e.label, e.score), (3, Some(2.5)));
    // Perfect bucket predictions correlate perfectly.
    let predicted: Vec<usize> = splits.train.iter().map(|e| e.label).collect();
    let scores = mpt_data::evaluate(task, &splits.train, &predicted).unwrap();
    assert!((scores.0["pearson"] - 1.0).abs() < 1e-9, "{scores:?}");
    // Out of range, no range, a step that does not divide it, labels on a regression task.
    let err = error_of(
        "bad_r1",
        "kind = \"regression\"\nformat = \"csv\"\ntrain = \"train.csv\"\ninput = \"{text}\"\nlabel = \"stars\"\nrange = [1, 3]\n",
        &reviews_csv(4),
    );
    assert!(err.contains("DIR/train.csv:2: field `score`: expected a score in 1..=3, found \"5\""), "{err}");
    let err = error_of(
        "bad_r2",
        "kind = \"regression\"\nformat = \"csv\"\ntrain = \"train.csv\"\ninput = \"{text}\"\nlabel = \"stars\"\n",
        &reviews_csv(4),
    );
    assert!(err.contains("`tasks.bad_r2.range`: a regression task needs range"), "{err}");
    let err = error_of(
        "bad_r3",
        "kind = \"regression\"\nformat = \"csv\"\ntrain = \"train.csv\"\ninput = \"{text}\"\nlabel = \"stars\"\nrange = [0, 5]\nstep = 0.3\n",
        &reviews_csv(4),
    );
    assert!(err.contains("`tasks.bad_r3.step`"), "{err}");
    let err = error_of("bad_r4", &format!("{OK_BODY}range = [0, 5]\n"), &reviews_csv(4));
    assert!(err.contains("`tasks.bad_r4.range`: only a regression task"), "{err}");
}
