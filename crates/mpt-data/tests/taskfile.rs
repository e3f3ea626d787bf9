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

#[test]
fn a_task_file_takes_the_builtin_files_keys() {
    let tmp = tempfile::tempdir().unwrap();
    // GLUE-style TSV without a header, a field starting with a quote, one malformed row.
    let tsv = "a\t0\t\"quoted start\n\
               b\t1\tplain\n\
               c\t1\ttoo\tmany\n\
               d\t0\tfour\n\
               e\t1\tfive\n";
    write(tmp.path(), "d/raw.tsv", tsv);
    let jsonl =
        (0..6).map(|i| format!("{{\"meta\": {{\"text\": \"json {i}\"}}, \"y\": {}}}\n", i % 2)).collect::<String>();
    write(tmp.path(), "d/more.jsonl", &jsonl);
    write(tmp.path(), "d/extra.jsonl", &jsonl);
    let file = write(
        tmp.path(),
        "tasks.toml",
        r#"
[tasks.schema_s]
folder = "d"
input = "s: {text}"
labels = ["no", "yes"]
raw_labels = ["0", "1"]
substitute = "made up"
split = { recipe = "pool", train = ["raw"], pool = "more", pool_to_train = 2 }
extra = ["spare"]

[tasks.schema_s.files]
raw = { path = "raw.tsv", format = "glue_tsv", columns = 3, fields = { text = 2 }, label = 1, skip_malformed = true }
more = { path = "more.jsonl", format = "jsonl", fields = { text = "/meta/text" }, label = "y" }
spare = { path = "extra.jsonl", format = "jsonl", fields = { text = "/meta/text" }, label = "/y" }
"#,
    );
    let task = load_task_file(&file).unwrap()[0];
    assert_eq!(task.labels, ["no", "yes"]);
    assert_eq!(task.substitute, Some("made up"));
    let mpt_data::SplitPlan::Pool { train, pool, pool_to_train } = task.plan else { panic!("{:?}", task.plan) };
    assert_eq!((train.len(), pool.key, pool_to_train), (1, "more", 2));
    assert_eq!(
        train[0].reader,
        mpt_data::Reader::Tsv { header: None, columns: 3, fields: &[("text", 2)], label: 1, skip_malformed: true }
    );
    assert_eq!(train[0].labels, mpt_data::LabelKind::Raw(&["0", "1"]));
    assert_eq!(pool.reader, mpt_data::Reader::Jsonl { fields: &[("text", "/meta/text")], label: "/y" });
    assert_eq!(task.extra_files.iter().map(|f| f.key).collect::<Vec<_>>(), ["spare"]);
    let splits = DataRoot::new("/nonexistent").load_splits(task, 42).unwrap();
    // 4 good TSV rows + 2 of the 6 pool rows; the other 4 halved.
    assert_eq!((splits.train.len(), splits.dev.len(), splits.test.len()), (6, 2, 2));
    assert_eq!(splits.report.skipped, 1);
    let first = splits.train.iter().find(|e| e.id == "schema_s/raw/0").unwrap();
    assert_eq!((first.input.as_str(), first.label), ("s: \"quoted start", 0));
    assert!(splits.dev.iter().chain(&splits.test).all(|e| e.id.starts_with("schema_s/more/")));
}

