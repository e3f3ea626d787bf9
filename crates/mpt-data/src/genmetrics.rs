//! Corpus-level text-generation metrics: BLEU and chrF as sacreBLEU computes them by default, and
//! ROUGE-L as Google's `rouge_score` package computes it. Pure text in, `f64` out.
//!
//! Every function takes the hypotheses (one generated string per example) and, for each
//! hypothesis, the list of its references (one or more; the count may differ between
//! hypotheses, e.g. E2E has several references per meaning representation, WebNLG one to
//! three per triple set). All three corpus scores are on sacreBLEU's scale, `0..=100`.
//!
//! Agreement is checked by `tests/genmetrics.rs` against values written by
//! `tests/fixtures/make_genmetrics_fixtures.py` with **sacrebleu 2.6.0** and **rouge-score 0.1.2**
//! (CPython 3.11.7) on 31 fixed corpora (punctuation, casing, numbers, Unicode, odd whitespace,
//! HTML entities, empty hypotheses and references, multi-reference E2E/WebNLG-like sentences)
//! plus their concatenation: every count and length is equal, and every score is the same `f64` as
//! the reference's (the test allows 1e-9).
//!
//! # BLEU ([`corpus_bleu`]) = `sacrebleu.metrics.BLEU().corpus_score`
//! - Preprocessing: each segment is right-stripped of whitespace (`str.rstrip()`), then run
//!   through sacreBLEU's `13a` tokenizer ([`tokenize_13a`], mteval-v13a's rules): remove
//!   `<skipped>`, join `-\n`, turn `\n` into a space, unescape `&quot;` `&amp;` `&lt;` `&gt;`
//!   (in that order, only when the line has a `&`), then its four regexes (space out ASCII
//!   punctuation and symbols except `'` `,` `-` `.`; split `.`/`,` unless preceded, then unless
//!   followed, by an ASCII digit; split `-` after a digit) applied as Python's `re.sub` applies
//!   them (left to right, non-overlapping), and whitespace normalisation. Case-sensitive.
//! - Whitespace everywhere (stripping, splitting into tokens) is Python's `str.isspace()`, which is
//!   Unicode's `White_Space` plus the ASCII separators U+001C..U+001F ([`is_python_whitespace`]).
//! - Word n-grams of order 1..=4. Multi-reference: a hypothesis n-gram is clipped at the largest
//!   count it has in any one of its references; the reference length of a segment is the
//!   reference length closest to the hypothesis length, the shorter one on a tie.
//! - Corpus statistics (matches, totals, lengths) are summed over segments, then: brevity
//!   penalty `exp(1 - r/c)` when `c < r` (0 when `c = 0`); `exp` smoothing (mteval's: the k-th
//!   order with no match gets precision `100 / (2^k * total)`); an order with no hypothesis
//!   n-gram at all (every hypothesis shorter than it) keeps precision 0, i.e. BLEU 0; no match
//!   at any order gives BLEU 0 directly. No effective order (sacreBLEU's corpus default).
//!
//! # chrF ([`corpus_chrf`]) = `sacrebleu.metrics.CHRF().corpus_score`
//! - chrF2: character n-grams of order 1..=6 (Unicode scalar values, as Python indexes `str`)
//!   after removing all whitespace, no word n-grams, beta 2, case-sensitive, no tokenization.
//! - Per segment and order: (hypothesis n-grams, reference n-grams, matches); the hypothesis
//!   count is 0 for an order at which the reference has no n-gram (sacreBLEU's rule).
//!   Multi-reference: the statistics of the reference with the best segment-level chrF are
//!   kept (the first one on a tie). Statistics are summed over the corpus; the score averages
//!   precision and recall over the orders where both the hypothesis and the reference have
//!   n-grams (sacreBLEU's default effective-order smoothing, not the `eps_smoothing` variant).
//!
//! # ROUGE-L ([`corpus_rouge_l`]) = `rouge_score` `RougeScorer(["rougeL"], use_stemmer=False)`
//! - Tokens ([`rouge_tokens`]): lowercase, every character outside ASCII `[a-z0-9]` separates
//!   tokens (so `café` gives `caf`, `İstanbul` gives `i` `stanbul`, as in `rouge_score`).
//! - Sentence score ([`sentence_rouge_l`]): LCS F-measure `2PR / (P + R)` with `P = LCS / |hyp|`,
//!   `R = LCS / |ref|`, 0 when either side has no token; several references: the best F
//!   (`RougeScorer.score_multi`).
//! - Corpus score: the mean of the sentence F-measures (summed left to right) times 100.
//!   `rouge_score` itself has no corpus score; this mean is what summarisation and NLG papers
//!   usually report. No stemming, no `rougeLsum`.
//!
//! # Inputs
//! An empty corpus is an error ([`DataError::InvalidArgument`]; sacreBLEU raises `IndexError` on it and a
//! mean over no sentence is undefined), so is a hypothesis without any reference, and so are
//! `hypotheses` and `references` of different lengths ([`DataError::LengthMismatch`]; sacreBLEU
//! would silently truncate). Empty strings are fine on either side: an empty hypothesis counts 0
//! tokens (BLEU's brevity penalty sees it), an empty reference is a reference with 0 tokens.
//!
//! METEOR is not implemented (it needs WordNet and a stemmer); chrF is the second metric.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::error::DataError;

