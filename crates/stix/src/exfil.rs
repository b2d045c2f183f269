/*!
An exfiltration report's flagged principals as STIX 2.1 sightings.

What goes out is what a partner can match on, never the organisation's
own identities: per flagged principal, an `indicator` for each outside
address new to it that read sensitive data (`ipv4-addr`/`ipv6-addr`) and for each
outside bucket data was copied to (`url` `s3://bucket`), and a
`sighting` of each with first and last seen, count and the reasons (the
principal's ARN or email stays out; the sighting says "a principal of
ours", and what happened, without bucket or object names). Deterministic: the same report gives the same bytes.
*/

use std::collections::BTreeMap;

use distillguard_exfil::Report;
use distillguard_exfil::detect::Signal;
use serde_json::{Value, json};

use crate::export::{ExportOptions, content_id, quote};

/// (first, last, count, what happened) of one (pattern, name).
type Seen = (i64, i64, u32, Vec<String>);

/// Builds the bundle.
pub fn bundle(report: &Report, o: &ExportOptions) -> Value {
    let identity = content_id("identity", &o.producer);
    let ts = |ms: i64| distillguard_core::Timestamp(ms).to_string();
    let mut seen: BTreeMap<(String, String), Seen> = BTreeMap::new();
    for p in report.principals.iter().filter(|p| p.flagged_at.is_some()) {
        for a in &p.alerts {
            let mut keys = Vec::new();
            // Only where the address itself is the evidence (new to the
            // principal, outside the organisation): an employee's usual
            // home line behind a volume or travel alert is nobody's
            // indicator.
            let address_evidence = a.signal == Signal::NewNetwork;
            if a.outside
                && address_evidence
                && let Ok(ip) = a.source_ip.parse::<std::net::IpAddr>()
            {
                let kind = if ip.is_ipv4() {
                    "ipv4-addr"
                } else {
                    "ipv6-addr"
                };
                keys.push((
                    format!("[{kind}:value = '{}']", quote(&a.source_ip)),
                    format!("address {} used to read sensitive data", a.source_ip),
                ));
            }
            if a.signal == Signal::ExternalCopy && !a.destination.is_empty() {
                keys.push((
                    format!("[url:value = 's3://{}']", quote(&a.destination)),
                    format!("bucket {} that received copied data", a.destination),
                ));
            }
            for k in keys {
                let e = seen.entry(k).or_insert((a.ts, a.ts, 0, Vec::new()));
                e.0 = e.0.min(a.ts);
                e.1 = e.1.max(a.ts);
                e.2 += 1;
                // What happened, without our own names (buckets, keys, ARNs).
                let r = if a.signal == Signal::NewNetwork {
                    "sensitive data read from it by a principal that had never used it"
                } else {
                    "sensitive data copied into it from our storage"
                }
                .to_string();
                if e.3.len() < 5 && !e.3.contains(&r) {
                    e.3.push(r);
                }
            }
        }
    }
    let epoch = seen
        .values()
        .map(|v| v.0)
        .min()
        .map(ts)
        .unwrap_or_else(|| "2026-01-01T00:00:00.000Z".to_string());
    let mut objects = vec![json!({
        "type": "identity", "spec_version": "2.1", "id": identity,
        "created": epoch, "modified": epoch,
        "name": o.producer, "identity_class": "organization",
    })];
    for ((pattern, name), (first, last, count, reasons)) in &seen {
        let indicator = content_id("indicator", pattern);
        objects.push(json!({
            "type": "indicator", "spec_version": "2.1", "id": indicator,
            "created_by_ref": identity, "created": ts(*first), "modified": ts(*first),
            "name": name,
            "description": "Seen in the exfiltration of model weights or training data from cloud storage.",
            "indicator_types": ["malicious-activity"],
            "pattern": pattern, "pattern_type": "stix", "valid_from": ts(*first),
        }));
        objects.push(json!({
            "type": "sighting", "spec_version": "2.1",
            "id": content_id("sighting", &format!("{pattern}|{first}")),
            "created_by_ref": identity, "created": ts(*last), "modified": ts(*last),
            "first_seen": ts(*first), "last_seen": ts(*last),
            "count": count,
            "sighting_of_ref": indicator,
            "where_sighted_refs": [identity],
            "description": format!("A principal of ours, flagged: {}", reasons.join("; ")),
        }));
    }
    json!({
        "type": "bundle",
        "id": content_id("bundle", &format!("exfil|{}|{}", o.producer, objects.len())),
        "objects": objects,
    })
}
