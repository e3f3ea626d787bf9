//! ATTEMPT-style train/dev/test splits, seeded (default seed [`DEFAULT_SEED`] = 42).
//!
//! * **Small tasks** (official train < 10k rows: rte, mrpc, cola, stsb, cb, wic, wsc, copa,
//!   multirc): train = official train; the labelled validation set is shuffled and halved:
//!   the first `floor(n/2)` units are dev, the rest test. MultiRC shuffles and halves whole
//!   question groups, so a question's answers stay together.
//! * **Large tasks** (sst2, mnli, qnli, qqp, snli, paws): 1,000 training rows are held out as
//!   dev and the official dev set is the test set.
//! * **Substitutes** for files missing from the data root (see `SOURCES.md` there):
//!   mnli/qnli/snli/qqp train and dev are the `train-subset-ppft` 8,999 + 1,000 rows (the
//!   1,000 disjoint rows are the held-out dev); qqp test is `train-subset-cutoff/new_dev.tsv`
//!   minus its one malformed row and minus rows whose (question1, question2) occur in the ppft
//!   train or dev; paws train/dev come from the official dev (7,000 + 1,000) and test is the
//!   official test; boolq train = FewGLUE train + dev32 (64 rows) + 1,000 val rows, the other
//!   2,270 val rows halved; scitail (test only) = 1,000 train rows, the other 1,126 halved.
//!
//! | task | train | dev | test |
//! |---|---|---|---|
//! | sst2 | train.tsv − 1,000 (66,349) | 1,000 of train.tsv | dev.tsv (872) |
//! | mnli | ppft train.json (8,999) | ppft dev.json (1,000) | dev_matched.jsonl (9,815) |
//! | qnli | ppft train.json (8,999) | ppft dev.json (1,000) | dev.tsv (5,463) |
//! | qqp | ppft train.json (8,999) | ppft dev.json (1,000) | cutoff new_dev.tsv − 1 malformed − 627 overlapping (22,869) |
//! | snli | ppft train.json (8,999) | ppft dev.json (1,000) | test.tsv (9,824) |
//! | rte | train.tsv (2,490) | ½ dev.tsv (138) | ½ dev.tsv (139) |
//! | mrpc | train.tsv (3,668) | ½ dev.tsv (204) | ½ dev.tsv (204) |
//! | cola | train.tsv (8,551) | ½ dev.tsv (521) | ½ dev.tsv (522) |
//! | stsb | train.tsv (5,749) | ½ dev.tsv (750) | ½ dev.tsv (750) |
//! | cb | train.jsonl (250) | ½ val (28) | ½ val (28) |
//! | boolq | fewglue train + dev32 + 1,000 val (1,064) | ½ rest of val (1,135) | ½ rest of val (1,135) |
//! | wic | train.jsonl (5,428) | ½ val (319) | ½ val (319) |
//! | wsc | train.jsonl (554) | ½ val (52) | ½ val (52) |
//! | copa | train.jsonl (400) | ½ val (50) | ½ val (50) |
//! | multirc | train.jsonl (27,243 answers) | ½ val questions (476 q) | ½ val questions (477 q) |
//! | scitail | 1,000 of test.jsonl | ½ rest (563) | ½ rest (563) |
//! | paws | dev.tsv − 1,000 (7,000) | 1,000 of dev.tsv | test.tsv (8,000) |
//!
//! The shuffle is a Fisher-Yates permutation driven by ChaCha8 keyed by the seed and the tag
//! `split/<task>`; selected rows keep their file order.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::DataError;
use crate::example::Example;
use crate::readers::{LoadReport, read_source};
use crate::registry::{SourceFile, SplitPlan, TaskSpec};
use crate::rng::permutation;

/// The default split seed.
pub const DEFAULT_SEED: u64 = 42;

/// One of the three splits every task provides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Training data.
    Train,
    /// Model selection (early stopping, checkpoint choice).
    Dev,
    /// Reported results.
    Test,
}

impl Split {
    /// All splits in order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Dev, Split::Test];

