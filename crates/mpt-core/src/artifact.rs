//! Versioned prompt artifacts: the only thing stages exchange.
//!
//! One directory per artifact:
//!
//! - `artifact.json`: `format` = "mpt-artifact", `version` (integer, [`VERSION`]), `kind`
//!   (teacher | multitask | target), `id`, `tasks` (ordered), `layout` (prompt | multitask),
//!   `prompt_length`, `dim`, `rank` (0 for a plain prompt), `tunable_params`, `backbone`
//!   (name, arch, config and weights sha256), `parents` (ids), `config` (the training config),
//!   `metrics`, `created_with`, `tensors_sha256`.
//! - `tensors.safetensors`: `prompt_embeddings` `[l, d]`; the multitask layout adds
//!   `prefix_task_cols` `[T, l, r]` and `prefix_task_rows` `[T, r, d]` with T = `tasks.len()`.
//!   A trained linear head adds `classifier.{k}.weight` `[C_k, d]` and `classifier.{k}.bias`
//!   `[C_k]` for every task k < T.
//!
//! `id` = sha256 over the tensors file's bytes followed by the canonical (key-sorted,
//! compact) JSON of `config`. Artifacts are written to a temporary sibling folder and renamed
//! into place, so a crash never leaves a half-written artifact; once written they are not
//! modified.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use mpt_models::io::{HostTensor, to_safetensors_bytes};
use mpt_models::{Arch, Fingerprint};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{CoreError, Result};
use crate::prompt::{Classifier, MultitaskPrompt, PromptParams, SoftPrompt, classifier_names};

/// The `format` string of every artifact.
pub const FORMAT: &str = "mpt-artifact";
/// The artifact format version this build writes and reads.
pub const VERSION: u64 = 1;
/// Metadata file name.
pub const META_FILE: &str = "artifact.json";
/// A pair head's weight rows are this many times the backbone's width (u, v, |u − v|, u ∘ v).
pub const PAIR_WIDTH: usize = 4;
/// Tensor file name.
pub const TENSORS_FILE: &str = "tensors.safetensors";

/// What an artifact is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArtifactKind {
    /// A source task's vanilla prompt.
    Teacher,
    /// The distilled multitask prompt.
    Multitask,
    /// A prompt adapted to one or more target tasks.
    Target,
}

impl std::fmt::Display for ArtifactKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ArtifactKind::Teacher => "teacher",
            ArtifactKind::Multitask => "multitask",
            ArtifactKind::Target => "target",
        })
    }
}

/// How the prompt tensors are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// `prompt_embeddings` `[l, d]` only.
    Prompt,
    /// `P*`, `U`, `V`.
    Multitask,
}

/// The backbone an artifact was trained on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackboneRef {
    /// Folder name.
    pub name: String,
    /// Architecture.
    pub arch: Arch,
    /// sha256 of config.json.
    pub config_sha256: String,
    /// sha256 of model.safetensors.
    pub weights_sha256: String,
}

impl BackboneRef {
    /// From a model fingerprint.
    pub fn new(arch: Arch, fp: &Fingerprint) -> Self {
        Self {
            name: fp.name.clone(),
            arch,
            config_sha256: fp.config_sha256.clone(),
            weights_sha256: fp.weights_sha256.clone(),
        }
    }

    /// Same weights and config (the folder name may differ).
    pub fn same_model(&self, other: &BackboneRef) -> bool {
        self.config_sha256 == other.config_sha256 && self.weights_sha256 == other.weights_sha256
    }

    fn describe(&self) -> String {
        format!(
            "{} ({}, weights sha256 {}…)",
            self.name,
            self.arch,
            // By characters: the field comes from a file and need not be ASCII hex.
            self.weights_sha256.chars().take(12).collect::<String>()
        )
    }
}

