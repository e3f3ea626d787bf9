//! End-to-end tests of the real `mpt` binary on the committed tiny fixtures (bert-tiny,
//! t5-v1_x-tiny and the synthetic data root tests/fixtures/data), each in its own temp dir.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mpt_models::io::{HostTensor, read_safetensors, write_safetensors};
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures").join(name)
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Runs `mpt ARGS` in `dir`.
fn mpt_in(dir: &Path, args: &[&str]) -> Output {
    mpt_env(dir, args, &[])
}

/// Runs `mpt ARGS` in `dir` with the variables `env` set.
fn mpt_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mpt"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .output()
        .expect("the mpt binary runs")
}

fn show(args: &[&str], out: &Output) -> String {
    format!(
        "mpt {} -> {}\n--- stdout\n{}\n--- stderr\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `mpt ARGS` in `dir`, expecting success; returns stdout.
fn ok_in(dir: &Path, args: &[&str]) -> String {
    let out = mpt_in(dir, args);
    assert!(out.status.success(), "{}", show(args, &out));
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `mpt ARGS` in `dir`, expecting failure; returns stderr.
fn fail_in(dir: &Path, args: &[&str]) -> String {
    let out = mpt_in(dir, args);
    assert!(!out.status.success(), "expected failure: {}", show(args, &out));
    assert_eq!(out.status.code(), Some(1), "{}", show(args, &out));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("error:"), "{err}");
    err
}

fn ok(args: &[&str]) -> String {
    ok_in(&repo(), args)
}

fn fail(args: &[&str]) -> String {
    fail_in(&repo(), args)
}

// ---------------------------------------------------------------------------------------------
// mpt model

#[test]
fn model_info_describes_the_t5_v1_1_fixture() {
    let out = ok(&["model", "info", "--model", "tests/fixtures/t5-v1_1-tiny"]);
    let field = |name: &str| -> String {
        out.lines()
            .find(|l| l.starts_with(&format!("{name}:")))
            .unwrap_or_else(|| panic!("no `{name}:` line in\n{out}"))
            .split_once(':')
            .unwrap()
            .1
            .trim()
            .to_string()
    };
    assert!(field("model").ends_with("t5-v1_1-tiny"), "{out}");
    let arch = field("architecture");
    assert!(arch.starts_with("t5 (") && arch.contains("gated-gelu") && arch.contains("separate lm_head"), "{arch}");
    assert!(!arch.contains("scaled"), "v1.1 does not scale the decoder output: {arch}");
    assert_eq!(field("d_model"), "32");
    assert_eq!(field("layers"), "2 encoder + 2 decoder");
    assert_eq!(field("heads"), "4");
    assert_eq!(field("d_ff"), "64");
    assert_eq!(field("vocab"), "400");
    assert!(field("tokenizer").ends_with("tokenizer.json (400 tokens)"), "{out}");
    let params: usize = field("parameters").parse().unwrap();
    assert!(params > 400 * 32 * 2, "shared + lm_head alone are 25600: {params}");

    let json: Value =
        serde_json::from_str(&ok(&["model", "info", "--model", "tests/fixtures/t5-v1_1-tiny", "--json"])).unwrap();
    assert_eq!(json["arch"], "t5");
    assert_eq!(json["d_model"], 32);
    assert_eq!(json["encoder_layers"], 2);
    assert_eq!(json["decoder_layers"], 2);
    assert_eq!(json["vocab_size"], 400);
    assert_eq!(json["tokenizer_vocab_size"], 400);
    assert_eq!(json["parameters"].as_u64().unwrap() as usize, params);
}

#[test]
fn model_info_on_v1_0_and_bert() {
    let v10: Value =
        serde_json::from_str(&ok(&["model", "info", "--model", "tests/fixtures/t5-v1_0-tiny", "--json"])).unwrap();
    let variant = v10["variant"].as_str().unwrap();
    assert!(variant.contains("relu") && variant.contains("tied lm_head") && variant.contains("scaled"), "{variant}");
    let bert = ok(&["model", "info", "--model", "tests/fixtures/bert-tiny"]);
    assert!(bert.contains("architecture: bert"), "{bert}");
    assert!(bert.lines().any(|l| l.starts_with("layers:") && l.trim_end().ends_with(" 2")), "{bert}");
    assert!(bert.contains("vocab:        500"), "{bert}");
}

fn floats(t: &HostTensor) -> (&[f32], &[usize]) {
    match t {
        HostTensor::F32 { data, shape } => (data, shape),
        other => panic!("expected f32, got {}", other.dtype_name()),
    }
}

fn assert_close(what: &str, got: &HostTensor, want: &HostTensor, tol: f32) {
    let (g, gs) = floats(got);
    let (w, ws) = floats(want);
    assert_eq!(gs, ws, "{what}: shape");
    for (i, (a, b)) in g.iter().zip(w).enumerate() {
        assert!((a - b).abs() <= tol + tol * b.abs(), "{what}[{i}]: {a} vs reference {b}");
    }
}

fn pick(refs: &BTreeMap<String, HostTensor>, names: &[&str]) -> BTreeMap<String, HostTensor> {
    names.iter().map(|n| (n.to_string(), refs[*n].clone())).collect()
}

fn forward(
    dir: &Path,
    model: &Path,
    inputs: &BTreeMap<String, HostTensor>,
    extra: &[&str],
) -> BTreeMap<String, HostTensor> {
    let input = dir.join("in.safetensors");
    let output = dir.join("out.safetensors");
    write_safetensors(&input, inputs).unwrap();
    let mut args = vec!["model", "forward", "--model", s(model), "--inputs", s(&input), "--out", s(&output)];
    args.extend_from_slice(extra);
    let out = mpt_in(dir, &args);
    assert!(out.status.success(), "{}", show(&args, &out));
    // The outputs are listed on stderr.
    let err = String::from_utf8_lossy(&out.stderr);
    let got = read_safetensors(&output).unwrap();
    for name in got.keys() {
        assert!(err.contains(name.as_str()), "stderr does not list {name}: {err}");
    }
    got
}

#[test]
fn model_forward_on_bert_matches_the_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let bert = fixture("bert-tiny");
    let refs = read_safetensors(&bert.join("reference.safetensors")).unwrap();
    let mut inputs = pick(&refs, &["input_ids", "attention_mask", "token_type_ids"]);
    let out = forward(tmp.path(), &bert, &inputs, &[]);
    assert_eq!(out.keys().collect::<Vec<_>>(), ["last_hidden_state", "sentence_embedding"]);
    assert_close("last_hidden_state", &out["last_hidden_state"], &refs["last_hidden_state"], 1e-4);
    assert_close("sentence_embedding", &out["sentence_embedding"], &refs["sentence_embedding"], 1e-4);
    // With a soft prompt: l more rows, prompt first.
    inputs.insert("soft_prompt".into(), refs["soft_prompt"].clone());
    let out = forward(tmp.path(), &bert, &inputs, &[]);
    assert_eq!(out["last_hidden_state"].shape(), &[3, 5 + 37, 32]);
    assert_close(
        "prompted last_hidden_state",
        &out["last_hidden_state"],
        &refs["prompted_keep_tt.last_hidden_state"],
        1e-4,
    );
    assert_close(
        "prompted sentence_embedding",
        &out["sentence_embedding"],
        &refs["prompted_keep_tt.sentence_embedding"],
        1e-4,
    );
}

#[test]
fn model_forward_on_t5_v1_0_generates_the_reference_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let t5 = fixture("t5-v1_0-tiny");
    let refs = read_safetensors(&t5.join("reference.safetensors")).unwrap();
    let inputs = pick(&refs, &["input_ids", "attention_mask", "decoder_input_ids"]);
    let out = forward(tmp.path(), &t5, &inputs, &["--generate", "8"]);
    assert_close(
        "encoder_last_hidden_state",
        &out["encoder_last_hidden_state"],
        &refs["encoder_last_hidden_state"],
        1e-4,
    );
    assert_close("lm_logits", &out["lm_logits"], &refs["lm_logits"], 1e-4);
    assert_eq!(out["generated_ids"], refs["generated_ids"]);
}

fn forward_err(tmp: &Path, model: &Path, inputs: &BTreeMap<String, HostTensor>) -> String {
    let input = tmp.join("bad.safetensors");
    write_safetensors(&input, inputs).unwrap();
    let out = tmp.join("bad.out.safetensors");
    let err = fail_in(tmp, &["model", "forward", "--model", s(model), "--inputs", s(&input), "--out", s(&out)]);
    assert!(!out.exists(), "no output is written on error");
    err
}

