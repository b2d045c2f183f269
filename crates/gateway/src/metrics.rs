/*!
`/metrics` in the Prometheus text format, from atomics (no locks on the
request path).

- `distillguard_requests_total{api, code}`: answered requests by API and
  status;
- `distillguard_request_duration_seconds`: a histogram of the time to the
  response head (streams continue after it);
- `distillguard_answers_total{outcome}`: how forwarded answers ended
  (complete, upstream_error, stalled, client_gone);
- `distillguard_tokens_total{kind}`: input and output tokens of answers;
  `distillguard_reasoning_returned_total`;
- `distillguard_rate_limited_total{limit}`: 429s by limit (requests,
  tokens);
- `distillguard_actions_total{action}`: verdict actions applied to
  requests (block, withhold_reasoning, throttle);
- `distillguard_accounts{verdict}`, `distillguard_campaign_accounts`: the
  detector's current verdicts; `distillguard_verdict_changes_total{verdict}`;
  `distillguard_overrides`: operators' overrides in force;
- `distillguard_detector_enqueued_total`, `…_dropped_total`,
  `…_processed_total`, `…_faults_total`, `distillguard_detector_up`: the detection queue and
  its health (a dead detector fails open, visibly here);
- `distillguard_eventlog_dropped_total`, `distillguard_config_reloads_total`,
  `distillguard_rejections_untracked_total`;
- `distillguard_connections_open`, `distillguard_connections_max`;
- `distillguard_ingested_total{line}` (accepted, malformed) and
  `distillguard_forward_auth_total{outcome}` (allow, deny, throttle,
  unknown, unavailable): the integration endpoints.
*/

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::Action;
use crate::dialect::Dialect;
use crate::limits::Unit;
use crate::tap::Outcome;

const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];
const CODES: [u16; 12] = [200, 400, 401, 403, 404, 413, 429, 500, 502, 503, 504, 529];
const VERDICTS: [&str; 4] = ["allow", "monitor", "throttle", "block"];
/// The APIs requests are counted by.
const APIS: [Dialect; 3] = [Dialect::OpenAi, Dialect::Anthropic, Dialect::Responses];

#[derive(Default)]
pub struct Metrics {
    /// [api (in [`APIS`] order)][code index (last: other)]
    requests: [[AtomicU64; CODES.len() + 1]; APIS.len()],
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    /// Sum of durations in microseconds.
    sum_us: AtomicU64,
    outcomes: [AtomicU64; 4],
    input_tokens: AtomicU64,
    output_tokens: AtomicU64,
    reasoning: AtomicU64,
    limited: [AtomicU64; 2],
    /// block, withhold_reasoning, throttle
    actions: [AtomicU64; 3],
    reloads: AtomicU64,
    /// Responses continuations: of an answer the gateway served, unknown.
    continued: [AtomicU64; 2],
    /// `POST /v1/events` lines: accepted, malformed.
    ingested: [AtomicU64; 2],
    /// Forward-auth answers, by [`FORWARD_AUTH`] outcome.
    forward_auth: [AtomicU64; FORWARD_AUTH.len()],
}

/// Forward-auth outcomes, in the counters' order.
const FORWARD_AUTH: [&str; 5] = ["allow", "deny", "throttle", "unknown", "unavailable"];

fn add(a: &AtomicU64, n: u64) {
    a.fetch_add(n, Ordering::Relaxed);
}

fn get(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// What the gateway's parts report for one rendering, read once (the
/// gateway builds it; see `state::Gateway::snapshot`).
#[derive(Default)]
pub(crate) struct Snapshot<'a> {
    pub detector: Option<DetectorSnapshot>,
    pub shared_errors: u64,
    pub rejections_untracked: u64,
    pub bus: Option<&'a distillguard_bus::Stats>,
    pub log_dropped: u64,
    pub overrides: usize,
    pub board: Option<BoardSnapshot>,
    /// Open connections and the cap.
    pub connections: Option<(usize, usize)>,
}

