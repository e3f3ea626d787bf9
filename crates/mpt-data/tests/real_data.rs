//! Loads every task from the real benchmark data at `<repo>/../shared/data` (skipped, with a
//! notice, when that directory is absent).

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use mpt_data::{
    DEFAULT_SEED, DataError, DataRoot, Example, LoadReport, Split, TASKS, TaskSpec, lookup, read_source,
    sample_few_shot,
};

fn data_root() -> Option<DataRoot> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    if root.join("SOURCES.md").is_file() {
        Some(DataRoot::new(root))
    } else {
        eprintln!("SKIPPED: benchmark data not found at {}", root.display());
        None
    }
}

fn task(name: &str) -> &'static TaskSpec {
    lookup(name).expect("registered task")
}

fn ids(examples: &[Example]) -> HashSet<&str> {
    examples.iter().map(|e| e.id.as_str()).collect()
}

fn label_counts(task: &TaskSpec, examples: &[Example]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for e in examples {
        *counts.entry(e.target(task).to_string()).or_insert(0) += 1;
    }
    counts
}

/// (task, train, dev, test) rows with the default seed.
const EXPECTED: &[(&str, usize, usize, usize)] = &[
    ("sst2", 66_349, 1_000, 872),
    ("mnli", 8_999, 1_000, 9_815),
    ("qnli", 8_999, 1_000, 5_463),
    ("qqp", 8_999, 1_000, 22_869),
    ("snli", 8_999, 1_000, 9_824),
    ("rte", 2_490, 138, 139),
    ("mrpc", 3_668, 204, 204),
    ("cola", 8_551, 521, 522),
    ("stsb", 5_749, 750, 750),
    ("cb", 250, 28, 28),
    ("boolq", 1_064, 1_135, 1_135),
    ("wic", 5_428, 319, 319),
    ("wsc", 554, 52, 52),
    ("copa", 400, 50, 50),
    ("multirc", 27_243, MULTIRC_DEV_ANSWERS, 4_848 - MULTIRC_DEV_ANSWERS),
    ("scitail", 1_000, 563, 563),
    ("paws", 7_000, 1_000, 8_000),
    ("e2e", 42_061, 4_672, 4_693),
    ("webnlg", 18_102, 2_268, 4_928),
];
/// Answers in the 476 MultiRC dev questions with the default seed.
const MULTIRC_DEV_ANSWERS: usize = 2_482;

#[test]
fn every_task_loads_with_expected_counts_and_valid_examples() {
    let Some(root) = data_root() else { return };
    assert_eq!(EXPECTED.len(), TASKS.len());
    for &(name, n_train, n_dev, n_test) in EXPECTED {
        let task = task(name);
        root.check_task(task).expect("all files present");
        let set = root.load_splits(task, DEFAULT_SEED).expect(name);
        let got = (set.train.len(), set.dev.len(), set.test.len());
        assert_eq!(got, (n_train, n_dev, n_test), "{name}: (train, dev, test)");
        let mut all_ids = HashSet::new();
        for split in Split::ALL {
            for e in set.get(split) {
                let generation = task.kind == mpt_data::TaskKind::Generation;
                assert!(generation || e.label < task.num_classes(), "{}: label {}", e.id, e.label);
                assert_eq!(e.reference.as_ref().is_some_and(|r| !r.trim().is_empty()), generation, "{}", e.id);
                assert!(e.input.starts_with(&format!("{name} ")), "{}", e.id);
                assert!(e.input.len() > name.len() + 1, "{}: empty input", e.id);
                assert!(!e.text_a.trim().is_empty(), "{}: empty text_a", e.id);
                assert_eq!(e.text_b.is_some(), task.segment_b.is_some(), "{}", e.id);
                assert_eq!(e.score.is_some(), name == "stsb", "{}", e.id);
                assert_eq!(e.group.is_some(), name == "multirc", "{}", e.id);
                assert!(e.id.starts_with(&format!("{name}/")), "{}", e.id);
                assert!(all_ids.insert(e.id.clone()), "{}: in two splits or twice", e.id);
            }
        }
        let expected_report = if name == "qqp" { (1, 627) } else { (0, 0) };
        assert_eq!((set.report.skipped, set.report.removed_overlap), expected_report, "{name}: report");
    }
}