#[test]
fn model_forward_rejects_bad_inputs_naming_the_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let bert = fixture("bert-tiny");
    let refs = read_safetensors(&bert.join("reference.safetensors")).unwrap();
    let good = pick(&refs, &["input_ids", "attention_mask"]);

    // input_ids stored as F32.
    let mut bad = good.clone();
    let HostTensor::I64 { data, shape } = &refs["input_ids"] else { panic!() };
    bad.insert(
        "input_ids".into(),
        HostTensor::F32 { data: data.iter().map(|&v| v as f32).collect(), shape: shape.clone() },
    );
    let err = forward_err(tmp.path(), &bert, &bad);
    assert!(err.contains("input_ids") && err.contains("F32") && err.contains("I64"), "{err}");

    // attention_mask missing.
    let mut bad = good.clone();
    bad.remove("attention_mask");
    let err = forward_err(tmp.path(), &bert, &bad);
    assert!(err.contains("attention_mask") && err.contains("missing"), "{err}");

    // attention_mask of the wrong shape.
    let mut bad = good.clone();
    bad.insert("attention_mask".into(), HostTensor::I64 { data: vec![1; 3 * 4], shape: vec![3, 4] });
    let err = forward_err(tmp.path(), &bert, &bad);
    assert!(err.contains("attention_mask") && err.contains("[3, 4]"), "{err}");

    // An id beyond the vocabulary.
    let mut bad = good.clone();
    let mut ids = data.clone();
    ids[0] = 500;
    bad.insert("input_ids".into(), HostTensor::I64 { data: ids, shape: shape.clone() });
    let err = forward_err(tmp.path(), &bert, &bad);
    assert!(err.contains("input_ids") && err.contains("500"), "{err}");

    // A soft prompt of the wrong width, and an unknown input.
    let mut bad = good.clone();
    bad.insert("soft_prompt".into(), HostTensor::F32 { data: vec![0.0; 5 * 16], shape: vec![5, 16] });
    let err = forward_err(tmp.path(), &bert, &bad);
    assert!(err.contains("soft_prompt") && err.contains("32"), "{err}");
    let mut bad = good.clone();
    bad.insert("pixel_values".into(), HostTensor::F32 { data: vec![0.0], shape: vec![1] });
    let err = forward_err(tmp.path(), &bert, &bad);
    assert!(err.contains("pixel_values"), "{err}");

    // Decoder inputs on an encoder.
    let mut bad = good.clone();
    bad.insert("decoder_input_ids".into(), HostTensor::I64 { data: vec![0; 3], shape: vec![3, 1] });
    let err = forward_err(tmp.path(), &bert, &bad);
    assert!(err.contains("decoder_input_ids"), "{err}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn model_folders_that_cannot_be_used_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("gpt-ish");
    copy_dir(&fixture("bert-tiny"), &model);
    let config = model.join("config.json");
    let mut json: Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    json["model_type"] = "gpt2".into();
    std::fs::write(&config, serde_json::to_string(&json).unwrap()).unwrap();
    let err = fail(&["model", "info", "--model", s(&model)]);
    assert!(err.contains("model_type") && err.contains("gpt2") && err.contains("config.json"), "{err}");
    assert!(err.contains("bert"), "the supported types are listed: {err}");
    let refs = read_safetensors(&fixture("bert-tiny/reference.safetensors")).unwrap();
    let err = forward_err(tmp.path(), &model, &pick(&refs, &["input_ids", "attention_mask"]));
    assert!(err.contains("gpt2"), "{err}");
    // No weights file.
    std::fs::remove_file(model.join("model.safetensors")).unwrap();
    let err = fail(&["model", "info", "--model", s(&model)]);
    assert!(err.contains("model.safetensors"), "{err}");
    // Not a folder at all.
    let err = fail(&["model", "info", "--model", s(&tmp.path().join("absent"))]);
    assert!(err.contains("config.json"), "{err}");
}

#[test]
fn backends_not_compiled_in_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let refs = read_safetensors(&fixture("bert-tiny/reference.safetensors")).unwrap();
    let input = tmp.path().join("in.safetensors");
    write_safetensors(&input, &pick(&refs, &["input_ids", "attention_mask"])).unwrap();
    let bert = fixture("bert-tiny");
    let out = tmp.path().join("out.safetensors");
    for (device, feature, compiled) in
        [("wgpu", "wgpu", cfg!(feature = "wgpu")), ("cuda", "cuda", cfg!(feature = "cuda"))]
    {
        if compiled {
            continue;
        }
        let err = fail_in(
            tmp.path(),
            &["model", "forward", "--device", device, "--model", s(&bert), "--inputs", s(&input), "--out", s(&out)],
        );
        assert!(err.contains(&format!("--device {device} was not compiled into this binary")), "{err}");
        assert!(err.contains(&format!("--features {feature}")), "{err}");
        let err = fail_in(tmp.path(), &["run", "--device", device, "--dry-run", s(&tmp.path().join("p.toml"))]);
        assert!(err.contains("p.toml") || err.contains("not compiled"), "{err}");
    }
    let err = fail_in(
        tmp.path(),
        &["model", "forward", "--device", "tpu", "--model", s(&bert), "--inputs", s(&input), "--out", s(&out)],
    );
    assert!(err.contains("unknown --device \"tpu\"") && err.contains("cpu"), "{err}");
    assert!(!out.exists());
}

// ---------------------------------------------------------------------------------------------
// mpt bench

#[test]
fn bench_records_the_linear_kernel_and_rejects_an_unusable_mpt_blas() {
    let tmp = tempfile::tempdir().unwrap();
    let bert = fixture("bert-tiny");
    let args = [
        "bench",
        "--model",
        s(&bert),
        "--stage",
        "teacher",
        "--prompt-len",
        "4",
        "--batch",
        "2",
        "--seq-len",
        "8",
        "--steps",
        "2",
        "--warmup",
        "0",
        "--json",
    ];
    let json = |env: &[(&str, &str)]| -> Value {
        let out = mpt_env(tmp.path(), &args, env);
        assert!(out.status.success(), "{env:?}: {}", show(&args, &out));
        serde_json::from_slice(&out.stdout).expect("one JSON object")
    };
    let off = json(&[("MPT_BLAS", "off")]);
    let off_kernel = off["linear_kernel"].as_str().expect("a string");
    assert!(off_kernel.starts_with("gemm crate (") && !off_kernel.contains("passed over"), "{off}");
    assert!(off["examples_per_sec"].as_f64().is_some_and(|x| x > 0.0), "{off}");
    let auto = json(&[("MPT_BLAS", "auto")]);
    let kernel = auto["linear_kernel"].as_str().expect("a string");
    if std::env::var("MPT_REQUIRE_OPENBLAS").is_ok_and(|v| v == "1") {
        // Loaded, unless its kernel core is a generic fallback on this CPU (then passed over, said so).
        let loaded = kernel.starts_with("OpenBLAS ") && kernel.contains(" from libopenblas");
        assert!(loaded || kernel.contains("passed over libopenblas"), "{kernel}");
    } else {
        assert!(kernel.starts_with("gemm crate (") || kernel.starts_with("OpenBLAS "), "{kernel}");
    }

    // Refused when the device is set up, before any step (the plain-text report included).
    let missing = "/nonexistent/libopenblas.so.0";
    let text = &args[..args.len() - 1];
    let out = mpt_env(tmp.path(), text, &[("MPT_BLAS", missing)]);
    assert_eq!(out.status.code(), Some(1), "{}", show(text, &out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("MPT_BLAS={missing}")) && err.contains("expected `auto`, `off`"), "{err}");
    assert!(out.stdout.is_empty(), "no result on a bad MPT_BLAS: {}", show(text, &out));
}

// ---------------------------------------------------------------------------------------------
// mpt run

fn pipeline_toml(name: &str) -> String {
    format!(
        r#"name = "{name}"
backbone = "{backbone}"
data_root = "{data}"

[prompt]
length = 4

[train]
batch_size = 4
max_steps = 2
eval_every = 2
eval_batch_size = 16
seed = 1

[data]
max_train = 12
max_dev = 6

[sources]
tasks = ["mnli", "qnli"]

[distill]
kappa = 2

[targets]
tasks = ["rte"]
few_shot = [2]
seeds = [0]

[methods]
mpt = ["average"]
vanilla = true

[eval]
max_examples = 8
"#,
        backbone = fixture("bert-tiny").display(),
        data = fixture("data").display(),
    )
}

fn inspect_json(dir: &Path, artifact: &Path) -> Value {
    serde_json::from_str(&ok_in(dir, &["inspect", "--json", s(artifact)])).unwrap()
}

#[test]
fn run_a_tiny_pipeline_then_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let text = pipeline_toml("tiny");
    std::fs::write(dir.join("tiny.toml"), &text).unwrap();
    let out = ok_in(dir, &["run", "-q", "tiny.toml"]);
    assert!(out.contains("tiny: 7 stage(s) ran, 0 already done"), "{out}");
    assert!(out.contains("report: runs/tiny/report.md"), "{out}");
    let run = dir.join("runs/tiny");
    for f in ["report.md", "report.json", "pipeline.toml", "state.json", "logs/run.log"] {
        assert!(run.join(f).is_file(), "missing runs/tiny/{f}");
    }
    assert_eq!(std::fs::read_to_string(run.join("pipeline.toml")).unwrap(), text);
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(md.contains("mpt") && md.contains("vanilla") && md.contains("rte"), "{md}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["rows"].as_array().unwrap().len(), 2);
    assert!(!report["plots"].as_array().unwrap().is_empty());
    for p in report["plots"].as_array().unwrap() {
        assert!(run.join(p.as_str().unwrap()).is_file(), "{p}");
    }

    // Lineage through `mpt inspect`.
    let a = |name: &str| run.join("artifacts").join(name);
    let t1 = inspect_json(dir, &a("teacher/mnli"));
    let t2 = inspect_json(dir, &a("teacher/qnli"));
    let mt = inspect_json(dir, &a("distill/mpt"));
    let target = inspect_json(dir, &a("adapt/mpt/rte/k2-s0"));
    let vanilla = inspect_json(dir, &a("adapt/vanilla/rte/k2-s0"));
    assert_eq!(mt["parents"], serde_json::json!([t1["id"], t2["id"]]));
    assert_eq!(target["parents"], serde_json::json!([mt["id"]]));
    assert_eq!(vanilla["parents"], serde_json::json!([]));
    assert_eq!(target["verified"], true);
    let result: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("results/eval/mpt/rte/k2-s0.json")).unwrap()).unwrap();
    assert_eq!(result["result"]["artifact_id"], target["id"]);

    // Second run: nothing to do.
    let out = ok_in(dir, &["run", "-q", "tiny.toml"]);
    assert!(out.contains("tiny: 0 stage(s) ran, 7 already done"), "{out}");

    // `mpt status` on a folder never run on Slurm does not ask squeue (which can hang for
    // seconds where Slurm is installed and its controller is down).
    let squeue = dir.join("squeue-called");
    let fake = dir.join("squeue");
    std::fs::write(&fake, format!("#!/bin/sh\ntouch '{}'\n", squeue.display())).unwrap();
    std::fs::set_permissions(&fake, <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755))
        .unwrap();
    let out = mpt_env(dir, &["status", "runs/tiny"], &[("MPT_SQUEUE", s(&fake))]);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("7 done"),
        "{}",
        show(&["status"], &out)
    );
    assert!(!squeue.exists(), "mpt status ran squeue for a local run folder");

    // --run-dir overrides the folder; --only selects stages.
    let out = ok_in(dir, &["run", "-q", "tiny.toml", "--run-dir", "elsewhere", "--only", "adapt/vanilla"]);
    assert!(out.contains("1 stage(s) ran"), "{out}");
    assert!(dir.join("elsewhere/artifacts/adapt/vanilla/rte/k2-s0/artifact.json").is_file());
    let err = fail_in(dir, &["run", "-q", "tiny.toml", "--run-dir", "fresh", "--only", "adapt/mpt"]);
    assert!(err.contains("distill/mpt"), "{err}");
    let err = fail_in(dir, &["run", "-q", "tiny.toml", "--only", "nothing/here"]);
    assert!(err.contains("no stage matches"), "{err}");
}

