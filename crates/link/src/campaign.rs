/*!
Campaign reports, and campaign membership applied to account verdicts.

A campaign is what an analyst acts on and what other providers need to
hear about. Each report says who is in it, what it did, what it shares
(payment methods, IP ranges, client stacks, system prompts, templates), how
synchronised it is, and why it was linked. Members that were not stopped
alone are blocked with their campaign, from the moment both they had
joined and the campaign was confirmed.
*/

use std::collections::{BTreeMap, HashMap};

use distillguard_core::Timestamp;
use distillguard_core::report::{AccountReport, CampaignReport, Reason, Report, Verdict};
use distillguard_sketches::hash_exact;
use serde_json::{Value, json};

use crate::keys::Kind;
use crate::linker::Linker;

/// A campaign's stable id: from its earliest account's id.
pub fn campaign_id(first_account: &str) -> String {
    format!("camp_{:012x}", hash_exact(first_account.as_bytes()) >> 16)
}

/// A dense key of a group: kind, label, suspicious accounts on it, all
/// accounts on it, and the key.
type Dense = (Kind, String, u32, u32, u64);

struct Group {
    root: u32,
    members: Vec<u32>,
}

fn groups(l: &mut Linker) -> Vec<Group> {
    let roots = l.campaign_roots();
    let mut by_root: BTreeMap<u32, Vec<u32>> = roots.iter().map(|&r| (r, Vec::new())).collect();
    for i in 0..l.members.len() as u32 {
        let r = l.find(i);
        if let Some(v) = by_root.get_mut(&r) {
            v.push(i);
        }
    }
    by_root
        .into_iter()
        .map(|(root, members)| Group { root, members })
        .collect()
}

/// The member a campaign is named after: the first active one to be seen.
fn first_member(l: &Linker, g: &Group) -> u32 {
    g.members
        .iter()
        .copied()
        .min_by_key(|&i| {
            let m = &l.members[i as usize];
            (m.dormant, m.first_seen, i)
        })
        .unwrap_or(g.root)
}

/// The confirmed campaigns' ids (as [`campaigns`] names them) and sizes:
/// the cheap summary a live detector publishes as campaigns form and grow.
pub fn summaries(l: &mut Linker, names: &[String]) -> Vec<(String, u32)> {
    members(l, names)
        .into_iter()
        .map(|(id, m)| (id, m.len() as u32))
        .collect()
}

/// The confirmed campaigns' ids and their members (linker indices).
pub fn members(l: &mut Linker, names: &[String]) -> Vec<(String, Vec<u32>)> {
    groups(l)
        .into_iter()
        .map(|g| {
            let first = first_member(l, &g);
            let name = names
                .get(first as usize)
                .cloned()
                .unwrap_or_else(|| format!("#{first}"));
            (campaign_id(&name), g.members)
        })
        .collect()
}