#[test]
fn qqp_test_skips_exactly_the_one_malformed_row() {
    let Some(root) = data_root() else { return };
    let qqp = task("qqp");
    let (test, report) = root.load_split(qqp, Split::Test, DEFAULT_SEED).unwrap();
    assert_eq!(report.skipped, 1);
    assert_eq!(report.skipped_rows.len(), 1);
    assert_eq!(report.skipped_rows[0].line, 1);
    assert!(report.skipped_rows[0].path.ends_with("qqp/train-subset-cutoff/new_dev.tsv"));
    assert_eq!(report.removed_overlap, 627);
    assert_eq!(test.len(), 23_496 - 627);
    // Nothing in test occurs in train or dev.
    let (train, train_report) = root.load_split(qqp, Split::Train, DEFAULT_SEED).unwrap();
    assert_eq!(train_report, LoadReport::default());
    let (dev, _) = root.load_split(qqp, Split::Dev, DEFAULT_SEED).unwrap();
    let seen: HashSet<(&str, Option<&str>)> =
        train.iter().chain(&dev).map(|e| (e.text_a.as_str(), e.text_b.as_deref())).collect();
    assert!(test.iter().all(|e| !seen.contains(&(e.text_a.as_str(), e.text_b.as_deref()))));
}

#[test]
fn label_distributions_match_sources_md() {
    let Some(root) = data_root() else { return };
    let count = |name: &str, split: Split| {
        let task = task(name);
        let (examples, _) = root.load_split(task, split, DEFAULT_SEED).unwrap();
        label_counts(task, &examples)
    };
    let map = |pairs: &[(&str, usize)]| -> BTreeMap<String, usize> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    };
    assert_eq!(count("mnli", Split::Test), map(&[("entailment", 3_479), ("neutral", 3_123), ("contradiction", 3_213)]));
    assert_eq!(count("snli", Split::Test), map(&[("entailment", 3_368), ("neutral", 3_219), ("contradiction", 3_237)]));
    assert_eq!(count("rte", Split::Train), map(&[("entailment", 1_249), ("not entailment", 1_241)]));
    assert_eq!(count("cola", Split::Train), map(&[("acceptable", 6_023), ("unacceptable", 2_528)]));
    assert_eq!(count("paws", Split::Test), map(&[("equivalent", 3_536), ("not equivalent", 4_464)]));
    let sst2 = task("sst2");
    let set = root.load_splits(sst2, DEFAULT_SEED).unwrap();
    let mut train_dev = label_counts(sst2, &set.train);
    for (k, v) in label_counts(sst2, &set.dev) {
        *train_dev.entry(k).or_insert(0) += v;
    }
    assert_eq!(train_dev, map(&[("negative", 29_780), ("positive", 37_569)]));
    let scitail = task("scitail");
    let set = root.load_splits(scitail, DEFAULT_SEED).unwrap();
    let all: Vec<Example> = [set.train, set.dev, set.test].concat();
    assert_eq!(label_counts(scitail, &all), map(&[("entailment", 842), ("not entailment", 1_284)]));
}

#[test]
fn templates_and_segments_render_known_rows() {
    let Some(root) = data_root() else { return };
    let first = |name: &str, id: &str| -> (Example, &'static TaskSpec) {
        let task = task(name);
        let set = root.load_splits(task, DEFAULT_SEED).unwrap();
        let example = [set.train, set.dev, set.test]
            .concat()
            .into_iter()
            .find(|e| e.id == id)
            .unwrap_or_else(|| panic!("{id} not found"));
        (example, task)
    };
    let (rte, t) = first("rte", "rte/train/0");
    assert_eq!(
        rte.input,
        "rte sentence1: No Weapons of Mass Destruction Found in Iraq Yet. sentence2: Weapons of Mass Destruction Found in Iraq."
    );
    assert_eq!(rte.target(t), "not entailment");
    let (sst2, t) = first("sst2", "sst2/dev/0");
    assert_eq!(sst2.input, "sst2 sentence: it 's a charming and often affecting journey .");
    assert_eq!((sst2.text_b.clone(), sst2.target(t)), (None, "positive"));
    let (copa, t) = first("copa", "copa/train/0");
    assert_eq!(
        copa.input,
        "copa premise: My body cast a shadow over the grass. choice1: The sun was rising. choice2: The grass was cut. question: cause"
    );
    assert_eq!(copa.text_a, "My body cast a shadow over the grass. What was the cause?");
    assert_eq!(copa.text_b.as_deref(), Some("choice1: The sun was rising. choice2: The grass was cut."));
    assert_eq!(copa.target(t), "choice1");
    let (wsc, t) = first("wsc", "wsc/train/0");
    assert!(wsc.input.starts_with("wsc text: Mark told Pete many lies"));
    assert!(wsc.input.ends_with(" span1: Mark span2: He"));
    assert_eq!(wsc.text_b.as_deref(), Some("Does He refer to Mark?"));
    assert_eq!(wsc.target(t), "false");
    let (wic, _) = first("wic", "wic/train/0");
    assert_eq!(wic.text_a, "word: place. Do you want to come over to my place later?");
    assert!(wic.input.starts_with("wic word: place sentence1: Do you want"));
    let (mrpc, _) = first("mrpc", "mrpc/train/0");
    assert!(mrpc.text_a.starts_with("Amrozi accused his brother, whom he called \"the witness\""));
    let (stsb, t) = first("stsb", "stsb/train/1");
    assert_eq!((stsb.score, stsb.target(t)), (Some(3.8), "3.8"));
    let (qqp, t) = first("qqp", "qqp/ppft_dev/0");
    assert_eq!(
        qqp.input,
        "qqp question1: Who is the stupidest character in Game of Thrones? question2: Who is the most misunderstood character in Game of Thrones?"
    );
    assert_eq!(qqp.target(t), "not equivalent");
    let (mnli, t) = first("mnli", "mnli/dev_matched/0");
    assert_eq!(
        mnli.input,
        "mnli premise: The new rights are nice enough hypothesis: Everyone really likes the newest benefits"
    );
    assert_eq!(mnli.target(t), "neutral");
    let (multirc, _) = first("multirc", "multirc/val/0");
    assert_eq!(multirc.text_a, "Would the mass of a baseball affect how much force you have to use to pick it up? No");
    assert_eq!(multirc.group.as_deref(), Some("multirc/val/q0"));
}

