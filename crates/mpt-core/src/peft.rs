//! PEFT interop (written against peft 0.21.2): export an artifact as a PEFT prompt-tuning
//! adapter folder, compress a multitask artifact to one task's plain prompt, and import a PEFT
//! adapter as an artifact.
//!
//! An exported folder holds `adapter_config.json` (`PROMPT_TUNING` for the plain layout,
//! `MULTITASK_PROMPT_TUNING` for the multitask one, always `num_transformer_submodules` = 1:
//! mpt prepends the prompt to the encoder input only) and `adapter_model.safetensors` with
//! PEFT's keys `prompt_embeddings` `[l, d]` and, for the multitask layout, `prefix_task_cols`
//! `[T, l, r]` and `prefix_task_rows` `[T, r, d]`.
//!
//! PEFT 0.21.2 caveats: `PeftModelForFeatureExtraction.forward` does not pass `task_ids` on,
//! so a `MULTITASK_PROMPT_TUNING` adapter only runs under task types that do (e.g. `SEQ_CLS`,
//! `SEQ_2_SEQ_LM`); and with `SEQ_2_SEQ_LM` + `MULTITASK_PROMPT_TUNING` + one submodule PEFT
//! drops `decoder_input_ids` (pass `labels` instead).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use mpt_models::io::{HostTensor, read_safetensors, to_safetensors_bytes, write_atomic};
use mpt_models::{Arch, Family};
use serde_json::{Value, json};

use crate::artifact::{
    Artifact, ArtifactKind, BackboneRef, Layout, META_FILE, NewArtifact, install_dir, io_err, staging_dir,
};
use crate::error::{CoreError, Result};

/// PEFT's config file name.
pub const ADAPTER_CONFIG: &str = "adapter_config.json";
/// PEFT's weights file name.
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
/// The PEFT version whose adapter format is written.
pub const PEFT_VERSION: &str = "0.21.2";
/// PEFT's `TaskType` values.
pub const TASK_TYPES: &[&str] =
    &["SEQ_CLS", "SEQ_2_SEQ_LM", "CAUSAL_LM", "TOKEN_CLS", "QUESTION_ANS", "FEATURE_EXTRACTION"];

const PROMPT_TUNING: &str = "PROMPT_TUNING";
const MULTITASK_PROMPT_TUNING: &str = "MULTITASK_PROMPT_TUNING";
const PROMPT: &str = "prompt_embeddings";
const COLS: &str = "prefix_task_cols";
const ROWS: &str = "prefix_task_rows";

/// Options of [`export_peft`].
#[derive(Debug, Clone, Default)]
pub struct PeftExportOptions {
    /// PEFT `task_type`; default [`default_task_type`] of the backbone.
    pub task_type: Option<String>,
    /// `base_model_name_or_path`; default the backbone's folder name.
    pub base_model: Option<String>,
    /// Replace a non-empty `out_dir` that holds an adapter.
    pub overwrite: bool,
}

/// `SEQ_2_SEQ_LM` for encoder-decoders (T5), `FEATURE_EXTRACTION` for encoders (BERT), `CAUSAL_LM`
/// for decoder-only models (Llama, Qwen2).
pub fn default_task_type(arch: Arch) -> &'static str {
    match arch.family() {
        Family::Seq2Seq => "SEQ_2_SEQ_LM",
        Family::Encoder => "FEATURE_EXTRACTION",
        Family::CausalLm => "CAUSAL_LM",
    }
}

