//! How a stage runs: the [`Executor`] seam between the coordinator ([`crate::run`]), which
//! decides what runs and is the only writer of the run state, and the code that does a stage's
//! work. [`InProcess`] runs each stage in this process on one backbone; a parallel or cluster
//! executor is another implementation of the same trait.

use std::cell::OnceCell;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use mpt_data::DataRoot;
use mpt_models::Model;
use mpt_train::Progress;

use crate::error::{PipelineError, Result};
use crate::plan::{Stage, StageKind};
use crate::run::{ResultFile, eval_key};

/// One stage handed to an executor, with everything the coordinator resolved for it.
#[derive(Debug, Clone)]
pub struct StageJob<'a> {
    /// The stage (never [`StageKind::Provided`]: a library teacher has nothing to run).
    pub stage: &'a Stage,
    /// Its artifact folder (training stages).
    pub out_dir: PathBuf,
    /// Its result file (eval stages).
    pub result_path: PathBuf,
    /// The artifact folders of its inputs, in `stage.deps` order.
    pub parent_dirs: Vec<PathBuf>,
    /// The ids of its inputs (artifact ids), in `stage.deps` order.
    pub parent_ids: Vec<String>,
}

/// What a stage left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageOutcome {
    /// The artifact id (training stages) or the result key (eval stages).
    pub output: String,
}

/// Runs stages. The coordinator calls [`Executor::prepare`] before each stage it starts and
/// then [`Executor::execute`]; it records the outcome in the run state itself, so an executor
/// writes only the stage's own output (its artifact folder or result file).
pub trait Executor {
    /// Gets ready to run a stage (idempotent; e.g. loads the backbone once). Called before the
    /// stage is announced, so a failure here is reported before any stage starts.
    fn prepare(&self) -> Result<()> {
        Ok(())
    }

    /// Runs `job` to completion, reporting training progress to `progress`.
    fn execute(&self, job: &StageJob<'_>, progress: &dyn Progress) -> Result<StageOutcome>;
}

/// Runs every stage in this process, one at a time, on a backbone loaded on first need.
pub struct InProcess<'a> {
    backbone: &'a Path,
    root: DataRoot,
    device: &'a Device,
    model: OnceCell<Model>,
}

impl<'a> InProcess<'a> {
    /// An executor for stages on the backbone folder `backbone` and the data under `data_root`.
    pub fn new(backbone: &'a Path, data_root: &Path, device: &'a Device) -> Self {
        Self { backbone, root: DataRoot::new(data_root), device, model: OnceCell::new() }
    }

    fn model(&self) -> Result<&Model> {
        if let Some(model) = self.model.get() {
            return Ok(model);
        }
        let model = Model::load(self.backbone, self.device)?;
        Ok(self.model.get_or_init(|| model))
    }
}

impl Executor for InProcess<'_> {
    fn prepare(&self) -> Result<()> {
        self.model().map(|_| ())
    }

    fn execute(&self, job: &StageJob<'_>, progress: &dyn Progress) -> Result<StageOutcome> {
        let model = self.model()?;
        let (root, device, stage) = (&self.root, self.device, job.stage);
        let stage_err =
            |e: Box<dyn std::error::Error + Send + Sync>| PipelineError::Stage { stage: stage.name.clone(), source: e };
        let output = match &stage.kind {
            StageKind::Provided(dir) => {
                return Err(PipelineError::Plan(format!(
                    "stage {}: a library teacher ({}) is used as it is, not run",
                    stage.name,
                    dir.display()
                )));
            }
            StageKind::Teacher(c) => {
                mpt_teacher::run(model, root, c, &job.out_dir, device, progress)
                    .map_err(|e| stage_err(Box::new(e)))?
                    .meta
                    .id
            }
            StageKind::Distill(c) => {
                mpt_distill::run(model, root, c, &job.parent_dirs, &job.out_dir, device, progress)
                    .map_err(|e| stage_err(Box::new(e)))?
                    .meta
                    .id
            }
            StageKind::Adapt(c) => {
                mpt_adapt::run(
                    model,
                    root,
                    c,
                    job.parent_dirs.first().map(PathBuf::as_path),
                    &job.out_dir,
                    device,
                    progress,
                )
                .map_err(|e| stage_err(Box::new(e)))?
                .meta
                .id
            }
            StageKind::Eval(c) => {
                let result =
                    mpt_eval::run(model, root, &job.parent_dirs[0], c, device).map_err(|e| stage_err(Box::new(e)))?;
                let key = eval_key(c, &job.parent_ids[0]);
                let file = ResultFile { key: key.clone(), stage: stage.name.clone(), result };
                write_result(&job.result_path, &file)?;
                key
            }
        };
        Ok(StageOutcome { output })
    }
}

/// Writes an eval stage's result file (atomically, creating its folder).
fn write_result(path: &Path, file: &ResultFile) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| PipelineError::Io { path: parent.to_path_buf(), source })?;
    }
    mpt_models::io::write_atomic(path, &serde_json::to_vec_pretty(file).expect("result serialises"))?;
    Ok(())
}