#[test]
fn splits_are_deterministic_and_seeded() {
    let Some(root) = data_root() else { return };
    for name in ["rte", "sst2", "boolq", "scitail", "multirc"] {
        let task = task(name);
        let a = root.load_splits(task, DEFAULT_SEED).unwrap();
        let b = root.load_splits(task, DEFAULT_SEED).unwrap();
        assert_eq!(a, b, "{name}: same seed, same splits");
        let c = root.load_splits(task, 7).unwrap();
        assert_ne!(ids(&a.dev), ids(&c.dev), "{name}: seed changes dev");
        // The same rows are divided, only differently.
        let all = |s: &mpt_data::SplitSet| -> HashSet<String> {
            s.train.iter().chain(&s.dev).chain(&s.test).map(|e| e.id.clone()).collect()
        };
        assert_eq!(all(&a), all(&c), "{name}");
        // load_split agrees with load_splits.
        for split in Split::ALL {
            let (one, _) = root.load_split(task, split, DEFAULT_SEED).unwrap();
            assert_eq!(one.as_slice(), a.get(split), "{name} {split}");
        }
    }
}

#[test]
fn multirc_question_groups_stay_together() {
    let Some(root) = data_root() else { return };
    let multirc = task("multirc");
    let set = root.load_splits(multirc, DEFAULT_SEED).unwrap();
    let groups =
        |examples: &[Example]| -> HashSet<String> { examples.iter().filter_map(|e| e.group.clone()).collect() };
    let (dev, test) = (groups(&set.dev), groups(&set.test));
    assert_eq!((dev.len(), test.len()), (476, 477));
    assert!(dev.is_disjoint(&test));
    assert_eq!(groups(&set.train).len(), 5_131);
}

#[test]
fn boolq_train_is_fewglue_plus_1000_val_rows() {
    let Some(root) = data_root() else { return };
    let set = root.load_splits(task("boolq"), DEFAULT_SEED).unwrap();
    let from = |prefix: &str| set.train.iter().filter(|e| e.id.starts_with(prefix)).count();
    assert_eq!(from("boolq/fewglue_train/"), 32);
    assert_eq!(from("boolq/fewglue_dev32/"), 32);
    assert_eq!(from("boolq/val/"), 1_000);
    assert!(set.dev.iter().chain(&set.test).all(|e| e.id.starts_with("boolq/val/")));
}

#[test]
fn extra_files_load() {
    let Some(root) = data_root() else { return };
    let expected = [
        ("snli", "snli/dev.jsonl", 9_842),
        ("mnli", "mnli/k-shot-16-13/train.tsv", 48),
        ("mnli", "mnli/k-shot-16-13/dev_matched.tsv", 48),
        ("qnli", "qnli/k-shot-16-13/dev.tsv", 32),
        ("qqp", "qqp/k-shot-16-13/train.tsv", 32),
        ("mrpc", "mrpc/msr_paraphrase_test.txt", 1_725),
    ];
    for (name, path, rows) in expected {
        let task = task(name);
        let file = task.extra_files.iter().find(|f| f.path == path).unwrap();
        let (examples, report) = read_source(root.path(), task, file).unwrap();
        assert_eq!((examples.len(), report.skipped), (rows, 0), "{path}");
    }
}

