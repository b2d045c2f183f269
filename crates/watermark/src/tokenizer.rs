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
    /// Each token's bytes, made on first use (about 1 MB, once a process).
    bytes: std::sync::OnceLock<Vec<Box<[u8]>>>,
}

/// Ordinary tokens: ids `0..ORDINARY`, every one with bytes.
const ORDINARY: usize = 100_256;
/// The special tokens' ids (end of text, fill-in-the-middle, end of prompt).
const SPECIAL: [u32; 5] = [100_257, 100_258, 100_259, 100_260, 100_276];
/// U+FFFD, for an id with no bytes.
const REPLACEMENT: &[u8] = "\u{FFFD}".as_bytes();

/// Joins token bytes into text as they come: the complete characters are
/// given out at once, an incomplete one at the end is held back until its
/// next bytes arrive, and an invalid run becomes U+FFFD. Streaming an
/// answer token by token through it never splits a character.
#[derive(Default)]
pub struct Utf8Decoder {
    pending: Vec<u8>,
}

impl Utf8Decoder {
    /// Adds bytes; returns the text they complete.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        let mut from = 0;
        loop {
            match std::str::from_utf8(&self.pending[from..]) {
                Ok(s) => {
                    out.push_str(s);
                    from = self.pending.len();
                    break;
                }
                Err(e) => {
                    let good = from + e.valid_up_to();
                    out.push_str(
                        std::str::from_utf8(&self.pending[from..good]).unwrap_or_default(),
                    );
                    match e.error_len() {
                        // An incomplete character at the end: held back.
                        None => {
                            from = good;
                            break;
                        }
                        Some(n) => {
                            out.push('\u{FFFD}');
                            from = good + n;
                        }
                    }
                }
            }
        }
        self.pending.drain(..from);
        out
    }

    /// Bytes held back (at most 3: an incomplete character).
    pub fn held(&self) -> usize {
        self.pending.len()
    }

    /// The end of the stream: a character still incomplete becomes U+FFFD.
    pub fn finish(self) -> String {
        String::from_utf8_lossy(&self.pending).into_owned()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("loading the cl100k_base ranks: {0}")]
    Load(String),
}

impl Tokenizer {
    pub fn cl100k() -> Result<Tokenizer, TokenizerError> {
        tiktoken_rs::cl100k_base()
            .map(|bpe| Tokenizer {
                bpe,
                bytes: std::sync::OnceLock::new(),
            })
            .map_err(|e| TokenizerError::Load(e.to_string()))
    }

    /// Token ids of `text` (special tokens are treated as plain text).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.bpe.encode_ordinary(text)
    }

    /// The text of `tokens`. Never fails: a sampler can stop inside a
    /// multi-byte character (a BPE token may hold part of one), so an
    /// incomplete last character, an invalid byte run or an unknown id
    /// becomes U+FFFD instead of losing the answer.
    pub fn decode(&self, tokens: &[u32]) -> String {
        let mut d = Utf8Decoder::default();
        let mut text = String::new();
        for &t in tokens {
            text.push_str(&d.push(self.token_bytes(t).unwrap_or(REPLACEMENT)));
        }
        text.push_str(&d.finish());
        text
    }

    /// The bytes of one token (`None` for an id no token has). They need
    /// not be valid UTF-8 on their own; [`Utf8Decoder`] joins them.
    pub fn token_bytes(&self, token: u32) -> Option<&[u8]> {
        let ordinary = (token as usize) < ORDINARY;
        if !ordinary && !SPECIAL.contains(&token) {
            return None;
        }
        self.bytes
            .get_or_init(|| {
                (0..ORDINARY as u32)
                    .chain(SPECIAL)
                    .map(|t| {
                        self.bpe
                            ._decode_native_and_split(vec![t])
                            .next()
                            .unwrap_or_default()
                            .into_boxed_slice()
                    })
                    .collect()
            })
            .get(if ordinary {
                token as usize
            } else {
                ORDINARY + SPECIAL.iter().position(|&s| s == token)?
            })
            .map(|b| &**b)
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
        assert_eq!(t.decode(&t.encode(text)), text);
        assert!(
            t.encode(text)
                .iter()
                .all(|&id| (id as usize) < Tokenizer::VOCAB)
        );
    }

    #[test]
    fn every_id_decodes_and_an_answer_cut_mid_character_never_fails() {
        let t = Tokenizer::cl100k().unwrap();
        // Every ordinary and special id has bytes; the gaps have none.
        for id in 0..Tokenizer::VOCAB as u32 {
            let known = (id as usize) < ORDINARY || SPECIAL.contains(&id);
            assert_eq!(t.token_bytes(id).is_some(), known, "{id}");
        }
        // Non-Latin text whose characters span tokens: every prefix of
        // its tokens decodes, and token by token it comes out whole.
        for text in [
            "蒸留とは何ですか？段階的に説明してください。",
            "Объясни шаг за шагом, как работает дистилляция.",
            "कृपया चरण दर चरण समझाइए। 🤖🧠",
            "استدلال خطوة بخطوة",
        ] {
            let ids = t.encode(text);
            let mut split = false;
            for k in 0..=ids.len() {
                let part = t.decode(&ids[..k]);
                assert!(
                    text.starts_with(part.trim_end_matches('\u{FFFD}')),
                    "{part}"
                );
                split |= part.ends_with('\u{FFFD}');
            }
            let mut d = Utf8Decoder::default();
            let mut out = String::new();
            for &id in &ids {
                out.push_str(&d.push(t.token_bytes(id).unwrap()));
                assert!(d.held() <= 3);
            }
            assert_eq!(d.held(), 0);
            out.push_str(&d.finish());
            assert_eq!(out, text);
            if text.starts_with("कृपया") {
                assert!(split, "expected a token boundary inside a character");
            }
        }
    }

    #[test]
    fn the_decoder_holds_back_an_incomplete_tail_and_replaces_bad_bytes() {
        let bytes = "a蒸b".as_bytes();
        let mut d = Utf8Decoder::default();
        assert_eq!(d.push(&bytes[..2]), "a");
        assert_eq!(d.held(), 1);
        assert_eq!(d.push(&bytes[2..3]), "");
        assert_eq!(d.held(), 2);
        assert_eq!(d.push(&bytes[3..]), "蒸b");
        // A stray continuation byte in the middle is replaced, not held.
        assert_eq!(d.push(&[0x80, b'c']), "\u{FFFD}c");
        // An incomplete character at the end of the stream is replaced.
        assert_eq!(d.push(&bytes[1..3]), "");
        assert_eq!(d.finish(), "\u{FFFD}");
        // An unknown id decodes to U+FFFD.
        let t = Tokenizer::cl100k().unwrap();
        assert_eq!(t.decode(&[15339, 100_270, 1917]), "hello\u{FFFD} world");
    }
}
