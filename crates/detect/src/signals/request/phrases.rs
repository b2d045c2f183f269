/*!
One pass of phrase matching shared by every per-request signal.

Elicitation, capability and conversation shape each look for a list of
phrases in the lowercased prompt. Searching each phrase separately cost
about a fifth of `analyze`'s time (some 160 substring searches a prompt).
Here all lists are compiled once into one Aho-Corasick automaton. A prompt
is scanned once, and [`Text`] keeps a bit per phrase found. The signals then
ask, in their own list order, which phrase matched first. The answers are
the same as `text.contains(phrase)` for each phrase in turn.

Cost: one DFA pass over the lowercased prompt (about 1 GB/s) plus the
lowercasing.
*/

use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, AhoCorasickKind};

/// The phrase lists, one per question a signal asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum List {
    Reconstruct,
    Step,
    SystemPrompt,
    InAnswer,
    Coding,
    Data,
    Grading,
    Safety,
    Reasoning,
    Back,
}

// The lists themselves, grouped by the signal that asks (the signals only
// read them through [`Text`]).

// Read by [`super::elicitation`].
const RECONSTRUCT: &[&str] = &[
    "internal reasoning behind",
    "reasoning behind the completed",
    "reconstruct the full chain of thought",
    "reconstruct the chain of thought",
    "reconstruct the reasoning",
    "hidden reasoning",
    "chain of thought that leads to",
    "as if you were thinking aloud",
];

/// Step-by-step phrasings, in nine languages (lowercase).
const STEP: &[&str] = &[
    // en
    "step by step",
    "step-by-step",
    "show your work",
    "show all of your reasoning",
    "show your reasoning",
    "explain your reasoning",
    "chain of thought",
    "chain-of-thought",
    "think out loud",
    "thinking aloud",
    "walk through your thought process",
    "every intermediate step",
    "intermediate steps",
    "reason through",
    "let's think",
    "lets think",
    // zh
    "一步一步",
    "逐步",
    "推理过程",
    "思考过程",
    "中间步骤",
    // ru
    "шаг за шагом",
    "ход рассуждений",
    "рассуждение",
    "промежуточный шаг",
    // es
    "paso a paso",
    "tu razonamiento",
    "proceso de pensamiento",
    // de
    "schritt für schritt",
    "lösungsweg",
    "überlegungen",
    "denkprozess",
    // fr
    "étape par étape",
    "ton raisonnement",
    "votre raisonnement",
    "réflexion",
    // ja
    "段階的",
    "ステップごと",
    "推論",
    "思考の",
    // ko
    "단계별",
    "추론 과정",
    "사고 과정",
    // pt
    "passo a passo",
    "seu raciocínio",
    "raciocínio",
];

const SYSTEM: &[&str] = &[
    "think step-by-step and justify your steps",
    "always provide explanation",
    "explain how you used the definition",
    "explain why other answers are wrong",
    "explain in simple steps",
    "justify your steps",
];

const IN_ANSWER: &[&str] = &[
    "before the final answer",
    "before giving the final answer",
    "before answering",
    "write out your reasoning",
    "include your reasoning",
    "reasoning: ... then answer",
    "explain your answer",
    "justify your answer",
];

// Read by [`super::capability`].
const CODING: &[&str] = &[
    "```",
    "function",
    "code",
    "python",
    "javascript",
    "typescript",
    "rust",
    "golang",
    " java",
    "c++",
    "sql",
    "bug",
    "compile",
    "unit test",
    "implement",
    "refactor",
    "regex",
    "api",
    "def ",
    "class ",
];

const DATA: &[&str] = &[
    "csv",
    "dataset",
    "spreadsheet",
    "correlation",
    "outlier",
    "forecast",
    "pivot table",
    "regression",
];

const GRADING: &[&str] = &[
    "rubric",
    "score the response",
    "grade",
    "reward model",
    "assign a score",
    "rate the following",
    "evaluate the following answer",
    "score from",
];

const SAFETY: &[&str] = &[
    "censorship",
    "politically sensitive",
    "acceptable to publish",
    "avoids any statement",
    "sensitive by regulators",
    "neutral response",
];

const REASONING: &[&str] = &[
    "solve",
    "prove",
    "probability",
    "equation",
    "how many",
    "calculate",
    "integer",
    "riddle",
    "puzzle",
    "logic",
    "求解",
    "证明",
    "задач",
    "problema",
    "aufgabe",
];

