/*!
`/metrics` in the Prometheus text format, from atomics (no locks on the
request path).

- `distillguard_requests_total{api, code}`: answered requests by API and
  status class (2xx, 4xx…) and the statuses the gateway itself decides
  (401, 403, 413, 429, 502, 504);
- `distillguard_request_duration_seconds`: a histogram of the time to the
  response head (streams continue after it);
- `distillguard_detector_enqueued_total`, `distillguard_detector_dropped_total`,
  `distillguard_detector_up`.
*/

use std::sync::atomic::{AtomicU64, Ordering};

const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];
const CODES: [u16; 10] = [200, 400, 401, 403, 404, 413, 429, 500, 502, 504];

#[derive(Default)]
pub struct Metrics {
    /// [api][code index (last: other)]
    requests: [[AtomicU64; CODES.len() + 1]; 2],
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    /// Sum of durations in microseconds.
    sum_us: AtomicU64,
}

impl Metrics {
    pub fn record(&self, api: usize, status: u16, secs: f64) {
        let i = CODES
            .iter()
            .position(|&c| c == status)
            .unwrap_or(CODES.len());
        if let Some(row) = self.requests.get(api) {
            row[i].fetch_add(1, Ordering::Relaxed);
        }
        for (b, &le) in self.buckets.iter().zip(BUCKETS.iter()) {
            if secs <= le {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add((secs * 1e6) as u64, Ordering::Relaxed);
    }

    pub fn render(&self, enqueued: u64, dropped: u64, up: bool) -> String {
        let mut s = String::new();
        s.push_str("# HELP distillguard_requests_total Requests answered, by API and status.\n# TYPE distillguard_requests_total counter\n");
        for (a, api) in ["openai", "anthropic"].iter().enumerate() {
            for (i, c) in CODES
                .iter()
                .map(|c| c.to_string())
                .chain(["other".to_string()])
                .enumerate()
            {
                let n = self.requests[a][i].load(Ordering::Relaxed);
                if n > 0 {
                    s.push_str(&format!(
                        "distillguard_requests_total{{api=\"{api}\",code=\"{c}\"}} {n}\n"
                    ));
                }
            }
        }
        s.push_str("# HELP distillguard_request_duration_seconds Time to the response head.\n# TYPE distillguard_request_duration_seconds histogram\n");
        for (b, le) in self.buckets.iter().zip(BUCKETS.iter()) {
            s.push_str(&format!(
                "distillguard_request_duration_seconds_bucket{{le=\"{le}\"}} {}\n",
                b.load(Ordering::Relaxed)
            ));
        }
        let count = self.count.load(Ordering::Relaxed);
        s.push_str(&format!(
            "distillguard_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}\n"
        ));
        s.push_str(&format!(
            "distillguard_request_duration_seconds_sum {}\ndistillguard_request_duration_seconds_count {count}\n",
            self.sum_us.load(Ordering::Relaxed) as f64 / 1e6
        ));
        s.push_str(&format!(
            "# TYPE distillguard_detector_enqueued_total counter\ndistillguard_detector_enqueued_total {enqueued}\n# TYPE distillguard_detector_dropped_total counter\ndistillguard_detector_dropped_total {dropped}\n# TYPE distillguard_detector_up gauge\ndistillguard_detector_up {}\n",
            u8::from(up)
        ));
        s
    }
}
