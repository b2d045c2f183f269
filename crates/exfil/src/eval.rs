/*!
Scoring an exfiltration report against the truth of a labelled world.

Two numbers matter (issue targets): for every incident, the share of
its sensitive bytes that had left when it was first flagged (flags
before the incident began are false alerts, not detections); and false
alerts per 1,000 principal-days (a flag on a benign principal's day, or
on an incident principal's day before its incident).
*/

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::detect::Report;

/// One truth line (`distillguard exfil simulate` writes them).
#[derive(Debug, Clone, Deserialize)]
pub struct Truth {
    pub principal: String,
    pub label: String,
    #[serde(default)]
    pub incident: Option<String>,
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub start: Option<i64>,
    /// `[ts_ms, bytes]` of the data that left.
    #[serde(default)]
    pub exfil: Vec<(i64, u64)>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentResult {
    pub principal: String,
    pub incident: String,
    pub flagged: bool,
    /// Minutes from the incident's first exfiltration to its flag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minutes_to_flag: Option<f64>,
    pub bytes: u64,
    /// Share of the incident's bytes out by the flag (1 if never flagged).
    pub share_before_flag: f64,
    /// The signals raised by the flag, as the analyst would see them.
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FalseAlert {
    pub principal: String,
    pub role: String,
    pub alerts: usize,
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub incidents: Vec<IncidentResult>,
    /// Incidents flagged before 10% of their bytes left.
    pub under_10pct: usize,
    pub principal_days: u64,
    pub false_alerts: usize,
    pub false_alerts_per_1000_principal_days: f64,
    pub false_alert_principals: Vec<FalseAlert>,
}

/// Scores `report` against `truth`.
pub fn evaluate(report: &Report, truth: &[Truth]) -> Summary {
    let by_principal: HashMap<&str, &crate::detect::PrincipalReport> = report
        .principals
        .iter()
        .map(|p| (p.principal.as_str(), p))
        .collect();
    let mut incidents = Vec::new();
    let mut false_alerts = 0;
    let mut fa_principals = Vec::new();
    for t in truth {
        let p = by_principal.get(t.principal.as_str());
        let flags: &[i64] = p.map(|p| p.flags.as_slice()).unwrap_or(&[]);
        let reasons_until = |until: i64| -> Vec<String> {
            p.map(|p| {
                p.alerts
                    .iter()
                    .filter(|a| a.ts <= until && until - a.ts < distillguard_core::time::MS_PER_DAY)
                    .map(|a| format!("{:?}: {}", a.signal, a.reason))
                    .collect()
            })
            .unwrap_or_default()
        };
        match (t.label.as_str(), t.start) {
            ("incident", Some(start)) => {
                let before = flags.iter().filter(|f| **f < start).count();
                if before > 0 {
                    false_alerts += before;
                    fa_principals.push(FalseAlert {
                        principal: t.principal.clone(),
                        role: t.role.clone(),
                        alerts: before,
                        reasons: reasons_until(flags[0]),
                    });
                }
                let flag = flags.iter().copied().find(|f| *f >= start);
                let total: u64 = t.exfil.iter().map(|(_, b)| b).sum();
                let out: u64 = t
                    .exfil
                    .iter()
                    .filter(|(ts, _)| flag.is_none_or(|f| *ts <= f))
                    .map(|(_, b)| b)
                    .sum();
                incidents.push(IncidentResult {
                    principal: t.principal.clone(),
                    incident: t.incident.clone().unwrap_or_default(),
                    flagged: flag.is_some(),
                    minutes_to_flag: flag.map(|f| (f - start) as f64 / 60_000.0),
                    bytes: total,
                    share_before_flag: if total == 0 {
                        0.0
                    } else {
                        out as f64 / total as f64
                    },
                    reasons: flag.map(reasons_until).unwrap_or_default(),
                });
            }
            _ => {
                if !flags.is_empty() {
                    false_alerts += flags.len();
                    fa_principals.push(FalseAlert {
                        principal: t.principal.clone(),
                        role: t.role.clone(),
                        alerts: flags.len(),
                        reasons: reasons_until(flags[0]),
                    });
                }
            }
        }
    }
    incidents.sort_by(|a, b| a.incident.cmp(&b.incident));
    let days = report.stats.principal_days;
    Summary {
        under_10pct: incidents
            .iter()
            .filter(|i| i.flagged && i.share_before_flag <= 0.10)
            .count(),
        incidents,
        principal_days: days,
        false_alerts,
        false_alerts_per_1000_principal_days: if days == 0 {
            0.0
        } else {
            false_alerts as f64 * 1000.0 / days as f64
        },
        false_alert_principals: fa_principals,
    }
}
