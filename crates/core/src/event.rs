/*!
The typed event every detector sees: one API request, normalised.

A log line (see `docs/event-log.md`) carries the raw request body as the
client sent it, in either the OpenAI Chat Completions or the Anthropic
Messages dialect. [`crate::normalize`] turns it into an [`Event`], which says
the same things in one vocabulary: system prompt, last user turn, depth,
tools, sampling parameters, usage, whether reasoning was returned.
*/

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// Which API a body is written in: the one vocabulary for the normaliser,
/// the importers and the gateway (whose upstreams speak `openai` or
/// `anthropic`; an OpenAI upstream also serves the Responses API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dialect {
    /// OpenAI Chat Completions (`/v1/chat/completions`).
    #[serde(rename = "openai", alias = "open_ai")]
    OpenAi,
    /// Anthropic Messages (`/v1/messages`).
    Anthropic,
    /// OpenAI Responses (`/v1/responses`).
    Responses,
}

impl Dialect {
    /// The canonical endpoint path of the dialect.
    pub fn endpoint(self) -> &'static str {
        match self {
            Dialect::OpenAi => "/v1/chat/completions",
            Dialect::Anthropic => "/v1/messages",
            Dialect::Responses => "/v1/responses",
        }
    }

    /// The dialect an upstream must speak to serve this API: the Responses
    /// API is served by OpenAI-dialect upstreams.
    pub fn upstream(self) -> Dialect {
        match self {
            Dialect::OpenAi | Dialect::Responses => Dialect::OpenAi,
            Dialect::Anthropic => Dialect::Anthropic,
        }
    }

    /// The name used in configs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::OpenAi => "openai",
            Dialect::Anthropic => "anthropic",
            Dialect::Responses => "responses",
        }
    }

    /// The dialect an endpoint path implies, if it names one.
    pub fn from_endpoint(path: &str) -> Option<Dialect> {
        let path = path.split('?').next().unwrap_or(path).trim_end_matches('/');
        if path.ends_with("/chat/completions") {
            Some(Dialect::OpenAi)
        } else if path.ends_with("/messages") {
            Some(Dialect::Anthropic)
        } else if path.ends_with("/responses") {
            Some(Dialect::Responses)
        } else {
            None
        }
    }
}

/// The batch a request came in (OpenAI's Batch API, Anthropic's Message
/// Batches): its id and the request's `custom_id` in it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchRef {
    pub id: String,
    pub custom_id: String,
}

/// Where the request came from on the network.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asn: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asn_org: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_fingerprint: Option<String>,
}

/// What the provider knows about the account (from signup and billing).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AccountInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// e.g. `standard`, `education`, `startup`, `research`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signup_program: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
}

/// A line of an `--accounts` file: the account fields beside an id.
/// (Spelled out rather than `#[serde(flatten)]`, which would hide the path
/// of a bad field from the error message.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountRecord {
    pub account_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signup_program: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
}

impl AccountRecord {
    pub fn new(account_id: String, a: AccountInfo) -> Self {
        AccountRecord {
            account_id,
            created_at: a.created_at,
            tier: a.tier,
            signup_program: a.signup_program,
            payment_fingerprint: a.payment_fingerprint,
            email_domain: a.email_domain,
            country: a.country,
            verified: a.verified,
        }
    }

    /// Splits into the id and the account fields.
    pub fn into_parts(self) -> (String, AccountInfo) {
        (
            self.account_id,
            AccountInfo {
                created_at: self.created_at,
                tier: self.tier,
                signup_program: self.signup_program,
                payment_fingerprint: self.payment_fingerprint,
                email_domain: self.email_domain,
                country: self.country,
                verified: self.verified,
            },
        )
    }
}

/// A line of a `--models` file: when a model became available.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRelease {
    pub model: String,
    pub released_at: Timestamp,
}

