//! Run-time choice among the burn backends compiled into this binary.

use anyhow::{Result, bail};
use burn::prelude::*;

/// The `--device` of every command that takes one, unless given.
pub const DEFAULT_DEVICE: &str = "cpu";

/// The `--device` names this build accepts, with the cargo feature each needs.
pub const DEVICES: &[(&str, &str, bool)] = &[
    ("cpu", "default (flex)", true),
    ("wgpu", "wgpu", cfg!(feature = "wgpu")),
    ("tch-cpu", "tch", cfg!(feature = "tch")),
    ("tch-cuda", "tch", cfg!(feature = "tch")),
    ("cuda", "cuda", cfg!(feature = "cuda")),
];

/// Builds the (non-autodiff) device named `name`; `cuda`/`tch-cuda` accept `:INDEX`.
pub fn parse_device(name: &str) -> Result<Device> {
    let (base, index) = match name.split_once(':') {
        Some((base, index)) => (
            base,
            index
                .parse::<usize>()
                .map_err(|_| anyhow::anyhow!("--device {name}: the index after ':' must be a number"))?,
        ),
        None => (name, 0),
    };
    let Some((_, feature, compiled)) = DEVICES.iter().find(|(n, _, _)| *n == base) else {
        let names: Vec<&str> = DEVICES.iter().map(|(n, _, _)| *n).collect();
        bail!("unknown --device {name:?}; expected one of {}", names.join(", "));
    };
    if !compiled {
        bail!(
            "--device {base} was not compiled into this binary; rebuild with `cargo build --release -p mpt-cli --features {feature}` (see README: Backends)"
        );
    }
    let _ = index;
    Ok(match base {
        "cpu" => {
            // An `MPT_BLAS` naming an unusable library is an error here, before any work.
            let kernel = mpt_models::fused::flex_linear_kernel()?;
            tracing::info!("flex linear products on {kernel}");
            Device::flex()
        }
        #[cfg(feature = "wgpu")]
        "wgpu" => Device::wgpu(DeviceKind::DefaultDevice),
        #[cfg(feature = "tch")]
        #[allow(deprecated)]
        "tch-cpu" => Device::libtorch(),
        #[cfg(feature = "tch")]
        #[allow(deprecated)]
        "tch-cuda" => Device::libtorch_cuda(index),
        #[cfg(feature = "cuda")]
        "cuda" => Device::cuda(index),
        _ => unreachable!("every compiled device name is matched above"),
    })
}
