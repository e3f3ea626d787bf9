//! Which examples a stage trains and evaluates on: the task's ATTEMPT-style splits, an
//! optional few-shot draw (k per class, with a dev set of at most k per class drawn from the
//! rest of the training split: [`crate::fewshot_dev`]) or cap on the training set, and a
//! seeded cap on dev and test for quick runs. Everything is tokenized once here.

use mpt_data::{DataRoot, Example, Split, TaskSpec, sample_few_shot};
use mpt_models::{Arch, TextTokenizer};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::{Lengths, TaskData};
use crate::error::{Result, TrainError};

/// Example selection for one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Selection {
    /// Seed of the dev/test split and held-out rows.
    pub split_seed: u64,
    /// Train on k examples per class (few-shot) drawn with `sample_seed`.
    pub few_shot_k: Option<usize>,
    /// Otherwise train on at most this many examples (a seeded subset).
    pub max_train: Option<usize>,
    /// Evaluate on at most this many dev examples (seeded subset).
    pub max_dev: Option<usize>,
    /// Evaluate on at most this many test examples (seeded subset).
    pub max_test: Option<usize>,
    /// Seed of the few-shot draw and the subsets.
    pub sample_seed: u64,
    /// Set by a pipeline for stages on tasks declared in task files: a digest of those tasks'
    /// declarations and data files, so that editing either reruns the stages (built-in tasks:
    /// none, and the field is left out of the config).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_digest: Option<String>,
}

impl Default for Selection {
    fn default() -> Self {
        Self {
            split_seed: mpt_data::DEFAULT_SEED,
            few_shot_k: None,
            max_train: None,
            max_dev: None,
            max_test: None,
            sample_seed: 0,
            task_digest: None,
        }
    }
}

/// What [`Selection::validate`] says of a count of 0.
pub const AT_LEAST_ONE: &str = "must be at least 1 (or absent)";

impl Selection {
    /// Rejects values that would only fail once the data is loaded (an empty training, dev or
    /// test set), naming the field under `prefix` (`data.` in a stage config). The stages (in
    /// [`load_task`]), the CLI's flags and the pipeline's validation and dry run all use this
    /// one check, so a value is refused with the same words wherever it is set.
    pub fn validate(&self, prefix: &str) -> Result<()> {
        for (field, value) in [
            ("few_shot_k", self.few_shot_k),
            ("max_train", self.max_train),
            ("max_dev", self.max_dev),
            ("max_test", self.max_test),
        ] {
            if value == Some(0) {
                return Err(TrainError::Config { field: format!("{prefix}{field}"), message: AT_LEAST_ONE.into() });
            }
        }
        Ok(())
    }
}

/// A task's tokenized train and dev data (test is the evaluation stage's).
#[derive(Debug, Clone)]
pub struct TaskSplits {
    /// Training examples.
    pub train: TaskData,
    /// Dev (model selection).
    pub dev: TaskData,
}

/// Keeps at most `max` examples: a seeded subset in split order.
pub fn cap(mut examples: Vec<Example>, max: Option<usize>, seed: u64) -> Vec<Example> {
    if let Some(max) = max
        && examples.len() > max
    {
        let mut order: Vec<usize> = (0..examples.len()).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        let mut keep: Vec<usize> = order.into_iter().take(max).collect();
        keep.sort_unstable();
        let mut i = 0;
        examples.retain(|_| {
            let k = keep.binary_search(&i).is_ok();
            i += 1;
            k
        });
    }
    examples
}

