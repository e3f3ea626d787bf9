//! The built-in registry, pinned: the `Debug` form of every built-in [`TaskSpec`] against
//! `fixtures/builtin_tasks.txt`, which was written from the Rust table the registry was before
//! it became `tasks/builtin.toml`. A change to the built-in file that changes any task (a path,
//! a reader, a template, a label, the split recipe) fails here, naming the first differing line.
//!
//! After an intended change: `MPT_BLESS=1 cargo test -p mpt-data --test builtin_tasks`, then
//! review the fixture's diff.

use mpt_data::TASKS;

const FIXTURE: &str = "tests/fixtures/builtin_tasks.txt";

#[test]
fn every_builtin_task_matches_the_snapshot() {
    let got: String = TASKS.iter().map(|t| format!("{t:#?}\n")).collect();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE);
    if std::env::var_os("MPT_BLESS").is_some() {
        std::fs::write(&path, &got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap();
    if got != want {
        let (line, (g, w)) = got
            .lines()
            .zip(want.lines())
            .enumerate()
            .find(|(_, (g, w))| g != w)
            .unwrap_or((got.lines().count().min(want.lines().count()), ("(end)", "(end)")));
        panic!(
            "built-in tasks differ from {FIXTURE} at line {}:\n  got:  {g}\n  want: {w}\n({} vs {} lines)",
            line + 1,
            got.lines().count(),
            want.lines().count()
        );
    }
}

#[test]
fn the_snapshot_holds_all_nineteen_tasks_in_registry_order() {
    let names: Vec<&str> = TASKS.iter().map(|t| t.name).collect();
    assert_eq!(
        names,
        [
            "sst2", "mnli", "qnli", "qqp", "snli", "rte", "mrpc", "cola", "stsb", "cb", "boolq", "wic", "wsc", "copa",
            "multirc", "scitail", "paws", "e2e", "webnlg",
        ]
    );
}