#[test]
fn a_holdout_and_a_given_split_by_file_key() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "train.csv", &reviews_csv(30));
    write(tmp.path(), "eval.csv", &reviews_csv(6));
    let body = "format = \"csv\"\ninput = \"review: {text}\"\nlabel = \"stars\"\nlabels = { \"1\" = \"negative\", \"5\" = \"positive\" }\n";
    let file = write(
        tmp.path(),
        "tasks.toml",
        &format!(
            "[tasks.split_h]\n{body}train = \"train.csv\"\nfiles.official = \"eval.csv\"\n\
             split = {{ recipe = \"holdout\", pool = \"train\", holdout = 5, test = \"official\" }}\n\
             [tasks.split_g]\n{body}files = {{ a = \"train.csv\", b = \"eval.csv\", c = \"eval.csv\" }}\n\
             split = {{ recipe = \"given\", train = \"a\", dev = \"b\", test = \"c\", dedup_test = true }}\n"
        ),
    );
    load_task_file(&file).unwrap();
    let splits = DataRoot::default().load_splits(lookup("split_h").unwrap(), 1).unwrap();
    assert_eq!((splits.train.len(), splits.dev.len(), splits.test.len()), (25, 5, 6));
    assert!(splits.test[0].id.starts_with("split_h/official/"));
    // Every test row of `c` is also in `b` (dev): all dropped.
    let splits = DataRoot::default().load_splits(lookup("split_g").unwrap(), 1).unwrap();
    assert_eq!((splits.train.len(), splits.dev.len(), splits.test.len()), (30, 6, 0));
    assert_eq!(splits.report.removed_overlap, 6);
}

#[test]
fn bad_builtin_style_keys_name_the_key() {
    let csv = reviews_csv(10);
    let cases: &[(&str, &str, &str)] = &[
        ("split = { recipe = \"pool\", pool = \"nope\" }", "`tasks.bad_s1.split.pool`", "no file \"nope\""),
        (
            "split = { recipe = \"given\", train = \"train\", pool = \"train\" }",
            "`tasks.bad_s2.split.pool`",
            "a given split takes",
        ),
        (
            "split = { recipe = \"holdout\", pool = \"train\", test = \"train\" }",
            "`tasks.bad_s3.split`",
            "holdout = ROWS",
        ),
        ("split = { recipe = \"shuffle\" }", "tasks.bad_s4", "shuffle"),
        ("files.spare = \"train.csv\"", "`tasks.bad_s5.files.spare`", "not used: name it in split or extra"),
        ("extra = [\"train\"]", "`tasks.bad_s6.extra`", "is a file of the split"),
        ("columns = 3", "`tasks.bad_s7.columns`", "no file of this task (csv) has a columns"),
        ("raw_labels = [\"1\", \"5\"]", "`tasks.bad_s8.raw_labels`", "a labels map already says"),
        (
            "files.b = { path = \"train.csv\", skip_malformed = true }\nextra = [\"b\"]",
            "`tasks.bad_s9.files.b.skip_malformed`",
            "a csv file has no skip_malformed",
        ),
        ("fields = { txt = \"text\" }", "`tasks.bad_s10.fields`", "\"txt\" is no {field}"),
        (
            "header = [\"id\", \"body\", \"stars\"]",
            "`tasks.bad_s11.fields`",
            "no column \"text\" in the header: id, body, stars",
        ),
        ("files.\"a b\" = \"train.csv\"", "`tasks.bad_s12.files.a b`", "a file key is letters"),
    ];
    for (i, (extra, key, message)) in cases.iter().enumerate() {
        let err = error_of(&format!("bad_s{}", i + 1), &format!("{OK_BODY}{extra}\n"), &csv);
        assert!(err.contains(key) && err.contains(message), "{extra}: {err}");
    }
    let list = OK_BODY.replace("labels = { \"1\" = \"negative\", \"5\" = \"positive\" }", "labels = [\"1\", \"5\"]");
    let err = error_of("bad_t1", &format!("{list}raw_labels = [\"1\", \"5\", \"3\"]\n"), &csv);
    assert!(err.contains("`tasks.bad_t1.raw_labels`: 3 raw labels for 2 labels"), "{err}");
    let jsonl = "format = \"jsonl\"\ntrain = \"train.csv\"\ninput = \"{text}\"\nlabel = 2\n";
    let err = error_of("bad_t2", jsonl, &csv);
    assert!(err.contains("`tasks.bad_t2.label`: column 2: a JSON file names its fields by key"), "{err}");
    let glue = "format = \"glue_tsv\"\ntrain = \"train.csv\"\ninput = \"{text}\"\nlabel = 2\n";
    let err = error_of("bad_t3", glue, &csv);
    assert!(err.contains("`tasks.bad_t3.columns`: a glue_tsv file without a header needs columns"), "{err}");
    let err = error_of("bad_t4", &format!("{glue}columns = 2\n"), &csv);
    assert!(err.contains("`tasks.bad_t4.fields`: column \"text\": a file without a header"), "{err}");
    let multirc =
        "format = \"multirc\"\ntrain = \"train.csv\"\ninput = \"{question} {passage}\"\nlabels = [\"0\", \"1\"]\n";
    let err = error_of("bad_t5", multirc, &csv);
    assert!(err.contains("`tasks.bad_t5.input`: {passage}: the fields of this task's files are question"), "{err}");
    let err = error_of("bad_t6", &format!("{OK_BODY}metrics = [\"f1a\"]\n"), &csv);
    assert!(err.contains("`tasks.bad_t6.metrics`: f1a does not fit"), "{err}");
}

