//! Kill-at-random soak of `mpt run` (issue 15): the tiny pipeline (bert-tiny, the synthetic data
//! root, 7 stages) is SIGKILLed at random points, again and again in one shared run folder, and
//! must always resume to the artifacts of an uninterrupted run.
//!
//! 1. Run A: the pipeline once, uninterrupted; its artifact ids and result keys are the reference.
//! 2. Until `MPT_SOAK_TRIALS` runs were killed (default [`DEFAULT_TRIALS`]), in run folder B: start
//!    `mpt run -q tiny.toml --run-dir B`, SIGKILL it after a random delay (seeded LCG; a quarter
//!    of the delays in the first 5 ms, where the run takes the lock, sweeps and copies the
//!    pipeline, the rest spread over 1.2 × run A's wall time × the share of the stages the run
//!    has to do), or let it finish if it is faster (it must exit 0).
//!    After each run: `mpt status B` and `mpt run --dry-run` exit 0 and no run holds B (a run
//!    killed before it copied pipeline.toml leaves no run folder yet: then `mpt status` must
//!    exit 1 saying "not a run folder", not crash);
//!    `state.json` parses; every artifact and result present is complete and has A's id or key
//!    (writes are atomic: a kill leaves a finished file or none). When B is complete, the next
//!    run reruns a random stage prefix with `--force` (so kills land in replacing writes too),
//!    or, one time in two, starts from an empty B (kills in a fresh folder).
//! 3. A last run to completion: exit 0, the ids and keys of A, every artifact verifies
//!    (`mpt inspect --json`), `state.json` has every stage, no `.tmp-`/`.old-` names anywhere
//!    under B, and one more run finds all 7 stages done.
//!
//! `MPT_SOAK_SEED` (default 15) seeds the delays; a failure prints the seed, run and delay.
//! The long version is `scripts/soak.sh` (200 kills).

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Kills when `MPT_SOAK_TRIALS` is unset: the issue's 20 with margin. Measured on the 2-core
/// machine with a background job on it: about 0.1 s a run (the tiny pipeline takes 0.15-0.2 s
/// uninterrupted; about 1.1 runs per kill), so 5-7 s for the whole test; its closing line
/// (`--nocapture`) prints the counts and times.
const DEFAULT_TRIALS: usize = 50;

const STAGES: usize = 7;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures").join(name)
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn mpt() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mpt"));
    cmd.env_remove("RUST_LOG");
    cmd
}

/// Runs `mpt ARGS` in `dir` to completion.
fn mpt_in(dir: &Path, args: &[&str]) -> Output {
    mpt().args(args).current_dir(dir).output().expect("the mpt binary runs")
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

/// Runs `mpt ARGS` in `dir`, expecting exit 0; returns stdout.
fn ok_in(dir: &Path, args: &[&str]) -> String {
    let out = mpt_in(dir, args);
    assert!(out.status.success(), "{}", show(args, &out));
    String::from_utf8(out.stdout).unwrap()
}

/// The tiny pipeline of tests/cli.rs: sources mnli + qnli, target rte (k = 2, seed 0), MPT and
/// vanilla: 7 stages.
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

/// What an interrupted write leaves: `.NAME.tmp-PID` (files and artifact folders) and
/// `.NAME.old-PID` (an artifact set aside while its replacement is moved in).
fn is_temp_name(name: &str) -> bool {
    name.contains(".tmp-") || name.contains(".old-")
}

/// Every artifact id and result key under `run` (relative path -> id), skipping temp names.
/// A file present under a final name must be complete: one that does not parse fails the test.
fn run_outputs(run: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![run.join("artifacts"), run.join("results")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if is_temp_name(&entry.file_name().to_string_lossy()) {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path.strip_prefix(run).unwrap().display().to_string();
            if !rel.ends_with(".json") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{rel}: {e}"));
            let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{rel} is not complete JSON: {e}"));
            let key = if rel.ends_with("artifact.json") { "id" } else { "key" };
            let id = v[key].as_str().unwrap_or_else(|| panic!("{rel} has no {key:?}: {text}"));
            out.insert(rel, id.to_string());
        }
    }
    out
}

/// Every path under `dir` whose name is a temp name.
fn stray_temps(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if is_temp_name(&entry.file_name().to_string_lossy()) {
                found.push(path.clone());
            }
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
    found
}

/// A 64-bit LCG (Knuth's MMIX constants); the high bits are used.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    /// Uniform in `0..n` (n > 0; the bias of `%` is irrelevant here).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| panic!("{name}={v:?}: expected a whole number")),
        Err(_) => default,
    }
}

