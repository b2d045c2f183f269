/*!
Partners' STIX 2.1 bundles as indicators to match traffic against.

Understood:
- indicator patterns made of comparisons joined by `OR`:
  `[ipv4-addr:value = '…']`, `[ipv4-addr:value ISSUBSET '…/n']` (and the
  same for `ipv6-addr`), `[user-account:user_id = '…']`. A comparison in
  any other form (other objects, `AND`, other operators) is counted in
  [`Intel::unsupported`] and skipped, never guessed at;
- the distillguard property extension on campaigns: salted hashes of
  payment, TLS and template fingerprints. Our own values are hashed with
  the partner's salt and compared.

Each match names the indicator (or campaign) it came from.
*/

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use serde_json::Value;

use crate::export::{EXTENSION_ID, salted};

#[derive(Debug, thiserror::Error)]
pub enum StixError {
    #[error("not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("not a STIX bundle: {0}")]
    NotBundle(String),
    #[error("object {index} ({id}): {reason}")]
    Object {
        index: usize,
        id: String,
        reason: String,
    },
}

/// Where a match came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Source {
    pub id: String,
    pub name: String,
}

struct Fingerprints {
    salt: String,
    payment: HashSet<String>,
    tls: HashSet<String>,
    template: HashSet<String>,
    source: u16,
}

/// Imported indicators.
#[derive(Default)]
pub struct Intel {
    pub sources: Vec<Source>,
    /// By prefix length: masked network → sources (one lookup per length).
    v4: std::collections::BTreeMap<u8, HashMap<u32, Vec<u16>>>,
    v6: std::collections::BTreeMap<u8, HashMap<u128, Vec<u16>>>,
    accounts: HashMap<String, Vec<u16>>,
    fingerprints: Vec<Fingerprints>,
    /// Pattern comparisons not understood (skipped).
    pub unsupported: usize,
    /// Comparisons understood.
    pub comparisons: usize,
}

fn source(intel: &mut Intel, o: &Value) -> u16 {
    let id = o["id"].as_str().unwrap_or("?").to_string();
    let name = o["name"].as_str().unwrap_or(&id).to_string();
    intel.sources.push(Source { id, name });
    (intel.sources.len() - 1) as u16
}

/// One comparison `type:prop OP 'value'` (without brackets).
fn comparison(intel: &mut Intel, text: &str, src: u16) -> bool {
    let t = text.trim();
    let Some((lhs, rest)) = t.split_once(' ') else {
        return false;
    };
    let rest = rest.trim();
    let (op, value) = if let Some(v) = rest.strip_prefix("ISSUBSET ") {
        ("ISSUBSET", v.trim())
    } else if let Some(v) = rest.strip_prefix("= ") {
        ("=", v.trim())
    } else {
        return false;
    };
    let Some(value) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) else {
        return false;
    };
    let value = value.replace("\\'", "'").replace("\\\\", "\\");
    match (lhs, op) {
        ("user-account:user_id", "=") => {
            intel.accounts.entry(value).or_default().push(src);
            true
        }
        ("ipv4-addr:value" | "ipv6-addr:value", _) => {
            let (addr, len) = match value.split_once('/') {
                Some((a, l)) => (a.to_string(), l.parse::<u8>().ok()),
                None => (value.clone(), None),
            };
            match addr.parse::<IpAddr>() {
                Ok(IpAddr::V4(v)) => {
                    let len = len.unwrap_or(32).min(32);
                    intel
                        .v4
                        .entry(len)
                        .or_default()
                        .entry(mask4(u32::from(v), len))
                        .or_default()
                        .push(src);
                    true
                }
                Ok(IpAddr::V6(v)) => {
                    let len = len.unwrap_or(128).min(128);
                    intel
                        .v6
                        .entry(len)
                        .or_default()
                        .entry(mask6(u128::from(v), len))
                        .or_default()
                        .push(src);
                    true
                }
                Err(_) => false,
            }
        }
        _ => false,
    }
}

fn mask4(v: u32, len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        v & (u32::MAX << (32 - u32::from(len)))
    }
}

fn mask6(v: u128, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        v & (u128::MAX << (128 - u32::from(len)))
    }
}

