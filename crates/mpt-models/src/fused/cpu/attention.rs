//! Flex's attention kernels: `softmax(q kᵀ + bias) v` and its gradients to `q`, `k`, `v`, one
//! (batch, head) pair per rayon task.
//!
//! Per head the operands are gathered from their strided views into small contiguous blocks
//! (`[L, dh]`, a few tens of KiB), the scores start as the bias and receive `q kᵀ` from one
//! single-threaded `gemm` call, the softmax runs in place on the rows, and the result is
//! written straight into a `[B, L, H, dh]` buffer, the layout the heads came from, so merging
//! them back is a free reshape. A head's score block (`Lq x Lk`) stays in cache from the bias
//! to the last product. burn's batched matmuls took 15–25 GFLOP/s on MiniLM's heads
//! (`dh = 32`, `kᵀ` read with a stride of `H·dh`) and allocated, zeroed and transposed a full
//! `[B, H, Lq, Lk]` tensor per step.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::{filled, matmul, softmax_backward_rows, softmax_rows};

/// A strided f32 view of a 4-axis tensor: element `[i0, i1, i2, i3]` sits at
/// `offset + Σ iₐ·strides[a]` in `data`.
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    pub data: &'a [f32],
    pub offset: usize,
    pub shape: [usize; 4],
    pub strides: [isize; 4],
}

impl View<'_> {
    /// Writes the `[rows, cols]` matrix at `(b, h)` into `dst` row-major; size-1 axes of the
    /// view broadcast.
    fn gather(&self, b: usize, h: usize, rows: usize, cols: usize, dst: &mut [MaybeUninit<f32>]) {
        let stride = |a: usize| {
            if self.shape[a] == 1 { 0 } else { self.strides[a] }
        };
        let base = self.offset as isize + b as isize * stride(0) + h as isize * stride(1);
        let (rs, cs) = (stride(2), stride(3));
        if cols == 0 {
            return;
        }
        for (i, dst) in dst.chunks_exact_mut(cols).take(rows).enumerate() {
            let row = base + i as isize * rs;
            if cs == 1 {
                let src = &self.data[row as usize..row as usize + cols];
                for (d, &s) in dst.iter_mut().zip(src) {
                    d.write(s);
                }
            } else {
                for (j, d) in dst.iter_mut().enumerate() {
                    d.write(self.data[(row + j as isize * cs) as usize]);
                }
            }
        }
    }

    /// [`Self::gather`] into a fresh `[rows, cols]` block.
    fn block(&self, b: usize, h: usize, rows: usize, cols: usize) -> Vec<f32> {
        // SAFETY: `gather` writes all `rows * cols` elements.
        unsafe { filled(rows * cols, |dst| self.gather(b, h, rows, cols, dst)) }
    }
}

/// A buffer that tasks write disjoint parts of through raw pointers.
#[derive(Clone, Copy)]
struct Shared(*mut f32);
// SAFETY: each task writes only the rows of its own (batch, head) pair.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    /// The element `offset` places in (a method, so closures capture the whole `Shared`).
    fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// `[B, L, H, dh]` output buffer, written in full by the tasks before [`Output::finish`].
struct Output {
    buf: Vec<f32>,
    len: usize,
}

impl Output {
    fn new(len: usize) -> Self {
        Self { buf: Vec::with_capacity(len), len }
    }

    fn ptr(&mut self) -> Shared {
        Shared(self.buf.spare_capacity_mut().as_mut_ptr().cast())
    }

    /// The buffer filled with zeros (nothing to sum over).
    fn zeros(mut self) -> Vec<f32> {
        self.buf.resize(self.len, 0.0);
        self.buf
    }

    /// # Safety
    /// Every element has been written.
    unsafe fn finish(mut self) -> Vec<f32> {
        unsafe { self.buf.set_len(self.len) };
        self.buf
    }
}

/// Axis lengths: `B, H, Lq, Lk, dh`.
fn dims(q: &View, k: &View, v: &View) -> (usize, usize, usize, usize, usize) {
    let [b, h, lq, dh] = q.shape;
    let lk = k.shape[2];
    assert!(
        k.shape == [b, h, lk, dh] && v.shape == [b, h, lk, dh],
        "attention: q {:?}, k {:?}, v {:?} do not match",
        q.shape,
        k.shape,
        v.shape
    );
    (b, h, lq, lk, dh)
}

/// `softmax(q kᵀ + bias) v` for `q` `[B, H, Lq, dh]`, `k`, `v` `[B, H, Lk, dh]` and `bias`
/// broadcast to `[B, H, Lq, Lk]`. Returns the output as a row-major `[B, Lq, H, dh]` buffer
/// and the probabilities as a row-major `[B, H, Lq, Lk]` buffer (kept for the backward pass).
pub fn attention_forward(q: View, k: View, v: View, bias: View) -> (Vec<f32>, Vec<f32>) {
    let (nb, nh, lq, lk, dh) = dims(&q, &k, &v);
    let mut out = Output::new(nb * lq * nh * dh);
    if lq * lk == 0 {
        // No keys or no queries: the output is zero (an empty sum), there are no scores.
        return (out.zeros(), Vec::new());
    }
    let out_ptr = out.ptr();
    let row = (nh * dh) as isize;
    let fill = |p: &mut [MaybeUninit<f32>]| {
        p.par_chunks_mut(lq * lk).enumerate().for_each(|(bh, ph)| {
            let (b, h) = (bh / nh, bh % nh);
            let (qh, kh, vh) = (q.block(b, h, lq, dh), k.block(b, h, lk, dh), v.block(b, h, lk, dh));
            bias.gather(b, h, lq, lk, ph);
            // SAFETY: `gather` initialised all of `ph`.
            let ph = unsafe { &mut *(ph as *mut [MaybeUninit<f32>] as *mut [f32]) };
            // SAFETY: blocks of the stated shapes; this task alone writes head `h` of batch `b`
            // of `out`.
            unsafe {
                matmul(
                    (lq, lk, dh),
                    (ph.as_mut_ptr(), 1, lk as isize),
                    true,
                    (qh.as_ptr(), 1, dh as isize),
                    (kh.as_ptr(), dh as isize, 1),
                );
                softmax_rows(ph, lk);
                matmul(
                    (lq, dh, lk),
                    (out_ptr.at((b * lq * nh + h) * dh), 1, row),
                    false,
                    (ph.as_ptr(), 1, lk as isize),
                    (vh.as_ptr(), 1, dh as isize),
                );
            }
        });
    };
    // SAFETY: each (batch, head) task initialises its whole score block (the bias gather).
    let p = unsafe { filled(nb * nh * lq * lk, fill) };
    // SAFETY: each (batch, head) task wrote its `Lq x dh` rows of `out`.
    (unsafe { out.finish() }, p)
}

