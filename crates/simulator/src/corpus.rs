/*!
Real human prompts and real LLM answers for benign traffic.

The benign population replays conversations that ChatGPT users shared
(ShareGPT): `../shared/data/sharegpt-dev.jsonl.gz` when it can be found, or
the 398-conversation sample embedded in the binary (`data/`), so tests run
anywhere. Conversations are normalised to start with a user turn and to
alternate roles; a bad line is reported and skipped.
*/

use std::path::{Path, PathBuf};

use distillguard_core::reader::{Lines, parse_record};
use distillguard_core::{LineError, ReadError};
use serde::Deserialize;

static SAMPLE: &[u8] = include_bytes!("../data/sharegpt-sample.jsonl.gz");

/// File name looked for by `auto`.
pub const SHARED_FILE: &str = "shared/data/sharegpt-dev.jsonl.gz";

#[derive(Debug, Clone)]
pub struct Turn {
    pub user: bool,
    pub text: Box<str>,
}

#[derive(Debug, Clone)]
pub struct Conversation {
    pub turns: Vec<Turn>,
}

impl Conversation {
    pub fn user_turns(&self) -> usize {
        self.turns.iter().filter(|t| t.user).count()
    }
}

#[derive(Debug)]
pub struct Corpus {
    /// Human-readable origin, recorded in the run manifest.
    pub source: String,
    pub conversations: Vec<Conversation>,
    /// Conversations whose opening prompt is about code.
    pub coding: Vec<u32>,
    /// (conversation, turn) of every substantial assistant answer.
    pub answers: Vec<(u32, u32)>,
    /// Lines skipped while loading.
    pub skipped: Vec<LineError>,
}

#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("corpus {0}: no usable conversation")]
    Empty(String),
}

#[derive(Deserialize)]
struct Line {
    turns: Vec<RawTurn>,
}

#[derive(Deserialize)]
struct RawTurn {
    role: String,
    content: String,
}

impl Corpus {
    /// Resolves `auto` / `embedded` / a path and loads it.
    pub fn load(spec: &str) -> Result<Corpus, CorpusError> {
        match spec {
            "embedded" => Corpus::embedded(),
            "auto" => match find_shared() {
                Some(p) => Corpus::from_path(&p),
                None => Corpus::embedded(),
            },
            path => Corpus::from_path(Path::new(path)),
        }
    }

    pub fn embedded() -> Result<Corpus, CorpusError> {
        let reader = flate2::read::GzDecoder::new(SAMPLE);
        let lines = Lines::from_reader(
            "<embedded sharegpt sample>",
            Box::new(std::io::BufReader::new(reader)),
        );
        Corpus::from_lines(lines, "embedded ShareGPT sample".into())
    }

    pub fn from_path(path: &Path) -> Result<Corpus, CorpusError> {
        let lines = Lines::open(path)?;
        Corpus::from_lines(lines, path.display().to_string())
    }

    fn from_lines(mut lines: Lines, source: String) -> Result<Corpus, CorpusError> {
        let mut conversations = Vec::new();
        let mut skipped = Vec::new();
        while let Some(item) = lines.next_line()? {
            let line = match item {
                Ok(l) => l,
                Err(e) => {
                    skipped.push(e);
                    continue;
                }
            };
            match parse_record::<Line>(line) {
                Ok(l) => {
                    if let Some(c) = normalise(l) {
                        conversations.push(c);
                    }
                }
                Err(e) => {
                    let located = lines.error(e);
                    skipped.push(located);
                }
            }
        }
        if conversations.is_empty() {
            return Err(CorpusError::Empty(source));
        }
        let mut coding = Vec::new();
        let mut answers = Vec::new();
        for (i, c) in conversations.iter().enumerate() {
            if looks_like_code(&c.turns[0].text) {
                coding.push(i as u32);
            }
            for (j, t) in c.turns.iter().enumerate() {
                if !t.user && t.text.len() >= 200 {
                    answers.push((i as u32, j as u32));
                }
            }
        }
        if coding.is_empty() {
            coding.push(0);
        }
        if answers.is_empty() {
            answers.push((0, 0));
        }
        Ok(Corpus {
            source,
            conversations,
            coding,
            answers,
            skipped,
        })
    }

    pub fn answer_text(&self, k: usize) -> &str {
        let (c, t) = self.answers[k % self.answers.len()];
        &self.conversations[c as usize].turns[t as usize].text
    }
}

fn find_shared() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("DISTILLGUARD_SHAREGPT") {
        let p = PathBuf::from(p);
        return p.exists().then_some(p);
    }
    let cwd = std::env::current_dir().ok()?;
    cwd.ancestors()
        .take(4)
        .map(|a| a.join(SHARED_FILE))
        .find(|p| p.exists())
}

fn normalise(l: Line) -> Option<Conversation> {
    let mut turns: Vec<Turn> = Vec::with_capacity(l.turns.len());
    for t in l.turns {
        let user = match t.role.as_str() {
            "user" | "human" => true,
            "assistant" | "gpt" | "chatgpt" | "bard" | "bing" => false,
            _ => continue,
        };
        if t.content.trim().is_empty() {
            continue;
        }
        if turns.is_empty() && !user {
            continue;
        }
        match turns.last_mut() {
            Some(last) if last.user == user => {
                let joined = format!("{}\n\n{}", last.text, t.content);
                last.text = joined.into_boxed_str();
            }
            _ => turns.push(Turn {
                user,
                text: t.content.into_boxed_str(),
            }),
        }
    }
    (turns.len() >= 2).then_some(Conversation { turns })
}

fn looks_like_code(s: &str) -> bool {
    const MARKS: &[&str] = &[
        "```",
        "python",
        "javascript",
        "typescript",
        "function",
        "code",
        "sql",
        "java",
        "c++",
        "react",
        "error",
        "bug",
        "api",
        "class ",
        "def ",
        "rust",
        "golang",
        "script",
        "html",
        "css",
        "regex",
    ];
    let lower = s.to_lowercase();
    MARKS.iter().filter(|m| lower.contains(*m)).count() >= 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_sample_loads_and_alternates() {
        let c = Corpus::embedded().unwrap();
        assert!(c.conversations.len() > 350, "{}", c.conversations.len());
        assert!(c.skipped.is_empty());
        for conv in &c.conversations {
            assert!(conv.turns[0].user);
            for w in conv.turns.windows(2) {
                assert_ne!(w[0].user, w[1].user);
            }
        }
        assert!(c.coding.len() > 20);
        assert!(c.answers.len() > 300);
    }

    #[test]
    fn bad_lines_are_skipped_with_place() {
        let dir = std::env::temp_dir().join(format!("dg-corpus-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("c.jsonl");
        std::fs::write(
            &p,
            "{\"turns\":[{\"role\":\"gpt\",\"content\":\"x\"},{\"role\":\"human\",\"content\":\"hi\"},{\"role\":\"gpt\",\"content\":\"hello\"}]}\n{\"turns\":5}\n",
        )
        .unwrap();
        let c = Corpus::from_path(&p).unwrap();
        assert_eq!(c.conversations.len(), 1);
        assert_eq!(&*c.conversations[0].turns[0].text, "hi");
        assert_eq!(c.skipped.len(), 1);
        assert!(
            c.skipped[0]
                .to_string()
                .contains("c.jsonl:2: field `turns`"),
            "{}",
            c.skipped[0]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