/// The `adapter_config.json` [`export_peft`] writes for `artifact`.
pub fn adapter_config(artifact: &Artifact, options: &PeftExportOptions) -> Result<Value> {
    let meta = &artifact.meta;
    let task_type = options.task_type.clone().unwrap_or_else(|| default_task_type(meta.backbone.arch).to_string());
    if !TASK_TYPES.contains(&task_type.as_str()) {
        return Err(CoreError::Peft {
            path: PathBuf::from(ADAPTER_CONFIG),
            field: "task_type".into(),
            message: format!("{task_type:?} is not a PEFT task type; expected one of {}", TASK_TYPES.join(", ")),
        });
    }
    let mut config = json!({
        "auto_mapping": null,
        "base_model_name_or_path": options.base_model.clone().unwrap_or_else(|| meta.backbone.name.clone()),
        "inference_mode": true,
        "modules_to_save": null,
        "num_attention_heads": null,
        "num_layers": null,
        "num_transformer_submodules": 1,
        "num_virtual_tokens": meta.prompt_length,
        "peft_type": PROMPT_TUNING,
        "peft_version": PEFT_VERSION,
        "prompt_tuning_init": "RANDOM",
        "prompt_tuning_init_text": null,
        "revision": null,
        "task_type": task_type,
        "token_dim": meta.dim,
        "tokenizer_kwargs": null,
        "tokenizer_name_or_path": null,
    });
    if meta.layout == Layout::Multitask {
        let extra = json!({
            "peft_type": MULTITASK_PROMPT_TUNING,
            "num_ranks": meta.rank,
            "num_tasks": meta.tasks.len(),
            "prompt_tuning_init_state_dict_path": null,
            "prompt_tuning_init_task": 0,
        });
        if let (Some(c), Some(e)) = (config.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
    }
    Ok(config)
}

/// Checks that `dir` may be (re)written: absent, an empty folder, or (with `overwrite`) a
/// folder holding `marker` (so `overwrite` never replaces an unrelated folder).
pub fn check_output_dir(dir: &Path, overwrite: bool, marker: &str) -> Result<()> {
    let Ok(meta) = dir.symlink_metadata() else {
        return Ok(());
    };
    let exists = |message: String| CoreError::OutputExists { path: dir.to_path_buf(), message };
    if !meta.is_dir() {
        return Err(exists("exists and is not a folder".into()));
    }
    let empty = std::fs::read_dir(dir).map_err(io_err(dir))?.next().is_none();
    if empty {
        return Ok(());
    }
    if !overwrite {
        return Err(exists("folder exists and is not empty; pass --overwrite to replace it".into()));
    }
    if !dir.join(marker).is_file() {
        return Err(exists(format!(
            "folder is not empty and holds no {marker}; refusing to replace it even with --overwrite"
        )));
    }
    Ok(())
}

/// Writes `artifact` as a PEFT adapter folder `out_dir` (atomically: a temporary sibling folder
/// renamed into place). A non-empty `out_dir` is replaced only with `options.overwrite`.
pub fn export_peft(artifact: &Artifact, out_dir: &Path, options: PeftExportOptions) -> Result<()> {
    check_output_dir(out_dir, options.overwrite, ADAPTER_CONFIG)?;
    if artifact.has_classifiers() {
        return Err(CoreError::Layout {
            path: artifact.dir.clone(),
            message: "has a trained head (linear over the mean-pooled input, or pair over each segment's); PEFT's \
                      SEQ_CLS classifier reads the pooler's [CLS] output of the joint input instead, so the adapter \
                      would not reproduce this artifact's scores (export artifacts trained with the verbalizer head)"
                .into(),
        });
    }
    let config = adapter_config(artifact, &options)?;
    let names: &[&str] = match artifact.meta.layout {
        Layout::Prompt => &[PROMPT],
        Layout::Multitask => &[PROMPT, COLS, ROWS],
    };
    let mut tensors = BTreeMap::new();
    for &name in names {
        let t = artifact.tensors.get(name).ok_or_else(|| CoreError::Tensor {
            path: artifact.dir.join(crate::artifact::TENSORS_FILE),
            tensor: name.into(),
            message: "missing".into(),
        })?;
        tensors.insert(name.to_string(), t.clone());
    }
    let metadata = HashMap::from([
        ("format".to_string(), "pt".to_string()),
        ("mpt_artifact_id".to_string(), artifact.meta.id.clone()),
        ("mpt_tasks".to_string(), artifact.meta.tasks.join(",")),
    ]);
    let bytes = to_safetensors_bytes(&tensors, Some(metadata))?;
    let mut text = serde_json::to_string_pretty(&config).expect("JSON values serialise");
    text.push('\n');
    let tmp = staging_dir(out_dir)?;
    let written = write_atomic(&tmp.join(ADAPTER_WEIGHTS), &bytes)
        .and_then(|()| write_atomic(&tmp.join(ADAPTER_CONFIG), text.as_bytes()));
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e.into());
    }
    install_dir(&tmp, out_dir)?;
    tracing::info!(dir = %out_dir.display(), id = %artifact.meta.id, "PEFT adapter written");
    Ok(())
}

