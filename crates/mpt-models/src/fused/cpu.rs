//! Host kernels behind the flex implementation of [`super::FusedOps`]: exact GELU, last-axis
//! softmax, LayerNorm and RMS norm, forward and backward, over contiguous f32 rows. Each
//! overwrites one of its operands (the input going forward, the incoming gradient going
//! backward), so a uniquely owned buffer is reused instead of a fresh one being zeroed.
//!
//! `exp` and `erf` are branch-free polynomials (Cephes `expf`, Abramowitz & Stegun 7.1.26 for
//! `erf`, the approximation PyTorch's vectorised CPU `erf` uses), so the loops vectorise; they
//! are compiled once for AVX2+FMA (picked at run time) and once for the baseline target.
//! Rows are split across rayon's threads.

pub mod attention;
pub mod blas;
pub mod linear;

use std::mem::MaybeUninit;

use rayon::prelude::*;

/// A vector of `len` f32 whose elements `fill` writes into the uninitialised buffer it gets.
///
/// # Safety
/// `fill` writes every element.
unsafe fn filled(len: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut out = Vec::with_capacity(len);
    fill(&mut out.spare_capacity_mut()[..len]);
    // SAFETY: the caller's `fill` initialised all `len` elements.
    unsafe { out.set_len(len) };
    out
}

/// `dst[m, n] (+)= lhs[m, k] · rhs[k, n]` on one thread; operands as (pointer, column stride,
/// row stride); `accumulate` reads `dst` (`dst + lhs·rhs`), otherwise `dst` is only written.
///
/// # Safety
/// The pointers address matrices of the given shapes and strides; `dst` is not aliased.
unsafe fn matmul(
    (m, n, k): (usize, usize, usize),
    dst: (*mut f32, isize, isize),
    accumulate: bool,
    lhs: (*const f32, isize, isize),
    rhs: (*const f32, isize, isize),
) {
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.0,
            dst.1,
            dst.2,
            accumulate,
            lhs.0,
            lhs.1,
            lhs.2,
            rhs.0,
            rhs.1,
            rhs.2,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// Elements per parallel task for element-wise kernels.
const ELEMENTWISE_CHUNK: usize = 1 << 15;

/// Rows per parallel task: about 32 K elements.
fn rows_per_task(row: usize) -> usize {
    (ELEMENTWISE_CHUNK / row.max(1)).max(1)
}

/// `e^x` for `x <= 0` (inputs above 0 are clamped to 0): relative error about 1e-7, exactly 0
/// below -87.3 (where `e^x` would be subnormal), NaN stays NaN.
///
/// `x = n ln 2 + r`: `n` is rounded by adding 1.5·2²³ (so it lands in the low mantissa bits, no
/// float-to-int conversion, which would not vectorise), `e^r` is Cephes' polynomial and `2^n`
/// is built from those bits.
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    const LO: f32 = -87.336_55;
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const ROUND: f32 = 12_582_912.0;
    let xc = x.clamp(LO, 0.0);
    let shifted = xc * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = xc - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let p = p * r * r + r + 1.0;
    let scale = f32::from_bits(shifted.to_bits().wrapping_add(127) << 23);
    if x < LO { 0.0 } else { p * scale }
}

/// `erf(x)`, absolute error below 1.5e-7.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = ((((1.061_405_4 * t - 1.453_152_1) * t + 1.421_413_8) * t - 0.284_496_74) * t + 0.254_829_6) * t;
    (1.0 - poly * exp_nonpositive(-a * a)).copysign(x)
}

/// Exact GELU `x Φ(x)`.
#[inline(always)]
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// `d gelu / dx = Φ(x) + x φ(x)`.
#[inline(always)]
fn gelu_derivative(x: f32) -> f32 {
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    let cdf = 0.5 * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
    cdf + x * INV_SQRT_2PI * exp_nonpositive(-0.5 * x * x)
}

/// Lane-parallel reduction so the sum vectorises without reassociation flags.
#[inline(always)]
fn sum(row: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let chunks = row.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            acc[i] += c[i];
        }
    }
    acc.iter().sum::<f32>() + tail.iter().sum::<f32>()
}

/// `Σ a_i b_i`, lane-parallel.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `Σ a_i b_i c_i`, lane-parallel.
#[inline(always)]
fn dot3(a: &[f32], b: &[f32], c: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let n = a.len() / 8 * 8;
    for j in (0..n).step_by(8) {
        for i in 0..8 {
            acc[i] += a[j + i] * b[j + i] * c[j + i];
        }
    }
    acc.iter().sum::<f32>() + (n..a.len()).map(|j| a[j] * b[j] * c[j]).sum::<f32>()
}