/// Builds the campaign reports. `names[i]` is account `i`'s id;
/// `capabilities` names the capability indices.
pub fn campaigns(l: &mut Linker, names: &[String], capabilities: &[&str]) -> Vec<CampaignReport> {
    let gs = groups(l);
    // Dense keys by group: a campaign's shared infrastructure and templates.
    let mut keys_of: HashMap<u32, Vec<Dense>> = HashMap::new();
    let dense: Vec<(u64, Kind, String, u32, Vec<u32>)> = l
        .keys
        .iter()
        .filter(|(_, s)| s.suspicious >= 2)
        .map(|(k, s)| (*k, s.kind, s.label.clone(), s.suspicious, s.groups.clone()))
        .collect();
    for (key, kind, label, suspicious, groups) in dense {
        let all = l.accounts_on(key).max(suspicious);
        if f64::from(suspicious) / f64::from(all) < l.cfg.min_fraction {
            continue;
        }
        let mut roots: Vec<u32> = groups.iter().map(|&g| l.find(g)).collect();
        roots.sort_unstable();
        roots.dedup();
        for r in roots {
            keys_of
                .entry(r)
                .or_default()
                .push((kind, label.clone(), suspicious, all, key));
        }
    }
    let mut clients_of: HashMap<u32, Vec<(String, u32)>> = HashMap::new();
    let clients: Vec<(String, Vec<u32>)> = l
        .clients
        .values()
        .map(|(label, set)| (label.clone(), set.iter().copied().collect()))
        .collect();
    for (label, accts) in clients {
        let mut per: HashMap<u32, u32> = HashMap::new();
        for a in accts {
            *per.entry(l.find(a)).or_default() += 1;
        }
        for (r, n) in per {
            clients_of.entry(r).or_default().push((label.clone(), n));
        }
    }
    let mut out = Vec::new();
    for g in gs {
        let name_of = |i: u32| {
            names
                .get(i as usize)
                .cloned()
                .unwrap_or_else(|| format!("#{i}"))
        };
        let id = campaign_id(&name_of(first_member(l, &g)));
        let ms: Vec<&crate::linker::Member> =
            g.members.iter().map(|&i| &l.members[i as usize]).collect();
        let requests: u64 = ms.iter().map(|m| u64::from(m.requests)).sum();
        let tokens: u64 = ms.iter().map(|m| m.output_tokens).sum();
        let active: Vec<&&crate::linker::Member> = ms.iter().filter(|m| m.requests > 0).collect();
        let first_seen = active.iter().map(|m| m.first_seen).min();
        let last_seen = active.iter().map(|m| m.last_seen).max();
        let dormant = ms.iter().filter(|m| m.dormant).count();
        let mut caps = [0u64; 9];
        for m in &ms {
            for (c, n) in caps.iter_mut().zip(m.caps.iter()) {
                *c += u64::from(*n);
            }
        }
        let mut cap_list: Vec<(usize, u64)> = caps
            .iter()
            .copied()
            .enumerate()
            .filter(|c| c.1 > 0)
            .collect();
        cap_list.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let capabilities_v: Vec<Value> = cap_list
            .iter()
            .map(|(i, n)| {
                json!({
                    "capability": capabilities.get(*i).copied().unwrap_or("other"),
                    "share": ((*n as f64 / requests.max(1) as f64) * 1e4).round() / 1e4,
                })
            })
            .collect();
        let mut keys = keys_of.remove(&g.root).unwrap_or_default();
        keys.sort_by(|a, b| b.2.cmp(&a.2).then(a.1.cmp(&b.1)));
        let count_kind = |k: Kind| keys.iter().filter(|x| x.0 == k).count();
        // Which members carry each key (positions in the sorted `accounts`).
        let mut sorted: Vec<(String, u32)> = g.members.iter().map(|&i| (name_of(i), i)).collect();
        sorted.sort();
        let mut carriers: HashMap<u64, Vec<u32>> = HashMap::new();
        for (pos, (_, i)) in sorted.iter().enumerate() {
            for k in l.members[*i as usize].shared.iter().flat_map(|s| s.iter()) {
                carriers.entry(*k).or_default().push(pos as u32);
            }
        }
        let templates: Vec<Value> = keys
            .iter()
            .filter(|x| x.0 == Kind::Template)
            .take(10)
            .map(|(_, label, s, all, k)| {
                json!({"fingerprint": label, "campaign_accounts": s, "all_accounts": all,
                       "members": carriers.get(k).map_or(&[][..], Vec::as_slice)})
            })
            .collect();
        let indicators: Vec<Value> = keys
            .iter()
            .filter(|x| !matches!(x.0, Kind::Template | Kind::Synchrony))
            .take(200)
            .map(|(kind, label, s, all, k)| {
                json!({"kind": kind.name(), "value": label, "campaign_accounts": s, "all_accounts": all,
                       "members": carriers.get(k).map_or(&[][..], Vec::as_slice)})
            })
            .collect();
        let mut client_list = clients_of.remove(&g.root).unwrap_or_default();
        client_list.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let clients_v: Vec<Value> = client_list
            .iter()
            .take(10)
            .map(|(label, n)| json!({"value": label, "campaign_accounts": n}))
            .collect();
        let sync_windows = count_kind(Kind::Synchrony);
        let flagged_alone = l.flagged_of(g.root);
        let size = l.size_of(g.root);
        let mean_risk = ms.iter().map(|m| m.max_risk).sum::<f64>() / ms.len().max(1) as f64;
        let mut by: Vec<String> = Vec::new();
        for k in Kind::ALL {
            let n = count_kind(k);
            if n > 0 && k != Kind::Synchrony {
                by.push(format!("{n} {}", plural(k, n)));
            }
        }
        let mut reasons = vec![
            format!(
                "{size} accounts linked by shared {}",
                if by.is_empty() {
                    "keys".to_string()
                } else {
                    by.join(", ")
                }
            ),
            match flagged_alone {
                0 => format!("none of its {size} accounts was flagged on its own"),
                n => format!("{n} of {size} accounts were flagged on their own"),
            },
        ];
        if sync_windows > 0 {
            reasons.push(format!(
                "members used one template in the same ten minutes in {sync_windows} windows"
            ));
        }
        if dormant > 0 {
            reasons.push(format!(
                "{dormant} accounts with no requests share the campaign's payment methods"
            ));
        }
        let mut extra = serde_json::Map::new();
        extra.insert("requests".into(), requests.into());
        extra.insert("output_tokens".into(), tokens.into());
        extra.insert("first_seen".into(), json!(first_seen.map(Timestamp)));
        extra.insert("last_seen".into(), json!(last_seen.map(Timestamp)));
        extra.insert("flagged_alone".into(), flagged_alone.into());
        extra.insert("dormant_accounts".into(), (dormant as u64).into());
        extra.insert("capabilities".into(), Value::Array(capabilities_v));
        extra.insert("templates".into(), Value::Array(templates));
        extra.insert("indicators".into(), Value::Array(indicators));
        extra.insert("clients".into(), Value::Array(clients_v));
        extra.insert(
            "synchrony".into(),
            json!({"windows": sync_windows, "window_minutes": crate::keys::SYNC_WINDOW_MS / 60_000}),
        );
        extra.insert("reasons".into(), json!(reasons));
        let accounts: Vec<String> = sorted.into_iter().map(|(n, _)| n).collect();
        out.push(CampaignReport {
            campaign_id: id,
            accounts,
            detected_at: l.detected_at[g.root as usize].map(Timestamp),
            score: Some((mean_risk * 1e4).round() / 1e4),
            extra,
        });
    }
    out.sort_by(|a, b| {
        b.accounts
            .len()
            .cmp(&a.accounts.len())
            .then(a.campaign_id.cmp(&b.campaign_id))
    });
    out
}