fn f32_of<'a>(path: &Path, tensors: &'a BTreeMap<String, HostTensor>, name: &str) -> Result<(&'a [f32], &'a [usize])> {
    match tensors.get(name) {
        Some(HostTensor::F32 { data, shape }) => Ok((data, shape)),
        Some(other) => Err(CoreError::Tensor {
            path: path.to_path_buf(),
            tensor: name.into(),
            message: format!("dtype {}, expected F32", other.dtype_name()),
        }),
        None => Err(CoreError::Tensor { path: path.to_path_buf(), tensor: name.into(), message: "missing".into() }),
    }
}

/// Writes one task's prompt of a multitask-layout artifact, `P* ∘ (U_k V_k)` `[l, d]`, as a
/// new plain-layout artifact of the same kind at `out_dir` (replacing it if present). `task`
/// picks the task; it may be left out when the artifact has exactly one.
pub fn export_prompt(artifact: &Artifact, out_dir: &Path, task: Option<&str>) -> Result<Artifact> {
    let meta = &artifact.meta;
    if meta.layout == Layout::Prompt {
        return Err(CoreError::Layout {
            path: artifact.dir.clone(),
            message: format!("already a plain prompt (layout \"prompt\", {} artifact); nothing to compress", meta.kind),
        });
    }
    let k = match task {
        Some(name) => artifact.task_index(name)?,
        None if meta.tasks.len() == 1 => 0,
        None => {
            return Err(CoreError::Field {
                path: artifact.dir.join(META_FILE),
                field: "tasks".into(),
                message: format!("has {} tasks ({}); choose one with --task", meta.tasks.len(), meta.tasks.join(", ")),
            });
        }
    };
    let name = meta.tasks[k].clone();
    let path = artifact.dir.join(crate::artifact::TENSORS_FILE);
    let (shared, _) = f32_of(&path, &artifact.tensors, PROMPT)?;
    let (cols, _) = f32_of(&path, &artifact.tensors, COLS)?;
    let (rows, _) = f32_of(&path, &artifact.tensors, ROWS)?;
    let (l, d, r) = (meta.prompt_length, meta.dim, meta.rank);
    let cols = &cols[k * l * r..(k + 1) * l * r];
    let rows = &rows[k * r * d..(k + 1) * r * d];
    let mut prompt = Vec::with_capacity(l * d);
    for i in 0..l {
        for j in 0..d {
            let uv: f32 = (0..r).map(|q| cols[i * r + q] * rows[q * d + j]).sum();
            prompt.push(shared[i * d + j] * uv);
        }
    }
    let mut metrics = serde_json::Map::new();
    for split in ["dev", "test", "test_n"] {
        if let Some(v) = meta.metrics.get(split).and_then(|m| m.get(&name)) {
            metrics.insert(split.into(), json!({ name.clone(): v }));
        }
    }
    Artifact::write(
        out_dir,
        NewArtifact {
            kind: meta.kind,
            tasks: vec![name.clone()],
            backbone: meta.backbone.clone(),
            parents: vec![meta.id.clone()],
            config: json!({
                "compressed_from": meta.id,
                "task": name,
                "original_config": meta.config,
            }),
            metrics: Value::Object(metrics),
            tensors: {
                let mut tensors =
                    BTreeMap::from([(PROMPT.to_string(), HostTensor::F32 { data: prompt, shape: vec![l, d] })]);
                let (w, b) = crate::prompt::classifier_names(k);
                let (w0, b0) = crate::prompt::classifier_names(0);
                for (from, to) in [(w, w0), (b, b0)] {
                    if let Some(t) = artifact.tensors.get(&from) {
                        tensors.insert(to, t.clone());
                    }
                }
                tensors
            },
            frozen_prompt: false,
        },
    )
}

