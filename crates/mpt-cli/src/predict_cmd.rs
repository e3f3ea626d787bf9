//! `mpt predict`: JSONL in, JSONL out, through [`mpt_eval::Predictor`].

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use mpt_models::Model;
use mpt_train::HeadConfig;
use serde_json::Value;

use crate::device::parse_device;

/// Arguments of `mpt predict`.
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// Hugging Face model folder of the frozen backbone the artifact was trained on.
    #[arg(long)]
    pub model: PathBuf,
    /// The artifact (teacher, multitask or target).
    #[arg(long)]
    pub artifact: PathBuf,
    /// The task to predict (needed when the artifact holds several).
    #[arg(long)]
    pub task: Option<String>,
    /// Input JSONL (`-`: stdin): one JSON object per line with the task's template fields
    /// (e.g. `{"sentence": "..."}` for sst2; `mpt predict --fields` lists them).
    #[arg(long, default_value = "-")]
    pub input: PathBuf,
    /// Output JSONL (`-`: stdout): each input object plus `prediction` (the label) and
    /// `scores` (label -> probability).
    #[arg(long, default_value = "-")]
    pub output: PathBuf,
    /// Print the fields an input line needs, and exit.
    #[arg(long)]
    pub fields: bool,
    /// Rows per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Generation tasks: the most tokens a generated text has (EOS included).
    #[arg(long, default_value_t = 64)]
    pub max_target: usize,
    /// Backend: cpu, wgpu, tch-cpu, tch-cuda, cuda (as compiled in).
    #[arg(long, default_value = crate::device::DEFAULT_DEVICE)]
    pub device: String,
    /// Hide the progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// One input line: its number, the object, its fields as strings.
type Row = (usize, serde_json::Map<String, Value>, Vec<(String, String)>);

fn read_rows(path: &PathBuf) -> Result<Vec<Row>> {
    let name = if path.as_os_str() == "-" { "stdin".to_string() } else { path.display().to_string() };
    let reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        Box::new(BufReader::new(std::fs::File::open(path).with_context(|| format!("opening {name}"))?))
    };
    let mut rows = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("{name}: reading line {}", i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let value: Value =
            serde_json::from_str(&line).with_context(|| format!("{name}: line {}: not valid JSON", i + 1))?;
        let Value::Object(object) = value else {
            bail!("{name}: line {}: expected a JSON object of field values, found {}", i + 1, kind(&value));
        };
        let mut fields = Vec::with_capacity(object.len());
        for (key, v) in &object {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other => bail!("{name}: line {}: field {key:?} is {}; expected a string or number", i + 1, kind(other)),
            };
            fields.push((key.clone(), text));
        }
        rows.push((i + 1, object, fields));
    }
    Ok(rows)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Runs `mpt predict`.
pub fn predict(args: PredictArgs) -> Result<()> {
    let device = parse_device(&args.device)?;
    let model =
        Model::load(&args.model, &device).with_context(|| format!("loading model folder {}", args.model.display()))?;
    let predictor = mpt_eval::Predictor::new(
        &model,
        &args.artifact,
        args.task.as_deref(),
        HeadConfig::default(),
        args.batch_size,
        &device,
    )
    .with_context(|| format!("loading artifact {}", args.artifact.display()))?
    .with_lengths(mpt_train::Lengths { max_target: args.max_target, ..mpt_train::Lengths::default() });
    if args.max_target < 2 {
        anyhow::bail!("--max-target: must be at least 2 (a token and the end of text)");
    }
    if args.fields {
        println!("{}: {}", predictor.task().name, predictor.fields().join(", "));
        return Ok(());
    }
    let rows = read_rows(&args.input)?;
    let needed = predictor.fields();
    for (line, object, _) in &rows {
        if let Some(missing) = needed.iter().find(|f| !object.contains_key(**f)) {
            bail!(
                "{}: line {line}: no field {missing:?}; task {} reads {}",
                if args.input.as_os_str() == "-" { "stdin".into() } else { args.input.display().to_string() },
                predictor.task().name,
                needed.join(", ")
            );
        }
    }
    let fields: Vec<Vec<(String, String)>> = rows.iter().map(|(_, _, f)| f.clone()).collect();
    // In chunks of a few batches, with a bar on a terminal (indicatif hides it otherwise).
    let bar = indicatif::ProgressBar::new(fields.len() as u64);
    if args.quiet {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template("predict [{bar:30}] {pos}/{len} rows ETA {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let mut predictions = Vec::with_capacity(fields.len());
    for chunk in fields.chunks(args.batch_size.max(1) * 8) {
        predictions.extend(predictor.predict(chunk)?);
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let out: Box<dyn Write> = if args.output.as_os_str() == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(std::fs::File::create(&args.output).with_context(|| format!("creating {}", args.output.display()))?)
    };
    let mut out = BufWriter::new(out);
    for ((_, mut object, _), p) in rows.into_iter().zip(predictions) {
        object.insert("prediction".into(), Value::String(p.prediction));
        if predictor.task().kind != mpt_data::TaskKind::Generation {
            object.insert("scores".into(), serde_json::to_value(&p.scores).expect("scores serialise"));
        }
        writeln!(out, "{}", Value::Object(object)).context("writing predictions")?;
    }
    out.flush().context("writing predictions")?;
    Ok(())
}
