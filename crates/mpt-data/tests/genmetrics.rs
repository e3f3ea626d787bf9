//! The generation metrics agree with sacreBLEU 2.6.0 (BLEU, chrF) and rouge-score 0.1.2
//! (ROUGE-L) on the committed reference values (`tests/fixtures/genmetrics_reference.json`,
//! written by `make_genmetrics_fixtures.py`): counts and lengths exactly, scores to 1e-9.

use std::cell::Cell;

use mpt_data::DataError;
use mpt_data::genmetrics::{
    Bleu, corpus_bleu, corpus_chrf, corpus_rouge_l, is_python_whitespace, rouge_tokens, sentence_rouge_l, tokenize_13a,
};
use serde_json::Value;

fn reference() -> Value {
    serde_json::from_str(include_str!("fixtures/genmetrics_reference.json")).expect("valid fixture")
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect()
}

/// Compares with the reference to 1e-9 (relative above 1) and counts how close the values are.
struct Checker {
    values: Cell<usize>,
    identical: Cell<usize>,
    one_ulp: Cell<usize>,
    max_diff: Cell<f64>,
}

impl Checker {
    fn new() -> Self {
        Checker { values: Cell::new(0), identical: Cell::new(0), one_ulp: Cell::new(0), max_diff: Cell::new(0.0) }
    }

    fn close(&self, what: &str, got: f64, want: &Value) {
        let want = want.as_f64().unwrap_or_else(|| panic!("{what}: reference {want} is no number"));
        let diff = (got - want).abs();
        assert!(diff <= 1e-9 * want.abs().max(1.0), "{what}: got {got}, reference {want}");
        self.values.set(self.values.get() + 1);
        self.identical.set(self.identical.get() + usize::from(got == want));
        self.one_ulp.set(self.one_ulp.get() + usize::from(got.to_bits().abs_diff(want.to_bits()) <= 1));
        self.max_diff.set(self.max_diff.get().max(diff));
    }

    /// Checks every number of `case` (a fixture case or the whole-corpus entry).
    fn check_corpus(&self, name: &str, hypotheses: &[String], references: &[Vec<String>], case: &Value) {
        let bleu: Bleu = corpus_bleu(hypotheses, references).unwrap();
        let want = &case["bleu"];
        assert_eq!(bleu.counts.to_vec(), usizes(&want["counts"]), "{name}: BLEU counts");
        assert_eq!(bleu.totals.to_vec(), usizes(&want["totals"]), "{name}: BLEU totals");
        assert_eq!(bleu.sys_len, want["sys_len"].as_u64().unwrap() as usize, "{name}: BLEU sys_len");
        assert_eq!(bleu.ref_len, want["ref_len"].as_u64().unwrap() as usize, "{name}: BLEU ref_len");
        self.close(&format!("{name}: BLEU"), bleu.score, &want["score"]);
        self.close(&format!("{name}: BLEU bp"), bleu.bp, &want["bp"]);
        for (n, (got, want)) in bleu.precisions.iter().zip(want["precisions"].as_array().unwrap()).enumerate() {
            self.close(&format!("{name}: BLEU precision {}", n + 1), *got, want);
        }

        self.close(&format!("{name}: chrF"), corpus_chrf(hypotheses, references).unwrap(), &case["chrf"]);

        let want = &case["rouge_l"];
        let sentence_f = want["sentence_f"].as_array().unwrap();
        assert_eq!(sentence_f.len(), hypotheses.len());
        for (i, ((h, refs), want)) in hypotheses.iter().zip(references).zip(sentence_f).enumerate() {
            self.close(&format!("{name}: ROUGE-L of sentence {i}"), sentence_rouge_l(h, refs), want);
        }
        self.close(&format!("{name}: ROUGE-L"), corpus_rouge_l(hypotheses, references).unwrap(), &want["score"]);
    }
}