/// BLEU's maximum n-gram order (sacreBLEU's `MAX_NGRAM_ORDER`).
pub const BLEU_MAX_ORDER: usize = 4;
/// chrF's maximum character n-gram order (sacreBLEU's `CHRF.CHAR_ORDER`).
pub const CHRF_CHAR_ORDER: usize = 6;
/// chrF's beta: recall weighs `beta²` times precision (sacreBLEU's `CHRF.BETA`).
pub const CHRF_BETA: u32 = 2;

/// A corpus BLEU score with its sufficient statistics, the fields of sacreBLEU's `BLEUScore`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bleu {
    /// BLEU in `0..=100`.
    pub score: f64,
    /// Clipped n-gram matches per order 1..=4, summed over the corpus.
    pub counts: [usize; BLEU_MAX_ORDER],
    /// Hypothesis n-grams per order 1..=4, summed over the corpus.
    pub totals: [usize; BLEU_MAX_ORDER],
    /// Smoothed n-gram precisions per order, in `0..=100`.
    pub precisions: [f64; BLEU_MAX_ORDER],
    /// Brevity penalty in `0..=1`.
    pub bp: f64,
    /// Hypothesis tokens in the corpus (after 13a tokenization).
    pub sys_len: usize,
    /// Reference tokens in the corpus: per segment the reference length closest to the hypothesis.
    pub ref_len: usize,
}

/// Whether Python's `str.isspace()` holds for `c`, the whitespace `str.split()` and
/// `str.rstrip()` use: Unicode `White_Space` (Rust's [`char::is_whitespace`]) plus the ASCII
/// information separators U+001C..=U+001F.
pub fn is_python_whitespace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `s.split()`: the non-empty runs between whitespace.
fn python_split(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_python_whitespace).filter(|t| !t.is_empty())
}

/// sacreBLEU's `13a` tokenizer (`Tokenizer13a()(line)`, mteval-v13a.pl's tokenization): the
/// tokens of `line` joined by single spaces. See the module doc for the rules.
pub fn tokenize_13a(line: &str) -> String {
    let mut line = line.replace("<skipped>", "").replace("-\n", "").replace('\n', " ");
    if line.contains('&') {
        line = line.replace("&quot;", "\"").replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">");
    }
    // Regex 1: ([\{-\~\[-\` -\&\(-\+\:-\@\/]) -> " \1 ".
    let mut chars: Vec<char> = Vec::with_capacity(line.len() * 2 + 2);
    for c in std::iter::once(' ').chain(line.chars()).chain(std::iter::once(' ')) {
        if matches!(c, '{'..='~' | '['..='`' | ' '..='&' | '('..='+' | ':'..='@' | '/') {
            chars.extend([' ', c, ' ']);
        } else {
            chars.push(c);
        }
    }
    let period_comma = |c: char| c == '.' || c == ',';
    // Regex 2: ([^0-9])([\.,]) -> "\1 \2 ".
    let chars = substitute_pairs(&chars, |a, b| !a.is_ascii_digit() && period_comma(b), |a, b| [a, ' ', b, ' ']);
    // Regex 3: ([\.,])([^0-9]) -> " \1 \2".
    let chars = substitute_pairs(&chars, |a, b| period_comma(a) && !b.is_ascii_digit(), |a, b| [' ', a, ' ', b]);
    // Regex 4: ([0-9])(-) -> "\1 \2 ".
    let chars = substitute_pairs(&chars, |a, b| a.is_ascii_digit() && b == '-', |a, b| [a, ' ', b, ' ']);
    let text: String = chars.into_iter().collect();
    python_split(&text).collect::<Vec<_>>().join(" ")
}

