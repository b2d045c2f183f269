/*!
Rendering specs as event-log lines.

A [`Spec`] becomes a [`Prompt`], then a raw request body in the dialect of
the account's client (OpenAI Chat Completions or Anthropic Messages), a
raw response body with usage (and reasoning blocks when asked for and the
model has them), and the network fields. JSON is written by hand into a
reused buffer: this is the simulator's hot loop.
*/

use std::io::Write;

use crate::content::products;
use crate::content::templates::{self, Fill};
use crate::content::{self, AnswerKind, Block, Msg, Prompt, Tools};
use crate::content::{tasks, wording};
use crate::corpus::Corpus;
use crate::network::{CLIENTS, NETWORKS};
use crate::population::products::PRODUCT_PARAMS;
use crate::rng::{Rng, label};
use crate::scenario::{CampaignSpec, ELICITATION_STYLES, OutputKnobs};
use crate::world::{
    CampaignRt, HumanParams, Kind, ModelRt, NO_CONV, Profile, REASONING_SYSTEM, SimAccount, Spec,
};

/// Everything rendering reads (shared by the worker threads).
pub struct World<'a> {
    pub seed: u64,
    pub corpus: &'a Corpus,
    pub models: &'a [ModelRt],
    pub accounts: &'a [SimAccount],
    pub campaigns: &'a [CampaignRt],
    pub campaign_specs: &'a [CampaignSpec],
    pub knobs: &'a OutputKnobs,
}

/// A tiny JSON writer: commas and escaping, nothing else.
struct J<'a> {
    out: &'a mut Vec<u8>,
    first: [bool; 32],
    depth: usize,
    after_key: bool,
}

impl<'a> J<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        J {
            out,
            first: [true; 32],
            depth: 0,
            after_key: false,
        }
    }
    fn sep(&mut self) {
        if self.after_key {
            self.after_key = false;
            return;
        }
        if self.depth > 0 {
            if !self.first[self.depth] {
                self.out.push(b',');
            }
            self.first[self.depth] = false;
        }
    }
    fn open(&mut self, c: u8) {
        self.sep();
        self.out.push(c);
        self.depth += 1;
        self.first[self.depth] = true;
    }
    fn obj(&mut self) {
        self.open(b'{');
    }
    fn arr(&mut self) {
        self.open(b'[');
    }
    fn end_obj(&mut self) {
        self.out.push(b'}');
        self.depth -= 1;
    }
    fn end_arr(&mut self) {
        self.out.push(b']');
        self.depth -= 1;
    }
    fn key(&mut self, k: &str) {
        if !self.first[self.depth] {
            self.out.push(b',');
        }
        self.first[self.depth] = false;
        self.out.push(b'"');
        self.out.extend_from_slice(k.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.after_key = true;
    }
    fn str(&mut self, s: &str) {
        self.sep();
        escape(self.out, s);
    }
    fn raw(&mut self, s: &str) {
        self.sep();
        self.out.extend_from_slice(s.as_bytes());
    }
    fn num<T: std::fmt::Display>(&mut self, v: T) {
        self.sep();
        let _ = write!(self.out, "{v}");
    }
    fn bool(&mut self, b: bool) {
        self.raw(if b { "true" } else { "false" });
    }
    fn kstr(&mut self, k: &str, v: &str) {
        self.key(k);
        self.str(v);
    }
    fn knum<T: std::fmt::Display>(&mut self, k: &str, v: T) {
        self.key(k);
        self.num(v);
    }
}