#[test]
fn metrics_match_sacrebleu_and_rouge_score() {
    let reference = reference();
    let cases = reference["cases"].as_array().unwrap();
    assert!(cases.len() >= 30, "the fixture has {} cases", cases.len());
    let checker = Checker::new();
    let (mut all_hypotheses, mut all_references) = (Vec::new(), Vec::new());
    for case in cases {
        let hypotheses = strings(&case["hypotheses"]);
        let references: Vec<Vec<String>> = case["references"].as_array().unwrap().iter().map(strings).collect();
        checker.check_corpus(case["name"].as_str().unwrap(), &hypotheses, &references, case);
        all_hypotheses.extend(hypotheses);
        all_references.extend(references);
    }
    checker.check_corpus("whole corpus", &all_hypotheses, &all_references, &reference["corpus"]);
    let sys_len = |c: &Value| c["bleu"]["sys_len"].as_u64().unwrap();
    assert_eq!(sys_len(&reference["corpus"]), cases.iter().map(sys_len).sum::<u64>(), "the corpus is all cases");
    eprintln!(
        "genmetrics: {} reference values, {} bit-identical, {} within one ulp (serde_json's default float \
         parsing may itself be one ulp off the fixture's text), largest difference {:e}",
        checker.values.get(),
        checker.identical.get(),
        checker.one_ulp.get(),
        checker.max_diff.get()
    );
}

#[test]
fn fixture_covers_multi_reference_and_empty_sides() {
    let reference = reference();
    let cases = reference["cases"].as_array().unwrap();
    let refs_per_hyp = |c: &Value| -> Vec<usize> {
        c["references"].as_array().unwrap().iter().map(|r| r.as_array().unwrap().len()).collect()
    };
    assert!(cases.iter().any(|c| refs_per_hyp(c).iter().any(|&n| n >= 3)), "a hypothesis with 3+ references");
    assert!(
        cases.iter().any(|c| refs_per_hyp(c).iter().min() != refs_per_hyp(c).iter().max()),
        "reference counts that differ within a corpus"
    );
    assert!(cases.iter().any(|c| strings(&c["hypotheses"]).iter().any(String::is_empty)), "an empty hypothesis");
    assert!(cases.iter().any(|c| c["bleu"]["bp"].as_f64().unwrap() < 1.0), "a brevity penalty");
}

#[test]
fn whitespace_is_pythons() {
    let reference = reference();
    let python: Vec<u32> =
        reference["python_whitespace"].as_array().unwrap().iter().map(|c| c.as_u64().unwrap() as u32).collect();
    let ours: Vec<u32> = (0..=0x10FFFF_u32).filter(|&c| char::from_u32(c).is_some_and(is_python_whitespace)).collect();
    assert_eq!(ours, python);
}

#[test]
fn tokenizers_match_sacrebleu_13a_and_rouge_score() {
    let reference = reference();
    let cases = reference["tokenize_13a"].as_array().unwrap();
    assert!(cases.len() > 80);
    for case in cases {
        let input = case["input"].as_str().unwrap();
        assert_eq!(tokenize_13a(input), case["output"].as_str().unwrap(), "13a of {input:?}");
    }
    for case in reference["rouge_tokens"].as_array().unwrap() {
        let input = case["input"].as_str().unwrap();
        assert_eq!(rouge_tokens(input), strings(&case["tokens"]), "rouge_score tokens of {input:?}");
    }
}

fn one(hyp: &str, refs: &[&str]) -> (Vec<String>, Vec<Vec<String>>) {
    (vec![hyp.to_string()], vec![refs.iter().map(|r| r.to_string()).collect()])
}

#[test]
fn empty_corpus_is_an_error() {
    let (h, r): (Vec<String>, Vec<Vec<String>>) = (Vec::new(), Vec::new());
    assert!(matches!(corpus_bleu(&h, &r), Err(DataError::InvalidArgument { name: "hypotheses", .. })));
    assert!(matches!(corpus_chrf(&h, &r), Err(DataError::InvalidArgument { name: "hypotheses", .. })));
    assert!(matches!(corpus_rouge_l(&h, &r), Err(DataError::InvalidArgument { name: "hypotheses", .. })));
}