/// The detector's counters.
#[derive(Default, Clone, Copy)]
pub(crate) struct DetectorSnapshot {
    pub enqueued: u64,
    pub dropped: u64,
    pub processed: u64,
    pub faults: u64,
    pub up: bool,
    /// Verdict changes, by new verdict.
    pub changes: [u64; 4],
    /// Accounts by current verdict.
    pub accounts: [u64; 4],
    pub campaign_accounts: u64,
    pub tracked: u64,
    pub forgotten: u64,
}

/// The verdict board's state.
pub(crate) struct BoardSnapshot {
    pub applied: u64,
    pub entries: usize,
    pub last_delay_ms: i64,
}

impl Metrics {
    pub fn record(&self, api: Dialect, status: u16, secs: f64) {
        let i = CODES
            .iter()
            .position(|&c| c == status)
            .unwrap_or(CODES.len());
        if let Some(row) = APIS
            .iter()
            .position(|&a| a == api)
            .and_then(|a| self.requests.get(a))
        {
            add(&row[i], 1);
        }
        if let Some(b) = BUCKETS.iter().position(|&le| secs <= le) {
            add(&self.buckets[b], 1);
        }
        add(&self.count, 1);
        add(&self.sum_us, (secs * 1e6) as u64);
    }

    pub fn answer(&self, o: Outcome, r: Option<&distillguard_core::Response>) {
        add(&self.outcomes[o as usize], 1);
        if let Some(r) = r {
            add(&self.input_tokens, u64::from(r.input_tokens.unwrap_or(0)));
            add(&self.output_tokens, u64::from(r.output_tokens.unwrap_or(0)));
            add(&self.reasoning, u64::from(r.reasoning_returned));
        }
    }

    pub fn limited(&self, u: Unit) {
        add(&self.limited[u as usize], 1);
    }

    pub fn action(&self, a: Action) {
        let i = match a {
            Action::Block => 0,
            Action::WithholdReasoning => 1,
            Action::Throttle => 2,
            Action::Record => return,
        };
        add(&self.actions[i], 1);
    }

    pub fn ingested(&self, accepted: u64, malformed: u64) {
        add(&self.ingested[0], accepted);
        add(&self.ingested[1], malformed);
    }

    pub fn forward_auth(&self, outcome: &str) {
        if let Some(i) = FORWARD_AUTH.iter().position(|o| *o == outcome) {
            add(&self.forward_auth[i], 1);
        }
    }

    pub fn reloaded(&self) {
        add(&self.reloads, 1);
    }

    /// A Responses request continuing a stored conversation, whose depth
    /// was `known` (an answer this gateway served) or not.
    pub fn continued(&self, known: bool) {
        add(&self.continued[usize::from(!known)], 1);
    }