/// Largest element (NaN elements are skipped).
#[inline(always)]
fn max(row: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 8];
    let chunks = row.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            acc[i] = if c[i] > acc[i] { c[i] } else { acc[i] };
        }
    }
    acc.iter().chain(tail).fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m })
}

/// Whether the CPU has the AVX-512 subsets the `avx512` kernels are compiled for.
#[cfg(target_arch = "x86_64")]
fn cpu_has_avx512() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512dq")
            && std::is_x86_feature_detected!("avx512vl")
            && std::is_x86_feature_detected!("fma")
    })
}

/// Compiles `$body` three times: with AVX-512 (F, BW, DQ, VL) and FMA, with AVX2 and FMA, and
/// for the baseline target; the widest the CPU has is taken at run time, in the default build.
macro_rules! multiversion {
    ($name:ident ( $($arg:ident : $ty:ty),* ) $body:block) => {
        fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn imp($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) {
                    imp($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) {
                    imp($($arg),*)
                }
                if cpu_has_avx512() {
                    // SAFETY: the CPU supports the features `avx512` was compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU supports the features `avx2` was compiled for.
                    return unsafe { avx2($($arg),*) };
                }
            }
            imp($($arg),*)
        }
    };
}

multiversion!(gelu_chunk(y: &mut [f32]) {
    for y in y.iter_mut() {
        *y = gelu(*y);
    }
});

multiversion!(gelu_backward_chunk(x: &[f32], g: &mut [f32]) {
    for (g, &x) in g.iter_mut().zip(x) {
        *g *= gelu_derivative(x);
    }
});

multiversion!(softmax_rows(y: &mut [f32], n: usize) {
    for y in y.chunks_exact_mut(n) {
        let m = max(y);
        for y in y.iter_mut() {
            *y = exp_nonpositive(*y - m);
        }
        let inv = 1.0 / sum(y);
        for y in y.iter_mut() {
            *y *= inv;
        }
    }
});

multiversion!(softmax_backward_rows(y: &[f32], g: &mut [f32], n: usize) {
    for (y, g) in y.chunks_exact(n).zip(g.chunks_exact_mut(n)) {
        let s = dot(y, g);
        for (g, &y) in g.iter_mut().zip(y) {
            *g = y * (*g - s);
        }
    }
});

multiversion!(layer_norm_rows(y: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let n = gamma.len();
    let inv_n = 1.0 / n as f32;
    for y in y.chunks_exact_mut(n) {
        let mean = sum(y) * inv_n;
        for y in y.iter_mut() {
            *y -= mean;
        }
        let rstd = 1.0 / (dot(y, y) * inv_n + eps).sqrt();
        for ((y, &g), &b) in y.iter_mut().zip(gamma).zip(beta) {
            *y = *y * rstd * g + b;
        }
    }
});

multiversion!(layer_norm_backward_rows(x: &[f32], gamma: &[f32], g: &mut [f32], eps: f32) {
    let n = gamma.len();
    let inv_n = 1.0 / n as f32;
    let mut xhat = vec![0.0f32; n];
    for (x, g) in x.chunks_exact(n).zip(g.chunks_exact_mut(n)) {
        let mean = sum(x) * inv_n;
        for (h, &x) in xhat.iter_mut().zip(x) {
            *h = x - mean;
        }
        let rstd = 1.0 / (dot(&xhat, &xhat) * inv_n + eps).sqrt();
        for ((h, g), &w) in xhat.iter_mut().zip(g.iter_mut()).zip(gamma) {
            *h *= rstd;
            *g *= w;
        }
        let a = sum(g) * inv_n;
        let b = dot(g, &xhat) * inv_n;
        for (g, &h) in g.iter_mut().zip(&xhat) {
            *g = rstd * (*g - a - h * b);
        }
    }
});

multiversion!(rms_norm_rows(y: &mut [f32], weight: &[f32], eps: f32) {
    let n = weight.len();
    let inv_n = 1.0 / n as f32;
    for y in y.chunks_exact_mut(n) {
        let r = 1.0 / (dot(y, y) * inv_n + eps).sqrt();
        for (y, &w) in y.iter_mut().zip(weight) {
            *y *= r * w;
        }
    }
});

multiversion!(rms_norm_backward_rows(x: &[f32], weight: &[f32], g: &mut [f32], eps: f32) {
    let n = weight.len();
    let inv_n = 1.0 / n as f32;
    for (x, g) in x.chunks_exact(n).zip(g.chunks_exact_mut(n)) {
        let r = 1.0 / (dot(x, x) * inv_n + eps).sqrt();
        let b = dot3(g, weight, x) * inv_n * r * r;
        for ((g, &x), &w) in g.iter_mut().zip(x).zip(weight) {
            *g = r * (*g * w - x * b);
        }
    }
});

