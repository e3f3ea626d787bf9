//! Multitask batch sampler for the distillation stage.
//!
//! Every batch: draw `K` uniformly from `2..=kappa`, then `K` distinct tasks uniformly (a
//! partial Fisher-Yates shuffle of the task indices), then split the batch size `B` among them
//! as evenly as possible (each gets `B / K`; the first `B % K` chosen tasks get one more). Each
//! task serves its examples from its own seeded stream: a permutation of its indices that is
//! reshuffled whenever it is used up (an epoch of that task). All randomness derives from the
//! seed (ChaCha8, tags `sampler/batches` and `sampler/stream/<t>`), so batches are reproducible.

use rand_chacha::ChaCha8Rng;

use crate::error::DataError;
use crate::rng::{below, rng_for, shuffle};

/// One task's endless stream of shuffled example indices.
#[derive(Clone, Debug)]
struct Stream {
    rng: ChaCha8Rng,
    order: Vec<usize>,
    cursor: usize,
    epochs: usize,
}

impl Stream {
    fn new(size: usize, seed: u64, task: usize) -> Self {
        let mut rng = rng_for(seed, &format!("sampler/stream/{task}"));
        let mut order: Vec<usize> = (0..size).collect();
        shuffle(&mut rng, &mut order);
        Stream { rng, order, cursor: 0, epochs: 0 }
    }

    fn next_index(&mut self) -> usize {
        if self.cursor == self.order.len() {
            shuffle(&mut self.rng, &mut self.order);
            self.cursor = 0;
            self.epochs += 1;
        }
        let index = self.order[self.cursor];
        self.cursor += 1;
        index
    }
}

/// Samples multitask batches of `(task_index, example_index)` pairs. It is an endless
/// [`Iterator`] over batches.
#[derive(Clone, Debug)]
pub struct MultitaskSampler {
    kappa: usize,
    batch_size: usize,
    rng: ChaCha8Rng,
    streams: Vec<Stream>,
    tasks: Vec<usize>,
}

impl MultitaskSampler {
    /// A sampler over tasks with `task_sizes[t]` examples each.
    ///
    /// Errors: `kappa < 2`, `kappa > T` (number of tasks), `batch_size < kappa` (a batch of
    /// `K ≤ kappa` tasks must give each at least one example), or an empty task.
    pub fn new(task_sizes: &[usize], kappa: usize, batch_size: usize, seed: u64) -> Result<Self, DataError> {
        let tasks = task_sizes.len();
        if kappa < 2 || kappa > tasks {
            return Err(DataError::InvalidArgument {
                name: "kappa",
                value: kappa.to_string(),
                expected: format!("2 <= kappa <= number of tasks ({tasks})"),
            });
        }
        if batch_size < kappa {
            return Err(DataError::InvalidArgument {
                name: "batch_size",
                value: batch_size.to_string(),
                expected: format!("at least kappa ({kappa}) so every chosen task gets an example"),
            });
        }
        if let Some(t) = task_sizes.iter().position(|&n| n == 0) {
            return Err(DataError::InvalidArgument {
                name: "task_sizes",
                value: format!("{task_sizes:?}"),
                expected: format!("every task non-empty (task {t} has no examples)"),
            });
        }
        Ok(MultitaskSampler {
            kappa,
            batch_size,
            rng: rng_for(seed, "sampler/batches"),
            streams: task_sizes.iter().enumerate().map(|(t, &n)| Stream::new(n, seed, t)).collect(),
            tasks: (0..tasks).collect(),
        })
    }

    /// Number of tasks `T`.
    pub fn num_tasks(&self) -> usize {
        self.streams.len()
    }

    /// Largest number of tasks in one batch.
    pub fn kappa(&self) -> usize {
        self.kappa
    }

    /// Examples per batch.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Completed passes over each task's examples so far.
    pub fn epochs(&self) -> Vec<usize> {
        self.streams.iter().map(|s| s.epochs).collect()
    }

