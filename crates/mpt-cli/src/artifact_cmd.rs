//! `mpt export|import|inspect`: PEFT interop and artifact inspection.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use mpt_core::peft::{self, PeftExportOptions};
use mpt_core::{Artifact, ArtifactKind, BackboneRef};
use mpt_models::{ModelConfig, ModelFiles};
use serde_json::Value;

/// Export formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// A PEFT adapter folder (adapter_config.json + adapter_model.safetensors).
    Peft,
    /// A plain-prompt artifact holding one task's P* ∘ (u vᵀ).
    Prompt,
}

/// Import formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ImportFormat {
    /// A PEFT PROMPT_TUNING or MULTITASK_PROMPT_TUNING adapter folder.
    Peft,
}

/// Artifact kinds.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KindArg {
    /// A source task's prompt.
    Teacher,
    /// A multitask prompt.
    Multitask,
    /// A target-task prompt.
    Target,
}

impl From<KindArg> for ArtifactKind {
    fn from(k: KindArg) -> Self {
        match k {
            KindArg::Teacher => ArtifactKind::Teacher,
            KindArg::Multitask => ArtifactKind::Multitask,
            KindArg::Target => ArtifactKind::Target,
        }
    }
}

/// Arguments of `mpt export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Output format.
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// Artifact folder.
    pub artifact: PathBuf,
    /// Output folder.
    pub outdir: PathBuf,
    /// PEFT task_type (default SEQ_2_SEQ_LM for T5, FEATURE_EXTRACTION for BERT). peft only.
    #[arg(long)]
    pub task_type: Option<String>,
    /// PEFT base_model_name_or_path (default the backbone folder name). peft only.
    #[arg(long)]
    pub base_model: Option<String>,
    /// Task whose prompt to write (needed when the artifact has several). prompt only.
    #[arg(long)]
    pub task: Option<String>,
    /// Replace OUTDIR if it already holds an export.
    #[arg(long)]
    pub overwrite: bool,
}

/// Arguments of `mpt import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Input format.
    #[arg(long, value_enum)]
    pub format: ImportFormat,
    /// PEFT adapter folder.
    pub adapter_dir: PathBuf,
    /// Output artifact folder.
    pub outdir: PathBuf,
    /// Hugging Face model folder of the backbone the adapter was trained on (weights are
    /// fingerprinted, not loaded).
    #[arg(long)]
    pub model: PathBuf,
    /// Artifact kind (default multitask for MULTITASK_PROMPT_TUNING, target for PROMPT_TUNING).
    #[arg(long, value_enum)]
    pub kind: Option<KindArg>,
    /// Task names (repeatable or comma-separated; default task0, task1, ...; a teacher needs one).
    #[arg(long = "task", value_name = "TASK", value_delimiter = ',')]
    pub task_names: Vec<String>,
    /// Replace OUTDIR if it already holds an artifact.
    #[arg(long)]
    pub overwrite: bool,
}

/// Arguments of `mpt inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Artifact folder.
    pub artifact: PathBuf,
    /// Print artifact.json (verified) as JSON.
    #[arg(long)]
    pub json: bool,
}

fn load(dir: &std::path::Path) -> Result<Artifact> {
    Artifact::load(dir, None, None).with_context(|| format!("artifact {} failed verification", dir.display()))
}

/// `mpt export`.
pub fn export(args: ExportArgs) -> Result<()> {
    let artifact = load(&args.artifact)?;
    match args.format {
        ExportFormat::Peft => {
            if args.task.is_some() {
                bail!(
                    "--task applies to --format prompt; to export one task of a multitask artifact as a PEFT PROMPT_TUNING adapter, run `mpt export --format prompt --task NAME` first and export that artifact"
                );
            }
            let options =
                PeftExportOptions { task_type: args.task_type, base_model: args.base_model, overwrite: args.overwrite };
            let config = peft::adapter_config(&artifact, &options)?;
            peft::export_peft(&artifact, &args.outdir, options)
                .with_context(|| format!("exporting {} as a PEFT adapter", args.artifact.display()))?;
            println!(
                "wrote PEFT {} adapter ({}) to {}",
                config["peft_type"].as_str().unwrap_or("?"),
                config["task_type"].as_str().unwrap_or("?"),
                args.outdir.display()
            );
        }
        ExportFormat::Prompt => {
            if args.task_type.is_some() || args.base_model.is_some() {
                bail!("--task-type and --base-model apply to --format peft only");
            }
            peft::check_output_dir(&args.outdir, args.overwrite, mpt_core::artifact::META_FILE)?;
            let out = peft::export_prompt(&artifact, &args.outdir, args.task.as_deref())
                .with_context(|| format!("compressing {}", args.artifact.display()))?;
            println!(
                "wrote plain prompt of task {} ({} artifact {}) to {}",
                out.meta.tasks.join(", "),
                out.meta.kind,
                out.meta.id,
                args.outdir.display()
            );
        }
    }
    Ok(())
}

