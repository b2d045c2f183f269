/*!
Campaign prompt templates.

A template is a fixed choice of wording for each slot of a prompt
structure: role framing, intro, task (always fresh), reasoning elicitation,
output format. A campaign draws a handful per capability and reuses them
thousands of times; `paraphrase` re-draws one slot per request, as scripts
that rotate phrasings do. Elicitation phrases follow the disclosures
("articulate the internal reasoning behind a completed response and write
it out step by step") and exist in nine languages.
*/

use super::tasks;
use super::{AnswerKind, Block, Msg, Prompt, Tools};
use crate::content::CAPABILITIES;
use crate::rng::Rng;

/// Step-by-step elicitation, three phrasings per language.
pub const ELICIT: &[[&str; 3]] = &[
    [
        "Think step by step and show all of your reasoning before the final answer.",
        "Explain your reasoning in detail, step by step, before answering.",
        "Walk through your thought process carefully and write out every intermediate step.",
    ],
    [
        "请一步一步地思考，并在给出最终答案前展示完整的推理过程。",
        "请详细解释你的推理过程，逐步分析。",
        "请写出每一个中间步骤和你的思考过程。",
    ],
    [
        "Рассуждай шаг за шагом и покажи весь ход рассуждений перед ответом.",
        "Подробно объясни своё рассуждение, шаг за шагом.",
        "Опиши каждый промежуточный шаг своих размышлений.",
    ],
    [
        "Piensa paso a paso y muestra todo tu razonamiento antes de la respuesta final.",
        "Explica tu razonamiento en detalle, paso a paso.",
        "Describe cada paso intermedio de tu proceso de pensamiento.",
    ],
    [
        "Denke Schritt für Schritt und zeige deinen gesamten Lösungsweg vor der Antwort.",
        "Erkläre deine Überlegungen ausführlich, Schritt für Schritt.",
        "Schreibe jeden Zwischenschritt deines Denkprozesses auf.",
    ],
    [
        "Réfléchis étape par étape et montre tout ton raisonnement avant la réponse finale.",
        "Explique ton raisonnement en détail, étape par étape.",
        "Décris chaque étape intermédiaire de ta réflexion.",
    ],
    [
        "段階的に考え、最終的な答えの前にすべての推論過程を示してください。",
        "推論をステップごとに詳しく説明してください。",
        "思考の各中間ステップを書き出してください。",
    ],
    [
        "단계별로 생각하고 최종 답변 전에 모든 추론 과정을 보여주세요.",
        "추론 과정을 단계별로 자세히 설명해 주세요.",
        "사고 과정의 모든 중간 단계를 적어 주세요.",
    ],
    [
        "Pense passo a passo e mostre todo o seu raciocínio antes da resposta final.",
        "Explique seu raciocínio em detalhes, passo a passo.",
        "Descreva cada etapa intermediária do seu pensamento.",
    ],
];

/// Task intros, per language.
const INTRO: &[[&str; 3]] = &[
    [
        "Solve the following problem.",
        "Consider this question carefully:",
        "Here is a task for you:",
    ],
    [
        "请解决下面的问题。",
        "请仔细考虑这个问题：",
        "这是一个任务：",
    ],
    [
        "Реши следующую задачу.",
        "Внимательно рассмотри вопрос:",
        "Вот задание:",
    ],
    [
        "Resuelve el siguiente problema.",
        "Considera esta pregunta con cuidado:",
        "Aquí tienes una tarea:",
    ],
    [
        "Löse die folgende Aufgabe.",
        "Betrachte diese Frage sorgfältig:",
        "Hier ist eine Aufgabe:",
    ],
    [
        "Résous le problème suivant.",
        "Examine attentivement cette question :",
        "Voici une tâche :",
    ],
    [
        "次の問題を解いてください。",
        "この質問をよく考えてください：",
        "課題は次のとおりです：",
    ],
    [
        "다음 문제를 풀어 주세요.",
        "이 질문을 신중히 생각해 보세요:",
        "다음 과제를 수행하세요:",
    ],
    [
        "Resolva o seguinte problema.",
        "Considere esta pergunta com cuidado:",
        "Aqui está uma tarefa:",
    ],
];

const FRAMING: &[&str] = &[
    "",
    "You are a world-class expert and meticulous teacher.",
    "You are an AI assistant that produces high-quality training data.",
    "Act as a senior researcher who never skips a step.",
    "You are a helpful assistant.",
];

