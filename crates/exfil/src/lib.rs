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
pub mod hr;
pub mod source;

use std::path::Path;

use distillguard_core::reorder::{Reorder, Timed};
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
    #[serde(default, rename = "team")]
    pub teams: Vec<assets::Team>,
    #[serde(default)]
    pub detect: DetectConfig,
}

impl ExfilConfig {
    /// Parses and validates the asset map file.
    pub fn from_toml(text: &str) -> Result<(AssetMap, DetectConfig), AssetError> {
        let c: ExfilConfig = toml::from_str(text).map_err(|e| AssetError::Toml(e.to_string()))?;
        c.detect
            .validate()
            .map_err(|distillguard_core::Invalid(reason)| AssetError::Invalid {
                field: "detect".into(),
                reason,
            })?;
        let file = AssetFile {
            org: c.org,
            assets: c.assets,
            networks: c.networks,
            departures: c.departures,
            teams: c.teams,
        };
        Ok((AssetMap::new(file)?, c.detect))
    }
}

/// Accesses are put in time order by the shared bounded buffer, keyed by
/// time and principal.
impl Timed for Access {
    fn order_key(&self) -> (i64, u64) {
        (self.ts, detect::hash_of(&self.principal))
    }
}

/// A detector fed one source at a time, in time order across them: what
/// `exfil analyze` runs over its inputs, and `exfil watch` over the files
/// that arrive in a directory. A record later than the reorder window is
/// judged at once, out of order, and counted (`stats.late`).
pub struct Stream {
    det: Detector,
    reorder: Reorder<Access>,
    late: u64,
    format: SourceFormat,
    workers: usize,
}

impl Stream {
    pub fn new(map: AssetMap, cfg: DetectConfig, format: SourceFormat, workers: usize) -> Stream {
        let window = i64::from(cfg.reorder_secs) * 1000;
        Stream {
            det: Detector::new(map, cfg),
            reorder: Reorder::new(window),
            late: 0,
            format,
            workers,
        }
    }

    /// Reads one source (gz detected, `-` for stdin; on every core). Bad
    /// lines go to `bad` with their place and lose only themselves; `bad`
    /// returning an error stops the read (strict mode).
    pub fn read(
        &mut self,
        path: &Path,
        mut bad: impl FnMut(LineError) -> Result<(), ReadError>,
    ) -> Result<ReadStats, ReadError> {
        let Stream {
            det,
            reorder,
            late,
            format,
            workers,
        } = self;
        let format = *format;
        distillguard_core::parallel::par_read(
            path,
            *workers,
            |line| source::parse_line(format, line),
            |item| {
                match item {
                    Ok(accesses) => {
                        for a in accesses {
                            if reorder.check(&a).is_err() {
                                *late += 1;
                                det.observe(&a);
                            } else {
                                let _ = reorder.push(a, |a| det.observe(&a));
                            }
                        }
                    }
                    Err(e) => bad(e)?,
                }
                Ok(())
            },
        )
    }

    /// Principals flagged (or flagged again on a new day) since the last
    /// call, in the order it happened.
    pub fn take_flags(&mut self) -> Vec<detect::Flag> {
        self.det.take_flags()
    }

    /// Judges everything the reorder window still holds: the end of the
    /// input, for now (a record that comes later than it is late).
    pub fn flush(&mut self) {
        let det = &mut self.det;
        self.reorder.flush(|a| det.observe(&a));
    }

    /// Judges what the reorder window still holds and writes the report.
    pub fn finish(mut self) -> Report {
        let det = &mut self.det;
        self.reorder.finish(|a| det.observe(&a));
        let mut report = self.det.report();
        report.stats.late = self.late;
        report
    }
}

/// Reads every source in turn (see [`Stream::read`]) and runs the
/// detector over the accesses in time order.
pub fn analyze(
    inputs: &[&Path],
    format: SourceFormat,
    map: AssetMap,
    cfg: DetectConfig,
    workers: usize,
    mut bad: impl FnMut(LineError) -> Result<(), ReadError>,
) -> Result<(Report, ReadStats), ReadError> {
    let mut stream = Stream::new(map, cfg, format, workers);
    let mut total = ReadStats::default();
    for path in inputs {
        let s = stream.read(path, &mut bad)?;
        total.lines += s.lines;
        total.blank += s.blank;
        total.accepted += s.accepted;
        total.rejected += s.rejected;
        total.bytes += s.bytes;
    }
    Ok((stream.finish(), total))
}

#[cfg(test)]
mod tests {
    use super::*;

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
