/*!
A report's campaigns as a STIX 2.1 bundle.

What goes out, per campaign:
- a `campaign` (name, description from its reasons, first and last seen),
  carrying the distillguard property extension: salted SHA-256 hashes of
  its payment, TLS and template fingerprints (never raw values, never
  prompt text) and the salt, so that a partner can hash its own values and
  compare;
- `indicator`s: its IP addresses and prefixes (`ipv4-addr` / `ipv6-addr`
  patterns) and its account ids (`user-account` patterns), in chunks of at
  most 500 comparisons;
- an `infrastructure` for its network (`anonymization` for rotating proxy
  pools, `botnet` for large hydra networks), with `uses`/`indicates`
  relationships;
- a `sighting` of its network indicator with first/last seen and count.

Identifiers are UUIDv4-shaped but derived from the content (a hash), so
the same report gives the same bundle, byte for byte.
*/

use distillguard_core::report::{CampaignReport, Report};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The extension's definition id (fixed: partners recognise it).
pub const EXTENSION_ID: &str = "extension-definition--6f1c2d51-3a8e-4b7e-9a43-0d4f0b7c8e21";

/// Export options.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// The producing organisation (the bundle's identity).
    pub producer: String,
    /// Salt for fingerprint hashes; default: derived from the report.
    pub salt: Option<String>,
}

/// Comparisons per indicator pattern.
const CHUNK: usize = 500;

fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A content-derived identifier of UUIDv4 shape.
pub(crate) fn content_id(kind: &str, seed: &str) -> String {
    id(kind, seed)
}

fn id(kind: &str, seed: &str) -> String {
    let h = sha256_hex(&[kind.as_bytes(), b"\0", seed.as_bytes()]);
    let mut b: Vec<char> = h[..32].chars().collect();
    b[12] = '4';
    let v = u8::from_str_radix(&h[16..17], 16).unwrap_or(0);
    b[16] = ['8', '9', 'a', 'b'][(v & 3) as usize];
    let s: String = b.into_iter().collect();
    format!(
        "{kind}--{}-{}-{}-{}-{}",
        &s[0..8],
        &s[8..12],
        &s[12..16],
        &s[16..20],
        &s[20..32]
    )
}

/// The salted hash partners compare: SHA-256 of `salt:kind:value`.
pub fn salted(salt: &str, kind: &str, value: &str) -> String {
    sha256_hex(&[
        salt.as_bytes(),
        b":",
        kind.as_bytes(),
        b":",
        value.as_bytes(),
    ])
}

pub(crate) fn quote(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\'', "\\'")
}

fn ts(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::to_string)
}

fn list<'a>(c: &'a CampaignReport, field: &str) -> Vec<&'a Value> {
    c.extra
        .get(field)
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

