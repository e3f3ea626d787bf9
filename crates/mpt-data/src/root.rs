//! Where the benchmark data lives, and an up-front check that a task's files are all there.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::DataError;
use crate::example::Example;
use crate::readers::LoadReport;
use crate::registry::TaskSpec;
use crate::splits::{Split, SplitSet, load_split, load_splits};

/// The default data root, relative to the working directory (the repository root):
/// the data sits beside the repository, at `../shared/data`.
pub const DEFAULT_DATA_ROOT: &str = "../shared/data";

/// A data root directory (from config or CLI); [`Default`] is [`DEFAULT_DATA_ROOT`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DataRoot {
    path: PathBuf,
}

impl Default for DataRoot {
    fn default() -> Self {
        DataRoot::new(DEFAULT_DATA_ROOT)
    }
}

impl DataRoot {
    /// A data root at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        DataRoot { path: path.into() }
    }

    /// The root directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Files of `task` that are absent under this root (empty when the task is ready).
    pub fn missing_files(&self, task: &TaskSpec) -> Vec<PathBuf> {
        task.files().iter().map(|f| self.path.join(f.path)).filter(|p| !p.is_file() && !p.is_dir()).collect()
    }

    /// Checks that every file of `task` exists; the error names the first missing file and
    /// the whole expected layout, e.g. `missing file ../shared/data/rte/train.tsv: task rte
    /// expects <root>/rte/train.tsv (GLUE TSV without quoting, header: index, sentence1,
    /// sentence2, label); <root>/rte/dev.tsv (...)`.
    pub fn check_task(&self, task: &TaskSpec) -> Result<(), DataError> {
        match self.missing_files(task).into_iter().next() {
            None => Ok(()),
            Some(path) => Err(DataError::MissingFile { path, task: task.name.to_string(), layout: task.layout() }),
        }
    }

    /// [`DataRoot::check_task`] for several tasks, failing on the first missing file.
    pub fn check_tasks<'a>(&self, tasks: impl IntoIterator<Item = &'a TaskSpec>) -> Result<(), DataError> {
        tasks.into_iter().try_for_each(|t| self.check_task(t))
    }

    /// [`load_split`] under this root.
    pub fn load_split(
        &self,
        task: &TaskSpec,
        split: Split,
        seed: u64,
    ) -> Result<(Vec<Example>, LoadReport), DataError> {
        load_split(&self.path, task, split, seed)
    }

    /// [`load_splits`] under this root.
    pub fn load_splits(&self, task: &TaskSpec, seed: u64) -> Result<SplitSet, DataError> {
        load_splits(&self.path, task, seed)
    }
}

impl AsRef<Path> for DataRoot {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl From<PathBuf> for DataRoot {
    fn from(path: PathBuf) -> Self {
        DataRoot::new(path)
    }
}

impl From<&Path> for DataRoot {
    fn from(path: &Path) -> Self {
        DataRoot::new(path)
    }
}

impl From<&str> for DataRoot {
    fn from(path: &str) -> Self {
        DataRoot::new(path)
    }
}

impl fmt::Display for DataRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.path.display().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::lookup;

    #[test]
    fn missing_file_message_names_file_and_layout() {
        let dir = tempfile::tempdir().unwrap();
        let root = DataRoot::new(dir.path());
        let rte = lookup("rte").unwrap();
        let msg = root.check_task(rte).unwrap_err().to_string();
        let expected_path = dir.path().join("rte/train.tsv");
        assert!(
            msg.starts_with(&format!("missing file {}: task rte expects <root>/rte/train.tsv (GLUE TSV without quoting, header: index, sentence1, sentence2, label)", expected_path.display())),
            "{msg}"
        );
        assert_eq!(root.missing_files(rte).len(), 2);
        // Loading reports the same error instead of an I/O error.
        let msg = root.load_split(rte, Split::Test, 42).unwrap_err().to_string();
        assert!(msg.contains("missing file") && msg.contains("rte/dev.tsv"), "{msg}");
    }

    #[test]
    fn default_root_is_beside_the_repository() {
        assert_eq!(DataRoot::default().path(), Path::new("../shared/data"));
    }
}