impl Intel {
    /// Reads a bundle (JSON text).
    pub fn from_json(text: &str) -> Result<Intel, StixError> {
        let v: Value = serde_json::from_str(text)?;
        if v["type"] != "bundle" {
            return Err(StixError::NotBundle(
                "the top-level \"type\" is not \"bundle\"".into(),
            ));
        }
        let objects = v["objects"]
            .as_array()
            .ok_or_else(|| StixError::NotBundle("no \"objects\" array".into()))?;
        let mut intel = Intel::default();
        for (index, o) in objects.iter().enumerate() {
            match o["type"].as_str() {
                Some("indicator") => {
                    if o["pattern_type"] != "stix" {
                        intel.unsupported += 1;
                        continue;
                    }
                    let pattern = o["pattern"].as_str().ok_or_else(|| StixError::Object {
                        index,
                        id: o["id"].as_str().unwrap_or("?").into(),
                        reason: "indicator without a pattern".into(),
                    })?;
                    let src = source(&mut intel, o);
                    for part in split_or(pattern) {
                        match part {
                            Some(c) if comparison(&mut intel, c, src) => intel.comparisons += 1,
                            _ => intel.unsupported += 1,
                        }
                    }
                }
                Some("campaign") => {
                    let Some(ext) = o["extensions"].get(EXTENSION_ID) else {
                        continue;
                    };
                    let src = source(&mut intel, o);
                    let set = |k: &str| -> HashSet<String> {
                        ext[k]
                            .as_array()
                            .map(|a| {
                                a.iter()
                                    .filter_map(|x| x.as_str().map(str::to_string))
                                    .collect()
                            })
                            .unwrap_or_default()
                    };
                    let fp = Fingerprints {
                        salt: ext["salt"].as_str().unwrap_or("").to_string(),
                        payment: set("payment_fingerprints"),
                        tls: set("tls_fingerprints"),
                        template: set("template_fingerprints"),
                        source: src,
                    };
                    intel.comparisons += fp.payment.len() + fp.tls.len() + fp.template.len();
                    intel.fingerprints.push(fp);
                }
                _ => {}
            }
        }
        Ok(intel)
    }

    /// Both bundles' indicators in one (the other's sources renumbered).
    pub fn merge(mut self, other: Intel) -> Intel {
        let off = self.sources.len() as u16;
        self.sources.extend(other.sources);
        for (l, nets) in other.v4 {
            let mine = self.v4.entry(l).or_default();
            for (n, srcs) in nets {
                mine.entry(n)
                    .or_default()
                    .extend(srcs.into_iter().map(|s| s + off));
            }
        }
        for (l, nets) in other.v6 {
            let mine = self.v6.entry(l).or_default();
            for (n, srcs) in nets {
                mine.entry(n)
                    .or_default()
                    .extend(srcs.into_iter().map(|s| s + off));
            }
        }
        for (a, v) in other.accounts {
            self.accounts
                .entry(a)
                .or_default()
                .extend(v.into_iter().map(|s| s + off));
        }
        self.fingerprints
            .extend(other.fingerprints.into_iter().map(|mut f| {
                f.source += off;
                f
            }));
        self.unsupported += other.unsupported;
        self.comparisons += other.comparisons;
        self
    }

    pub fn is_empty(&self) -> bool {
        self.comparisons == 0
    }

