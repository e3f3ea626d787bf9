//! Shape checks of the public entry points ([`crate::bert::Bert`], [`crate::t5::T5`], the
//! [`crate::forward`] contract): an empty batch, an empty sequence, a zero-length prompt or a
//! mask that does not match its ids is refused with [`ModelError::Input`] before any kernel
//! runs. (The fused ops return empty results without a kernel as well, see
//! [`crate::fused`]; these checks say what was wrong instead.)

use crate::error::{ModelError, Result};

fn input(name: &str, message: String) -> ModelError {
    ModelError::Input { name: name.into(), message }
}

/// Token ids (or embeddings) `[B, S, ..]`: at least one row and one position per row.
pub(crate) fn rows(name: &str, dims: &[usize]) -> Result<()> {
    let what = match dims {
        [0, ..] => "is an empty batch; expected at least one row",
        [_, 0, ..] => "has rows of length 0; expected at least one token per row",
        _ => return Ok(()),
    };
    Err(input(name, format!("shape {dims:?} {what}")))
}

/// Hidden states `[B, L, d]`: [`rows`], and `d` equal to the model's `width` (its config
/// field `field`).
pub(crate) fn states(name: &str, dims: [usize; 3], width: usize, field: &str) -> Result<()> {
    rows(name, &dims)?;
    if dims[2] != width {
        return Err(input(name, format!("shape {dims:?}, expected width {width} ({field})")));
    }
    Ok(())
}

/// `dims` equal to `expected` (a mask or token types beside their ids).
pub(crate) fn same(name: &str, dims: &[usize], expected: &[usize], of: &str) -> Result<()> {
    if dims == expected {
        return Ok(());
    }
    Err(input(name, format!("shape {dims:?}, expected {expected:?} ({of})")))
}

/// A prompt `[B, l, d]` in front of a batch of `b` rows of width `d`: `l ≥ 1`.
pub(crate) fn prompt(dims: [usize; 3], b: usize, d: usize) -> Result<()> {
    let [pb, l, pd] = dims;
    if pb != b || pd != d || l == 0 {
        return Err(input(
            "prompt",
            format!("shape {dims:?}, expected [{b}, l, {d}] with l ≥ 1 (one prompt per row of the batch)"),
        ));
    }
    Ok(())
}