/// `re.sub` of a two-character pattern: scanning left to right, every non-overlapping pair
/// `(a, b)` with `matches(a, b)` is replaced by `replace(a, b)`.
fn substitute_pairs(
    chars: &[char],
    matches: impl Fn(char, char) -> bool,
    replace: impl Fn(char, char) -> [char; 4],
) -> Vec<char> {
    let mut out = Vec::with_capacity(chars.len() + chars.len() / 2);
    let mut i = 0;
    while i < chars.len() {
        if i + 1 < chars.len() && matches(chars[i], chars[i + 1]) {
            out.extend(replace(chars[i], chars[i + 1]));
            i += 2;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// BLEU's view of a segment: `rstrip`, then 13a, then split.
fn bleu_tokens(segment: &str) -> Vec<String> {
    python_split(&tokenize_13a(segment.trim_end_matches(is_python_whitespace))).map(str::to_string).collect()
}

/// Counts of every n-gram of order `1..=max_order` (n-grams of any order as token slices).
fn ngram_counts<T: Eq + std::hash::Hash>(items: &[T], orders: std::ops::RangeInclusive<usize>) -> HashMap<&[T], usize> {
    let mut counts = HashMap::new();
    for n in orders {
        for gram in items.windows(n) {
            *counts.entry(gram).or_insert(0) += 1;
        }
    }
    counts
}

/// Checks the corpus shape shared by all metrics.
fn check_corpus<R>(hypotheses: usize, references: &[Vec<R>]) -> Result<(), DataError> {
    if hypotheses == 0 {
        return Err(DataError::InvalidArgument {
            name: "hypotheses",
            value: "an empty corpus".to_string(),
            expected: "at least one hypothesis (a corpus score of no sentence is undefined)".to_string(),
        });
    }
    if references.len() != hypotheses {
        return Err(DataError::LengthMismatch {
            what: "references (one list of references per hypothesis)".to_string(),
            expected: hypotheses,
            found: references.len(),
        });
    }
    if let Some(i) = references.iter().position(|r| r.is_empty()) {
        return Err(DataError::InvalidArgument {
            name: "references",
            value: format!("no reference for hypothesis {i}"),
            expected: "one or more references per hypothesis".to_string(),
        });
    }
    Ok(())
}

/// sacreBLEU's `my_log`: `ln`, with `ln 0` floored at `-9999999999`.
fn floored_ln(x: f64) -> f64 {
    if x == 0.0 { -9_999_999_999.0 } else { x.ln() }
}

/// Corpus BLEU exactly as sacreBLEU's default `BLEU().corpus_score(hypotheses, references)`
/// (13a tokenizer, case-sensitive, orders 1..=4, `exp` smoothing), with `references[i]` the
/// references of `hypotheses[i]` (sacreBLEU's reference streams transposed). See the module doc.
///
/// # Errors
/// [`DataError::InvalidArgument`] for an empty corpus or a hypothesis without references,
/// [`DataError::LengthMismatch`] when the two slices differ in length.
pub fn corpus_bleu<H: AsRef<str>, R: AsRef<str>>(hypotheses: &[H], references: &[Vec<R>]) -> Result<Bleu, DataError> {
    check_corpus(hypotheses.len(), references)?;
    let (mut counts, mut totals) = ([0usize; BLEU_MAX_ORDER], [0usize; BLEU_MAX_ORDER]);
    let (mut sys_len, mut ref_len) = (0usize, 0usize);
    for (hypothesis, refs) in hypotheses.iter().zip(references) {
        let ref_tokens: Vec<Vec<String>> = refs.iter().map(|r| bleu_tokens(r.as_ref())).collect();
        let mut ref_max: HashMap<&[String], usize> = HashMap::new();
        for tokens in &ref_tokens {
            for (gram, count) in ngram_counts(tokens, 1..=BLEU_MAX_ORDER) {
                let best = ref_max.entry(gram).or_insert(0);
                *best = (*best).max(count);
            }
        }
        let hyp_tokens = bleu_tokens(hypothesis.as_ref());
        let hyp_len = hyp_tokens.len();
        // sacreBLEU's _get_closest_ref_len: smallest |hyp - ref|, the shorter reference on a tie.
        let mut closest: Option<(usize, usize)> = None;
        for len in ref_tokens.iter().map(Vec::len) {
            let diff = hyp_len.abs_diff(len);
            closest = match closest {
                Some((d, l)) if diff > d || (diff == d && len >= l) => Some((d, l)),
                _ => Some((diff, len)),
            };
        }
        sys_len += hyp_len;
        ref_len += closest.map_or(0, |(_, len)| len);
        for (gram, count) in ngram_counts(&hyp_tokens, 1..=BLEU_MAX_ORDER) {
            let n = gram.len() - 1;
            totals[n] += count;
            counts[n] += count.min(ref_max.get(gram).copied().unwrap_or(0));
        }
    }
    Ok(bleu_from_stats(counts, totals, sys_len, ref_len))
}

/// sacreBLEU's `BLEU.compute_bleu` with `smooth_method="exp"` and no effective order.
fn bleu_from_stats(
    counts: [usize; BLEU_MAX_ORDER],
    totals: [usize; BLEU_MAX_ORDER],
    sys_len: usize,
    ref_len: usize,
) -> Bleu {
    let bp = if sys_len >= ref_len {
        1.0
    } else if sys_len > 0 {
        (1.0 - ref_len as f64 / sys_len as f64).exp()
    } else {
        0.0
    };
    let mut precisions = [0.0; BLEU_MAX_ORDER];
    let mut bleu = Bleu { score: 0.0, counts, totals, precisions, bp, sys_len, ref_len };
    if counts.iter().all(|&c| c == 0) {
        return bleu;
    }
    let mut smooth = 1.0;
    for n in 0..BLEU_MAX_ORDER {
        if totals[n] == 0 {
            break;
        }
        precisions[n] = if counts[n] == 0 {
            smooth *= 2.0;
            100.0 / (smooth * totals[n] as f64)
        } else {
            100.0 * counts[n] as f64 / totals[n] as f64
        };
    }
    let log_sum = precisions.iter().fold(0.0, |sum, &p| sum + floored_ln(p));
    bleu.score = bp * (log_sum / BLEU_MAX_ORDER as f64).exp();
    bleu.precisions = precisions;
    bleu
}

/// chrF statistics of one segment: per order, (hypothesis n-grams, reference n-grams, matches).
type ChrfStats = [[usize; 3]; CHRF_CHAR_ORDER];

/// Character n-gram counts of orders 1..=6 after removing whitespace, one map per order.
fn char_ngrams(chars: &[char]) -> Vec<HashMap<&[char], usize>> {
    (1..=CHRF_CHAR_ORDER).map(|n| ngram_counts(chars, n..=n)).collect()
}

/// sacreBLEU's `CHRF._compute_f_score` (default: effective-order averaging, no eps smoothing).
fn chrf_from_stats(stats: &ChrfStats) -> f64 {
    const EPS: f64 = 1e-16;
    let factor = f64::from(CHRF_BETA * CHRF_BETA);
    let (mut avg_prec, mut avg_rec, mut effective_order) = (0.0, 0.0, 0usize);
    for &[n_hyp, n_ref, n_match] in stats {
        let prec = if n_hyp > 0 { n_match as f64 / n_hyp as f64 } else { EPS };
        let rec = if n_ref > 0 { n_match as f64 / n_ref as f64 } else { EPS };
        if n_hyp > 0 && n_ref > 0 {
            avg_prec += prec;
            avg_rec += rec;
            effective_order += 1;
        }
    }
    if effective_order == 0 {
        (avg_prec, avg_rec) = (0.0, 0.0);
    } else {
        avg_prec /= effective_order as f64;
        avg_rec /= effective_order as f64;
    }
    if avg_prec + avg_rec != 0.0 {
        let mut score = (1.0 + factor) * avg_prec * avg_rec;
        score /= factor * avg_prec + avg_rec;
        100.0 * score
    } else {
        0.0
    }
}

/// Corpus chrF2 exactly as sacreBLEU's default `CHRF().corpus_score(hypotheses, references)`, in
/// `0..=100`, with `references[i]` the references of `hypotheses[i]`. See the module doc.
///
/// # Errors
/// As [`corpus_bleu`].
pub fn corpus_chrf<H: AsRef<str>, R: AsRef<str>>(hypotheses: &[H], references: &[Vec<R>]) -> Result<f64, DataError> {
    check_corpus(hypotheses.len(), references)?;
    let mut corpus: ChrfStats = [[0; 3]; CHRF_CHAR_ORDER];
    for (hypothesis, refs) in hypotheses.iter().zip(references) {
        let hyp_chars: Vec<char> = hypothesis.as_ref().chars().filter(|&c| !is_python_whitespace(c)).collect();
        let hyp_ngrams = char_ngrams(&hyp_chars);
        let mut best: Option<(f64, ChrfStats)> = None;
        for reference in refs {
            let ref_chars: Vec<char> = reference.as_ref().chars().filter(|&c| !is_python_whitespace(c)).collect();
            let ref_ngrams = char_ngrams(&ref_chars);
            let mut stats: ChrfStats = [[0; 3]; CHRF_CHAR_ORDER];
            for (order, (h, r)) in stats.iter_mut().zip(hyp_ngrams.iter().zip(&ref_ngrams)) {
                let hyp_count: usize = h.values().sum();
                let matches: usize = h.iter().map(|(gram, &c)| c.min(r.get(gram).copied().unwrap_or(0))).sum();
                // sacreBLEU: no hypothesis count for an order at which the reference has no n-gram.
                *order = [if r.is_empty() { 0 } else { hyp_count }, r.values().sum(), matches];
            }
            let f = chrf_from_stats(&stats);
            if best.is_none_or(|(best_f, _)| f > best_f) {
                best = Some((f, stats));
            }
        }
        let (_, stats) = best.expect("check_corpus guarantees a reference");
        for (total, segment) in corpus.iter_mut().zip(stats) {
            for (t, s) in total.iter_mut().zip(segment) {
                *t += s;
            }
        }
    }
    Ok(chrf_from_stats(&corpus))
}

/// `rouge_score`'s default tokenizer without stemming: lowercase, then the maximal runs of ASCII
/// `[a-z0-9]` are the tokens.
pub fn rouge_tokens(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut current = String::new();
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            current.push(c);
        } else if !current.is_empty() {
            tokens.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        tokens.push(current);
    }
    tokens
}

/// Length of the longest common subsequence of two token sequences.
fn lcs_len(a: &[String], b: &[String]) -> usize {
    let mut row = vec![0usize; b.len() + 1];
    for x in a {
        let mut diagonal = 0;
        for (j, y) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if x == y { diagonal + 1 } else { above.max(row[j]) };
            diagonal = above;
        }
    }
    row[b.len()]
}

/// `rouge_score`'s `_score_lcs(target, prediction).fmeasure`.
fn lcs_fmeasure(reference: &[String], hypothesis: &[String]) -> f64 {
    if reference.is_empty() || hypothesis.is_empty() {
        return 0.0;
    }
    let lcs = lcs_len(reference, hypothesis) as f64;
    let precision = lcs / hypothesis.len() as f64;
    let recall = lcs / reference.len() as f64;
    if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 }
}

