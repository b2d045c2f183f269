/*!
Redacted prompt samples: what an analyst may see of a flagged account.

Privacy by default: the report holds no prompt text unless samples are
asked for (`analyze --samples N`), and then only up to N per flagged
account, each cut to [`SAMPLE_CHARS`] characters with numbers, e-mail
addresses, URLs and long identifiers masked — enough to recognise a
template, not to recover a user's data.
*/

/// Characters kept of a sample.
pub const SAMPLE_CHARS: usize = 160;

/// Masks numbers, e-mail addresses, URLs and long identifiers, then cuts
/// to [`SAMPLE_CHARS`] characters.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(SAMPLE_CHARS + 8);
    let mut cut_short = false;
    for word in text.split_inclusive(char::is_whitespace) {
        if out.chars().count() >= SAMPLE_CHARS {
            cut_short = true;
            break;
        }
        let core = word.trim_end();
        let ws = &word[core.len()..];
        let masked: String = if core.contains('@') && core.contains('.') {
            "[email]".into()
        } else if core.starts_with("http://")
            || core.starts_with("https://")
            || core.starts_with("www.")
        {
            "[url]".into()
        } else if core.len() >= 12
            && core.chars().any(|c| c.is_ascii_digit())
            && core.chars().any(|c| c.is_ascii_alphabetic())
        {
            "[id]".into()
        } else {
            let mut m = String::with_capacity(core.len());
            let mut in_num = false;
            for c in core.chars() {
                if c.is_ascii_digit() {
                    if !in_num {
                        m.push('#');
                    }
                    in_num = true;
                } else {
                    in_num = false;
                    m.push(c);
                }
            }
            m
        };
        out.push_str(&masked);
        out.push_str(if ws.contains('\n') { " " } else { ws });
    }
    let cut: String = out.chars().take(SAMPLE_CHARS).collect();
    if cut_short || out.chars().count() > SAMPLE_CHARS {
        format!("{}…", cut.trim_end())
    } else {
        cut.trim_end().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_personal_details_and_bounds_length() {
        let r = redact(
            "Contact alice.smith@example.com about order 12345 at https://shop.example/x?id=9 key sk_live_4f8a9b7c6d5e today",
        );
        assert!(
            !r.contains("alice")
                && !r.contains("12345")
                && !r.contains("shop.example")
                && !r.contains("4f8a9b"),
            "{r}"
        );
        assert!(
            r.contains("[email]") && r.contains("#") && r.contains("[url]") && r.contains("[id]"),
            "{r}"
        );
        let long = redact(&"word ".repeat(200));
        assert!(long.chars().count() <= SAMPLE_CHARS + 1 && long.ends_with('…'));
        assert_eq!(
            redact("Solve 3x + 5 = 20 step by step"),
            "Solve #x + # = # step by step"
        );
    }
}
