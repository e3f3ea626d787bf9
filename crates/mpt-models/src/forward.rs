//! The `mpt model forward` contract: named host tensors in, named host tensors out.
//!
//! Inputs: `input_ids`, `attention_mask` `[B,S]` int64; optional `token_type_ids` `[B,S]`
//! int64 (BERT), `decoder_input_ids` `[B,T]` int64 (T5), `soft_prompt` `[l,d]` f32.
//! Outputs (f32 unless said): seq2seq (T5) — `encoder_last_hidden_state` `[B,l+S,d]`, `lm_logits`
//! `[B,T,V]` when decoder ids are given, `generated_ids` `[B,≤N+1]` int64 with `generate`;
//! encoders (BERT) — `last_hidden_state` `[B,l+S,d]` and `sentence_embedding` `[B,d]` (mean over the
//! attended input positions, prompt rows excluded, L2-normalised); causal LMs (Llama, Qwen2) —
//! `logits` `[B,l+S,V]` and `last_hidden_state` `[B,l+S,d]` (prompt rows included; batches
//! right-padded), `generated_ids` `[B,N]` int64 with `generate` (each row's attended tokens
//! continued greedily, new tokens only, the pad id after EOS).
//!
//! Every input is checked before any kernel runs: dtype, rank, shape (`B, S, T ≥ 1`), id
//! ranges, a finite soft prompt of `l ≥ 1` rows.

use std::collections::BTreeMap;

use burn::prelude::*;

use crate::error::{ModelError, Result};
use crate::io::HostTensor;
use crate::{FamilyModel, Model};

fn input_err(name: &str, message: String) -> ModelError {
    ModelError::Input { name: name.into(), message }
}

/// An int64 input of rank 2, ids checked against `0..limit` when `limit` is given.
fn ids(
    inputs: &BTreeMap<String, HostTensor>,
    name: &str,
    rows: Option<usize>,
    cols: Option<usize>,
    limit: Option<usize>,
) -> Result<Option<(Vec<i64>, [usize; 2])>> {
    let Some(t) = inputs.get(name) else {
        return Ok(None);
    };
    let HostTensor::I64 { data, shape } = t else {
        return Err(input_err(name, format!("dtype {}, expected I64 (int64)", t.dtype_name())));
    };
    let &[b, s] = shape.as_slice() else {
        return Err(input_err(name, format!("shape {shape:?}, expected rank 2 [B, S]")));
    };
    crate::check::rows(name, shape)?;
    if rows.is_some_and(|r| r != b) || cols.is_some_and(|c| c != s) {
        return Err(input_err(
            name,
            format!(
                "shape {shape:?}, expected [{}, {}]",
                rows.map_or("B".into(), |r| r.to_string()),
                cols.map_or("S".into(), |c| c.to_string())
            ),
        ));
    }
    if let Some(limit) = limit
        && let Some(bad) = data.iter().find(|&&v| v < 0 || v as usize >= limit)
    {
        return Err(input_err(name, format!("value {bad} out of range 0..{limit}")));
    }
    Ok(Some((data.clone(), [b, s])))
}