/// The backbone a caller runs on, as [`Artifact::load`] checks an artifact against it.
#[derive(Debug, Clone, Copy)]
pub struct InUse<'a> {
    /// Identity: the artifact must come from the same config and weights.
    pub backbone: &'a BackboneRef,
    /// Hidden size `d`: the artifact's prompt width must equal it.
    pub dim: usize,
}

/// `artifact.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactMeta {
    /// Always [`FORMAT`].
    pub format: String,
    /// Format version.
    pub version: u64,
    /// Kind.
    pub kind: ArtifactKind,
    /// Content id (see module docs).
    pub id: String,
    /// Task names, in the order of the task factors.
    pub tasks: Vec<String>,
    /// Tensor layout.
    pub layout: Layout,
    /// l.
    pub prompt_length: usize,
    /// d.
    pub dim: usize,
    /// r (0 for a plain prompt).
    pub rank: usize,
    /// Trainable scalars of the stored prompt.
    pub tunable_params: usize,
    /// Backbone identity.
    pub backbone: BackboneRef,
    /// Ids of the artifacts this one was made from.
    pub parents: Vec<String>,
    /// The training config used.
    pub config: serde_json::Value,
    /// Dev/test results recorded by the stage that wrote it.
    pub metrics: serde_json::Value,
    /// `mpt <version>`.
    pub created_with: String,
    /// sha256 of `tensors.safetensors`.
    pub tensors_sha256: String,
}

/// What a stage hands to [`Artifact::write`].
#[derive(Debug, Clone)]
pub struct NewArtifact {
    /// Kind.
    pub kind: ArtifactKind,
    /// Task names.
    pub tasks: Vec<String>,
    /// Backbone identity.
    pub backbone: BackboneRef,
    /// Parent ids.
    pub parents: Vec<String>,
    /// Training config.
    pub config: serde_json::Value,
    /// Results.
    pub metrics: serde_json::Value,
    /// Tensors under PEFT names.
    pub tensors: BTreeMap<String, HostTensor>,
    /// The prompt was held fixed and only the head trained (a head-only probe): the prompt's
    /// numbers are then not counted in `tunable_params`.
    pub frozen_prompt: bool,
}

/// A loaded artifact.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// Where it lives.
    pub dir: PathBuf,
    /// Metadata.
    pub meta: ArtifactMeta,
    /// Tensors.
    pub tensors: BTreeMap<String, HostTensor>,
}

fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    hex::encode(h.finalize())
}

/// Canonical JSON: keys sorted (serde_json's map is a BTreeMap), no whitespace.
pub fn canonical_json(value: &serde_json::Value) -> String {
    serde_json::to_string(value).expect("JSON values serialise")
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CoreError + '_ {
    move |source| CoreError::Io { path: path.to_path_buf(), source }
}

fn dims_of(tensors: &BTreeMap<String, HostTensor>, name: &str) -> Option<Vec<usize>> {
    tensors.get(name).map(|t| t.shape().to_vec())
}

