//! Seeded randomness with an explicitly specified algorithm, so that splits and samples stay
//! identical across `rand` releases: ChaCha8 keyed by `(seed, FNV-1a-64(tag))`, unbounded draws
//! by Lemire's widening-multiply rejection method, shuffles by Fisher-Yates from the end.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};

/// FNV-1a, 64 bit.
fn fnv1a64(text: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// A ChaCha8 generator keyed by the user seed (bytes 0..8, little endian) and a purpose tag
/// (bytes 8..16: FNV-1a-64 of `tag`), so independent uses of one seed get independent streams.
pub(crate) fn rng_for(seed: u64, tag: &str) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&fnv1a64(tag).to_le_bytes());
    ChaCha8Rng::from_seed(key)
}

/// Uniform integer in `0..n` (`n > 0`), unbiased (Lemire 2019).
pub(crate) fn below(rng: &mut ChaCha8Rng, n: usize) -> usize {
    debug_assert!(n > 0);
    let n = n as u64;
    loop {
        let product = u128::from(rng.next_u64()) * u128::from(n);
        let low = product as u64;
        if low < n {
            let threshold = n.wrapping_neg() % n;
            if low < threshold {
                continue;
            }
        }
        return (product >> 64) as usize;
    }
}

/// In-place Fisher-Yates shuffle (`i` from `len-1` down to 1 swaps with `below(i+1)`).
pub(crate) fn shuffle<T>(rng: &mut ChaCha8Rng, items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let j = below(rng, i + 1);
        items.swap(i, j);
    }
}

/// A seeded permutation of `0..n`.
pub(crate) fn permutation(n: usize, seed: u64, tag: &str) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    shuffle(&mut rng_for(seed, tag), &mut order);
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_is_a_permutation_and_deterministic() {
        let a = permutation(100, 7, "x");
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_eq!(a, permutation(100, 7, "x"));
        assert_ne!(a, permutation(100, 8, "x"));
        assert_ne!(a, permutation(100, 7, "y"));
    }

    #[test]
    fn below_covers_range_roughly_uniformly() {
        let mut rng = rng_for(1, "below");
        let mut counts = [0usize; 3];
        for _ in 0..3000 {
            counts[below(&mut rng, 3)] += 1;
        }
        assert!(counts.iter().all(|&c| (900..1100).contains(&c)), "{counts:?}");
    }
}