fn int_tensor(values: Vec<i64>, shape: [usize; 2], device: &Device) -> Tensor<2, Int> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// Runs the contract on `model`. `generate` = greedy decoding of up to N tokens (T5 only).
pub fn forward(
    model: &Model,
    inputs: &BTreeMap<String, HostTensor>,
    generate: Option<usize>,
    device: &Device,
) -> Result<BTreeMap<String, HostTensor>> {
    let known = ["input_ids", "attention_mask", "token_type_ids", "decoder_input_ids", "soft_prompt"];
    if let Some(unknown) = inputs.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(input_err(unknown, format!("unknown input; expected some of {known:?}")));
    }
    let vocab = model.backbone.vocab_size();
    let (input_ids, [b, s]) = ids(inputs, "input_ids", None, None, Some(vocab))?
        .ok_or_else(|| input_err("input_ids", "missing; expected int64 [B, S]".into()))?;
    let (mask, _) = ids(inputs, "attention_mask", Some(b), Some(s), Some(2))?
        .ok_or_else(|| input_err("attention_mask", format!("missing; expected int64 [{b}, {s}]")))?;
    let d = model.backbone.dim();
    let prompt = match inputs.get("soft_prompt") {
        None => None,
        Some(HostTensor::F32 { data, shape }) => {
            let &[l, pd] = shape.as_slice() else {
                return Err(input_err("soft_prompt", format!("shape {shape:?}, expected [l, {d}]")));
            };
            if pd != d || l == 0 {
                return Err(input_err("soft_prompt", format!("shape {shape:?}, expected [l, {d}] with l > 0")));
            }
            if let Some(i) = data.iter().position(|v| !v.is_finite()) {
                return Err(input_err(
                    "soft_prompt",
                    format!("value {} at row {}, column {}; expected finite numbers", data[i], i / d, i % d),
                ));
            }
            let p = Tensor::<2>::from_data(TensorData::new(data.clone(), [l, d]), device);
            Some(p.unsqueeze::<3>().expand([b, l, d]))
        }
        Some(t) => {
            return Err(input_err("soft_prompt", format!("dtype {}, expected F32", t.dtype_name())));
        }
    };
    let l = prompt.as_ref().map_or(0, |p| p.dims()[1]);
    let raw_ids = input_ids.clone();
    let input_ids = int_tensor(input_ids, [b, s], device);
    let mask_t = int_tensor(mask.clone(), [b, s], device);
    let mut out = BTreeMap::new();
    let arch = model.backbone.arch().name().to_uppercase();
    match model.backbone.family() {
        FamilyModel::Seq2Seq(m) => {
            if inputs.contains_key("token_type_ids") {
                return Err(input_err("token_type_ids", format!("{arch} takes no token type ids")));
            }
            let decoder = ids(inputs, "decoder_input_ids", Some(b), None, Some(vocab))?;
            let (enc, enc_mask) = m.try_encode(input_ids, mask_t, prompt)?;
            if let Some((dec, [_, t])) = decoder {
                let logits = m.try_decode(int_tensor(dec, [b, t], device), &enc, &enc_mask)?;
                out.insert("lm_logits".into(), HostTensor::from_float(logits));
            }
            if let Some(n) = generate {
                let rows = m.generate_greedy(&enc, &enc_mask, n);
                out.insert("generated_ids".into(), HostTensor::from_rows(&rows));
            }
            out.insert("encoder_last_hidden_state".into(), HostTensor::from_float(enc));
        }
        FamilyModel::CausalLm(m) => {
            for name in ["token_type_ids", "decoder_input_ids"] {
                if inputs.contains_key(name) {
                    return Err(input_err(name, format!("{arch} is a decoder-only causal LM: it takes no {name}")));
                }
            }
            if let Some(n) = generate {
                let rows: Vec<Vec<i64>> = raw_ids
                    .chunks(s)
                    .zip(mask.chunks(s))
                    .map(|(ids, mask)| ids.iter().zip(mask).filter(|&(_, &m)| m == 1).map(|(&id, _)| id).collect())
                    .collect();
                if let Some(r) = rows.iter().position(Vec::is_empty) {
                    return Err(input_err("attention_mask", format!("row {r} has no attended token to continue")));
                }
                let p = prompt.as_ref().map(|p| p.clone().slice([0..1, 0..l, 0..d]).reshape([l, d]));
                let generated = m.generate(&rows, p.as_ref(), n, device);
                out.insert("generated_ids".into(), HostTensor::from_rows(&generated));
            }
            let hidden = m.try_forward_hidden(input_ids, mask_t, prompt)?;
            out.insert("logits".into(), HostTensor::from_float(m.lm_logits(hidden.clone())));
            out.insert("last_hidden_state".into(), HostTensor::from_float(hidden));
        }
        FamilyModel::Encoder(m) => {
            if inputs.contains_key("decoder_input_ids") || generate.is_some() {
                return Err(input_err(
                    "decoder_input_ids",
                    format!("{arch} is an encoder: decoder inputs and --generate need a T5 model"),
                ));
            }
            let types = ids(inputs, "token_type_ids", Some(b), Some(s), Some(m.type_vocab_size()))?
                .map(|(v, shape)| int_tensor(v, shape, device))
                .unwrap_or_else(|| Tensor::zeros([b, s], device));
            let hidden = m.forward(input_ids, mask_t.clone(), types, prompt)?;
            let pooled = mean_pool(hidden.clone().slice([0..b, l..l + s, 0..d]), mask_t);
            out.insert("sentence_embedding".into(), HostTensor::from_float(l2_normalize(pooled)));
            out.insert("last_hidden_state".into(), HostTensor::from_float(hidden));
        }
    }
    Ok(out)
}

/// Mean of `hidden` `[B, S, d]` over positions where `mask` `[B, S]` is 1. Returns `[B, d]`.
pub fn mean_pool(hidden: Tensor<3>, mask: Tensor<2, Int>) -> Tensor<2> {
    let [b, s, d] = hidden.dims();
    let m = mask.float().reshape([b, s, 1]);
    let summed = (hidden * m.clone()).sum_dim(1).reshape([b, d]);
    let count = m.sum_dim(1).reshape([b, 1]).clamp_min(1e-9);
    summed / count
}

/// Rows divided by their L2 norm (clamped like `F.normalize`, eps 1e-12). `[B, d]`.
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}