/// Infers layout, l, d, r from the tensors, checking they are consistent and f32.
fn describe_tensors(
    path: &Path,
    tensors: &BTreeMap<String, HostTensor>,
    tasks: usize,
) -> Result<(Layout, usize, usize, usize)> {
    for (name, t) in tensors {
        let HostTensor::F32 { data, shape } = t else {
            return Err(CoreError::Tensor {
                path: path.to_path_buf(),
                tensor: name.clone(),
                message: format!("dtype {}, expected F32", t.dtype_name()),
            });
        };
        // A diverged run must not become an artifact, and a file holding NaN or inf must not
        // reach a forward pass.
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(CoreError::Tensor {
                path: path.to_path_buf(),
                tensor: name.clone(),
                message: format!(
                    "value {} at flat index {i} of shape {shape:?}; expected finite numbers (a NaN or inf usually means training diverged: lower the learning rate)",
                    data[i]
                ),
            });
        }
    }
    let prompt = dims_of(tensors, "prompt_embeddings").ok_or_else(|| CoreError::Tensor {
        path: path.to_path_buf(),
        tensor: "prompt_embeddings".into(),
        message: "missing; every artifact stores prompt_embeddings [l, d]".into(),
    })?;
    let &[l, d] = prompt.as_slice() else {
        return Err(CoreError::Tensor {
            path: path.to_path_buf(),
            tensor: "prompt_embeddings".into(),
            message: format!("shape {prompt:?}, expected rank 2 [l, d]"),
        });
    };
    check_classifiers(path, tensors, tasks, d)?;
    match (dims_of(tensors, "prefix_task_cols"), dims_of(tensors, "prefix_task_rows")) {
        (None, None) => Ok((Layout::Prompt, l, d, 0)),
        (Some(cols), Some(rows)) => {
            let r = cols.get(2).copied().unwrap_or(0);
            for (name, found, expected, basis) in [
                (
                    "prefix_task_cols",
                    cols,
                    vec![tasks, l, r],
                    "[tasks, l, r]: tasks from artifact.json, l from prompt_embeddings [l, d], r from this tensor's last axis",
                ),
                (
                    "prefix_task_rows",
                    rows,
                    vec![tasks, r, d],
                    "[tasks, r, d]: tasks from artifact.json, r from prefix_task_cols, d from prompt_embeddings [l, d]",
                ),
            ] {
                if found != expected {
                    return Err(CoreError::TensorShape {
                        path: path.to_path_buf(),
                        tensor: name.into(),
                        expected,
                        found,
                        basis: basis.into(),
                    });
                }
            }
            Ok((Layout::Multitask, l, d, r))
        }
        (cols, _) => Err(CoreError::Tensor {
            path: path.to_path_buf(),
            tensor: if cols.is_some() { "prefix_task_rows" } else { "prefix_task_cols" }.into(),
            message: "missing; the multitask layout needs both prefix_task_cols and prefix_task_rows".into(),
        }),
    }
}

/// Number of tasks with a stored head: 0 (frozen head) or all `tasks`, each
/// `classifier.{k}.weight` `[C, d]` (linear head) or `[C, 4d]` (pair head: the features
/// `[u, v, |u − v|, √d·(u ∘ v)]` of a bi-encoder), one width for all tasks, beside `classifier.{k}.bias` `[C]` with C ≥ 2. Any other
/// tensor name is refused.
fn check_classifiers(path: &Path, tensors: &BTreeMap<String, HostTensor>, tasks: usize, d: usize) -> Result<usize> {
    let bad =
        |tensor: &str, message: String| CoreError::Tensor { path: path.to_path_buf(), tensor: tensor.into(), message };
    let known = ["prompt_embeddings", "prefix_task_cols", "prefix_task_rows"];
    let heads = tensors.keys().filter(|n| n.starts_with("classifier.")).count();
    for name in tensors.keys() {
        if known.contains(&name.as_str()) || name.starts_with("classifier.") {
            continue;
        }
        return Err(bad(
            name,
            "unknown tensor; expected prompt_embeddings, prefix_task_cols/rows or classifier.K.weight/bias".into(),
        ));
    }
    if heads == 0 {
        return Ok(0);
    }
    let mut first_width = None;
    for k in 0..tasks {
        let (w, b) = classifier_names(k);
        let weight = dims_of(tensors, &w).ok_or_else(|| {
            bad(&w, format!("missing; a trained head is stored for every one of the {tasks} task(s)"))
        })?;
        let expected = || format!("expected [C, {d}] (linear head) or [C, {}] (pair head) with C ≥ 2", PAIR_WIDTH * d);
        let &[c, wd] = weight.as_slice() else {
            return Err(bad(&w, format!("shape {weight:?}, {}", expected())));
        };
        if (wd != d && wd != PAIR_WIDTH * d) || c < 2 {
            return Err(bad(&w, format!("shape {weight:?}, {}", expected())));
        }
        match first_width {
            None => first_width = Some(wd),
            Some(width) if width != wd => {
                return Err(bad(
                    &w,
                    format!(
                        "shape {weight:?}: width {wd}, but classifier.0.weight's is {width}; every task's head is of one kind"
                    ),
                ));
            }
            Some(_) => {}
        }
        let bias = dims_of(tensors, &b).ok_or_else(|| bad(&b, format!("missing beside {w}")))?;
        if bias != [c] {
            return Err(CoreError::TensorShape {
                path: path.to_path_buf(),
                basis: format!("[C]: C from {w}"),
                tensor: b,
                expected: vec![c],
                found: bias,
            });
        }
    }
    if heads != 2 * tasks {
        let extra = tensors
            .keys()
            .find(|n| {
                n.starts_with("classifier.")
                    && (0..tasks).all(|k| classifier_names(k).0 != **n && classifier_names(k).1 != **n)
            })
            .cloned()
            .unwrap_or_default();
        return Err(bad(&extra, format!("not a head of one of the artifact's {tasks} task(s)")));
    }
    Ok(tasks)
}