/// Sampling parameters as requested (absent means "the API default").
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    /// `max_tokens` / `max_completion_tokens`.
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<u32>,
    /// Number of choices (OpenAI `n`).
    pub n: Option<u32>,
    /// Token log-probabilities requested (OpenAI `logprobs`).
    pub logprobs: bool,
    pub top_logprobs: Option<u32>,
    pub seed: Option<i64>,
    pub stream: bool,
    /// Extended reasoning requested: OpenAI `reasoning_effort`, Anthropic
    /// `thinking.budget_tokens`, Responses `reasoning.effort` (as text,
    /// e.g. `"high"` or `"16000"`).
    pub reasoning: Option<String>,
    /// A summary of the reasoning asked for (Responses `reasoning.summary`).
    #[serde(default)]
    pub reasoning_summary: bool,
}

/// The request body, normalised.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub model: Option<String>,
    /// System and developer instructions, joined with blank lines.
    pub system_prompt: Option<String>,
    /// Text of the last user turn (text parts only, tool results excluded).
    pub last_user_text: String,
    /// Number of messages in the conversation (system excluded).
    pub depth: u32,
    pub user_turns: u32,
    pub assistant_turns: u32,
    /// Names of the tools offered (function name, or server tool type).
    pub tools: Vec<String>,
    /// Tool calls made by the assistant earlier in the conversation.
    pub tool_calls: u32,
    /// Tool results sent back by the client.
    pub tool_results: u32,
    /// Image parts anywhere in the conversation.
    pub images: u32,
    /// Characters of text in all messages and the system prompt.
    pub prompt_chars: u64,
    pub sampling: Sampling,
    /// The request continues a stored conversation (Responses
    /// `previous_response_id`): `depth` counts only what it carries, and
    /// the conversation behind it is unknown to the log.
    #[serde(default)]
    pub continues: bool,
    /// Responses: the stored response it continues (`previous_response_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_response_id: Option<String>,
}

/// The response body, normalised (content is not kept, only its shape).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub input_tokens: Option<u32>,
    pub output_tokens: Option<u32>,
    pub reasoning_tokens: Option<u32>,
    /// A `reasoning_content` field or `thinking` block came back.
    pub reasoning_returned: bool,
    pub finish_reason: Option<String>,
    pub choices: u32,
    pub tool_calls: u32,
    /// Characters of visible answer text.
    pub output_chars: u64,
    /// Responses: the answer's id (what a later `previous_response_id`
    /// names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// One API request, normalised: what detectors consume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: Option<String>,
    pub ts: Timestamp,
    pub account_id: String,
    pub api_key_id: Option<String>,
    pub endpoint: Option<String>,
    pub dialect: Dialect,
    /// The model: from the body, else the line's `model` field.
    pub model: Option<String>,
    pub request: Request,
    pub response: Option<Response>,
    pub status: Option<u16>,
    pub latency_ms: Option<f64>,
    pub client: ClientInfo,
    pub account: Option<AccountInfo>,
    /// Sent in a batch (see [`crate::import::batch`]).
    pub batch: Option<BatchRef>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_dialect_is_written_by_its_config_name_and_read_back() {
        for d in [Dialect::OpenAi, Dialect::Anthropic, Dialect::Responses] {
            let text = serde_json::to_string(&d).unwrap();
            assert_eq!(text, format!("\"{}\"", d.as_str()));
            assert_eq!(serde_json::from_str::<Dialect>(&text).unwrap(), d);
            assert_eq!(Dialect::from_endpoint(d.endpoint()), Some(d));
        }
        // The spelling of earlier versions still reads.
        assert_eq!(
            serde_json::from_str::<Dialect>("\"open_ai\"").unwrap(),
            Dialect::OpenAi
        );
        assert_eq!(Dialect::Responses.upstream(), Dialect::OpenAi);
        assert_eq!(Dialect::Anthropic.upstream(), Dialect::Anthropic);
    }
}