/// A declaration's `Debug` is part of its definition and digest: for a file without the newer
/// keys it is what it was before them (what these strings were printed from), so pipelines do
/// not rerun stages on an unchanged task file.
#[test]
fn the_definition_of_an_unchanged_task_file_is_unchanged() {
    let cases = [
        (
            "format = \"csv\"\ntrain = \"train.csv\"\ninput = \"review: {text}\"\nlabel = \"stars\"\nlabels = { \"1\" = \"negative\", \"5\" = \"positive\" }\n",
            r#"TaskDecl { format: Csv, train: "train.csv", dev: None, test: None, input: "review: {text}", segment_a: None, segment_b: None, kind: None, label: Some("stars"), target: None, range: None, step: None, labels: Some(Map({"1": "negative", "5": "positive"})), metrics: None, role: None, aliases: [] }"#,
        ),
        (
            "format = \"jsonl\"\ntrain = \"t.jsonl\"\ndev = \"d.jsonl\"\ntest = \"x.jsonl\"\ninput = \"q {q}\"\nsegment_a = \"{q}\"\nsegment_b = \"{a}\"\nkind = \"regression\"\nlabel = \"ok\"\nrange = [1, 5]\nstep = 0.5\nlabels = [\"a\", \"b\"]\nmetrics = [\"accuracy\"]\nrole = \"source\"\naliases = [\"x\", \"y\"]\n",
            r#"TaskDecl { format: Jsonl, train: "t.jsonl", dev: Some("d.jsonl"), test: Some("x.jsonl"), input: "q {q}", segment_a: Some("{q}"), segment_b: Some("{a}"), kind: Some("regression"), label: Some("ok"), target: None, range: Some([1.0, 5.0]), step: Some(0.5), labels: Some(List(["a", "b"])), metrics: Some(["accuracy"]), role: Some("source"), aliases: ["x", "y"] }"#,
        ),
        (
            "format = \"tsv\"\ntrain = \"t.tsv\"\ninput = \"{mr}\"\nkind = \"generation\"\ntarget = \"ref\"\n",
            r#"TaskDecl { format: Tsv, train: "t.tsv", dev: None, test: None, input: "{mr}", segment_a: None, segment_b: None, kind: Some("generation"), label: None, target: Some("ref"), range: None, step: None, labels: None, metrics: None, role: None, aliases: [] }"#,
        ),
    ];
    for (text, debug) in cases {
        let decl: mpt_data::TaskDecl = toml::from_str(text).unwrap();
        assert_eq!(format!("{decl:?}"), debug);
    }
    // The newer keys show when set.
    let decl: mpt_data::TaskDecl = toml::from_str("input = \"{a}\"\nfolder = \"f\"\nfiles.x = \"x.tsv\"\n").unwrap();
    let debug = format!("{decl:?}");
    assert!(debug.ends_with(r#"aliases: [], folder: "f", files: {"x": FileDecl { path: "x.tsv", format: None, header: None, columns: None, fields: None, label: None, target: None, raw_labels: None, skip_malformed: None }} }"#), "{debug}");
}