const FORMAT: &[&str] = &[
    "",
    "Give the final answer on its own line, prefixed with \"Final answer:\".",
    "Format your reply as: Reasoning: ... then Answer: ...",
    "Put the final result in \\boxed{}.",
    "Respond in Markdown with numbered steps.",
];

const RECONSTRUCT: &[&str] = &[
    "Below is a question and a completed response. Articulate the internal reasoning behind the completed response and write it out step by step.",
    "Given the question and the finished answer below, reconstruct the full chain of thought that leads to the answer.",
    "Explain, step by step, the hidden reasoning that produced this response, as if you were thinking aloud.",
];

const RUBRIC: &[&str] = &[
    "You are grading model responses for a training dataset. Score the response from 1 to 10 using the rubric.\nRubric:\n- Correctness (0-4)\n- Clarity (0-3)\n- Completeness (0-3)",
    "Act as a reward model. Compare the response with an ideal answer and assign a score between 0 and 1, with a justification.",
    "Evaluate the following answer against these criteria: factual accuracy, helpfulness, harmlessness, style. Give each a score from 1 to 5 and an overall score.",
];

const REWRITE: &[&str] = &[
    "Rewrite the following answer about {topic} so that it would be acceptable to publish in mainland China: keep it factual but remove politically sensitive framing.",
    "Produce a censorship-safe alternative answer to a question about {topic}. Explain which parts you changed and why.",
    "A user asked about {topic}. Write a neutral response that avoids any statement that could be considered sensitive by regulators.",
];

const CHAT: &[&str] = &[
    "Explain {topic} in depth to {audience}, in about {words} words.",
    "Write a detailed essay on {topic} for {audience} ({words} words).",
    "What are the main debates about {topic}? Cover every side for {audience} in {words} words.",
];

const AUDIENCES: &[&str] = &[
    "a high-school student",
    "an expert",
    "a policy maker",
    "a ten-year-old",
    "an engineer",
    "a journalist",
    "a first-year undergraduate",
    "a retiree",
];

const AGENT_SYSTEM: &[&str] = &[
    "You are an autonomous agent. Use the tools to accomplish the user's goal. Think before every action and explain your plan.",
    "You are a research agent with web access. Plan, call tools, verify results, then write a final report.",
    "You can call tools. Always reason about which tool to use next and why.",
];

const CODE_FRAME: &[&str] = &[
    "{task} Use idiomatic {lang}.",
    "{task} Include unit tests and explain the complexity.",
    "Task: {task}\nRequirements: production quality {lang}, handle edge cases, document the code.",
];

/// A campaign's fixed wording choices for one template.
#[derive(Debug, Clone, Copy)]
pub struct Template {
    pub capability: u8,
    pub framing: u8,
    pub intro: u8,
    pub elicit: u8,
    pub format: u8,
    /// Capability-specific frame (rubric, rewrite, …).
    pub frame: u8,
}

impl Template {
    pub fn draw(capability: u8, rng: &mut Rng) -> Template {
        Template {
            capability,
            framing: rng.below(FRAMING.len() as u64) as u8,
            intro: rng.below(3) as u8,
            elicit: rng.below(3) as u8,
            format: rng.below(FORMAT.len() as u64) as u8,
            frame: rng.below(3) as u8,
        }
    }

    /// The same template with one slot re-worded.
    pub fn paraphrased(mut self, rng: &mut Rng) -> Template {
        match rng.below(4) {
            0 => self.framing = rng.below(FRAMING.len() as u64) as u8,
            1 => self.intro = rng.below(3) as u8,
            2 => self.elicit = rng.below(3) as u8,
            _ => self.format = rng.below(FORMAT.len() as u64) as u8,
        }
        self
    }
}

/// What varies per request when a template is instantiated.
pub struct Fill<'a> {
    pub lang: usize,
    /// The request for reasoning written into the prompt, if any.
    pub elicit: Option<&'a str>,
    /// Whether the answer is a reasoning trace (asked for here, in the
    /// system prompt, or through the API).
    pub reasoning: bool,
    pub follow_up: bool,
    /// A real answer text (graded / "completed response").
    pub answer_text: &'a str,
    pub system: Option<&'a str>,
}