/// ROUGE-L F-measure of one hypothesis in `0..=1`: the best over its references, as
/// `RougeScorer(["rougeL"]).score_multi(references, hypothesis)["rougeL"].fmeasure`
/// (0 for no reference).
pub fn sentence_rouge_l<R: AsRef<str>>(hypothesis: &str, references: &[R]) -> f64 {
    let hyp = rouge_tokens(hypothesis);
    references.iter().map(|r| lcs_fmeasure(&rouge_tokens(r.as_ref()), &hyp)).fold(0.0, f64::max)
}

/// Corpus ROUGE-L in `0..=100`: 100 times the mean of [`sentence_rouge_l`] over the hypotheses,
/// with `references[i]` the references of `hypotheses[i]`. See the module doc.
///
/// # Errors
/// As [`corpus_bleu`].
pub fn corpus_rouge_l<H: AsRef<str>, R: AsRef<str>>(hypotheses: &[H], references: &[Vec<R>]) -> Result<f64, DataError> {
    check_corpus(hypotheses.len(), references)?;
    let total = hypotheses.iter().zip(references).fold(0.0, |sum, (h, refs)| sum + sentence_rouge_l(h.as_ref(), refs));
    Ok(100.0 * (total / hypotheses.len() as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitute_pairs_is_non_overlapping_left_to_right() {
        let chars: Vec<char> = "a..b".chars().collect();
        let out: String = substitute_pairs(&chars, |a, b| !a.is_ascii_digit() && b == '.', |a, b| [a, ' ', b, ' '])
            .into_iter()
            .collect();
        // (a .) matches; the second '.' was consumed as part of nothing, (. b) is no match.
        assert_eq!(out, "a . .b");
    }

    #[test]
    fn lcs_of_small_sequences() {
        let t = |s: &str| s.split(' ').map(str::to_string).collect::<Vec<_>>();
        assert_eq!(lcs_len(&t("a b c d"), &t("b d a")), 2);
        assert_eq!(lcs_len(&t("a"), &t("b")), 0);
        assert_eq!(lcs_len(&t("a b a"), &t("a b a")), 3);
    }
}
