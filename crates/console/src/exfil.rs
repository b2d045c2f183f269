/*!
Exfiltration alerts beside the campaigns: an `exfil analyze` report
(`distillguard console REPORT --exfil EXFIL.json`) indexed for the same
list-and-page views as accounts.

The report already holds only principals with an alert, flagged first, so
the index is the report itself plus a per-row text for searching (the
principal, and the addresses, buckets, destinations and credentials of its
alerts).
*/

use distillguard_exfil::Report;
use distillguard_exfil::detect::{PrincipalReport, Signal};
use serde_json::{Value, json};

use crate::index::{ListQuery, QueryError, page};

/// An exfiltration report, indexed.
pub struct ExfilIndex {
    report: Report,
    /// Lowercased searchable text per principal, in report order.
    text: Vec<String>,
    overview: Value,
}

fn row(p: &PrincipalReport) -> Value {
    // The strongest alert is the headline reason.
    let top = p
        .alerts
        .iter()
        .max_by(|a, b| a.weight.total_cmp(&b.weight))
        .map(|a| json!({"signal": a.signal, "reason": a.reason}));
    json!({
        "principal": p.principal,
        "flagged_at": p.flagged_at.map(|t| distillguard_core::Timestamp(t).to_string()),
        "flagged_days": p.flagged_days,
        "score": p.score,
        "sensitive_bytes": p.sensitive_bytes,
        "sensitive_bytes_before_flag": p.sensitive_bytes_before_flag,
        "sensitive_bytes_outside": p.sensitive_bytes_outside,
        "alerts_total": p.alerts_total,
        "top": top,
    })
}

impl ExfilIndex {
    pub fn new(report: Report) -> ExfilIndex {
        let text = report
            .principals
            .iter()
            .map(|p| {
                let mut t = p.principal.to_lowercase();
                for a in &p.alerts {
                    for f in [&a.source_ip, &a.bucket, &a.destination, &a.credential] {
                        if !f.is_empty() {
                            t.push('\n');
                            t.push_str(&f.to_lowercase());
                        }
                    }
                }
                t
            })
            .collect();
        let flagged = report
            .principals
            .iter()
            .filter(|p| p.flagged_at.is_some())
            .count();
        let mut by_signal: std::collections::BTreeMap<String, usize> = Default::default();
        for p in report.principals.iter().filter(|p| p.flagged_at.is_some()) {
            let mut seen = std::collections::BTreeSet::new();
            for a in &p.alerts {
                let s = serde_json::to_value(a.signal)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                if seen.insert(s.clone()) {
                    *by_signal.entry(s).or_default() += 1;
                }
            }
        }
        let overview = json!({
            "accesses": report.stats.accesses,
            "principals": report.stats.principals,
            "principal_days": report.stats.principal_days,
            "with_alerts": report.principals.len(),
            "flagged": flagged,
            "flag_days": report.principals.iter().map(|p| u64::from(p.flagged_days)).sum::<u64>(),
            "signals_of_flagged": by_signal.into_iter().map(|(s, n)| json!({"signal": s, "principals": n})).collect::<Vec<_>>(),
        });
        ExfilIndex {
            report,
            text,
            overview,
        }
    }

    /// Counts for the overview.
    pub fn overview(&self) -> &Value {
        &self.overview
    }

    /// Principals with alerts, filtered (`q`: text; `flagged`: yes or no;
    /// `signal`: one of its alerts), sorted by `score` (default),
    /// `flagged_at`, `bytes` (sensitive bytes) or `id`.
    pub fn list(&self, q: &ListQuery) -> Result<Value, QueryError> {
        let desc = q.descending()?;
        let text = q.text();
        let flagged = match q.flagged.as_deref().filter(|f| !f.is_empty()) {
            None => None,
            Some("yes") => Some(true),
            Some("no") => Some(false),
            Some(f) => return Err(QueryError::Flagged(f.to_string())),
        };
        // The signal named once; a name that is no signal matches nothing.
        let signal = q
            .signal
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| serde_json::from_value::<Signal>(Value::String(s.to_string())).ok());
        let mut rows: Vec<&PrincipalReport> = self
            .report
            .principals
            .iter()
            .zip(&self.text)
            .filter(|(p, _)| flagged.is_none_or(|f| p.flagged_at.is_some() == f))
            .filter(|(_, t)| text.as_ref().is_none_or(|q| t.contains(q.as_str())))
            .filter(|(p, _)| {
                signal.is_none_or(|s| s.is_some_and(|s| p.alerts.iter().any(|a| a.signal == s)))
            })
            .map(|(p, _)| p)
            .collect();
        match q.sort.as_deref().unwrap_or("score") {
            "score" | "" => rows.sort_by(|a, b| {
                a.score
                    .total_cmp(&b.score)
                    .then(b.principal.cmp(&a.principal))
            }),
            // Unflagged principals sort as the latest.
            "flagged_at" => rows.sort_by_key(|p| p.flagged_at.unwrap_or(i64::MAX)),
            "bytes" => rows.sort_by(|a, b| {
                a.sensitive_bytes
                    .cmp(&b.sensitive_bytes)
                    .then(b.principal.cmp(&a.principal))
            }),
            "id" => rows.sort_by(|a, b| a.principal.cmp(&b.principal)),
            s => {
                return Err(QueryError::Sort(
                    s.to_string(),
                    "score, flagged_at, bytes, id",
                ));
            }
        }
        Ok(page(rows, desc, q, row))
    }

    /// One principal with every alert the report kept.
    pub fn principal(&self, id: &str) -> Option<Value> {
        let p = self.report.principals.iter().find(|p| p.principal == id)?;
        let mut v = row(p);
        v["flags"] = json!(
            p.flags
                .iter()
                .map(|t| distillguard_core::Timestamp(*t).to_string())
                .collect::<Vec<_>>()
        );
        v["active_days"] = json!(p.active_days);
        v["alerts"] = serde_json::to_value(&p.alerts).unwrap_or(Value::Null);
        Some(v)
    }
}