/// Every file under `dir`, recursively.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() { stack.push(path) } else { out.push(path) }
        }
    }
    out
}

/// Every artifact id and result key under `run` (relative path -> id), the outputs that
/// must not depend on how the stages were run.
fn run_outputs(run: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![run.join("artifacts"), run.join("results")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path.strip_prefix(run).unwrap().display().to_string();
            if !rel.ends_with(".json") {
                continue;
            }
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let key = if rel.ends_with("artifact.json") { "id" } else { "key" };
            out.insert(rel, v[key].as_str().unwrap().to_string());
        }
    }
    out
}

#[test]
fn jobs_2_makes_the_artifacts_of_the_sequential_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("tiny.toml"), pipeline_toml("tiny")).unwrap();
    ok_in(dir, &["run", "-q", "tiny.toml", "--run-dir", "seq"]);
    let out = mpt_in(dir, &["run", "-q", "tiny.toml", "--run-dir", "par", "--jobs", "2"]);
    assert!(out.status.success(), "{}", show(&["run", "--jobs", "2"], &out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("tiny: 7 stage(s) ran, 0 already done"), "{stdout}");
    let (seq, par) = (run_outputs(&dir.join("seq")), run_outputs(&dir.join("par")));
    assert_eq!(seq.len(), 7, "{seq:?}");
    assert_eq!(seq, par, "--jobs 2 must make the same artifact ids and result keys");
    // One log per stage; the coordinator alone wrote the state, with every stage in it.
    for stage in ["teacher/mnli", "distill/mpt", "adapt/vanilla/rte/k2-s0", "eval/mpt/rte/k2-s0"] {
        let log = dir.join("par/logs/stages").join(format!("{stage}.log"));
        assert!(log.is_file(), "missing {}", log.display());
    }
    let state: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("par/state.json")).unwrap()).unwrap();
    assert_eq!(state.as_object().unwrap().len(), 7, "{state}");
    // A re-run with jobs finds everything done.
    let again = ok_in(dir, &["run", "-q", "tiny.toml", "--run-dir", "par", "--jobs", "2"]);
    assert!(again.contains("0 stage(s) ran, 7 already done"), "{again}");
    // A device list is shared out between the stage processes (each log says which it got);
    // the artifacts are the same.
    let args = ["run", "-q", "tiny.toml", "--run-dir", "devs", "--jobs", "2", "--device", "cpu:0,cpu:1"];
    ok_in(dir, &args);
    assert_eq!(seq, run_outputs(&dir.join("devs")));
    for stage in ["teacher/mnli", "teacher/qnli", "distill/mpt"] {
        let log = std::fs::read_to_string(dir.join("devs/logs/stages").join(format!("{stage}.log"))).unwrap();
        let first = log.lines().next().unwrap_or("");
        assert!(
            first == format!("mpt: stage {stage} on --device cpu:0") || first.ends_with("on --device cpu:1"),
            "{log}"
        );
    }
    let err = fail_in(dir, &["run", "-q", "tiny.toml", "--device", "cpu,cpu"]);
    assert!(err.contains("--device cpu,cpu") && err.contains("--jobs N"), "{err}");
    let err = fail_in(dir, &["run", "-q", "tiny.toml", "--jobs", "2", "--device", "cpu,nope"]);
    assert!(err.contains("unknown --device \"nope\""), "{err}");
}

#[test]
fn merge_brings_stages_run_in_separate_folders_into_one_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("tiny.toml"), pipeline_toml("tiny")).unwrap();
    ok_in(dir, &["run", "-q", "tiny.toml", "--run-dir", "seq"]);
    // The MPT chain in the run folder, the vanilla baseline at the same time in another.
    ok_in(
        dir,
        &[
            "run",
            "-q",
            "tiny.toml",
            "--only",
            "teacher",
            "--only",
            "distill",
            "--only",
            "adapt/mpt",
            "--only",
            "eval/mpt",
        ],
    );
    ok_in(dir, &["run", "-q", "tiny.toml", "--run-dir", "van", "--only", "adapt/vanilla", "--only", "eval/vanilla"]);
    let out = ok_in(dir, &["merge", "tiny.toml", "--from", "van", "--dry-run"]);
    assert!(out.contains("adapt/vanilla/rte/k2-s0") && out.contains("would import from van"), "{out}");
    assert!(out.contains("tiny: 2 stage(s) would import, 5 already done, 0 still to run"), "{out}");
    assert!(!dir.join("runs/tiny/artifacts/adapt/vanilla").exists());
    let out = ok_in(dir, &["merge", "tiny.toml", "--from", "van"]);
    assert!(out.contains("tiny: 2 stage(s) imported, 5 already done, 0 still to run"), "{out}");
    assert!(out.contains("report: runs/tiny/report.md"), "{out}");
    assert_eq!(run_outputs(&dir.join("runs/tiny")), run_outputs(&dir.join("seq")));
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("runs/tiny/report.json")).unwrap()).unwrap();
    assert_eq!(report["rows"].as_array().unwrap().len(), 2);
    let out = ok_in(dir, &["run", "-q", "tiny.toml"]);
    assert!(out.contains("tiny: 0 stage(s) ran, 7 already done"), "{out}");
    let err = fail_in(dir, &["merge", "tiny.toml", "--from", "nowhere"]);
    assert!(err.contains("nowhere: no such run folder"), "{err}");
    let out = mpt_in(dir, &["merge", "tiny.toml"]);
    assert_eq!(out.status.code(), Some(2), "a usage error: {}", show(&["merge"], &out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--from <DIR>"));
}

#[test]
fn jobs_2_reports_a_failed_stage_with_its_log_and_skips_its_dependents() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("tiny.toml"), pipeline_toml("tiny")).unwrap();
    // A file where the teachers' artifact folders go: their processes cannot write them.
    let blocked = dir.join("runs/tiny/artifacts/teacher");
    std::fs::create_dir_all(blocked.parent().unwrap()).unwrap();
    std::fs::write(&blocked, b"not a folder").unwrap();
    let err = fail_in(dir, &["run", "-q", "tiny.toml", "--jobs", "2"]);
    assert!(err.contains("stage teacher/") && err.contains("failed") && err.contains("logs/stages/teacher/"), "{err}");
    let run = dir.join("runs/tiny");
    assert!(!run.join("artifacts/distill/mpt").exists(), "the distillation needs the failed teacher");
    assert!(!run.join("artifacts/adapt/mpt").exists());
    // No stage may have been recorded yet (both teachers start first); a missing state is empty.
    let state: Value = std::fs::read_to_string(run.join("state.json"))
        .map_or(serde_json::json!({}), |text| serde_json::from_str(&text).unwrap());
    assert!(state.get("teacher/mnli").is_none() && state.get("distill/mpt").is_none(), "{state}");
    // `mpt status` shows the failed teachers with their logs and what never started.
    let status = ok_in(dir, &["status", "runs/tiny"]);
    assert!(status.contains("tiny in runs/tiny: no run in progress"), "{status}");
    let line = status.lines().find(|l| l.trim_start().starts_with("teacher/")).unwrap();
    assert!(line.contains("failed") && line.contains("logs/stages/teacher/"), "{status}");
    assert!(status.lines().any(|l| l.contains("distill/mpt") && l.contains("pending")), "{status}");
    let err = fail_in(dir, &["status", "."]);
    assert!(err.contains("pipeline.toml") && err.contains("not a run folder"), "{err}");
    // Fixed, the run resumes: only what is missing runs.
    std::fs::remove_file(&blocked).unwrap();
    let done = state.as_object().unwrap().len();
    let out = ok_in(dir, &["run", "-q", "tiny.toml", "--jobs", "2"]);
    assert!(out.contains(&format!("{} stage(s) ran, {done} already done", 7 - done)), "{out}");
    let status = ok_in(dir, &["status", "runs/tiny"]);
    assert!(status.ends_with("7 stages: 7 done\n"), "{status}");
}

/// A stand-in for `sbatch --parsable [--wait] SCRIPT`: runs the script with its `#SBATCH
/// --output` as stdout and stderr, at once (submission order is a topological order, so a
/// detached run's dependencies have run by then), records its arguments, prints a job id
/// (4242, 4243, ...) and exits with the script's status (0 when detached, like sbatch).
const FAKE_SBATCH: &str = r#"#!/bin/sh
here=$(dirname "$0")
for a in "$@"; do script="$a"; done
out=$(sed -n 's/^#SBATCH --output=//p' "$script")
last=$(sed -n 's/^#SBATCH --array=0-//p' "$script")
echo "$script" >> "$here/submitted"
echo "$@" >> "$here/arguments"
n=$(wc -l < "$here/submitted")
if [ -n "$last" ]; then
    status=0
    for t in $(seq 0 "$last"); do
        SLURM_ARRAY_TASK_ID=$t sh "$script" > "$(echo "$out" | sed "s/%a/$t/")" 2>&1 || status=$?
    done
else
    sh "$script" > "$out" 2>&1
    status=$?
fi
echo $((4241 + n))
case " $* " in *" --wait "*) exit $status;; esac
exit 0
"#;

