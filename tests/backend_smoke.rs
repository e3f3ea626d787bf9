//! Backend smoke tests: the `mpt` binary, run on every backend compiled into it, against the
//! committed Hugging Face reference fixtures (tests/fixtures, see its README).
//!
//! * `cpu` (flex) always runs; it checks this harness itself on the default build.
//! * `wgpu` runs with `--features wgpu` (on CI: Mesa's lavapipe software Vulkan).
//! * `tch-cpu` runs with `--features tch` (libtorch from pip's torch==2.9.0; see
//!   docs/backends.md for the build and run-time environment).
//! * `cuda` / `tch-cuda` run only with `MPT_SMOKE_CUDA=1` (compiling them in needs no GPU).
//! * `MPT_SMOKE_DEVICES=wgpu,tch-cpu` restricts the list to the named devices.
//!
//! Per device: a BERT forward pass (plain and with a soft prompt) and a T5 v1.1 forward pass with
//! a prompt and greedy generation, compared with the references at 1e-4 (ids exactly), then one
//! prompt-tuning step (`mpt teacher --steps 1` on the tiny BERT and 8 SST-2 rows from
//! `../shared/data`, skipped when that folder is missing) whose prompt must match the cpu run.
//! Without a backend's feature, `--device NAME` must fail with a message naming the feature.
//! On the backends with their own fused kernels (`cpu`, `tch-cpu`, `tch-cuda`), the fused ops
//! (`mpt_models::fused`) are also compared with burn's ops, outputs and gradients.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use mpt_models::io::{HostTensor, read_safetensors, write_safetensors};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures").join(name)
}

fn mpt(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mpt")).args(args).output().expect("the mpt binary runs")
}

fn run_ok(device: &str, args: &[&str]) {
    let t = std::time::Instant::now();
    let out = mpt(args);
    assert!(
        out.status.success(),
        "[{device}] mpt {} failed ({}):\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("[{device}] mpt {} ({:.1} s)", args[..2].join(" "), t.elapsed().as_secs_f64());
}

/// The devices to smoke-test in this build.
fn devices() -> Vec<&'static str> {
    let cuda = std::env::var("MPT_SMOKE_CUDA").is_ok_and(|v| v == "1");
    let mut all = vec!["cpu"];
    if cfg!(feature = "wgpu") {
        all.push("wgpu");
    }
    if cfg!(feature = "tch") {
        all.push("tch-cpu");
        if cuda {
            all.push("tch-cuda");
        }
    }
    if cfg!(feature = "cuda") && cuda {
        all.push("cuda");
    }
    match std::env::var("MPT_SMOKE_DEVICES") {
        Ok(only) if !only.trim().is_empty() => {
            let only: Vec<&str> = only.split(',').map(str::trim).collect();
            for name in &only {
                assert!(all.contains(name), "MPT_SMOKE_DEVICES names {name:?}, not compiled in / enabled: {all:?}");
            }
            all.into_iter().filter(|d| only.contains(d)).collect()
        }
        _ => all,
    }
}

fn floats(t: &HostTensor) -> (&[f32], &[usize]) {
    match t {
        HostTensor::F32 { data, shape } => (data, shape),
        other => panic!("expected f32, got {}", other.dtype_name()),
    }
}

/// |a - b| ≤ atol + rtol·|b| everywhere (and no NaN).
fn assert_close(what: &str, got: &HostTensor, want: &HostTensor, atol: f32, rtol: f32) {
    let (g, gs) = floats(got);
    let (w, ws) = floats(want);
    assert_eq!(gs, ws, "{what}: shape");
    let mut worst = (0.0f32, 0usize, 0.0f32);
    for (i, (a, b)) in g.iter().zip(w).enumerate() {
        let diff = (a - b).abs();
        assert!(diff.is_finite(), "{what}: element {i} is {a}, reference {b}");
        let excess = diff - (atol + rtol * b.abs());
        if excess > worst.0 {
            worst = (excess, i, diff);
        }
    }
    assert!(
        worst.0 <= 0.0,
        "{what}: element {} is {} vs reference {} (|diff| {} beyond atol {atol} + rtol {rtol})",
        worst.1,
        g[worst.1],
        w[worst.1],
        worst.2
    );
}

