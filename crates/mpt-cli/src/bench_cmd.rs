//! `mpt bench`: time real steps of a stage on synthetic token ids.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use mpt_models::Model;
use mpt_train::bench::{BenchConfig, BenchStage, run};

use crate::device::parse_device;

/// Arguments of `mpt bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Hugging Face model folder.
    #[arg(long)]
    pub model: PathBuf,
    /// teacher, distill, adapt or eval.
    #[arg(long)]
    pub stage: BenchStage,
    /// Prompt length.
    #[arg(long, default_value_t = 100)]
    pub prompt_len: usize,
    /// Batch size.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Input tokens per row (no padding).
    #[arg(long, default_value_t = 128)]
    pub seq_len: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Untimed warm-up steps.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Backend: cpu, wgpu, tch-cpu, tch-cuda, cuda (as compiled in).
    #[arg(long, default_value = crate::device::DEFAULT_DEVICE)]
    pub device: String,
    /// Print one JSON object (examples_per_sec, step_ms_median, peak_rss_mb, …).
    #[arg(long)]
    pub json: bool,
}

/// Runs `mpt bench`.
pub fn bench(args: BenchArgs) -> Result<()> {
    let device = parse_device(&args.device)?;
    let model = Model::load(&args.model, &device).with_context(|| format!("loading {}", args.model.display()))?;
    let tokenizer = model.require_tokenizer()?;
    let config = BenchConfig {
        stage: args.stage,
        prompt_len: args.prompt_len,
        batch: args.batch,
        seq_len: args.seq_len,
        steps: args.steps,
        warmup: args.warmup,
    };
    let result = run(&*model.backbone, tokenizer, &config, &device)?;
    if args.json {
        let mut value = serde_json::to_value(&result)?;
        let extra = serde_json::json!({
            "impl": "mpt",
            "device": args.device,
            "model": args.model.display().to_string(),
            "prompt_len": args.prompt_len,
            "batch": args.batch,
            "seq_len": args.seq_len,
            "steps": args.steps,
        });
        if let (Some(v), Some(e)) = (value.as_object_mut(), extra.as_object()) {
            v.extend(e.clone());
            if args.device == "cpu" {
                v.insert("linear_kernel".into(), mpt_models::fused::flex_linear_kernel()?.into());
            }
        }
        println!("{}", serde_json::to_string(&value)?);
    } else {
        println!(
            "mpt bench {:?} on {} ({}): prompt {}, batch {}, seq {}, {} steps",
            args.stage,
            args.model.display(),
            args.device,
            args.prompt_len,
            args.batch,
            args.seq_len,
            args.steps
        );
        println!("  step (median): {:.1} ms (mean {:.1} ms)", result.step_ms_median, result.step_ms_mean);
        println!("  examples/s:    {:.2}", result.examples_per_sec);
        println!("  tokens/s:      {:.0}", result.tokens_per_sec);
        println!("  peak RSS:      {:.0} MiB", result.peak_rss_mb);
    }
    Ok(())
}
