//! Seeded k-shot sampling from a task's training examples.
//!
//! * Classification: exactly `k` examples of every class. The pool is permuted once with
//!   ChaCha8 keyed by the seed and the tag `fewshot/<task>`, and the first `k` examples of each
//!   class in that order are taken, so for one seed the k = 4 sample is a subset of the k = 16
//!   sample. The result is in permutation order (classes interleaved).
//! * STS-B (regression): the 26 buckets are too fine to be classes, so the strata are the five
//!   gold-score bins [`STSB_FEW_SHOT_BINS`] (`[0,1)`, `[1,2)`, `[2,3)`, `[3,4)`, `[4,5]`):
//!   `k` examples per bin, `5k` in all.
//! * MultiRC (grouped): whole question groups are sampled, `k × 2` groups (k per label count),
//!   with all their answers, so exact match stays meaningful.
//!
//! A stratum with fewer than `k` examples is an error naming task, class and count.

use crate::error::DataError;
use crate::example::Example;
use crate::registry::{TaskKind, TaskSpec};
use crate::rng::permutation;
use crate::splits::units;

/// Few-shot strata for STS-B: gold-score bins (a score of exactly 5 falls in the last bin).
pub const STSB_FEW_SHOT_BINS: [&str; 5] = ["[0,1)", "[1,2)", "[2,3)", "[3,4)", "[4,5]"];

/// The few-shot stratum of `example`: its class, or its STS-B score bin.
pub fn few_shot_stratum(task: &TaskSpec, example: &Example) -> Result<usize, DataError> {
    match task.kind {
        TaskKind::Regression => {
            let score = example.score.ok_or_else(|| DataError::BadExample {
                task: task.name.to_string(),
                id: example.id.clone(),
                problem: "regression example without a gold score".to_string(),
            })?;
            Ok(task.scale.bin(f64::from(score)))
        }
        // One stratum: k examples of a generation task are k rows.
        TaskKind::Generation => Ok(0),
        TaskKind::Classification => {
            if example.label < task.num_classes() {
                Ok(example.label)
            } else {
                Err(DataError::BadExample {
                    task: task.name.to_string(),
                    id: example.id.clone(),
                    problem: format!("label {} is outside the {} classes", example.label, task.num_classes()),
                })
            }
        }
    }
}

/// Samples `k` examples per class (see the module doc for STS-B and MultiRC) from `pool`
/// (normally the task's training split), deterministically for a seed.
pub fn sample_few_shot(task: &TaskSpec, pool: &[Example], k: usize, seed: u64) -> Result<Vec<Example>, DataError> {
    if k == 0 {
        return Err(DataError::InvalidArgument {
            name: "k",
            value: k.to_string(),
            expected: "at least 1 example per class".to_string(),
        });
    }
    let tag = format!("fewshot/{}", task.name);
    if task.grouped {
        let groups = units(pool, true);
        let wanted = k * task.num_classes();
        if groups.len() < wanted {
            return Err(DataError::FewShot {
                task: task.name.to_string(),
                class: "question groups".to_string(),
                available: groups.len(),
                k: wanted,
            });
        }
        return Ok(permutation(groups.len(), seed, &tag)
            .into_iter()
            .take(wanted)
            .flat_map(|g| groups[g].iter().map(|&i| pool[i].clone()))
            .collect());
    }
    let (names, strata): (Vec<String>, usize) = match task.kind {
        TaskKind::Regression => {
            // The bins' names: STS-B's `[0,1)` … `[4,5]`, likewise for other ranges.
            let (lo, width) = (task.scale.lo, (task.scale.hi - task.scale.lo) / 5.0);
            let name = |i: usize| {
                let close = if i == 4 { "]" } else { ")" };
                format!("[{},{}{close}", lo + i as f64 * width, lo + (i + 1) as f64 * width)
            };
            ((0..5).map(name).collect(), 5)
        }
        TaskKind::Classification => (task.labels.iter().map(|s| s.to_string()).collect(), task.num_classes()),
        TaskKind::Generation => (vec!["examples".to_string()], 1),
    };
    let stratum: Vec<usize> = pool.iter().map(|e| few_shot_stratum(task, e)).collect::<Result<_, _>>()?;
    let mut available = vec![0usize; strata];
    for &s in &stratum {
        available[s] += 1;
    }
    if let Some((class, &count)) = available.iter().enumerate().find(|(_, c)| **c < k) {
        return Err(DataError::FewShot {
            task: task.name.to_string(),
            class: names[class].clone(),
            available: count,
            k,
        });
    }
    let mut taken = vec![0usize; strata];
    let mut out = Vec::with_capacity(k * strata);
    for i in permutation(pool.len(), seed, &tag) {
        let s = stratum[i];
        if taken[s] < k {
            taken[s] += 1;
            out.push(pool[i].clone());
            if out.len() == k * strata {
                break;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::lookup;

    fn pool(labels: &[usize]) -> Vec<Example> {
        labels
            .iter()
            .enumerate()
            .map(|(i, &label)| Example {
                id: format!("rte/train/{i}"),
                input: format!("rte sentence1: s{i} sentence2: t{i}"),
                text_a: format!("s{i}"),
                text_b: Some(format!("t{i}")),
                label,
                score: None,
                group: None,
                reference: None,
            })
            .collect()
    }

    #[test]
    fn exactly_k_per_class_deterministic_and_nested() {
        let rte = lookup("rte").unwrap();
        let labels: Vec<usize> = (0..200).map(|i| usize::from(i % 7 == 0)).collect();
        let pool = pool(&labels);
        let a = sample_few_shot(rte, &pool, 16, 5).unwrap();
        assert_eq!(a.len(), 32);
        assert_eq!(a.iter().filter(|e| e.label == 1).count(), 16);
        assert_eq!(a, sample_few_shot(rte, &pool, 16, 5).unwrap());
        assert_ne!(a, sample_few_shot(rte, &pool, 16, 6).unwrap());
        let small = sample_few_shot(rte, &pool, 4, 5).unwrap();
        assert!(small.iter().all(|e| a.contains(e)));
        let mut ids: Vec<&str> = a.iter().map(|e| e.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 32);
    }

    #[test]
    fn too_few_examples_is_an_error_naming_the_class() {
        let rte = lookup("rte").unwrap();
        let pool = pool(&[0, 0, 0, 0, 0, 1, 1, 1]);
        let err = sample_few_shot(rte, &pool, 4, 1).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("rte") && msg.contains("\"not entailment\"") && msg.contains("has 3"), "{msg}");
        assert!(sample_few_shot(rte, &pool, 0, 1).is_err());
    }
}
