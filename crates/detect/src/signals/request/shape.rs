/*!
Conversation shape: one-shot prompt, or a real follow-up?

Why attackers show it: harvesting scripts send self-contained, single-turn
prompts (or scripted tool loops); people converse — they follow up on an
answer, refer to it ("the code above", "your second point"), correct it.
A high single-shot share across an account is the account-level signal.

Measures: [`Shape`] — the conversation depth, whether the request is
single-shot, and whether its last user turn refers back to earlier
answers. Cost: reads counts from the event and a few bit tests on the
prompt's shared phrase scan.
*/

use distillguard_core::Event;

use super::phrases::{List, Text};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub depth: u32,
    pub single_shot: bool,
    /// A follow-up that refers to what was said before.
    pub refers_back: bool,
}

/// `user` is the scanned last user turn.
pub fn measure(e: &Event, user: &Text) -> Shape {
    let r = &e.request;
    // A Responses request that continues a stored conversation
    // (`previous_response_id`) carries only its new turn: it is not a
    // single shot, whatever the body holds.
    let single_shot = !r.continues && r.assistant_turns == 0 && r.tool_results == 0;
    let refers_back = !single_shot && r.tool_results == 0 && user.any(List::Back);
    Shape {
        depth: r.depth,
        single_shot,
        refers_back,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use distillguard_core::parse_event_line;

    fn shape(messages: &str) -> Shape {
        let e = parse_event_line(&format!(r#"{{"ts":"2026-02-24T08:00:00Z","account_id":"a","request":{{"messages":{messages}}}}}"#)).unwrap();
        let u = Text::new(&e.request.last_user_text);
        measure(&e, &u)
    }

    #[test]
    fn a_person_following_up() {
        let s = shape(
            r#"[{"role":"user","content":"write a sort in python"},{"role":"assistant","content":"def sort(x): ..."},{"role":"user","content":"the code you wrote is not working for empty lists"}]"#,
        );
        assert!(!s.single_shot && s.refers_back);
        assert_eq!(s.depth, 3);
    }

    #[test]
    fn a_continued_responses_conversation_is_not_a_single_shot() {
        let line = |prev: &str| {
            format!(
                r#"{{"ts":"2026-02-24T08:00:00Z","account_id":"a","endpoint":"/v1/responses","request":{{"model":"m","input":"and why does it still fail?"{prev}}}}}"#
            )
        };
        let fresh = parse_event_line(&line("")).unwrap();
        let cont = parse_event_line(&line(r#","previous_response_id":"resp_1""#)).unwrap();
        let m = |e: &Event| measure(e, &Text::new(&e.request.last_user_text));
        assert!(m(&fresh).single_shot);
        let c = m(&cont);
        assert!(!c.single_shot && c.refers_back);
    }

    #[test]
    fn a_script_and_a_tool_loop() {
        assert!(shape(r#"[{"role":"user","content":"Solve step by step: 2+2"}]"#).single_shot);
        let tool = shape(
            r#"[{"role":"user","content":"fix the test"},{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"read_file","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c","content":"fn main(){}"}]"#,
        );
        assert!(!tool.single_shot && !tool.refers_back);
    }
}
