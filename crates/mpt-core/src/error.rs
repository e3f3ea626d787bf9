//! The one error type of mpt-core.

use std::path::PathBuf;

/// Errors of prompts and artifacts.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// `artifact.json` is not valid JSON for the format.
    #[error("{path}: invalid artifact.json: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// Not an mpt artifact.
    #[error("{path}: field `format` is {found:?}, expected \"mpt-artifact\"")]
    NotAnArtifact {
        /// The file.
        path: PathBuf,
        /// What the file says.
        found: String,
    },
    /// A version this build cannot read.
    #[error("{path}: artifact version {found} is not supported (this mpt reads versions {supported})")]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: u64,
        /// What is supported.
        supported: String,
    },
    /// The artifact has another kind than the stage needs.
    #[error("{path}: artifact kind is {found}, expected {expected}")]
    WrongKind {
        /// The artifact folder.
        path: PathBuf,
        /// What the caller needs.
        expected: String,
        /// What the artifact is.
        found: String,
    },
    /// A tensor's shape disagrees with `artifact.json` or with the other tensors.
    #[error("{path}: tensor `{tensor}` has shape {found:?}, expected {expected:?} ({basis})")]
    TensorShape {
        /// The tensors file.
        path: PathBuf,
        /// Tensor name.
        tensor: String,
        /// Shape implied by artifact.json and the other tensors.
        expected: Vec<usize>,
        /// Shape in the file.
        found: Vec<usize>,
        /// Where each number of `expected` comes from.
        basis: String,
    },
    /// A tensor the layout needs is missing, or has the wrong dtype.
    #[error("{path}: tensor `{tensor}`: {message}")]
    Tensor {
        /// The tensors file.
        path: PathBuf,
        /// Tensor name.
        tensor: String,
        /// What is wrong.
        message: String,
    },
    /// The tensors file does not match the checksum recorded at write time.
    #[error("{path}: sha256 is {found}, artifact.json records {expected}: the file was modified or corrupted")]
    Checksum {
        /// The tensors file.
        path: PathBuf,
        /// Recorded checksum.
        expected: String,
        /// Actual checksum.
        found: String,
    },
    /// The artifact was trained on another backbone.
    #[error("{path}: artifact was trained on backbone {expected}, but the backbone in use is {found}")]
    BackboneMismatch {
        /// The artifact folder.
        path: PathBuf,
        /// Backbone recorded in the artifact.
        expected: String,
        /// Backbone in use.
        found: String,
    },
    /// Inconsistent prompt shapes.
    #[error("{what}: {message}")]
    Shape {
        /// What was being built.
        what: String,
        /// The inconsistency.
        message: String,
    },
    /// A field of `artifact.json` is inconsistent.
    #[error("{path}: field `{field}`: {message}")]
    Field {
        /// The file.
        path: PathBuf,
        /// Field name.
        field: String,
        /// What was expected.
        message: String,
    },
    /// An initialisation written as text (`--init`, a pipeline key) is none of the known forms.
    #[error("{found:?}: expected {expected}")]
    UnknownInit {
        /// What was written.
        found: String,
        /// The forms that are known, e.g. `random, vocab or text:SOME TEXT`.
        expected: &'static str,
    },
    /// Initialisation could not be done.
    #[error("prompt initialisation: {message}")]
    Init {
        /// Why.
        message: String,
    },
    /// A JSON file other than `artifact.json` (e.g. PEFT's `adapter_config.json`) is invalid.
    #[error("{path}: invalid JSON: {source}")]
    JsonFile {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A field of a PEFT `adapter_config.json` is missing or not what mpt can use.
    #[error("{path}: field `{field}`: {message}")]
    Peft {
        /// The file.
        path: PathBuf,
        /// Field name.
        field: String,
        /// What was expected.
        message: String,
    },
    /// A PEFT method mpt cannot import.
    #[error("{path}: peft_type {found:?} is not supported; mpt imports {supported}")]
    UnsupportedPeftType {
        /// `adapter_config.json`.
        path: PathBuf,
        /// The `peft_type` found.
        found: String,
        /// What is supported.
        supported: String,
    },
    /// A PEFT adapter tensor disagrees with `adapter_config.json`.
    #[error("{path}: tensor `{tensor}` has shape {found:?}, expected {expected:?} (from adapter_config.json)")]
    PeftShape {
        /// `adapter_model.safetensors`.
        path: PathBuf,
        /// Tensor name.
        tensor: String,
        /// Shape implied by the config.
        expected: Vec<usize>,
        /// Shape in the file.
        found: Vec<usize>,
    },
    /// An output folder exists and may not be replaced.
    #[error("{path}: {message}")]
    OutputExists {
        /// The folder.
        path: PathBuf,
        /// Why it is kept.
        message: String,
    },
    /// The artifact's layout does not allow the operation.
    #[error("{path}: {message}")]
    Layout {
        /// The artifact folder.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Import arguments (kind, task names) do not fit the adapter.
    #[error("{path}: {message}")]
    Import {
        /// The adapter folder.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An error from the model layer (safetensors I/O).
    #[error(transparent)]
    Model(#[from] mpt_models::ModelError),
}

/// Result alias.
pub type Result<T> = std::result::Result<T, CoreError>;
