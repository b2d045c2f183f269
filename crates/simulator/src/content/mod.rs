/*!
Prompt content in a dialect-neutral form.

Populations build a [`Prompt`] (system text, messages of typed blocks,
offered tools); `render` writes it as an OpenAI or Anthropic body.
- `tasks`: the variable content (problems, specs, datasets, topics).
- `templates`: the structures campaigns reuse, in several languages.
- `products`: what honest heavy customers send.
*/

pub mod products;
pub mod tasks;
pub mod templates;
pub mod wording;

use crate::rng::Rng;

#[derive(Debug, Clone)]
pub enum Block {
    Text(String),
    Image(String),
    ToolUse {
        id: String,
        name: &'static str,
        input: String,
    },
    ToolResult {
        id: String,
        text: String,
        image: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub struct Msg {
    pub user: bool,
    pub blocks: Vec<Block>,
}

impl Msg {
    pub fn user(text: impl Into<String>) -> Msg {
        Msg {
            user: true,
            blocks: vec![Block::Text(text.into())],
        }
    }
    pub fn assistant(text: impl Into<String>) -> Msg {
        Msg {
            user: false,
            blocks: vec![Block::Text(text.into())],
        }
    }
}

/// Tool sets offered with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tools {
    None,
    /// Research agent: web search, fetch, python.
    Agent,
    /// Coding agent: files and shell.
    Coding,
    /// Anthropic computer-use tool.
    Computer,
}

impl Tools {
    /// Tool names of the set (used for tool calls in history).
    pub fn names(self) -> &'static [&'static str] {
        match self {
            Tools::None => &[],
            Tools::Agent => &["web_search", "fetch_url", "run_python"],
            Tools::Coding => &[
                "read_file",
                "write_file",
                "list_dir",
                "run_command",
                "search_code",
            ],
            Tools::Computer => &["computer"],
        }
    }
}

/// What kind of answer the model gives (shapes usage and response text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerKind {
    /// A real answer from the corpus (conversation, turn).
    Corpus(u32, u32),
    Reasoning,
    Short,
    Code,
    ToolCall,
    Json,
}

#[derive(Debug, Clone)]
pub struct Prompt {
    pub system: Option<String>,
    pub messages: Vec<Msg>,
    pub tools: Tools,
    pub answer: AnswerKind,
}

/// Applies one or two keyboard slips to a prompt (humans make them).
pub fn typo(text: &str, rng: &mut Rng) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    if chars.len() < 8 {
        return text.to_string();
    }
    for _ in 0..rng.range_u64(1, 2) {
        let i = 1 + rng.index(chars.len() - 2);
        if !chars[i].is_alphabetic() {
            continue;
        }
        match rng.below(3) {
            0 => chars.swap(i, i + 1),
            1 => {
                chars.remove(i);
            }
            _ => chars.insert(i, chars[i]),
        }
    }
    chars.into_iter().collect()
}

const OPENERS: &[&str] = &[
    "hey, ",
    "hi! ",
    "quick question: ",
    "ok so ",
    "hello. ",
    "pls help: ",
    "question - ",
    "so, ",
    "I need help. ",
    "hi there, ",
    "urgent: ",
    "can you help? ",
];
const CLOSERS: &[&str] = &[
    " thanks!",
    " thank you",
    " pls",
    " asap",
    " :)",
    " thx",
    " - be brief",
    " in detail please",
    " (simple words)",
    " step by step pls",
];
/// Everyday substitutions people make for the same request.
const SWAPS: &[(&str, &str)] = &[
    ("please", "pls"),
    ("you", "u"),
    ("can", "could"),
    ("write", "create"),
    ("explain", "describe"),
    ("make", "build"),
    ("help", "assist"),
    ("give", "provide"),
    ("want", "need"),
    ("about", "regarding"),
    ("show", "tell"),
    ("list", "give me"),
    ("good", "great"),
    ("quick", "fast"),
    ("use", "utilize"),
    ("find", "look up"),
    ("article", "post"),
    ("story", "tale"),
    ("example", "sample"),
    ("code", "script"),
    ("simple", "easy"),
    ("create", "make"),
    ("generate", "produce"),
    ("and", "&"),
    ("with", "w/"),
];
/// Words people leave out.
const FILLERS: &[&str] = &[
    "the", "a", "an", "please", "just", "really", "very", "some", "that", "so", "also", "me",
];

/// The same request in another person's words: dropped filler words,
/// everyday substitutions, an opening or a closing. Applied to real turns
/// that the world uses more than once, because real users do not send
/// each other's prompts verbatim. Code blocks are left alone.
pub fn vary(text: &str, rng: &mut Rng) -> String {
    let (prose, code) = match text.find("```") {
        Some(i) => (&text[..i], &text[i..]),
        None => (text, ""),
    };
    let mut out = String::with_capacity(text.len() + 24);
    if rng.chance(0.6) {
        out.push_str(rng.pick_str(OPENERS));
    }
    for (i, word) in prose.split(' ').enumerate() {
        let bare = word
            .trim_matches(|c: char| !c.is_alphanumeric())
            .to_lowercase();
        if i > 0 && FILLERS.contains(&bare.as_str()) && rng.chance(0.5) {
            continue;
        }
        if !out.is_empty() && !out.ends_with(' ') {
            out.push(' ');
        }
        match SWAPS.iter().find(|(a, _)| *a == bare) {
            Some((_, b)) if rng.chance(0.6) => {
                out.push_str(&word.to_lowercase().replacen(&bare, b, 1))
            }
            _ if rng.chance(0.12) && word.chars().count() > 3 => {
                // A shortened or re-cased word.
                let w: String = if rng.chance(0.5) {
                    word.to_uppercase()
                } else {
                    word.chars().take(word.chars().count() - 1).collect()
                };
                out.push_str(&w);
            }
            _ => out.push_str(word),
        }
    }
    if rng.chance(0.5) {
        out.push_str(rng.pick_str(CLOSERS));
    }
    if !code.is_empty() {
        out.push('\n');
        out.push_str(code);
    }
    out
}

/// Truncates to at most `max` characters at a char boundary.
pub fn clip(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

/// What campaigns may target, by name (the scenario files' `capabilities`
/// weights and the templates read them).
pub const CAPABILITIES: &[&str] = &[
    "reasoning",
    "grading",
    "safety_rewrite",
    "agentic",
    "coding",
    "data_analysis",
    "computer_use",
    "vision",
    "chat",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varied_text_is_the_same_request_in_other_words() {
        let s = "Can you please write a short story about a dragon who is afraid of the dark? Make it funny and suitable for kids.";
        let vs: std::collections::BTreeSet<String> =
            (0..50).map(|i| vary(s, &mut Rng::new(i))).collect();
        assert!(vs.len() >= 48, "{}", vs.len());
        for v in &vs {
            assert!(v.to_lowercase().contains("drag"), "{v}");
            let kept = s.split(' ').filter(|w| v.contains(w)).count();
            assert!(kept * 3 >= s.split(' ').count(), "{v}");
        }
        let code = "Fix this please:\n```\nfn main() { let the = 1; }\n```";
        assert!(vary(code, &mut Rng::new(1)).ends_with("```\nfn main() { let the = 1; }\n```"));
    }

    #[test]
    fn typos_change_little_and_clip_respects_chars() {
        let mut r = Rng::new(3);
        let s = "Please explain how transformers work";
        let t = typo(s, &mut r);
        assert!((t.len() as i64 - s.len() as i64).abs() <= 2);
        assert_eq!(clip("日本語テキスト", 3), "日本語");
        assert_eq!(clip("abc", 10), "abc");
    }
}