fn plural(k: Kind, n: usize) -> &'static str {
    match (k, n == 1) {
        (Kind::Payment, true) => "payment method",
        (Kind::Payment, false) => "payment methods",
        (Kind::EmailDomain, true) => "e-mail domain",
        (Kind::EmailDomain, false) => "e-mail domains",
        (Kind::Ip, true) => "IP address",
        (Kind::Ip, false) => "IP addresses",
        (Kind::IpPrefix, true) => "IP prefix",
        (Kind::IpPrefix, false) => "IP prefixes",
        (Kind::Client, true) => "client stack",
        (Kind::Client, false) => "client stacks",
        (Kind::SystemPrompt, true) => "system prompt",
        (Kind::SystemPrompt, false) => "system prompts",
        (Kind::Template, true) => "template",
        (Kind::Template, false) => "templates",
        (Kind::Synchrony, _) => "synchronised windows",
        (Kind::SignupBatch, true) => "batch of sign-ups",
        (Kind::SignupBatch, false) => "batches of sign-ups",
    }
}

/// Applies campaign membership to the report: fills `campaign_id`, blocks
/// members from `max(joined, detected_at)` (keeping an earlier own flag),
/// adds a `campaign` reason first, and adds dormant members. `index_of`
/// maps account ids to linker indices.
pub fn apply(
    report: &mut Report,
    l: &mut Linker,
    campaigns: &[CampaignReport],
    index_of: &HashMap<String, u32, impl std::hash::BuildHasher>,
) {
    let mut by_account: HashMap<&str, &CampaignReport> = HashMap::new();
    for c in campaigns {
        for a in &c.accounts {
            by_account.insert(a.as_str(), c);
        }
    }
    let mut present: std::collections::HashSet<String> = std::collections::HashSet::new();
    for a in &mut report.accounts {
        present.insert(a.account_id.clone());
        let Some(c) = by_account.get(a.account_id.as_str()) else {
            continue;
        };
        let Some(&idx) = index_of.get(&a.account_id) else {
            continue;
        };
        let Some((_, at)) = l.campaign_flag_at(idx) else {
            continue;
        };
        join(a, c, at);
    }
    for c in campaigns {
        for id in &c.accounts {
            if present.contains(id) {
                continue;
            }
            let Some(&idx) = index_of.get(id) else {
                continue;
            };
            let Some((_, at)) = l.campaign_flag_at(idx) else {
                continue;
            };
            let mut a = AccountReport {
                account_id: id.clone(),
                risk: 0.0,
                verdict: Verdict::Allow,
                flagged_at: None,
                reasons: Vec::new(),
                campaign_id: None,
                samples: Vec::new(),
                timeline: None,
            };
            join(&mut a, c, at);
            report.accounts.push(a);
        }
    }
    report.campaigns = campaigns.to_vec();
}

fn join(a: &mut AccountReport, c: &CampaignReport, at: i64) {
    a.campaign_id = Some(c.campaign_id.clone());
    let at = Timestamp(at);
    let before = a.verdict;
    if a.verdict < Verdict::Block {
        a.verdict = Verdict::Block;
    }
    a.flagged_at = Some(a.flagged_at.map_or(at, |f| f.min(at)));
    let why = c
        .extra
        .get("reasons")
        .and_then(|r| r.get(0))
        .and_then(Value::as_str)
        .unwrap_or("linked accounts");
    a.reasons.insert(
        0,
        Reason {
            signal: "campaign".into(),
            value: 1.0,
            contribution: 0.0,
            detail: format!(
                "member of campaign {} ({why}){}",
                c.campaign_id,
                if before < Verdict::Throttle {
                    format!(
                        "; blocked with it from {at}, alone it was {}",
                        before.as_str()
                    )
                } else {
                    String::new()
                }
            ),
        },
    );
    // The campaign's block goes into the history, where the engine kept one.
    if let Some(t) = a.timeline.as_mut()
        && before < Verdict::Block
    {
        t.escalate(distillguard_core::Escalation {
            ts: at,
            verdict: Verdict::Block,
            risk: a.risk,
            // As of the nearest risk point before (the series is thinned).
            requests: t
                .risk
                .iter()
                .take_while(|p| p.ts <= at)
                .last()
                .map_or(0, |p| p.requests),
            by: format!("campaign {}", c.campaign_id),
            reasons: a.reasons.iter().take(1).cloned().collect(),
        });
        t.escalations.sort_by_key(|e| e.ts);
    }
}
