/*!
Reasoning elicitation: does the request ask the model to write out its
reasoning?

Why attackers show it: a distilled student learns most from explanation
traces. Campaigns therefore ask for step-by-step solutions, for "the
internal reasoning behind a completed response" to be reconstructed, use
Orca-style system prompts that demand justification, or ask for reasoning
to be written into the visible answer when the API hides its thinking.
Honest users ask this too, now and then; what separates them is the rate
over an account's traffic (an account-level signal), not one request.

Measures: the strongest matching pattern in the last user turn and the
system prompt, in nine languages, as a [`Elicitation`] with a strength in
[0, 1]. Cost: a few bit tests on the prompt's shared phrase scan
([`super::phrases`]).
*/

/// What kind of elicitation matched.
use super::phrases::{List, Text};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Reconstruct the hidden reasoning behind a given, finished answer.
    Reconstruct,
    /// Step-by-step / show your work / chain of thought.
    StepByStep,
    /// A system prompt in the Orca style: always explain, justify steps.
    ExplanationSystemPrompt,
    /// Asks for reasoning to be written into the answer, before it.
    ReasoningInAnswer,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Elicitation {
    pub kind: Kind,
    /// 1.0 for reconstruction, 0.8 step-by-step, 0.6 the others.
    pub strength: f32,
    /// The phrase that matched (for the reason a human reads).
    pub phrase: &'static str,
}

/// The strongest elicitation in a request, from the scanned last user turn
/// and system prompt.
pub fn detect(user: &Text, system: Option<&Text>) -> Option<Elicitation> {
    if let Some(p) = user.first(List::Reconstruct) {
        return Some(Elicitation {
            kind: Kind::Reconstruct,
            strength: 1.0,
            phrase: p,
        });
    }
    if let Some(p) = user.first(List::Step) {
        return Some(Elicitation {
            kind: Kind::StepByStep,
            strength: 0.8,
            phrase: p,
        });
    }
    if let Some(p) =
        system.and_then(|s| s.first(List::SystemPrompt).or_else(|| s.first(List::Step)))
    {
        return Some(Elicitation {
            kind: Kind::ExplanationSystemPrompt,
            strength: 0.6,
            phrase: p,
        });
    }
    user.first(List::InAnswer).map(|p| Elicitation {
        kind: Kind::ReasoningInAnswer,
        strength: 0.6,
        phrase: p,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(user: &str, system: Option<&str>) -> Option<Elicitation> {
        detect(&Text::new(user), system.map(Text::new).as_ref())
    }

    #[test]
    fn attack_phrasings_in_many_languages() {
        let cases = [
            (
                "Below is a question and a completed response. Articulate the internal reasoning behind the completed response and write it out step by step.",
                Kind::Reconstruct,
            ),
            (
                "Solve the following problem. Think step by step and show all of your reasoning before the final answer.",
                Kind::StepByStep,
            ),
            (
                "请解决下面的问题。请一步一步地思考，并在给出最终答案前展示完整的推理过程。",
                Kind::StepByStep,
            ),
            (
                "Реши следующую задачу. Рассуждай шаг за шагом.",
                Kind::StepByStep,
            ),
            (
                "Resuelve el siguiente problema. Piensa paso a paso.",
                Kind::StepByStep,
            ),
            (
                "Löse die folgende Aufgabe. Denke Schritt für Schritt.",
                Kind::StepByStep,
            ),
            (
                "Résous le problème suivant. Réfléchis étape par étape.",
                Kind::StepByStep,
            ),
            (
                "次の問題を解いてください。段階的に考えてください。",
                Kind::StepByStep,
            ),
            (
                "다음 문제를 풀어 주세요. 단계별로 생각하세요.",
                Kind::StepByStep,
            ),
            (
                "Resolva o seguinte problema. Pense passo a passo.",
                Kind::StepByStep,
            ),
            (
                "Think out loud: how does a compiler work?",
                Kind::StepByStep,
            ),
        ];
        for (text, kind) in cases {
            let e = d(text, None).unwrap_or_else(|| panic!("missed: {text}"));
            assert_eq!(e.kind, kind, "{text}");
        }
        let orca = d(
            "Which is larger, 7/8 or 8/9?",
            Some("You are an AI assistant. User will give you a task. While performing the task think step-by-step and justify your steps."),
        )
        .unwrap();
        assert_eq!(orca.kind, Kind::ExplanationSystemPrompt);
        assert_eq!(
            d(
                "What is 17*23? Write out your reasoning, then the number.",
                None
            )
            .unwrap()
            .kind,
            Kind::ReasoningInAnswer
        );
    }

    #[test]
    fn ordinary_requests_do_not_match() {
        for text in [
            "Can you help me write a cover letter for a junior data analyst role?",
            "What is the difference between a process and a thread?",
            "Translate 'hello world' into Spanish, French, and German.",
            "My tomato plants have yellow leaves, what am I doing wrong?",
            "How do I center a div with flexbox?",
            "写一首关于秋天的诗",
            "Напиши письмо другу о поездке",
        ] {
            assert!(
                d(text, Some("You are a helpful assistant.")).is_none(),
                "{text}"
            );
        }
    }
}