#[test]
fn the_slurm_executor_submits_each_stage_as_a_batch_job() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut text = pipeline_toml("tiny");
    text.push_str("\n[cluster]\npartition = \"debug\"\ncpus = 1\ntime = \"00:10:00\"\nextra = [\"--qos=normal\"]\n");
    std::fs::write(dir.join("tiny.toml"), &text).unwrap();
    let sbatch = dir.join("sbatch");
    std::fs::write(&sbatch, FAKE_SBATCH).unwrap();
    std::fs::set_permissions(&sbatch, std::fs::Permissions::from_mode(0o755)).unwrap();
    ok_in(dir, &["run", "-q", "tiny.toml", "--run-dir", "seq"]);
    let args = ["run", "-q", "tiny.toml", "--run-dir", "slurm", "--executor", "slurm"];
    let out = mpt_env(dir, &args, &[("MPT_SBATCH", s(&sbatch))]);
    assert!(out.status.success(), "{}", show(&args, &out));
    assert_eq!(run_outputs(&dir.join("seq")), run_outputs(&dir.join("slurm")));
    let submitted = std::fs::read_to_string(dir.join("submitted")).unwrap();
    assert_eq!(submitted.lines().count(), 7, "{submitted}");
    let script = std::fs::read_to_string(dir.join("slurm/logs/slurm/distill/mpt.sh")).unwrap();
    for line in [
        "#SBATCH --job-name=mpt:distill/mpt",
        "#SBATCH --partition=debug",
        "#SBATCH --cpus-per-task=1",
        "#SBATCH --time=00:10:00",
        "#SBATCH --qos=normal",
        "'--stage' 'distill/mpt'",
    ] {
        assert!(script.contains(line), "{line:?} not in\n{script}");
    }
    // An unknown [cluster] key is refused with the file and key.
    std::fs::write(dir.join("bad.toml"), text.replace("cpus = 1", "cores = 1")).unwrap();
    let err = fail_in(dir, &["run", "--dry-run", "bad.toml"]);
    assert!(err.contains("bad.toml") && err.contains("cores"), "{err}");
}

#[test]
fn a_killed_slurm_run_resumes_to_the_same_artifacts() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("tiny.toml"), pipeline_toml("tiny")).unwrap();
    let sbatch = dir.join("sbatch");
    std::fs::write(&sbatch, FAKE_SBATCH).unwrap();
    std::fs::set_permissions(&sbatch, std::fs::Permissions::from_mode(0o755)).unwrap();
    ok_in(dir, &["run", "-q", "tiny.toml", "--run-dir", "seq"]);
    // The coordinator is SIGKILLed once the first job's artifact is there.
    let mut child = Command::new(env!("CARGO_BIN_EXE_mpt"))
        .args(["run", "-q", "tiny.toml", "--executor", "slurm"])
        .current_dir(dir)
        .env("MPT_SBATCH", &sbatch)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !dir.join("runs/tiny/artifacts/teacher/mnli/artifact.json").is_file() {
        assert!(started.elapsed().as_secs() < 120, "no artifact after 2 min");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // Jobs already submitted run on (their sbatch outlives the coordinator here, as on a
    // cluster); give them time to end.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let status =
        String::from_utf8_lossy(&mpt_env(dir, &["status", "runs/tiny"], &[("MPT_SQUEUE", "false")]).stdout).to_string();
    assert!(status.contains("no run in progress"), "{status}");
    let args = ["run", "-q", "tiny.toml", "--executor", "slurm"];
    let out = mpt_env(dir, &args, &[("MPT_SBATCH", s(&sbatch))]);
    assert!(out.status.success(), "{}", show(&args, &out));
    assert_eq!(run_outputs(&dir.join("seq")), run_outputs(&dir.join("runs/tiny")));
    let stray: Vec<_> = walk(&dir.join("runs/tiny")).into_iter().filter(|p| s(p).contains(".tmp-")).collect();
    assert!(stray.is_empty(), "{stray:?}");
}

#[test]
fn a_detached_slurm_run_submits_every_stage_with_its_dependencies_and_returns() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("tiny.toml"), pipeline_toml("tiny")).unwrap();
    let sbatch = dir.join("sbatch");
    std::fs::write(&sbatch, FAKE_SBATCH).unwrap();
    let squeue = dir.join("squeue");
    std::fs::write(&squeue, "#!/bin/sh\nexit 0\n").unwrap();
    for f in [&sbatch, &squeue] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let env = [("MPT_SBATCH", s(&sbatch)), ("MPT_SQUEUE", s(&squeue))];
    let err = fail_in(dir, &["run", "-q", "tiny.toml", "--detach"]);
    assert!(err.contains("--detach needs --executor slurm"), "{err}");
    ok_in(dir, &["run", "-q", "tiny.toml", "--run-dir", "seq"]);
    let args = ["run", "-q", "tiny.toml", "--executor", "slurm", "--detach"];
    let out = mpt_env(dir, &args, &env);
    assert!(out.status.success(), "{}", show(&args, &out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("7 stage(s) submitted") && stdout.contains("mpt status runs/tiny"), "{stdout}");
    // Each job waits for its inputs' jobs; the two teachers (submitted first, as one job array
    // whose tasks are ID_0 and ID_1) wait for nothing.
    let jobs: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("runs/tiny/logs/slurm/jobs.json")).unwrap()).unwrap();
    assert_eq!(jobs.as_object().unwrap().len(), 7, "{jobs}");
    let arguments = std::fs::read_to_string(dir.join("arguments")).unwrap();
    let distill = arguments.lines().find(|l| l.ends_with("distill/mpt.sh")).unwrap();
    let teachers = [&jobs["teacher/mnli"], &jobs["teacher/qnli"]].map(|j| j.as_str().unwrap().to_string());
    let teacher_array = teachers[0].strip_suffix("_0").expect("teacher/mnli is task 0 of an array");
    assert_eq!(teachers[1], format!("{teacher_array}_1"));
    assert!(distill.contains(&format!("--dependency=afterok:{}:{}", teachers[0], teachers[1])), "{distill}");
    assert!(distill.contains("--kill-on-invalid-dep=yes") && !distill.contains("--wait"), "{distill}");
    let teacher = arguments.lines().find(|l| l.ends_with("array-0-teacher-1.sh")).unwrap();
    assert!(!teacher.contains("--dependency"), "{teacher}");
    let script = std::fs::read_to_string(dir.join("runs/tiny/logs/slurm/array-0-teacher-1.sh")).unwrap();
    assert!(script.contains("#SBATCH --array=0-1") && script.contains("--stage' 'teacher/qnli'"), "{script}");
    assert!(dir.join("runs/tiny/logs/stages/teacher/qnli.log").is_file());
    // Nothing recorded the jobs in state.json; `mpt status` finds their artifacts, and the next
    // `mpt run` runs nothing and writes the report.
    let status = String::from_utf8_lossy(&mpt_env(dir, &["status", "runs/tiny"], &env).stdout).to_string();
    assert!(status.ends_with("7 stages: 7 done\n"), "{status}");
    let out = ok_in(dir, &["run", "-q", "tiny.toml"]);
    assert!(out.contains("0 stage(s) ran, 7 already done") && out.contains("report:"), "{out}");
    assert_eq!(run_outputs(&dir.join("seq")), run_outputs(&dir.join("runs/tiny")));
    // A job that left the queue without its output shows as failed; a stage still queued is not
    // submitted again.
    std::fs::remove_dir_all(dir.join("runs/tiny/artifacts/adapt")).unwrap();
    std::fs::write(&sbatch, "#!/bin/sh\necho 77\n").unwrap();
    let out = mpt_env(dir, &args, &env);
    assert!(out.status.success(), "{}", show(&args, &out));
    let status = String::from_utf8_lossy(&mpt_env(dir, &["status", "runs/tiny"], &env).stdout).to_string();
    let line = status.lines().find(|l| l.contains("adapt/mpt/")).unwrap();
    assert!(line.contains("failed"), "{status}");
    std::fs::write(&squeue, "#!/bin/sh\necho '4300|mpt:adapt/mpt/rte/k2-s0|PENDING'\n").unwrap();
    let out = mpt_env(dir, &args, &env);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("already in Slurm's queue (PENDING"), "{err}");

    // Two seeds: the adapts of each method form an array, and each method's evals an array in
    // which task i waits for task i of the adapts (aftercorr); the same artifacts as locally.
    let two = pipeline_toml("two").replace("seeds = [0]", "seeds = [0, 1]");
    assert!(two.contains("seeds = [0, 1]"));
    std::fs::write(dir.join("two.toml"), &two).unwrap();
    std::fs::write(&sbatch, FAKE_SBATCH).unwrap();
    std::fs::write(&squeue, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::remove_file(dir.join("arguments")).unwrap();
    ok_in(dir, &["run", "-q", "two.toml", "--run-dir", "two-seq"]);
    let args = ["run", "-q", "two.toml", "--executor", "slurm", "--detach"];
    let out = mpt_env(dir, &args, &env);
    assert!(out.status.success(), "{}", show(&args, &out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("11 stage(s) submitted"), "{}", show(&args, &out));
    assert_eq!(run_outputs(&dir.join("two-seq")), run_outputs(&dir.join("runs/two")));
    let jobs: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("runs/two/logs/slurm/jobs.json")).unwrap()).unwrap();
    let job = |stage: &str| jobs[stage].as_str().unwrap_or_else(|| panic!("{stage} in {jobs}")).to_string();
    let arguments = std::fs::read_to_string(dir.join("arguments")).unwrap();
    // One sbatch each: the teacher array, the vanilla adapts, distill, the vanilla evals, the
    // mpt adapts, the mpt evals.
    assert_eq!(arguments.lines().count(), 6, "{arguments}");
    for method in ["mpt", "vanilla"] {
        let adapts = job(&format!("adapt/{method}/rte/k2-s0"));
        let array = adapts.strip_suffix("_0").unwrap_or_else(|| panic!("{adapts}: not task 0 of an array"));
        assert_eq!(job(&format!("adapt/{method}/rte/k2-s1")), format!("{array}_1"));
        let evals = job(&format!("eval/{method}/rte/k2-s1"));
        let eval_array = evals.strip_suffix("_1").unwrap();
        let line = arguments
            .lines()
            .find(|l| l.contains(&format!("aftercorr:{array} ")))
            .unwrap_or_else(|| panic!("no sbatch with --dependency=aftercorr:{array}:\n{arguments}"));
        assert!(line.contains("array-") && line.contains("-eval-"), "{line}");
        assert_eq!(job(&format!("eval/{method}/rte/k2-s0")), format!("{eval_array}_0"));
    }
    let mpt_adapts = arguments.lines().find(|l| l.contains("-adapt-") && l.contains("afterok:")).unwrap();
    assert!(mpt_adapts.contains(&format!("afterok:{} ", job("distill/mpt"))), "{mpt_adapts}");
}

