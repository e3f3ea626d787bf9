//! The dev set of a few-shot run: drawn from the task's training split, disjoint from the
//! training draw and no larger than it, so model selection sees no more labelled rows than
//! training does (the split's own dev set would hand a k = 4 run hundreds of labelled rows).
//!
//! Per few-shot stratum (class, or STS-B score bin), up to `k` of the training split's rows
//! that the training draw did not take, in a seeded order; a stratum with fewer rows left
//! gives what it has (CB at k = 16: its 16 "neutral" rows all train, so dev has none of
//! them). Grouped tasks (MultiRC) take up to `2k` whole question groups. Empty when nothing
//! is left, which the caller reports.

use std::collections::HashSet;

use mpt_data::{Example, TaskSpec, few_shot_stratum};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::error::Result;

/// Up to `k` rows per stratum of `pool` that are not in `taken`, in seeded order.
pub fn few_shot_dev(task: &TaskSpec, pool: &[Example], taken: &[Example], k: usize, seed: u64) -> Result<Vec<Example>> {
    let used: HashSet<&str> = taken.iter().map(|e| e.id.as_str()).collect();
    let mut rest: Vec<&Example> = pool.iter().filter(|e| !used.contains(e.id.as_str())).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x0def_05e7);
    if task.grouped {
        let mut groups: Vec<&str> = rest.iter().filter_map(|e| e.group.as_deref()).collect();
        groups.sort_unstable();
        groups.dedup();
        groups.shuffle(&mut rng);
        let keep: HashSet<&str> = groups.into_iter().take(2 * k).collect();
        return Ok(rest
            .into_iter()
            .filter(|e| e.group.as_deref().is_some_and(|g| keep.contains(g)))
            .cloned()
            .collect());
    }
    rest.shuffle(&mut rng);
    let mut counts: Vec<usize> = Vec::new();
    let mut dev = Vec::new();
    for e in rest {
        let s = few_shot_stratum(task, e)?;
        if counts.len() <= s {
            counts.resize(s + 1, 0);
        }
        if counts[s] < k {
            counts[s] += 1;
            dev.push(e.clone());
        }
    }
    Ok(dev)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(i: usize, label: usize) -> Example {
        Example {
            id: format!("rte/train/{i}"),
            input: String::new(),
            text_a: format!("a {i}"),
            text_b: Some(format!("b {i}")),
            label,
            score: None,
            group: None,
            reference: None,
        }
    }

    #[test]
    fn dev_is_disjoint_seeded_and_at_most_k_per_class() {
        let task = mpt_data::lookup("rte").unwrap();
        // 10 rows of class 0, 5 of class 1.
        let pool: Vec<Example> = (0..15).map(|i| row(i, usize::from(i >= 10))).collect();
        let taken = mpt_data::sample_few_shot(task, &pool, 4, 7).unwrap();
        let dev = few_shot_dev(task, &pool, &taken, 4, 7).unwrap();
        let ids: HashSet<&str> = taken.iter().map(|e| e.id.as_str()).collect();
        assert!(dev.iter().all(|e| !ids.contains(e.id.as_str())), "dev overlaps the training draw");
        let per = |c| dev.iter().filter(|e| e.label == c).count();
        // Class 1 has 5 rows, 4 train: one left.
        assert_eq!((per(0), per(1)), (4, 1));
        assert_eq!(dev, few_shot_dev(task, &pool, &taken, 4, 7).unwrap(), "same seed, same dev");
        assert_ne!(dev, few_shot_dev(task, &pool, &taken, 4, 8).unwrap(), "another seed, another dev");
        assert!(few_shot_dev(task, &pool[..8], &pool[..8], 4, 7).unwrap().is_empty());
    }
}
