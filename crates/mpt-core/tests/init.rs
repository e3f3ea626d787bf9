//! Target prompts from a multitask artifact (PEFT's AVERAGE_SOURCE_TASKS, EXACT_SOURCE_TASK,
//! ONLY_SOURCE_SHARED) and fresh initialisation.

mod common;

use burn::prelude::*;
use common::{dyadic, multitask_tensors, new_artifact, plain_tensors, tensor, tensor_values, values};
use mpt_core::init::{FactorInit, PromptInit, TargetInit, fresh_factors, fresh_prompt, target_from_multitask};
use mpt_core::{Artifact, ArtifactKind, CoreError};

const T: usize = 4;
const L: usize = 3;
const R: usize = 2;
const D: usize = 5;

fn multitask(dir: &std::path::Path) -> Artifact {
    Artifact::write(dir, new_artifact(ArtifactKind::Multitask, &["a", "b", "c", "d"], multitask_tensors(T, L, R, D)))
        .unwrap()
}

/// Entry `[k, ..]` of a `[T, m, n]` host tensor, as a slice of m·n values.
fn task_slice(data: &[f32], k: usize, per_task: usize) -> &[f32] {
    &data[k * per_task..(k + 1) * per_task]
}

#[test]
fn average_is_the_mean_of_the_source_factors() {
    let tmp = tempfile::tempdir().unwrap();
    let a = multitask(&tmp.path().join("mt"));
    let device = Device::flex();
    let targets = 2;
    let p = target_from_multitask(&a, &TargetInit::Average, FactorInit::Ones, targets, 0, &device).unwrap();
    assert_eq!(p.num_tasks(), targets);
    assert_eq!(tensor_values(p.prompt_embeddings.val()), values(&a.tensors["prompt_embeddings"]));
    for (name, per_task, got) in [
        ("prefix_task_cols", L * R, tensor_values(p.prefix_task_cols.val())),
        ("prefix_task_rows", R * D, tensor_values(p.prefix_task_rows.val())),
    ] {
        let src = values(&a.tensors[name]);
        // T = 4 and dyadic values: the mean is exact.
        let mean: Vec<f32> =
            (0..per_task).map(|i| (0..T).map(|k| src[k * per_task + i]).sum::<f32>() / T as f32).collect();
        assert_ne!(mean.as_slice(), task_slice(src, 0, per_task), "the test needs differing tasks");
        for t in 0..targets {
            assert_eq!(task_slice(&got, t, per_task), mean.as_slice(), "{name} of target {t}");
        }
    }
}

#[test]
fn source_copies_one_task_factors() {
    let tmp = tempfile::tempdir().unwrap();
    let a = multitask(&tmp.path().join("mt"));
    let device = Device::flex();
    let init = TargetInit::Source { task: "c".into() };
    let p = target_from_multitask(&a, &init, FactorInit::Ones, 3, 0, &device).unwrap();
    assert_eq!(tensor_values(p.prompt_embeddings.val()), values(&a.tensors["prompt_embeddings"]));
    let cols = tensor_values(p.prefix_task_cols.val());
    let rows = tensor_values(p.prefix_task_rows.val());
    for t in 0..3 {
        assert_eq!(task_slice(&cols, t, L * R), task_slice(values(&a.tensors["prefix_task_cols"]), 2, L * R));
        assert_eq!(task_slice(&rows, t, R * D), task_slice(values(&a.tensors["prefix_task_rows"]), 2, R * D));
    }
    // And the resulting task prompt is the source task's prompt.
    let source = a.prompt_params(&device).unwrap();
    assert_eq!(tensor_values(p.task_prompt(1)), tensor_values(source.task_prompt(2)));

    let err = target_from_multitask(&a, &TargetInit::Source { task: "zz".into() }, FactorInit::Ones, 1, 0, &device)
        .unwrap_err();
    assert!(matches!(&err, CoreError::Field { field, .. } if field == "tasks"), "{err}");
}

#[test]
fn shared_keeps_p_star_with_fresh_factors() {
    let tmp = tempfile::tempdir().unwrap();
    let a = multitask(&tmp.path().join("mt"));
    let device = Device::flex();
    for fresh in [FactorInit::Ones, FactorInit::Normal] {
        let p = target_from_multitask(&a, &TargetInit::Shared, fresh, 2, 9, &device).unwrap();
        assert_eq!(tensor_values(p.prompt_embeddings.val()), values(&a.tensors["prompt_embeddings"]));
        let (cols, rows) = fresh_factors(fresh, 2, L, R, D, 9, &device);
        assert_eq!(tensor_values(p.prefix_task_cols.val()), tensor_values(cols));
        assert_eq!(tensor_values(p.prefix_task_rows.val()), tensor_values(rows));
        assert_ne!(
            task_slice(&tensor_values(p.prefix_task_cols.val()), 0, L * R),
            task_slice(values(&a.tensors["prefix_task_cols"]), 0, L * R)
        );
    }
}