/// The Slurm executor on a real cluster (`scripts/slurm-local.sh start`; `.ci/run` starts one
/// and sets `MPT_SLURM_TEST=1`): the same artifacts as the sequential run.
#[test]
fn the_slurm_executor_on_a_real_cluster_makes_the_sequential_artifacts() {
    if std::env::var_os("MPT_SLURM_TEST").is_none() {
        eprintln!("skipped: set MPT_SLURM_TEST=1 with a cluster up (scripts/slurm-local.sh start)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("tiny.toml"), pipeline_toml("tiny")).unwrap();
    ok_in(dir, &["run", "-q", "tiny.toml", "--run-dir", "seq"]);
    let out = ok_in(dir, &["run", "-q", "tiny.toml", "--run-dir", "slurm", "--executor", "slurm"]);
    assert!(out.contains("7 stage(s) ran"), "{out}");
    assert_eq!(run_outputs(&dir.join("seq")), run_outputs(&dir.join("slurm")));
    assert!(dir.join("slurm/logs/stages/distill/mpt.log").is_file());
    // Detached, two seeds: every job submitted at once behind its dependencies, as job arrays
    // (teachers; adapts of each method) and aftercorr arrays (each eval after its adapt);
    // `mpt status` follows them by job and array-task id.
    let two = pipeline_toml("two").replace("seeds = [0]", "seeds = [0, 1]");
    std::fs::write(dir.join("two.toml"), two).unwrap();
    ok_in(dir, &["run", "-q", "two.toml", "--run-dir", "two-seq"]);
    let out = ok_in(dir, &["run", "-q", "two.toml", "--run-dir", "detached", "--executor", "slurm", "--detach"]);
    assert!(out.contains("11 stage(s) submitted"), "{out}");
    let jobs = std::fs::read_to_string(dir.join("detached/logs/slurm/jobs.json")).unwrap();
    assert!(jobs.contains("_1\""), "no array task in {jobs}");
    let started = std::time::Instant::now();
    loop {
        let status = ok_in(dir, &["status", "detached"]);
        if status.ends_with("11 stages: 11 done\n") {
            break;
        }
        assert!(!status.contains("failed"), "{status}");
        assert!(started.elapsed().as_secs() < 900, "not done after 15 min:\n{status}");
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
    let out = ok_in(dir, &["run", "-q", "two.toml", "--run-dir", "detached"]);
    assert!(out.contains("0 stage(s) ran, 11 already done"), "{out}");
    assert_eq!(run_outputs(&dir.join("two-seq")), run_outputs(&dir.join("detached")));
    assert!(dir.join("detached/logs/stages/eval/mpt/rte/k2-s1.log").is_file());
}

#[test]
fn a_tiny_decoder_only_pipeline_runs_end_to_end() {
    for (name, arch) in [("llama-tiny", "llama"), ("qwen2-tiny", "qwen2")] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let text = pipeline_toml("tiny").replace(s(&fixture("bert-tiny")), s(&fixture(name)));
        std::fs::write(dir.join("tiny.toml"), &text).unwrap();
        let out = ok_in(dir, &["run", "-q", "tiny.toml"]);
        assert!(out.contains("tiny: 7 stage(s) ran"), "{name}: {out}");
        let run = dir.join("runs/tiny");
        let target = inspect_json(dir, &run.join("artifacts/adapt/mpt/rte/k2-s0"));
        assert_eq!(target["backbone"]["arch"], arch, "{target}");
        assert_eq!(target["verified"], true);
        let result: Value =
            serde_json::from_str(&std::fs::read_to_string(run.join("results/eval/mpt/rte/k2-s0.json")).unwrap())
                .unwrap();
        assert_eq!(result["result"]["artifact_id"], target["id"]);
        // A causal LM's adapter is PEFT CAUSAL_LM prompt tuning.
        let peft = dir.join("peft");
        ok_in(dir, &["export", "--format", "peft", s(&run.join("artifacts/teacher/mnli")), s(&peft)]);
        let config: Value =
            serde_json::from_str(&std::fs::read_to_string(peft.join("adapter_config.json")).unwrap()).unwrap();
        assert_eq!(config["task_type"], "CAUSAL_LM", "{config}");
    }
}

#[test]
fn predict_labels_jsonl_rows_with_probabilities() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("tiny.toml"), pipeline_toml("tiny")).unwrap();
    ok_in(dir, &["run", "-q", "tiny.toml", "--only", "teacher", "--only", "distill"]);
    let model = fixture("bert-tiny");
    let teacher = dir.join("runs/tiny/artifacts/teacher/mnli");
    let fields = ok_in(dir, &["predict", "--model", s(&model), "--artifact", s(&teacher), "--fields"]);
    assert_eq!(fields.trim(), "mnli: premise, hypothesis");
    let input = "{\"premise\": \"a man plays a guitar\", \"hypothesis\": \"a person makes music\", \"id\": 1}\n\n\
                 {\"premise\": \"the cat sleeps\", \"hypothesis\": \"the cat runs\"}\n";
    std::fs::write(dir.join("in.jsonl"), input).unwrap();
    let args =
        ["predict", "--model", s(&model), "--artifact", s(&teacher), "--input", "in.jsonl", "--output", "out.jsonl"];
    ok_in(dir, &args);
    let lines: Vec<Value> = std::fs::read_to_string(dir.join("out.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "the blank line is skipped");
    assert_eq!(lines[0]["id"], 1, "input fields are kept");
    for line in &lines {
        let scores = line["scores"].as_object().unwrap();
        let labels: Vec<&str> = scores.keys().map(String::as_str).collect();
        assert_eq!(labels, ["contradiction", "entailment", "neutral"], "{line}");
        let total: f64 = scores.values().map(|v| v.as_f64().unwrap()).sum();
        assert!((total - 1.0).abs() < 1e-6, "{line}");
        let best = scores.iter().max_by(|a, b| a.1.as_f64().unwrap().total_cmp(&b.1.as_f64().unwrap())).unwrap().0;
        assert_eq!(line["prediction"], best.as_str(), "{line}");
    }
    // Bad inputs name the line and what was expected; a multitask artifact needs --task.
    std::fs::write(dir.join("bad.jsonl"), "{\"premise\": \"x\"}\n").unwrap();
    let err = fail_in(dir, &["predict", "--model", s(&model), "--artifact", s(&teacher), "--input", "bad.jsonl"]);
    assert!(err.contains("bad.jsonl: line 1") && err.contains("hypothesis"), "{err}");
    std::fs::write(dir.join("bad.jsonl"), "not json\n").unwrap();
    let err = fail_in(dir, &["predict", "--model", s(&model), "--artifact", s(&teacher), "--input", "bad.jsonl"]);
    assert!(err.contains("bad.jsonl: line 1: not valid JSON"), "{err}");
    let multitask = dir.join("runs/tiny/artifacts/distill/mpt");
    let err = fail_in(dir, &["predict", "--model", s(&model), "--artifact", s(&multitask), "--input", "in.jsonl"]);
    assert!(err.contains("--task") && err.contains("mnli, qnli"), "{err}");
    let out = ok_in(
        dir,
        &["predict", "--model", s(&model), "--artifact", s(&multitask), "--task", "mnli", "--input", "in.jsonl"],
    );
    assert_eq!(out.lines().count(), 2, "{out}");
}

#[test]
fn a_tiny_pipeline_with_the_pair_head_runs_predicts_and_is_not_exported_to_peft() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let text = pipeline_toml("tiny").replace("[prompt]", "[head]\nkind = \"pair\"\n\n[prompt]");
    std::fs::write(dir.join("tiny.toml"), text).unwrap();
    let out = ok_in(dir, &["run", "-q", "tiny.toml"]);
    assert!(out.contains("tiny: 7 stage(s) ran"), "{out}");
    let run = dir.join("runs/tiny");
    let model = fixture("bert-tiny");
    // Every stage's head reads both segments: weights [C, 4d] (d = 32).
    for (artifact, task, classes) in [("teacher/mnli", 0, 3), ("distill/mpt", 1, 2), ("adapt/mpt/rte/k2-s0", 0, 2)] {
        let tensors = read_safetensors(&run.join("artifacts").join(artifact).join("tensors.safetensors")).unwrap();
        assert_eq!(tensors[&format!("classifier.{task}.weight")].shape(), &[classes, 128], "{artifact}");
    }
    let target = inspect_json(dir, &run.join("artifacts/adapt/mpt/rte/k2-s0"));
    assert_eq!(target["tunable_params"], 4 * 32 + 4 + 32 + 2 * 128 + 2, "{target}");
    let result: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("results/eval/mpt/rte/k2-s0.json")).unwrap()).unwrap();
    assert!(result["result"]["score"].is_number(), "{result}");
    // predict reads the pair head from the artifact.
    std::fs::write(dir.join("in.jsonl"), "{\"premise\": \"a man plays\", \"hypothesis\": \"someone plays\"}\n")
        .unwrap();
    let teacher = run.join("artifacts/teacher/mnli");
    let out = ok_in(dir, &["predict", "--model", s(&model), "--artifact", s(&teacher), "--input", "in.jsonl"]);
    let line: Value = serde_json::from_str(out.trim()).unwrap();
    let total: f64 = line["scores"].as_object().unwrap().values().map(|v| v.as_f64().unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-6, "{line}");
    let err = fail_in(dir, &["export", "--format", "peft", s(&teacher), "peft"]);
    assert!(err.contains("pair over each segment") && err.contains("verbalizer head"), "{err}");
    assert!(!dir.join("peft").exists());
}

#[test]
fn run_dry_run_prints_the_plan() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("tiny.toml"), pipeline_toml("tiny")).unwrap();
    let out = ok_in(dir, &["run", "--dry-run", "tiny.toml"]);
    assert!(out.contains("plan for tiny (7 stages) in runs/tiny"), "{out}");
    for stage in [
        "teacher/mnli",
        "teacher/qnli",
        "distill/mpt",
        "adapt/mpt/rte/k2-s0",
        "eval/mpt/rte/k2-s0",
        "adapt/vanilla/rte/k2-s0",
        "eval/vanilla/rte/k2-s0",
    ] {
        let line = out
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{stage} ")))
            .unwrap_or_else(|| panic!("{stage} not in\n{out}"));
        assert!(line.contains("run ("), "{line}");
    }
    let out = ok_in(dir, &["run", "--dry-run", "tiny.toml", "--only", "teacher"]);
    assert!(out.lines().any(|l| l.contains("distill/mpt") && l.contains("not selected")), "{out}");
    assert!(!dir.join("runs").exists(), "a dry run writes nothing");
}

