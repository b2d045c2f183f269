/*!
Link keys: what one event or account record shares with others.

A hydra campaign spreads its traffic over many small accounts, but they
share things: payment methods, IP ranges, client stacks, system prompts,
prompt templates, and the minutes in which they act. Each of these is a
key. Accounts that meet on a key become linkable. Each key kind says here
why attackers share it, and whether it may link accounts on its own.

Keys are 64-bit hashes, tagged by kind so that kinds never collide. The
readable label (an IP prefix, a client stack) travels with the event's
keys. The linker keeps labels only for keys that end up linking, which
are the campaign's indicators. Cost: a few hashes per event, computed on
the parsing threads.
*/

use distillguard_core::{AccountInfo, Event};
use distillguard_sketches::{hash_exact, mix64};
use serde::{Deserialize, Serialize};

/// The kinds of key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A payment method's fingerprint. Fraud rings reuse a few cards or
    /// virtual card ranges across many accounts; people rarely share one.
    Payment,
    /// The e-mail domain. A campaign's own domain is shared by its
    /// accounts; a webmail domain is shared by everyone (and is then far
    /// too common to link, see the linker's density rule).
    EmailDomain,
    /// The client's exact IP address. Proxy services put many accounts of
    /// one campaign behind the same exits.
    Ip,
    /// The client's IP prefix (/24 for IPv4, /64 for IPv6). Rented servers
    /// of unrelated actors share cloud ranges, so prefixes describe a
    /// campaign's infrastructure (and go out as indicators) but do not
    /// link accounts on their own.
    IpPrefix,
    /// The client stack: ASN, user agent and TLS fingerprint together.
    /// Shared by every user of a popular SDK in one cloud, so it only
    /// describes a campaign and never links accounts on its own.
    Client,
    /// A (non-empty) system prompt, verbatim. Scripts send their own.
    SystemPrompt,
    /// A template: the prompt's masked opening and closing wording together.
    Template,
    /// One template (or one application system prompt) in one ten-minute
    /// window: accounts acting in the same minutes on the same template
    /// (loosely synchronised behaviour, after SynchroTrap).
    Synchrony,
    /// An e-mail domain and the three hours its accounts signed up in: a
    /// batch of registrations. People sign up on their own schedule; a
    /// fraud ring registers hundreds in one sitting. Webmail domains have
    /// honest sign-ups in every window, and the density rule keeps them
    /// from linking.
    SignupBatch,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::Payment,
        Kind::EmailDomain,
        Kind::Ip,
        Kind::IpPrefix,
        Kind::Client,
        Kind::SystemPrompt,
        Kind::Template,
        Kind::Synchrony,
        Kind::SignupBatch,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Payment => "payment",
            Kind::EmailDomain => "email_domain",
            Kind::Ip => "ip",
            Kind::IpPrefix => "ip_prefix",
            Kind::Client => "client",
            Kind::SystemPrompt => "system_prompt",
            Kind::Template => "template",
            Kind::Synchrony => "synchrony",
            Kind::SignupBatch => "signup_batch",
        }
    }

    /// Whether a shared key of this kind may link accounts by itself.
    pub fn links(self) -> bool {
        !matches!(self, Kind::Client)
    }

    /// How much one shared dense key of this kind counts towards joining
    /// two groups of accounts ([`crate::linker::JOIN_EVIDENCE`]). A payment
    /// method is enough alone. The others need corroboration by another
    /// kind: prompt libraries (Orca-style system prompts, "think step by
    /// step" endings), proxy exits and webmail are shared across unrelated
    /// actors, and one shared key must not merge two campaigns. A batch
    /// of registrations is strong (an operator's own act). Synchronised
    /// windows count each once, and three of them are enough on their own
    /// (see the linker). Prefixes and client stacks only describe a
    /// campaign.
    pub fn weight(self) -> u8 {
        match self {
            Kind::Payment | Kind::SignupBatch => 3,
            Kind::EmailDomain
            | Kind::Ip
            | Kind::SystemPrompt
            | Kind::Template
            | Kind::Synchrony => 1,
            Kind::IpPrefix | Kind::Client => 0,
        }
    }

    fn tag(self) -> u64 {
        (self as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    /// The key of a value of this kind.
    pub fn key(self, value: &[u8]) -> u64 {
        mix64(hash_exact(value) ^ self.tag())
    }

    /// The key of an already hashed value of this kind.
    pub fn key_of_hash(self, h: u64) -> u64 {
        mix64(h ^ self.tag())
    }
}

/// A key's readable value, kept in a form that costs no allocation where
/// it can be rendered later (most keys never need rendering: only those
/// that suspicious accounts touch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Label {
    Text(String),
    /// A fingerprint, rendered as 16 hex digits.
    Hex(u64),
    Ip(std::net::IpAddr),
    /// The /24 or /64 around an address.
    Prefix(std::net::IpAddr),
    /// A template fingerprint and a window number.
    Sync(u64, i64),
}

