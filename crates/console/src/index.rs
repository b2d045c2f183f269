//! A report indexed for the console's pages: lookups by id, the overview
//! computed once, and filtered, sorted, paginated lists, so that a report
//! of 30,000 accounts serves each page from memory in milliseconds.

use std::collections::{BTreeMap, HashMap};

use distillguard_core::report::{AccountReport, CampaignReport, KeyReport, Report, Verdict};
use distillguard_core::time::MS_PER_DAY;
use serde::Deserialize;
use serde_json::{Value, json};

/// Indicators drawn in a campaign's graph at most.
pub const GRAPH_INDICATORS: usize = 40;
/// Members drawn in a campaign's graph at most.
pub const GRAPH_MEMBERS: usize = 300;

/// Rows a list answers at most.
pub const MAX_PAGE: usize = 500;

/// A report with its lookups.
pub struct Index {
    pub report: Report,
    /// Where it came from (a file name, or "live gateway").
    pub source: String,
    accounts: HashMap<String, usize>,
    campaigns: HashMap<String, usize>,
    keys: HashMap<String, usize>,
    keys_of: HashMap<String, Vec<usize>>,
    /// Indicator or template value (lowercase) → accounts carrying it.
    carriers: HashMap<String, Vec<usize>>,
    /// Per campaign (in report order), its indicators and templates.
    shared: Vec<Vec<Shared>>,
    overview: Value,
    /// Per campaign, ten-minute windows from the event log (`--events`).
    activity: HashMap<String, Vec<crate::activity::Window>>,
}

/// The filters and order of a list (the query string of a list page).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Text matched in the row's ids, in its campaign's indicators (IP
    /// prefix, card fingerprint, mail domain, client stack, template) and
    /// in its reasons.
    #[serde(default)]
    pub q: Option<String>,
    #[serde(default)]
    pub verdict: Option<String>,
    #[serde(default)]
    pub campaign: Option<String>,
    /// A signal among the row's reasons with a positive contribution.
    #[serde(default)]
    pub signal: Option<String>,
    /// Exfiltration list only: `yes` (flagged principals) or `no`.
    #[serde(default)]
    pub flagged: Option<String>,
    /// `risk` (default), `flagged_at`, `id`, `accounts`, `requests`.
    #[serde(default)]
    pub sort: Option<String>,
    /// `desc` (default) or `asc`.
    #[serde(default)]
    pub order: Option<String>,
    #[serde(default)]
    pub offset: Option<usize>,
    #[serde(default)]
    pub limit: Option<usize>,
}

/// A bad filter, named.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("verdict: {0:?} is not one of allow, monitor, throttle, block")]
    Verdict(String),
    #[error("sort: {0:?} is not one of {1}")]
    Sort(String, &'static str),
    #[error("order: {0:?} is not asc or desc")]
    Order(String),
    #[error("flagged: {0:?} is not yes or no")]
    Flagged(String),
}

impl ListQuery {
    fn verdict(&self) -> Result<Option<Verdict>, QueryError> {
        match self.verdict.as_deref().filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => Verdict::parse(v)
                .map(Some)
                .ok_or_else(|| QueryError::Verdict(v.to_string())),
        }
    }

    pub(crate) fn descending(&self) -> Result<bool, QueryError> {
        match self.order.as_deref().unwrap_or("desc") {
            "desc" | "" => Ok(true),
            "asc" => Ok(false),
            o => Err(QueryError::Order(o.to_string())),
        }
    }

    fn page(&self) -> (usize, usize) {
        (
            self.offset.unwrap_or(0),
            self.limit.unwrap_or(50).clamp(1, MAX_PAGE),
        )
    }

    pub(crate) fn text(&self) -> Option<String> {
        self.q
            .as_deref()
            .map(str::trim)
            .filter(|q| !q.is_empty())
            .map(str::to_lowercase)
    }
}

/// One page of sorted rows (reversed first when descending).
pub(crate) fn page<T>(mut rows: Vec<&T>, desc: bool, q: &ListQuery, row: fn(&T) -> Value) -> Value {
    if desc {
        rows.reverse();
    }
    let (offset, limit) = q.page();
    let total = rows.len();
    let items: Vec<Value> = rows.into_iter().skip(offset).take(limit).map(row).collect();
    json!({"total": total, "offset": offset, "limit": limit, "items": items})
}