#[test]
fn an_invalid_pipeline_fails_fast() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let text = pipeline_toml("bad").replace("kappa = 2", "kappa = 1");
    std::fs::write(dir.join("bad.toml"), text).unwrap();
    let t = std::time::Instant::now();
    let err = fail_in(dir, &["run", "bad.toml"]);
    assert!(err.contains("distill.kappa") && err.contains("bad.toml"), "{err}");
    assert!(t.elapsed().as_secs_f64() < 20.0);
    assert!(!dir.join("runs").exists(), "nothing is created");
    let text = pipeline_toml("bad").replace("[distill]", "[distill]\nkapa = 2");
    std::fs::write(dir.join("bad.toml"), text).unwrap();
    let err = fail_in(dir, &["run", "--dry-run", "bad.toml"]);
    assert!(err.contains("distill.kapa"), "{err}");
    let err = fail_in(dir, &["run", "absent.toml"]);
    assert!(err.contains("absent.toml"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// mpt teacher | distill | adapt | eval | inspect

const SMALL: [&str; 10] = ["--steps", "2", "--batch-size", "4", "--max-train", "12", "--max-dev", "6", "--seed", "3"];

fn stage(dir: &Path, command: &str, args: &[&str]) -> String {
    let model = fixture("bert-tiny");
    let data = fixture("data");
    let mut all = vec![command, "-q", "--model", s(&model), "--data-root", s(&data)];
    all.extend_from_slice(args);
    ok_in(dir, &all)
}

#[test]
fn stage_commands_chain_and_inspect_shows_the_lineage() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let with_small =
        |args: &[&str]| -> Vec<String> { args.iter().chain(SMALL.iter()).map(|a| a.to_string()).collect() };
    let call = |command: &str, args: Vec<String>| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        stage(dir, command, &refs)
    };

    let out = call("teacher", with_small(&["--task", "mnli", "--prompt-len", "4", "--out", "t-mnli"]));
    // 4·32 prompt numbers + the default pair head over MNLI's 3 classes (3·4·32 + 3).
    assert!(out.contains("teacher artifact t-mnli") && out.contains("l=4 d=32 rank=0 (515 tunable numbers)"), "{out}");
    assert!(out.contains("dev   mnli: accuracy"), "{out}");
    call("teacher", with_small(&["--task", "qnli", "--prompt-len", "4", "--init", "random", "--out", "t-qnli"]));
    let out = call("distill", with_small(&["--teacher", "t-mnli", "--teacher", "t-qnli", "--out", "mt"]));
    assert!(out.contains("multitask artifact mt") && out.contains("tasks:    mnli, qnli"), "{out}");
    // Prompt numbers plus the default pair heads (C·4d + C: 387 for MNLI's 3 classes, 258 for 2).
    assert!(out.contains(&format!("({} tunable numbers)", 4 * 32 + 2 * (4 + 32) + 387 + 258)), "{out}");
    // `--task` orders the sources (the global `--tasks FILE` is another flag).
    let out = call(
        "distill",
        with_small(&["--teacher", "t-mnli", "--teacher", "t-qnli", "--task", "qnli,mnli", "--out", "mt2"]),
    );
    assert!(out.contains("tasks:    qnli, mnli"), "{out}");
    let out = call(
        "adapt",
        with_small(&["--target", "rte", "--method", "mpt", "--from", "mt", "--init", "source:qnli", "--out", "target"]),
    );
    assert!(
        out.contains("target artifact target") && out.contains(&format!("({} tunable numbers)", 4 * 32 + 4 + 32 + 258)),
        "{out}"
    );
    call(
        "adapt",
        with_small(&[
            "--target",
            "cb",
            "--method",
            "vanilla",
            "--prompt-len",
            "3",
            "--few-shot-k",
            "2",
            "--out",
            "vanilla",
        ]),
    );
    call("adapt", with_small(&["--target", "rte", "--method", "spot", "--from", "t-mnli", "--out", "spot"]));

    // eval: markdown on stdout, JSON + markdown files.
    let out = call(
        "eval",
        vec![
            "--artifact".into(),
            "target".into(),
            "--max-examples".into(),
            "5".into(),
            "--json".into(),
            "r.json".into(),
        ],
    );
    assert!(out.starts_with("| task | split |"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("| rte | test |") && l.contains("| 5 |")), "{out}");
    let results: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("r.json")).unwrap_or_else(|e| panic!("r.json: {e}\n{out}")),
    )
    .unwrap();
    assert_eq!(results.as_array().unwrap().len(), 1);
    assert_eq!(results[0]["examples"], 5);
    assert!(dir.join("r.md").is_file());
    // Evaluating every task of a multitask artifact, and a teacher zero-shot on another task.
    let out = call(
        "eval",
        vec!["--artifact".into(), "mt".into(), "--split".into(), "dev".into(), "--max-examples".into(), "4".into()],
    );
    assert_eq!(out.lines().filter(|l| l.starts_with("| mnli |") || l.starts_with("| qnli |")).count(), 2, "{out}");
    let out = call(
        "eval",
        vec!["--artifact".into(), "t-mnli".into(), "--task".into(), "cb".into(), "--max-examples".into(), "4".into()],
    );
    assert!(out.contains("| cb | test |"), "{out}");

    // inspect shows the lineage.
    let ids: BTreeMap<&str, String> = ["t-mnli", "t-qnli", "mt", "target", "vanilla", "spot"]
        .into_iter()
        .map(|n| (n, inspect_json(dir, &dir.join(n))["id"].as_str().unwrap().to_string()))
        .collect();
    let text = ok_in(dir, &["inspect", "mt"]);
    assert!(text.contains("kind:         multitask"), "{text}");
    assert!(text.contains(&format!("parents:      {}, {}", ids["t-mnli"], ids["t-qnli"])), "{text}");
    assert!(text.contains("layout:       multitask (l = 4, d = 32, r = 1)"), "{text}");
    assert!(text.contains("checksum:     ok"), "{text}");
    let text = ok_in(dir, &["inspect", "target"]);
    assert!(text.contains(&format!("parents:      {}", ids["mt"])), "{text}");
    assert!(text.contains("tasks:        rte"), "{text}");
    let text = ok_in(dir, &["inspect", "spot"]);
    assert!(text.contains(&format!("parents:      {}", ids["t-mnli"])), "{text}");
    let text = ok_in(dir, &["inspect", "vanilla"]);
    assert!(text.contains("parents:      none") && text.contains("tunable:      483 parameters"), "{text}");
    let v = inspect_json(dir, &dir.join("vanilla"));
    assert_eq!(v["config"]["data"]["few_shot_k"], 2);
    assert_eq!(v["tasks"], serde_json::json!(["cb"]));

    // A corrupted artifact fails verification.
    let tensors = dir.join("target/tensors.safetensors");
    let mut bytes = std::fs::read(&tensors).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&tensors, bytes).unwrap();
    let err = fail_in(dir, &["inspect", "target"]);
    assert!(err.contains("sha256") && err.contains("target"), "{err}");
}

#[test]
fn stage_commands_report_bad_arguments() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let model = fixture("bert-tiny");
    let data = fixture("data");
    let base = ["--model", s(&model), "--data-root", s(&data), "-q"];
    let run = |extra: &[&str], command: &str| -> String {
        let mut args = vec![command];
        args.extend_from_slice(&base);
        args.extend_from_slice(extra);
        fail_in(dir, &args)
    };
    let err = run(&["--out", "x"], "teacher");
    assert!(err.contains("--task"), "{err}");
    let err = run(&["--task", "nope", "--out", "x"], "teacher");
    assert!(err.contains("nope"), "{err}");
    let err = run(&["--task", "mnli", "--init", "zeros", "--out", "x"], "teacher");
    assert!(err.contains("--init") && err.contains("zeros"), "{err}");
    let err = run(&["--target", "rte", "--method", "magic", "--out", "x"], "adapt");
    assert!(err.contains("magic"), "{err}");
    let err = run(&["--target", "rte", "--method", "mpt", "--out", "x"], "adapt");
    assert!(err.contains("method"), "{err}");
    let err = run(&["--target", "rte", "--method", "spot", "--init", "vocab", "--out", "x"], "adapt");
    assert!(err.contains("--init"), "{err}");
    let err = run(&["--teacher", "absent", "--out", "x"], "distill");
    assert!(err.contains("absent"), "{err}");
    let err = run(&["--artifact", "absent", "--task", "rte"], "eval");
    assert!(err.contains("absent"), "{err}");
    let err = run(&["--artifact", "absent", "--task", "rte", "--split", "holdout"], "eval");
    assert!(err.contains("holdout"), "{err}");
    assert!(!dir.join("x").exists());
}

// ---------------------------------------------------------------------------------------------
// --help