impl Label {
    pub fn render(&self) -> String {
        match self {
            Label::Text(t) => t.clone(),
            Label::Hex(h) => format!("{h:016x}"),
            Label::Ip(ip) => ip.to_string(),
            Label::Prefix(ip) => prefix_text(*ip),
            Label::Sync(t, w) => format!("{t:016x}@{w}"),
        }
    }
}

/// One key with its label (what an analyst or a partner can match on).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    pub kind: Kind,
    pub key: u64,
    /// Readable value: an IP prefix, a client stack, a fingerprint in hex.
    pub label: Label,
}

/// Width of a synchrony window.
pub const SYNC_WINDOW_MS: i64 = 10 * 60 * 1000;

/// The keys of one event (the account's own keys come from its record).
pub fn event_keys(e: &Event, template: Option<[u64; 2]>) -> Vec<Key> {
    let mut out = Vec::with_capacity(7);
    if let Some(ip) = e
        .client
        .ip
        .as_deref()
        .and_then(|i| i.parse::<std::net::IpAddr>().ok())
    {
        let (net, len) = masked(ip);
        out.push(Key {
            kind: Kind::Ip,
            key: Kind::Ip.key_of_hash(mix64(net_bits(ip) ^ 0x5151)),
            label: Label::Ip(ip),
        });
        out.push(Key {
            kind: Kind::IpPrefix,
            key: Kind::IpPrefix.key_of_hash(mix64(net ^ u64::from(len))),
            label: Label::Prefix(ip),
        });
    }
    let c = &e.client;
    if c.user_agent.is_some() || c.tls_fingerprint.is_some() {
        // Built with `push_str`, not `format!`: it runs on every request.
        let (ua, tls) = (
            c.user_agent.as_deref().unwrap_or("-"),
            c.tls_fingerprint.as_deref().unwrap_or("-"),
        );
        let mut label = String::with_capacity(16 + ua.len() + tls.len());
        label.push_str("AS");
        match c.asn {
            Some(a) => push_decimal(&mut label, a),
            None => label.push('?'),
        }
        label.push_str(" · ");
        label.push_str(ua);
        label.push_str(" · ");
        label.push_str(tls);
        out.push(Key {
            kind: Kind::Client,
            key: Kind::Client.key(label.as_bytes()),
            label: Label::Text(label),
        });
    }
    let window = e.ts.0.div_euclid(SYNC_WINDOW_MS);
    let mut synced = false;
    if let Some(s) = e.request.system_prompt.as_deref().filter(|s| s.len() >= 16) {
        let h = hash_exact(s.as_bytes());
        out.push(Key {
            kind: Kind::SystemPrompt,
            key: Kind::SystemPrompt.key_of_hash(h),
            label: Label::Hex(h),
        });
        // An application's own system prompt (not a short default) in a
        // window: synchrony for prompts too short to have a template.
        if template.is_none() && s.chars().nth(59).is_some() {
            synced = true;
            out.push(Key {
                kind: Kind::Synchrony,
                key: Kind::Synchrony.key_of_hash(mix64(h ^ 0x5359 ^ window as u64)),
                label: Label::Sync(h, window),
            });
        }
    }
    if let Some([head, tail]) = template {
        let t = mix64(head ^ tail.rotate_left(32));
        out.push(Key {
            kind: Kind::Template,
            key: Kind::Template.key_of_hash(t),
            label: Label::Hex(t),
        });
        if !synced {
            out.push(Key {
                kind: Kind::Synchrony,
                key: Kind::Synchrony.key_of_hash(mix64(t ^ window as u64)),
                label: Label::Sync(t, window),
            });
        }
    }
    out
}

/// Appends `n` in decimal (what `format!("{n}")` writes, without the
/// formatting machinery).
fn push_decimal(out: &mut String, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[i..] {
        out.push(char::from(d));
    }
}

/// Width of a sign-up batch window.
pub const SIGNUP_WINDOW_MS: i64 = 3 * 60 * 60 * 1000;