fn escape(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                let _ = write!(out, "\\u{:04x}", b);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Parameters of one request, resolved.
struct Params {
    max_tokens: Option<u32>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    stream: bool,
    n: u32,
    logprobs: Option<u32>,
    reasoning: bool,
}

impl Params {
    /// What a script sends for one deterministic answer: temperature 0, no
    /// streaming, one sample, `max_tokens` set.
    fn greedy(max_tokens: u32) -> Params {
        Params {
            max_tokens: Some(max_tokens),
            temperature: Some(0.0),
            top_p: None,
            stream: false,
            n: 1,
            logprobs: None,
            reasoning: false,
        }
    }
}

fn human(p: &HumanParams, model: &ModelRt, rng: &mut Rng) -> Params {
    Params {
        max_tokens: p.max_tokens.map(|m| m.min(model.max_output)),
        temperature: p.temperature,
        top_p: None,
        stream: rng.chance(p.stream),
        n: 1,
        logprobs: None,
        reasoning: model.reasoning && rng.chance(p.reasoning),
    }
}

/// Renders one spec as a log line (with the trailing newline) into `out`.
pub fn render(w: &World, s: &Spec, out: &mut Vec<u8>) {
    let mut rng = Rng::derive(&[w.seed, label("render"), s.account as u64, s.seq as u64]);
    let acct = &w.accounts[s.account as usize];
    let stream = &acct.streams[(s.stream as usize).min(acct.streams.len() - 1)];
    let (ip, net) = &stream.ips[(s.ip as usize) % stream.ips.len()];
    let net = &NETWORKS[*net as usize];
    let client = &CLIENTS[stream.client as usize];
    let model = &w.models[s.model as usize];
    let max_chars = w.knobs.max_message_chars;

    let (prompt, params) = match (s.kind, &acct.profile) {
        (
            Kind::Chat {
                conv,
                turn,
                typo,
                reuse,
            },
            profile,
        ) => {
            let hp = match profile {
                Profile::Human(p) => *p,
                Profile::Campaign { end_user, .. } => *end_user,
                _ => PRODUCT_PARAMS,
            };
            let c = &w.corpus.conversations[conv as usize];
            let last = (turn as usize * 2).min(c.turns.len() - 1);
            // Long chats are sent with their recent history only (clients
            // trim context): at most the ten messages before the new one.
            let from = last.saturating_sub(10);
            let mut messages: Vec<Msg> = c.turns[from..=last]
                .iter()
                .map(|t| Msg {
                    user: t.user,
                    blocks: vec![Block::Text(content::clip(&t.text, max_chars).to_string())],
                })
                .collect();
            if let Some(Msg { blocks, .. }) = messages.last_mut()
                && let Some(Block::Text(t)) = blocks.first_mut()
            {
                if reuse > 0 {
                    // Another person asking much the same: the real turn, in
                    // their own words (seeded by the turn and the reuse).
                    let mut vr = Rng::derive(&[
                        w.seed,
                        label("vary"),
                        conv as u64,
                        turn as u64,
                        reuse as u64,
                    ]);
                    *t = content::vary(t, &mut vr);
                }
                if typo {
                    *t = content::typo(t, &mut rng);
                }
                if rng.chance(hp.step_by_step) {
                    t.push_str(" Please explain step by step.");
                }
            }
            let system = match &acct.profile {
                Profile::Startup { brand } => {
                    Some(products::startup_system(products::brand(*brand)))
                }
                _ => human_system(w, s.account, &hp),
            };
            let p = human(&hp, model, &mut rng);
            (
                Prompt {
                    system,
                    messages,
                    tools: Tools::None,
                    answer: AnswerKind::Corpus(conv, last as u32 + 1),
                },
                p,
            )
        }
        (Kind::Support { turns }, Profile::Support { brand }) => {
            let mut messages = Vec::new();
            for t in 0..turns {
                if t > 0 {
                    messages.push(Msg::assistant("I'm sorry about that. Could you share your order number or the email on the account?"));
                }
                messages.push(Msg::user(products::support_question(&mut rng, w.corpus)));
            }
            let p = human(&PRODUCT_PARAMS, model, &mut rng);
            (
                Prompt {
                    system: Some(products::support_system(products::brand(*brand))),
                    messages,
                    tools: Tools::None,
                    answer: AnswerKind::Short,
                },
                p,
            )
        }
        (Kind::Batch { doc }, Profile::Batch { template }) => {
            let text = content::clip(w.corpus.answer_text(doc as usize), 800.min(max_chars));
            let p = Params::greedy(256);
            (products::batch_prompt(*template, text), p)
        }
        (
            Kind::Eval { item },
            Profile::Eval {
                suite_seed,
                samples,
                cot,
            },
        ) => {
            let p = Params {
                max_tokens: Some(2048.min(model.max_output)),
                temperature: Some(if *samples > 1 { 0.7 } else { 0.0 }),
                top_p: None,
                stream: false,
                n: *samples,
                logprobs: None,
                reasoning: false,
            };
            (products::eval_item(*suite_seed, item, *cot), p)
        }
        (Kind::Agent { conv, step }, _) => {
            let p = Params {
                max_tokens: Some(8192.min(model.max_output)),
                temperature: Some(0.0),
                top_p: None,
                stream: true,
                n: 1,
                logprobs: None,
                reasoning: model.reasoning && rng.chance(0.3),
            };
            (
                products::coding_agent(w.corpus, conv, step, &mut rng, max_chars),
                p,
            )
        }
        (
            Kind::Distill {
                cap,
                template,
                lang,
                elicit,
                follow_up,
                paraphrase,
                system,
                style,
                wording,
                conv,
                reuse,
            },
            Profile::Campaign { campaign, .. },
        ) => {
            let c = &w.campaigns[*campaign as usize];
            let cs = &w.campaign_specs[*campaign as usize];
            let list = &c.templates[cap as usize];
            let mut t = list[(template as usize).min(list.len().saturating_sub(1))];
            if paraphrase {
                t = t.paraphrased(&mut rng);
            }
            let answer_text = w.corpus.answer_text(rng.index(w.corpus.answers.len()));
            let style = ELICITATION_STYLES
                .get(style as usize)
                .copied()
                .unwrap_or("literal");
            let pool = c.user_wordings.get(lang as usize).filter(|p| !p.is_empty());
            let own = pool.map(|p| p[wording as usize % p.len()].as_str());
            // The request for reasoning: in the user turn, in the system
            // prompt, or only through the API's reasoning parameter.
            let user_elicit: Option<&str> = match (elicit, style) {
                (false, _) => None,
                (true, "literal") => templates::literal_elicit(&t, lang as usize).or(own),
                (true, "paraphrase") => own,
                _ => None,
            };
            let sys_elicit: Option<&str> = (elicit
                && style == "system"
                && !c.system_wordings.is_empty())
            .then(|| c.system_wordings[wording as usize % c.system_wordings.len()].as_str());
            let base_sys = (system > 0).then(|| c.systems[(system - 1) as usize].as_str());
            let joined;
            let sys = match (base_sys, sys_elicit) {
                (Some(a), Some(b)) => {
                    joined = format!("{a} {b}");
                    Some(joined.as_str())
                }
                (a, b) => a.or(b),
            };
            let prompt = if conv != NO_CONV {
                real_question(
                    w,
                    conv,
                    reuse,
                    user_elicit,
                    sys,
                    elicit,
                    follow_up,
                    &mut rng,
                )
            } else {
                let fill = Fill {
                    lang: lang as usize,
                    elicit: user_elicit,
                    reasoning: elicit,
                    follow_up,
                    answer_text,
                    system: sys,
                };
                let mut p = templates::instantiate(t, &fill, &mut rng);
                if let (Some(s), Some(existing)) = (sys_elicit, p.system.as_mut())
                    && !existing.contains(s)
                {
                    existing.push(' ');
                    existing.push_str(s);
                }
                p
            };
            let ps = &cs.params;
            let mut max_tokens = if rng.chance(ps.max_tokens_at_max) {
                model.max_output
            } else {
                (*rng.pick(&[2048u32, 4096, 4096, 8192])).min(model.max_output)
            };
            let mut temperature = ps.temperature;
            let mut top_p = None;
            if rng.chance(ps.vary) {
                // A script that randomises its settings per request.
                max_tokens = (*rng
                    .pick(&[512u32, 1024, 1500, 2048, 3000, 4096, 6000, 8192, 16000]))
                .min(model.max_output);
                temperature = (!rng.chance(0.15))
                    .then(|| (rng.range_f64(0.0, 1.3) * 100.0).round() as f32 / 100.0);
                top_p = rng
                    .chance(0.3)
                    .then(|| (rng.range_f64(0.7, 1.0) * 100.0).round() as f32 / 100.0);
            }
            let p = Params {
                max_tokens: Some(max_tokens),
                temperature,
                top_p,
                stream: rng.chance(ps.stream),
                n: ps.n,
                logprobs: rng.chance(ps.logprobs).then_some(ps.top_logprobs),
                reasoning: model.reasoning
                    && (rng.chance(ps.reasoning) || (elicit && style == "api")),
            };
            (prompt, p)
        }
        (Kind::Homework { set, item, step }, profile) => {
            let hp = match profile {
                Profile::Human(p) => *p,
                _ => PRODUCT_PARAMS,
            };
            let mut text = products::homework_problem(set, item);
            let mut vr = Rng::derive(&[
                w.seed,
                label("homework-words"),
                s.account as u64,
                s.seq as u64,
            ]);
            if vr.chance(0.5) {
                text = format!("{}{text}", vr.pick_str(products::HOMEWORK_OPENERS));
            }
            if step {
                text.push(' ');
                text.push_str(vr.pick_str(products::HOMEWORK_STEPS));
            }
            let p = human(&hp, model, &mut rng);
            (
                Prompt {
                    system: human_system(w, s.account, &hp),
                    messages: vec![Msg::user(text)],
                    tools: Tools::None,
                    answer: AnswerKind::Reasoning,
                },
                p,
            )
        }
        (Kind::Tutor { conv, turns, math }, Profile::Tutoring { brand, seed }) => {
            let first = if math {
                // A student types the problem in their own words.
                let mut mr = Rng::derive(&[
                    w.seed,
                    label("tutor-problem"),
                    s.account as u64,
                    conv as u64,
                ]);
                let p = tasks::math_problem(&mut mr);
                content::vary(&p, &mut mr)
            } else {
                let c = &w.corpus.conversations[conv as usize % w.corpus.conversations.len()];
                content::clip(&c.turns[0].text, max_chars.min(600)).to_string()
            };
            let mut messages = vec![Msg::user(first)];
            for _ in 0..turns {
                messages.push(Msg::assistant("Step 1: let's write down what we know. Step 2: set up the equation. Step 3: solve it and check."));
                messages.push(Msg::user(rng.pick_str(products::TUTOR_FOLLOW_UPS)));
            }
            let p = Params {
                max_tokens: Some(1024.min(model.max_output)),
                temperature: Some(0.3),
                top_p: None,
                stream: true,
                n: 1,
                logprobs: None,
                reasoning: false,
            };
            (
                Prompt {
                    system: Some(products::tutoring_system(products::brand(*brand), *seed)),
                    messages,
                    tools: Tools::None,
                    answer: AnswerKind::Reasoning,
                },
                p,
            )
        }
        (Kind::Judge { doc, explain }, Profile::Judge { rubric, .. }) => {
            let answer = content::clip(w.corpus.answer_text(doc as usize), 600.min(max_chars));
            let p = Params::greedy(512);
            (products::judge_prompt(*rubric, answer, explain), p)
        }
        (Kind::Hackathon { conv, elicit }, Profile::Hackathon { app, .. }) => {
            let c = &w.corpus.conversations[conv as usize % w.corpus.conversations.len()];
            let input = content::clip(&c.turns[0].text, 300);
            let p = Params {
                max_tokens: Some(*rng.pick(&[800u32, 1000, 2000])),
                temperature: Some(0.7),
                top_p: None,
                stream: false,
                n: 1,
                logprobs: None,
                reasoning: false,
            };
            (products::hackathon_prompt(*app, input, elicit), p)
        }
        // A kind that does not match its profile cannot be built by the
        // populations; render a minimal chat so the line stays valid.
        _ => (
            Prompt {
                system: None,
                messages: vec![Msg::user("hello")],
                tools: Tools::None,
                answer: AnswerKind::Short,
            },
            Params {
                max_tokens: Some(256),
                temperature: None,
                top_p: None,
                stream: false,
                n: 1,
                logprobs: None,
                reasoning: false,
            },
        ),
    };
    let anthropic = stream.anthropic || prompt.tools == Tools::Computer;
    // Batches do not stream (`crate::batches`).
    let in_batch = crate::batches::batched(acct, &s.kind);
    let mut params = params;
    if in_batch {
        params.stream = false;
    }
    // A share of OpenAI clients speak the Responses API (current SDKs and
    // agent frameworks), decided by the key, without a random draw, so
    // that the rest of the world is the same bytes; it has no `n` and no
    // `logprobs`, so requests that need them stay on Chat Completions.
    let responses =
        !anthropic && params.n <= 1 && params.logprobs.is_none() && speaks_responses(&stream.key);

    let mut j = J::new(out);
    j.obj();
    j.kstr("id", &format!("req_{}", rng.hex(20)));
    j.key("ts");
    j.sep();
    j.out.push(b'"');
    distillguard_core::Timestamp(s.ts).write_rfc3339(j.out);
    j.out.push(b'"');
    j.kstr("account_id", &acct.id);
    j.kstr("api_key_id", &stream.key);
    j.kstr(
        "endpoint",
        if anthropic {
            "/v1/messages"
        } else if responses {
            "/v1/responses"
        } else {
            "/v1/chat/completions"
        },
    );
    if in_batch {
        j.key("batch");
        j.obj();
        j.kstr("id", &crate::batches::batch_id(acct, s.ts));
        j.kstr("custom_id", &format!("req-{}", s.seq));
        j.end_obj();
    }
    j.key("request");
    let prompt_chars = if responses {
        write_responses_request(&mut j, &prompt, &params, &model.name)
    } else {
        write_request(&mut j, &prompt, &params, &model.name, anthropic)
    };

    // Outcome.
    let roll = rng.f64();
    let status: u16 = if roll < w.knobs.error_rate * 0.6 {
        429
    } else if roll < w.knobs.error_rate * 0.85 {
        500
    } else if roll < w.knobs.error_rate {
        if anthropic { 529 } else { 503 }
    } else {
        200
    };
    j.key("response");
    let latency = if status == 200 {
        let out_tokens = write_response(
            &mut j,
            &prompt,
            &params,
            model,
            if responses {
                Api::Responses
            } else if anthropic {
                Api::Anthropic
            } else {
                Api::Chat
            },
            prompt_chars,
            s,
            w,
            &mut rng,
        );
        250.0 + out_tokens as f64 * rng.range_f64(8.0, 16.0)
    } else {
        write_error(&mut j, status, anthropic);
        rng.range_f64(20.0, 400.0)
    };
    j.knum("status", status);
    j.knum("latency_ms", (latency * 10.0).round() / 10.0);
    j.key("client");
    j.obj();
    j.kstr("ip", ip);
    j.kstr("user_agent", client.user_agent);
    if w.knobs.network_fields {
        j.knum("asn", net.asn);
        j.kstr("asn_org", net.org);
        j.kstr("country", net.country);
        j.kstr("tls_fingerprint", client.tls);
    }
    j.end_obj();
    j.end_obj();
    out.push(b'\n');
}

/// A human account's own system prompt, if it set one (its text follows
/// from the account, so every request carries the same one).
fn human_system(w: &World, account: u32, hp: &HumanParams) -> Option<String> {
    if hp.system == 0 {
        return None;
    }
    let mut r = Rng::derive(&[
        w.seed,
        label("human-system"),
        account as u64,
        hp.system as u64,
    ]);
    Some(if hp.system & REASONING_SYSTEM != 0 {
        // A personal helper: its own framing around a request for steps.
        let style = *r.pick(&wording::Style::ALL[..6]);
        let rule = wording::system(&mut r, "en", style, wording::Bank::Train);
        let me = r.pick_str(tasks::NAMES);
        let about = r.pick_str(&[
            "I'm studying for my exams",
            "I am learning to code",
            "I'm preparing for job interviews",
            "I teach physics and check my solutions",
            "I'm brushing up on statistics",
            "I work as an analyst",
        ]);
        format!("You are {me}'s study helper. {about}. {rule}")
    } else if r.chance(0.5) {
        wording::plain_system(&mut r)
    } else {
        // The developer's own app persona.
        format!(
            "{} You are part of {}'s side project; keep answers under {} words.",
            wording::plain_system(&mut r),
            r.pick_str(tasks::NAMES),
            r.range_u64(50, 400)
        )
    })
}

/// A campaign request built on a real question from the corpus.
#[expect(clippy::too_many_arguments)]
fn real_question(
    w: &World,
    conv: u32,
    reuse: u16,
    user_elicit: Option<&str>,
    system: Option<&str>,
    reasoning: bool,
    follow_up: bool,
    rng: &mut Rng,
) -> Prompt {
    let c = &w.corpus.conversations[conv as usize % w.corpus.conversations.len()];
    let mut q = content::clip(&c.turns[0].text, w.knobs.max_message_chars).to_string();
    if reuse > 0 {
        let mut vr = Rng::derive(&[w.seed, label("vary"), conv as u64, 0, reuse as u64]);
        q = content::vary(&q, &mut vr);
    }
    let text = match user_elicit {
        Some(e) => wording::attach(rng, &q, e),
        None => q,
    };
    let mut messages = vec![Msg::user(text)];
    if follow_up {
        messages.push(Msg::assistant(
            "Step 1: restate the question. Step 2: work through it. Step 3: conclude.",
        ));
        messages.push(Msg::user(rng.pick_str(&[
            "Go deeper on the second step.",
            "Now check that answer a different way.",
            "Rewrite the full solution as a clean worked example.",
            "What would change if the assumption in your first step were false?",
        ])));
    }
    Prompt {
        system: system.map(str::to_string),
        messages,
        tools: Tools::None,
        answer: if reasoning {
            AnswerKind::Reasoning
        } else {
            AnswerKind::Corpus(conv, 1)
        },
    }
}

fn write_text_block(j: &mut J, text: &str) {
    j.obj();
    j.kstr("type", "text");
    j.kstr("text", text);
    j.end_obj();
}

/// The API a request is rendered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    Chat,
    Anthropic,
    Responses,
}