#[test]
fn mismatched_lengths_are_an_error() {
    let h = vec!["a b c".to_string(), "d e".to_string()];
    let r = vec![vec!["a b c".to_string()]];
    for err in [corpus_bleu(&h, &r).unwrap_err(), corpus_chrf(&h, &r).unwrap_err(), corpus_rouge_l(&h, &r).unwrap_err()]
    {
        assert!(matches!(err, DataError::LengthMismatch { expected: 2, found: 1, .. }), "{err}");
    }
}

#[test]
fn a_hypothesis_without_references_is_an_error() {
    let h = vec!["a b c", "d e"];
    let r: Vec<Vec<&str>> = vec![vec!["a b c"], vec![]];
    let err = corpus_bleu(&h, &r).unwrap_err();
    assert!(matches!(err, DataError::InvalidArgument { name: "references", .. }), "{err}");
    assert!(err.to_string().contains("hypothesis 1"), "{err}");
    assert!(corpus_chrf(&h, &r).is_err() && corpus_rouge_l(&h, &r).is_err());
    assert_eq!(sentence_rouge_l::<&str>("a b", &[]), 0.0);
}

#[test]
fn identical_text_scores_100_and_empty_text_0() {
    let (h, r) = one("The Eagle is a coffee shop.", &["The Eagle is a coffee shop."]);
    let bleu = corpus_bleu(&h, &r).unwrap();
    // exp(4 ln(100) / 4) is 100.00000000000004 in sacreBLEU too.
    assert!((bleu.score - 100.0).abs() < 1e-12, "{}", bleu.score);
    assert_eq!((bleu.precisions, bleu.bp, bleu.sys_len, bleu.ref_len), ([100.0; 4], 1.0, 7, 7));
    assert_eq!(corpus_chrf(&h, &r).unwrap(), 100.0);
    assert_eq!(corpus_rouge_l(&h, &r).unwrap(), 100.0);

    let (h, r) = one("", &["The Eagle is a coffee shop."]);
    let bleu = corpus_bleu(&h, &r).unwrap();
    assert_eq!((bleu.score, bleu.bp, bleu.sys_len, bleu.ref_len), (0.0, 0.0, 0, 7));
    assert_eq!(corpus_chrf(&h, &r).unwrap(), 0.0);
    assert_eq!(corpus_rouge_l(&h, &r).unwrap(), 0.0);
}

#[test]
fn bleu_uses_the_closest_reference_length_and_clips_per_reference() {
    // 5 hypothesis tokens; references of 6 and 4 tokens are equally close: the shorter counts.
    let (h, r) = one("a b c d e", &["a b c x y z", "a b c d"]);
    let bleu = corpus_bleu(&h, &r).unwrap();
    assert_eq!((bleu.sys_len, bleu.ref_len), (5, 4));
    assert_eq!(bleu.counts, [4, 3, 2, 1]);
    // "the" is clipped at 2 (its count in the reference), not at the sum over references.
    let (h, r) = one("the the the", &["the cat the", "the dog"]);
    assert_eq!(corpus_bleu(&h, &r).unwrap().counts[0], 2);
}

#[test]
fn rouge_l_takes_the_best_reference() {
    let refs = ["a completely different sentence", "the eagle is a pub"];
    let f = sentence_rouge_l("The Eagle is a pub!", &refs);
    assert_eq!(f, 1.0);
    // LCS "the is a" of 4 hypothesis and 5 reference tokens: P = 3/4, R = 3/5.
    let f = sentence_rouge_l("the mill is a", &["the eagle is a pub"]);
    assert!((f - 2.0 * 0.75 * 0.6 / 1.35).abs() < 1e-15, "{f}");
}
