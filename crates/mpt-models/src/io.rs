//! Host-side named tensors and their safetensors files (the `mpt model forward` contract and
//! artifact payloads). Writes are atomic: a temp file in the same folder, then a rename.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use burn::prelude::*;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use crate::error::{ModelError, Result};

/// A tensor held in host memory.
#[derive(Debug, Clone, PartialEq)]
pub enum HostTensor {
    /// f32 values, row-major.
    F32 {
        /// Values.
        data: Vec<f32>,
        /// Shape.
        shape: Vec<usize>,
    },
    /// i64 values, row-major.
    I64 {
        /// Values.
        data: Vec<i64>,
        /// Shape.
        shape: Vec<usize>,
    },
    /// A dtype mpt does not read (kept so errors can name it).
    Other {
        /// The safetensors dtype name.
        dtype: String,
        /// Shape.
        shape: Vec<usize>,
    },
}

impl HostTensor {
    /// Shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            HostTensor::F32 { shape, .. } | HostTensor::I64 { shape, .. } | HostTensor::Other { shape, .. } => shape,
        }
    }

    /// dtype name as safetensors spells it.
    pub fn dtype_name(&self) -> &str {
        match self {
            HostTensor::F32 { .. } => "F32",
            HostTensor::I64 { .. } => "I64",
            HostTensor::Other { dtype, .. } => dtype,
        }
    }

    /// Copies a float tensor to the host.
    pub fn from_float<const D: usize>(t: Tensor<D>) -> Self {
        let shape = t.dims().to_vec();
        let data = t.try_into_vec_as::<f32>().expect("f32 data");
        HostTensor::F32 { data, shape }
    }

    /// Copies an int tensor to the host.
    pub fn from_int<const D: usize>(t: Tensor<D, Int>) -> Self {
        let shape = t.dims().to_vec();
        let data = t.try_into_vec_as::<i64>().expect("i64 data");
        HostTensor::I64 { data, shape }
    }

    /// A `[rows][cols]` i64 matrix.
    pub fn from_rows(rows: &[Vec<i64>]) -> Self {
        let cols = rows.first().map_or(0, Vec::len);
        HostTensor::I64 { data: rows.iter().flatten().copied().collect(), shape: vec![rows.len(), cols] }
    }
}

/// Reads every tensor of a safetensors file.
pub fn read_safetensors(path: &Path) -> Result<BTreeMap<String, HostTensor>> {
    let bytes = std::fs::read(path).map_err(|source| ModelError::Io { path: path.to_path_buf(), source })?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|source| ModelError::Safetensors { path: path.to_path_buf(), source })?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let shape = view.shape().to_vec();
        let data = view.data();
        let tensor = match view.dtype() {
            Dtype::F32 => HostTensor::F32 {
                data: data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
                shape,
            },
            Dtype::I64 => HostTensor::I64 {
                data: data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes"))).collect(),
                shape,
            },
            other => HostTensor::Other { dtype: format!("{other:?}"), shape },
        };
        out.insert(name, tensor);
    }
    Ok(out)
}

/// Serialises named tensors to safetensors bytes (`Other` entries are skipped).
pub fn to_safetensors_bytes(
    tensors: &BTreeMap<String, HostTensor>,
    metadata: Option<std::collections::HashMap<String, String>>,
) -> Result<Vec<u8>> {
    let mut buffers: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, tensor) in tensors {
        match tensor {
            HostTensor::F32 { data, shape } => buffers.push((
                name.clone(),
                Dtype::F32,
                shape.clone(),
                data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            )),
            HostTensor::I64 { data, shape } => buffers.push((
                name.clone(),
                Dtype::I64,
                shape.clone(),
                data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            )),
            HostTensor::Other { .. } => {}
        }
    }
    let views: Vec<(String, TensorView<'_>)> = buffers
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            (name.clone(), TensorView::new(*dtype, shape.clone(), bytes).expect("consistent buffer"))
        })
        .collect();
    safetensors::serialize(views, metadata)
        .map_err(|source| ModelError::Safetensors { path: "<memory>".into(), source })
}

/// Writes `bytes` to `path` atomically (temp file in the same folder, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |source| ModelError::Io { path: path.to_path_buf(), source };
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut file = std::fs::File::create(&tmp).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })
}

/// Writes named tensors to a safetensors file atomically.
pub fn write_safetensors(path: &Path, tensors: &BTreeMap<String, HostTensor>) -> Result<()> {
    write_atomic(path, &to_safetensors_bytes(tensors, None)?)
}
