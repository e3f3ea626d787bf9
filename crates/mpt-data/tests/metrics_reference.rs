//! The metrics agree with scikit-learn / SciPy to 1e-9 on the committed reference values
//! (`tests/fixtures/metrics_reference.json`, written by `make_metric_fixtures.py`).

use mpt_data::metrics::{NO_LABEL, accuracy, binary_f1, exact_match, macro_f1, matthews_corrcoef, pearson, spearman};
use serde_json::Value;

fn reference() -> Value {
    let text = include_str!("fixtures/metrics_reference.json");
    serde_json::from_str(text).expect("valid fixture")
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        // sklearn's -1 (a prediction that is no label) is NO_LABEL here.
        .map(|x| x.as_u64().map_or(NO_LABEL, |x| x as usize))
        .collect()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn close(name: &str, metric: &str, got: f64, want: &Value) {
    // null = NaN in SciPy, reported as 0.0 here.
    let want = want.as_f64().unwrap_or(0.0);
    assert!((got - want).abs() < 1e-9, "{name} {metric}: got {got}, sklearn/scipy {want}");
}

#[test]
fn classification_metrics_match_sklearn() {
    let reference = reference();
    let cases = reference["classification"].as_array().unwrap();
    assert!(cases.len() >= 10);
    assert!(
        cases.iter().filter(|c| c["pred"].to_string().contains("-1")).count() >= 3,
        "the fixture covers predictions that are no label"
    );
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let (gold, pred) = (usizes(&case["gold"]), usizes(&case["pred"]));
        close(name, "accuracy", accuracy(&gold, &pred), &case["accuracy"]);
        close(name, "macro_f1", macro_f1(&gold, &pred), &case["macro_f1"]);
        close(name, "matthews", matthews_corrcoef(&gold, &pred), &case["matthews"]);
        if !case["f1"].is_null() {
            close(name, "f1", binary_f1(&gold, &pred), &case["f1"]);
        }
        if let Some(groups) = case["groups"].as_array() {
            let groups: Vec<&str> = groups.iter().map(|g| g.as_str().unwrap()).collect();
            close(name, "em", exact_match(&groups, &gold, &pred), &case["em"]);
        }
    }
}

#[test]
fn correlations_match_scipy() {
    let reference = reference();
    let cases = reference["regression"].as_array().unwrap();
    assert!(cases.len() >= 4);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let (x, y) = (floats(&case["x"]), floats(&case["y"]));
        close(name, "pearson", pearson(&x, &y), &case["pearson"]);
        close(name, "spearman", spearman(&x, &y), &case["spearman"]);
    }
}
