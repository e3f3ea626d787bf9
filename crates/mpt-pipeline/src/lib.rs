//! Declared experiments: a TOML pipeline is parsed and validated (key paths in every error,
//! before any work), turned into a stage graph (teachers → distillations → adaptations →
//! evaluations), run in dependency order with finished stages skipped (so a killed run
//! resumes), and summarised in a report with plots.

pub mod config;
mod error;
pub mod execute;
pub mod merge;
pub mod plan;
pub mod plots;
pub mod report;
pub mod run;
pub mod schedule;
pub mod slurm;
pub mod status;
pub mod subprocess;

pub use config::Pipeline;
pub use error::{PipelineError, Result};
pub use execute::{Executor, InProcess, StageJob, StageOutcome};
pub use merge::{MergeSummary, merge};
pub use plan::{Plan, Stage, StageKind, build};
pub use run::{RunOptions, RunSummary, Status, Ui, run, run_parallel, run_with};
pub use schedule::Scheduler;
pub use slurm::{ClusterConfig, Slurm};
pub use subprocess::{Subprocess, run_stage};