/// The fields of `adapter_config.json` mpt reads.
struct AdapterConfig {
    peft_type: String,
    l: usize,
    submodules: usize,
    tasks: usize,
    rank: usize,
}

fn read_adapter_config(path: &Path, dim: usize) -> Result<(Value, AdapterConfig)> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    let value: Value =
        serde_json::from_str(&text).map_err(|source| CoreError::JsonFile { path: path.to_path_buf(), source })?;
    let field_err =
        |field: &str, message: String| CoreError::Peft { path: path.to_path_buf(), field: field.into(), message };
    let obj = value.as_object().ok_or_else(|| field_err("(top level)", "expected a JSON object".into()))?;
    let peft_type = obj
        .get("peft_type")
        .and_then(Value::as_str)
        .ok_or_else(|| field_err("peft_type", "missing or not a string".into()))?
        .to_string();
    if peft_type != PROMPT_TUNING && peft_type != MULTITASK_PROMPT_TUNING {
        return Err(CoreError::UnsupportedPeftType {
            path: path.to_path_buf(),
            found: peft_type,
            supported: format!("{PROMPT_TUNING} and {MULTITASK_PROMPT_TUNING}"),
        });
    }
    // An optional positive integer: Ok(None) when absent or null.
    let count = |field: &str| -> Result<Option<usize>> {
        match obj.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if n > 0 => Ok(Some(n as usize)),
                _ => Err(field_err(field, format!("is {v}, expected a positive integer"))),
            },
        }
    };
    let required =
        |field: &str| count(field)?.ok_or_else(|| field_err(field, "missing; expected a positive integer".into()));
    let l = required("num_virtual_tokens")?;
    let token_dim = required("token_dim")?;
    if token_dim != dim {
        return Err(field_err("token_dim", format!("is {token_dim}, but the backbone's width d is {dim}")));
    }
    let seq2seq = obj.get("task_type").and_then(Value::as_str) == Some("SEQ_2_SEQ_LM");
    let submodules = count("num_transformer_submodules")?.unwrap_or(if seq2seq { 2 } else { 1 });
    if submodules > 2 {
        return Err(field_err("num_transformer_submodules", format!("is {submodules}, expected 1 or 2")));
    }
    let multitask = peft_type == MULTITASK_PROMPT_TUNING;
    // PEFT's MultitaskPromptTuningConfig defaults both to 1.
    let tasks = if multitask { count("num_tasks")?.unwrap_or(1) } else { 0 };
    let rank = if multitask { count("num_ranks")?.unwrap_or(1) } else { 0 };
    Ok((value, AdapterConfig { peft_type, l, submodules, tasks, rank }))
}