    /// The exposition text: the gateway's own counters, and the parts'
    /// (detector, bus, board, listener) as `snap` read them.
    pub(crate) fn render(&self, snap: &Snapshot) -> String {
        let mut s = String::with_capacity(4096);
        let mut counter = |name: &str, help: &str, rows: &[(String, u64)]| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter");
            for (labels, v) in rows {
                let _ = writeln!(s, "{name}{labels} {v}");
            }
        };
        let mut rows = Vec::new();
        for (a, api) in APIS.iter().map(|d| d.as_str()).enumerate() {
            for (i, c) in CODES
                .iter()
                .map(|c| c.to_string())
                .chain(["other".to_string()])
                .enumerate()
            {
                let n = get(&self.requests[a][i]);
                if n > 0 {
                    rows.push((format!("{{api=\"{api}\",code=\"{c}\"}}"), n));
                }
            }
        }
        counter(
            "distillguard_requests_total",
            "Requests answered, by API and status.",
            &rows,
        );
        let rows: Vec<(String, u64)> = Outcome::ALL
            .iter()
            .map(|o| {
                (
                    format!("{{outcome=\"{}\"}}", o.as_str()),
                    get(&self.outcomes[*o as usize]),
                )
            })
            .collect();
        counter(
            "distillguard_answers_total",
            "How forwarded answers ended.",
            &rows,
        );
        counter(
            "distillguard_tokens_total",
            "Tokens of answers, as the upstream reported or estimated.",
            &[
                ("{kind=\"input\"}".into(), get(&self.input_tokens)),
                ("{kind=\"output\"}".into(), get(&self.output_tokens)),
            ],
        );
        counter(
            "distillguard_reasoning_returned_total",
            "Answers that carried reasoning to the client.",
            &[(String::new(), get(&self.reasoning))],
        );
        counter(
            "distillguard_rate_limited_total",
            "Requests refused with 429, by limit.",
            &[
                ("{limit=\"requests\"}".into(), get(&self.limited[0])),
                ("{limit=\"tokens\"}".into(), get(&self.limited[1])),
            ],
        );
        counter(
            "distillguard_actions_total",
            "Verdict actions applied to requests.",
            &[
                ("{action=\"block\"}".into(), get(&self.actions[0])),
                (
                    "{action=\"withhold_reasoning\"}".into(),
                    get(&self.actions[1]),
                ),
                ("{action=\"throttle\"}".into(), get(&self.actions[2])),
            ],
        );
        counter(
            "distillguard_ingested_total",
            "Lines posted to /v1/events, by whether they were accepted.",
            &[
                ("{line=\"accepted\"}".into(), get(&self.ingested[0])),
                ("{line=\"malformed\"}".into(), get(&self.ingested[1])),
            ],
        );
        let rows: Vec<(String, u64)> = FORWARD_AUTH
            .iter()
            .zip(&self.forward_auth)
            .map(|(o, n)| (format!("{{outcome=\"{o}\"}}"), get(n)))
            .collect();
        counter(
            "distillguard_forward_auth_total",
            "Forward-auth answers, by outcome.",
            &rows,
        );
        counter(
            "distillguard_responses_continued_total",
            "Responses requests continuing a stored conversation, by whether the gateway knew its depth.",
            &[
                ("{known=\"true\"}".into(), get(&self.continued[0])),
                ("{known=\"false\"}".into(), get(&self.continued[1])),
            ],
        );
        counter(
            "distillguard_config_reloads_total",
            "Successful config reloads.",
            &[(String::new(), get(&self.reloads))],
        );
        let d = snap.detector.unwrap_or_default();
        let (enq, drop, processed, faults, up, changes) = (
            d.enqueued,
            d.dropped,
            d.processed,
            d.faults,
            d.up,
            d.changes,
        );
        let (counts, camp) = (d.accounts, d.campaign_accounts);
        let rows: Vec<(String, u64)> = VERDICTS
            .iter()
            .zip(changes)
            .map(|(v, n)| (format!("{{verdict=\"{v}\"}}"), n))
            .collect();
        counter(
            "distillguard_verdict_changes_total",
            "Verdict changes published by the detector, by new verdict.",
            &rows,
        );
        counter(
            "distillguard_detector_enqueued_total",
            "Requests queued for detection.",
            &[(String::new(), enq)],
        );
        counter(
            "distillguard_detector_dropped_total",
            "Requests dropped because the detection queue was full or detection was down.",
            &[(String::new(), drop)],
        );
        counter(
            "distillguard_detector_processed_total",
            "Requests scored by the detector.",
            &[(String::new(), processed)],
        );
        counter(
            "distillguard_detector_faults_total",
            "Requests whose scoring failed (skipped; detection goes on).",
            &[(String::new(), faults)],
        );
        let (tracked, forgotten) = (d.tracked, d.forgotten);
        counter(
            "distillguard_detector_accounts_forgotten_total",
            "Idle accounts without a record that stayed allow, forgotten to bound memory.",
            &[(String::new(), forgotten)],
        );
        counter(
            "distillguard_limits_shared_errors_total",
            "Admissions the shared limits (Redis) could not decide: fallen back to local limits, or refused when failing closed.",
            &[(String::new(), snap.shared_errors)],
        );
        counter(
            "distillguard_rejections_untracked_total",
            "Refusals (400, 413, 429) not counted per account: the table of accounts was full.",
            &[(String::new(), snap.rejections_untracked)],
        );
        let bus =
            |f: fn(&distillguard_bus::Stats) -> u64| vec![(String::new(), snap.bus.map_or(0, f))];
        counter(
            "distillguard_bus_published_total",
            "Events acknowledged by NATS JetStream.",
            &bus(|s| get(&s.published)),
        );
        counter(
            "distillguard_bus_spilled_total",
            "Events the bus could not take (queue full, NATS down, no acknowledgement), appended to the spill file.",
            &bus(|s| get(&s.spilled)),
        );
        counter(
            "distillguard_bus_errors_total",
            "Publishes that failed or were not acknowledged in time (each then spilled).",
            &bus(|s| get(&s.errors)),
        );
        counter(
            "distillguard_bus_dropped_total",
            "Events lost: the spill queue was full too, or the spill file could not be written.",
            &bus(|s| get(&s.dropped)),
        );
        counter(
            "distillguard_eventlog_dropped_total",
            "Event-log lines dropped (queue full).",
            &[(String::new(), snap.log_dropped)],
        );
        let _ = writeln!(
            s,
            "# HELP distillguard_request_duration_seconds Time to the response head.\n# TYPE distillguard_request_duration_seconds histogram"
        );
        let mut cum = 0;
        for (b, le) in self.buckets.iter().zip(BUCKETS.iter()) {
            cum += get(b);
            let _ = writeln!(
                s,
                "distillguard_request_duration_seconds_bucket{{le=\"{le}\"}} {cum}"
            );
        }
        let count = get(&self.count);
        let _ = writeln!(
            s,
            "distillguard_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}\ndistillguard_request_duration_seconds_sum {}\ndistillguard_request_duration_seconds_count {count}",
            get(&self.sum_us) as f64 / 1e6
        );
        let _ = writeln!(
            s,
            "# HELP distillguard_accounts Accounts by the detector's current verdict.\n# TYPE distillguard_accounts gauge"
        );
        for (v, n) in VERDICTS.iter().zip(counts) {
            let _ = writeln!(s, "distillguard_accounts{{verdict=\"{v}\"}} {n}");
        }
        let overrides = snap.overrides;
        if let Some(b) = &snap.board {
            let entries = b.entries;
            let _ = writeln!(
                s,
                "# HELP distillguard_board_changes_total Verdict board changes applied (workers' verdicts, replicas' overrides).\n# TYPE distillguard_board_changes_total counter\ndistillguard_board_changes_total {}\n# HELP distillguard_board_entries Entries on the verdict board.\n# TYPE distillguard_board_entries gauge\ndistillguard_board_entries {entries}\n# HELP distillguard_board_delay_seconds From posting to arrival here, of the latest change.\n# TYPE distillguard_board_delay_seconds gauge\ndistillguard_board_delay_seconds {}",
                b.applied,
                b.last_delay_ms as f64 / 1000.0
            );
        }
        if let Some(c) = &snap.connections {
            let _ = writeln!(
                s,
                "# HELP distillguard_connections_open Open client connections.\n# TYPE distillguard_connections_open gauge\ndistillguard_connections_open {}\n# HELP distillguard_connections_max The connection cap.\n# TYPE distillguard_connections_max gauge\ndistillguard_connections_max {}",
                c.0, c.1
            );
        }
        let _ = writeln!(
            s,
            "# HELP distillguard_campaign_accounts Accounts in confirmed campaigns.\n# TYPE distillguard_campaign_accounts gauge\ndistillguard_campaign_accounts {camp}\n# HELP distillguard_overrides Operators' verdict overrides in force.\n# TYPE distillguard_overrides gauge\ndistillguard_overrides {overrides}\n# HELP distillguard_detector_up Whether the detector thread runs.\n# TYPE distillguard_detector_up gauge\ndistillguard_detector_up {}\n# HELP distillguard_detector_accounts Accounts the detector tracks now.\n# TYPE distillguard_detector_accounts gauge\ndistillguard_detector_accounts {tracked}",
            u8::from(up)
        );
        s
    }
}