fn pick(refs: &BTreeMap<String, HostTensor>, names: &[&str]) -> BTreeMap<String, HostTensor> {
    names.iter().map(|n| (n.to_string(), refs[*n].clone())).collect()
}

/// Writes `inputs`, runs `mpt model forward` on `device` and reads the outputs back.
fn forward(
    device: &str,
    dir: &Path,
    model: &Path,
    tag: &str,
    inputs: &BTreeMap<String, HostTensor>,
    extra: &[&str],
) -> BTreeMap<String, HostTensor> {
    let input_path = dir.join(format!("{tag}.in.safetensors"));
    let out_path = dir.join(format!("{tag}.{device}.out.safetensors"));
    write_safetensors(&input_path, inputs).unwrap();
    let mut args = vec![
        "model",
        "forward",
        "--device",
        device,
        "--model",
        model.to_str().unwrap(),
        "--inputs",
        input_path.to_str().unwrap(),
        "--out",
        out_path.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run_ok(device, &args);
    read_safetensors(&out_path).unwrap()
}

fn forward_matches_reference(device: &str, tmp: &Path) {
    // BERT (tiny, random weights with pooler): plain, then with a soft prompt (mpt keeps the input
    // token types, the reference `prompted_keep_tt.*`).
    let bert = fixture("bert-tiny");
    let refs = read_safetensors(&bert.join("reference.safetensors")).unwrap();
    let mut inputs = pick(&refs, &["input_ids", "attention_mask", "token_type_ids"]);
    let out = forward(device, tmp, &bert, "bert", &inputs, &[]);
    assert_close(
        &format!("[{device}] bert last_hidden_state"),
        &out["last_hidden_state"],
        &refs["last_hidden_state"],
        1e-4,
        1e-4,
    );
    assert_close(
        &format!("[{device}] bert sentence_embedding"),
        &out["sentence_embedding"],
        &refs["sentence_embedding"],
        1e-4,
        1e-4,
    );
    inputs.insert("soft_prompt".into(), refs["soft_prompt"].clone());
    let out = forward(device, tmp, &bert, "bert-prompted", &inputs, &[]);
    assert_close(
        &format!("[{device}] bert prompted last_hidden_state"),
        &out["last_hidden_state"],
        &refs["prompted_keep_tt.last_hidden_state"],
        1e-4,
        1e-4,
    );

    // T5 v1.1 (gated GELU, untied head) with a soft prompt: encoder states, logits, greedy ids.
    let t5 = fixture("t5-v1_1-tiny");
    let refs = read_safetensors(&t5.join("reference.safetensors")).unwrap();
    let inputs = pick(&refs, &["input_ids", "attention_mask", "decoder_input_ids", "soft_prompt"]);
    let out = forward(device, tmp, &t5, "t5-prompted", &inputs, &["--generate", "8"]);
    assert_close(
        &format!("[{device}] t5 prompted encoder_last_hidden_state"),
        &out["encoder_last_hidden_state"],
        &refs["prompted.encoder_last_hidden_state"],
        1e-4,
        1e-4,
    );
    assert_close(
        &format!("[{device}] t5 prompted lm_logits"),
        &out["lm_logits"],
        &refs["prompted.lm_logits"],
        1e-4,
        1e-4,
    );
    assert_eq!(out["generated_ids"], refs["prompted.generated_ids"], "[{device}] t5 prompted generated_ids");
}

/// One prompt-tuning step (forward + backward + optimizer) on `device`; returns the artifact's
/// tensors, or `None` when the benchmark data is not there.
fn train_one_step(device: &str, tmp: &Path) -> Option<BTreeMap<String, HostTensor>> {
    let data = repo().join("../shared/data");
    if !data.join("sst-2/train.tsv").is_file() {
        eprintln!("[{device}] skipping the training step: {} has no sst-2/train.tsv", data.display());
        return None;
    }
    let out = tmp.join(format!("teacher-{device}"));
    let model = fixture("bert-tiny");
    run_ok(
        device,
        &[
            "teacher",
            "--device",
            device,
            "--model",
            model.to_str().unwrap(),
            "--data-root",
            data.to_str().unwrap(),
            "--task",
            "sst2",
            "--prompt-len",
            "4",
            "--steps",
            "1",
            "--batch-size",
            "4",
            "--max-train",
            "8",
            "--max-dev",
            "8",
            "--max-test",
            "8",
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let tensors = read_safetensors(&out.join("tensors.safetensors")).unwrap();
    for (name, t) in &tensors {
        if let HostTensor::F32 { data, .. } = t {
            assert!(data.iter().all(|v| v.is_finite()), "[{device}] trained tensor {name} has NaN/inf");
        }
    }
    Some(tensors)
}

#[test]
fn every_compiled_backend_matches_the_reference_and_trains_one_step() {
    let tmp = tempfile::tempdir().unwrap();
    let devices = devices();
    eprintln!("backend smoke: devices {devices:?}");
    let mut cpu_step = None;
    for device in devices {
        let t = std::time::Instant::now();
        forward_matches_reference(device, tmp.path());
        let Some(step) = train_one_step(device, tmp.path()) else {
            continue;
        };
        if device == "cpu" {
            cpu_step = Some(step);
        } else {
            // Same seed, same data, same init: one step must land where the cpu run does.
            let cpu = cpu_step.get_or_insert_with(|| train_one_step("cpu", tmp.path()).unwrap());
            assert_eq!(cpu.keys().collect::<Vec<_>>(), step.keys().collect::<Vec<_>>(), "[{device}] artifact tensors");
            for (name, want) in cpu.iter() {
                if matches!(want, HostTensor::F32 { .. }) {
                    assert_close(&format!("[{device}] one-step {name} vs cpu"), &step[name], want, 1e-3, 1e-3);
                } else {
                    assert_eq!(&step[name], want, "[{device}] one-step {name} vs cpu");
                }
            }
        }
        eprintln!("[{device}] smoke ok in {:.1} s", t.elapsed().as_secs_f64());
    }
}

/// The burn device behind a `--device` name, for the backends with fused kernels.
#[allow(deprecated)]
fn fused_device(name: &str) -> Option<burn::prelude::Device> {
    match name {
        "cpu" => Some(burn::prelude::Device::flex()),
        #[cfg(feature = "tch")]
        "tch-cpu" => Some(burn::prelude::Device::libtorch()),
        #[cfg(feature = "tch")]
        "tch-cuda" => Some(burn::prelude::Device::libtorch_cuda(0)),
        _ => None,
    }
}

#[test]
fn fused_ops_match_burn_on_every_compiled_backend() {
    for name in devices() {
        let Some(device) = fused_device(name) else {
            continue;
        };
        mpt_models::fused::checks::check_all(&device.autodiff());
        eprintln!("[{name}] fused ops match burn's");
    }
}

#[test]
fn backends_not_compiled_in_fail_with_a_clear_message() {
    let missing: Vec<(&str, &str)> = [
        ("wgpu", "wgpu", cfg!(feature = "wgpu")),
        ("tch-cpu", "tch", cfg!(feature = "tch")),
        ("tch-cuda", "tch", cfg!(feature = "tch")),
        ("cuda", "cuda", cfg!(feature = "cuda")),
    ]
    .into_iter()
    .filter(|(_, _, compiled)| !compiled)
    .map(|(name, feature, _)| (name, feature))
    .collect();
    let bert = fixture("bert-tiny");
    let inputs = bert.join("reference.safetensors");
    for (device, feature) in missing {
        let out = mpt(&[
            "model",
            "forward",
            "--device",
            device,
            "--model",
            bert.to_str().unwrap(),
            "--inputs",
            inputs.to_str().unwrap(),
            "--out",
            "/nonexistent/out.safetensors",
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "--device {device} should fail without feature {feature}");
        assert!(
            stderr.contains("not compiled into this binary") && stderr.contains(&format!("--features {feature}")),
            "--device {device}: unclear error: {stderr}"
        );
    }
    let out = mpt(&["model", "info", "--model", bert.to_str().unwrap()]);
    assert!(out.status.success());
    let out = mpt(&["model", "forward", "--device", "tpu", "--model", ".", "--inputs", ".", "--out", "."]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown --device"));
}
