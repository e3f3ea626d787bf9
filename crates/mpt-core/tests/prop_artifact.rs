//! Property tests of the artifact loader on untrusted bytes (issue 15): a valid artifact (plain
//! and multitask with heads) is mutated — its tensors file truncated, bytes flipped, the
//! safetensors header rewritten with random dtypes, shapes and offsets, `artifact.json`
//! truncated, flipped or given random field values — and [`Artifact::load`] must return `Ok`
//! or an `Err` naming the artifact, never panic.
//!
//! Each mutation that touches the tensors file can also record the new file's sha256 in
//! `artifact.json`, so the safetensors parser and the shape checks behind the checksum are
//! reached too. `PROPTEST_CASES` overrides the case count (scripts/fuzz.sh raises it).

mod common;

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use common::{backbone, host, multitask_tensors, new_artifact, plain_tensors};
use mpt_core::artifact::{META_FILE, TENSORS_FILE};
use mpt_core::{Artifact, ArtifactKind, BackboneRef, InUse};
use mpt_models::io::HostTensor;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// `default` cases (`PROPTEST_CASES` wins) from a fixed seed (`PROPTEST_RNG_SEED` wins), so
/// the suite is the same on every run; scripts/fuzz.sh explores new seeds.
fn cases(default: u32) -> Config {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
    Config {
        cases: env("PROPTEST_CASES").map_or(default, |c: u64| c as u32),
        rng_seed: RngSeed::Fixed(env("PROPTEST_RNG_SEED").unwrap_or(15)),
        failure_persistence: None,
        ..Config::default()
    }
}

/// The artifacts to start from: a teacher prompt, and a multitask prompt with trained heads.
fn originals() -> Vec<(ArtifactKind, Vec<&'static str>, BTreeMap<String, HostTensor>)> {
    let mut mt = multitask_tensors(2, 4, 2, 6);
    for k in 0..2 {
        mt.insert(format!("classifier.{k}.weight"), host(&[3, 6], 4 + k));
        mt.insert(format!("classifier.{k}.bias"), host(&[3], 6 + k));
    }
    vec![(ArtifactKind::Teacher, vec!["a"], plain_tensors(4, 6)), (ArtifactKind::Multitask, vec!["a", "b"], mt)]
}

/// Writes original `which` to `dir` (replacing what is there).
fn write_original(dir: &Path, which: usize) {
    let (kind, tasks, tensors) = originals().swap_remove(which);
    Artifact::write(dir, new_artifact(kind, &tasks, tensors)).unwrap();
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Replaces the tensors file and, if `fix_checksum`, records its sha256 in artifact.json.
fn put_tensors(dir: &Path, bytes: &[u8], fix_checksum: bool) {
    std::fs::write(dir.join(TENSORS_FILE), bytes).unwrap();
    if fix_checksum {
        edit_meta(dir, |m| m["tensors_sha256"] = sha256(bytes).into());
    }
}

fn edit_meta(dir: &Path, edit: impl FnOnce(&mut Value)) {
    let path = dir.join(META_FILE);
    let mut v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

/// `(header JSON, data)` of a safetensors file.
fn split_safetensors(bytes: &[u8]) -> (Value, Vec<u8>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (serde_json::from_slice(&bytes[8..8 + n]).unwrap(), bytes[8 + n..].to_vec())
}

fn join_safetensors(header: &[u8], len_field: Option<u64>, data: &[u8]) -> Vec<u8> {
    let mut out = len_field.unwrap_or(header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header);
    out.extend_from_slice(data);
    out
}

/// A number as the header might hold it: small, at a boundary, or huge.
fn header_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => (0u64..64).prop_map(Value::from),
        1 => Just(Value::from(u64::MAX)),
        1 => Just(Value::from(u32::MAX as u64 + 1)),
        1 => Just(Value::from(1u64 << 62)),
        1 => (-3i64..0).prop_map(Value::from),
        1 => Just(json!(1.5)),
        1 => Just(json!("7")),
    ]
}

fn dtype() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec![
            "F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "U16", "U32", "U64", "BOOL", "F8_E4M3",
            "F8_E5M2", "F4", "F6_E2M3", "E8M0", "C64", "f32", "",
        ])
        .prop_map(Value::from),
        "[A-Z0-9_]{0,8}".prop_map(Value::from),
        Just(Value::Null),
        Just(json!(4)),
    ]
}