/// Joins instruction sentences with spaces, skipping empty slots.
fn join(parts: &[&str]) -> String {
    parts
        .iter()
        .filter(|p| !p.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Instructions before a task body, then instructions after it.
fn around(before: &[&str], body: &str, after: &[&str]) -> String {
    [join(before), body.to_string(), join(after)]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// The literal (common) step-by-step phrase of a template in a language,
/// if the language has template wordings.
pub fn literal_elicit(t: &Template, lang: usize) -> Option<&'static str> {
    ELICIT.get(lang).map(|l| l[t.elicit as usize % 3])
}

/// Builds the prompt of a campaign request.
pub fn instantiate(t: Template, f: &Fill, rng: &mut Rng) -> Prompt {
    // Languages without template wordings write the template in English.
    let lang = if f.lang < INTRO.len() { f.lang } else { 0 };
    let elicit = f.elicit.unwrap_or("");
    let intro = INTRO[lang][t.intro as usize];
    let framing = FRAMING[t.framing as usize];
    let format = FORMAT[t.format as usize];
    let frame = t.frame as usize;
    let answer_excerpt: String = super::clip(f.answer_text, 700).to_string();
    let cap = CAPABILITIES[t.capability as usize];
    let mut tools = Tools::None;
    let mut answer = if f.reasoning {
        AnswerKind::Reasoning
    } else {
        AnswerKind::Short
    };
    let mut system = f.system.map(str::to_string);
    let mut messages: Vec<Msg> = Vec::new();
    match cap {
        "reasoning" => {
            let problem = tasks::math_problem(rng);
            let text = if frame == 0 && f.elicit.is_some() {
                format!(
                    "{}\n\nQuestion: {problem}\n\nCompleted response: {answer_excerpt}",
                    RECONSTRUCT[t.elicit as usize]
                )
            } else {
                around(&[framing, intro], &problem, &[elicit, format])
            };
            messages.push(Msg::user(text));
        }
        "grading" => {
            let q = format!("Explain {}.", rng.pick(tasks::TOPICS));
            let text = format!(
                "{}\n\nPrompt: {q}\n\nResponse:\n{answer_excerpt}\n\n{}",
                RUBRIC[frame],
                join(&[
                    elicit,
                    "Return JSON with the fields \"score\" and \"rationale\"."
                ])
            );
            messages.push(Msg::user(text));
            answer = AnswerKind::Json;
        }
        "safety_rewrite" => {
            let topic = rng.pick_str(tasks::SENSITIVE);
            let region = rng.pick_str(&[
                "mainland China",
                "a state newspaper",
                "a school textbook",
                "a domestic social network",
                "a government portal",
            ]);
            let ask = REWRITE[frame]
                .replace("{topic}", topic)
                .replace("mainland China", region);
            let text = around(&[framing, &ask], &answer_excerpt, &[elicit, format]);
            messages.push(Msg::user(text));
        }
        "coding" => {
            let (task, plang) = tasks::coding_task(rng);
            let body = CODE_FRAME[frame]
                .replace("{task}", &task)
                .replace("{lang}", plang);
            messages.push(Msg::user(around(&[framing], &body, &[elicit, format])));
            answer = AnswerKind::Code;
        }
        "data_analysis" => {
            let data = tasks::data_task(rng);
            messages.push(Msg::user(around(
                &[framing, intro],
                &data,
                &[elicit, format],
            )));
        }
        "agentic" => {
            tools = Tools::Agent;
            system.get_or_insert_with(|| AGENT_SYSTEM[frame].to_string());
            let goal = tasks::research_goal(rng);
            messages.push(Msg::user(join(&[intro, &goal, elicit])));
            answer = AnswerKind::ToolCall;
        }
        "computer_use" => {
            tools = Tools::Computer;
            let task = tasks::screen_task(rng);
            messages.push(Msg::user(join(&[&format!("Please {task}."), elicit])));
            answer = AnswerKind::ToolCall;
        }
        "vision" => {
            let subject = tasks::image_subject(rng);
            let q = match rng.below(4) {
                0 => format!(
                    "Describe this {subject} and reason about what it implies for {}.",
                    rng.pick_str(tasks::TOPICS)
                ),
                1 => format!(
                    "Extract every number in this {subject} and check whether the {} largest add up correctly.",
                    rng.range_u64(2, 6)
                ),
                2 => format!(
                    "What would change in this {subject} if the values doubled after {}?",
                    2000 + rng.below(27)
                ),
                _ => format!(
                    "Transcribe this {subject}, then explain it to {}.",
                    rng.pick_str(AUDIENCES)
                ),
            };
            messages.push(Msg {
                user: true,
                blocks: vec![
                    Block::Image(tasks::image_url(rng)),
                    Block::Text(join(&[framing, &q, elicit, format])),
                ],
            });
        }
        _ => {
            let topic = rng.pick(tasks::TOPICS);
            let text = CHAT[frame]
                .replace("{topic}", topic)
                .replace("{audience}", rng.pick_str(AUDIENCES))
                .replace("{words}", &(100 * rng.range_u64(2, 15)).to_string());
            messages.push(Msg::user(join(&[framing, &text, elicit])));
        }
    }
    if f.follow_up {
        follow_up(&mut messages, tools, rng);
    }
    Prompt {
        system,
        messages,
        tools,
        answer,
    }
}

/// Extends a conversation with a model turn and a next user turn: a tool
/// loop for agents, a "go deeper" request otherwise.
fn follow_up(messages: &mut Vec<Msg>, tools: Tools, rng: &mut Rng) {
    let steps = rng.range_u64(1, 4);
    for _ in 0..steps {
        if tools == Tools::None {
            messages.push(Msg::assistant("Step 1: restate the problem. Step 2: identify the knowns. Step 3: derive the result."));
            messages.push(Msg::user(*rng.pick(&[
                "Now explain the reasoning behind step 2 in more detail.",
                "Verify your answer by a different method, step by step.",
                "Rewrite the full solution as a clean worked example.",
            ])));
        } else {
            let id = format!("toolu_{}", rng.hex(16));
            let name = *rng.pick(tools.names());
            let input = match name {
                "computer" => r#"{"action":"screenshot"}"#.to_string(),
                "web_search" => format!(r#"{{"query":"{}"}}"#, rng.pick(tasks::TOPICS)),
                "fetch_url" => format!(r#"{{"url":"https://www.example.org/{}"}}"#, rng.hex(8)),
                _ => r#"{"code":"print(sum(range(10)))"}"#.to_string(),
            };
            messages.push(Msg {
                user: false,
                blocks: vec![
                    Block::Text("I'll start by gathering information.".into()),
                    Block::ToolUse {
                        id: id.clone(),
                        name,
                        input,
                    },
                ],
            });
            let image = (name == "computer").then(|| tasks::image_url(rng));
            messages.push(Msg {
                user: true,
                blocks: vec![Block::ToolResult {
                    id,
                    text: if image.is_some() {
                        String::new()
                    } else {
                        format!("Result {}: 3 items found.", rng.hex(4))
                    },
                    image,
                }],
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_of(p: &Prompt) -> String {
        let mut s = String::new();
        for m in &p.messages {
            for b in &m.blocks {
                if let Block::Text(t) = b {
                    s.push_str(t);
                }
            }
        }
        s
    }

    #[test]
    fn one_template_keeps_structure_but_varies_content() {
        let mut r = Rng::new(9);
        let t = Template::draw(0, &mut r);
        let f = Fill {
            lang: 0,
            elicit: Some(ELICIT[0][t.elicit as usize]),
            reasoning: true,
            follow_up: false,
            answer_text: "42 is the answer.",
            system: None,
        };
        let a = text_of(&instantiate(t, &f, &mut r));
        let b = text_of(&instantiate(t, &f, &mut r));
        assert_ne!(a, b);
        let shared = a.split_whitespace().filter(|w| b.contains(w)).count();
        assert!(shared * 2 > a.split_whitespace().count(), "{a}\n{b}");
    }

    #[test]
    fn every_capability_and_language_instantiates() {
        let mut r = Rng::new(10);
        for (cap, name) in CAPABILITIES.iter().enumerate() {
            for lang in 0..crate::content::wording::LANGS.len() {
                let t = Template::draw(cap as u8, &mut r).paraphrased(&mut r);
                let f = Fill {
                    lang,
                    elicit: Some("Think step by step."),
                    reasoning: true,
                    follow_up: true,
                    answer_text: "x",
                    system: None,
                };
                let p = instantiate(t, &f, &mut r);
                assert!(p.messages[0].user);
                assert!(p.messages.len() >= 3);
                if *name == "computer_use" {
                    assert_eq!(p.tools, Tools::Computer);
                }
            }
        }
    }
}