/// Per mille of OpenAI clients (by key) that use the Responses API.
const RESPONSES_PER_MILLE: u64 = 300;

/// Whether the stream of `key` speaks the Responses API.
fn speaks_responses(key: &str) -> bool {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in key.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h % 1000 < RESPONSES_PER_MILLE
}

/// Writes a Responses API body (`instructions`, `input` items,
/// `max_output_tokens`, `reasoning`, flat tools); returns its characters of
/// text, counted as [`write_request`] counts them.
fn write_responses_request(j: &mut J, p: &Prompt, params: &Params, model: &str) -> usize {
    let mut chars = p.system.as_ref().map_or(0, |s| s.len());
    j.obj();
    j.kstr("model", model);
    if let Some(s) = &p.system {
        j.kstr("instructions", s);
    }
    j.key("input");
    j.arr();
    for m in &p.messages {
        let mut texts: Vec<&str> = Vec::new();
        let mut images: Vec<&str> = Vec::new();
        for b in &m.blocks {
            match b {
                Block::Text(t) => {
                    chars += t.len();
                    texts.push(t);
                }
                Block::Image(u) => images.push(u),
                _ => {}
            }
        }
        // Tool outputs first (they answer the previous turn's calls).
        for b in &m.blocks {
            if let Block::ToolResult { id, text, image } = b {
                chars += text.len();
                j.obj();
                j.kstr("type", "function_call_output");
                j.kstr("call_id", &id.replace("toolu_", "call_"));
                let body = if text.is_empty() {
                    image.as_deref().unwrap_or("")
                } else {
                    text
                };
                j.kstr("output", body);
                j.end_obj();
            }
        }
        if !texts.is_empty() || !images.is_empty() {
            j.obj();
            j.kstr("role", if m.user { "user" } else { "assistant" });
            j.key("content");
            if images.is_empty() {
                j.str(&texts.join("\n"));
            } else {
                j.arr();
                for u in images {
                    j.obj();
                    j.kstr("type", "input_image");
                    j.kstr("image_url", u);
                    j.end_obj();
                }
                for t in texts {
                    j.obj();
                    j.kstr("type", "input_text");
                    j.kstr("text", t);
                    j.end_obj();
                }
                j.end_arr();
            }
            j.end_obj();
        }
        for b in &m.blocks {
            if let Block::ToolUse { id, name, input } = b {
                chars += input.len();
                j.obj();
                j.kstr("type", "function_call");
                j.kstr("call_id", &id.replace("toolu_", "call_"));
                j.kstr("name", name);
                j.kstr("arguments", input);
                j.end_obj();
            }
        }
    }
    j.end_arr();
    if let Some(mt) = params.max_tokens {
        j.knum("max_output_tokens", mt);
    }
    sampling(j, params);
    if params.reasoning {
        j.key("reasoning");
        j.raw(r#"{"effort":"high","summary":"auto"}"#);
    }
    if p.tools != Tools::None {
        j.key("tools");
        j.arr();
        for name in p.tools.names() {
            j.obj();
            j.kstr("type", "function");
            j.kstr("name", name);
            j.kstr("description", &format!("The {name} tool."));
            j.key("parameters");
            j.raw(r#"{"type":"object","properties":{"input":{"type":"string"}}}"#);
            j.end_obj();
        }
        j.end_arr();
    }
    j.end_obj();
    chars
}

/// Writes the request body; returns its characters of text (for usage).
/// The sampling settings every API writes alike: `temperature`, `top_p`,
/// `stream`, in that order.
fn sampling(j: &mut J, params: &Params) {
    if let Some(t) = params.temperature {
        j.knum("temperature", t);
    }
    if let Some(t) = params.top_p {
        j.knum("top_p", t);
    }
    if params.stream {
        j.key("stream");
        j.bool(true);
    }
}

fn write_request(j: &mut J, p: &Prompt, params: &Params, model: &str, anthropic: bool) -> usize {
    let mut chars = p.system.as_ref().map_or(0, |s| s.len());
    j.obj();
    j.kstr("model", model);
    if anthropic {
        j.knum("max_tokens", params.max_tokens.unwrap_or(4096));
        if let Some(s) = &p.system {
            j.kstr("system", s);
        }
    }
    j.key("messages");
    j.arr();
    if !anthropic && let Some(s) = &p.system {
        j.obj();
        j.kstr("role", "system");
        j.kstr("content", s);
        j.end_obj();
    }
    for m in &p.messages {
        for b in &m.blocks {
            chars += match b {
                Block::Text(t) => t.len(),
                Block::ToolResult { text, .. } => text.len(),
                Block::ToolUse { input, .. } => input.len(),
                Block::Image(_) => 0,
            };
        }
        if anthropic {
            write_anthropic_msg(j, m);
        } else {
            write_openai_msg(j, m);
        }
    }
    j.end_arr();
    if !anthropic && let Some(mt) = params.max_tokens {
        j.knum("max_tokens", mt);
    }
    sampling(j, params);
    if !anthropic && params.n > 1 {
        j.knum("n", params.n);
    }
    if !anthropic && let Some(k) = params.logprobs {
        j.key("logprobs");
        j.bool(true);
        j.knum("top_logprobs", k);
    }
    if params.reasoning {
        if anthropic {
            j.key("thinking");
            j.obj();
            j.kstr("type", "enabled");
            j.knum(
                "budget_tokens",
                (params.max_tokens.unwrap_or(4096) / 2).max(1024),
            );
            j.end_obj();
        } else {
            j.kstr("reasoning_effort", "high");
        }
    }
    if p.tools != Tools::None {
        j.key("tools");
        j.arr();
        for name in p.tools.names() {
            j.obj();
            if *name == "computer" && anthropic {
                j.kstr("type", "computer_20250124");
                j.kstr("name", "computer");
                j.knum("display_width_px", 1280);
                j.knum("display_height_px", 800);
            } else if anthropic {
                j.kstr("name", name);
                j.kstr("description", &format!("The {name} tool."));
                j.key("input_schema");
                j.raw(r#"{"type":"object","properties":{"input":{"type":"string"}}}"#);
            } else {
                j.kstr("type", "function");
                j.key("function");
                j.obj();
                j.kstr("name", name);
                j.kstr("description", &format!("The {name} tool."));
                j.key("parameters");
                j.raw(r#"{"type":"object","properties":{"input":{"type":"string"}}}"#);
                j.end_obj();
            }
            j.end_obj();
        }
        j.end_arr();
    }
    j.end_obj();
    chars
}

/// An Anthropic image block by URL.
fn write_image(j: &mut J, url: &str) {
    j.obj();
    j.kstr("type", "image");
    j.key("source");
    j.obj();
    j.kstr("type", "url");
    j.kstr("url", url);
    j.end_obj();
    j.end_obj();
}

fn write_anthropic_msg(j: &mut J, m: &Msg) {
    j.obj();
    j.kstr("role", if m.user { "user" } else { "assistant" });
    j.key("content");
    if let [Block::Text(t)] = m.blocks.as_slice() {
        j.str(t);
    } else {
        j.arr();
        for b in &m.blocks {
            match b {
                Block::Text(t) => write_text_block(j, t),
                Block::Image(url) => {
                    write_image(j, url);
                }
                Block::ToolUse { id, name, input } => {
                    j.obj();
                    j.kstr("type", "tool_use");
                    j.kstr("id", id);
                    j.kstr("name", name);
                    j.key("input");
                    j.raw(input);
                    j.end_obj();
                }
                Block::ToolResult { id, text, image } => {
                    j.obj();
                    j.kstr("type", "tool_result");
                    j.kstr("tool_use_id", id);
                    j.key("content");
                    j.arr();
                    if let Some(url) = image {
                        write_image(j, url);
                    }
                    if !text.is_empty() {
                        write_text_block(j, text);
                    }
                    j.end_arr();
                    j.end_obj();
                }
            }
        }
        j.end_arr();
    }
    j.end_obj();
}

fn write_openai_msg(j: &mut J, m: &Msg) {
    // Tool results become separate `tool` messages.
    let results: Vec<&Block> = m
        .blocks
        .iter()
        .filter(|b| matches!(b, Block::ToolResult { .. }))
        .collect();
    for b in &results {
        if let Block::ToolResult { id, text, image } = b {
            j.obj();
            j.kstr("role", "tool");
            j.kstr("tool_call_id", id);
            let body = if text.is_empty() {
                image.as_deref().unwrap_or("")
            } else {
                text
            };
            j.kstr("content", body);
            j.end_obj();
        }
    }
    let rest: Vec<&Block> = m
        .blocks
        .iter()
        .filter(|b| !matches!(b, Block::ToolResult { .. }))
        .collect();
    if rest.is_empty() {
        return;
    }
    j.obj();
    j.kstr("role", if m.user { "user" } else { "assistant" });
    j.key("content");
    let mut texts: Vec<&str> = Vec::new();
    let mut images: Vec<&str> = Vec::new();
    for b in &rest {
        match b {
            Block::Text(t) => texts.push(t),
            Block::Image(u) => images.push(u),
            _ => {}
        }
    }
    if images.is_empty() {
        j.str(&texts.join("\n"));
    } else {
        j.arr();
        for u in images {
            j.obj();
            j.kstr("type", "image_url");
            j.key("image_url");
            j.obj();
            j.kstr("url", u);
            j.end_obj();
            j.end_obj();
        }
        for t in texts {
            write_text_block(j, t);
        }
        j.end_arr();
    }
    let calls: Vec<&Block> = rest
        .iter()
        .copied()
        .filter(|b| matches!(b, Block::ToolUse { .. }))
        .collect();
    if !calls.is_empty() {
        j.key("tool_calls");
        j.arr();
        for c in calls {
            if let Block::ToolUse { id, name, input } = c {
                j.obj();
                j.kstr("id", &id.replace("toolu_", "call_"));
                j.kstr("type", "function");
                j.key("function");
                j.obj();
                j.kstr("name", name);
                j.kstr("arguments", input);
                j.end_obj();
                j.end_obj();
            }
        }
        j.end_arr();
    }
    j.end_obj();
}

const REASONING_TEXT: &str = "Let me restate the problem and identify what is given. First, I consider the quantities involved and how they relate. Then I check each intermediate result before moving on, and finally verify the answer against the constraints.";
const STEP_TEXT: &str = "Let's work through this step by step.\n\nStep 1: Restate the problem in our own words.\nStep 2: Identify the known quantities and the unknowns.\nStep 3: Apply the relevant rule and compute.\nStep 4: Check the result.\n\nFinal answer: see step 3.";
const SHORT_TEXT: &str =
    "Here is a concise answer. Let me know if you would like more detail on any part.";
const CODE_TEXT: &str = "Here is an implementation with tests:\n\n```\nfn solve(input: &str) -> usize {\n    input.lines().filter(|l| !l.is_empty()).count()\n}\n```\n\nComplexity: O(n).";
const JSON_TEXT: &str =
    "{\"score\": 7, \"rationale\": \"Mostly correct and clear, but misses one edge case.\"}";

#[expect(clippy::too_many_arguments)]
fn write_response(
    j: &mut J,
    p: &Prompt,
    params: &Params,
    model: &ModelRt,
    api: Api,
    prompt_chars: usize,
    s: &Spec,
    w: &World,
    rng: &mut Rng,
) -> u32 {
    let (text, mut out_tokens): (&str, u32) = match p.answer {
        AnswerKind::Corpus(conv, turn) => {
            let c = &w.corpus.conversations[conv as usize];
            match c.turns.get(turn as usize) {
                Some(t) => (&t.text, (t.text.len() / 4).max(1) as u32),
                None => (SHORT_TEXT, 40),
            }
        }
        AnswerKind::Reasoning => (STEP_TEXT, rng.lognormal(1400.0, 0.5) as u32),
        AnswerKind::Short => (SHORT_TEXT, rng.lognormal(120.0, 0.6) as u32),
        AnswerKind::Code => (CODE_TEXT, rng.lognormal(700.0, 0.5) as u32),
        AnswerKind::ToolCall => (SHORT_TEXT, rng.lognormal(150.0, 0.5) as u32),
        AnswerKind::Json => (JSON_TEXT, rng.lognormal(80.0, 0.4) as u32),
    };
    let cap = params.max_tokens.unwrap_or(model.max_output);
    let truncated = out_tokens >= cap;
    out_tokens = out_tokens.clamp(1, cap.max(1));
    let reasoning_tokens = params
        .reasoning
        .then(|| (rng.lognormal(1800.0, 0.6) as u32).clamp(64, 32_000));
    let visible = content::clip(text, w.knobs.response_chars);
    let in_tokens = (prompt_chars / 4 + 12) as u32;
    let tool_call = p.answer == AnswerKind::ToolCall && p.tools != Tools::None;
    let tool_name = p.tools.names().first().copied().unwrap_or("tool");
    j.obj();
    if api == Api::Responses {
        j.kstr("id", &format!("resp_{}", rng.hex(24)));
        j.kstr("object", "response");
        j.knum("created_at", s.ts / 1000);
        j.kstr("model", &model.name);
        j.kstr("status", if truncated { "incomplete" } else { "completed" });
        j.key("output");
        j.arr();
        if reasoning_tokens.is_some() {
            j.obj();
            j.kstr("type", "reasoning");
            j.key("summary");
            j.arr();
            j.obj();
            j.kstr("type", "summary_text");
            j.kstr(
                "text",
                content::clip(REASONING_TEXT, w.knobs.response_chars),
            );
            j.end_obj();
            j.end_arr();
            j.end_obj();
        }
        j.obj();
        j.kstr("type", "message");
        j.kstr("role", "assistant");
        j.key("content");
        j.arr();
        j.obj();
        j.kstr("type", "output_text");
        j.kstr("text", visible);
        j.end_obj();
        j.end_arr();
        j.end_obj();
        if tool_call {
            j.obj();
            j.kstr("type", "function_call");
            j.kstr("call_id", &format!("call_{}", rng.hex(16)));
            j.kstr("name", tool_name);
            j.kstr("arguments", "{}");
            j.end_obj();
        }
        j.end_arr();
        j.key("usage");
        j.obj();
        let output = out_tokens + reasoning_tokens.unwrap_or(0);
        j.knum("input_tokens", in_tokens);
        j.knum("output_tokens", output);
        j.knum("total_tokens", in_tokens + output);
        if let Some(r) = reasoning_tokens {
            j.key("output_tokens_details");
            j.obj();
            j.knum("reasoning_tokens", r);
            j.end_obj();
        }
        j.end_obj();
    } else if api == Api::Anthropic {
        j.kstr("id", &format!("msg_{}", rng.hex(24)));
        j.kstr("type", "message");
        j.kstr("role", "assistant");
        j.kstr("model", &model.name);
        j.key("content");
        j.arr();
        if reasoning_tokens.is_some() {
            j.obj();
            j.kstr("type", "thinking");
            j.kstr(
                "thinking",
                content::clip(REASONING_TEXT, w.knobs.response_chars),
            );
            j.kstr("signature", &rng.hex(32));
            j.end_obj();
        }
        write_text_block(j, visible);
        if tool_call {
            j.obj();
            j.kstr("type", "tool_use");
            j.kstr("id", &format!("toolu_{}", rng.hex(16)));
            j.kstr("name", tool_name);
            j.key("input");
            j.raw("{}");
            j.end_obj();
        }
        j.end_arr();
        j.kstr(
            "stop_reason",
            if tool_call {
                "tool_use"
            } else if truncated {
                "max_tokens"
            } else {
                "end_turn"
            },
        );
        j.key("usage");
        j.obj();
        j.knum("input_tokens", in_tokens);
        j.knum("output_tokens", out_tokens + reasoning_tokens.unwrap_or(0));
        j.end_obj();
    } else {
        j.kstr("id", &format!("chatcmpl-{}", rng.hex(24)));
        j.kstr("object", "chat.completion");
        j.knum("created", s.ts / 1000);
        j.kstr("model", &model.name);
        j.key("choices");
        j.arr();
        for i in 0..params.n.max(1) {
            j.obj();
            j.knum("index", i);
            j.key("message");
            j.obj();
            j.kstr("role", "assistant");
            j.kstr("content", visible);
            if reasoning_tokens.is_some() {
                j.kstr(
                    "reasoning_content",
                    content::clip(REASONING_TEXT, w.knobs.response_chars),
                );
            }
            if tool_call {
                j.key("tool_calls");
                j.raw(&format!(r#"[{{"id":"call_{}","type":"function","function":{{"name":"{tool_name}","arguments":"{{}}"}}}}]"#, rng.hex(16)));
            }
            j.end_obj();
            if params.logprobs.is_some() {
                j.key("logprobs");
                j.raw(r#"{"content":[]}"#);
            }
            j.kstr(
                "finish_reason",
                if tool_call {
                    "tool_calls"
                } else if truncated {
                    "length"
                } else {
                    "stop"
                },
            );
            j.end_obj();
        }
        j.end_arr();
        j.key("usage");
        j.obj();
        let completion = (out_tokens + reasoning_tokens.unwrap_or(0)) * params.n.max(1);
        j.knum("prompt_tokens", in_tokens);
        j.knum("completion_tokens", completion);
        j.knum("total_tokens", in_tokens + completion);
        if let Some(r) = reasoning_tokens {
            j.key("completion_tokens_details");
            j.obj();
            j.knum("reasoning_tokens", r * params.n.max(1));
            j.end_obj();
        }
        j.end_obj();
    }
    j.end_obj();
    out_tokens
}

fn write_error(j: &mut J, status: u16, anthropic: bool) {
    let (kind, msg) = match status {
        429 => (
            "rate_limit_error",
            "Rate limit exceeded. Please retry after a short wait.",
        ),
        529 => ("overloaded_error", "The service is temporarily overloaded."),
        503 => ("server_error", "The server is temporarily unavailable."),
        _ => ("api_error", "An internal error occurred."),
    };
    j.obj();
    if anthropic {
        j.kstr("type", "error");
        j.key("error");
        j.obj();
        j.kstr("type", kind);
        j.kstr("message", msg);
        j.end_obj();
    } else {
        j.key("error");
        j.obj();
        j.kstr("message", msg);
        j.kstr("type", kind);
        j.key("code");
        j.raw(if status == 429 {
            "\"rate_limit_exceeded\""
        } else {
            "null"
        });
        j.end_obj();
    }
    j.end_obj();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_matches_serde_json() {
        for s in [
            "plain",
            "quote \" and \\ backslash",
            "line\nbreak\ttab\r",
            "\u{1}\u{1f} ctl",
            "日本語 ✓",
        ] {
            let mut out = Vec::new();
            escape(&mut out, s);
            let back: String = serde_json::from_slice(&out).unwrap();
            assert_eq!(back, s);
        }
    }
}