/// Scalars in the stored heads.
fn head_scalars(tensors: &BTreeMap<String, HostTensor>) -> usize {
    tensors.iter().filter(|(n, _)| n.starts_with("classifier.")).map(|(_, t)| t.shape().iter().product::<usize>()).sum()
}

/// `.NAME.KIND-PID` next to `dir`.
fn sibling(dir: &Path, kind: &str) -> PathBuf {
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    parent.join(format!(".{name}.{kind}-{}", std::process::id()))
}

/// Creates a fresh, empty temporary sibling folder of `dir` (creating `dir`'s parent if needed).
pub(crate) fn staging_dir(dir: &Path) -> Result<PathBuf> {
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    let tmp = sibling(dir, "tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
    }
    std::fs::create_dir(&tmp).map_err(io_err(&tmp))?;
    Ok(tmp)
}

/// Moves the complete folder `tmp` to `dir`. An existing `dir` is set aside first and removed
/// only once `tmp` is in place. On failure `tmp` is removed and an existing `dir` is left (or
/// put back) as it was.
pub(crate) fn install_dir(tmp: &Path, dir: &Path) -> Result<()> {
    let result = if dir.symlink_metadata().is_ok() {
        let old = sibling(dir, "old");
        std::fs::rename(dir, &old).map_err(io_err(dir)).and_then(|()| {
            std::fs::rename(tmp, dir).map_err(|e| {
                let _ = std::fs::rename(&old, dir);
                io_err(dir)(e)
            })?;
            if let Err(e) = std::fs::remove_dir_all(&old) {
                tracing::warn!(path = %old.display(), error = %e, "could not remove the replaced folder");
            }
            Ok(())
        })
    } else {
        std::fs::rename(tmp, dir).map_err(io_err(dir))
    };
    if result.is_err() {
        let _ = std::fs::remove_dir_all(tmp);
    }
    result
}