#[test]
fn every_subcommand_has_help() {
    let cases: &[(&[&str], &[&str])] = &[
        (&["--help"], &["model", "teacher", "distill", "adapt", "eval", "run", "export", "import", "inspect"]),
        (&["model", "--help"], &["info", "forward"]),
        (&["model", "info", "--help"], &["--model", "--json"]),
        (&["model", "forward", "--help"], &["--model", "--inputs", "--out", "--generate", "--device"]),
        (
            &["teacher", "--help"],
            &["--task", "--prompt-len", "--init", "--steps", "--out", "--model", "--data-root", "--device", "--config"],
        ),
        (
            &["distill", "--help"],
            &[
                "--teacher",
                "--task",
                "--tasks",
                "--kappa",
                "--lambda",
                "--temperature",
                "--rank",
                "--no-decomposition",
                "--out",
            ],
        ),
        (&["adapt", "--help"], &["--target", "--method", "--from", "--init", "--prompt-len", "--few-shot-k", "--out"]),
        (
            &["eval", "--help"],
            &["--artifact", "--task", "--split", "--max-examples", "--batch-size", "--greedy", "--json"],
        ),
        (&["run", "--help"], &["--dry-run", "--only", "--force", "--device", "--run-dir", "--quiet"]),
        (&["export", "--help"], &["--format", "--task-type", "--base-model", "--task", "--overwrite"]),
        (&["import", "--help"], &["--format", "--model", "--kind", "--task", "--tasks", "--overwrite"]),
        (&["inspect", "--help"], &["--json"]),
    ];
    for (args, needles) in cases {
        let out = ok(args);
        assert!(out.contains("Usage: mpt"), "{}", out);
        for needle in *needles {
            assert!(out.contains(needle), "`mpt {}` does not mention {needle}:\n{out}", args.join(" "));
        }
    }
    let version = ok(&["--version"]);
    assert!(version.starts_with("mpt "), "{version}");
    // No subcommand / an unknown one: usage error (clap exits 2).
    let out = mpt_in(&repo(), &["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("frobnicate"));
}

// ---------------------------------------------------------------------------------------------
// Reliability (issue 15): inputs that used to crash the binary or fail mid-run give a clear
// error (exit status 1, never 101/134/139) naming the tensor, flag or key, before anything is
// written.

/// Runs `mpt ARGS` in `dir` with `env`, expecting exit status 1 (an error, not a panic or a
/// signal); returns stderr.
fn refused(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = mpt_env(dir, args, env);
    assert_eq!(out.status.code(), Some(1), "expected exit status 1 (101 = panic, none = signal): {}", show(args, &out));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.lines().any(|l| l.starts_with("error: ")) && !err.contains("panicked"), "{err}");
    err
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.insert(path.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

#[test]
fn model_forward_refuses_empty_batches_and_rows_without_crashing() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.safetensors");
    let output = tmp.path().join("out.safetensors");
    for model in ["bert-tiny", "t5-v1_1-tiny"] {
        let model = fixture(model);
        for (shape, needle) in [([0, 5], "empty batch"), ([2, 0], "rows of length 0")] {
            let ids = HostTensor::I64 { data: vec![], shape: shape.to_vec() };
            let inputs = BTreeMap::from([("input_ids".to_string(), ids.clone()), ("attention_mask".to_string(), ids)]);
            write_safetensors(&input, &inputs).unwrap();
            let args = ["model", "forward", "--model", s(&model), "--inputs", s(&input), "--out", s(&output)];
            // Segfaulted (exit 139) in gemm on [0, 5], fused or not; panicked in a reshape on [2, 0].
            for env in [&[][..], &[("MPT_FUSED", "0"), ("MPT_BLAS", "off")][..]] {
                let err = refused(tmp.path(), &args, env);
                assert!(
                    err.contains("input_ids") && err.contains(&format!("{shape:?}")) && err.contains(needle),
                    "{env:?}: {err}"
                );
                assert!(!output.exists(), "no output on error");
            }
        }
    }
}

#[test]
fn zero_counts_are_refused_by_flags_and_pipelines_alike_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let model = fixture("bert-tiny");
    let data = fixture("data");
    const WORDS: &str = "must be at least 1 (or absent)";
    for (flag, field) in [("--max-train", "max_train"), ("--max-dev", "max_dev")] {
        // `--max-train 0` used to panic in SoftPrompt::batch ("Broadcast arguments must be positive").
        let args =
            ["teacher", "-q", "--model", s(&model), "--data-root", s(&data), "--task", "rte", "--out", "t", flag, "0"];
        let err = refused(dir, &args, &[]);
        assert!(err.contains(&format!("{flag}: {WORDS}")), "{err}");
        assert!(!dir.join("t").exists(), "no artifact on error");
        // The same value from a --config file is named by its key.
        std::fs::write(
            dir.join("c.toml"),
            format!("task = \"rte\"\nprompt_length = 4\ninit = {{ kind = \"vocab\" }}\n[train]\n[data]\n{field} = 0\n"),
        )
        .unwrap();
        let args = ["teacher", "-q", "--model", s(&model), "--data-root", s(&data), "--config", "c.toml", "--out", "t"];
        let err = refused(dir, &args, &[]);
        assert!(err.contains(&format!("c.toml: `data.{field}`: {WORDS}")), "{err}");
    }

    // A pipeline: refused by the dry run and the run with the same words, naming the key (and
    // the section when an override set it); a finished run folder is left as it was.
    std::fs::write(dir.join("tiny.toml"), pipeline_toml("tiny")).unwrap();
    ok_in(dir, &["run", "-q", "tiny.toml"]);
    let run = dir.join("runs/tiny");
    let before = snapshot(&run);
    for (from, to, key) in [
        ("max_train = 12", "max_train = 0", "data.max_train"),
        ("max_dev = 6", "max_dev = 0", "data.max_dev"),
        ("[targets]", "[targets.data]\nmax_dev = 0\n\n[targets]", "targets.data.max_dev"),
    ] {
        std::fs::write(dir.join("bad.toml"), pipeline_toml("tiny").replace(from, to)).unwrap();
        for dry in [true, false] {
            let args: &[&str] = if dry { &["run", "--dry-run", "bad.toml"] } else { &["run", "-q", "bad.toml"] };
            let err = refused(dir, args, &[]);
            assert!(err.contains(&format!("bad.toml: `{key}`: {WORDS}")), "{err}");
        }
    }
    assert_eq!(snapshot(&run), before, "the run folder is unchanged");
}

#[test]
fn max_len_is_checked_alike_by_eval_and_teacher() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let model = fixture("bert-tiny");
    let data = fixture("data");
    let env = ["-q", "--model", s(&model), "--data-root", s(&data)];
    let with = |head: &[&str], tail: &[&str]| -> Vec<String> {
        head.iter().chain(&env).chain(tail).map(|a| a.to_string()).collect()
    };
    let teach = with(
        &["teacher"],
        &["--task", "rte", "--prompt-len", "2", "--steps", "1", "--max-train", "4", "--max-dev", "4", "--out", "t"],
    );
    fn refs(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    ok_in(dir, &refs(&teach));
    let before = snapshot(&dir.join("t"));
    for bad in ["0", "3"] {
        let mut args = teach.clone();
        args.extend(["--max-len".into(), bad.into()]);
        let teacher_err = refused(dir, &refs(&args), &[]);
        // `mpt eval --max-len 0` used to be accepted and change the accuracy.
        let eval = with(
            &["eval"],
            &["--artifact", "t", "--task", "rte", "--max-examples", "4", "--max-len", bad, "--json", "r.json"],
        );
        let eval_err = refused(dir, &refs(&eval), &[]);
        assert!(eval_err.contains("--max-len: must be at least 4"), "{eval_err}");
        assert_eq!(eval_err, teacher_err, "one check, the same words");
        assert!(!dir.join("r.json").exists());
    }
    assert_eq!(snapshot(&dir.join("t")), before, "the artifact is unchanged");
    let eval = with(&["eval"], &["--artifact", "t", "--task", "rte", "--max-examples", "4", "--max-len", "4"]);
    ok_in(dir, &refs(&eval));
}

#[test]
fn run_sweeps_the_temp_files_of_interrupted_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("tiny.toml"), pipeline_toml("tiny")).unwrap();
    ok_in(dir, &["run", "-q", "tiny.toml"]);
    let run = dir.join("runs/tiny");
    // What a run killed inside write_atomic leaves (`.NAME.tmp-PID`), beside files of the user's.
    let stray = [
        ".state.json.tmp-4242",
        ".pipeline.toml.tmp-4242",
        ".report.json.tmp-4242",
        ".report.md.tmp-4242",
        "results/eval/mpt/rte/.k2-s0.json.tmp-4242",
        "plots/.curve.svg.tmp-4242",
        "artifacts/teacher/.mnli.tmp-4242/artifact.json",
    ];
    for f in stray {
        let path = run.join(f);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"partial").unwrap();
    }
    std::fs::write(run.join(".notes"), b"mine").unwrap();
    std::fs::write(run.join("notes.tmp-1"), b"mine").unwrap();
    let out = ok_in(dir, &["run", "-q", "tiny.toml"]);
    assert!(out.contains("0 stage(s) ran, 7 already done"), "{out}");
    for f in stray {
        assert!(!run.join(f).exists(), "{f} was not swept");
    }
    assert!(!run.join("artifacts/teacher/.mnli.tmp-4242").exists());
    assert!(run.join(".notes").is_file() && run.join("notes.tmp-1").is_file(), "only temp names are swept");
    // A dry run writes (and sweeps) nothing.
    std::fs::write(run.join(".state.json.tmp-4242"), b"partial").unwrap();
    ok_in(dir, &["run", "--dry-run", "tiny.toml"]);
    assert!(run.join(".state.json.tmp-4242").is_file());
}

#[test]
fn a_second_run_on_a_held_run_folder_is_refused_naming_the_holder() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("tiny.toml"), pipeline_toml("tiny")).unwrap();
    let run = dir.join("runs/tiny");
    std::fs::create_dir_all(&run).unwrap();
    // This process holds the lock as a running `mpt run` does (flock on the file, pid inside).
    let lock_path = run.join(".run.lock");
    let lock = std::fs::File::create(&lock_path).unwrap();
    lock.try_lock().expect("the lock is free");
    std::fs::write(&lock_path, format!("{}\n", std::process::id())).unwrap();
    let before = snapshot(&run);
    let err = refused(dir, &["run", "-q", "tiny.toml"], &[]);
    assert!(
        err.contains("in use by another `mpt run`") && err.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    assert!(err.contains("runs/tiny"), "{err}");
    assert_eq!(snapshot(&run), before, "nothing is written while the folder is held");
    // A dry run only reads: allowed.
    ok_in(dir, &["run", "--dry-run", "tiny.toml"]);
    // The holder is gone (its lock with it); its pid is still in the file: taken over.
    drop(lock);
    std::fs::write(&lock_path, "999999999\n").unwrap();
    let out = ok_in(dir, &["run", "-q", "tiny.toml"]);
    assert!(out.contains("7 stage(s) ran"), "{out}");
    assert_ne!(std::fs::read_to_string(&lock_path).unwrap(), "999999999\n", "the new holder wrote its pid");
}