/// Text a string field might hold: any printable characters (multi-byte ones included), or
/// one of the words the format uses.
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => "\\PC{0,24}",
        1 => "[0-9a-f]{0,70}",
        1 => prop::sample::select(vec![
            "", "teacher", "multitask", "target", "prompt", "mpt-artifact", "t5", "bert", "llama", "nope",
        ])
        .prop_map(str::to_string),
    ]
}

/// A JSON number of any kind: small, at a boundary, negative, fractional.
fn any_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => prop_oneof![Just(0u64), Just(1), Just(2), Just(3), Just(4), Just(6), Just(7)].prop_map(Value::from),
        1 => Just(Value::from(u64::MAX)),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<f64>().prop_filter("JSON numbers are finite", |f| f.is_finite()).prop_map(Value::from),
    ]
}

/// A JSON value of any type.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::from),
        2 => any_number(),
        3 => any_text().prop_map(Value::from),
    ];
    prop_oneof![
        3 => leaf.clone(),
        1 => leaf.prop_recursive(2, 8, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map("[a-z_]{1,8}", inner, 0..3)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        }),
    ]
}

/// A replacement for field `FIELDS[field]`: mostly of the field's own JSON type, sometimes any.
fn field_value(field: usize) -> BoxedStrategy<Value> {
    let path = FIELDS[field];
    let typed: BoxedStrategy<Value> = match path.last().copied().unwrap() {
        "version" | "prompt_length" | "dim" | "rank" | "tunable_params" => any_number().boxed(),
        "tasks" | "parents" => {
            prop::collection::vec(any_text().prop_map(Value::from), 0..4).prop_map(Value::from).boxed()
        }
        "backbone" | "config" | "metrics" => any_json().boxed(),
        _ => any_text().prop_map(Value::from).boxed(),
    };
    prop_oneof![3 => typed, 1 => any_json()].boxed()
}

/// The field paths of artifact.json.
const FIELDS: &[&[&str]] = &[
    &["format"],
    &["version"],
    &["kind"],
    &["id"],
    &["tasks"],
    &["layout"],
    &["prompt_length"],
    &["dim"],
    &["rank"],
    &["tunable_params"],
    &["backbone"],
    &["backbone", "name"],
    &["backbone", "arch"],
    &["backbone", "config_sha256"],
    &["backbone", "weights_sha256"],
    &["parents"],
    &["config"],
    &["metrics"],
    &["created_with"],
    &["tensors_sha256"],
];

#[derive(Debug, Clone)]
enum Mutation {
    /// Cut the tensors file to `at` (a fraction of its length, in 1/1000).
    TruncateTensors { at: u32, fix: bool },
    /// XOR bytes of the tensors file (positions as fractions in 1/10000).
    FlipTensors { flips: Vec<(u32, u8)>, fix: bool },
    /// Rewrite one tensor's header entry (and maybe the header's length field).
    Header {
        tensor: usize,
        dtype: Option<Value>,
        shape: Option<Vec<Value>>,
        offsets: Option<Vec<Value>>,
        len_delta: i64,
    },
    /// Add a header entry.
    ExtraTensor { name: String, dtype: Value, shape: Vec<Value>, offsets: Vec<Value> },
    /// Replace the header with arbitrary bytes (keeping the length field consistent or not).
    HeaderBytes { bytes: Vec<u8>, honest_len: bool },
    /// Cut artifact.json to a fraction of its length.
    TruncateMeta { at: u32 },
    /// XOR bytes of artifact.json.
    FlipMeta { flips: Vec<(u32, u8)> },
    /// Set a field of artifact.json (or remove it).
    Field { field: usize, value: Option<Value> },
    /// Remove a file.
    Remove { meta: bool },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let flips = || prop::collection::vec((0u32..10_000, 1u8..=255), 1..8);
    prop_oneof![
        1 => (0u32..1000, any::<bool>()).prop_map(|(at, fix)| Mutation::TruncateTensors { at, fix }),
        1 => (flips(), any::<bool>()).prop_map(|(flips, fix)| Mutation::FlipTensors { flips, fix }),
        3 => (
            0usize..8,
            prop::option::of(dtype()),
            prop::option::of(prop::collection::vec(header_number(), 0..4)),
            prop::option::of(prop::collection::vec(header_number(), 0..3)),
            prop_oneof![4 => Just(0i64), 1 => -16i64..16],
        )
            .prop_map(|(tensor, dtype, shape, offsets, len_delta)| Mutation::Header {
                tensor,
                dtype,
                shape,
                offsets,
                len_delta
            }),
        1 => (
            prop_oneof![
                Just("prompt_embeddings".to_string()),
                Just("classifier.0.weight".to_string()),
                Just("classifier.5.bias".to_string()),
                Just("__metadata__".to_string()),
                "[a-z_.0-9]{1,12}",
            ],
            dtype(),
            prop::collection::vec(header_number(), 0..3),
            prop::collection::vec(header_number(), 0..3),
        )
            .prop_map(|(name, dtype, shape, offsets)| Mutation::ExtraTensor { name, dtype, shape, offsets }),
        1 => (prop::collection::vec(any::<u8>(), 0..64), any::<bool>())
            .prop_map(|(bytes, honest_len)| Mutation::HeaderBytes { bytes, honest_len }),
        1 => (0u32..1000).prop_map(|at| Mutation::TruncateMeta { at }),
        1 => flips().prop_map(|flips| Mutation::FlipMeta { flips }),
        6 => (0..FIELDS.len())
            .prop_flat_map(|field| (Just(field), prop::option::weighted(0.9, field_value(field))))
            .prop_map(|(field, value)| Mutation::Field { field, value }),
        1 => any::<bool>().prop_map(|meta| Mutation::Remove { meta }),
    ]
}

