//! `mpt model …`: inspect a backbone folder and run the parity forward contract.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use mpt_models::{Model, ModelInfo, forward, io};

use crate::device::parse_device;

/// `mpt model` subcommands.
#[derive(Debug, Subcommand)]
pub enum ModelCmd {
    /// Print a model folder's architecture, sizes, parameter count and tokenizer.
    Info(InfoArgs),
    /// Run a forward pass on tensors from a safetensors file and write the outputs.
    ///
    /// Inputs: input_ids, attention_mask [B,S] int64; optional token_type_ids [B,S] int64
    /// (BERT), decoder_input_ids [B,T] int64 (T5), soft_prompt [l,d] f32 (prepended as
    /// PEFT does). Outputs: T5 — encoder_last_hidden_state [B,l+S,d], lm_logits [B,T,V]
    /// when decoder ids are given, generated_ids [B,<=N+1] int64 with --generate N;
    /// BERT — last_hidden_state [B,l+S,d], sentence_embedding [B,d].
    Forward(ForwardArgs),
}

/// Arguments of `mpt model info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Hugging Face model folder (config.json, model.safetensors, tokenizer.json).
    #[arg(long)]
    pub model: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `mpt model forward`.
#[derive(Debug, Args)]
pub struct ForwardArgs {
    /// Hugging Face model folder.
    #[arg(long)]
    pub model: PathBuf,
    /// Input tensors (safetensors).
    #[arg(long)]
    pub inputs: PathBuf,
    /// Where to write the output tensors (safetensors).
    #[arg(long)]
    pub out: PathBuf,
    /// Greedy-decode up to N new tokens (T5 only).
    #[arg(long, value_name = "N")]
    pub generate: Option<usize>,
    /// Backend: cpu, wgpu, tch-cpu, tch-cuda, cuda (as compiled in).
    #[arg(long, default_value = crate::device::DEFAULT_DEVICE)]
    pub device: String,
}

/// Runs a `mpt model` subcommand.
pub fn run(cmd: ModelCmd) -> Result<()> {
    match cmd {
        ModelCmd::Info(args) => {
            let device = parse_device("cpu")?;
            let model = Model::load(&args.model, &device)
                .with_context(|| format!("loading model folder {}", args.model.display()))?;
            let info = ModelInfo::of(&model);
            if args.json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                println!("model:        {}", info.dir.display());
                println!("architecture: {} ({})", info.arch, info.variant);
                println!("d_model:      {}", info.d_model);
                if info.decoder_layers > 0 {
                    println!("layers:       {} encoder + {} decoder", info.encoder_layers, info.decoder_layers);
                } else {
                    println!("layers:       {}", info.encoder_layers);
                }
                println!("heads:        {}", info.heads);
                println!("d_ff:         {}", info.d_ff);
                println!("vocab:        {}", info.vocab_size);
                println!("parameters:   {}", info.parameters);
                match (&info.tokenizer, info.tokenizer_vocab_size) {
                    (Some(path), Some(v)) => println!("tokenizer:    {} ({v} tokens)", path.display()),
                    _ => println!("tokenizer:    not found (no tokenizer.json)"),
                }
            }
            Ok(())
        }
        ModelCmd::Forward(args) => {
            let device = parse_device(&args.device)?;
            let model = Model::load(&args.model, &device)
                .with_context(|| format!("loading model folder {}", args.model.display()))?;
            let inputs = io::read_safetensors(&args.inputs)
                .with_context(|| format!("reading inputs {}", args.inputs.display()))?;
            let outputs = forward::forward(&model, &inputs, args.generate, &device)
                .with_context(|| format!("forward pass on inputs {}", args.inputs.display()))?;
            io::write_safetensors(&args.out, &outputs)
                .with_context(|| format!("writing outputs {}", args.out.display()))?;
            for (name, t) in &outputs {
                eprintln!("{name}: {} {:?}", t.dtype_name(), t.shape());
            }
            Ok(())
        }
    }
}