/// Gradients of [`attention_forward`] to `q`, `k`, `v` given the saved probabilities `p`
/// (row-major `[B, H, Lq, Lk]`) and the output gradient `grad` (`[B, H, Lq, dh]`). Returns
/// `dq` as a row-major `[B, Lq, H, dh]` buffer, `dk` and `dv` as `[B, Lk, H, dh]` buffers.
pub fn attention_backward(q: View, k: View, v: View, p: &[f32], grad: View) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (nb, nh, lq, lk, dh) = dims(&q, &k, &v);
    assert_eq!(p.len(), nb * nh * lq * lk, "attention backward: probabilities");
    let (mut dq, mut dk, mut dv) =
        (Output::new(nb * lq * nh * dh), Output::new(nb * lk * nh * dh), Output::new(nb * lk * nh * dh));
    if lq * lk == 0 {
        return (dq.zeros(), dk.zeros(), dv.zeros());
    }
    let (dq_ptr, dk_ptr, dv_ptr) = (dq.ptr(), dk.ptr(), dv.ptr());
    let row = (nh * dh) as isize;
    (0..nb * nh).into_par_iter().for_each(|bh| {
        let (b, h) = (bh / nh, bh % nh);
        let (qh, kh, vh) = (q.block(b, h, lq, dh), k.block(b, h, lk, dh), v.block(b, h, lk, dh));
        let gh = grad.block(b, h, lq, dh);
        let ph = &p[bh * lq * lk..(bh + 1) * lq * lk];
        let mut ds = Vec::<f32>::with_capacity(lq * lk);
        let (lk_s, dh_s) = (lk as isize, dh as isize);
        // SAFETY: blocks of the stated shapes; this task alone writes head `h` of batch
        // `b` of `dq`, `dk` and `dv`; `ds` is written in full by the product before the
        // softmax backward reads it.
        unsafe {
            // dv = pᵀ g
            matmul(
                (lk, dh, lq),
                (dv_ptr.at((b * lk * nh + h) * dh), 1, row),
                false,
                (ph.as_ptr(), lk_s, 1),
                (gh.as_ptr(), 1, dh_s),
            );
            // dp = g vᵀ (zero when the heads are empty), then ds = p ∘ (dp − rowsum(p ∘ dp))
            if dh == 0 {
                ds.resize(lq * lk, 0.0);
            } else {
                matmul((lq, lk, dh), (ds.as_mut_ptr(), 1, lk_s), false, (gh.as_ptr(), 1, dh_s), (vh.as_ptr(), dh_s, 1));
                ds.set_len(lq * lk);
            }
            softmax_backward_rows(ph, &mut ds, lk);
            // dq = ds k
            matmul(
                (lq, dh, lk),
                (dq_ptr.at((b * lq * nh + h) * dh), 1, row),
                false,
                (ds.as_ptr(), 1, lk_s),
                (kh.as_ptr(), 1, dh_s),
            );
            // dk = dsᵀ q
            matmul(
                (lk, dh, lq),
                (dk_ptr.at((b * lk * nh + h) * dh), 1, row),
                false,
                (ds.as_ptr(), lk_s, 1),
                (qh.as_ptr(), 1, dh_s),
            );
        }
    });
    // SAFETY: every (batch, head) task wrote its rows of all three.
    unsafe { (dq.finish(), dk.finish(), dv.finish()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(data: &[f32], shape: [usize; 4]) -> View<'_> {
        let [_, h, l, d] = shape;
        let strides = [(h * l * d) as isize, (l * d) as isize, d as isize, 1];
        View { data, offset: 0, shape, strides }
    }

    /// Heads of width 0: the scores are the bias alone, the outputs and gradients empty.
    #[test]
    fn empty_heads_give_the_softmax_of_the_bias() {
        let bias = [0.0, 1.0, 2.0, -1.0, -1.0, -1.0];
        let none: [f32; 0] = [];
        let (q, k) = (view(&none, [1, 1, 2, 0]), view(&none, [1, 1, 3, 0]));
        let (out, p) = attention_forward(q, k, k, view(&bias, [1, 1, 2, 3]));
        assert!(out.is_empty());
        let e: Vec<f32> = [0.0f32, 1.0, 2.0].iter().map(|x| x.exp()).collect();
        let total: f32 = e.iter().sum();
        let want = [e[0] / total, e[1] / total, e[2] / total, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0];
        for (got, want) in p.iter().zip(want) {
            assert!((got - want).abs() < 1e-6, "{p:?}");
        }
        let (dq, dk, dv) = attention_backward(q, k, k, &p, q);
        assert!(dq.is_empty() && dk.is_empty() && dv.is_empty());
    }
}
