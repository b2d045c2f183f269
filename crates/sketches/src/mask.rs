/*!
Template masking: a prompt's fixed wording survives, its variable parts
become placeholders.

Scripts that harvest a model fill one template with fresh content: new
numbers, new code, new names, new quoted passages. Masking those parts
makes every instance of a template produce nearly the same token stream,
while two honest prompts stay as different as their wording. Tokens:
lowercased words; `<n>` numbers; `<code>` fenced or inline code; `<q>`
quoted passages; `<url>`; `<id>` identifiers mixing letters and digits;
`<name>` capitalised words inside a sentence; one token per CJK character
(those scripts do not separate words). Output is token hashes; the text is
not kept. Cost: one pass over the prompt, no allocation beyond `out`.
*/

use crate::{hash_ascii_lower, hash_bytes};

const N: u64 = hash_bytes(b"<n>");
const CODE: u64 = hash_bytes(b"<code>");
const Q: u64 = hash_bytes(b"<q>");
const URL: u64 = hash_bytes(b"<url>");
const ID: u64 = hash_bytes(b"<id>");
const NAME: u64 = hash_bytes(b"<name>");

fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF      // kana
        | 0x3400..=0x4DBF    // CJK ext A
        | 0x4E00..=0x9FFF    // CJK unified
        | 0xAC00..=0xD7AF    // hangul
        | 0xF900..=0xFAFF)
}

/// Appends the masked token hashes of `text` to `out` (at most `max` tokens).
pub fn mask_tokens(text: &str, out: &mut Vec<u64>, max: usize) {
    mask_with(text, max, |t| out.push(t.hash(text)));
}

/// A masked token before its hash is taken: a word's hash is the one cost
/// of masking that grows with the word, and a caller that keeps only some
/// tokens (the template edges) hashes only those.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    /// A placeholder or an already hashed token.
    Hash(u64),
    /// An ASCII word at these byte offsets, hashed case-folded.
    Ascii(u32, u32),
    /// A word in another alphabetic script at these byte offsets, hashed
    /// lowercased.
    Word(u32, u32),
}

impl Token {
    /// The token's hash (`text` is the text it was masked from).
    pub fn hash(self, text: &str) -> u64 {
        match self {
            Token::Hash(h) => h,
            Token::Ascii(s, e) => hash_ascii_lower(&text.as_bytes()[s as usize..e as usize]),
            Token::Word(s, e) => hash_bytes(text[s as usize..e as usize].to_lowercase().as_bytes()),
        }
    }
}

