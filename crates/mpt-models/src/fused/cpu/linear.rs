//! Flex's linear maps with a constant weight: `x W (+ b)` and the input gradient `g Wᵀ`.
//!
//! The rows of `x` are split into blocks, one single-threaded product per block spread over
//! rayon's threads, and the bias is written into the output before the product is accumulated
//! onto it, so there is neither a zero-filled output nor a second pass to add the bias.
//!
//! How the rows are blocked depends on the kernel ([`super::blas`]):
//! - gemm: one block per thread. gemm packs the whole weight for every call, so each extra
//!   block packs it once more (with 256-row blocks, a T5-Base step spent 15% of its time
//!   packing; with one block per thread 7.6%, and the step is 6% faster). gemm's sums do not
//!   depend on the row count of a call, so the products, and the artifacts, are the same on
//!   any number of threads (`blocking_leaves_gemm_products_unchanged`). Products of 2..127
//!   rows (a decoder's few positions) are split by columns instead, so they too use every
//!   thread (a T5-Base step 5% faster); their sums do not depend on the column count either
//!   (`column_blocking_leaves_gemm_products_unchanged`).
//! - OpenBLAS: blocks of [`BLOCK_ROWS`], at least [`MIN_BLOCKS`]: OpenBLAS's sums do depend on
//!   a call's row count, so the blocking must not follow the thread count.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::blas::{self, OpenBlas};
use super::{filled, matmul};

/// Rows per OpenBLAS block: small enough that a block of `x` and of the output stay in L2 next
/// to the weight's packed panels, large enough to amortise packing the weight once per block.
const BLOCK_ROWS: usize = 256;

/// Fewest rows a gemm block gets: products of fewer rows than twice this run on one thread,
/// where splitting them would save little and a one-row block would take gemm's matrix-vector
/// path, whose sums differ.
const GEMM_MIN_BLOCK_ROWS: usize = 64;

/// Products of fewer than `MIN_BLOCKS · BLOCK_ROWS` rows are still cut into this many blocks,
/// so small products run on two threads. A constant, not the thread count: OpenBLAS's result
/// for a row depends on the row count of the block it is computed in, so blocking by the
/// thread count made artifacts differ between a run on 2 threads and one on 1 (as
/// `mpt run --jobs 2` gives each stage). 2 keeps the blocking, and so every artifact id, of the
/// 2-thread runs the published results come from; on machines with more threads, products
/// under `MIN_BLOCKS · BLOCK_ROWS` rows use fewer threads than they could.
const MIN_BLOCKS: usize = 2;

/// Fewest columns a gemm column block gets (products of few rows are split by columns):
/// gemm takes another cache blocking, and so other sums, for products of at most 64 rows and
/// 64 columns.
const GEMM_MIN_BLOCK_COLS: usize = 128;

/// Columns per block of a gemm product of `rows` rows and `n` columns on `threads` threads:
/// products too short to split by rows ([`block_rows`] gives one block) are split by columns,
/// so a decoder's few rows still use every thread; `n` when not split. A single row is not
/// split: gemm's matrix-vector sums depend on the column count.
fn block_cols(rows: usize, n: usize, threads: usize) -> usize {
    if rows >= 2 * GEMM_MIN_BLOCK_ROWS || rows == 1 {
        return n;
    }
    n.div_ceil(threads.min(n / GEMM_MIN_BLOCK_COLS).max(1))
}

/// A pointer shared by the tasks that write disjoint parts of one output.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: the tasks holding one write disjoint elements.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// Rows per block of a product of `rows` rows on `threads` threads (see the module docs).
fn block_rows(rows: usize, openblas: bool, threads: usize) -> usize {
    let blocks = if openblas {
        rows.div_ceil(BLOCK_ROWS).max(MIN_BLOCKS.min(rows))
    } else {
        threads.min(rows / GEMM_MIN_BLOCK_ROWS).max(1)
    };
    rows.div_ceil(blocks)
}