    /// `"train"`, `"dev"` or `"test"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Dev => "dev",
            Split::Test => "test",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Split {
    type Err = DataError;

    /// Accepts `train`, `dev` (also `val`, `valid`, `validation`) and `test`, case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "train" => Ok(Split::Train),
            "dev" | "val" | "valid" | "validation" => Ok(Split::Dev),
            "test" => Ok(Split::Test),
            _ => Err(DataError::UnknownSplit { name: s.to_string() }),
        }
    }
}

/// All three splits of a task.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SplitSet {
    /// Training examples.
    pub train: Vec<Example>,
    /// Dev examples.
    pub dev: Vec<Example>,
    /// Test examples.
    pub test: Vec<Example>,
    /// Rows skipped or removed while reading (each file is read once).
    pub report: LoadReport,
}

impl SplitSet {
    /// The examples of `split`.
    pub fn get(&self, split: Split) -> &[Example] {
        match split {
            Split::Train => &self.train,
            Split::Dev => &self.dev,
            Split::Test => &self.test,
        }
    }
}

/// Loads one split of `task` from the data root `root` (reading only the files that split
/// needs). The report lists rows skipped or removed on the way.
pub fn load_split(
    root: &Path,
    task: &TaskSpec,
    split: Split,
    seed: u64,
) -> Result<(Vec<Example>, LoadReport), DataError> {
    let mut set = load_parts(root, task, Some(split), seed)?;
    let examples = std::mem::take(match split {
        Split::Train => &mut set.train,
        Split::Dev => &mut set.dev,
        Split::Test => &mut set.test,
    });
    Ok((examples, set.report))
}

/// Loads all three splits of `task`, reading each file once.
pub fn load_splits(root: &Path, task: &TaskSpec, seed: u64) -> Result<SplitSet, DataError> {
    load_parts(root, task, None, seed)
}

/// Indices of examples per unit (a MultiRC question group, or a single row), in first-seen order.
pub(crate) fn units(examples: &[Example], grouped: bool) -> Vec<Vec<usize>> {
    if !grouped {
        return (0..examples.len()).map(|i| vec![i]).collect();
    }
    let mut order: Vec<Vec<usize>> = Vec::new();
    let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (i, example) in examples.iter().enumerate() {
        let key = example.group.as_deref().unwrap_or(example.id.as_str());
        let slot = *index.entry(key).or_insert_with(|| {
            order.push(Vec::new());
            order.len() - 1
        });
        order[slot].push(i);
    }
    order
}

/// Seeded shuffle of the units of `examples`; the first `first` units go to part A, the next
/// `second` to part B, the rest to part C. Each part keeps file order.
fn partition(
    examples: Vec<Example>,
    grouped: bool,
    seed: u64,
    tag: &str,
    first: usize,
    second: usize,
) -> [Vec<Example>; 3] {
    let units = units(&examples, grouped);
    let mut part_of_example = vec![2u8; examples.len()];
    for (position, unit) in permutation(units.len(), seed, tag).into_iter().enumerate() {
        let part = if position < first {
            0
        } else if position - first < second {
            1
        } else {
            2
        };
        for &i in &units[unit] {
            part_of_example[i] = part;
        }
    }
    let mut parts: [Vec<Example>; 3] = Default::default();
    for (example, part) in examples.into_iter().zip(part_of_example) {
        parts[usize::from(part)].push(example);
    }
    parts
}

fn read(root: &Path, task: &TaskSpec, file: &SourceFile, report: &mut LoadReport) -> Result<Vec<Example>, DataError> {
    let (examples, file_report) = read_source(root, task, file)?;
    report.merge(file_report);
    Ok(examples)
}