fn u64_field(c: &CampaignReport, name: &str) -> u64 {
    c.extra.get(name).and_then(Value::as_u64).unwrap_or(0)
}

/// The signal that weighs most in an account's own risk (its campaign is
/// a column of its own).
fn top_reason(a: &AccountReport) -> Option<&str> {
    a.reasons
        .iter()
        .find(|r| r.signal != "campaign" && r.contribution > 0.0)
        .map(|r| r.signal.as_str())
}

fn account_row(a: &AccountReport) -> Value {
    json!({
        "account_id": a.account_id,
        "risk": a.risk,
        "verdict": a.verdict,
        "flagged_at": a.flagged_at,
        "campaign_id": a.campaign_id,
        "top_reason": top_reason(a),
    })
}

fn campaign_row(c: &CampaignReport) -> Value {
    json!({
        "campaign_id": c.campaign_id,
        "accounts": c.accounts.len(),
        "requests": u64_field(c, "requests"),
        "output_tokens": u64_field(c, "output_tokens"),
        "detected_at": c.detected_at,
        "score": c.score,
        "first_seen": c.extra.get("first_seen"),
        "last_seen": c.extra.get("last_seen"),
        "reason": c.extra.get("reasons").and_then(|r| r.get(0)),
        "capability": c.extra.get("capabilities").and_then(|r| r.get(0)).and_then(|c| c.get("capability")),
    })
}

fn key_row(k: &KeyReport) -> Value {
    json!({
        "key_id": k.key_id,
        "account_id": k.account_id,
        "risk": k.risk,
        "verdict": k.verdict,
        "flagged_at": k.flagged_at,
        "requests": k.requests,
        "top_reason": k.reasons.iter().find(|r| r.contribution > 0.0).map(|r| r.signal.as_str()),
    })
}

/// One indicator or template of a campaign.
struct Shared {
    kind: String,
    value: String,
    /// Positions in the campaign's `accounts` of the members carrying it.
    members: Vec<usize>,
    campaign_accounts: u64,
    all_accounts: u64,
}

/// Indicators and templates of a campaign with the positions of the
/// members that carry each (read once, when the report is indexed).
fn shared_of(c: &CampaignReport) -> Vec<Shared> {
    let mut out = Vec::new();
    // Client stacks (ASN, user agent, TLS fingerprint) describe a campaign
    // but never link it, so they carry no members: findable, not drawn.
    for (field, kind_of) in [
        ("indicators", None),
        ("templates", Some("template")),
        ("clients", Some("client")),
    ] {
        for v in c
            .extra
            .get(field)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let kind = kind_of
                .or_else(|| v.get("kind").and_then(Value::as_str))
                .unwrap_or("indicator")
                .to_string();
            let value = v
                .get("value")
                .or_else(|| v.get("fingerprint"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let members: Vec<usize> = v
                .get("members")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_u64)
                .map(|m| m as usize)
                .filter(|&m| m < c.accounts.len())
                .collect();
            let ca = v
                .get("campaign_accounts")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let all = v.get("all_accounts").and_then(Value::as_u64).unwrap_or(ca);
            out.push(Shared {
                kind,
                value,
                members,
                campaign_accounts: ca,
                all_accounts: all,
            });
        }
    }
    out
}

