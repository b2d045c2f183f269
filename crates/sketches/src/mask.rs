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
    let b = text.as_bytes();
    let mut i = 0;
    let mut sentence_start = true;
    let start_len = out.len();
    while i < b.len() && out.len() - start_len < max {
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
            out.push(CODE);
            i = end;
            sentence_start = false;
            continue;
        }
        if c == b'`' {
            let end = b[i + 1..]
                .iter()
                .position(|&x| x == b'`' || x == b'\n')
                .map_or(b.len(), |e| i + 1 + e + 1);
            out.push(CODE);
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
                out.push(Q);
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
            out.push(URL);
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
                out.push(ID);
            } else {
                out.push(N);
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
                out.push(ID);
            } else if !sentence_start
                && w[0].is_ascii_uppercase()
                && w.len() > 1
                && w.iter().skip(1).any(u8::is_ascii_lowercase)
            {
                out.push(NAME);
            } else {
                out.push(hash_ascii_lower(w));
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
            out.push(hash_bytes(&b[i..i + len]));
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
            let lower = text[s..i].to_lowercase();
            out.push(hash_bytes(lower.as_bytes()));
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
