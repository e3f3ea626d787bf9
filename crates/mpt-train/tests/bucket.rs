//! Length-bucketed batches: every example once per epoch, similar lengths within a batch,
//! same seed -> same batches.

use mpt_train::BucketSampler;

fn lengths() -> Vec<usize> {
    // 64 examples with lengths spread over 1..=64 in a scrambled order.
    (0..64).map(|i| (i * 37) % 64 + 1).collect()
}

#[test]
fn an_epoch_visits_every_example_once() {
    let mut s = BucketSampler::new(lengths(), 7, 4);
    let mut seen: Vec<usize> = (0..8).flat_map(|_| s.take(8)).collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..64).collect::<Vec<_>>());
}

#[test]
fn batches_hold_similar_lengths() {
    let lens = lengths();
    // One pool covers the whole epoch: batches are consecutive runs of the sorted lengths.
    let mut s = BucketSampler::new(lens.clone(), 3, 8);
    for _ in 0..8 {
        let batch = s.take(8);
        let (lo, hi) = batch.iter().map(|&i| lens[i]).fold((usize::MAX, 0), |(lo, hi), l| (lo.min(l), hi.max(l)));
        assert_eq!(hi - lo, 7, "lengths in a batch span 8 consecutive values: {batch:?}");
    }
}

#[test]
fn the_seed_fixes_the_batches() {
    let a: Vec<Vec<usize>> = {
        let mut s = BucketSampler::new(lengths(), 11, 2);
        (0..10).map(|_| s.take(5)).collect()
    };
    let b: Vec<Vec<usize>> = {
        let mut s = BucketSampler::new(lengths(), 11, 2);
        (0..10).map(|_| s.take(5)).collect()
    };
    let c: Vec<Vec<usize>> = {
        let mut s = BucketSampler::new(lengths(), 12, 2);
        (0..10).map(|_| s.take(5)).collect()
    };
    assert_eq!(a, b);
    assert_ne!(a, c);
}