/// Loads, selects and tokenizes the train and dev data of `task`.
pub fn load_task(
    root: &DataRoot,
    task: &'static TaskSpec,
    selection: &Selection,
    tokenizer: &TextTokenizer,
    arch: Arch,
    lengths: Lengths,
) -> Result<TaskSplits> {
    selection.validate("data.")?;
    lengths.validate("train.")?;
    root.check_task(task)?;
    let (train, _) = root.load_split(task, Split::Train, selection.split_seed)?;
    let seed = selection.sample_seed;
    let (train, dev) = match selection.few_shot_k {
        Some(k) => {
            let draw = sample_few_shot(task, &train, k, seed)?;
            let dev = crate::fewshot_dev::few_shot_dev(task, &train, &draw, k, seed)?;
            (draw, dev)
        }
        None => (cap(train, selection.max_train, seed), root.load_split(task, Split::Dev, selection.split_seed)?.0),
    };
    let dev = cap(dev, selection.max_dev, seed.wrapping_add(1));
    if train.is_empty() {
        return Err(TrainError::Config {
            field: "data".into(),
            message: format!(
                "task {}: the training split has no rows (files under {}: {})",
                task.name,
                root.path().display(),
                task.files().iter().map(|f| f.path).collect::<Vec<_>>().join(", ")
            ),
        });
    }
    if dev.is_empty() {
        return Err(TrainError::Config {
            field: "data".into(),
            message: format!(
                "task {}: no dev rows (few_shot_k {:?} leaves none of the training split for a dev set, or max_dev is 0)",
                task.name, selection.few_shot_k
            ),
        });
    }
    let encode = |examples| TaskData::encode(task, examples, tokenizer, arch, lengths);
    Ok(TaskSplits { train: encode(train)?, dev: encode(dev)? })
}

/// Endless seeded pass over `0..n`, reshuffled every epoch.
#[derive(Debug, Clone)]
pub struct EpochSampler {
    n: usize,
    order: Vec<usize>,
    pos: usize,
    rng: ChaCha8Rng,
}

impl EpochSampler {
    /// A sampler over `n` items.
    pub fn new(n: usize, seed: u64) -> Self {
        let mut s = Self { n, order: (0..n).collect(), pos: n, rng: ChaCha8Rng::seed_from_u64(seed) };
        s.reshuffle();
        s
    }

    fn reshuffle(&mut self) {
        self.order = (0..self.n).collect();
        self.order.shuffle(&mut self.rng);
        self.pos = 0;
    }

    /// The next `k` indices (crossing epoch boundaries as needed).
    pub fn take(&mut self, k: usize) -> Vec<usize> {
        let mut out = Vec::with_capacity(k);
        while out.len() < k && self.n > 0 {
            if self.pos == self.n {
                self.reshuffle();
            }
            out.push(self.order[self.pos]);
            self.pos += 1;
        }
        out
    }
}

/// Length-bucketed batches over one task: draws a pool of `pool_batches` batches' worth of
/// indices from an [`EpochSampler`], sorts the pool by input length, cuts it into batches and
/// hands them out in a seeded random order. Rows of a batch then have similar lengths, so
/// less padding is computed; every example is still visited once per epoch.
#[derive(Debug, Clone)]
pub struct BucketSampler {
    inner: EpochSampler,
    lengths: Vec<usize>,
    pool_batches: usize,
    ready: Vec<Vec<usize>>,
    rng: ChaCha8Rng,
}

impl BucketSampler {
    /// A sampler over examples with the given input `lengths`.
    pub fn new(lengths: Vec<usize>, seed: u64, pool_batches: usize) -> Self {
        Self {
            inner: EpochSampler::new(lengths.len(), seed),
            lengths,
            pool_batches: pool_batches.max(1),
            ready: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_b0c7),
        }
    }

    /// The next batch of `k` indices.
    pub fn take(&mut self, k: usize) -> Vec<usize> {
        if self.ready.is_empty() {
            let mut pool = self.inner.take(k * self.pool_batches);
            pool.sort_by_key(|&i| self.lengths[i]);
            let mut batches: Vec<Vec<usize>> = pool.chunks(k).map(<[usize]>::to_vec).collect();
            batches.shuffle(&mut self.rng);
            self.ready = batches;
        }
        self.ready.pop().unwrap_or_default()
    }
}