    /// The next batch: `batch_size` pairs `(task_index, example_index)`, grouped by task in the
    /// order the tasks were drawn.
    pub fn next_batch(&mut self) -> Vec<(usize, usize)> {
        let k = 2 + below(&mut self.rng, self.kappa - 1);
        // Partial Fisher-Yates: the first k slots become k distinct uniformly drawn tasks.
        let n = self.tasks.len();
        for i in 0..k {
            let j = i + below(&mut self.rng, n - i);
            self.tasks.swap(i, j);
        }
        let base = self.batch_size / k;
        let extra = self.batch_size % k;
        let mut batch = Vec::with_capacity(self.batch_size);
        for (slot, &task) in self.tasks[..k].iter().enumerate() {
            let share = base + usize::from(slot < extra);
            for _ in 0..share {
                batch.push((task, self.streams[task].next_index()));
            }
        }
        batch
    }
}

impl Iterator for MultitaskSampler {
    type Item = Vec<(usize, usize)>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(self.next_batch())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn batches_respect_kappa_distinctness_and_size() {
        let sizes = [50, 7, 300, 12, 1];
        let sampler = MultitaskSampler::new(&sizes, 4, 33, 9).unwrap();
        let mut seen_k = BTreeSet::new();
        let mut seen_tasks = BTreeSet::new();
        for batch in sampler.take(2000) {
            assert_eq!(batch.len(), 33);
            let mut tasks: Vec<usize> = batch.iter().map(|p| p.0).collect();
            tasks.dedup(); // grouped by task, so dedup counts distinct tasks
            let distinct: BTreeSet<usize> = tasks.iter().copied().collect();
            assert_eq!(distinct.len(), tasks.len(), "task groups are contiguous and distinct");
            assert!((2..=4).contains(&tasks.len()), "K = {}", tasks.len());
            seen_k.insert(tasks.len());
            seen_tasks.extend(distinct);
            // Even split: shares differ by at most one.
            let shares: Vec<usize> = tasks.iter().map(|t| batch.iter().filter(|p| p.0 == *t).count()).collect();
            assert!(shares.iter().max().unwrap() - shares.iter().min().unwrap() <= 1);
            for &(t, i) in &batch {
                assert!(i < sizes[t]);
            }
        }
        assert_eq!(seen_k, BTreeSet::from([2, 3, 4]));
        assert_eq!(seen_tasks, BTreeSet::from([0, 1, 2, 3, 4]));
    }

    #[test]
    fn deterministic_for_a_seed() {
        let a: Vec<_> = MultitaskSampler::new(&[10, 20, 30], 3, 8, 1).unwrap().take(50).collect();
        let b: Vec<_> = MultitaskSampler::new(&[10, 20, 30], 3, 8, 1).unwrap().take(50).collect();
        let c: Vec<_> = MultitaskSampler::new(&[10, 20, 30], 3, 8, 2).unwrap().take(50).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn streams_cover_each_epoch_before_repeating() {
        let mut sampler = MultitaskSampler::new(&[5, 5], 2, 2, 3).unwrap();
        let mut drawn: Vec<usize> = Vec::new();
        while drawn.len() < 10 {
            drawn.extend(sampler.next_batch().iter().filter(|p| p.0 == 0).map(|p| p.1));
        }
        let first: BTreeSet<usize> = drawn[..5].iter().copied().collect();
        let second: BTreeSet<usize> = drawn[5..10].iter().copied().collect();
        assert_eq!(first, (0..5).collect());
        assert_eq!(second, (0..5).collect());
        assert!(sampler.epochs()[0] >= 1);
    }

    #[test]
    fn bad_configurations_are_errors() {
        let kappa1 = MultitaskSampler::new(&[3, 3, 3], 1, 8, 0).unwrap_err().to_string();
        assert!(kappa1.contains("kappa = 1"), "{kappa1}");
        let kappa4 = MultitaskSampler::new(&[3, 3, 3], 4, 8, 0).unwrap_err().to_string();
        assert!(kappa4.contains("kappa = 4") && kappa4.contains("(3)"), "{kappa4}");
        let small = MultitaskSampler::new(&[3, 3, 3], 3, 2, 0).unwrap_err().to_string();
        assert!(small.contains("batch_size = 2"), "{small}");
        assert!(MultitaskSampler::new(&[3, 0, 3], 2, 8, 0).is_err());
        assert!(MultitaskSampler::new(&[3], 2, 8, 0).is_err());
    }
}
