//! `mpt`: Multitask Prompt Tuning from the command line.

mod artifact_cmd;
mod bench_cmd;
mod common;
mod device;
mod model_cmd;
mod predict_cmd;
mod progress;
mod run_cmd;
mod stages;
mod summary;

use clap::{Parser, Subcommand};

// Tensor temporaries are large and short-lived; mimalloc reuses their pages instead of
// returning them to the OS and faulting them in again on the next operation.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` (same index in mimalloc v2 and v3).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps freed pages committed (no purging) unless `MIMALLOC_PURGE_DELAY` says otherwise: a
/// training step frees and reallocates the same large buffers every step, and purging them
/// made the kernel zero fresh pages each time (12% of a MiniLM teacher step, measured).
///
/// libtorch (the `tch` devices) allocates through the C heap, not through Rust's allocator. glibc
/// serves blocks above its mmap threshold with fresh mappings and trims freed memory, so every
/// step faulted its multi-megabyte activations in again (17% of a tch MiniLM teacher step's
/// samples in the kernel, mostly page faults); a fixed 32 MiB mmap threshold (glibc's maximum)
/// and no trimming keep them in the heap (median step 1891 -> 1677 ms over two interleaved runs
/// on a noisy machine, same peak RSS). Skipped when the user sets `GLIBC_TUNABLES` or
/// `MALLOC_MMAP_THRESHOLD_`.
fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets a process-wide integer option; called first thing in main.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("GLIBC_TUNABLES").is_none() && std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        // SAFETY: mallopt sets process-wide malloc parameters; called before any thread starts.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        }
    }
}

/// Multitask Prompt Tuning (ICLR 2023) on frozen transformers.
#[derive(Debug, Parser)]
#[command(name = "mpt", version, about, long_about = None)]
struct Cli {
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// A task file declaring your own tasks beside the built-in ones (repeatable; its
    /// `[tasks.NAME]` tables are then usable wherever a task name is: `--task NAME`, pipelines).
    #[arg(long = "tasks", id = "task_files", value_name = "FILE", global = true)]
    tasks: Vec<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Inspect a backbone folder or run a forward pass.
    #[command(subcommand)]
    Model(model_cmd::ModelCmd),
    /// Stage 1: vanilla prompt tuning of one source task -> a teacher artifact.
    Teacher(stages::TeacherArgs),
    /// Stage 2: distil teachers into one multitask prompt P* ∘ (u vᵀ).
    Distill(stages::DistillArgs),
    /// Stage 3: adapt to target task(s) from a multitask artifact, a teacher, or scratch.
    Adapt(stages::AdaptArgs),
    /// Stage 4: evaluate an artifact on a task split.
    Eval(stages::EvalArgs),
    /// Predict labels of new inputs (JSONL) with an artifact.
    Predict(predict_cmd::PredictArgs),
    /// Run a declared pipeline (TOML) end to end, resuming finished stages.
    Run(run_cmd::RunArgs),
    /// Bring the finished stages of other run folders of a pipeline into its run folder, then
    /// write the report (for stages run at once in separate folders).
    Merge(run_cmd::MergeArgs),
    /// Show every stage of a run folder: done, running, queued on Slurm, failed (with its log), pending.
    Status(run_cmd::StatusArgs),
    /// Export an artifact as a PEFT adapter or as one task's plain prompt.
    Export(artifact_cmd::ExportArgs),
    /// Import a PEFT prompt-tuning adapter as an artifact.
    Import(artifact_cmd::ImportArgs),
    /// Show and verify an artifact.
    Inspect(artifact_cmd::InspectArgs),
    /// Time real steps of a stage on synthetic inputs (examples/s, step time, peak memory).
    Bench(bench_cmd::BenchArgs),
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

fn main() -> std::process::ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    for file in &cli.tasks {
        if let Err(err) = mpt_data::load_task_file(file) {
            eprintln!("error: {err}");
            return std::process::ExitCode::FAILURE;
        }
    }
    let result = match cli.command {
        Command::Model(cmd) => model_cmd::run(cmd),
        Command::Teacher(args) => stages::teacher(args),
        Command::Distill(args) => stages::distill(args),
        Command::Adapt(args) => stages::adapt(args),
        Command::Eval(args) => stages::eval(args),
        Command::Predict(args) => predict_cmd::predict(args),
        Command::Run(args) => run_cmd::run(args, &cli.tasks),
        Command::Merge(args) => run_cmd::merge(args),
        Command::Status(args) => run_cmd::status(args),
        Command::Bench(args) => bench_cmd::bench(args),
        Command::Export(args) => artifact_cmd::export(args),
        Command::Import(args) => artifact_cmd::import(args),
        Command::Inspect(args) => artifact_cmd::inspect(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", render(&err));
            std::process::ExitCode::FAILURE
        }
    }
}

/// `err` and its causes joined by `: `, each once. The library errors put their cause's text
/// in their own message (so `to_string()` says everything) and also return it as their
/// `source()`, so printing the whole chain (`{:#}`) said it twice ("header too small: header
/// too small", "stage … failed: X: X"); a cause whose text is already printed is skipped.
fn render(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::render;

    /// Like the library errors: the cause in the message and as the source.
    #[derive(Debug)]
    struct Outer {
        path: String,
        source: std::io::Error,
    }

    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{}: invalid file: {}", self.path, self.source)
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    #[test]
    fn each_cause_is_printed_once() {
        let inner = std::io::Error::other("header too small");
        let err = anyhow::Error::new(Outer { path: "x.safetensors".into(), source: inner })
            .context("reading inputs x.safetensors");
        assert_eq!(render(&err), "reading inputs x.safetensors: x.safetensors: invalid file: header too small");
        // Causes not embedded in the message above them are all printed.
        let err = anyhow::anyhow!("root cause").context("middle").context("top");
        assert_eq!(render(&err), "top: middle: root cause");
    }
}