#[test]
fn few_shot_on_real_training_data() {
    let Some(root) = data_root() else { return };
    for (name, k, expected) in [("rte", 16, 32), ("cb", 4, 12), ("stsb", 8, 40), ("multirc", 4, 0)] {
        let task = task(name);
        let (train, _) = root.load_split(task, Split::Train, DEFAULT_SEED).unwrap();
        let sample = sample_few_shot(task, &train, k, 13).unwrap();
        assert_eq!(sample, sample_few_shot(task, &train, k, 13).unwrap(), "{name}");
        if name == "multirc" {
            let groups: HashSet<_> = sample.iter().filter_map(|e| e.group.clone()).collect();
            assert_eq!(groups.len(), 2 * k);
            let full: usize = groups.iter().map(|g| train.iter().filter(|e| e.group.as_ref() == Some(g)).count()).sum();
            assert_eq!(sample.len(), full, "whole groups");
        } else {
            assert_eq!(sample.len(), expected, "{name}");
        }
        if name == "cb" || name == "rte" {
            let counts = label_counts(task, &sample);
            assert!(counts.values().all(|&c| c == k), "{name}: {counts:?}");
        }
        if name == "stsb" {
            let mut bins = [0usize; 5];
            for e in &sample {
                bins[mpt_data::few_shot_stratum(task, e).unwrap()] += 1;
            }
            assert_eq!(bins, [k; 5]);
        }
    }
    // CB has 16 neutral training examples.
    let cb = task("cb");
    let (train, _) = root.load_split(cb, Split::Train, DEFAULT_SEED).unwrap();
    let err = sample_few_shot(cb, &train, 32, 13).unwrap_err();
    assert!(matches!(err, DataError::FewShot { available: 16, k: 32, .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("cb") && msg.contains("\"neutral\"") && msg.contains("16"), "{msg}");
}

#[test]
fn webnlg_entries_are_linearised_triples_with_their_references() {
    let Some(root) = data_root() else { return };
    let task = task("webnlg");
    let (test, _) = root.load_split(task, Split::Test, DEFAULT_SEED).expect("webnlg test");
    // The first entry of testdata_with_lex.xml and its two <lex>.
    assert_eq!(test[0].input, "webnlg triples: Abilene Regional Airport | cityServed | Abilene, Texas");
    assert_eq!(test[0].reference.as_deref(), Some("Abilene, Texas is served by the Abilene regional airport."));
    assert_eq!(test[1].input, test[0].input);
    let inputs = mpt_data::metrics::generation_inputs(&test);
    assert_eq!(inputs[0].1.len(), 2, "two references for the first entry");
    assert!(inputs.len() <= 1_862, "at most one input per entry: {}", inputs.len());
    let multi = test.iter().find(|e| e.input.contains(" && ")).expect("multi-triple entries");
    assert_eq!(multi.input.matches(" && ").count() + 1, multi.input.matches(" | ").count() / 2);
}

/// Every key of the built-in file works in a user's task file: the built-in declarations,
/// renamed and with their folders under the data root, register (reading every file) as the
/// same tasks but for paths.
#[test]
fn the_builtin_file_works_as_a_users_task_file() {
    let Some(root) = data_root() else { return };
    let root = std::fs::canonicalize(root.path()).unwrap().to_string_lossy().into_owned();
    let text: String = mpt_data::taskfile::BUILTIN_TASK_FILE
        .lines()
        .filter(|l| !l.starts_with("aliases = "))
        .map(|l| match l.strip_prefix("folder = \"") {
            Some(rest) => format!("folder = \"{root}/{rest}\n"),
            None => format!("{}\n", l.replace("[tasks.", "[tasks.user_")),
        })
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("tasks.toml");
    std::fs::write(&file, text).unwrap();
    let declared = mpt_data::load_task_file(&file).unwrap();
    assert_eq!(declared.len(), TASKS.len());
    for builtin in TASKS.iter() {
        let user = lookup(&format!("user_{}", builtin.name)).unwrap();
        let want = TaskSpec { name: user.name, aliases: &[], ..*builtin };
        assert_eq!(format!("{user:?}").replace(&format!("{root}/"), ""), format!("{want:?}"), "{}", builtin.name);
    }
}
