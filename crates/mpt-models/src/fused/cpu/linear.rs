//! Flex's linear maps with a constant weight: `x W (+ b)` and the input gradient `g Wᵀ`.
//!
//! The rows of `x` are split into blocks of a few hundred, one single-threaded `gemm` call per
//! block spread over rayon's threads (each block's slice of `x` and of the output stays in
//! cache while it is multiplied), and the bias is written into the output before the product
//! is accumulated onto it, so there is neither a zero-filled output nor a second pass to add
//! the bias.

use std::mem::MaybeUninit;

use gemm::{Parallelism, gemm};
use rayon::prelude::*;

/// Rows per block: small enough that a block of `x` and of the output stay in L2 next to the
/// weight's packed panels, large enough to amortise packing the weight once per block.
const BLOCK_ROWS: usize = 256;

/// A buffer of `len` f32 written in full by `fill`, which gets the uninitialised memory.
fn filled(len: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut out = Vec::with_capacity(len);
    fill(&mut out.spare_capacity_mut()[..len]);
    // SAFETY: callers write every element (see `product`).
    unsafe { out.set_len(len) };
    out
}

/// `x[rows, k] · M` with `M[k, n]` at `m[i·rs + j·cs]`, plus `bias[n]` on every row when given.
/// Returns the row-major `[rows, n]` product.
fn product(
    x: &[f32],
    k: usize,
    m: &[f32],
    (n, rs, cs): (usize, usize, usize),
    bias: Option<&[f32]>,
) -> Vec<f32> {
    assert!(
        k > 0 && x.len() % k == 0,
        "linear: input of {} values is not rows of {k}",
        x.len()
    );
    assert!(
        m.len() >= k * n && (k - 1) * rs + (n.max(1) - 1) * cs < m.len().max(1),
        "linear: weight"
    );
    if let Some(b) = bias {
        assert_eq!(b.len(), n, "linear: bias");
    }
    let rows = x.len() / k;
    if n == 0 || rows == 0 {
        return Vec::new();
    }
    let block = rows.div_ceil(
        rows.div_ceil(BLOCK_ROWS)
            .max(rayon::current_num_threads().min(rows)),
    );
    filled(rows * n, |out| {
        out.par_chunks_mut(block * n)
            .zip(x.par_chunks(block * k))
            .for_each(|(out, x)| {
                let block_rows = x.len() / k;
                if let Some(b) = bias {
                    for row in out.chunks_exact_mut(n) {
                        for (o, &b) in row.iter_mut().zip(b) {
                            o.write(b);
                        }
                    }
                }
                // SAFETY: `out` is `[block_rows, n]` (initialised when `bias` is given, and then
                // read); `x` is `[block_rows, k]` row-major; `m` covers `[k, n]` at strides
                // (`rs`, `cs`) (checked above). Without a bias `gemm` writes every element of `out`.
                unsafe {
                    gemm(
                        block_rows,
                        n,
                        k,
                        out.as_mut_ptr().cast::<f32>(),
                        1,
                        n as isize,
                        bias.is_some(),
                        x.as_ptr(),
                        1,
                        k as isize,
                        m.as_ptr(),
                        cs as isize,
                        rs as isize,
                        if bias.is_some() { 1.0 } else { 0.0 },
                        1.0,
                        false,
                        false,
                        false,
                        Parallelism::None,
                    );
                }
            });
    })
}

/// `x W + bias` for row-major `x` `[rows, d_in]` and `w` `[d_in, d_out]`: row-major
/// `[rows, d_out]`.
pub fn linear_forward(x: &[f32], w: &[f32], d_out: usize, bias: Option<&[f32]>) -> Vec<f32> {
    let d_in = if d_out == 0 { 0 } else { w.len() / d_out };
    product(x, d_in, w, (d_out, d_out, 1), bias)
}

/// `g Wᵀ` for row-major `g` `[rows, d_out]` and `w` `[d_in, d_out]`: row-major `[rows, d_in]`.
pub fn linear_backward(g: &[f32], w: &[f32], d_out: usize) -> Vec<f32> {
    let d_in = if d_out == 0 { 0 } else { w.len() / d_out };
    product(g, d_out, w, (d_in, 1, d_out), None)
}
