//! The live console at `/ui` on the internal listener: the console crate's
//! pages over this gateway's detector, with the operator's actions taken
//! as the admin API takes them (saved, audited, posted to the board).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use distillguard_console::{Action, ActionError, Live};
use distillguard_core::{Report, Verdict};
use serde_json::{Value, json};

use crate::{Gateway, KEY_PREFIX, admin};

/// How long a page waits for the detector's report.
const REPORT_DEADLINE: Duration = Duration::from_secs(5);

pub(crate) struct LiveGateway {
    gw: Arc<Gateway>,
    /// Samples of the detector's verdict-change count, for its rate.
    changes: std::sync::Mutex<std::collections::VecDeque<(std::time::Instant, u64)>>,
}

/// The span the verdict-change rate is taken over.
const RATE_SPAN: Duration = Duration::from_secs(300);

fn empty() -> Report {
    Report {
        version: distillguard_core::report::REPORT_VERSION,
        stats: serde_json::Map::new(),
        accounts: Vec::new(),
        campaigns: Vec::new(),
        keys: Vec::new(),
    }
}

impl LiveGateway {
    pub(crate) fn new(gw: Arc<Gateway>) -> LiveGateway {
        LiveGateway {
            gw,
            changes: std::sync::Mutex::new(std::collections::VecDeque::new()),
        }
    }

    /// Verdict changes per minute over the last five minutes (since the
    /// first look, when that is more recent).
    fn change_rate(&self, total: u64) -> Option<f64> {
        let now = std::time::Instant::now();
        let mut q = self.changes.lock().ok()?;
        while q.len() > 1
            && q.front()
                .is_some_and(|(t, _)| now.duration_since(*t) > RATE_SPAN)
        {
            q.pop_front();
        }
        q.push_back((now, total));
        if q.len() > 1024 {
            q.pop_front();
        }
        let (t0, n0) = *q.front()?;
        let mins = now.duration_since(t0).as_secs_f64() / 60.0;
        (mins > 0.05).then(|| ((total.saturating_sub(n0)) as f64 / mins * 10.0).round() / 10.0)
    }

    fn target(a: &Action) -> String {
        match a.target.as_str() {
            "key" => format!("{KEY_PREFIX}{}", a.id),
            _ => a.id.clone(),
        }
    }
}

impl Live for LiveGateway {
    fn snapshot(&self) -> Report {
        let gw = &self.gw;
        let mut r = gw
            .detector
            .as_ref()
            .and_then(|d| d.report(REPORT_DEADLINE))
            .unwrap_or_else(empty);
        // Accounts an operator decided on show with the verdict in force.
        if let Ok(over) = gw.overrides.read() {
            for a in &mut r.accounts {
                if let Some(d) = over.get(&a.account_id) {
                    a.reasons.insert(
                        0,
                        distillguard_core::Reason {
                            signal: "operator".into(),
                            value: 1.0,
                            contribution: 0.0,
                            detail: format!("an operator set {}: {}", d.verdict.as_str(), d.reason),
                        },
                    );
                }
            }
        }
        r
    }

    fn login(&self, token: &str) -> Option<String> {
        let cfg = self.gw.config();
        let admin = cfg.admin.as_ref()?;
        let digest = distillguard_storage::sha256_hex(token.trim());
        admin::hash_matches(&digest, &admin.token_sha256)
            .then(|| format!("admin:{} (console)", digest.get(..8).unwrap_or("")))
    }

    fn act(&self, a: &Action, actor: &str) -> Result<Value, ActionError> {
        let gw = &self.gw;
        let id = LiveGateway::target(a);
        let reason = a.reason.trim().to_string();
        let r = match a.decision.as_str() {
            "block" => admin::decide(gw, actor, id.clone(), Verdict::Block, reason)?,
            "allow" => admin::decide(gw, actor, id.clone(), Verdict::Allow, reason)?,
            "clear" => admin::undecide(gw, actor, &id, &reason)?.ok_or_else(|| {
                ActionError::NotFound(format!("{} {} has no operator decision", a.target, a.id))
            })?,
            d => {
                return Err(ActionError::Invalid(format!(
                    "decision: {d:?} is not block, allow or clear"
                )));
            }
        };
        tracing::info!(actor = %actor, target = %a.target, decision = %a.decision, "console action");
        Ok(json!({"done": r, "now": self.decision(&a.target, &a.id)}))
    }

    fn audit(&self, limit: usize) -> Result<Value, ActionError> {
        let Some(store) = &self.gw.keys else {
            return Err(ActionError::Failed(
                "no key store (keys_db), so no audit log".into(),
            ));
        };
        let log = store
            .lock()
            .map_err(|_| ActionError::Failed("key store lock poisoned".into()))?
            .audit_log(limit)
            .map_err(|e| ActionError::Failed(e.to_string()))?;
        let entries: Vec<Value> = log
            .iter()
            .map(|e| {
                json!({"at": distillguard_core::Timestamp(e.at.saturating_mul(1000)), "actor": e.actor,
                       "action": e.action, "target": e.target, "reason": e.detail})
            })
            .collect();
        Ok(json!({"entries": entries}))
    }

    fn health(&self) -> Value {
        let gw = &self.gw;
        let Some(d) = gw.detector.as_ref() else {
            return json!({"detector": "off"});
        };
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let (counts, camp) = d.counts();
        let changes: u64 = d.changes.iter().map(get).sum();
        json!({
            "detector": if d.is_alive() { "up" } else { "DOWN (failing open)" },
            "queued": get(&d.enqueued).saturating_sub(get(&d.processed) + get(&d.dropped)),
            "scored": get(&d.processed),
            "dropped": get(&d.dropped),
            "faults": get(&d.faults),
            "tracked_accounts": get(&d.tracked),
            "verdict_changes": changes,
            "verdict_changes_per_minute": self.change_rate(changes),
            "blocked_now": counts[Verdict::Block as usize],
            "in_campaigns": camp,
        })
    }

    fn decision(&self, target: &str, id: &str) -> Value {
        let gw = &self.gw;
        let name = match target {
            "key" => format!("{KEY_PREFIX}{id}"),
            _ => id.to_string(),
        };
        let over = gw
            .overrides
            .read()
            .ok()
            .and_then(|m| m.get(&name).map(admin::decision_json));
        let in_force = match target {
            "key" => gw.override_of(&name).unwrap_or(Verdict::Allow),
            _ => gw.verdict(id, None),
        };
        let detected = gw.detector.as_ref().and_then(|d| d.state(id));
        json!({
            "in_force": in_force,
            "override": over,
            "detected": detected.map(|s| json!({"verdict": s.verdict, "risk": s.risk, "campaign": s.campaign})),
        })
    }
}