/// How one trial's run ended.
enum Ended {
    Killed,
    Finished(ExitStatus),
}

/// Starts `mpt ARGS` in `dir` and SIGKILLs it after `delay` unless it has ended by then.
fn run_and_kill(dir: &Path, args: &[&str], delay: Duration, stderr: &Path) -> Ended {
    let err = std::fs::File::create(stderr).unwrap();
    let mut child = mpt()
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .expect("the mpt binary starts");
    std::thread::sleep(delay);
    if let Some(status) = child.try_wait().unwrap() {
        return Ended::Finished(status);
    }
    // SIGKILL; a child that ended between try_wait and here is still reaped with its own status.
    child.kill().unwrap();
    let status = child.wait().unwrap();
    if status.signal() == Some(SIGKILL) { Ended::Killed } else { Ended::Finished(status) }
}

/// SIGKILL's number (9 on every Unix this runs on).
const SIGKILL: i32 = 9;

#[test]
fn a_pipeline_killed_at_random_points_resumes_to_the_same_artifacts() {
    let trials = env_number("MPT_SOAK_TRIALS", DEFAULT_TRIALS as u64) as usize;
    let seed = env_number("MPT_SOAK_SEED", 15);
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("tiny.toml"), pipeline_toml("tiny")).unwrap();

    // Run A: the reference, uninterrupted.
    let t0 = Instant::now();
    let out = ok_in(dir, &["run", "-q", "tiny.toml", "--run-dir", "A"]);
    let full = t0.elapsed();
    assert!(out.contains(&format!("{STAGES} stage(s) ran, 0 already done")), "{out}");
    let reference = run_outputs(&dir.join("A"));
    assert_eq!(reference.len(), STAGES, "5 artifacts and 2 results: {reference:?}");

    let b = dir.join("B");
    let stderr = dir.join("trial.stderr");
    let run_b = ["run", "-q", "tiny.toml", "--run-dir", "B"];
    let force_choices = ["teacher", "teacher/qnli", "distill", "adapt", "adapt/vanilla", "eval", "eval/mpt"];
    let mut rng = Lcg(seed ^ 0x9E37_79B9_7F4A_7C15);
    let full_us = full.as_micros().max(1000) as u64;
    let (mut killed, mut finished, mut forced, mut fresh, mut before_copy, mut mid) = (0, 0, 0, 0, 0, 0);
    let mut next_force: Option<&str> = None;
    let mut trial = 0;
    // Until `trials` runs were killed; a run that beats its delay counts as a resumed run (it
    // must exit 0), not a trial. The cap only guards against a machine where no kill lands.
    while killed < trials {
        assert!(trial < 10 * trials.max(1), "only {killed} of {trial} runs were killed in time");
        trial += 1;
        // Delays over the work this run has (the stages missing, or those forced), plus startup.
        let present = run_outputs(&b).len() as u64;
        let work = match next_force {
            Some(prefix) => reference
                .keys()
                .filter(|k| {
                    k.starts_with(&format!("artifacts/{prefix}")) || k.starts_with(&format!("results/{prefix}"))
                })
                .count() as u64,
            None => STAGES as u64 - present,
        };
        let span = full_us * 6 / 5 * (work + 1) / (STAGES as u64 + 1);
        let delay = if rng.below(4) == 0 {
            Duration::from_micros(rng.below(5_000))
        } else {
            Duration::from_micros(rng.below(span.max(1)))
        };
        let mut args: Vec<&str> = run_b.to_vec();
        if let Some(prefix) = next_force.take() {
            args.extend(["--force", prefix]);
        }
        let context = format!("seed {seed}, run {trial}, delay {delay:?}, `mpt {}`", args.join(" "));
        match run_and_kill(dir, &args, delay, &stderr) {
            Ended::Killed => {
                killed += 1;
                if run_outputs(&b).len() < STAGES {
                    mid += 1;
                }
            }
            Ended::Finished(status) => {
                let err = std::fs::read_to_string(&stderr).unwrap_or_default();
                assert!(status.success(), "{context}: ended on its own with {status}\n--- stderr\n{err}");
                finished += 1;
            }
        }

        // The folder is usable right after the kill: status and a dry run read it, no run holds it.
        // A run killed before it copied the pipeline file leaves no run folder to show yet:
        // `mpt status` says so (exit 1, no crash); `mpt run` then starts it afresh.
        if b.join("pipeline.toml").is_file() {
            let status = ok_in(dir, &["status", "B"]);
            assert!(status.contains("no run in progress"), "{context}: mpt status B\n{status}");
        } else {
            let out = mpt_in(dir, &["status", "B"]);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.code() == Some(1) && err.contains("not a run folder"),
                "{context}: {}",
                show(&["status", "B"], &out)
            );
            before_copy += 1;
        }
        ok_in(dir, &["run", "--dry-run", "tiny.toml", "--run-dir", "B"]);
        // Whatever is there is complete and is what the uninterrupted run made.
        if let Ok(text) = std::fs::read_to_string(b.join("state.json")) {
            serde_json::from_str::<Value>(&text)
                .unwrap_or_else(|e| panic!("{context}: state.json does not parse ({e}):\n{text}"));
        }
        let now = run_outputs(&b);
        for (path, id) in &now {
            assert_eq!(reference.get(path), Some(id), "{context}: {path} differs from run A's");
        }

        if now == reference {
            // Complete: make the next trial do work again.
            if rng.below(2) == 0 {
                std::fs::remove_dir_all(&b).unwrap();
                fresh += 1;
            } else {
                next_force = Some(force_choices[rng.below(force_choices.len() as u64) as usize]);
                forced += 1;
            }
        }
    }

    // Resume to completion.
    let out = ok_in(dir, &run_b);
    assert!(out.contains("stage(s) ran"), "{out}");
    assert_eq!(run_outputs(&b), reference, "seed {seed}: the resumed run B must match run A");
    let state: Value = serde_json::from_str(&std::fs::read_to_string(b.join("state.json")).unwrap()).unwrap();
    assert_eq!(state.as_object().map(|o| o.len()), Some(STAGES), "state.json: {state}");
    serde_json::from_str::<Value>(&std::fs::read_to_string(b.join("report.json")).unwrap()).unwrap();
    for rel in reference.keys().filter(|k| k.ends_with("/artifact.json")) {
        let artifact = b.join(rel);
        let artifact = artifact.parent().unwrap();
        let json: Value = serde_json::from_str(&ok_in(dir, &["inspect", "--json", s(artifact)])).unwrap();
        assert_eq!(json["verified"], true, "{rel}: {json}");
    }
    let strays = stray_temps(&b);
    assert!(strays.is_empty(), "seed {seed}: temp files left after the final run: {strays:?}");
    let again = ok_in(dir, &run_b);
    assert!(again.contains(&format!("0 stage(s) ran, {STAGES} already done")), "{again}");

    eprintln!(
        "soak (seed {seed}): {trial} runs, {killed} killed ({mid} with stages left to do, {before_copy} before \
         pipeline.toml was copied), \
         {finished} finished before their kill; {forced} forced reruns, {fresh} fresh folders; \
         run A {:.0} ms; {:.1} s in all ({:.0} ms a run)",
        full.as_secs_f64() * 1e3,
        started.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64() * 1e3 / trial.max(1) as f64,
    );
}
