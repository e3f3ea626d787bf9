//! The one error type of mpt-models.

use std::path::PathBuf;

/// Everything that can go wrong while loading or running a backbone.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// `config.json` is not valid JSON or misses a required field.
    #[error("{path}: invalid config.json: {source}")]
    ConfigParse {
        /// The config file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// `config.json` parsed, but a field holds a value the model cannot use.
    #[error("{path}: field `{field}`: {message}")]
    ConfigValue {
        /// The config file.
        path: PathBuf,
        /// The offending field (HF name).
        field: String,
        /// What was expected.
        message: String,
    },
    /// `model_type` names an architecture mpt does not implement.
    #[error("{path}: unknown model_type {found:?}; supported: {supported}")]
    UnknownModelType {
        /// The config file.
        path: PathBuf,
        /// What the file says.
        found: String,
        /// The supported types.
        supported: String,
    },
    /// The weights file is not a valid safetensors file.
    #[error("{path}: invalid safetensors file: {source}")]
    Safetensors {
        /// The weights file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: safetensors::SafeTensorError,
    },
    /// A tensor the architecture needs is absent.
    #[error("{path}: missing tensor `{name}` (expected shape {expected:?})")]
    MissingTensor {
        /// The weights file.
        path: PathBuf,
        /// HF key.
        name: String,
        /// Shape the architecture expects.
        expected: Vec<usize>,
    },
    /// A tensor has the wrong shape for the config.
    #[error("{path}: tensor `{name}` has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        /// The weights file.
        path: PathBuf,
        /// HF key.
        name: String,
        /// Shape the architecture expects.
        expected: Vec<usize>,
        /// Shape in the file.
        found: Vec<usize>,
    },
    /// A tensor has a dtype that cannot be converted to f32.
    #[error("{path}: tensor `{name}` has dtype {found}, expected F32, F16 or BF16")]
    TensorDtype {
        /// The weights file.
        path: PathBuf,
        /// HF key.
        name: String,
        /// The dtype in the file.
        found: String,
    },
    /// The file holds tensors the architecture does not use.
    #[error("{path}: unexpected tensor(s) not used by the {arch} model: {names}")]
    UnexpectedTensors {
        /// The weights file.
        path: PathBuf,
        /// Architecture name.
        arch: &'static str,
        /// Comma-separated keys with shapes.
        names: String,
    },
    /// The tokenizer file could not be loaded or used.
    #[error("{path}: tokenizer error: {message}")]
    Tokenizer {
        /// The tokenizer file.
        path: PathBuf,
        /// The tokenizers crate's message.
        message: String,
    },
    /// `MPT_BLAS` names a library that cannot be used for flex's linear products.
    #[error(
        "MPT_BLAS={setting}: {reason}; expected `auto`, `off` or the path of a 32-bit-integer OpenBLAS (libopenblas.so.0) at version 0.3.7 or later"
    )]
    Blas {
        /// The variable's value.
        setting: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// A forward input is malformed (wrong rank, shape or id range).
    #[error("invalid input `{name}`: {message}")]
    Input {
        /// Input name, e.g. `input_ids`.
        name: String,
        /// What was wrong and what was expected.
        message: String,
    },
}

/// Result alias.
pub type Result<T> = std::result::Result<T, ModelError>;
