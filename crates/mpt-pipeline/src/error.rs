//! The one error type of mpt-pipeline.

use std::path::PathBuf;

/// Pipeline errors.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The TOML is malformed, has an unknown key, or a wrong type.
    #[error("{path}: `{key}`: {message}")]
    Parse {
        /// Pipeline file.
        path: PathBuf,
        /// Key path, e.g. `distill.kappa`.
        key: String,
        /// What was wrong.
        message: String,
    },
    /// A value is impossible (checked before any work starts).
    #[error("{path}: `{key}`: {message}")]
    Invalid {
        /// Pipeline file.
        path: PathBuf,
        /// Key path.
        key: String,
        /// What was expected.
        message: String,
    },
    /// `--only`/`--force` named no stage, or a stage's inputs are missing.
    #[error("{0}")]
    Plan(String),
    /// File system.
    #[error("{path}: {source}")]
    Io {
        /// Path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Another process holds the run folder's lock.
    #[error("{path}: the run folder is in use by another `mpt run` ({}); wait for it to finish or stop it (lock file {lock})", match pid { Some(pid) => format!("pid {pid}"), None => "pid not recorded".to_string() }, lock = lock.display())]
    Locked {
        /// Run folder.
        path: PathBuf,
        /// Its lock file.
        lock: PathBuf,
        /// The holder's pid, as its lock file records it.
        pid: Option<u32>,
    },
    /// A run folder named as a source of `mpt merge` is unusable.
    #[error("{path}: {message}")]
    RunDir {
        /// The folder.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A stage failed.
    #[error("stage {stage} failed: {source}")]
    Stage {
        /// Stage name.
        stage: String,
        /// Cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Backbone loading.
    #[error(transparent)]
    Model(#[from] mpt_models::ModelError),
    /// Artifact reading.
    #[error(transparent)]
    Core(#[from] mpt_core::CoreError),
    /// Data.
    #[error(transparent)]
    Data(#[from] mpt_data::DataError),
}

/// Result alias.
pub type Result<T> = std::result::Result<T, PipelineError>;