// Read by [`super::shape`].
const BACK: &[&str] = &[
    "you said",
    "above",
    "your answer",
    "previous",
    "earlier",
    "that code",
    "this code",
    "the code you",
    "your response",
    "instead",
    "again",
    "continue",
    "more",
    "shorter",
    "longer",
    "rewrite it",
    "what about",
    "why did you",
    "it doesn't",
    "it does not",
    "still",
    "not working",
    "thanks",
    "thank you",
    "ok ",
    "okay",
    "上面",
    "刚才",
    "继续",
    "выше",
    "продолжай",
    "anterior",
    "continúa",
];

const LISTS: [(List, &[&str]); 10] = [
    (List::Reconstruct, RECONSTRUCT),
    (List::Step, STEP),
    (List::SystemPrompt, SYSTEM),
    (List::InAnswer, IN_ANSWER),
    (List::Coding, CODING),
    (List::Data, DATA),
    (List::Grading, GRADING),
    (List::Safety, SAFETY),
    (List::Reasoning, REASONING),
    (List::Back, BACK),
];

/// Words of the hit bit set (room for 256 distinct phrases).
const WORDS: usize = 4;

struct Matcher {
    ac: Option<AhoCorasick>,
    /// For each list (in [`LISTS`] order): its phrases' ids, in list order.
    ids: Vec<Vec<u16>>,
}

static MATCHER: LazyLock<Matcher> = LazyLock::new(|| {
    let mut unique: Vec<&'static str> = Vec::new();
    let mut ids = Vec::new();
    for (_, list) in LISTS {
        let mut v = Vec::with_capacity(list.len());
        for p in list {
            let id = match unique.iter().position(|u| u == p) {
                Some(i) => i,
                None => {
                    unique.push(p);
                    unique.len() - 1
                }
            };
            v.push(id as u16);
        }
        ids.push(v);
    }
    // Patterns are fixed strings known at compile time (tested to build);
    // `None` would only mean no phrase ever matches.
    // Text is lowercased before the scan (phrases are lowercase). A DFA was
    // measured faster here than the contiguous NFA.
    let ac = AhoCorasick::builder()
        .kind(Some(AhoCorasickKind::DFA))
        .build(&unique)
        .ok()
        .filter(|_| unique.len() <= WORDS * 64);
    Matcher { ac, ids }
});

/// The phrases found in a prompt (after lowercasing it).
#[derive(Debug, Clone, Default)]
pub struct Text {
    hits: [u64; WORDS],
}

impl Text {
    /// Scans `raw` once for every phrase.
    pub fn new(raw: &str) -> Text {
        let lowered = if raw.is_ascii() {
            raw.to_ascii_lowercase()
        } else {
            raw.to_lowercase()
        };
        let text = lowered.as_str();
        let mut hits = [0u64; WORDS];
        if let Some(ac) = &MATCHER.ac {
            for m in ac.find_overlapping_iter(text) {
                let id = m.pattern().as_usize();
                hits[id / 64] |= 1 << (id % 64);
            }
        }
        Text { hits }
    }

    fn ids(list: List) -> (&'static [&'static str], &'static [u16]) {
        let i = LISTS.iter().position(|(l, _)| *l == list).unwrap_or(0);
        (LISTS[i].1, MATCHER.ids[i].as_slice())
    }

    /// The first phrase of `list` (in the list's order) that occurs in the text.
    pub fn first(&self, list: List) -> Option<&'static str> {
        let (phrases, ids) = Text::ids(list);
        ids.iter()
            .position(|&id| self.hits[id as usize / 64] & (1 << (id % 64)) != 0)
            .map(|i| phrases[i])
    }

    /// Does any phrase of `list` occur in the text?
    pub fn any(&self, list: List) -> bool {
        self.first(list).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_automaton_builds_and_agrees_with_contains() {
        assert!(MATCHER.ac.is_some(), "phrase automaton failed to build");
        let texts = [
            "Think step by step and show your work; the code above does not compile.",
            "请一步一步地思考，并展示推理过程。继续",
            "Résous le problème étape par étape, puis explique ton raisonnement.",
            "What is the capital of France?",
            "THINK STEP BY STEP. Continue. Thank You.",
            "rate the following answer with a rubric; is it politically sensitive?",
            "",
        ];
        for raw in texts {
            let t = Text::new(raw);
            for (list, phrases) in LISTS {
                let lower = raw.to_lowercase();
                let expect = phrases.iter().copied().find(|p| lower.contains(p));
                assert_eq!(t.first(list), expect, "{list:?} in {raw:?}");
            }
        }
    }

    #[test]
    fn overlapping_phrases_are_all_found() {
        // "chain of thought" lies inside "reconstruct the chain of thought".
        let t = Text::new("Please reconstruct the chain of thought.");
        assert_eq!(
            t.first(List::Reconstruct),
            Some("reconstruct the chain of thought")
        );
        assert_eq!(t.first(List::Step), Some("chain of thought"));
    }
}