/// `x[rows, k] · M` with `M[k, n]` at `m[i·rs + j·cs]`, plus `bias[n]` on every row when given,
/// on the selected kernel. Returns the row-major `[rows, n]` product.
fn product(x: &[f32], k: usize, m: &[f32], dims: (usize, usize, usize), bias: Option<&[f32]>) -> Vec<f32> {
    product_on(blas::openblas(), x, k, m, dims, bias)
}

/// [`product`] on `openblas` when given (and CBLAS can express the layout), on gemm otherwise.
fn product_on(
    openblas: Option<&OpenBlas>,
    x: &[f32],
    k: usize,
    m: &[f32],
    (n, rs, cs): (usize, usize, usize),
    bias: Option<&[f32]>,
) -> Vec<f32> {
    assert!(k > 0 && x.len().is_multiple_of(k), "linear: input of {} values is not rows of {k}", x.len());
    assert!(m.len() >= k * n && (k - 1) * rs + (n.max(1) - 1) * cs < m.len().max(1), "linear: weight");
    if let Some(b) = bias {
        assert_eq!(b.len(), n, "linear: bias");
    }
    let rows = x.len() / k;
    if n == 0 || rows == 0 {
        return Vec::new();
    }
    let threads = rayon::current_num_threads();
    let cols = block_cols(rows, n, threads);
    if openblas.is_none() && cols < n {
        let fill = |out: &mut [MaybeUninit<f32>]| {
            if let Some(b) = bias {
                for row in out.chunks_exact_mut(n) {
                    for (o, &b) in row.iter_mut().zip(b) {
                        o.write(b);
                    }
                }
            }
            let dst = Out(out.as_mut_ptr().cast::<f32>());
            (0..n.div_ceil(cols)).into_par_iter().for_each(|block| {
                let (first, width) = (block * cols, cols.min(n - block * cols));
                // SAFETY: the task writes columns `first..first + width` of the `[rows, n]`
                // output (initialised and read when `bias` is given) from those columns of
                // `M` (in bounds, checked above); `x` is `[rows, k]` row-major.
                unsafe {
                    matmul(
                        (rows, width, k),
                        (dst.at(first), 1, n as isize),
                        bias.is_some(),
                        (x.as_ptr(), 1, k as isize),
                        (m.as_ptr().add(first * cs), cs as isize, rs as isize),
                    )
                }
            });
        };
        // SAFETY: every column block is written, as below.
        return unsafe { filled(rows * n, fill) };
    }
    let block = block_rows(rows, openblas.is_some(), threads);
    let fill = |out: &mut [MaybeUninit<f32>]| {
        out.par_chunks_mut(block * n).zip(x.par_chunks(block * k)).for_each(|(out, x)| {
            if let Some(b) = bias {
                for row in out.chunks_exact_mut(n) {
                    for (o, &b) in row.iter_mut().zip(b) {
                        o.write(b);
                    }
                }
            }
            // SAFETY: `out` is `[block rows, n]` (initialised and read when `bias` is
            // given); `x` is `[block rows, k]` row-major; `m` covers `[k, n]` at strides
            // (`rs`, `cs`) (checked above).
            unsafe {
                let dims = (x.len() / k, n, k);
                let dst = (out.as_mut_ptr().cast::<f32>(), 1, n as isize);
                let lhs = (x.as_ptr(), 1, k as isize);
                let rhs = (m.as_ptr(), cs as isize, rs as isize);
                if !openblas.is_some_and(|b| b.matmul(dims, dst, bias.is_some(), lhs, rhs)) {
                    matmul(dims, dst, bias.is_some(), lhs, rhs)
                }
            }
        });
    };
    // SAFETY: every block is written: without a bias the product overwrites it, with one the
    // bias rows are written first and the product accumulates onto them.
    unsafe { filled(rows * n, fill) }
}

