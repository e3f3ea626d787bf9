//! Frozen pretrained backbones for prompt tuning: Hugging Face model folders
//! (`config.json` + `model.safetensors` + optional `tokenizer.json`) loaded into burn tensors.
//!
//! Every architecture implements the [`Backbone`] trait and its family's trait ([`Encoder`],
//! [`Seq2Seq`]) in one file and is registered by `model_type` in [`REGISTRY`]: [`t5::T5`]
//! (encoder-decoder, v1.0 and v1.1/flan) and [`bert::Bert`] (BERT-family encoders such as
//! all-MiniLM-L6-v2). Both take input embeddings so a soft prompt can be prepended exactly as
//! PEFT does it ([`prepend_prompt`]). Pickle files are never read.

mod backbone;
pub mod bert;
mod check;
mod error;
pub mod forward;
// burn-tch is deprecated upstream; the fused ops still implement it (feature `tch`).
#[cfg_attr(feature = "tch", allow(deprecated))]
pub mod fused;
pub mod io;
pub mod layers;
pub mod llama;
pub mod t5;
pub mod tokenizer;
pub mod weights;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use backbone::{
    Arch, ArchConfig, ArchSpec, Backbone, CausalLm, Encoder, Family, FamilyModel, Layout, ModelConfig, REGISTRY,
    Seq2Seq, prepend_prompt,
};
pub use error::{ModelError, Result};
pub use tokenizer::{EncodedBatch, TextTokenizer, pad_rows};

/// Identity of a backbone, recorded in every artifact trained on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// Folder name, e.g. `all-MiniLM-L6-v2`.
    pub name: String,
    /// sha256 of `config.json`.
    pub config_sha256: String,
    /// sha256 of `model.safetensors`.
    pub weights_sha256: String,
}

/// The files of a model folder.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// The folder.
    pub dir: PathBuf,
    /// `config.json`.
    pub config: PathBuf,
    /// `model.safetensors`.
    pub weights: PathBuf,
    /// `tokenizer.json`, when present.
    pub tokenizer: Option<PathBuf>,
}

impl ModelFiles {
    /// Locates the files of `dir`, failing with a message that says what is expected.
    pub fn locate(dir: &Path) -> Result<Self> {
        let config = dir.join("config.json");
        if !config.is_file() {
            return Err(ModelError::Io {
                path: config,
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "a Hugging Face model folder needs config.json and model.safetensors",
                ),
            });
        }
        let weights = dir.join("model.safetensors");
        if !weights.is_file() {
            let hint = if dir.join("pytorch_model.bin").is_file() {
                "only pytorch_model.bin is present; mpt never reads pickle files: convert it to model.safetensors (e.g. `model.save_pretrained(dir, safe_serialization=True)`)"
            } else {
                "a Hugging Face model folder needs model.safetensors"
            };
            return Err(ModelError::Io {
                path: weights,
                source: std::io::Error::new(std::io::ErrorKind::NotFound, hint),
            });
        }
        let tokenizer = Some(dir.join("tokenizer.json")).filter(|p| p.is_file());
        Ok(Self { dir: dir.to_path_buf(), config, weights, tokenizer })
    }
}

/// A backbone with its tokenizer and fingerprint.
#[derive(Debug, Clone)]
pub struct Model {
    /// Where it came from.
    pub files: ModelFiles,
    /// The network.
    pub backbone: Arc<dyn Backbone>,
    /// The tokenizer, when the folder has `tokenizer.json`.
    pub tokenizer: Option<TextTokenizer>,
    /// Identity for artifacts.
    pub fingerprint: Fingerprint,
}

/// sha256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|source| ModelError::Io { path: path.to_path_buf(), source })?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut file, &mut buf)
            .map_err(|source| ModelError::Io { path: path.to_path_buf(), source })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Computes the fingerprint of a model folder without loading its weights.
pub fn fingerprint(files: &ModelFiles) -> Result<Fingerprint> {
    let name = files
        .dir
        .canonicalize()
        .unwrap_or_else(|_| files.dir.clone())
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(Fingerprint { name, config_sha256: sha256_file(&files.config)?, weights_sha256: sha256_file(&files.weights)? })
}

impl Model {
    /// Loads a Hugging Face model folder onto `device` (a non-autodiff device: the backbone is
    /// frozen).
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let files = ModelFiles::locate(dir)?;
        let config = ModelConfig::read(&files.config)?;
        let weights = weights::Weights::open(&files.weights, device)?;
        let backbone = config.load(&files.config, weights)?;
        let tokenizer = files.tokenizer.as_deref().map(TextTokenizer::from_file).transpose()?;
        let fingerprint = fingerprint(&files)?;
        tracing::debug!(dir = %dir.display(), arch = %backbone.arch(), params = backbone.num_params(), "loaded backbone");
        Ok(Self { files, backbone, tokenizer, fingerprint })
    }

    /// The tokenizer, or an error saying the folder lacks `tokenizer.json`.
    pub fn require_tokenizer(&self) -> Result<&TextTokenizer> {
        self.tokenizer.as_ref().ok_or_else(|| ModelError::Io {
            path: self.files.dir.join("tokenizer.json"),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "this operation needs the model folder's tokenizer.json",
            ),
        })
    }
}

/// What `mpt model info` prints.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    /// Folder.
    pub dir: PathBuf,
    /// Architecture.
    pub arch: Arch,
    /// Variant description, e.g. "v1.1 (gated-gelu, separate lm_head)".
    pub variant: String,
    /// Model width.
    pub d_model: usize,
    /// Encoder layers.
    pub encoder_layers: usize,
    /// Decoder layers (0 for encoders).
    pub decoder_layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// FFN width.
    pub d_ff: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Frozen scalars.
    pub parameters: usize,
    /// The tokenizer file, if found.
    pub tokenizer: Option<PathBuf>,
    /// Tokenizer vocabulary size, if found.
    pub tokenizer_vocab_size: Option<usize>,
}

impl ModelInfo {
    /// Describes a loaded model.
    pub fn of(model: &Model) -> Self {
        let b = &model.backbone;
        let layout = b.layout();
        Self {
            dir: model.files.dir.clone(),
            arch: b.arch(),
            variant: layout.variant,
            d_model: b.dim(),
            encoder_layers: layout.encoder_layers,
            decoder_layers: layout.decoder_layers,
            heads: layout.heads,
            d_ff: layout.d_ff,
            vocab_size: b.vocab_size(),
            parameters: b.num_params(),
            tokenizer: model.files.tokenizer.clone(),
            tokenizer_vocab_size: model.tokenizer.as_ref().map(TextTokenizer::vocab_size),
        }
    }
}