impl Artifact {
    /// Writes `new` as `dir` atomically and returns the stored artifact. An existing `dir` is
    /// replaced only after the new one is complete.
    pub fn write(dir: &Path, new: NewArtifact) -> Result<Artifact> {
        let (layout, l, d, r) = describe_tensors(dir, &new.tensors, new.tasks.len())?;
        let bytes = to_safetensors_bytes(&new.tensors, None)?;
        let tensors_sha256 = sha256_hex(&[&bytes]);
        let id = sha256_hex(&[&bytes, canonical_json(&new.config).as_bytes()]);
        let prompt_params = match layout {
            Layout::Prompt => l * d,
            Layout::Multitask => l * d + new.tasks.len() * r * (l + d),
        };
        let tunable_params = head_scalars(&new.tensors) + if new.frozen_prompt { 0 } else { prompt_params };
        let meta = ArtifactMeta {
            format: FORMAT.into(),
            version: VERSION,
            kind: new.kind,
            id,
            tasks: new.tasks,
            layout,
            prompt_length: l,
            dim: d,
            rank: r,
            tunable_params,
            backbone: new.backbone,
            parents: new.parents,
            config: new.config,
            metrics: new.metrics,
            created_with: format!("mpt {}", env!("CARGO_PKG_VERSION")),
            tensors_sha256,
        };
        let json = serde_json::to_vec_pretty(&meta).expect("meta serialises");
        let tmp = staging_dir(dir)?;
        let written = mpt_models::io::write_atomic(&tmp.join(TENSORS_FILE), &bytes)
            .and_then(|()| mpt_models::io::write_atomic(&tmp.join(META_FILE), &json));
        if let Err(e) = written {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e.into());
        }
        install_dir(&tmp, dir)?;
        Ok(Artifact { dir: dir.to_path_buf(), meta, tensors: new.tensors })
    }

    /// Reads only `artifact.json`, checking format and version.
    pub fn read_meta(dir: &Path) -> Result<ArtifactMeta> {
        let path = dir.join(META_FILE);
        let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|source| CoreError::Json { path: path.clone(), source })?;
        let format = value.get("format").and_then(|v| v.as_str()).unwrap_or("");
        if format != FORMAT {
            return Err(CoreError::NotAnArtifact { path, found: format.to_string() });
        }
        match value.get("version").and_then(|v| v.as_u64()) {
            Some(VERSION) => {}
            Some(found) => {
                return Err(CoreError::UnsupportedVersion { path, found, supported: VERSION.to_string() });
            }
            None => {
                return Err(CoreError::Field {
                    path,
                    field: "version".into(),
                    message: "missing or not a non-negative integer".into(),
                });
            }
        }
        serde_json::from_value(value).map_err(|source| CoreError::Json { path, source })
    }

    /// Loads and verifies an artifact: format, version, `expected` kind (if any), checksum,
    /// tensor shapes against the metadata, and (if given) the backbone in use: same model, and
    /// a prompt width equal to its hidden size.
    pub fn load(dir: &Path, expected: Option<ArtifactKind>, in_use: Option<InUse<'_>>) -> Result<Artifact> {
        let meta = Self::read_meta(dir)?;
        if let Some(kind) = expected
            && kind != meta.kind
        {
            return Err(CoreError::WrongKind {
                path: dir.to_path_buf(),
                expected: kind.to_string(),
                found: meta.kind.to_string(),
            });
        }
        if let Some(in_use) = in_use {
            if !meta.backbone.same_model(in_use.backbone) {
                return Err(CoreError::BackboneMismatch {
                    path: dir.to_path_buf(),
                    expected: meta.backbone.describe(),
                    found: in_use.backbone.describe(),
                });
            }
            if meta.dim != in_use.dim {
                return Err(CoreError::Field {
                    path: dir.join(META_FILE),
                    field: "dim".into(),
                    message: format!("is {}, but the backbone in use has hidden size {}", meta.dim, in_use.dim),
                });
            }
        }
        let path = dir.join(TENSORS_FILE);
        let bytes = std::fs::read(&path).map_err(io_err(&path))?;
        let found = sha256_hex(&[&bytes]);
        if found != meta.tensors_sha256 {
            return Err(CoreError::Checksum { path, expected: meta.tensors_sha256.clone(), found });
        }
        let tensors = mpt_models::io::read_safetensors(&path)?;
        let (layout, l, d, r) = describe_tensors(&path, &tensors, meta.tasks.len())?;
        let meta_path = dir.join(META_FILE);
        for (field, want, got) in
            [("prompt_length", meta.prompt_length, l), ("dim", meta.dim, d), ("rank", meta.rank, r)]
        {
            if want != got {
                return Err(CoreError::Field {
                    path: meta_path,
                    field: field.into(),
                    message: format!("says {want}, but {TENSORS_FILE} holds {got}"),
                });
            }
        }
        if layout != meta.layout {
            return Err(CoreError::Field {
                path: meta_path,
                field: "layout".into(),
                message: format!("says {:?}, but the tensors have the {:?} layout", meta.layout, layout),
            });
        }
        Ok(Artifact { dir: dir.to_path_buf(), meta, tensors })
    }

    /// Copies the artifact at `from` to `to` byte for byte (its id unchanged), atomically like
    /// [`Artifact::write`]: `from` is loaded and checked first, the copy is staged in a
    /// temporary sibling of `to`, loaded and checked again, then renamed into place; an existing
    /// `to` is replaced only then. Returns the installed copy.
    pub fn copy(from: &Path, to: &Path) -> Result<Artifact> {
        Self::load(from, None, None)?;
        let tmp = staging_dir(to)?;
        let staged = (|| {
            for name in [META_FILE, TENSORS_FILE] {
                let (src, dst) = (from.join(name), tmp.join(name));
                std::fs::copy(&src, &dst).map_err(io_err(&src))?;
                std::fs::File::open(&dst).and_then(|f| f.sync_all()).map_err(io_err(&dst))?;
            }
            Self::load(&tmp, None, None)
        })();
        if let Err(e) = staged {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        install_dir(&tmp, to)?;
        Self::load(to, None, None)
    }

    /// A host tensor as a device tensor of rank `D`.
    pub fn tensor<const D: usize>(&self, name: &str, device: &Device) -> Result<Tensor<D>> {
        match self.tensors.get(name) {
            Some(HostTensor::F32 { data, shape }) if shape.len() == D => {
                Ok(Tensor::from_data(TensorData::new(data.clone(), shape.clone()), device))
            }
            other => Err(CoreError::Tensor {
                path: self.dir.join(TENSORS_FILE),
                tensor: name.into(),
                message: format!("expected an f32 tensor of rank {D}, found {:?}", other.map(HostTensor::shape)),
            }),
        }
    }

    /// The stored prompt (and heads) as parameters on `device`.
    pub fn prompt_params(&self, device: &Device) -> Result<PromptParams> {
        let shared = self.tensor::<2>("prompt_embeddings", device)?;
        let classifiers = self.classifiers(device)?;
        Ok(match self.meta.layout {
            Layout::Prompt => PromptParams::Plain(SoftPrompt::new(shared).with_classifiers(classifiers)),
            Layout::Multitask => PromptParams::Multitask(
                MultitaskPrompt::new(
                    shared,
                    self.tensor::<3>("prefix_task_cols", device)?,
                    self.tensor::<3>("prefix_task_rows", device)?,
                )?
                .with_classifiers(classifiers),
            ),
        })
    }

    /// The stored heads, one per task (empty when the artifact has none).
    pub fn classifiers(&self, device: &Device) -> Result<Vec<Classifier>> {
        if !self.has_classifiers() {
            return Ok(Vec::new());
        }
        (0..self.meta.tasks.len())
            .map(|k| {
                let (w, b) = classifier_names(k);
                Ok(Classifier::new(self.tensor::<2>(&w, device)?, self.tensor::<1>(&b, device)?))
            })
            .collect()
    }

    /// Whether the artifact stores trained heads.
    pub fn has_classifiers(&self) -> bool {
        self.tensors.keys().any(|n| n.starts_with("classifier."))
    }

    /// The width of the stored heads' weight rows (one width for every task, checked at load):
    /// d for linear heads, [`PAIR_WIDTH`]·d for pair heads; `None` without heads.
    pub fn head_width(&self) -> Option<usize> {
        self.tensors.get(&classifier_names(0).0).and_then(|t| t.shape().get(1).copied())
    }

    /// Index of `task` in `tasks`.
    pub fn task_index(&self, task: &str) -> Result<usize> {
        self.meta.tasks.iter().position(|t| t == task).ok_or_else(|| CoreError::Field {
            path: self.dir.join(META_FILE),
            field: "tasks".into(),
            message: format!("has no task {task:?} (tasks: {})", self.meta.tasks.join(", ")),
        })
    }
}
