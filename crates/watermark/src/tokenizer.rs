/*!
An offline BPE tokenizer, so that text from anywhere can be scored.

It uses OpenAI's `cl100k_base` encoding (about 100,000 tokens); the ranks
ship inside the `tiktoken-rs` crate, so nothing is downloaded. A watermark
is detected on the tokenizer that generated it. Text that went through
another tokenizer can still be scored after re-tokenizing it here, because
the same words give the same tokens. This is how evidence is gathered on
text copied out of an API and pasted elsewhere.
*/

/// The tokenizer (`cl100k_base`).
pub struct Tokenizer {
    bpe: tiktoken_rs::CoreBPE,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("loading the cl100k_base ranks: {0}")]
    Load(String),
    #[error("decoding tokens: {0}")]
    Decode(String),
}

impl Tokenizer {
    pub fn cl100k() -> Result<Tokenizer, TokenizerError> {
        tiktoken_rs::cl100k_base()
            .map(|bpe| Tokenizer { bpe })
            .map_err(|e| TokenizerError::Load(e.to_string()))
    }

    /// Token ids of `text` (special tokens are treated as plain text).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.bpe.encode_ordinary(text)
    }

    pub fn decode(&self, tokens: &[u32]) -> Result<String, TokenizerError> {
        self.bpe
            .decode(tokens.to_vec())
            .map_err(|e| TokenizerError::Decode(e.to_string()))
    }

    /// Ids run from 0 to this (exclusive); a few near the top are special.
    pub const VOCAB: usize = 100_277;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trips_and_matches_known_ids() {
        let t = Tokenizer::cl100k().unwrap();
        // "hello world" is [15339, 1917] in cl100k_base.
        assert_eq!(t.encode("hello world"), [15339, 1917]);
        let text = "Distillation: 蒸留 — step by step. <|endoftext|>";
        assert_eq!(t.decode(&t.encode(text)).unwrap(), text);
        assert!(
            t.encode(text)
                .iter()
                .all(|&id| (id as usize) < Tokenizer::VOCAB)
        );
    }
}