fn flip(bytes: &mut [u8], flips: &[(u32, u8)]) {
    if bytes.is_empty() {
        return;
    }
    for &(at, mask) in flips {
        let i = at as usize * bytes.len() / 10_000;
        bytes[i.min(bytes.len() - 1)] ^= mask;
    }
}

fn set_path(v: &mut Value, path: &[&str], value: Option<Value>) {
    let (last, parents) = path.split_last().unwrap();
    let mut node = v;
    for p in parents {
        node = &mut node[*p];
    }
    match (node.as_object_mut(), value) {
        (Some(map), Some(value)) => {
            map.insert(last.to_string(), value);
        }
        (Some(map), None) => {
            map.remove(*last);
        }
        (None, _) => {}
    }
}

/// Applies `m` to the artifact in `dir`.
fn apply(dir: &Path, m: &Mutation) {
    let tensors_path = dir.join(TENSORS_FILE);
    let meta_path = dir.join(META_FILE);
    let tensors = std::fs::read(&tensors_path).unwrap();
    match m {
        Mutation::TruncateTensors { at, fix } => {
            let n = *at as usize * tensors.len() / 1000;
            put_tensors(dir, &tensors[..n], *fix);
        }
        Mutation::FlipTensors { flips, fix } => {
            let mut bytes = tensors.clone();
            flip(&mut bytes, flips);
            put_tensors(dir, &bytes, *fix);
        }
        Mutation::Header { tensor, dtype, shape, offsets, len_delta } => {
            let (mut header, data) = split_safetensors(&tensors);
            let names: Vec<String> =
                header.as_object().unwrap().keys().filter(|k| *k != "__metadata__").cloned().collect();
            let name = &names[tensor % names.len()];
            let entry = &mut header[name.as_str()];
            if let Some(d) = dtype {
                entry["dtype"] = d.clone();
            }
            if let Some(s) = shape {
                entry["shape"] = Value::from(s.clone());
            }
            if let Some(o) = offsets {
                entry["data_offsets"] = Value::from(o.clone());
            }
            let text = serde_json::to_vec(&header).unwrap();
            let len = (text.len() as i64 + len_delta).max(0) as u64;
            put_tensors(dir, &join_safetensors(&text, Some(len), &data), true);
        }
        Mutation::ExtraTensor { name, dtype, shape, offsets } => {
            let (mut header, data) = split_safetensors(&tensors);
            header[name.as_str()] = json!({"dtype": dtype, "shape": shape, "data_offsets": offsets});
            let text = serde_json::to_vec(&header).unwrap();
            put_tensors(dir, &join_safetensors(&text, None, &data), true);
        }
        Mutation::HeaderBytes { bytes, honest_len } => {
            let (_, data) = split_safetensors(&tensors);
            let len = if *honest_len { bytes.len() as u64 } else { tensors.len() as u64 };
            put_tensors(dir, &join_safetensors(bytes, Some(len), &data), true);
        }
        Mutation::TruncateMeta { at } => {
            let meta = std::fs::read(&meta_path).unwrap();
            std::fs::write(&meta_path, &meta[..*at as usize * meta.len() / 1000]).unwrap();
        }
        Mutation::FlipMeta { flips } => {
            let mut meta = std::fs::read(&meta_path).unwrap();
            flip(&mut meta, flips);
            std::fs::write(&meta_path, meta).unwrap();
        }
        Mutation::Field { field, value } => edit_meta(dir, |v| set_path(v, FIELDS[*field], value.clone())),
        Mutation::Remove { meta } => std::fs::remove_file(if *meta { meta_path } else { tensors_path }).unwrap(),
    }
}

