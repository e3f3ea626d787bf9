//! The multitask decomposition `P_k = P* ∘ (U_k V_k)` against hand computations.

mod common;

use burn::prelude::*;
use common::{dyadic, tensor, tensor_values};
use mpt_core::init::{FactorInit, fresh_factors};
use mpt_core::{CoreError, MultitaskPrompt};

/// `P* ∘ (U_k V_k)` `[l, d]` on the host.
fn hand_task_prompt(shared: &[f32], cols: &[f32], rows: &[f32], k: usize, l: usize, r: usize, d: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(l * d);
    for i in 0..l {
        for j in 0..d {
            let mut uv = 0.0f32;
            for q in 0..r {
                uv += cols[(k * l + i) * r + q] * rows[(k * r + q) * d + j];
            }
            out.push(shared[i * d + j] * uv);
        }
    }
    out
}

#[test]
fn ones_factors_reproduce_the_shared_prompt_exactly() {
    let device = Device::flex();
    let (t, l, d) = (3, 4, 6);
    for r in [1, 2] {
        let shared = dyadic(l * d, 5);
        let (cols, rows) = fresh_factors(FactorInit::Ones, t, l, r, d, 0, &device);
        assert_eq!(cols.dims(), [t, l, r]);
        assert_eq!(rows.dims(), [t, r, d]);
        let prompt = MultitaskPrompt::new(tensor(shared.clone(), [l, d], &device), cols, rows).unwrap();
        for k in 0..t {
            assert_eq!(tensor_values(prompt.task_prompt(k)), shared, "r = {r}, task {k}");
        }
        let batch = tensor_values(prompt.batch(&[2, 0, 1, 2]));
        for (b, row) in batch.chunks(l * d).enumerate() {
            assert_eq!(row, shared.as_slice(), "r = {r}, batch row {b}");
        }
    }
}

#[test]
fn batch_equals_hand_computation_for_mixed_task_ids() {
    let device = Device::flex();
    let (t, l, r, d) = (3, 4, 2, 5);
    let (shared, cols, rows) = (dyadic(l * d, 1), dyadic(t * l * r, 2), dyadic(t * r * d, 3));
    let prompt = MultitaskPrompt::new(
        tensor(shared.clone(), [l, d], &device),
        tensor(cols.clone(), [t, l, r], &device),
        tensor(rows.clone(), [t, r, d], &device),
    )
    .unwrap();
    let ids = [2, 0, 2, 1, 0];
    let batch = prompt.batch(&ids);
    assert_eq!(batch.dims(), [ids.len(), l, d]);
    let batch = tensor_values(batch);
    let per_task: Vec<Vec<f32>> = (0..t).map(|k| hand_task_prompt(&shared, &cols, &rows, k, l, r, d)).collect();
    // The tasks' prompts really differ, so a mix-up of rows would be caught.
    assert_ne!(per_task[0], per_task[1]);
    assert_ne!(per_task[1], per_task[2]);
    for (b, &k) in ids.iter().enumerate() {
        assert_eq!(&batch[b * l * d..(b + 1) * l * d], per_task[k].as_slice(), "batch row {b} (task {k})");
    }
    for (k, want) in per_task.iter().enumerate() {
        assert_eq!(&tensor_values(prompt.task_prompt(k)), want, "task_prompt({k})");
    }
    assert_eq!(prompt.num_tunable(), l * d + t * r * (l + d));
}

#[test]
fn gradients_reach_the_shared_prompt_and_only_the_used_task_factors() {
    let device = Device::flex().autodiff();
    let (t, l, r, d) = (3, 2, 1, 3);
    let (shared, cols, rows) = (dyadic(l * d, 1), dyadic(t * l * r, 2), dyadic(t * r * d, 3));
    let prompt = MultitaskPrompt::new(
        tensor(shared.clone(), [l, d], &device).require_grad(),
        tensor(cols.clone(), [t, l, r], &device).require_grad(),
        tensor(rows.clone(), [t, r, d], &device).require_grad(),
    )
    .unwrap();
    let ids = [1, 1, 0];
    let grads = prompt.batch(&ids).sum().backward();
    // d/dP* of Σ_b Σ_ij P*_ij (U V)_{k_b, ij} = Σ_b (U V)_{k_b}.
    let ones = vec![1.0f32; l * d];
    let mut want = vec![0.0f32; l * d];
    for &k in &ids {
        for (w, uv) in want.iter_mut().zip(hand_task_prompt(&ones, &cols, &rows, k, l, r, d)) {
            *w += uv;
        }
    }
    let g_shared = prompt.prompt_embeddings.val().grad(&grads).expect("gradient of P*");
    assert_eq!(tensor_values(g_shared), want);
    let g_cols = tensor_values(prompt.prefix_task_cols.val().grad(&grads).expect("gradient of U"));
    let g_rows = tensor_values(prompt.prefix_task_rows.val().grad(&grads).expect("gradient of V"));
    // Task 2 is not in the batch: its factors get no gradient; tasks 0 and 1 do.
    assert!(g_cols[2 * l * r..].iter().all(|&g| g == 0.0));
    assert!(g_rows[2 * r * d..].iter().all(|&g| g == 0.0));
    assert!(g_cols[..2 * l * r].iter().any(|&g| g != 0.0));
    assert!(g_rows[..2 * r * d].iter().any(|&g| g != 0.0));
    // d/dU_{1,i,0} = 2 · Σ_j P*_ij V_{1,0,j} (task 1 appears twice).
    for i in 0..l {
        let want: f32 = 2.0 * (0..d).map(|j| shared[i * d + j] * rows[d + j]).sum::<f32>();
        assert_eq!(g_cols[l * r + i], want, "dU[1,{i},0]");
    }
}

#[test]
fn inconsistent_shapes_are_rejected() {
    let device = Device::flex();
    let err = MultitaskPrompt::new(
        Tensor::zeros([4, 6], &device),
        Tensor::zeros([2, 5, 1], &device),
        Tensor::zeros([2, 1, 6], &device),
    )
    .unwrap_err();
    assert!(matches!(err, CoreError::Shape { .. }), "{err}");
    let err = MultitaskPrompt::new(
        Tensor::zeros([4, 6], &device),
        Tensor::zeros([2, 4, 1], &device),
        Tensor::zeros([3, 1, 6], &device),
    )
    .unwrap_err();
    assert!(matches!(err, CoreError::Shape { .. }), "{err}");
}

#[test]
fn normal_factors_are_seeded() {
    let device = Device::flex();
    let a = fresh_factors(FactorInit::Normal, 2, 3, 1, 4, 11, &device);
    let b = fresh_factors(FactorInit::Normal, 2, 3, 1, 4, 11, &device);
    let c = fresh_factors(FactorInit::Normal, 2, 3, 1, 4, 12, &device);
    assert_eq!(tensor_values(a.0.clone()), tensor_values(b.0));
    assert_eq!(tensor_values(a.1.clone()), tensor_values(b.1));
    assert_ne!(tensor_values(a.0), tensor_values(c.0));
}
