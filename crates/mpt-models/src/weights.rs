//! Reading Hugging Face `model.safetensors` files into burn tensors, with every key accounted for.
//!
//! [`Weights`] hands out tensors by HF key with a shape check, converting F16/BF16 to f32, and
//! remembers which keys were taken so [`Weights::finish`] can reject tensors the architecture
//! does not use. The file is memory-mapped, and each tensor's pages are handed back once it is
//! converted, so loading holds about one copy of the model rather than two.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use safetensors::{Dtype, SafeTensors};

use crate::error::{ModelError, Result};

/// An open safetensors file that tracks which tensors were consumed.
pub struct Weights {
    path: PathBuf,
    bytes: memmap2::Mmap,
    names: BTreeSet<String>,
    used: BTreeSet<String>,
    device: Device,
}

impl Weights {
    /// Maps `path` into memory and indexes its tensors.
    pub fn open(path: &Path, device: &Device) -> Result<Self> {
        let io = |source| ModelError::Io { path: path.to_path_buf(), source };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the mapping is read-only; like every reader of model files (safetensors'
        // own documentation maps them the same way) we assume nobody truncates or rewrites the
        // file while the model loads.
        let bytes = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        let names = SafeTensors::deserialize(&bytes)
            .map_err(|source| ModelError::Safetensors { path: path.to_path_buf(), source })?
            .names()
            .into_iter()
            .map(str::to_string)
            .collect();
        Ok(Self { path: path.to_path_buf(), bytes, names, used: BTreeSet::new(), device: device.clone() })
    }

    /// The file these weights come from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file holds `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    /// All tensor names in the file.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }

    fn view(&self) -> Result<SafeTensors<'_>> {
        SafeTensors::deserialize(&self.bytes)
            .map_err(|source| ModelError::Safetensors { path: self.path.clone(), source })
    }

    /// Reads `name` as f32 values, checking its shape against `expected`.
    pub fn read_f32(&mut self, name: &str, expected: &[usize]) -> Result<Vec<f32>> {
        let st = self.view()?;
        let view = st.tensor(name).map_err(|_| ModelError::MissingTensor {
            path: self.path.clone(),
            name: name.to_string(),
            expected: expected.to_vec(),
        })?;
        if view.shape() != expected {
            return Err(ModelError::ShapeMismatch {
                path: self.path.clone(),
                name: name.to_string(),
                expected: expected.to_vec(),
                found: view.shape().to_vec(),
            });
        }
        let data = view.data();
        let values = match view.dtype() {
            Dtype::F32 => data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            Dtype::F16 => data.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            Dtype::BF16 => data.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            other => {
                return Err(ModelError::TensorDtype {
                    path: self.path.clone(),
                    name: name.to_string(),
                    found: format!("{other:?}"),
                });
            }
        };
        self.release(data);
        self.used.insert(name.to_string());
        Ok(values)
    }

    /// Drops the mapped pages under `data` (a tensor already converted) from this process's
    /// resident memory; they would be read from the file again if touched.
    fn release(&self, data: &[u8]) {
        #[cfg(unix)]
        if let Some(offset) = (data.as_ptr() as usize).checked_sub(self.bytes.as_ptr() as usize) {
            // SAFETY: a read-only shared file mapping: dropping its pages loses nothing, and
            // the range lies inside the map (`data` is a slice of it). Advice is best-effort.
            let _ =
                unsafe { self.bytes.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, data.len()) };
        }
        #[cfg(not(unix))]
        let _ = data;
    }

    /// A tensor of rank `D` with exactly the `expected` shape.
    pub fn tensor<const D: usize>(&mut self, name: &str, expected: [usize; D]) -> Result<Tensor<D>> {
        let values = self.read_f32(name, &expected)?;
        Ok(Tensor::from_data(TensorData::new(values, expected), &self.device))
    }

    /// A PyTorch `nn.Linear` weight stored `[out, in]`, returned transposed as `[in, out]`
    /// (burn's layout), materialised contiguously.
    pub fn linear_weight(&mut self, name: &str, d_in: usize, d_out: usize) -> Result<Tensor<2>> {
        let values = self.read_f32(name, &[d_out, d_in])?;
        let mut transposed = vec![0.0f32; values.len()];
        for o in 0..d_out {
            for i in 0..d_in {
                transposed[i * d_out + o] = values[o * d_in + i];
            }
        }
        Ok(Tensor::from_data(TensorData::new(transposed, [d_in, d_out]), &self.device))
    }

    /// Marks `name` as known but unused (e.g. a duplicate of a tied tensor).
    pub fn skip(&mut self, name: &str) {
        if self.names.contains(name) {
            self.used.insert(name.to_string());
        }
    }

    /// Fails if the file holds tensors nobody took, except those for which `ignorable`
    /// returns true (heads and buffers the architecture knowingly drops).
    pub fn finish(self, arch: &'static str, ignorable: impl Fn(&str) -> bool) -> Result<()> {
        let st = self.view()?;
        let leftover: Vec<String> = self
            .names
            .iter()
            .filter(|name| !self.used.contains(*name) && !ignorable(name))
            .map(|name| match st.tensor(name) {
                Ok(view) => format!("`{name}` {:?}", view.shape()),
                Err(_) => format!("`{name}`"),
            })
            .collect();
        if leftover.is_empty() {
            Ok(())
        } else {
            Err(ModelError::UnexpectedTensors { path: self.path.clone(), arch, names: leftover.join(", ") })
        }
    }
}
