//! What the mpt stages share, below them in the dependency graph: tokenized task data and
//! batching, the task heads (T5 text-to-text, frozen verbalizer for encoders), losses for
//! task training and distillation, the training loop, and evaluation.

pub mod bench;
pub mod data;
mod error;
pub mod eval;
pub mod fewshot_dev;
pub mod head;
pub mod objective;
pub mod report;
pub mod select;
pub mod trainer;

pub use data::{Batch, Lengths, Segments, TaskData, make_batch};
pub use error::{Result, TrainError};
pub use eval::{Decoding, evaluate, label_scores, predict};
pub use head::{HeadConfig, HeadKind, Heads, LinearHead, Output, cross_entropy, hidden_mse, kl_divergence};
pub use objective::{Distill, RowSource, TaskObjective};
pub use report::final_metrics;
pub use select::{BucketSampler, EpochSampler, Selection, TaskSplits, load_task};
pub use trainer::{
    EvalPoint, History, Objective, OptimizerKind, Progress, Silent, StepLoss, TrainConfig, TrainOutcome, train,
};
