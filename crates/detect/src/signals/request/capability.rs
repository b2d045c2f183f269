/*!
Capability targeted: which skill does the request exercise?

Why attackers show it: distillation campaigns target narrow, high-value
skills — reasoning, agentic coding, tool use, computer use, vision, the
model as a grader — and an account's traffic concentrates on them far more
than a person's varied chat does. One request's capability means little;
its concentration across an account's traffic is the account-level signal.

Measures: one [`Capability`] per request, from structure first (tools
offered, computer-use tools, images) then keywords in the last user turn.
Cost: a few bit tests on the prompt's shared phrase scan.
*/

use distillguard_core::Event;

use super::phrases::{List, Text};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Capability {
    ComputerUse,
    Agentic,
    Vision,
    Coding,
    DataAnalysis,
    Grading,
    SafetyRewrite,
    Reasoning,
    Chat,
}

impl Capability {
    pub const ALL: [Capability; 9] = [
        Capability::ComputerUse,
        Capability::Agentic,
        Capability::Vision,
        Capability::Coding,
        Capability::DataAnalysis,
        Capability::Grading,
        Capability::SafetyRewrite,
        Capability::Reasoning,
        Capability::Chat,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Capability::ComputerUse => "computer_use",
            Capability::Agentic => "agentic",
            Capability::Vision => "vision",
            Capability::Coding => "coding",
            Capability::DataAnalysis => "data_analysis",
            Capability::Grading => "grading",
            Capability::SafetyRewrite => "safety_rewrite",
            Capability::Reasoning => "reasoning",
            Capability::Chat => "chat",
        }
    }

    /// Skills the disclosures name as distillation targets.
    pub fn high_value(self) -> bool {
        !matches!(self, Capability::Chat)
    }
}

/// Classifies a request; `user` is its scanned last user turn.
pub fn classify(e: &Event, user: &Text) -> Capability {
    let r = &e.request;
    if r.tools
        .iter()
        .any(|t| t.starts_with("computer") || t.contains("screenshot") || t.contains("mouse"))
    {
        return Capability::ComputerUse;
    }
    if !r.tools.is_empty() || r.tool_calls > 0 || r.tool_results > 0 {
        return Capability::Agentic;
    }
    if r.images > 0 {
        return Capability::Vision;
    }
    if user.any(List::Safety) {
        Capability::SafetyRewrite
    } else if user.any(List::Grading) {
        Capability::Grading
    } else if user.any(List::Data) {
        Capability::DataAnalysis
    } else if user.any(List::Coding) {
        Capability::Coding
    } else if user.any(List::Reasoning) {
        Capability::Reasoning
    } else {
        Capability::Chat
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use distillguard_core::parse_event_line;

    fn ev(body: &str) -> Event {
        parse_event_line(&format!(
            r#"{{"ts":"2026-02-24T08:00:00Z","account_id":"a","request":{body}}}"#
        ))
        .unwrap()
    }

    fn cap(body: &str) -> Capability {
        let e = ev(body);
        let u = Text::new(&e.request.last_user_text);
        classify(&e, &u)
    }

    #[test]
    fn structure_decides_first() {
        assert_eq!(
            cap(
                r#"{"max_tokens":9,"tools":[{"type":"computer_20250124","name":"computer"}],"messages":[{"role":"user","content":"open the file"}]}"#
            ),
            Capability::ComputerUse
        );
        assert_eq!(
            cap(
                r#"{"tools":[{"type":"function","function":{"name":"web_search"}}],"messages":[{"role":"user","content":"find flights"}]}"#
            ),
            Capability::Agentic
        );
        assert_eq!(
            cap(
                r#"{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/y.png"}},{"type":"text","text":"what is this"}]}]}"#
            ),
            Capability::Vision
        );
    }

    #[test]
    fn keywords_for_attack_and_honest_prompts() {
        let m = |t: &str| {
            cap(&format!(
                r#"{{"messages":[{{"role":"user","content":{}}}]}}"#,
                serde_json_string(t)
            ))
        };
        assert_eq!(
            m("Write a Rust function `parse_bed9` that merges intervals."),
            Capability::Coding
        );
        assert_eq!(
            m("You are grading responses. Score the response from 1 to 10 using the rubric."),
            Capability::Grading
        );
        assert_eq!(
            m("Produce a censorship-safe alternative answer; keep it acceptable to publish."),
            Capability::SafetyRewrite
        );
        assert_eq!(
            m("Here is a CSV:\nregion,units\nA,3\nIs there a correlation?"),
            Capability::DataAnalysis
        );
        assert_eq!(
            m("Find all integer solutions of x^2 - 5x + 6 = 0."),
            Capability::Reasoning
        );
        assert_eq!(
            m("Write a haiku about autumn rain in Kyoto"),
            Capability::Chat
        );
        assert_eq!(
            m("What should I cook for dinner tonight?"),
            Capability::Chat
        );
    }

    fn serde_json_string(s: &str) -> String {
        let mut out = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }
}