/// `y ← gelu(y)`.
pub fn gelu_forward(y: &mut [f32]) {
    y.par_chunks_mut(ELEMENTWISE_CHUNK).for_each(gelu_chunk);
}

/// `g ← g · gelu'(x)`.
pub fn gelu_backward(x: &[f32], g: &mut [f32]) {
    g.par_chunks_mut(ELEMENTWISE_CHUNK)
        .zip(x.par_chunks(ELEMENTWISE_CHUNK))
        .for_each(|(g, x)| gelu_backward_chunk(x, g));
}

/// `y ← softmax(y)` over rows of length `n`.
pub fn softmax_forward(y: &mut [f32], n: usize) {
    y.par_chunks_mut(rows_per_task(n) * n).for_each(|y| softmax_rows(y, n));
}

/// `g ← y ⊙ (g - Σ y g)` per row of length `n` (`y`: the softmax output).
pub fn softmax_backward(y: &[f32], g: &mut [f32], n: usize) {
    let step = rows_per_task(n) * n;
    g.par_chunks_mut(step).zip(y.par_chunks(step)).for_each(|(g, y)| softmax_backward_rows(y, g, n));
}

/// `y ← LayerNorm(y)` over rows of length `gamma.len()` (biased variance, as PyTorch).
pub fn layer_norm_forward(y: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    y.par_chunks_mut(rows_per_task(gamma.len()) * gamma.len()).for_each(|y| layer_norm_rows(y, gamma, beta, eps));
}

/// `g ←` the input gradient of LayerNorm at `x` (mean and variance recomputed from `x`).
pub fn layer_norm_backward(x: &[f32], gamma: &[f32], g: &mut [f32], eps: f32) {
    let step = rows_per_task(gamma.len()) * gamma.len();
    g.par_chunks_mut(step).zip(x.par_chunks(step)).for_each(|(g, x)| layer_norm_backward_rows(x, gamma, g, eps));
}

/// `y ← y / sqrt(mean(y²) + eps) · weight` over rows of length `weight.len()`.
pub fn rms_norm_forward(y: &mut [f32], weight: &[f32], eps: f32) {
    y.par_chunks_mut(rows_per_task(weight.len()) * weight.len()).for_each(|y| rms_norm_rows(y, weight, eps));
}

/// `g ←` the input gradient of the RMS norm at `x`.
pub fn rms_norm_backward(x: &[f32], weight: &[f32], g: &mut [f32], eps: f32) {
    let step = rows_per_task(weight.len()) * weight.len();
    g.par_chunks_mut(step).zip(x.par_chunks(step)).for_each(|(g, x)| rms_norm_backward_rows(x, weight, g, eps));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std_on_nonpositive_inputs() {
        let mut worst = 0.0f32;
        for i in 0..=200_000 {
            let x = -87.0 * i as f32 / 200_000.0;
            let rel = (exp_nonpositive(x) - x.exp()).abs() / x.exp();
            worst = worst.max(rel);
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(exp_nonpositive(-100.0), 0.0);
        assert_eq!(exp_nonpositive(f32::NEG_INFINITY), 0.0);
        assert!(exp_nonpositive(f32::NAN).is_nan());
    }

    #[test]
    fn erf_matches_libm() {
        let mut worst = 0.0f64;
        for i in -100_000..=100_000 {
            let x = 6.0 * i as f64 / 100_000.0;
            let err = (erf(x as f32) as f64 - libm_erf(x)).abs();
            worst = worst.max(err);
        }
        // A&S 7.1.26 is within 1.5e-7; f32 evaluation adds a few units in the last place.
        assert!(worst < 1e-6, "worst absolute error {worst}");
    }

    /// erf by its Maclaurin series (|x| < 3) or the asymptotic complement, in f64.
    fn libm_erf(x: f64) -> f64 {
        if x.abs() < 3.0 {
            let mut term = x;
            let mut total = x;
            for n in 1..200 {
                term *= -x * x / n as f64;
                total += term / (2 * n + 1) as f64;
            }
            total * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            // erfc(x) ~ e^{-x²}/(x sqrt(pi)) (1 - 1/(2x²) + 3/(4x⁴) - 15/(8x⁶)): below 1e-6 here
            let a = x.abs();
            let s = 1.0 - 1.0 / (2.0 * a * a) + 3.0 / (4.0 * a.powi(4)) - 15.0 / (8.0 * a.powi(6));
            (1.0 - (-a * a).exp() / (a * std::f64::consts::PI.sqrt()) * s).copysign(x)
        }
    }
}
