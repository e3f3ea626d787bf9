//! Values that could only fail once the data is loaded (issue 15): `Selection::validate` and
//! `Lengths::validate` refuse them naming the field, and `load_task` / `TaskData::encode`
//! check them before reading or tokenizing anything (`max_train = 0` used to reach a panic in
//! `SoftPrompt::batch`, `max_dev = 0` an error that never named `data.max_dev`).

use std::path::PathBuf;

use burn::prelude::*;
use mpt_data::DataRoot;
use mpt_models::Model;
use mpt_train::{Lengths, Selection, TaskData, TrainError, load_task};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn config_err(err: TrainError) -> (String, String) {
    match err {
        TrainError::Config { field, message } => (field, message),
        other => panic!("expected TrainError::Config, got {other}"),
    }
}

/// A field name and how to set it to zero.
type ZeroCase = (&'static str, fn(&mut Selection));

#[test]
fn zero_counts_are_refused_naming_the_field() {
    assert!(Selection::default().validate("data.").is_ok());
    let cases: [ZeroCase; 4] = [
        ("few_shot_k", |s| s.few_shot_k = Some(0)),
        ("max_train", |s| s.max_train = Some(0)),
        ("max_dev", |s| s.max_dev = Some(0)),
        ("max_test", |s| s.max_test = Some(0)),
    ];
    for (field, set) in cases {
        let mut selection = Selection::default();
        set(&mut selection);
        let (got, message) = config_err(selection.validate("data.").unwrap_err());
        assert_eq!(got, format!("data.{field}"));
        assert_eq!(message, mpt_train::select::AT_LEAST_ONE);
        let mut one = Selection::default();
        set(&mut one);
        one.few_shot_k = one.few_shot_k.map(|_| 1);
        one.max_train = one.max_train.map(|_| 1);
        one.max_dev = one.max_dev.map(|_| 1);
        one.max_test = one.max_test.map(|_| 1);
        assert!(one.validate("data.").is_ok(), "1 is a valid {field}");
    }
}

#[test]
fn lengths_without_room_are_refused_naming_the_field() {
    assert!(Lengths::default().validate("train.").is_ok());
    assert!(Lengths { max_input: 4, max_target: 2 }.validate("").is_ok());
    for (lengths, field) in [
        (Lengths { max_input: 0, max_target: 16 }, "train.lengths.max_input"),
        (Lengths { max_input: 3, max_target: 16 }, "train.lengths.max_input"),
        (Lengths { max_input: 128, max_target: 1 }, "train.lengths.max_target"),
    ] {
        let (got, message) = config_err(lengths.validate("train.").unwrap_err());
        assert_eq!(got, field);
        assert!(message.starts_with("must be at least"), "{message}");
    }
}

#[test]
fn load_task_and_encode_check_before_reading_anything() {
    let model = Model::load(&fixtures().join("bert-tiny"), &Device::flex()).expect("fixture loads");
    let tokenizer = model.require_tokenizer().unwrap();
    let task = mpt_data::lookup("rte").unwrap();
    let arch = model.backbone.arch();
    let lengths = Lengths::default();
    // A data root that does not exist: the selection is refused first, not the missing files.
    let absent = DataRoot::new(fixtures().join("no-such-root"));
    for (field, selection) in [
        ("data.max_train", Selection { max_train: Some(0), ..Selection::default() }),
        ("data.max_dev", Selection { max_dev: Some(0), ..Selection::default() }),
    ] {
        let (got, _) = config_err(load_task(&absent, task, &selection, tokenizer, arch, lengths).unwrap_err());
        assert_eq!(got, field);
    }
    let short = Lengths { max_input: 0, max_target: 16 };
    let (got, _) = config_err(load_task(&absent, task, &Selection::default(), tokenizer, arch, short).unwrap_err());
    assert_eq!(got, "train.lengths.max_input");
    let (got, _) = config_err(TaskData::encode(task, Vec::new(), tokenizer, arch, short).unwrap_err());
    assert_eq!(got, "lengths.max_input");
    // The real fixture data loads with the same selection values at 1.
    let root = DataRoot::new(fixtures().join("data"));
    let one = Selection { max_train: Some(1), max_dev: Some(1), ..Selection::default() };
    let splits = load_task(&root, task, &one, tokenizer, arch, lengths).unwrap();
    assert_eq!((splits.train.examples.len(), splits.dev.examples.len()), (1, 1));
}