/// Reads a PEFT `PROMPT_TUNING` or `MULTITASK_PROMPT_TUNING` adapter folder and writes it as an
/// mpt artifact at `out`. `dim` is the backbone's width d; `tasks` names the tasks (default
/// `task0`, `task1`, …). When PEFT stored 2·l rows (`num_transformer_submodules` = 2, PEFT's
/// default for `SEQ_2_SEQ_LM`), the first l are kept and the artifact config says so.
pub fn import_peft(
    adapter_dir: &Path,
    out: &Path,
    backbone: BackboneRef,
    dim: usize,
    kind: ArtifactKind,
    tasks: Vec<String>,
) -> Result<Artifact> {
    let config_path = adapter_dir.join(ADAPTER_CONFIG);
    let (config_json, cfg) = read_adapter_config(&config_path, dim)?;
    let multitask = cfg.peft_type == MULTITASK_PROMPT_TUNING;
    let import_err = |message: String| CoreError::Import { path: adapter_dir.to_path_buf(), message };
    let tasks = if tasks.is_empty() {
        if kind == ArtifactKind::Teacher {
            return Err(import_err("a teacher artifact needs its task name (--tasks NAME)".into()));
        }
        (0..cfg.tasks.max(1)).map(|k| format!("task{k}")).collect()
    } else {
        tasks
    };
    if kind == ArtifactKind::Teacher && (multitask || tasks.len() != 1) {
        return Err(import_err(format!(
            "a teacher holds one plain prompt for one task; this is {} with {} task name(s)",
            cfg.peft_type,
            tasks.len()
        )));
    }
    if multitask && tasks.len() != cfg.tasks {
        return Err(CoreError::Peft {
            path: config_path,
            field: "num_tasks".into(),
            message: format!("is {}, but {} task names were given ({})", cfg.tasks, tasks.len(), tasks.join(", ")),
        });
    }

    let base = config_json.get("base_model_name_or_path").and_then(Value::as_str).unwrap_or("");
    let base_name = base.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    if !base_name.is_empty() && base_name != backbone.name {
        tracing::warn!(
            base_model_name_or_path = base,
            backbone = %backbone.name,
            "the adapter names another base model than the backbone it is imported for"
        );
    }
    let weights_path = adapter_dir.join(ADAPTER_WEIGHTS);
    let stored = read_safetensors(&weights_path)?;
    let (l, s, d) = (cfg.l, cfg.submodules, dim);
    let rows_stored = l * s;
    let shape_err = |tensor: &str, expected: Vec<usize>, found: &[usize]| CoreError::PeftShape {
        path: weights_path.clone(),
        tensor: tensor.into(),
        expected,
        found: found.to_vec(),
    };
    let (prompt, shape) = f32_of(&weights_path, &stored, PROMPT)?;
    if shape != [rows_stored, d] {
        return Err(shape_err(PROMPT, vec![rows_stored, d], shape));
    }
    let mut tensors =
        BTreeMap::from([(PROMPT.to_string(), HostTensor::F32 { data: prompt[..l * d].to_vec(), shape: vec![l, d] })]);
    if multitask {
        let (t, r) = (cfg.tasks, cfg.rank);
        let (cols, cols_shape) = f32_of(&weights_path, &stored, COLS)?;
        if cols_shape != [t, rows_stored, r] {
            return Err(shape_err(COLS, vec![t, rows_stored, r], cols_shape));
        }
        let (rows, rows_shape) = f32_of(&weights_path, &stored, ROWS)?;
        if rows_shape != [t, r, d] {
            return Err(shape_err(ROWS, vec![t, r, d], rows_shape));
        }
        let cols: Vec<f32> =
            (0..t).flat_map(|k| cols[k * rows_stored * r..(k * rows_stored + l) * r].iter().copied()).collect();
        tensors.insert(COLS.into(), HostTensor::F32 { data: cols, shape: vec![t, l, r] });
        tensors.insert(ROWS.into(), HostTensor::F32 { data: rows.to_vec(), shape: vec![t, r, d] });
    }
    let used: &[&str] = if multitask { &[PROMPT, COLS, ROWS] } else { &[PROMPT] };
    let ignored: Vec<&String> = stored.keys().filter(|k| !used.contains(&k.as_str())).collect();
    if !ignored.is_empty() {
        tracing::warn!(?ignored, "PEFT adapter tensors mpt does not use were ignored");
    }

    let mut config = json!({
        "imported_from": adapter_dir.to_string_lossy(),
        "adapter_config": config_json,
    });
    if let Some(c) = config.as_object_mut() {
        if s == 2 {
            let mut note = format!(
                "PEFT stored {rows_stored} prompt rows (num_transformer_submodules = 2); mpt kept the first {l}, the ones PEFT prepends to the encoder input"
            );
            if multitask {
                note.push_str(
                    "; PEFT's MULTITASK_PROMPT_TUNING SEQ_2_SEQ_LM forward also prepends the other rows to the decoder input, which mpt does not do",
                );
                tracing::warn!("{note}");
            }
            c.insert("kept_rows".into(), json!({ "stored": rows_stored, "kept": l, "note": note }));
        }
        if !ignored.is_empty() {
            c.insert("ignored_tensors".into(), json!(ignored));
        }
    }
    Artifact::write(
        out,
        NewArtifact {
            kind,
            tasks,
            backbone,
            parents: Vec::new(),
            config,
            metrics: json!({}),
            tensors,
            frozen_prompt: false,
        },
    )
}