/// [`mask_tokens`]' pass, handing each token to `emit` unhashed (at most
/// `max` tokens). Offsets are `u32`: text past 4 GiB is not read.
pub fn mask_with(text: &str, max: usize, mut emit: impl FnMut(Token)) {
    let mut end = text.len().min(u32::MAX as usize);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let text = &text[..end];
    let b = text.as_bytes();
    let mut i = 0;
    let mut sentence_start = true;
    let n = std::cell::Cell::new(0usize);
    let mut out = |t: Token| {
        n.set(n.get() + 1);
        emit(t);
    };
    while i < b.len() && n.get() < max {
        let c = b[i];
        // Spaces and punctuation (most bytes between words) first: none of
        // the cases below starts with them.
        if c < 0x80 && !c.is_ascii_alphanumeric() && !matches!(c, b'`' | b'"' | b'_') {
            if matches!(c, b'.' | b'!' | b'?' | b'\n' | b':') {
                sentence_start = true;
            }
            i += 1;
            continue;
        }
        // Fenced code block.
        if c == b'`' && b[i..].starts_with(b"```") {
            let end = find(b, i + 3, b"```").map_or(b.len(), |e| e + 3);
            out(Token::Hash(CODE));
            i = end;
            sentence_start = false;
            continue;
        }
        if c == b'`' {
            let end = b[i + 1..]
                .iter()
                .position(|&x| x == b'`' || x == b'\n')
                .map_or(b.len(), |e| i + 1 + e + 1);
            out(Token::Hash(CODE));
            i = end;
            continue;
        }
        if c == b'"' {
            // A quoted passage (up to 400 bytes on one paragraph).
            if let Some(e) = b[i + 1..]
                .iter()
                .take(400)
                .position(|&x| x == b'"' || x == b'\n')
                && b[i + 1 + e] == b'"'
            {
                out(Token::Hash(Q));
                i += e + 2;
                continue;
            }
            i += 1;
            continue;
        }
        if c == b'h' && (b[i..].starts_with(b"http://") || b[i..].starts_with(b"https://")) {
            let end = b[i..]
                .iter()
                .position(|x| x.is_ascii_whitespace())
                .map_or(b.len(), |e| i + e);
            out(Token::Hash(URL));
            i = end;
            continue;
        }
        if c.is_ascii_digit() {
            while i < b.len()
                && (b[i].is_ascii_digit()
                    || ((b[i] == b'.' || b[i] == b',')
                        && i + 1 < b.len()
                        && b[i + 1].is_ascii_digit()))
            {
                i += 1;
            }
            // A number glued to letters is an identifier (e.g. `x2`, `3d`).
            if i < b.len() && b[i].is_ascii_alphabetic() {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                out(Token::Hash(ID));
            } else {
                out(Token::Hash(N));
            }
            sentence_start = false;
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            let s = i;
            let (mut digits, mut underscore) = (false, false);
            while let Some(&x) = b.get(i) {
                if x.is_ascii_alphabetic() || x == b'\'' {
                } else if x.is_ascii_digit() {
                    digits = true;
                } else if x == b'_' {
                    underscore = true;
                } else {
                    break;
                }
                i += 1;
            }
            let w = &b[s..i];
            if digits || underscore && w.len() > 3 {
                out(Token::Hash(ID));
            } else if !sentence_start
                && w[0].is_ascii_uppercase()
                && w.len() > 1
                && w.iter().skip(1).any(u8::is_ascii_lowercase)
            {
                out(Token::Hash(NAME));
            } else {
                out(Token::Ascii(s as u32, i as u32));
            }
            sentence_start = false;
            continue;
        }
        if c < 0x80 {
            if matches!(c, b'.' | b'!' | b'?' | b'\n' | b':') {
                sentence_start = true;
            }
            i += 1;
            continue;
        }
        // Non-ASCII: decode one char.
        let ch = text[i..].chars().next().unwrap_or(' ');
        let len = ch.len_utf8();
        if is_cjk(ch) {
            out(Token::Hash(hash_bytes(&b[i..i + len])));
            sentence_start = false;
        } else if ch.is_alphabetic() {
            // A word in another alphabetic script (Cyrillic, accented Latin…).
            let s = i;
            for c2 in text[i..].chars() {
                if !c2.is_alphanumeric() || is_cjk(c2) {
                    break;
                }
                i += c2.len_utf8();
            }
            out(Token::Word(s as u32, i as u32));
            sentence_start = false;
            continue;
        } else if matches!(ch, '。' | '！' | '？' | '：') {
            sentence_start = true;
        }
        i += len;
    }
}

fn find(h: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    h.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<u64> {
        let mut v = Vec::new();
        mask_tokens(s, &mut v, 10_000);
        v
    }

    #[test]
    fn variable_parts_are_masked() {
        assert_eq!(
            toks("Alice buys 12 apples at $3.50 each. How much?"),
            toks("Alice buys 7 apples at $12 each. How much?")
        );
        // Names inside a sentence are masked; the first word of a sentence is not.
        assert_eq!(toks("Then Bob left."), toks("Then Chen left."));
        assert_ne!(toks("Explain this."), toks("Describe this."));
        assert_eq!(
            toks("Fix this:\n```\nfn a() {}\n```\nThanks"),
            toks("Fix this:\n```python\nprint(1)\nprint(2)\n```\nThanks")
        );
        assert_eq!(
            toks("Translate \"good morning\" now"),
            toks("Translate \"see you tomorrow, friend\" now")
        );
        assert_eq!(
            toks("see https://a.example/x?y=1 ok"),
            toks("see http://b.example ok")
        );
        assert_eq!(toks("call parse_bed9 now"), toks("call solve_a1f3 now"));
    }

    #[test]
    fn scripts_without_spaces_and_other_alphabets_tokenise() {
        assert_eq!(toks("请一步一步地思考").len(), 8);
        assert_eq!(toks("Рассуждай шаг за шагом").len(), 4);
        assert_eq!(toks("Рассуждай шаг"), toks("РАССУЖДАЙ ШАГ"));
    }

    #[test]
    fn max_tokens_bounds_the_work() {
        let long = "word ".repeat(10_000);
        let mut v = Vec::new();
        mask_tokens(&long, &mut v, 256);
        assert_eq!(v.len(), 256);
        // Never panics on odd input.
        for s in [
            "",
            "\"",
            "```",
            "`",
            "1.",
            "a\u{0301}",
            "日本",
            "\u{10FFFF}x",
            "https://",
        ] {
            toks(s);
        }
    }
}