    /// Sources matching one request's account, client address and template
    /// fingerprint (hex, as in campaign reports).
    pub fn match_request(
        &self,
        account: &str,
        ip: Option<&str>,
        template: Option<&str>,
    ) -> Vec<u16> {
        let mut out: Vec<u16> = self.accounts.get(account).cloned().unwrap_or_default();
        match ip.and_then(|i| i.parse::<IpAddr>().ok()) {
            Some(IpAddr::V4(v)) => {
                let v = u32::from(v);
                for (l, nets) in &self.v4 {
                    out.extend(nets.get(&mask4(v, *l)).into_iter().flatten());
                }
            }
            Some(IpAddr::V6(v)) => {
                let v = u128::from(v);
                for (l, nets) in &self.v6 {
                    out.extend(nets.get(&mask6(v, *l)).into_iter().flatten());
                }
            }
            None => {}
        }
        // A template fingerprint matches alone. A TLS fingerprint is shared
        // by every user of the same client library, so it only adds to
        // another match from the same campaign (an address, an account,
        // a template), never marks a request by itself.
        if let Some(t) = template {
            // One hash per distinct salt (a bundle has one).
            let mut last: Option<(&str, String)> = None;
            for f in &self.fingerprints {
                if f.template.is_empty() {
                    continue;
                }
                let h = match &last {
                    Some((salt, h)) if *salt == f.salt => h.clone(),
                    _ => {
                        let h = salted(&f.salt, "template", t);
                        last = Some((f.salt.as_str(), h.clone()));
                        h
                    }
                };
                if f.template.contains(&h) {
                    out.push(f.source);
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Sources naming an account id.
    pub fn match_account(&self, account: &str) -> Vec<u16> {
        self.accounts.get(account).cloned().unwrap_or_default()
    }

    /// Sources matching an account record's payment fingerprint.
    pub fn match_payment(&self, payment: &str) -> Vec<u16> {
        self.fingerprints
            .iter()
            .filter(|f| f.payment.contains(&salted(&f.salt, "payment", payment)))
            .map(|f| f.source)
            .collect()
    }
}

/// Splits `[a] OR [b] OR …` into comparisons; `None` for a part that is not
/// one bracketed comparison (e.g. `AND` inside, or a qualifier).
fn split_or(pattern: &str) -> Vec<Option<&str>> {
    let mut out = Vec::new();
    let mut rest = pattern.trim();
    while !rest.is_empty() {
        let Some(inner) = rest.strip_prefix('[') else {
            out.push(None);
            break;
        };
        // Find the closing bracket outside quotes.
        let mut in_quote = false;
        let mut escaped = false;
        let mut end = None;
        for (i, ch) in inner.char_indices() {
            match ch {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '\'' => in_quote = !in_quote,
                ']' if !in_quote => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let Some(end) = end else {
            out.push(None);
            break;
        };
        let c = &inner[..end];
        out.push((!c.contains(" AND ") && !c.contains(" OR ")).then_some(c));
        rest = inner[end + 1..].trim_start();
        if let Some(r) = rest.strip_prefix("OR ") {
            rest = r.trim_start();
        } else if !rest.is_empty() {
            out.push(None);
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const BUNDLE: &str = r#"{"type":"bundle","id":"bundle--1","objects":[
      {"type":"indicator","id":"indicator--a","name":"hydra exits","pattern_type":"stix",
       "pattern":"[ipv4-addr:value ISSUBSET '203.0.113.0/24'] OR [ipv4-addr:value = '198.51.100.7'] OR [ipv6-addr:value ISSUBSET '2001:db8:1::/48'] OR [file:name = 'x'] OR [ipv4-addr:value = '1.2.3.4' AND ipv4-addr:value = '1.2.3.5']"},
      {"type":"indicator","id":"indicator--b","name":"ring accounts","pattern_type":"stix",
       "pattern":"[user-account:user_id = 'o\\'brien']"},
      {"type":"indicator","id":"indicator--c","pattern_type":"sigma","pattern":"x"}
    ]}"#;

    #[test]
    fn patterns_match_addresses_prefixes_and_accounts() {
        let intel = Intel::from_json(BUNDLE).unwrap();
        assert_eq!(intel.comparisons, 4);
        assert_eq!(intel.unsupported, 3); // file:name, the AND, the sigma indicator
        let hit = |acct: &str, ip: &str| intel.match_request(acct, Some(ip), None);
        assert_eq!(hit("a", "203.0.113.99"), [0]);
        assert_eq!(hit("a", "198.51.100.7"), [0]);
        assert!(hit("a", "198.51.100.8").is_empty());
        assert_eq!(hit("a", "2001:db8:1:ffff::1"), [0]);
        assert_eq!(hit("o'brien", "10.0.0.1"), [1]);
        assert_eq!(intel.sources[0].name, "hydra exits");
    }

    #[test]
    fn bad_bundles_are_errors() {
        assert!(matches!(Intel::from_json("{"), Err(StixError::Json(_))));
        assert!(matches!(
            Intel::from_json(r#"{"type":"indicator"}"#),
            Err(StixError::NotBundle(_))
        ));
        let e = Intel::from_json(r#"{"type":"bundle","objects":[{"type":"indicator","id":"indicator--z","pattern_type":"stix"}]}"#)
            .err()
            .unwrap();
        assert!(e.to_string().contains("object 0 (indicator--z)"), "{e}");
    }
}
