//! The one error type of mpt-train.

/// Errors of batching, heads, training and evaluation.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The loss became NaN or infinite; nothing is written.
    #[error(
        "{stage}: loss is {value} at step {step}; stopping without writing an artifact (try a lower learning rate or gradient clipping)"
    )]
    NonFinite {
        /// Stage name.
        stage: String,
        /// Step at which it happened.
        step: usize,
        /// The value.
        value: f32,
    },
    /// A configuration value is unusable.
    #[error("config `{field}`: {message}")]
    Config {
        /// Field path.
        field: String,
        /// What was expected.
        message: String,
    },
    /// An example cannot be encoded.
    #[error("task {task}: {message}")]
    Encode {
        /// Task.
        task: String,
        /// What went wrong.
        message: String,
    },
    /// From the model layer.
    #[error(transparent)]
    Model(#[from] mpt_models::ModelError),
    /// From the data layer.
    #[error(transparent)]
    Data(#[from] mpt_data::DataError),
    /// From prompts and artifacts.
    #[error(transparent)]
    Core(#[from] mpt_core::CoreError),
}

/// Result alias.
pub type Result<T> = std::result::Result<T, TrainError>;