/// All bits of an address folded to 64 (for hashing).
fn net_bits(ip: std::net::IpAddr) -> u64 {
    match ip {
        std::net::IpAddr::V4(v) => u64::from(u32::from(v)),
        std::net::IpAddr::V6(v) => {
            let x = u128::from(v);
            mix64(x as u64) ^ (x >> 64) as u64
        }
    }
}

/// The /24 or /64 network bits of an address, and the prefix length.
fn masked(ip: std::net::IpAddr) -> (u64, u8) {
    match ip {
        std::net::IpAddr::V4(v) => (u64::from(u32::from(v) & 0xffff_ff00), 24),
        std::net::IpAddr::V6(v) => ((u128::from(v) >> 64) as u64, 64),
    }
}

fn prefix_text(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// The keys of an account record.
pub fn account_keys(info: &AccountInfo) -> Vec<Key> {
    let mut out = Vec::with_capacity(2);
    if let Some(p) = info
        .payment_fingerprint
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        out.push(Key {
            kind: Kind::Payment,
            key: Kind::Payment.key(p.as_bytes()),
            label: Label::Text(p.to_string()),
        });
    }
    if let Some(d) = info.email_domain.as_deref().filter(|d| !d.is_empty()) {
        let d = d.to_ascii_lowercase();
        if let Some(c) = info.created_at {
            let w = c.0.div_euclid(SIGNUP_WINDOW_MS);
            let label = format!(
                "{d} @ {}",
                distillguard_core::Timestamp(w * SIGNUP_WINDOW_MS)
            );
            out.push(Key {
                kind: Kind::SignupBatch,
                key: Kind::SignupBatch.key(label.as_bytes()),
                label: Label::Text(label),
            });
        }
        out.push(Key {
            kind: Kind::EmailDomain,
            key: Kind::EmailDomain.key(d.as_bytes()),
            label: Label::Text(d),
        });
    }
    out
}

/// The /24 (IPv4) or /64 (IPv6) prefix of an address, as CIDR text.
pub fn ip_prefix(ip: &str) -> Option<String> {
    ip.parse::<std::net::IpAddr>().ok().map(prefix_text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_written_as_format_writes_them() {
        for n in [0, 7, 10, 13335, 4_294_967_295] {
            let mut s = String::from("AS");
            push_decimal(&mut s, n);
            assert_eq!(s, format!("AS{n}"));
        }
    }

    #[test]
    fn prefixes_of_both_families() {
        assert_eq!(ip_prefix("203.0.113.77").as_deref(), Some("203.0.113.0/24"));
        assert_eq!(
            ip_prefix("2001:db8:1:2:3:4:5:6").as_deref(),
            Some("2001:db8:1:2::/64")
        );
        assert_eq!(ip_prefix("not an ip"), None);
    }

    #[test]
    fn kinds_never_collide_and_only_client_does_not_link() {
        assert_ne!(Kind::Payment.key(b"x"), Kind::EmailDomain.key(b"x"));
        assert!(
            Kind::ALL
                .iter()
                .filter(|k| !k.links())
                .eq([Kind::Client].iter())
        );
    }

    #[test]
    fn an_event_and_a_record_yield_their_keys() {
        let e = distillguard_core::parse_event_line(
            r#"{"ts":"2026-02-24T08:00:00Z","account_id":"a","request":{"messages":[{"role":"system","content":"You are a meticulous grader of answers."},{"role":"user","content":"hi"}]},"client":{"ip":"198.51.100.9","user_agent":"python-httpx/0.27","asn":16509,"tls_fingerprint":"ja3x"}}"#,
        )
        .unwrap();
        let keys = event_keys(&e, Some([1, 2]));
        let kinds: Vec<Kind> = keys.iter().map(|k| k.kind).collect();
        assert_eq!(
            kinds,
            [
                Kind::Ip,
                Kind::IpPrefix,
                Kind::Client,
                Kind::SystemPrompt,
                Kind::Template,
                Kind::Synchrony
            ]
        );
        assert_eq!(keys[0].label.render(), "198.51.100.9");
        assert_eq!(keys[1].label.render(), "198.51.100.0/24");
        assert_eq!(keys[2].label.render(), "AS16509 · python-httpx/0.27 · ja3x");
        let info = AccountInfo {
            payment_fingerprint: Some("pm_1".into()),
            email_domain: Some("Example.ORG".into()),
            ..Default::default()
        };
        let a = account_keys(&info);
        assert_eq!(a[1].label.render(), "example.org");
        assert_eq!(a[0].kind, Kind::Payment);
    }
}