/// Builds the bundle.
pub fn bundle(report: &Report, o: &ExportOptions) -> Value {
    let salt = o.salt.clone().unwrap_or_else(|| {
        let ids: Vec<&str> = report
            .campaigns
            .iter()
            .map(|c| c.campaign_id.as_str())
            .collect();
        sha256_hex(&[ids.join(",").as_bytes()])[..32].to_string()
    });
    // A fixed creation time for the producer's own objects keeps bytes stable.
    let epoch = report
        .campaigns
        .iter()
        .filter_map(|c| ts(c.extra.get("first_seen")))
        .min()
        .unwrap_or_else(|| "2026-01-01T00:00:00.000Z".to_string());
    let identity = id("identity", &o.producer);
    let mut objects = vec![
        json!({
            "type": "identity", "spec_version": "2.1", "id": identity,
            "created": epoch, "modified": epoch,
            "name": o.producer, "identity_class": "organization",
        }),
        json!({
            "type": "extension-definition", "spec_version": "2.1", "id": EXTENSION_ID,
            "created_by_ref": identity, "created": epoch, "modified": epoch,
            "name": "distillguard fingerprints",
            "description": "Salted SHA-256 hashes (sha256(salt:kind:value)) of the payment, TLS and prompt-template fingerprints a distillation campaign shared. No raw values, no prompt text.",
            "schema": "https://github.com/distillguard/distillguard/blob/main/docs/stix-extension.md",
            "version": "1.0.0",
            "extension_types": ["property-extension"],
        }),
    ];
    for c in &report.campaigns {
        let created = c
            .detected_at
            .map(|t| t.to_string())
            .or_else(|| ts(c.extra.get("first_seen")))
            .unwrap_or_else(|| epoch.clone());
        let campaign = id("campaign", &c.campaign_id);
        let reasons: Vec<String> = list(c, "reasons")
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        let indicators = list(c, "indicators");
        let of_kind = |k: &str| -> Vec<String> {
            indicators
                .iter()
                .filter(|i| i["kind"] == k)
                .filter_map(|i| i["value"].as_str().map(str::to_string))
                .collect()
        };
        let payments: Vec<String> = of_kind("payment")
            .iter()
            .map(|v| salted(&salt, "payment", v))
            .collect();
        let tls: Vec<String> = {
            let mut t: Vec<String> = list(c, "clients")
                .iter()
                .filter_map(|v| v["value"].as_str())
                .filter_map(|v| v.rsplit(" · ").next())
                .filter(|v| *v != "-")
                .map(|v| salted(&salt, "tls", v))
                .collect();
            t.sort();
            t.dedup();
            t
        };
        let templates: Vec<String> = list(c, "templates")
            .iter()
            .filter_map(|v| v["fingerprint"].as_str())
            .map(|v| salted(&salt, "template", v))
            .collect();
        let mut ext = json!({
            "extension_type": "property-extension",
            "salt": salt,
            "accounts": c.accounts.len(),
        });
        // STIX forbids empty lists: only non-empty ones go out.
        for (k, v) in [
            ("payment_fingerprints", payments),
            ("tls_fingerprints", tls),
            ("template_fingerprints", templates),
        ] {
            if !v.is_empty() {
                ext[k] = json!(v);
            }
        }
        let mut camp = json!({
            "type": "campaign", "spec_version": "2.1", "id": campaign,
            "created_by_ref": identity, "created": created, "modified": created,
            "name": format!("distillation campaign {}", c.campaign_id),
            "description": reasons.join("; "),
            "objective": "Harvest model outputs to train a competing model (distillation).",
            "extensions": { EXTENSION_ID: ext },
        });
        if let Some(f) = ts(c.extra.get("first_seen")) {
            camp["first_seen"] = json!(f);
        }
        if let Some(l) = ts(c.extra.get("last_seen")) {
            camp["last_seen"] = json!(l);
        }
        objects.push(camp);
        // Network indicators: exact addresses and prefixes, by family.
        let mut net: Vec<String> = Vec::new();
        for v in of_kind("ip").iter().chain(of_kind("ip_prefix").iter()) {
            let family = if v.contains(':') {
                "ipv6-addr"
            } else {
                "ipv4-addr"
            };
            let op = if v.contains('/') { "ISSUBSET" } else { "=" };
            net.push(format!("[{family}:value {op} '{}']", quote(v)));
        }
        net.sort();
        net.dedup();
        let mut indicator_ids = Vec::new();
        for (n, chunk) in net.chunks(CHUNK).enumerate() {
            let iid = id("indicator", &format!("{}/net/{n}", c.campaign_id));
            objects.push(json!({
                "type": "indicator", "spec_version": "2.1", "id": iid,
                "created_by_ref": identity, "created": created, "modified": created,
                "name": format!("{} network {}", c.campaign_id, n + 1),
                "description": "Client addresses and prefixes this campaign's accounts used.",
                "indicator_types": ["malicious-activity", "anonymization"],
                "pattern": chunk.join(" OR "), "pattern_type": "stix", "valid_from": created,
            }));
            indicator_ids.push(iid);
        }
        let mut accts: Vec<String> = c
            .accounts
            .iter()
            .map(|a| format!("[user-account:user_id = '{}']", quote(a)))
            .collect();
        accts.sort();
        for (n, chunk) in accts.chunks(CHUNK).enumerate() {
            let iid = id("indicator", &format!("{}/accounts/{n}", c.campaign_id));
            objects.push(json!({
                "type": "indicator", "spec_version": "2.1", "id": iid,
                "created_by_ref": identity, "created": created, "modified": created,
                "name": format!("{} accounts {}", c.campaign_id, n + 1),
                "description": "Accounts on the producer's platform that belonged to this campaign.",
                "indicator_types": ["malicious-activity"],
                "pattern": chunk.join(" OR "), "pattern_type": "stix", "valid_from": created,
            }));
            indicator_ids.push(iid);
        }
        for iid in &indicator_ids {
            objects.push(relationship(
                iid,
                "indicates",
                &campaign,
                &created,
                &identity,
            ));
        }
        if !net.is_empty() {
            let ips = of_kind("ip").len();
            let kind = if ips as f64 >= 1.5 * c.accounts.len() as f64 {
                "anonymization"
            } else if c.accounts.len() >= 100 {
                "botnet"
            } else {
                "unknown"
            };
            let infra = id("infrastructure", &c.campaign_id);
            objects.push(json!({
                "type": "infrastructure", "spec_version": "2.1", "id": infra,
                "created_by_ref": identity, "created": created, "modified": created,
                "name": format!("{} network", c.campaign_id),
                "description": format!("{ips} client addresses shared by {} accounts.", c.accounts.len()),
                "infrastructure_types": [kind],
            }));
            objects.push(relationship(&campaign, "uses", &infra, &created, &identity));
            if let Some(first) = indicator_ids.first() {
                objects.push(relationship(
                    first,
                    "indicates",
                    &infra,
                    &created,
                    &identity,
                ));
                let mut s = json!({
                    "type": "sighting", "spec_version": "2.1",
                    "id": id("sighting", &c.campaign_id),
                    "created_by_ref": identity, "created": created, "modified": created,
                    "sighting_of_ref": first,
                    "where_sighted_refs": [identity],
                    "count": c.extra.get("requests").and_then(Value::as_u64).unwrap_or(0).min(999_999_999),
                });
                if let (Some(f), Some(l)) =
                    (ts(c.extra.get("first_seen")), ts(c.extra.get("last_seen")))
                {
                    s["first_seen"] = json!(f);
                    s["last_seen"] = json!(l);
                }
                objects.push(s);
            }
        }
    }
    let ids: Vec<&str> = objects.iter().filter_map(|o| o["id"].as_str()).collect();
    json!({
        "type": "bundle",
        "id": id("bundle", &ids.join(",")),
        "objects": objects,
    })
}

fn relationship(src: &str, kind: &str, dst: &str, created: &str, by: &str) -> Value {
    json!({
        "type": "relationship", "spec_version": "2.1",
        "id": id("relationship", &format!("{src}|{kind}|{dst}")),
        "created_by_ref": by, "created": created, "modified": created,
        "relationship_type": kind, "source_ref": src, "target_ref": dst,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ids_are_uuid4_shaped_and_stable() {
        let a = id("campaign", "camp_1");
        assert_eq!(a, id("campaign", "camp_1"));
        assert_ne!(a, id("campaign", "camp_2"));
        let u = a.strip_prefix("campaign--").unwrap();
        let parts: Vec<&str> = u.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'));
        assert!("89ab".contains(&parts[3][..1]));
    }

    #[test]
    fn salted_hashes_hide_values_and_depend_on_the_salt() {
        let h = salted("s1", "payment", "pm_1");
        assert_eq!(h.len(), 64);
        assert!(!h.contains("pm_1"));
        assert_ne!(h, salted("s2", "payment", "pm_1"));
    }
}
