/*!
Guarding the model's own data: exfiltration of weights, checkpoints and
training data from cloud storage, by insiders or with stolen credentials.

Data flows one way, as for API traffic:
[`source`] (CloudTrail, GCP audit logs, the generic form) → [`Access`] →
a bounded reorder buffer → the [`detect::Detector`] (per-principal
[`baseline`]s, named signals) → a [`detect::Report`] of principals,
alerts, `flagged_at` and reasons. The [`assets`] map says what is
sensitive and what is the organisation's own.
*/

pub mod assets;
pub mod baseline;
pub mod detect;
pub mod eval;
pub mod event;
pub mod source;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::Path;

use distillguard_core::{LineError, ReadError, ReadStats};

pub use assets::{AssetError, AssetFile, AssetMap};
pub use detect::{DetectConfig, Detector, Report};
pub use event::{Access, Action};
pub use source::SourceFormat;

/// The asset map file: the map and the `[detect]` settings.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExfilConfig {
    #[serde(default)]
    pub org: assets::Org,
    #[serde(default, rename = "asset")]
    pub assets: Vec<assets::Asset>,
    #[serde(default, rename = "network")]
    pub networks: Vec<assets::Network>,
    #[serde(default, rename = "departure")]
    pub departures: Vec<assets::Departure>,
    #[serde(default)]
    pub detect: DetectConfig,
}

impl ExfilConfig {
    /// Parses and validates the asset map file.
    pub fn from_toml(text: &str) -> Result<(AssetMap, DetectConfig), AssetError> {
        let c: ExfilConfig = toml::from_str(text).map_err(|e| AssetError::Toml(e.to_string()))?;
        c.detect.validate().map_err(|reason| AssetError::Invalid {
            field: "detect".into(),
            reason,
        })?;
        let file = AssetFile {
            org: c.org,
            assets: c.assets,
            networks: c.networks,
            departures: c.departures,
        };
        Ok((AssetMap::new(file)?, c.detect))
    }
}

/// A bounded reorder buffer: accesses come out in time order as long as
/// none is later than `window_ms` behind the latest seen; a later one
/// comes out at once and is counted.
pub struct Reorder {
    window_ms: i64,
    heap: BinaryHeap<Reverse<(i64, u64, usize)>>,
    slots: Vec<Option<Access>>,
    free: Vec<usize>,
    seq: u64,
    latest: i64,
    emitted: i64,
    pub late: u64,
}

impl Reorder {
    pub fn new(window_ms: i64) -> Reorder {
        Reorder {
            window_ms,
            heap: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            seq: 0,
            latest: i64::MIN,
            emitted: i64::MIN,
            late: 0,
        }
    }

    /// Adds an access; calls `out` with every access now due.
    pub fn push(&mut self, a: Access, out: &mut impl FnMut(Access)) {
        if a.ts < self.emitted {
            self.late += 1;
            out(a);
            return;
        }
        self.latest = self.latest.max(a.ts);
        let ts = a.ts;
        let slot = match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(a);
                i
            }
            None => {
                self.slots.push(Some(a));
                self.slots.len() - 1
            }
        };
        self.heap.push(Reverse((ts, self.seq, slot)));
        self.seq += 1;
        let due = self.latest.saturating_sub(self.window_ms);
        self.drain(due, out);
    }

    fn drain(&mut self, due: i64, out: &mut impl FnMut(Access)) {
        while let Some(Reverse((ts, _, slot))) = self.heap.peek().copied() {
            if ts > due {
                break;
            }
            self.heap.pop();
            self.emitted = ts;
            self.free.push(slot);
            if let Some(a) = self.slots[slot].take() {
                out(a);
            }
        }
    }

    /// Emits everything left.
    pub fn finish(&mut self, out: &mut impl FnMut(Access)) {
        self.drain(i64::MAX, out);
    }
}

/// Reads every source (gz, `-` for stdin; on all cores, in file order),
/// and runs the detector over the accesses in time order. Bad lines go to
/// `bad` with their place and lose only themselves; `bad` returning an
/// error stops the read (strict mode).
pub fn analyze(
    inputs: &[&Path],
    format: SourceFormat,
    map: AssetMap,
    cfg: DetectConfig,
    workers: usize,
    mut bad: impl FnMut(LineError) -> Result<(), ReadError>,
) -> Result<(Report, ReadStats), ReadError> {
    let window = i64::from(cfg.reorder_secs) * 1000;
    let mut det = Detector::new(map, cfg);
    let mut reorder = Reorder::new(window);
    let mut total = ReadStats::default();
    for path in inputs {
        let stats = distillguard_core::parallel::par_read(
            path,
            workers,
            |line| source::parse_line(format, line),
            |item| {
                match item {
                    Ok(accesses) => {
                        for a in accesses {
                            reorder.push(a, &mut |a| det.observe(&a));
                        }
                    }
                    Err(e) => bad(e)?,
                }
                Ok(())
            },
        )?;
        total.lines += stats.lines;
        total.blank += stats.blank;
        total.accepted += stats.accepted;
        total.rejected += stats.rejected;
        total.bytes += stats.bytes;
    }
    reorder.finish(&mut |a| det.observe(&a));
    let mut report = det.report();
    report.stats.late = reorder.late;
    Ok((report, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ts: i64) -> Access {
        Access {
            ts,
            principal: "p".into(),
            ..Access::default()
        }
    }

    #[test]
    fn reorder_sorts_within_its_window_and_counts_the_late() {
        let mut r = Reorder::new(10);
        let mut got = Vec::new();
        for ts in [5, 3, 9, 20, 1, 40] {
            r.push(at(ts), &mut |a| got.push(a.ts));
        }
        r.finish(&mut |a| got.push(a.ts));
        // 1 arrived after 9 had been emitted (window 10 behind 20).
        assert_eq!(got, vec![3, 5, 9, 1, 20, 40]);
        assert_eq!(r.late, 1);
    }

    #[test]
    fn the_config_file_holds_the_map_and_the_detector_settings() {
        let (map, cfg) = ExfilConfig::from_toml(
            "[org]\naccounts = [\"1\"]\n[[asset]]\nbucket = \"w\"\nkind = \"weights\"\nsensitivity = \"critical\"\n[detect]\nlearning_days = 3\n",
        )
        .unwrap();
        assert_eq!(cfg.learning_days.get(), 3);
        assert!(map.asset("w", "x").is_some());
        let e = ExfilConfig::from_toml("[detect]\nlearning_days = 0\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("learning_days") || e.contains("nonzero") || e.contains("zero"),
            "{e}"
        );
        let e = ExfilConfig::from_toml("[detect]\ndrip_factor = 0.5\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("drip_factor"), "{e}");
    }
}