#[test]
fn targets_need_a_multitask_artifact() {
    let tmp = tempfile::tempdir().unwrap();
    let teacher =
        Artifact::write(&tmp.path().join("t"), new_artifact(ArtifactKind::Teacher, &["a"], plain_tensors(L, D)))
            .unwrap();
    let err =
        target_from_multitask(&teacher, &TargetInit::Average, FactorInit::Ones, 1, 0, &Device::flex()).unwrap_err();
    assert!(matches!(err, CoreError::WrongKind { .. }), "{err}");
}

#[test]
fn undecomposed_multitask_prompt_gets_fresh_rank_one_factors() {
    let tmp = tempfile::tempdir().unwrap();
    let a =
        Artifact::write(&tmp.path().join("m"), new_artifact(ArtifactKind::Multitask, &["a", "b"], plain_tensors(L, D)))
            .unwrap();
    let device = Device::flex();
    let p = target_from_multitask(&a, &TargetInit::Average, FactorInit::Ones, 2, 0, &device).unwrap();
    assert_eq!(p.rank(), 1);
    assert_eq!(tensor_values(p.task_prompt(0)), values(&a.tensors["prompt_embeddings"]));
}

#[test]
fn fresh_prompts_follow_their_init() {
    let device = Device::flex();
    let (v, d, l) = (10, 4, 6);
    let emb = tensor(dyadic(v * d, 4), [v, d], &device);
    let rows: Vec<Vec<f32>> = tensor_values(emb.clone()).chunks(d).map(<[f32]>::to_vec).collect();
    // text: the embeddings of the ids, repeated to length l.
    let p = fresh_prompt(&PromptInit::Text { text: "x".into() }, l, &emb, Some(&[3, 7]), 0, &device).unwrap();
    let got: Vec<Vec<f32>> = tensor_values(p).chunks(d).map(<[f32]>::to_vec).collect();
    for (i, row) in got.iter().enumerate() {
        assert_eq!(row, &rows[[3, 7][i % 2]], "row {i}");
    }
    // vocab: every row is some vocabulary row; seeded.
    let a = tensor_values(fresh_prompt(&PromptInit::Vocab, l, &emb, None, 5, &device).unwrap());
    assert!(a.chunks(d).all(|r| rows.iter().any(|e| e.as_slice() == r)));
    assert_eq!(a, tensor_values(fresh_prompt(&PromptInit::Vocab, l, &emb, None, 5, &device).unwrap()));
    // random: seeded, right shape.
    let r1 = fresh_prompt(&PromptInit::Random, l, &emb, None, 5, &device).unwrap();
    assert_eq!(r1.dims(), [l, d]);
    let r2 = fresh_prompt(&PromptInit::Random, l, &emb, None, 6, &device).unwrap();
    assert_ne!(tensor_values(r1), tensor_values(r2));
    let err = fresh_prompt(&PromptInit::Text { text: "".into() }, l, &emb, Some(&[]), 0, &device).unwrap_err();
    assert!(matches!(err, CoreError::Init { .. }), "{err}");
}

#[test]
fn encoded_fresh_prompts_tokenize_a_text_init_and_pass_the_others_through() {
    let device = Device::flex();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let tokenizer =
        mpt_models::TextTokenizer::from_file(&repo.join("tests/fixtures/bert-tiny/tokenizer.json")).unwrap();
    let text = "natural language inference";
    let ids = tokenizer.encode_ids(text, mpt_core::init::INIT_TEXT_MAX_TOKENS).unwrap();
    assert!(ids.len() > 2, "{ids:?}");
    let (v, d, l) = (*ids.iter().max().unwrap() as usize + 1, 3, 7);
    let emb = tensor(dyadic(v * d, 2), [v, d], &device);
    let init = PromptInit::Text { text: text.into() };
    let encoded = mpt_core::init::fresh_prompt_encoded(&init, l, &tokenizer, &emb, 0, &device).unwrap();
    let direct = fresh_prompt(&init, l, &emb, Some(&ids), 0, &device).unwrap();
    assert_eq!(tensor_values(encoded), tensor_values(direct));
    for init in [PromptInit::Vocab, PromptInit::Random] {
        let encoded = mpt_core::init::fresh_prompt_encoded(&init, l, &tokenizer, &emb, 3, &device).unwrap();
        let direct = fresh_prompt(&init, l, &emb, None, 3, &device).unwrap();
        assert_eq!(tensor_values(encoded), tensor_values(direct), "{init}");
    }
}