fn load_parts(root: &Path, task: &TaskSpec, only: Option<Split>, seed: u64) -> Result<SplitSet, DataError> {
    let want = |split: Split| only.is_none_or(|o| o == split);
    let tag = format!("split/{}", task.name);
    let mut set = SplitSet::default();
    let report = &mut set.report;
    match task.plan {
        SplitPlan::Pool { train, pool, pool_to_train } => {
            let pool_examples = read(root, task, &pool, report)?;
            let n_units = units(&pool_examples, task.grouped).len();
            if n_units < pool_to_train + 2 {
                return Err(DataError::TooFewRows {
                    task: task.name.to_string(),
                    what: pool.path.to_string(),
                    available: n_units,
                    needed: pool_to_train + 2,
                });
            }
            let half = (n_units - pool_to_train) / 2;
            let [to_train, dev, test] = partition(pool_examples, task.grouped, seed, &tag, pool_to_train, half);
            if want(Split::Train) {
                for file in train {
                    let examples = read(root, task, file, report)?;
                    set.train.extend(examples);
                }
                set.train.extend(to_train);
            }
            if want(Split::Dev) {
                set.dev = dev;
            }
            if want(Split::Test) {
                set.test = test;
            }
        }
        SplitPlan::HoldOut { pool, holdout, test } => {
            if want(Split::Train) || want(Split::Dev) {
                let pool_examples = read(root, task, &pool, report)?;
                let n_units = units(&pool_examples, task.grouped).len();
                if n_units <= holdout {
                    return Err(DataError::TooFewRows {
                        task: task.name.to_string(),
                        what: pool.path.to_string(),
                        available: n_units,
                        needed: holdout + 1,
                    });
                }
                let [dev, train, _] = partition(pool_examples, task.grouped, seed, &tag, holdout, usize::MAX);
                if want(Split::Train) {
                    set.train = train;
                }
                if want(Split::Dev) {
                    set.dev = dev;
                }
            }
            if want(Split::Test) {
                set.test = read(root, task, &test, report)?;
            }
        }
        SplitPlan::Given { train, dev, test, dedup_test } => {
            let need_train_dev = want(Split::Test) && dedup_test;
            if want(Split::Train) || need_train_dev {
                set.train = read(root, task, &train, report)?;
            }
            if want(Split::Dev) || need_train_dev {
                set.dev = read(root, task, &dev, report)?;
            }
            if want(Split::Test) {
                let mut examples = read(root, task, &test, report)?;
                if dedup_test {
                    let seen: HashSet<(&str, Option<&str>)> =
                        set.train.iter().chain(&set.dev).map(|e| (e.text_a.as_str(), e.text_b.as_deref())).collect();
                    let before = examples.len();
                    examples.retain(|e| !seen.contains(&(e.text_a.as_str(), e.text_b.as_deref())));
                    set.report.removed_overlap += before - examples.len();
                }
                set.test = examples;
            }
            if !want(Split::Train) {
                set.train.clear();
            }
            if !want(Split::Dev) {
                set.dev.clear();
            }
        }
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_names_round_trip() {
        for split in Split::ALL {
            assert_eq!(split.to_string().parse::<Split>().ok(), Some(split));
        }
        assert_eq!("Validation".parse::<Split>().ok(), Some(Split::Dev));
        let err = "holdout".parse::<Split>().unwrap_err().to_string();
        assert!(err.contains("holdout"), "{err}");
    }

    fn ex(i: usize, group: Option<&str>) -> Example {
        Example {
            id: format!("t/f/{i}"),
            input: String::new(),
            text_a: String::new(),
            text_b: None,
            label: 0,
            score: None,
            group: group.map(str::to_string),
            reference: None,
        }
    }

    #[test]
    fn partition_keeps_groups_and_file_order() {
        let examples: Vec<Example> = (0..30).map(|i| ex(i, Some(["a", "b", "c", "d", "e"][i % 5]))).collect();
        let [a, b, c] = partition(examples, true, 3, "t", 2, 1);
        assert_eq!(a.len(), 12);
        assert_eq!(b.len(), 6);
        assert_eq!(c.len(), 12);
        for part in [&a, &b, &c] {
            let ids: Vec<usize> = part.iter().map(|e| e.id.rsplit('/').next().unwrap().parse().unwrap()).collect();
            assert!(ids.windows(2).all(|w| w[0] < w[1]));
        }
        let groups = |p: &[Example]| -> HashSet<String> { p.iter().filter_map(|e| e.group.clone()).collect() };
        assert!(groups(&a).is_disjoint(&groups(&b)));
        assert!(groups(&b).is_disjoint(&groups(&c)));
        assert!(groups(&a).is_disjoint(&groups(&c)));
    }
}