#[test]
fn error_causes_are_printed_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let bert = fixture("bert-tiny");
    for (bytes, cause) in [(&b"abc"[..], "header too small"), (&b"\x01\0\0\0\0\0\0\0{"[..], "EOF while parsing")] {
        std::fs::write(dir.join("in.safetensors"), bytes).unwrap();
        let err = refused(
            dir,
            &["model", "forward", "--model", s(&bert), "--inputs", "in.safetensors", "--out", "o.safetensors"],
            &[],
        );
        assert_eq!(err.matches(cause).count(), 1, "{err}");
        assert!(err.contains("in.safetensors"), "{err}");
    }
    // A stage that fails mid-run: "stage … failed: X" with X once.
    let text = pipeline_toml("nan").replace("seed = 1", "seed = 1\nlearning_rate = 1e38");
    std::fs::write(dir.join("nan.toml"), text).unwrap();
    let err = refused(dir, &["run", "-q", "nan.toml"], &[]);
    assert!(err.contains("stage teacher/mnli failed"), "{err}");
    assert_eq!(err.matches("loss is").count(), 1, "{err}");
}

// ---------------------------------------------------------------------------------------------
// Task files

/// A CSV task in `dir/reviews/`: 40 rows of two kinds, stars 1 or 5.
fn write_reviews(dir: &Path) {
    std::fs::create_dir_all(dir.join("reviews")).unwrap();
    let mut csv = String::from("id,text,stars\n");
    for i in 0..40 {
        let (text, stars) = if i % 2 == 0 { ("\"good, very good\"", 5) } else { ("bad bad bad", 1) };
        csv.push_str(&format!("{i},{text} {i},{stars}\n"));
    }
    std::fs::write(dir.join("reviews/train.csv"), csv).unwrap();
    std::fs::write(
        dir.join("reviews/tasks.toml"),
        "[tasks.reviews]\nformat = \"csv\"\ntrain = \"train.csv\"\ninput = \"review: {text}\"\nlabel = \"stars\"\n\
         labels = { \"1\" = \"negative\", \"5\" = \"positive\" }\nmetrics = [\"accuracy\", \"f1\"]\n",
    )
    .unwrap();
}

#[test]
fn a_task_from_a_task_file_trains_evaluates_and_predicts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_reviews(dir);
    let model = fixture("bert-tiny");
    let tasks = ["--tasks", "reviews/tasks.toml"];
    let mut args = vec!["teacher", "-q", "--model", s(&model), "--task", "reviews", "--prompt-len", "4", "--out", "t"];
    args.extend(SMALL);
    args.extend(tasks);
    let out = ok_in(dir, &args);
    assert!(out.contains("teacher artifact t") && out.contains("dev   reviews: accuracy"), "{out}");
    let out = ok_in(dir, &["eval", "--model", s(&model), "--artifact", "t", "--tasks", "reviews/tasks.toml"]);
    assert!(out.contains("reviews") && out.contains("majority"), "{out}");
    std::fs::write(dir.join("in.jsonl"), "{\"text\": \"good, very good\"}\n").unwrap();
    let out = ok_in(
        dir,
        &["predict", "--model", s(&model), "--artifact", "t", "--input", "in.jsonl", "--tasks", "reviews/tasks.toml"],
    );
    let row: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    let labels: Vec<&str> = row["scores"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(labels, ["negative", "positive"], "{row}");
    // Without the task file the task is unknown, and the message says how to declare it.
    let err = fail_in(dir, &["eval", "--model", s(&model), "--artifact", "t"]);
    assert!(err.contains("unknown task \"reviews\"") && err.contains("--tasks FILE"), "{err}");
    // A bad task file fails before any work, naming the data file, line and field.
    let text = std::fs::read_to_string(dir.join("reviews/tasks.toml")).unwrap();
    std::fs::write(dir.join("reviews/bad.toml"), text.replace("{text}", "{body}")).unwrap();
    args.pop();
    args.push("reviews/bad.toml");
    *args.iter_mut().find(|a| **a == "t").unwrap() = "t2";
    let err = fail_in(dir, &args);
    assert!(err.contains("reviews/train.csv:1: field `body`") && err.contains("tasks.reviews"), "{err}");
    assert!(!dir.join("t2").exists());
}

#[test]
fn a_pipeline_declares_tasks_in_a_file_or_inline() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_reviews(dir);
    // Target from the task file; a second source declared inline (paths from the working dir).
    let text = pipeline_toml("own")
        .replace("[prompt]", "tasks_file = \"reviews/tasks.toml\"\n\n[prompt]")
        .replace("tasks = [\"mnli\", \"qnli\"]", "tasks = [\"mnli\", \"reviews_src\"]")
        .replace("tasks = [\"rte\"]", "tasks = [\"reviews\"]")
        + "\n[tasks.reviews_src]\nformat = \"csv\"\ntrain = \"reviews/train.csv\"\ninput = \"{text}\"\nlabel = \"stars\"\n";
    std::fs::write(dir.join("own.toml"), &text).unwrap();
    let out = ok_in(dir, &["run", "-q", "own.toml", "--jobs", "2"]);
    assert!(out.contains("own: 7 stage(s) ran"), "{out}");
    let report = std::fs::read_to_string(dir.join("runs/own/report.md")).unwrap();
    assert!(report.contains("reviews"), "{report}");
    let status = ok_in(dir, &["status", "runs/own"]);
    assert!(status.ends_with("7 stages: 7 done\n"), "{status}");
    // Editing a declared task's data reruns the stages on it, not the others.
    let mut csv = std::fs::read_to_string(dir.join("reviews/train.csv")).unwrap();
    csv.push_str("40,good good,5\n");
    std::fs::write(dir.join("reviews/train.csv"), csv).unwrap();
    let plan = ok_in(dir, &["run", "--dry-run", "own.toml"]);
    let line = |stage: &str| plan.lines().find(|l| l.trim_start().starts_with(stage)).unwrap_or("").to_string();
    assert!(line("teacher/mnli").ends_with("done"), "{plan}");
    for stage in ["teacher/reviews_src", "distill/mpt", "adapt/vanilla/reviews/", "eval/vanilla/reviews/"] {
        assert!(line(stage).contains("run ("), "{stage}: {plan}");
    }
    // A bad inline declaration is refused by the dry run with the pipeline file and key.
    std::fs::write(dir.join("bad.toml"), text.replace("label = \"stars\"\n", "label = \"stars\"\nlabels = [\"1\"]\n"))
        .unwrap();
    let err = fail_in(dir, &["run", "--dry-run", "bad.toml"]);
    assert!(
        err.contains("bad.toml: `tasks.reviews_src.labels`: a classification task needs at least two labels"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Generation tasks

#[test]
fn a_generation_task_trains_evaluates_and_predicts_text_on_t5_and_is_refused_on_bert() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let t5 = fixture("t5-v1_1-tiny");
    let data = fixture("data");
    let mut args = vec!["teacher", "-q", "--model", s(&t5), "--data-root", s(&data), "--task", "e2e"];
    args.extend(["--prompt-len", "4", "--max-target", "24", "--out", "t"]);
    args.extend(SMALL);
    let out = ok_in(dir, &args);
    assert!(out.contains("teacher artifact t") && out.contains("dev   e2e: bleu"), "{out}");
    let out = ok_in(
        dir,
        &[
            "eval",
            "--model",
            s(&t5),
            "--data-root",
            s(&data),
            "--artifact",
            "t",
            "--max-target",
            "24",
            "--json",
            "r.json",
        ],
    );
    assert!(out.contains("| e2e | test |"), "{out}");
    let results: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("r.json")).unwrap()).unwrap();
    let r = &results[0];
    let metrics: Vec<&str> = r["metrics"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(metrics, ["bleu", "chrf", "rouge_l"], "{r}");
    // The constant predictor is the most frequent training reference; scores are fractions.
    assert!(r["baselines"]["majority_label"].as_str().unwrap().ends_with('.'), "{r}");
    for v in r["metrics"]
        .as_object()
        .unwrap()
        .values()
        .chain(r["baselines"]["majority_metrics"].as_object().unwrap().values())
    {
        assert!((0.0..=1.0).contains(&v.as_f64().unwrap()), "{r}");
    }
    // Every row of the fixture's test file (8 meaning representations, 1-2 references each).
    let rows = std::fs::read_to_string(data.join("e2e/testset_w_refs.csv")).unwrap().lines().count() - 1;
    assert!(rows > 8);
    assert_eq!(r["examples"], rows, "{r}");
    std::fs::write(dir.join("in.jsonl"), "{\"mr\": \"name[Aromi], eatType[pub], area[riverside]\"}\n").unwrap();
    let out =
        ok_in(dir, &["predict", "--model", s(&t5), "--artifact", "t", "--input", "in.jsonl", "--max-target", "8"]);
    let row: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert!(row["prediction"].is_string() && row.get("scores").is_none(), "{row}");
    // An encoder cannot generate: refused before any training, naming the task.
    let bert = fixture("bert-tiny");
    let err =
        fail_in(dir, &["teacher", "-q", "--model", s(&bert), "--data-root", s(&data), "--task", "e2e", "--out", "b"]);
    assert!(err.contains("e2e") && err.contains("generation task") && err.contains("encoder"), "{err}");
    assert!(!dir.join("b").exists());
}

#[test]
fn a_pipeline_adapts_t5_to_a_generation_target() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let text = pipeline_toml("gen")
        .replace(s(&fixture("bert-tiny")), s(&fixture("t5-v1_1-tiny")))
        .replace("tasks = [\"rte\"]", "tasks = [\"e2e\"]")
        .replace("[train]\n", "[train]\nlengths = { max_input = 64, max_target = 24 }\n");
    std::fs::write(dir.join("gen.toml"), &text).unwrap();
    let out = ok_in(dir, &["run", "-q", "gen.toml"]);
    assert!(out.contains("gen: 7 stage(s) ran"), "{out}");
    let report = std::fs::read_to_string(dir.join("runs/gen/report.md")).unwrap();
    assert!(report.contains("| e2e |"), "{report}");
    let result: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("runs/gen/results/eval/mpt/e2e/k2-s0.json")).unwrap())
            .unwrap();
    let metrics: Vec<&str> = result["result"]["metrics"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(metrics, ["bleu", "chrf", "rouge_l"], "{result}");
}