impl Index {
    pub fn new(report: Report, source: impl Into<String>) -> Index {
        let accounts: HashMap<String, usize> = report
            .accounts
            .iter()
            .enumerate()
            .map(|(i, a)| (a.account_id.clone(), i))
            .collect();
        let campaigns = report
            .campaigns
            .iter()
            .enumerate()
            .map(|(i, c)| (c.campaign_id.clone(), i))
            .collect();
        let keys = report
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.key_id.clone(), i))
            .collect();
        let mut keys_of: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, k) in report.keys.iter().enumerate() {
            keys_of.entry(k.account_id.clone()).or_default().push(i);
        }
        let shared: Vec<Vec<Shared>> = report.campaigns.iter().map(shared_of).collect();
        let mut carriers: HashMap<String, Vec<usize>> = HashMap::new();
        for (c, sh) in report.campaigns.iter().zip(&shared) {
            for x in sh {
                let e = carriers.entry(x.value.to_lowercase()).or_default();
                e.extend(
                    x.members
                        .iter()
                        .filter_map(|&m| c.accounts.get(m))
                        .filter_map(|id| accounts.get(id).copied()),
                );
            }
        }
        for v in carriers.values_mut() {
            v.sort_unstable();
            v.dedup();
        }
        let mut ix = Index {
            report,
            source: source.into(),
            accounts,
            campaigns,
            keys,
            keys_of,
            carriers,
            shared,
            overview: Value::Null,
            activity: HashMap::new(),
        };
        ix.overview = ix.compute_overview();
        ix
    }

    fn thresholds(&self) -> Value {
        self.report
            .stats
            .get("thresholds")
            .cloned()
            .unwrap_or(Value::Null)
    }

    fn compute_overview(&self) -> Value {
        let r = &self.report;
        let mut verdicts: BTreeMap<&str, u64> = BTreeMap::new();
        for v in ["monitor", "throttle", "block"] {
            let n = r
                .stats
                .get(&format!("verdict_{v}"))
                .and_then(Value::as_u64)
                .unwrap_or_else(|| {
                    r.accounts
                        .iter()
                        .filter(|a| a.verdict.as_str() == v)
                        .count() as u64
                });
            verdicts.insert(v, n);
        }
        // Campaign members blocked with their campaign count as blocked.
        let blocked = r
            .accounts
            .iter()
            .filter(|a| a.verdict == Verdict::Block)
            .count() as u64;
        if blocked > verdicts["block"] {
            verdicts.insert("block", blocked);
        }
        let total = r
            .stats
            .get("accounts")
            .and_then(Value::as_u64)
            .unwrap_or(r.accounts.len() as u64);
        let others: u64 = verdicts.values().sum();
        verdicts.insert("allow", total.saturating_sub(others));
        // Escalations per day and verdict: from the timelines when the
        // report has them, else the time each account was flagged.
        let mut by_day: BTreeMap<i64, [u64; 4]> = BTreeMap::new();
        for a in &r.accounts {
            match &a.timeline {
                Some(t) if !t.escalations.is_empty() => {
                    for e in &t.escalations {
                        let d = e.ts.0.div_euclid(MS_PER_DAY) * MS_PER_DAY;
                        by_day.entry(d).or_default()[e.verdict as usize] += 1;
                    }
                }
                _ => {
                    if let Some(f) = a.flagged_at {
                        let d = f.0.div_euclid(MS_PER_DAY) * MS_PER_DAY;
                        by_day.entry(d).or_default()[a.verdict as usize] += 1;
                    }
                }
            }
        }
        let over_time: Vec<Value> = by_day
            .iter()
            .map(|(d, c)| {
                json!({"day": distillguard_core::Timestamp(*d), "monitor": c[1], "throttle": c[2], "block": c[3]})
            })
            .collect();
        // The risk histogram of every account (the engine's), else of the
        // accounts in the report.
        let histogram = r.stats.get("risk_histogram").cloned().unwrap_or_else(|| {
            let mut counts = vec![0u64; 50];
            for a in &r.accounts {
                let x = -(1.0 - a.risk.clamp(0.0, 1.0)).max(1e-12).log10();
                counts[((x / 0.1) as usize).min(49)] += 1;
            }
            json!({"scale": "-log10(1-risk)", "step": 0.1, "counts": counts, "reported_only": true})
        });
        let mut reasons: HashMap<&str, u64> = HashMap::new();
        for a in r.accounts.iter().filter(|a| a.verdict.is_flagged()) {
            if let Some(s) = top_reason(a) {
                *reasons.entry(s).or_default() += 1;
            }
        }
        let mut reasons: Vec<(&str, u64)> = reasons.into_iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let top_reasons: Vec<Value> = reasons
            .iter()
            .take(12)
            .map(|(s, n)| json!({"signal": s, "accounts": n}))
            .collect();
        let campaigns: Vec<Value> = r.campaigns.iter().take(15).map(campaign_row).collect();
        json!({
            "source": self.source,
            "stats": r.stats,
            "verdicts": verdicts,
            "over_time": over_time,
            "histogram": histogram,
            "thresholds": self.thresholds(),
            "top_reasons": top_reasons,
            "campaigns": campaigns,
            "campaign_count": r.campaigns.len(),
            "key_count": r.keys.len(),
            "has_timelines": r.accounts.iter().any(|a| a.timeline.is_some()),
        })
    }

    /// Sets the campaigns' windows read from the event log.
    pub fn set_activity(&mut self, activity: HashMap<String, Vec<crate::activity::Window>>) {
        self.activity = activity;
    }

    /// The overview page's data.
    pub fn overview(&self) -> &Value {
        &self.overview
    }

    /// Accounts, filtered, sorted and paginated.
    pub fn accounts(&self, q: &ListQuery) -> Result<Value, QueryError> {
        let verdict = q.verdict()?;
        let desc = q.descending()?;
        let text = q.text();
        // Indicator matches are looked up once, not per account.
        let by_indicator: Option<std::collections::HashSet<usize>> = text.as_ref().map(|t| {
            self.carriers
                .iter()
                .filter(|(v, _)| v.contains(t.as_str()))
                .flat_map(|(_, a)| a.iter().copied())
                .collect()
        });
        let mut rows: Vec<&AccountReport> = self
            .report
            .accounts
            .iter()
            .enumerate()
            .filter(|(_, a)| verdict.is_none_or(|v| a.verdict == v))
            .filter(|(_, a)| {
                q.campaign
                    .as_deref()
                    .filter(|c| !c.is_empty())
                    .is_none_or(|c| a.campaign_id.as_deref() == Some(c))
            })
            .filter(|(_, a)| {
                q.signal
                    .as_deref()
                    .filter(|s| !s.is_empty())
                    .is_none_or(|s| {
                        a.reasons
                            .iter()
                            .any(|r| r.signal == s && (r.contribution > 0.0 || s == "campaign"))
                    })
            })
            .filter(|(i, a)| match &text {
                None => true,
                Some(t) => {
                    by_indicator.as_ref().is_some_and(|s| s.contains(i))
                        || a.account_id.to_lowercase().contains(t.as_str())
                        || a.campaign_id
                            .as_deref()
                            .is_some_and(|c| c.to_lowercase().contains(t.as_str()))
                        || self.keys_of.get(&a.account_id).is_some_and(|ks| {
                            ks.iter().any(|&k| {
                                self.report.keys[k]
                                    .key_id
                                    .to_lowercase()
                                    .contains(t.as_str())
                            })
                        })
                }
            })
            .map(|(_, a)| a)
            .collect();
        match q.sort.as_deref().unwrap_or("risk") {
            "risk" | "" => rows.sort_by(|a, b| {
                a.risk
                    .total_cmp(&b.risk)
                    .then(b.account_id.cmp(&a.account_id))
            }),
            "flagged_at" => rows.sort_by(|a, b| {
                a.flagged_at
                    .map(|t| t.0)
                    .cmp(&b.flagged_at.map(|t| t.0))
                    .then(b.account_id.cmp(&a.account_id))
            }),
            "id" => rows.sort_by(|a, b| a.account_id.cmp(&b.account_id)),
            s => return Err(QueryError::Sort(s.to_string(), "risk, flagged_at, id")),
        }
        Ok(page(rows, desc, q, account_row))
    }

    /// Campaigns, filtered, sorted and paginated.
    pub fn campaigns(&self, q: &ListQuery) -> Result<Value, QueryError> {
        let desc = q.descending()?;
        let text = q.text();
        let mut rows: Vec<&CampaignReport> = self
            .report
            .campaigns
            .iter()
            .zip(&self.shared)
            .filter(|(c, sh)| match &text {
                None => true,
                Some(t) => {
                    c.campaign_id.to_lowercase().contains(t.as_str())
                        || c.accounts
                            .iter()
                            .any(|a| a.to_lowercase().contains(t.as_str()))
                        || sh
                            .iter()
                            .any(|s| s.value.to_lowercase().contains(t.as_str()))
                }
            })
            .map(|(c, _)| c)
            .collect();
        let requests = |c: &CampaignReport| u64_field(c, "requests");
        match q.sort.as_deref().unwrap_or("accounts") {
            "accounts" | "" => rows.sort_by(|a, b| {
                a.accounts
                    .len()
                    .cmp(&b.accounts.len())
                    .then(b.campaign_id.cmp(&a.campaign_id))
            }),
            "requests" => rows.sort_by(|a, b| {
                requests(a)
                    .cmp(&requests(b))
                    .then(b.campaign_id.cmp(&a.campaign_id))
            }),
            "risk" => rows.sort_by(|a, b| {
                a.score
                    .unwrap_or(0.0)
                    .total_cmp(&b.score.unwrap_or(0.0))
                    .then(b.campaign_id.cmp(&a.campaign_id))
            }),
            "detected_at" => rows.sort_by(|a, b| {
                a.detected_at
                    .map(|t| t.0)
                    .cmp(&b.detected_at.map(|t| t.0))
                    .then(b.campaign_id.cmp(&a.campaign_id))
            }),
            "id" => rows.sort_by(|a, b| a.campaign_id.cmp(&b.campaign_id)),
            s => {
                return Err(QueryError::Sort(
                    s.to_string(),
                    "accounts, requests, risk, detected_at, id",
                ));
            }
        }
        Ok(page(rows, desc, q, campaign_row))
    }

    /// Keys, filtered, sorted and paginated.
    pub fn keys(&self, q: &ListQuery) -> Result<Value, QueryError> {
        let verdict = q.verdict()?;
        let desc = q.descending()?;
        let text = q.text();
        let mut rows: Vec<&KeyReport> = self
            .report
            .keys
            .iter()
            .filter(|k| verdict.is_none_or(|v| k.verdict == v))
            .filter(|k| match &text {
                None => true,
                Some(t) => {
                    k.key_id.to_lowercase().contains(t.as_str())
                        || k.account_id.to_lowercase().contains(t.as_str())
                }
            })
            .collect();
        match q.sort.as_deref().unwrap_or("risk") {
            "risk" | "" => {
                rows.sort_by(|a, b| a.risk.total_cmp(&b.risk).then(b.key_id.cmp(&a.key_id)))
            }
            "requests" => {
                rows.sort_by(|a, b| a.requests.cmp(&b.requests).then(b.key_id.cmp(&a.key_id)))
            }
            "id" => rows.sort_by(|a, b| a.key_id.cmp(&b.key_id)),
            s => return Err(QueryError::Sort(s.to_string(), "risk, requests, id")),
        }
        Ok(page(rows, desc, q, key_row))
    }

    /// One account's page: its report, keys, campaign and timeline.
    pub fn account(&self, id: &str) -> Option<Value> {
        let a = &self.report.accounts[*self.accounts.get(id)?];
        let keys: Vec<Value> = self
            .keys_of
            .get(id)
            .into_iter()
            .flatten()
            .map(|&k| {
                let k = &self.report.keys[k];
                json!({"key_id": k.key_id, "risk": k.risk, "verdict": k.verdict,
                       "flagged_at": k.flagged_at, "requests": k.requests,
                       "reasons": k.reasons.iter().take(5).collect::<Vec<_>>()})
            })
            .collect();
        let campaign = a
            .campaign_id
            .as_deref()
            .and_then(|c| self.campaigns.get(c))
            .map(|&c| campaign_row(&self.report.campaigns[c]));
        Some(json!({
            "account": a,
            "keys": keys,
            "campaign": campaign,
            "thresholds": self.thresholds(),
        }))
    }

    /// One key's page.
    pub fn key(&self, id: &str) -> Option<Value> {
        let k = &self.report.keys[*self.keys.get(id)?];
        let account = self
            .accounts
            .get(&k.account_id)
            .map(|&a| account_row(&self.report.accounts[a]));
        Some(json!({"key": k, "account": account, "thresholds": self.thresholds()}))
    }

    /// One campaign's page: members, the graph of shared indicators,
    /// activity over time and hours.
    pub fn campaign(&self, id: &str) -> Option<Value> {
        let ci = *self.campaigns.get(id)?;
        let c = &self.report.campaigns[ci];
        let members: Vec<Value> = c
            .accounts
            .iter()
            .map(|m| match self.accounts.get(m) {
                Some(&i) => account_row(&self.report.accounts[i]),
                None => json!({"account_id": m}),
            })
            .collect();
        // The graph: members and the indicators they share, each
        // indicator with its rarity (of all accounts on it, how many are
        // the campaign's).
        let all_shared = &self.shared[ci];
        let total_shared = all_shared.len();
        // The graph shows the indicators that link members, the most
        // shared first; the table below it lists them all.
        let mut shared: Vec<&Shared> = all_shared
            .iter()
            .filter(|s| !s.members.is_empty())
            .collect();
        shared.sort_by(|a, b| {
            b.campaign_accounts
                .cmp(&a.campaign_accounts)
                .then(b.members.len().cmp(&a.members.len()))
        });
        shared.truncate(GRAPH_INDICATORS);
        // Members drawn: those that carry the most drawn indicators first
        // (a graph of thousands of dots shows nothing and lays out slowly).
        let mut degree = vec![0u32; c.accounts.len()];
        for x in &shared {
            for &m in &x.members {
                degree[m] += 1;
            }
        }
        let mut drawn: Vec<usize> = (0..c.accounts.len()).collect();
        drawn.sort_by(|&a, &b| degree[b].cmp(&degree[a]).then(a.cmp(&b)));
        drawn.truncate(GRAPH_MEMBERS);
        drawn.sort_unstable();
        let mut nodes = Vec::with_capacity(drawn.len() + shared.len());
        let mut edges = Vec::new();
        for &pos in &drawn {
            let m = &c.accounts[pos];
            let a = self.accounts.get(m).map(|&i| &self.report.accounts[i]);
            nodes.push(
                json!({"id": format!("a{pos}"), "kind": "account", "label": m,
                              "verdict": a.map(|a| a.verdict), "risk": a.map(|a| a.risk)}),
            );
        }
        for (j, x) in shared.iter().enumerate() {
            let (ca, all) = (x.campaign_accounts, x.all_accounts);
            nodes.push(
                json!({"id": format!("i{j}"), "kind": x.kind, "label": x.value,
                              "campaign_accounts": ca, "all_accounts": all,
                              "rarity": if all > 0 { ca as f64 / all as f64 } else { 1.0 }}),
            );
            for &m in &x.members {
                if drawn.binary_search(&m).is_ok() {
                    edges.push(json!([format!("a{m}"), format!("i{j}")]));
                }
            }
        }
        let indicators: Vec<Value> = all_shared
            .iter()
            .map(|x| {
                json!({"kind": x.kind, "value": x.value, "campaign_accounts": x.campaign_accounts,
                       "all_accounts": x.all_accounts})
            })
            .collect();
        // Activity: the members' requests per day and per hour of the day,
        // from their timelines (`analyze --timeline`).
        let mut days: BTreeMap<i64, u64> = BTreeMap::new();
        let mut hours = [0u64; 24];
        let mut with_timeline = 0usize;
        for m in &c.accounts {
            if let Some(t) = self
                .accounts
                .get(m)
                .and_then(|&i| self.report.accounts[i].timeline.as_ref())
            {
                with_timeline += 1;
                for d in &t.days {
                    *days.entry(d.day.0).or_default() += u64::from(d.requests);
                }
                for (h, n) in hours.iter_mut().zip(t.hours.iter()) {
                    *h += u64::from(*n);
                }
            }
        }
        let days: Vec<Value> = days
            .iter()
            .map(|(d, n)| json!({"day": distillguard_core::Timestamp(*d), "requests": n}))
            .collect();
        Some(json!({
            "campaign": c,
            "summary": campaign_row(c),
            "members": members,
            "graph": {"nodes": nodes, "edges": edges, "indicators_shown": shared.len(),
                      "indicators_total": total_shared, "members_shown": drawn.len()},
            "indicators": indicators,
            "activity": {"days": days, "hours": hours, "members_with_timeline": with_timeline,
                         "windows": self.activity.get(id),
                         "window_minutes": crate::activity::WINDOW_MS / 60_000},
            "reasons": c.extra.get("reasons"),
            "synchrony": c.extra.get("synchrony"),
            "templates": c.extra.get("templates"),
            "samples": c.extra.get("samples"),
        }))
    }

    /// The campaign as a STIX 2.1 bundle (what `export stix` writes for it).
    pub fn campaign_stix(&self, id: &str, producer: &str) -> Option<Value> {
        let c = &self.report.campaigns[*self.campaigns.get(id)?];
        let members: Vec<AccountReport> = c
            .accounts
            .iter()
            .filter_map(|m| self.accounts.get(m))
            .map(|&i| {
                let mut a = self.report.accounts[i].clone();
                a.timeline = None;
                a
            })
            .collect();
        let sub = Report {
            version: self.report.version,
            stats: self.report.stats.clone(),
            accounts: members,
            campaigns: vec![c.clone()],
            keys: Vec::new(),
        };
        Some(distillguard_stix::bundle(
            &sub,
            &distillguard_stix::ExportOptions {
                producer: producer.to_string(),
                salt: None,
            },
        ))
    }

    /// Everything that matches a text: accounts, campaigns, keys and
    /// indicators (a few of each).
    pub fn search(&self, text: &str) -> Value {
        let q = ListQuery {
            q: Some(text.to_string()),
            limit: Some(10),
            ..Default::default()
        };
        let t = text.trim().to_lowercase();
        let mut indicators: Vec<Value> = Vec::new();
        if !t.is_empty() {
            for (c, sh) in self.report.campaigns.iter().zip(&self.shared) {
                for x in sh {
                    if indicators.len() < 10 && x.value.to_lowercase().contains(&t) {
                        indicators.push(json!({"kind": x.kind, "value": x.value,
                            "campaign_id": c.campaign_id, "campaign_accounts": x.campaign_accounts,
                            "all_accounts": x.all_accounts}));
                    }
                }
            }
        }
        json!({
            "accounts": self.accounts(&q).unwrap_or(Value::Null),
            "campaigns": self.campaigns(&ListQuery { sort: Some("accounts".into()), ..q.clone() }).unwrap_or(Value::Null),
            "keys": self.keys(&q).unwrap_or(Value::Null),
            "indicators": indicators,
        })
    }

    /// Whether an account is in the report.
    pub fn has_account(&self, id: &str) -> bool {
        self.accounts.contains_key(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use distillguard_core::Timestamp;
    use distillguard_core::report::Reason;

    fn acct(id: &str, risk: f64, verdict: Verdict, campaign: Option<&str>) -> AccountReport {
        AccountReport {
            account_id: id.into(),
            risk,
            verdict,
            flagged_at: verdict
                .is_flagged()
                .then_some(Timestamp(1_771_200_000_000 + (risk * 1e6) as i64)),
            reasons: vec![Reason {
                signal: "elicitation".into(),
                value: 0.9,
                contribution: 1.2,
                detail: "asks for steps".into(),
            }],
            campaign_id: campaign.map(String::from),
            samples: Vec::new(),
            timeline: None,
        }
    }

    fn report() -> Report {
        let mut extra = serde_json::Map::new();
        extra.insert("requests".into(), 40.into());
        extra.insert(
            "clients".into(),
            json!([{"value": "AS64500 · python-httpx/0.27 · t13d", "campaign_accounts": 2}]),
        );
        extra.insert(
            "indicators".into(),
            json!([{"kind": "payment", "value": "pm_ring", "campaign_accounts": 2, "all_accounts": 2, "members": [0, 1]},
                   {"kind": "ip_prefix", "value": "10.9.8.0/24", "campaign_accounts": 1, "all_accounts": 9, "members": [1, 7]}]),
        );
        Report {
            version: 1,
            stats: serde_json::Map::new(),
            accounts: vec![
                acct("a1", 0.999, Verdict::Block, Some("camp_x")),
                acct("a2", 0.995, Verdict::Block, Some("camp_x")),
                acct("b", 0.97, Verdict::Throttle, None),
                acct("c", 0.9, Verdict::Monitor, None),
            ],
            campaigns: vec![CampaignReport {
                campaign_id: "camp_x".into(),
                accounts: vec!["a1".into(), "a2".into()],
                detected_at: Some(Timestamp(1_771_200_000_000)),
                score: Some(0.99),
                extra,
            }],
            keys: vec![KeyReport {
                key_id: "key_hot".into(),
                account_id: "b".into(),
                risk: 0.97,
                verdict: Verdict::Throttle,
                flagged_at: None,
                requests: 12,
                reasons: Vec::new(),
            }],
        }
    }

    fn ids(v: &Value) -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["account_id"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn lists_filter_sort_and_page_on_the_server() {
        let ix = Index::new(report(), "test");
        let all = ix.accounts(&ListQuery::default()).unwrap();
        assert_eq!(ids(&all), ["a1", "a2", "b", "c"]);
        let asc = ix
            .accounts(&ListQuery {
                order: Some("asc".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(ids(&asc), ["c", "b", "a2", "a1"]);
        let page = ix
            .accounts(&ListQuery {
                offset: Some(1),
                limit: Some(2),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(ids(&page), ["a2", "b"]);
        assert_eq!(page["total"], 4);
        let blocked = ix
            .accounts(&ListQuery {
                verdict: Some("block".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(ids(&blocked), ["a1", "a2"]);
        // By a key id, by an indicator's value, by a campaign.
        let by_key = ix
            .accounts(&ListQuery {
                q: Some("KEY_HOT".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(ids(&by_key), ["b"]);
        let by_card = ix
            .accounts(&ListQuery {
                q: Some("pm_ring".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(ids(&by_card), ["a1", "a2"]);
        // A member position out of range is ignored, not a panic.
        let by_prefix = ix
            .accounts(&ListQuery {
                q: Some("10.9.8".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(ids(&by_prefix), ["a2"]);
        let limit = ix
            .accounts(&ListQuery {
                limit: Some(1_000_000),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(limit["limit"], MAX_PAGE);
    }

    #[test]
    fn bad_filters_are_named() {
        let ix = Index::new(report(), "test");
        let e = ix
            .accounts(&ListQuery {
                verdict: Some("evil".into()),
                ..Default::default()
            })
            .unwrap_err();
        assert!(e.to_string().starts_with("verdict:"), "{e}");
        let e = ix
            .campaigns(&ListQuery {
                sort: Some("colour".into()),
                ..Default::default()
            })
            .unwrap_err();
        assert!(e.to_string().starts_with("sort:"), "{e}");
        let e = ix
            .keys(&ListQuery {
                order: Some("up".into()),
                ..Default::default()
            })
            .unwrap_err();
        assert!(e.to_string().starts_with("order:"), "{e}");
    }

    #[test]
    fn the_overview_and_campaign_pages_count_what_the_report_holds() {
        let ix = Index::new(report(), "test");
        let o = ix.overview();
        assert_eq!(o["verdicts"]["block"], 2);
        assert_eq!(o["verdicts"]["throttle"], 1);
        assert_eq!(o["verdicts"]["monitor"], 1);
        assert_eq!(o["top_reasons"][0]["signal"], "elicitation");
        assert_eq!(o["top_reasons"][0]["accounts"], 3);
        let c = ix.campaign("camp_x").unwrap();
        // Two members and the two indicators that link members.
        assert_eq!(c["graph"]["nodes"].as_array().unwrap().len(), 4);
        assert_eq!(c["graph"]["edges"].as_array().unwrap().len(), 3);
        assert!(ix.campaign("nope").is_none());
        let stix = ix.campaign_stix("camp_x", "t").unwrap();
        assert_eq!(stix["type"], "bundle");
        let k = ix.key("key_hot").unwrap();
        assert_eq!(k["account"]["account_id"], "b");
        let s = ix.search("pm_ring");
        assert_eq!(s["indicators"][0]["campaign_id"], "camp_x");
        // A client stack's ASN finds its campaign.
        let s = ix.search("as64500");
        assert_eq!(s["indicators"][0]["kind"], "client");
        assert_eq!(s["campaigns"]["items"][0]["campaign_id"], "camp_x");
    }
}