/// `x W + bias` for row-major `x` `[rows, d_in]` and `w` `[d_in, d_out]`: row-major
/// `[rows, d_out]`.
pub fn linear_forward(x: &[f32], w: &[f32], d_out: usize, bias: Option<&[f32]>) -> Vec<f32> {
    let d_in = w.len().checked_div(d_out).unwrap_or(0);
    product(x, d_in, w, (d_out, d_out, 1), bias)
}

/// `g Wᵀ` for row-major `g` `[rows, d_out]` and `w` `[d_in, d_out]`: row-major `[rows, d_in]`.
pub fn linear_backward(g: &[f32], w: &[f32], d_out: usize) -> Vec<f32> {
    let d_in = w.len().checked_div(d_out).unwrap_or(0);
    product(g, d_out, w, (d_in, 1, d_out), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len as u32).map(|i| ((i.wrapping_mul(2_654_435_761) ^ seed) % 2001) as f32 / 1000.0 - 1.0).collect()
    }

    #[test]
    fn gemm_blocks_follow_the_threads_and_openblas_blocks_do_not() {
        assert_eq!(block_rows(1824, false, 2), 912);
        assert_eq!(block_rows(1824, false, 1), 1824);
        assert_eq!(block_rows(1824, false, 3), 608);
        assert_eq!(block_rows(100, false, 2), 100, "too few rows to split");
        assert_eq!(block_rows(1824, true, 1), 228);
        assert_eq!(block_rows(1824, true, 2), 228);
        assert_eq!(block_rows(300, true, 8), 150);
        assert_eq!(block_rows(1, true, 2), 1);
        assert_eq!(block_cols(16, 3072, 2), 1536);
        assert_eq!(block_cols(16, 3072, 1), 3072);
        assert_eq!(block_cols(16, 200, 2), 200, "too few columns to split");
        assert_eq!(block_cols(128, 3072, 2), 3072, "split by rows");
        assert_eq!(block_cols(1, 3072, 2), 3072, "one row");
    }

    #[test]
    fn blocking_leaves_gemm_products_unchanged() {
        // Rows that split unevenly, a depth over gemm's 512-deep panels, a bias and the
        // transposed layout of the backward pass; one, two and three threads.
        blocking_leaves_products_unchanged(517, 1100, 200);
    }

    #[test]
    fn column_blocking_leaves_gemm_products_unchanged() {
        // Few rows (split by columns), columns that split unevenly.
        for rows in [1, 2, 7, 16, 127] {
            for (k, n) in [(300, 400), (1100, 777)] {
                blocking_leaves_products_unchanged(rows, k, n);
            }
        }
    }

    fn blocking_leaves_products_unchanged(rows: usize, k: usize, n: usize) {
        let x = values(rows * k, 1);
        let w = values(k * n, 2);
        let bias = values(n, 3);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
            pool.install(|| {
                (
                    product_on(None, &x, k, &w, (n, n, 1), Some(&bias)),
                    product_on(None, &values(rows * n, 4), n, &w, (k, 1, n), None),
                )
            })
        };
        let one = run(1);
        let whole_forward = one.0.clone();
        for threads in [2, 3] {
            let (forward, backward) = run(threads);
            assert!(forward.iter().zip(&one.0).all(|(a, b)| a.to_bits() == b.to_bits()), "{threads} threads: forward");
            assert!(
                backward.iter().zip(&one.1).all(|(a, b)| a.to_bits() == b.to_bits()),
                "{threads} threads: backward"
            );
        }
        let reference: Vec<f32> = (0..rows * n)
            .map(|e| {
                let (r, c) = (e / n, e % n);
                bias[c] + (0..k).map(|i| f64::from(x[r * k + i]) * f64::from(w[i * n + c])).sum::<f64>() as f32
            })
            .collect();
        let worst = whole_forward.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(worst < 1e-3, "forward differs from the f64 product by {worst}");
    }
}
