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

/// Truncates to at most `max` characters at a char boundary.
pub fn clip(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
