//! Offline text tokenization from a Hugging Face `tokenizer.json` (the `tokenizers` crate),
//! with batch padding and truncation done here so the file's own padding settings never
//! leak in.

use std::path::{Path, PathBuf};

use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::error::{ModelError, Result};

/// A padded batch. Every row has the same length (the longest row, at most `max_len`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedBatch {
    /// `[B][S]` token ids.
    pub input_ids: Vec<Vec<i64>>,
    /// `[B][S]`, 1 = token, 0 = padding.
    pub attention_mask: Vec<Vec<i64>>,
    /// `[B][S]` segment ids (0 for single texts and T5).
    pub token_type_ids: Vec<Vec<i64>>,
}

impl EncodedBatch {
    /// Batch size.
    pub fn len(&self) -> usize {
        self.input_ids.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }

    /// Padded sequence length.
    pub fn seq_len(&self) -> usize {
        self.input_ids.first().map_or(0, Vec::len)
    }
}

/// A loaded `tokenizer.json`.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    path: PathBuf,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer").field("path", &self.path).finish()
    }
}

impl TextTokenizer {
    /// Loads `path` (a `tokenizer.json`).
    pub fn from_file(path: &Path) -> Result<Self> {
        let mut inner = Tokenizer::from_file(path)
            .map_err(|e| ModelError::Tokenizer { path: path.to_path_buf(), message: e.to_string() })?;
        inner.with_padding(None);
        Ok(Self { inner, path: path.to_path_buf() })
    }

    /// The file it came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The id of `token`, if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<i64> {
        self.inner.token_to_id(token).map(i64::from)
    }

    fn err(&self, e: impl std::fmt::Display) -> ModelError {
        ModelError::Tokenizer { path: self.path.clone(), message: e.to_string() }
    }

    /// Encodes single texts or pairs with special tokens, truncating each (pair: longest
    /// first) to `max_len` tokens. Returns unpadded `(ids, token_type_ids)` rows.
    pub fn encode_rows(&self, inputs: &[(&str, Option<&str>)], max_len: usize) -> Result<Vec<(Vec<i64>, Vec<i64>)>> {
        let mut tokenizer = self.inner.clone();
        tokenizer
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length: max_len,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| self.err(e))?;
        inputs
            .iter()
            .map(|(a, b)| {
                let encoding = match b {
                    Some(b) => tokenizer.encode((*a, *b), true),
                    None => tokenizer.encode(*a, true),
                }
                .map_err(|e| self.err(e))?;
                Ok((
                    encoding.get_ids().iter().map(|&i| i64::from(i)).collect(),
                    encoding.get_type_ids().iter().map(|&i| i64::from(i)).collect(),
                ))
            })
            .collect()
    }

    /// [`encode_rows`](Self::encode_rows), then pads the batch with `pad_id` to its longest row.
    pub fn encode_batch(&self, inputs: &[(&str, Option<&str>)], max_len: usize, pad_id: i64) -> Result<EncodedBatch> {
        let rows = self.encode_rows(inputs, max_len)?;
        Ok(pad_rows(rows.iter().map(|(ids, types)| (ids.as_slice(), types.as_slice())), pad_id))
    }

    /// Token ids of `text` with special tokens (for T5 targets this appends `</s>`).
    pub fn encode_ids(&self, text: &str, max_len: usize) -> Result<Vec<i64>> {
        Ok(self.encode_batch(&[(text, None)], max_len, 0)?.input_ids.pop().unwrap_or_default())
    }

    /// Text for `ids`, special tokens skipped.
    pub fn decode(&self, ids: &[i64]) -> Result<String> {
        let ids: Vec<u32> = ids.iter().filter_map(|&i| u32::try_from(i).ok()).collect();
        self.inner.decode(&ids, true).map_err(|e| self.err(e))
    }
}

/// Pads `(ids, token_type_ids)` rows to the longest with `pad_id` (types with 0) and builds
/// the attention mask.
pub fn pad_rows<'a>(rows: impl Iterator<Item = (&'a [i64], &'a [i64])> + Clone, pad_id: i64) -> EncodedBatch {
    let len = rows.clone().map(|(ids, _)| ids.len()).max().unwrap_or(0);
    let mut batch = EncodedBatch { input_ids: Vec::new(), attention_mask: Vec::new(), token_type_ids: Vec::new() };
    for (ids, types) in rows {
        let mut ids = ids.to_vec();
        let mut types = types.to_vec();
        let mut mask = vec![1i64; ids.len()];
        ids.resize(len, pad_id);
        types.resize(len, 0);
        mask.resize(len, 0);
        batch.input_ids.push(ids);
        batch.attention_mask.push(mask);
        batch.token_type_ids.push(types);
    }
    batch
}