/// Loads `dir` every way a caller does, asserting no panic and that errors name the artifact.
fn load_all_ways(dir: &Path) -> Result<(), TestCaseError> {
    let other = BackboneRef { weights_sha256: "b".repeat(64), ..backbone() };
    let (same, other) = (backbone(), other);
    let calls: [(Option<ArtifactKind>, Option<InUse<'_>>); 4] = [
        (None, None),
        (Some(ArtifactKind::Multitask), None),
        (Some(ArtifactKind::Teacher), Some(InUse { backbone: &same, dim: 6 })),
        (None, Some(InUse { backbone: &other, dim: 6 })),
    ];
    let shown = dir.display().to_string();
    for (kind, in_use) in calls {
        let result = catch_unwind(AssertUnwindSafe(|| Artifact::load(dir, kind, in_use)));
        let result = result.map_err(|p| {
            let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
            TestCaseError::fail(format!("Artifact::load({kind:?}) panicked: {msg:?}"))
        })?;
        if let Err(e) = result {
            let text = e.to_string();
            prop_assert!(text.contains(&shown), "the error does not name the artifact {shown}: {text}");
        }
    }
    // read_meta alone too (`mpt inspect`, the run's skip check).
    let meta = catch_unwind(|| Artifact::read_meta(dir))
        .map_err(|_| TestCaseError::fail("Artifact::read_meta panicked".to_string()))?;
    if let Err(e) = meta {
        prop_assert!(e.to_string().contains(&shown), "{e}");
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn mutated_artifacts_load_or_fail_naming_the_file(
        which in 0usize..2,
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("artifact");
        write_original(&dir, which);
        for m in &mutations {
            // A mutation after a removal or a truncation may have nothing left to act on.
            if can_apply(&dir, m) {
                apply(&dir, m);
            }
        }
        load_all_ways(&dir)?;
    }
}

/// Whether `m` can act on what is left in `dir` (earlier mutations may have removed a file,
/// broken artifact.json or the safetensors header).
fn can_apply(dir: &Path, m: &Mutation) -> bool {
    let (Ok(tensors), Ok(meta)) = (std::fs::read(dir.join(TENSORS_FILE)), std::fs::read(dir.join(META_FILE))) else {
        return false;
    };
    let meta_ok = serde_json::from_slice::<Value>(&meta).is_ok_and(|v| v.is_object());
    let header_ok = || {
        let Some(n) = tensors.get(..8).map(|b| u64::from_le_bytes(b.try_into().unwrap()) as usize) else {
            return false;
        };
        n.checked_add(8).is_some_and(|end| end <= tensors.len())
            && serde_json::from_slice::<Value>(&tensors[8..8 + n])
                .is_ok_and(|v| v.as_object().is_some_and(|o| o.keys().any(|k| k != "__metadata__")))
    };
    match m {
        Mutation::TruncateTensors { fix, .. } | Mutation::FlipTensors { fix, .. } => !fix || meta_ok,
        Mutation::Header { .. } | Mutation::ExtraTensor { .. } | Mutation::HeaderBytes { .. } => meta_ok && header_ok(),
        Mutation::Field { .. } => meta_ok,
        Mutation::TruncateMeta { .. } | Mutation::FlipMeta { .. } | Mutation::Remove { .. } => true,
    }
}

/// The loader accepts the unmutated originals (the properties above start from valid files).
#[test]
fn the_originals_load() {
    let tmp = tempfile::tempdir().unwrap();
    for which in 0..2 {
        let dir = tmp.path().join(format!("a{which}"));
        write_original(&dir, which);
        Artifact::load(&dir, None, Some(InUse { backbone: &backbone(), dim: 6 })).unwrap();
    }
}

/// Found by the property above: `artifact.json` with a non-ASCII `backbone.weights_sha256`,
/// loaded with another backbone in use, panicked in `BackboneRef::describe` (it cut the string
/// at byte 12, inside a character); it is a `BackboneMismatch` error.
#[test]
fn non_ascii_weights_sha256_is_an_error_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    write_original(&dir, 0);
    edit_meta(&dir, |m| m["backbone"]["weights_sha256"] = "aéééééééé".into());
    let other = BackboneRef { weights_sha256: "b".repeat(64), ..backbone() };
    let err = Artifact::load(&dir, None, Some(InUse { backbone: &other, dim: 6 })).unwrap_err();
    assert!(err.to_string().contains("trained on backbone"), "{err}");
}