/// `mpt import`.
pub fn import(args: ImportArgs) -> Result<()> {
    let ImportFormat::Peft = args.format;
    let files = ModelFiles::locate(&args.model)?;
    let fingerprint = mpt_models::fingerprint(&files)?;
    let config = ModelConfig::read(&files.config)?;
    let dim = config.dim();
    let kind = match args.kind {
        Some(k) => k.into(),
        None => {
            let path = args.adapter_dir.join(peft::ADAPTER_CONFIG);
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let value: Value =
                serde_json::from_str(&text).with_context(|| format!("invalid JSON in {}", path.display()))?;
            if value.get("peft_type").and_then(Value::as_str) == Some("MULTITASK_PROMPT_TUNING") {
                ArtifactKind::Multitask
            } else {
                ArtifactKind::Target
            }
        }
    };
    peft::check_output_dir(&args.outdir, args.overwrite, mpt_core::artifact::META_FILE)?;
    let backbone = BackboneRef::new(config.arch(), &fingerprint);
    let artifact = peft::import_peft(&args.adapter_dir, &args.outdir, backbone, dim, kind, args.task_names)
        .with_context(|| format!("importing PEFT adapter {}", args.adapter_dir.display()))?;
    println!(
        "wrote {} artifact {} ({} layout, tasks {}) to {}",
        artifact.meta.kind,
        artifact.meta.id,
        layout_name(&artifact),
        artifact.meta.tasks.join(", "),
        args.outdir.display()
    );
    Ok(())
}

fn layout_name(a: &Artifact) -> &'static str {
    match a.meta.layout {
        mpt_core::Layout::Prompt => "prompt",
        mpt_core::Layout::Multitask => "multitask",
    }
}

/// Scalars of `value` as `a.b=v` pairs (depth ≤ 2), cut to about `max` characters.
fn one_line(value: &Value, max: usize) -> String {
    fn walk(prefix: &str, v: &Value, depth: usize, out: &mut Vec<String>) {
        match v {
            Value::Object(m) if depth < 2 => {
                for (k, v) in m {
                    let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    walk(&key, v, depth + 1, out);
                }
            }
            Value::Object(m) => out.push(format!("{prefix}={{{} keys}}", m.len())),
            Value::Array(a) if a.len() > 4 => out.push(format!("{prefix}=[{} items]", a.len())),
            other => out.push(format!("{prefix}={other}")),
        }
    }
    let mut parts = Vec::new();
    walk("", value, 0, &mut parts);
    let line = parts.join(" ");
    if line.chars().count() > max {
        format!("{}…", line.chars().take(max).collect::<String>())
    } else if line.is_empty() {
        "(empty)".into()
    } else {
        line
    }
}

fn scores(v: &Value) -> String {
    match v {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| match v.as_f64() {
                Some(x) => format!("{k} {x:.4}"),
                None => format!("{k} {v}"),
            })
            .collect::<Vec<_>>()
            .join(", "),
        Value::Number(n) => n.as_f64().map_or_else(|| n.to_string(), |x| format!("{x:.4}")),
        other => other.to_string(),
    }
}

/// `mpt inspect`.
pub fn inspect(args: InspectArgs) -> Result<()> {
    let a = load(&args.artifact)?;
    let m = &a.meta;
    if args.json {
        let mut value = serde_json::to_value(m)?;
        if let Some(obj) = value.as_object_mut() {
            obj.insert("dir".into(), Value::String(a.dir.display().to_string()));
            obj.insert("verified".into(), Value::Bool(true));
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    let b = &m.backbone;
    println!("artifact:     {}", a.dir.display());
    println!("kind:         {}", m.kind);
    println!("id:           {}", m.id);
    println!("tasks:        {}", m.tasks.join(", "));
    println!("layout:       {} (l = {}, d = {}, r = {})", layout_name(&a), m.prompt_length, m.dim, m.rank);
    println!("tunable:      {} parameters", m.tunable_params);
    println!(
        "backbone:     {} ({}, config sha256 {}, weights sha256 {})",
        b.name, b.arch, b.config_sha256, b.weights_sha256
    );
    println!("parents:      {}", if m.parents.is_empty() { "none".into() } else { m.parents.join(", ") });
    println!("created with: {}", m.created_with);
    println!("config:       {}", one_line(&m.config, 160));
    let mut any = false;
    for split in ["dev", "test"] {
        if let Some(tasks) = m.metrics.get(split).and_then(Value::as_object) {
            for (task, v) in tasks {
                println!("{split:<5}        {task}: {}", scores(v));
                any = true;
            }
        }
    }
    if !any {
        println!("metrics:      none recorded");
    }
    println!("checksum:     ok (tensors sha256 {})", m.tensors_sha256);
    Ok(())
}
