//! Flex's linear maps with a constant weight: `x W (+ b)` and the input gradient `g Wᵀ`.
//!
//! The rows of `x` are split into blocks of a few hundred, one single-threaded product per
//! block (OpenBLAS's `sgemm` when one is loaded, else gemm's; [`super::blas`]) spread over
//! rayon's threads (each block's slice of `x` and of the output stays in
//! cache while it is multiplied), and the bias is written into the output before the product
//! is accumulated onto it, so there is neither a zero-filled output nor a second pass to add
//! the bias.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::{filled, matmul_blas};

/// Rows per block: small enough that a block of `x` and of the output stay in L2 next to the
/// weight's packed panels, large enough to amortise packing the weight once per block.
const BLOCK_ROWS: usize = 256;

/// Products of fewer than `MIN_BLOCKS · BLOCK_ROWS` rows are still cut into this many blocks,
/// so small products run on two threads. A constant, not the thread count: OpenBLAS's result
/// for a row depends on the row count of the block it is computed in, so blocking by the
/// thread count made artifacts differ between a run on 2 threads and one on 1 (as
/// `mpt run --jobs 2` gives each stage). 2 keeps the blocking, and so every artifact id, of the
/// 2-thread runs the published results come from; on machines with more threads, products
/// under `MIN_BLOCKS · BLOCK_ROWS` rows use fewer threads than they could.
const MIN_BLOCKS: usize = 2;

/// `x[rows, k] · M` with `M[k, n]` at `m[i·rs + j·cs]`, plus `bias[n]` on every row when given.
/// Returns the row-major `[rows, n]` product.
fn product(x: &[f32], k: usize, m: &[f32], (n, rs, cs): (usize, usize, usize), bias: Option<&[f32]>) -> Vec<f32> {
    assert!(k > 0 && x.len().is_multiple_of(k), "linear: input of {} values is not rows of {k}", x.len());
    assert!(m.len() >= k * n && (k - 1) * rs + (n.max(1) - 1) * cs < m.len().max(1), "linear: weight");
    if let Some(b) = bias {
        assert_eq!(b.len(), n, "linear: bias");
    }
    let rows = x.len() / k;
    if n == 0 || rows == 0 {
        return Vec::new();
    }
    let block = rows.div_ceil(rows.div_ceil(BLOCK_ROWS).max(MIN_BLOCKS.min(rows)));
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
                matmul_blas(
                    (x.len() / k, n, k),
                    (out.as_mut_ptr().cast::<f32>(), 1, n as isize),
                    bias.is_some(),
                    (x.as_ptr(), 1, k as isize),
                    (m.as_ptr(), cs as isize, rs as isize),
                )
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
