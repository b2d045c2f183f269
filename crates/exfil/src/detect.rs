/*!
Exfiltration detectors over per-principal baselines, in time order.

Each access is judged against the principal's [`Baseline`] as it stood
before the access, then folded into it. A detector that fires raises an
[`Alert`]: a named [`Signal`], a weight, and a reason a human can check
against the log. A principal is **flagged** when the weights of the
distinct signals raised in the last 24 hours reach 1 (`flag_score`):
one strong signal (sensitive data copied out of the organisation, a
sensitive bucket opened up, a Tor exit) is enough; weaker ones (a new
network, a new prefix, an odd hour, a volume spike inside the network)
must come together.

Baseline-relative signals wait for `learning_days` active days, so a new
hire ramping up is not judged against a history it does not have; the
signals that need no history (copies out, exposure, travel, Tor) do not
wait. A principal in a team (`[[team]]` in the asset map, or an HR feed)
is judged against its peers as well: before it has a history of its own,
a volume spike is measured against the team's member-days, and a move
of data out must stand out against both its own and its team's usual
egress.

Every signal below says what it measures, why exfiltration shows it, its
direction (always: more of it, more suspicion) and its cost (all are O(1)
per access).
*/

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;

use distillguard_core::time::{MS_PER_DAY, MS_PER_HOUR, MS_PER_MINUTE};
use distillguard_core::{Invalid, Timestamp};
// Keys here are ARNs, addresses and user agents that an attacker does not
// choose to collide in a fixed-size table that never probes, and SipHash
// cost a tenth of a run: the deterministic Fx hash.
use distillguard_sketches::fxhash::FxBuild;
pub(crate) use distillguard_sketches::fxhash::hash_of;
use serde::{Deserialize, Serialize};

use crate::assets::{AssetMap, Place, Sensitivity, net_prefix};
use crate::baseline::Baseline;
use crate::event::{Access, Action};

/// Detector settings (`[detect]` in the asset map).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectConfig {
    /// Active days of history before baseline-relative signals fire.
    pub learning_days: std::num::NonZeroU32,
    /// The least sensitivity that counts as sensitive.
    pub sensitive: Sensitivity,
    /// A day's sensitive bytes must also reach this to be a spike.
    pub min_spike_bytes: u64,
    /// Two places for one credential within this many minutes is travel.
    pub travel_minutes: std::num::NonZeroU32,
    /// List calls on sensitive assets in one hour that make enumeration
    /// (with as many reads, and 5× the principal's busiest earlier hour).
    pub enumeration_lists: std::num::NonZeroU32,
    /// The last 28 days' sensitive bytes over this many times the usual
    /// 28 days is a slow drip.
    pub drip_factor: f64,
    /// … and at least this many bytes.
    pub min_drip_bytes: u64,
    /// The last 7 days' sensitive bytes read from outside over this many
    /// times the usual week's (the principal's and its team's) is egress
    /// (flags alone).
    pub egress_factor: f64,
    /// Days before a departure date (HR feed) that are watched.
    pub departure_days: u32,
    /// Weight sum over 24 hours that flags a principal.
    pub flag_score: f64,
    /// Accesses are reordered within this window (CloudTrail delivers
    /// within about 15 minutes).
    pub reorder_secs: u32,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            learning_days: std::num::NonZeroU32::MIN.saturating_add(13),
            sensitive: Sensitivity::High,
            min_spike_bytes: 1 << 30,
            travel_minutes: std::num::NonZeroU32::MIN.saturating_add(9),
            enumeration_lists: std::num::NonZeroU32::MIN.saturating_add(19),
            drip_factor: 2.5,
            min_drip_bytes: 20 << 30,
            egress_factor: 5.0,
            departure_days: 30,
            flag_score: 1.0,
            reorder_secs: 900,
        }
    }
}

impl DetectConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        if !(self.drip_factor.is_finite() && self.drip_factor >= 1.0) {
            return Err(Invalid(format!(
                "detect.drip_factor must be ≥ 1 (got {})",
                self.drip_factor
            )));
        }
        if !(self.egress_factor.is_finite() && self.egress_factor >= 1.0) {
            return Err(Invalid(format!(
                "detect.egress_factor must be ≥ 1 (got {})",
                self.egress_factor
            )));
        }
        if !(self.flag_score.is_finite() && self.flag_score > 0.0) {
            return Err(Invalid(format!(
                "detect.flag_score must be > 0 (got {})",
                self.flag_score
            )));
        }
        Ok(())
    }
}

/// The named signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    ExternalCopy,
    Exposure,
    ImpossibleTravel,
    NewNetwork,
    NewUserAgent,
    Enumeration,
    NewPrefix,
    VolumeSpike,
    OffHours,
    SlowDrip,
    Departure,
    Egress,
}

pub const SIGNALS: [Signal; 12] = [
    Signal::ExternalCopy,
    Signal::Exposure,
    Signal::ImpossibleTravel,
    Signal::NewNetwork,
    Signal::NewUserAgent,
    Signal::Enumeration,
    Signal::NewPrefix,
    Signal::VolumeSpike,
    Signal::OffHours,
    Signal::SlowDrip,
    Signal::Departure,
    Signal::Egress,
];

/// A signal's name as reports spell it (`slow_drip`).
fn signal_name(s: Signal) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

impl Signal {
    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// One raised signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    #[serde(with = "ts_text")]
    pub ts: i64,
    pub signal: Signal,
    pub weight: f64,
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub credential: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source_ip: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bucket: String,
    /// Where the data went, when it was copied (the destination bucket).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub destination: String,
    /// The access came from outside the organisation's networks (its
    /// address may be shared as an indicator).
    #[serde(default)]
    pub outside: bool,
}

mod ts_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&distillguard_core::Timestamp(*ms).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let t = String::deserialize(d)?;
        distillguard_core::Timestamp::parse(&t)
            .map(|t| t.0)
            .map_err(serde::de::Error::custom)
    }
}

/// Alerts kept per principal up to its first flag (the latest ones).
pub const ALERTS_TO_FLAG: usize = 6;
/// Alerts kept per principal after its first flag (the latest ones).
pub const ALERTS_AFTER: usize = 2;
/// Flag days kept per principal (the first ones; the rest are counted).
pub const MAX_FLAGS: usize = 16;

mod ts_list {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[i64], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            v.iter()
                .map(|t| distillguard_core::Timestamp(*t).to_string()),
        )
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<i64>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|t| {
                distillguard_core::Timestamp::parse(t)
                    .map(|t| t.0)
                    .map_err(serde::de::Error::custom)
            })
            .collect()
    }
}

/// A principal and what was found.
#[derive(Debug, Clone, Default)]
struct State {
    base: Baseline,
    /// Signals raised today (one alert per signal per day).
    today: u16,
    today_day: i64,
    /// (ts, signal, weight) of the last 24 hours' alerts.
    recent: Vec<(i64, Signal, f64)>,
    flagged_at: Option<i64>,
    /// When the score first crossed `flag_score` on each day it did.
    flags: Vec<i64>,
    flag_days: u32,
    /// The alerts up to the first flag (the latest [`ALERTS_TO_FLAG`]),
    /// then the latest [`ALERTS_AFTER`] after it: what an analyst reads,
    /// in bounded memory.
    alerts: Vec<Alert>,
    later: std::collections::VecDeque<Alert>,
    alerts_total: u32,
    /// The highest 24-hour weight sum reached.
    best_score: f64,
    /// The principal's last working day, from the HR feed (looked up once).
    departure: Option<i64>,
    sensitive_total: u64,
    sensitive_before_flag: u64,
    outside_total: u64,
    /// The principal's team (an index into the detector's teams).
    team: Option<u32>,
}

/// Usual days a week may send outside before egress compares it: half a
/// working week.
const EGRESS_FLOOR_DAYS: f64 = 2.5;

/// Member-days a team pools before it is a yardstick.
const TEAM_MIN_DAYS: u32 = 30;

/// A team's yardstick: its members' finished active days, pooled, so
/// that "a usual day" means a usual member-day of the team.
#[derive(Debug, Clone, Default)]
struct TeamBase {
    days: u32,
    /// EWMA mean and variance of log10(1 + sensitive bytes) per
    /// member-day (α = 1/n, at least 1/200).
    mean: f64,
    var: f64,
    /// Mean sensitive bytes a member-day reads from outside (arithmetic,
    /// each day capped at 4× the team's usual day).
    outside: f64,
}

impl TeamBase {
    fn absorb(&mut self, day: crate::baseline::ClosedDay) {
        self.days += 1;
        let a = (1.0 / f64::from(self.days)).max(1.0 / 200.0);
        let x = (1.0 + day.sensitive as f64).log10();
        let cap = 4.0 * (10f64.powf(self.mean) - 1.0).max(1.0);
        let out = if self.days == 1 {
            day.outside as f64
        } else {
            (day.outside as f64).min(cap)
        };
        let d = x - self.mean;
        self.mean += a * d;
        self.var = (1.0 - a) * (self.var + a * d * d);
        self.outside += a * (out - self.outside);
    }

    fn ready(&self) -> bool {
        self.days >= TEAM_MIN_DAYS
    }

    /// The usual member-day and the level of a spike against it (4 σ
    /// above on the log scale, and at least 10× it).
    fn levels(&self) -> (f64, f64) {
        (
            10f64.powf(self.mean) - 1.0,
            crate::baseline::spike_level(self.mean, self.var),
        )
    }
}

/// What the detector found for one principal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrincipalReport {
    pub principal: String,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_ts")]
    pub flagged_at: Option<i64>,
    /// When the score crossed `flag_score`, once per day it did (the
    /// first [`MAX_FLAGS`]): each is an alert for the analyst, and the
    /// false-alert rate counts them.
    #[serde(with = "ts_list")]
    pub flags: Vec<i64>,
    /// Days flagged, all of them.
    pub flagged_days: u32,
    /// The highest 24-hour weight sum reached.
    pub score: f64,
    pub sensitive_bytes: u64,
    /// Sensitive bytes read before the flag (all of them if never flagged).
    pub sensitive_bytes_before_flag: u64,
    /// Sensitive bytes read from outside the organisation's networks.
    pub sensitive_bytes_outside: u64,
    pub active_days: u32,
    pub alerts_total: u32,
    pub alerts: Vec<Alert>,
}

mod opt_ts {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match ms {
            Some(t) => s.serialize_str(&distillguard_core::Timestamp(*t).to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        let t: Option<String> = Option::deserialize(d)?;
        t.map(|t| {
            distillguard_core::Timestamp::parse(&t)
                .map(|t| t.0)
                .map_err(serde::de::Error::custom)
        })
        .transpose()
    }
}

/// A principal flagged, as it happens (`exfil watch` prints one a line):
/// the first flag of each day it is flagged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flag {
    pub principal: String,
    #[serde(with = "ts_text")]
    pub flagged_at: i64,
    /// The 24-hour weight sum that crossed `flag_score`.
    pub score: f64,
    /// The first flag of this principal (later ones are new days).
    pub first: bool,
    /// The reasons of the alerts in force (the last 24 hours').
    pub reasons: Vec<String>,
}

/// Counts of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub accesses: u64,
    pub principals: u64,
    /// (principal, UTC day) pairs with any access: the denominator of the
    /// false-alert rate.
    pub principal_days: u64,
    pub sensitive_accesses: u64,
    /// Accesses that arrived later than the reorder window (judged late).
    pub late: u64,
    /// Refused or failed calls (judged, not folded into baselines).
    pub errors: u64,
    /// Detector memory per principal (bytes): mean and largest.
    #[serde(default)]
    pub state_bytes_mean: f64,
    #[serde(default)]
    pub state_bytes_max: usize,
}

/// The exfiltration report (`distillguard exfil analyze --format json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Always `exfiltration`: tells this report from `analyze`'s.
    pub kind: String,
    pub stats: Stats,
    pub config: DetectConfig,
    /// Principals with any alert, flagged first, then by score.
    pub principals: Vec<PrincipalReport>,
}

/// The network an access came from, as a key: the /24 (/48) of an
/// address, or the endpoint or service name.
fn network_key(a: &Access) -> u64 {
    if !a.vpc_endpoint.is_empty() {
        return hash_of(&a.vpc_endpoint);
    }
    match a.source_ip.parse::<IpAddr>() {
        Ok(ip) => hash_of(&net_prefix(ip)),
        Err(_) => hash_of(&a.source_ip),
    }
}

/// The "place" of an access for travel: the /16 of an address (an ISP
/// rotating addresses stays in one), or the endpoint or service.
fn travel_key(a: &Access) -> u64 {
    match a.source_ip.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) if a.vpc_endpoint.is_empty() => hash_of(&(u32::from(v4) >> 16)),
        Ok(IpAddr::V6(v6)) if a.vpc_endpoint.is_empty() => hash_of(&(u128::from(v6) >> 96)),
        _ => network_key(a),
    }
}

fn gib(b: f64) -> String {
    if b >= (1u64 << 30) as f64 {
        format!("{:.1} GiB", b / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB", b / (1u64 << 20) as f64)
    }
}

/// Management calls that open a bucket or send its data elsewhere.
const EXPOSURE_CALLS: [&str; 8] = [
    "PutBucketPolicy",
    "PutBucketAcl",
    "PutObjectAcl",
    "PutBucketReplication",
    "DeleteBucketPublicAccessBlock",
    "DeletePublicAccessBlock",
    "PutBucketWebsite",
    "storage.setIamPermissions",
];

/// The streaming detector.
pub struct Detector {
    map: AssetMap,
    cfg: DetectConfig,
    principals: HashMap<String, State, FxBuild>,
    /// One yardstick per team of the map, with its name.
    teams: Vec<(String, TeamBase)>,
    /// Flags raised since [`Detector::take_flags`] last ran.
    new_flags: Vec<Flag>,
    stats: Stats,
}

/// What one access is, once looked up.
struct Judged<'a> {
    a: &'a Access,
    place: Place,
    /// The sensitivity of the data the access read, when it read any.
    sensitivity: Option<Sensitivity>,
    sensitive_bytes: u64,
    prefix_key: u64,
    /// Keys of its network, travel place, user agent and credential,
    /// hashed once for the signals and the baseline.
    net: u64,
    place_key: u64,
    agent: u64,
    credential: u64,
}

impl Detector {
    pub fn new(map: AssetMap, cfg: DetectConfig) -> Detector {
        let teams = map
            .team_names()
            .map(|n| (n.to_string(), TeamBase::default()))
            .collect();
        Detector {
            map,
            cfg,
            principals: HashMap::default(),
            teams,
            new_flags: Vec::new(),
            stats: Stats::default(),
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Principals flagged (or flagged again on a new day) since the last
    /// call, in the order it happened.
    pub fn take_flags(&mut self) -> Vec<Flag> {
        std::mem::take(&mut self.new_flags)
    }

    /// Judges one access (in time order) and folds it in.
    pub fn observe(&mut self, a: &Access) {
        self.stats.accesses += 1;
        let place = self.map.place(&a.source_ip, &a.vpc_endpoint);
        let (rb, ro) = a.read_target();
        let asset = self
            .map
            .asset(rb, ro)
            .filter(|x| x.sensitivity >= self.cfg.sensitive);
        let sensitivity = asset.map(|x| x.sensitivity);
        let sensitive_bytes =
            if sensitivity.is_some() && a.action.moves_data() && a.error.is_empty() {
                a.bytes_out
            } else {
                0
            };
        let prefix_key = asset
            .map(|x| {
                hash_of(&(
                    rb,
                    x.prefix.as_str(),
                    ro.split('/').next().unwrap_or_default(),
                ))
            })
            .unwrap_or(0);
        if sensitivity.is_some() {
            self.stats.sensitive_accesses += 1;
        }
        let j = Judged {
            a,
            place,
            sensitivity,
            sensitive_bytes,
            prefix_key,
            net: network_key(a),
            place_key: travel_key(a),
            agent: hash_of(&a.user_agent),
            credential: hash_of(&a.credential),
        };
        let st = match self.principals.get_mut(&a.principal) {
            Some(s) => s,
            None => {
                self.stats.principals += 1;
                self.principals.entry(a.principal.clone()).or_insert(State {
                    base: Baseline::new(a.ts),
                    departure: self.map.departure(&a.principal),
                    team: self.map.team(&a.principal),
                    today_day: a.ts.div_euclid(MS_PER_DAY),
                    ..State::default()
                })
            }
        };
        let day = a.ts.div_euclid(MS_PER_DAY);
        if st.base.day_accesses == 0 || day > st.base.day {
            self.stats.principal_days += 1;
        }
        if let Some(closed) = st.base.advance(a.ts)
            && let Some((_, t)) = st.team.and_then(|t| self.teams.get_mut(t as usize))
        {
            t.absorb(closed);
        }
        let team = st
            .team
            .and_then(|t| self.teams.get(t as usize))
            .filter(|(_, t)| t.ready());
        if day != st.today_day {
            st.today = 0;
            st.today_day = day;
        }
        let mut raised: Vec<(Signal, f64, String)> = Vec::new();
        if !a.error.is_empty() {
            self.stats.errors += 1;
            // A refused call moved nothing; only an exposure attempt counts.
        } else {
            judge(
                &self.map,
                &self.cfg,
                &st.base,
                st.departure,
                team,
                &j,
                &mut raised,
            );
        }
        // Fold the access into the baseline after judging it.
        if a.error.is_empty() {
            let base = &mut st.base;
            base.networks.observe(j.net);
            if !a.user_agent.is_empty() {
                base.agents.observe(j.agent);
            }
            if j.sensitivity.is_some() {
                base.touch_prefix(j.prefix_key);
                match a.action {
                    Action::List => base.hour_lists += 1,
                    Action::Get | Action::Copy => base.hour_reads += 1,
                    _ => {}
                }
            }
            if !a.credential.is_empty() {
                let (c, p) = (j.credential, j.place_key);
                let slot = base
                    .last_place
                    .iter()
                    .position(|s| s.0 == c)
                    .unwrap_or_else(|| {
                        if base.last_place[0].2 <= base.last_place[1].2 {
                            0
                        } else {
                            1
                        }
                    });
                base.last_place[slot] = (c, p, a.ts);
            }
            base.record(a.ts, a.bytes_out, sensitive_bytes, place.outside());
            st.sensitive_total += sensitive_bytes;
            if place.outside() {
                st.outside_total += sensitive_bytes;
            }
            if st.flagged_at.is_none() {
                st.sensitive_before_flag += sensitive_bytes;
            }
        }
        for (signal, weight, reason) in raised {
            if st.today & signal.bit() != 0 {
                continue;
            }
            st.today |= signal.bit();
            st.alerts_total += 1;
            let alert = Alert {
                ts: a.ts,
                signal,
                weight,
                reason,
                credential: a.credential.clone(),
                source_ip: a.source_ip.clone(),
                bucket: a.read_target().0.to_string(),
                destination: if signal == Signal::ExternalCopy {
                    a.bucket.clone()
                } else {
                    String::new()
                },
                outside: place.outside(),
            };
            if st.flagged_at.is_none() {
                if st.alerts.len() == ALERTS_TO_FLAG {
                    st.alerts.remove(0);
                }
                st.alerts.push(alert);
            } else {
                if st.later.len() == ALERTS_AFTER {
                    st.later.pop_front();
                }
                st.later.push_back(alert);
            }
            st.recent.retain(|(t, _, _)| a.ts - *t < MS_PER_DAY);
            st.recent.push((a.ts, signal, weight));
            let score = score_of(&st.recent);
            st.best_score = st.best_score.max(score);
            // (A small tolerance: 0.5 + 0.2 + 0.3 must reach 1.)
            if score >= self.cfg.flag_score - 1e-9 {
                // The access that tipped it counts as served before the flag.
                st.flagged_at.get_or_insert(a.ts);
                let new_day = st
                    .flags
                    .last()
                    .is_none_or(|t| t.div_euclid(MS_PER_DAY) != day);
                if new_day {
                    st.flag_days += 1;
                    if st.flags.len() < MAX_FLAGS {
                        st.flags.push(a.ts);
                    }
                    self.new_flags.push(Flag {
                        principal: a.principal.clone(),
                        flagged_at: a.ts,
                        score,
                        first: st.flag_days == 1,
                        reasons: st
                            .alerts
                            .iter()
                            .chain(st.later.iter())
                            .filter(|x| a.ts - x.ts < MS_PER_DAY)
                            .map(|x| format!("{}: {}", signal_name(x.signal), x.reason))
                            .collect(),
                    });
                }
            }
        }
    }

    /// Bytes held per principal: the fixed state, its key, and the
    /// alerts and flags it keeps (mean and largest).
    pub fn state_bytes(&self) -> (f64, usize) {
        let alert = |a: &Alert| {
            std::mem::size_of::<Alert>()
                + a.reason.capacity()
                + a.credential.capacity()
                + a.source_ip.capacity()
                + a.bucket.capacity()
                + a.destination.capacity()
        };
        let each = |(k, s): (&String, &State)| {
            std::mem::size_of::<State>()
                + std::mem::size_of::<String>()
                + k.capacity()
                + s.alerts.iter().map(alert).sum::<usize>()
                + s.later.iter().map(alert).sum::<usize>()
                + s.recent.capacity() * std::mem::size_of::<(i64, Signal, f64)>()
                + s.flags.capacity() * 8
        };
        let sizes: Vec<usize> = self.principals.iter().map(each).collect();
        let max = sizes.iter().copied().max().unwrap_or(0);
        let mean = sizes.iter().sum::<usize>() as f64 / sizes.len().max(1) as f64;
        (mean, max)
    }

    /// The report: every principal with an alert.
    pub fn report(&self) -> Report {
        let mut principals: Vec<PrincipalReport> = self
            .principals
            .iter()
            .filter(|(_, s)| s.alerts_total > 0)
            .map(|(p, s)| PrincipalReport {
                principal: p.clone(),
                flagged_at: s.flagged_at,
                flags: s.flags.clone(),
                score: s.best_score,
                sensitive_bytes: s.sensitive_total,
                sensitive_bytes_before_flag: s.sensitive_before_flag,
                sensitive_bytes_outside: s.outside_total,
                active_days: s.base.active_days + u32::from(s.base.day_accesses > 0),
                flagged_days: s.flag_days,
                alerts_total: s.alerts_total,
                alerts: s.alerts.iter().chain(s.later.iter()).cloned().collect(),
            })
            .collect();
        principals.sort_by(|a, b| {
            b.flagged_at
                .is_some()
                .cmp(&a.flagged_at.is_some())
                .then(b.score.total_cmp(&a.score))
                .then(a.principal.cmp(&b.principal))
        });
        let (mean, max) = self.state_bytes();
        Report {
            kind: "exfiltration".into(),
            stats: Stats {
                state_bytes_mean: mean,
                state_bytes_max: max,
                ..self.stats.clone()
            },
            config: self.cfg.clone(),
            principals,
        }
    }
}

/// The weight of distinct signals among alerts within 24 hours.
fn score_of(recent: &[(i64, Signal, f64)]) -> f64 {
    let mut seen = 0u16;
    let mut sum = 0.0;
    for (_, s, w) in recent {
        // A signal counts once in a window, however often it repeats.
        if seen & s.bit() == 0 {
            seen |= s.bit();
            sum += w;
        }
    }
    sum
}

/// Runs every signal on one access against the baseline before it.
fn judge(
    map: &AssetMap,
    cfg: &DetectConfig,
    base: &Baseline,
    last_day: Option<i64>,
    team: Option<&(String, TeamBase)>,
    j: &Judged<'_>,
    out: &mut Vec<(Signal, f64, String)>,
) {
    let learned = base.active_days >= cfg.learning_days.get();
    external_copy(map, j, out);
    exposure(j, out);
    impossible_travel(cfg, base, j, out);
    if learned {
        new_network(base, j, out);
        new_user_agent(base, j, out);
        new_prefix(base, j, out);
        off_hours(base, j, out);
    }
    enumeration(cfg, base, j, out);
    volume_spike(cfg, base, team, j, out);
    egress(cfg, base, team, j, out);
    slow_drip(cfg, base, j, out);
    departure(last_day, cfg, base, j, out);
}

/// **external_copy**: a server-side copy of sensitive data into a bucket
/// that is not the organisation's (its owner account is not in
/// `org.accounts`, or, when the log names no owner, the bucket is in
/// neither the asset map nor `org.buckets`). An insider's quickest way
/// out: the data never crosses their laptop or a network monitor.
/// Direction: any such copy is suspicious; weight 1 (flags alone).
fn external_copy(map: &AssetMap, j: &Judged<'_>, out: &mut Vec<(Signal, f64, String)>) {
    let a = j.a;
    if a.action != Action::Copy || j.sensitivity.is_none() {
        return;
    }
    if map.org_bucket(&a.bucket, &a.bucket_account) {
        return;
    }
    let owner = if a.bucket_account.is_empty() {
        String::new()
    } else {
        format!(" (account {})", a.bucket_account)
    };
    out.push((
        Signal::ExternalCopy,
        1.0,
        format!(
            "{} copied {}/{} ({}) to bucket {}{owner}, which is not the organisation's",
            a.event_name,
            a.copy_source_bucket,
            a.copy_source_object,
            j.sensitivity.map(|s| s.name()).unwrap_or_default(),
            a.bucket
        ),
    ));
}

/// **exposure**: a call that opens a sensitive bucket (a bucket policy or
/// ACL, replication elsewhere, removing the public-access block). One
/// call exposes everything in it, which is why attackers with an admin
/// credential prefer it to downloads. Direction: any such change to a
/// sensitive bucket; weight 1.
fn exposure(j: &Judged<'_>, out: &mut Vec<(Signal, f64, String)>) {
    if j.sensitivity.is_none() || !EXPOSURE_CALLS.contains(&j.a.event_name.as_str()) {
        return;
    }
    out.push((
        Signal::Exposure,
        1.0,
        format!(
            "{} on sensitive bucket {} ({})",
            j.a.event_name,
            j.a.bucket,
            j.sensitivity.map(|s| s.name()).unwrap_or_default()
        ),
    ));
}

/// **impossible_travel**: one credential used from two places (address
/// /16s, endpoints) within `travel_minutes`, one of them outside the
/// organisation. A person is in one place at a time; a stolen key used
/// from a VPS while its owner works from the office is in two. Direction:
/// more places, closer in time, more suspicion; weight 0.4 (the owner
/// switching to a phone's hotspot does it too, so it needs company).
fn impossible_travel(
    cfg: &DetectConfig,
    base: &Baseline,
    j: &Judged<'_>,
    out: &mut Vec<(Signal, f64, String)>,
) {
    let a = j.a;
    if a.credential.is_empty() || matches!(j.place, Place::Service) {
        return;
    }
    let (c, p) = (j.credential, j.place_key);
    let window = i64::from(cfg.travel_minutes.get()) * MS_PER_MINUTE;
    if let Some(&(_, last, t)) = base.last_place.iter().find(|s| s.0 == c)
        && last != p
        && a.ts - t < window
        && j.place.outside()
    {
        out.push((
            Signal::ImpossibleTravel,
            0.4,
            format!(
                "credential {} used from {} ({}) {:.0} min after another place",
                a.credential,
                a.source_ip,
                j.place.name(),
                (a.ts - t) as f64 / MS_PER_MINUTE as f64
            ),
        ));
    }
}

/// **new_network**: sensitive data read from a network (/24, endpoint)
/// the principal has never used, outside the organisation. Stolen
/// credentials are used from the thief's machine; an insider moving data
/// home uses a home line. Direction: outside and new is suspicious; a
/// Tor exit flags alone (1.0), a VPN exit or hosting address 0.6, any
/// other new outside network 0.5. Only after `learning_days`.
fn new_network(base: &Baseline, j: &Judged<'_>, out: &mut Vec<(Signal, f64, String)>) {
    if j.sensitivity.is_none() || !j.a.action.moves_data() || !j.place.outside() {
        return;
    }
    if base.networks.contains(j.net) {
        return;
    }
    let weight = match j.place {
        Place::Tor => 1.0,
        Place::Vpn | Place::Cloud | Place::ForeignVpc => 0.6,
        _ => 0.5,
    };
    out.push((
        Signal::NewNetwork,
        weight,
        format!(
            "sensitive {} from {} ({}), a network this principal has not used in {} active days",
            j.a.event_name,
            j.a.source_ip,
            j.place.name(),
            base.active_days
        ),
    ));
}

/// **new_user_agent**: sensitive data read with a user agent the
/// principal has never sent. A thief's tooling differs from the owner's
/// (boto3 on a VPS against the owner's console and CLI). Direction: new
/// is suspicious; weight 0.2 (tools get upgraded). Only after learning.
fn new_user_agent(base: &Baseline, j: &Judged<'_>, out: &mut Vec<(Signal, f64, String)>) {
    if j.sensitivity.is_none() || !j.a.action.moves_data() || j.a.user_agent.is_empty() {
        return;
    }
    if base.agents.is_empty() || base.agents.contains(j.agent) {
        return;
    }
    let ua: String = j.a.user_agent.chars().take(60).collect();
    out.push((
        Signal::NewUserAgent,
        0.2,
        format!("sensitive {} with a new user agent {ua:?}", j.a.event_name),
    ));
}

/// **new_prefix**: the principal touches a sensitive prefix (asset and
/// first path segment) it never touched before. Compromised credentials
/// explore; insiders reach past their project. Direction: new is
/// suspicious; weight 0.3 (people change projects). Only after learning.
fn new_prefix(base: &Baseline, j: &Judged<'_>, out: &mut Vec<(Signal, f64, String)>) {
    if j.sensitivity.is_none() || !matches!(j.a.action, Action::Get | Action::Copy | Action::List) {
        return;
    }
    if base.has_prefix(j.prefix_key) {
        return;
    }
    let (b, o) = j.a.read_target();
    let seg = o.split('/').next().unwrap_or_default();
    out.push((
        Signal::NewPrefix,
        0.3,
        format!(
            "first access to sensitive {b}/{seg} ({}) after {} active days",
            j.sensitivity.map(|s| s.name()).unwrap_or_default(),
            base.active_days
        ),
    ));
}

/// **off_hours**: sensitive data read at a UTC hour that holds under 1%
/// of the principal's history. Exfiltration is timed for when nobody
/// watches; a service that runs around the clock has no such hour.
/// Direction: rarer hour, more suspicion; weight 0.3. Only after learning.
/// A read or copy is enough, whatever its size (GCP logs no bytes, and a
/// copy carries none).
fn off_hours(base: &Baseline, j: &Judged<'_>, out: &mut Vec<(Signal, f64, String)>) {
    if j.sensitivity.is_none() || !j.a.action.moves_data() {
        return;
    }
    let h = (j.a.ts.rem_euclid(MS_PER_DAY) / MS_PER_HOUR) as usize;
    let share = base.hour_share(h);
    if share >= 0.01 {
        return;
    }
    out.push((
        Signal::OffHours,
        0.3,
        format!(
            "sensitive {} at {h:02}:00 UTC, an hour with {:.2}% of this principal's history",
            j.a.event_name,
            share * 100.0
        ),
    ));
}

/// **enumeration**: many List calls over sensitive prefixes in one hour
/// followed by reads across them: `enumeration_lists` or more of each,
/// and 5× the principal's busiest earlier hour of listing. A stolen CI
/// token does not know where the data is; it walks the tree. Direction:
/// more listing, more suspicion; weight 0.6.
fn enumeration(
    cfg: &DetectConfig,
    base: &Baseline,
    j: &Judged<'_>,
    out: &mut Vec<(Signal, f64, String)>,
) {
    if j.sensitivity.is_none() || !j.a.action.moves_data() {
        return;
    }
    let need = cfg.enumeration_lists.get();
    let lists = base.hour_lists;
    if lists < need || base.hour_reads + 1 < need || lists < 5 * base.peak_hour_lists.max(1) {
        return;
    }
    out.push((
        Signal::Enumeration,
        0.6,
        format!(
            "{lists} List calls and {} reads on sensitive prefixes this hour (busiest earlier hour: {} lists)",
            base.hour_reads + 1,
            base.peak_hour_lists
        ),
    ));
}

/// **volume_spike**: today's sensitive bytes cross the principal's spike
/// level (4 σ above its usual active day on a log scale, at least 10× it,
/// and at least `min_spike_bytes`). Before the principal has
/// `learning_days` of its own history, the level is its team's: 4 σ above
/// the team's usual member-day and 10× it (a new credential that reads
/// far more than anyone doing the same work is judged from its first
/// day). Exfiltration is a bulk read. Direction: more bytes, more
/// suspicion; weight 0.9 when the bytes go outside the organisation's
/// networks, 0.4 inside (an evaluation sweep reads a quarter's
/// checkpoints through the VPC endpoint).
fn volume_spike(
    cfg: &DetectConfig,
    base: &Baseline,
    team: Option<&(String, TeamBase)>,
    j: &Judged<'_>,
    out: &mut Vec<(Signal, f64, String)>,
) {
    if j.sensitive_bytes == 0 {
        return;
    }
    let (level, against) = match base.spike_level(cfg.learning_days.get()) {
        Some(level) => (level, format!("a usual {} a day", gib(base.usual_day().0))),
        None => {
            let Some((name, t)) = team else {
                return;
            };
            let (usual, level) = t.levels();
            (
                level,
                format!(
                    "team {name}'s usual {} a member-day ({} active days of its own)",
                    gib(usual),
                    base.active_days
                ),
            )
        }
    };
    let level = level.max(cfg.min_spike_bytes as f64);
    let today = (base.day_sensitive + j.sensitive_bytes) as f64;
    if today < level {
        return;
    }
    let weight = if j.place.outside() { 0.9 } else { 0.4 };
    out.push((
        Signal::VolumeSpike,
        weight,
        format!(
            "{} of sensitive data today from {}, against {against} (spike level {})",
            gib(today),
            j.place.name(),
            gib(level)
        ),
    ));
}

/// **egress**: the last 7 days' sensitive bytes read from outside the
/// organisation's networks (each day counted up to 4× the usual day)
/// exceed `egress_factor` (5) times what a usual week sends outside,
/// judged against the principal's own history (as it stood before the
/// week, which the move has not yet raised) and its team's, whichever is
/// larger, and never less than half a working week of usual days. Data that leaves over a
/// home line or a laptop does so day after day at a few times the usual
/// pace, under every daily alarm and faster than a 28-day drip; working
/// from home for a week or two at the usual pace, or in a deadline push,
/// stays under 5. Direction: more bytes out, more suspicion; weight 1
/// (the factor was set from the false-alert budget: on the simulated
/// organisation's seeds 1–12, 1 honest principal-day of 35,073 reaches 5,
/// 0.03 per 1,000 against the budget of 1; 4.5 would spend 0.20, 4 spend
/// 0.57). Only after `learning_days`.
fn egress(
    cfg: &DetectConfig,
    base: &Baseline,
    team: Option<&(String, TeamBase)>,
    j: &Judged<'_>,
    out: &mut Vec<(Signal, f64, String)>,
) {
    if j.sensitive_bytes == 0 || !j.place.outside() || base.active_days < cfg.learning_days.get() {
        return;
    }
    let (own_day, usual) = base.usual_outside_before_window();
    let usual = usual.max(1.0);
    let cap = 4.0 * usual;
    let today = (base.day_outside() + j.sensitive_bytes) as f64;
    let week = base.egress_capped(cap) - (base.day_outside() as f64).min(cap) + today.min(cap);
    let days = crate::baseline::EGRESS_DAYS as f64 * base.active_share();
    let own = own_day * days;
    let peers = team.map_or(0.0, |(_, t)| t.outside * days);
    // Working outside is common: a principal whose own history has little
    // of it, in no team that says otherwise, is allowed half a working
    // week of its usual days out before its week is compared.
    let expected = own.max(peers).max(EGRESS_FLOOR_DAYS * usual);
    let ratio = week / expected;
    if ratio < cfg.egress_factor || week < cfg.min_spike_bytes as f64 {
        return;
    }
    // Name the yardstick that set the bar.
    let by = if expected > own.max(peers) {
        "half a working week of this principal's usual days".to_string()
    } else if peers > own {
        format!(
            "its team {}'s usual week out",
            team.map_or("", |(n, _)| n.as_str())
        )
    } else {
        "this principal's usual week out".to_string()
    };
    out.push((
        Signal::Egress,
        1.0,
        format!(
            "{} of sensitive data read from outside the organisation in 7 days, {ratio:.1}× {by} ({})",
            gib(week),
            gib(expected)
        ),
    ));
}

/// **slow_drip**: the last 28 days' sensitive bytes exceed
/// `drip_factor` (2.5) times what the principal's usual days, as they
/// were before those 28 days, add up to (and `min_drip_bytes`), each day
/// counted up to 4× the usual day: sustained elevation, where a two-day
/// evaluation sweep is a burst. A patient insider stays under every daily alarm
/// and is caught by the total. Direction: more cumulative bytes, more
/// suspicion; weight 0.7. Needs two learning periods of history.
fn slow_drip(
    cfg: &DetectConfig,
    base: &Baseline,
    j: &Judged<'_>,
    out: &mut Vec<(Signal, f64, String)>,
) {
    if j.sensitive_bytes == 0 || base.active_days < 2 * cfg.learning_days.get() {
        return;
    }
    let usual = base.usual_before_window();
    let expected = usual * 28.0 * base.active_share();
    let cap = 4.0 * usual.max(1.0);
    let today = (base.day_sensitive + j.sensitive_bytes) as f64;
    let total = base.drip_total_capped(cap) - (base.day_sensitive as f64).min(cap) + today.min(cap);
    if total < cfg.drip_factor * expected || total < cfg.min_drip_bytes as f64 {
        return;
    }
    let against = if expected < (1u64 << 20) as f64 {
        "where this principal's usual days add up to almost none".to_string()
    } else {
        format!(
            "{:.1}× what this principal's usual days add up to ({})",
            total / expected,
            gib(expected)
        )
    };
    out.push((
        Signal::SlowDrip,
        0.7,
        format!("{} of sensitive data in 28 days, {against}", gib(total)),
    ));
}

/// Standard deviations (log scale) above the usual day that a day before
/// a departure must reach (with 5× the usual day). Set from the
/// false-alert budget on the simulated organisation's seeds 1–12: at 2.5,
/// 4 honest leaver-days of 35,073 principal-days (0.11 per 1,000) and 10
/// of 12 leavers taking data caught before 10% of it; at 3, none and 7.
const DEPARTURE_SDS: f64 = 2.5;

/// **departure**: sensitive reads in the `departure_days` before the
/// principal's last day (from the HR feed) that reach 5× its usual day
/// and 2.5 of its own standard deviations above it (log scale), or a week
/// at 5× its usual week (and `min_spike_bytes` today). Departing
/// employees take their work with them, in a few big days; an ordinary
/// leaver's last weeks look like any others. Direction: more bytes, more
/// suspicion; weight 1 (the HR date is the context that makes such a day
/// enough).
fn departure(
    last_day: Option<i64>,
    cfg: &DetectConfig,
    base: &Baseline,
    j: &Judged<'_>,
    out: &mut Vec<(Signal, f64, String)>,
) {
    if j.sensitive_bytes == 0 || base.active_days < cfg.learning_days.get() {
        return;
    }
    let Some(last_day) = last_day else {
        return;
    };
    let window = i64::from(cfg.departure_days) * MS_PER_DAY;
    if j.a.ts < last_day - window || j.a.ts > last_day + 2 * MS_PER_DAY {
        return;
    }
    let (usual, sd) = base.usual_day();
    let today = (base.day_sensitive + j.sensitive_bytes) as f64;
    let level = (usual.max(1.0) * 5.0).max(10f64.powf(DEPARTURE_SDS * sd) * usual);

    let week = (base.recent_total(7) + j.sensitive_bytes) as f64;
    let usual_week = base.usual_long() * 7.0 * base.active_share();
    let what = if today >= level {
        format!(
            "{} of sensitive data today, {:.1}× the usual day",
            gib(today),
            today / usual.max(1.0)
        )
    } else if week >= 5.0 * usual_week {
        format!(
            "{} of sensitive data in 7 days, {:.1}× the usual week",
            gib(week),
            week / usual_week.max(1.0)
        )
    } else {
        return;
    };
    if today < cfg.min_spike_bytes as f64 {
        return;
    }
    out.push((
        Signal::Departure,
        1.0,
        format!(
            "{what}, {} days before the departure date {}",
            (last_day - j.a.ts).div_euclid(MS_PER_DAY).max(0),
            &Timestamp(last_day).to_string()[..10]
        ),
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assets::AssetMap;

    const MAP: &str = r#"
[org]
accounts = ["111"]
buckets = ["acme-*"]
networks = ["198.51.100.0/24"]
vpc_endpoints = ["vpce-1"]

[[asset]]
bucket = "ckpt"
kind = "checkpoints"
sensitivity = "critical"

[[asset]]
bucket = "data"
kind = "training-data"
sensitivity = "high"

[[asset]]
bucket = "data"
prefix = "public/"
kind = "training-data"
sensitivity = "low"

[[network]]
cidr = "203.0.113.0/24"
kind = "tor"

[[departure]]
principal = "leaver"
date = "2026-03-02"
"#;

    const T0: i64 = 1_767_571_200_000; // 2026-01-05
    const GB: u64 = 1 << 30;

    fn det() -> Detector {
        Detector::new(AssetMap::from_toml(MAP).unwrap(), DetectConfig::default())
    }

    fn get(p: &str, ts: i64, bucket: &str, object: &str, bytes: u64, ip: &str) -> Access {
        Access {
            ts,
            principal: p.into(),
            credential: format!("AKIA-{p}"),
            source_ip: ip.into(),
            user_agent: "aws-cli/2".into(),
            event_name: "GetObject".into(),
            action: Action::Get,
            bucket: bucket.into(),
            object: object.into(),
            bytes_out: bytes,
            ..Access::default()
        }
    }

    /// 20 working days of reading 2 GB of checkpoints a day from the
    /// office, 09:00–17:00 UTC, with a little listing.
    fn history(d: &mut Detector, p: &str) -> i64 {
        history_from(d, p, "198.51.100.7")
    }

    /// The same from `ip`.
    fn history_from(d: &mut Detector, p: &str, ip: &str) -> i64 {
        for day in 0..28 {
            if day % 7 >= 5 {
                continue;
            }
            for k in 0..8 {
                let ts = T0 + day * MS_PER_DAY + (9 + k) * MS_PER_HOUR;
                let size = GB / 4 + (day as u64 * 7 + k as u64) % 5 * (GB / 40);
                d.observe(&get(p, ts, "ckpt", "llm/run-1/step-1.pt", size, ip));
                let mut l = get(p, ts + 1000, "ckpt", "llm/", 0, ip);
                l.action = Action::List;
                l.event_name = "ListObjects".into();
                d.observe(&l);
            }
        }
        T0 + 28 * MS_PER_DAY
    }

    fn signals(d: &Detector, p: &str) -> Vec<Signal> {
        d.report()
            .principals
            .iter()
            .filter(|r| r.principal == p)
            .flat_map(|r| r.alerts.iter().map(|a| a.signal))
            .collect()
    }

    fn flagged(d: &Detector, p: &str) -> bool {
        d.report()
            .principals
            .iter()
            .any(|r| r.principal == p && r.flagged_at.is_some())
    }

    /// `days` working days from `day0` (days after T0), each reading `gb`
    /// gigabytes of checkpoints in 8 reads from `ip`.
    fn days_from(d: &mut Detector, p: &str, day0: i64, days: i64, gb: u64, ip: &str) {
        for day in day0..day0 + days {
            for k in 0..8 {
                let ts = T0 + day * MS_PER_DAY + (9 + k) * MS_PER_HOUR;
                d.observe(&get(p, ts, "ckpt", "llm/run-1/step-1.pt", gb * GB / 8, ip));
            }
        }
    }

    fn egress_days(d: &Detector, p: &str) -> usize {
        d.report()
            .principals
            .iter()
            .filter(|r| r.principal == p)
            .flat_map(|r| r.alerts.iter())
            .filter(|a| a.signal == Signal::Egress)
            .count()
    }

    #[test]
    fn egress_flags_days_of_data_leaving_not_a_week_at_home() {
        // A week from home at the usual 2 GB a day: its first day there
        // is a new network (0.5), the week is no move out.
        let mut d = det();
        history(&mut d, "home");
        days_from(&mut d, "home", 28, 5, 2, "73.1.2.3");
        assert_eq!(egress_days(&d, "home"), 0);
        assert!(!flagged(&d, "home"));
        // Four days at 4× the usual day over the same home line: over 5×
        // the half working week a principal may read from outside.
        let mut d = det();
        history(&mut d, "mover");
        days_from(&mut d, "mover", 28, 1, 2, "73.1.2.3");
        days_from(&mut d, "mover", 29, 4, 8, "73.1.2.3");
        assert!(egress_days(&d, "mover") >= 1, "{:?}", signals(&d, "mover"));
        assert!(flagged(&d, "mover"));
        let r = d.report();
        let reason = &r.principals[0]
            .alerts
            .iter()
            .find(|a| a.signal == Signal::Egress)
            .unwrap()
            .reason;
        assert!(
            reason.contains("read from outside the organisation in 7 days"),
            "{reason}"
        );
        // The same bytes inside the organisation's network: no egress.
        let mut d = det();
        history(&mut d, "inside");
        days_from(&mut d, "inside", 29, 3, 8, "198.51.100.7");
        assert_eq!(egress_days(&d, "inside"), 0);
    }

    #[test]
    fn more_bytes_out_never_lowers_egress() {
        // Direction: with the same history, a larger move out raises
        // egress on a day no later than a smaller one.
        let first = |gb: u64| {
            let mut d = det();
            history(&mut d, "p");
            days_from(&mut d, "p", 28, 5, gb, "73.1.2.3");
            d.report()
                .principals
                .iter()
                .flat_map(|r| r.alerts.iter())
                .find(|a| a.signal == Signal::Egress)
                .map(|a| a.ts)
        };
        let times: Vec<Option<i64>> = [2, 3, 4, 6, 8, 16].map(first).to_vec();
        assert_eq!(times[0], None, "the usual pace at home is no move out");
        assert!(times[5].is_some(), "{times:?}");
        for w in times.windows(2) {
            if let Some(before) = w[0] {
                assert!(w[1].is_some_and(|t| t <= before), "{times:?}");
            }
        }
    }

    const TEAMS: &str = r#"
[[team]]
name = "research"
principals = ["r-*"]
"#;

    fn det_teams() -> Detector {
        Detector::new(
            AssetMap::from_toml(&format!("{MAP}{TEAMS}")).unwrap(),
            DetectConfig::default(),
        )
    }

    #[test]
    fn a_new_principal_is_judged_against_its_team() {
        let mut d = det_teams();
        for p in ["r-a", "r-b", "r-c"] {
            history(&mut d, p);
        }
        // First days of two newcomers: one reads what the team reads, one
        // twenty times that. Without a team, neither has a yardstick yet.
        days_from(&mut d, "r-new", 28, 1, 2, "198.51.100.7");
        days_from(&mut d, "r-odd", 28, 1, 40, "198.51.100.7");
        days_from(&mut d, "x-odd", 28, 1, 40, "198.51.100.7");
        assert!(signals(&d, "r-new").is_empty());
        assert_eq!(signals(&d, "r-odd"), vec![Signal::VolumeSpike]);
        assert!(signals(&d, "x-odd").is_empty());
        let r = d.report();
        let reason = &r
            .principals
            .iter()
            .find(|p| p.principal == "r-odd")
            .unwrap()
            .alerts[0]
            .reason;
        assert!(reason.contains("team research's usual"), "{reason}");
    }

    #[test]
    fn a_team_that_works_from_home_explains_a_member_at_home() {
        // The team reads from home lines; "r-office" never has. Its first
        // week at home at 3.5× is ordinary for the team, not for itself.
        let run = |with_team: bool| {
            let mut d = if with_team { det_teams() } else { det() };
            for (i, p) in ["r-a", "r-b", "r-c"].iter().enumerate() {
                history_from(&mut d, p, &format!("73.1.{i}.3"));
            }
            history(&mut d, "r-office");
            days_from(&mut d, "r-office", 28, 5, 7, "73.9.9.9");
            egress_days(&d, "r-office")
        };
        assert_eq!(run(true), 0);
        assert!(run(false) >= 1);
    }

    #[test]
    fn an_ordinary_day_raises_nothing() {
        let mut d = det();
        let t = history(&mut d, "alice");
        d.observe(&get(
            "alice",
            t + 10 * MS_PER_HOUR,
            "ckpt",
            "llm/run-1/step-2.pt",
            GB / 4,
            "198.51.100.9",
        ));
        assert!(
            signals(&d, "alice").is_empty(),
            "{:?}",
            signals(&d, "alice")
        );
    }

    #[test]
    fn external_copy_flags_a_copy_out_not_a_copy_in_house() {
        let mut d = det();
        let copy = |bucket: &str, owner: &str| Access {
            event_name: "CopyObject".into(),
            action: Action::Copy,
            bucket: bucket.into(),
            object: "x".into(),
            copy_source_bucket: "ckpt".into(),
            copy_source_object: "llm/run-1/step-1.pt".into(),
            bucket_account: owner.into(),
            ..get("bob", T0, "", "", 0, "198.51.100.7")
        };
        d.observe(&copy("acme-backup", "111"));
        d.observe(&copy("acme-backup", ""));
        assert!(signals(&d, "bob").is_empty());
        d.observe(&copy("personal", "999"));
        assert_eq!(signals(&d, "bob"), vec![Signal::ExternalCopy]);
        assert!(flagged(&d, "bob"));
    }

    #[test]
    fn exposure_flags_opening_a_sensitive_bucket_only() {
        let mut d = det();
        let call = |bucket: &str, name: &str| Access {
            event_name: name.into(),
            action: Action::Other,
            bucket: bucket.into(),
            ..get("ops", T0, "", "", 0, "198.51.100.7")
        };
        d.observe(&call("acme-website", "PutBucketPolicy"));
        d.observe(&call("ckpt", "GetBucketPolicy"));
        assert!(signals(&d, "ops").is_empty());
        d.observe(&call("ckpt", "PutBucketPolicy"));
        assert_eq!(signals(&d, "ops"), vec![Signal::Exposure]);
    }

    #[test]
    fn impossible_travel_needs_two_places_within_minutes() {
        let mut d = det();
        let t = history(&mut d, "carol");
        // Home an hour after the office: a commute, not travel.
        d.observe(&get(
            "carol",
            t + 9 * MS_PER_HOUR,
            "ckpt",
            "llm/run-1/a",
            1,
            "198.51.100.7",
        ));
        d.observe(&get(
            "carol",
            t + 10 * MS_PER_HOUR,
            "data",
            "public/x",
            1,
            "73.1.2.3",
        ));
        assert!(!signals(&d, "carol").contains(&Signal::ImpossibleTravel));
        // A VPS two minutes after the office.
        d.observe(&get(
            "carol",
            t + 11 * MS_PER_HOUR,
            "ckpt",
            "llm/run-1/a",
            1,
            "198.51.100.7",
        ));
        d.observe(&get(
            "carol",
            t + 11 * MS_PER_HOUR + 120_000,
            "data",
            "public/x",
            1,
            "45.9.9.9",
        ));
        assert!(signals(&d, "carol").contains(&Signal::ImpossibleTravel));
    }

    #[test]
    fn new_network_weighs_more_for_a_tor_exit_than_a_home_line() {
        let mut d = det();
        let t = history(&mut d, "dave");
        // Inside the organisation: never a "new network".
        d.observe(&get(
            "dave",
            t + 9 * MS_PER_HOUR,
            "ckpt",
            "llm/run-1/a",
            GB / 4,
            "10.9.9.9",
        ));
        assert!(signals(&d, "dave").is_empty());
        d.observe(&get(
            "dave",
            t + 10 * MS_PER_HOUR,
            "ckpt",
            "llm/run-1/a",
            GB / 4,
            "73.1.2.3",
        ));
        let r = d.report();
        let a = &r.principals[0].alerts[0];
        assert_eq!((a.signal, a.weight), (Signal::NewNetwork, 0.5));
        let mut d = det();
        let t = history(&mut d, "dave");
        d.observe(&get(
            "dave",
            t + 10 * MS_PER_HOUR,
            "ckpt",
            "llm/run-1/a",
            GB / 4,
            "203.0.113.5",
        ));
        assert!(flagged(&d, "dave"), "a Tor exit flags alone");
    }

    #[test]
    fn new_user_agent_and_new_prefix_are_weak_on_their_own() {
        let mut d = det();
        let t = history(&mut d, "erin");
        let mut a = get(
            "erin",
            t + 10 * MS_PER_HOUR,
            "data",
            "web/shard-1",
            GB / 8,
            "198.51.100.7",
        );
        a.user_agent = "Boto3/1.34".into();
        d.observe(&a);
        let s = signals(&d, "erin");
        assert!(
            s.contains(&Signal::NewUserAgent) && s.contains(&Signal::NewPrefix),
            "{s:?}"
        );
        assert!(!flagged(&d, "erin"));
        // Reading the low-sensitivity prefix is not a sensitive first.
        let mut d = det();
        let t = history(&mut d, "erin");
        d.observe(&get(
            "erin",
            t + 10 * MS_PER_HOUR,
            "data",
            "public/x",
            GB,
            "198.51.100.7",
        ));
        assert!(signals(&d, "erin").is_empty());
    }

    #[test]
    fn off_hours_is_an_hour_the_principal_never_works() {
        let mut d = det();
        let t = history(&mut d, "fay");
        d.observe(&get(
            "fay",
            t + 3 * MS_PER_HOUR,
            "ckpt",
            "llm/run-1/a",
            GB / 4,
            "198.51.100.7",
        ));
        assert_eq!(signals(&d, "fay"), vec![Signal::OffHours]);
        // A job that runs around the clock has no odd hour.
        let mut d = det();
        for h in 0..(24 * 20) {
            d.observe(&get(
                "job",
                T0 + h * MS_PER_HOUR,
                "ckpt",
                "llm/run-1/a",
                GB / 100,
                "10.0.0.1",
            ));
        }
        d.observe(&get(
            "job",
            T0 + 20 * MS_PER_DAY + 3 * MS_PER_HOUR + 1,
            "ckpt",
            "llm/run-1/a",
            GB / 100,
            "10.0.0.1",
        ));
        assert!(signals(&d, "job").is_empty());
    }

    #[test]
    fn off_hours_needs_no_byte_count() {
        // GCP logs no bytes: a sensitive read at an odd hour still counts.
        let mut d = det();
        let t = history(&mut d, "gcp-user");
        d.observe(&get(
            "gcp-user",
            t + 3 * MS_PER_HOUR,
            "ckpt",
            "llm/run-1/a",
            0,
            "198.51.100.7",
        ));
        assert_eq!(signals(&d, "gcp-user"), vec![Signal::OffHours]);
        // A listing at that hour reads nothing.
        let mut d = det();
        let t = history(&mut d, "gcp-user");
        let mut l = get(
            "gcp-user",
            t + 3 * MS_PER_HOUR,
            "ckpt",
            "llm/",
            0,
            "198.51.100.7",
        );
        l.action = Action::List;
        d.observe(&l);
        assert!(signals(&d, "gcp-user").is_empty());
    }

    #[test]
    fn enumeration_is_listing_far_beyond_the_principals_busiest_hour() {
        let mut d = det();
        let t = history(&mut d, "ci") + 10 * MS_PER_HOUR;
        for i in 0..40 {
            let mut l = get(
                "ci",
                t + i * 1000,
                "data",
                &format!("web/{i}/"),
                0,
                "198.51.100.7",
            );
            l.action = Action::List;
            l.event_name = "ListObjects".into();
            d.observe(&l);
        }
        for i in 0..25 {
            d.observe(&get(
                "ci",
                t + 60_000 + i * 1000,
                "data",
                &format!("web/{i}/x"),
                1,
                "198.51.100.7",
            ));
        }
        assert!(signals(&d, "ci").contains(&Signal::Enumeration));
        // The same listing from a principal that always lists that much.
        let mut d = det();
        for day in 0..10 {
            let t = T0 + day * MS_PER_DAY;
            for i in 0..40 {
                let mut l = get("team", t + i * 1000, "data", "web/", 0, "198.51.100.7");
                l.action = Action::List;
                l.event_name = "ListObjects".into();
                d.observe(&l);
            }
            for i in 0..25 {
                d.observe(&get(
                    "team",
                    t + 60_000 + i * 1000,
                    "data",
                    "web/x",
                    1,
                    "198.51.100.7",
                ));
            }
        }
        // (Its first day, with no busiest hour yet, is judged as new.)
        let first_day_only = d.report().principals[0]
            .alerts
            .iter()
            .filter(|a| a.signal == Signal::Enumeration)
            .all(|a| a.ts < T0 + MS_PER_DAY);
        assert!(first_day_only);
    }

    #[test]
    fn volume_spike_weighs_more_outside_than_inside() {
        for (ip, weight) in [("198.51.100.7", 0.4), ("73.1.2.3", 0.9)] {
            let mut d = det();
            let t = history(&mut d, "gus") + 10 * MS_PER_HOUR;
            for i in 0..40 {
                d.observe(&get("gus", t + i * 60_000, "ckpt", "llm/run-1/a", GB, ip));
            }
            let r = d.report();
            let a = r.principals[0]
                .alerts
                .iter()
                .find(|a| a.signal == Signal::VolumeSpike)
                .unwrap_or_else(|| panic!("no spike from {ip}"));
            assert_eq!(a.weight, weight);
        }
        // Twice the usual day is no spike.
        let mut d = det();
        let t = history(&mut d, "gus") + 10 * MS_PER_HOUR;
        for i in 0..16 {
            d.observe(&get(
                "gus",
                t + i * 60_000,
                "ckpt",
                "llm/run-1/a",
                GB / 4,
                "198.51.100.7",
            ));
        }
        assert!(!signals(&d, "gus").contains(&Signal::VolumeSpike));
    }

    #[test]
    fn slow_drip_sums_weeks_of_modest_days() {
        let mut d = det();
        let mut t = history(&mut d, "hal");
        let mut fired = false;
        for day in 0..20 {
            for k in 0..8 {
                d.observe(&get(
                    "hal",
                    t + (9 + k) * MS_PER_HOUR,
                    "ckpt",
                    "llm/run-1/a",
                    GB,
                    "198.51.100.7",
                ));
            }
            t += MS_PER_DAY;
            fired |= signals(&d, "hal").contains(&Signal::SlowDrip);
            if day < 2 {
                assert!(!fired, "two days are not a drip");
            }
        }
        assert!(fired);
    }

    #[test]
    fn departure_needs_the_hr_date_and_an_outsized_day() {
        for (who, expect) in [("leaver", true), ("stayer", false)] {
            let mut d = det();
            // 2026-02-02 onwards: within 30 days of the leaver's date.
            let t = history(&mut d, who) + 10 * MS_PER_HOUR;
            for i in 0..40 {
                d.observe(&get(
                    who,
                    t + i * 60_000,
                    "ckpt",
                    "llm/run-1/a",
                    GB / 2,
                    "198.51.100.7",
                ));
            }
            assert_eq!(
                signals(&d, who).contains(&Signal::Departure),
                expect,
                "{who}"
            );
        }
    }

    #[test]
    fn a_refused_call_moves_nothing_and_the_score_window_is_a_day() {
        let mut d = det();
        let t = history(&mut d, "ivy");
        let mut a = get(
            "ivy",
            t + 10 * MS_PER_HOUR,
            "ckpt",
            "llm/run-1/a",
            50 * GB,
            "73.1.2.3",
        );
        a.error = "AccessDenied".into();
        d.observe(&a);
        assert!(signals(&d, "ivy").is_empty());
        assert_eq!(d.stats().errors, 1);
        // 0.5 today and 0.3 two days later do not add up.
        d.observe(&get(
            "ivy",
            t + 10 * MS_PER_HOUR,
            "ckpt",
            "llm/run-1/a",
            GB / 4,
            "73.1.2.3",
        ));
        d.observe(&get(
            "ivy",
            t + 2 * MS_PER_DAY + 3 * MS_PER_HOUR,
            "ckpt",
            "llm/run-1/a",
            GB / 4,
            "198.51.100.7",
        ));
        assert_eq!(
            signals(&d, "ivy"),
            vec![Signal::NewNetwork, Signal::OffHours]
        );
        assert!(!flagged(&d, "ivy"));
    }

    #[test]
    fn a_principal_with_every_alert_it_can_keep_stays_under_4_kib() {
        let mut d = det();
        let mut t = history(
            &mut d,
            "arn:aws:iam::111122223333:user/a-rather-long-user-name",
        );
        let p = "arn:aws:iam::111122223333:user/a-rather-long-user-name";
        // A fortnight of daily alerts from ever new Tor exits, with long
        // user agents, enumeration and copies out: every cap is reached.
        for day in 0..14 {
            for i in 0..30 {
                let mut a = get(
                    p,
                    t + 3 * MS_PER_HOUR + i * 1000,
                    "data",
                    &format!("web/{day}/{i}"),
                    GB,
                    &format!("203.0.113.{}", (day * 30 + i) % 250),
                );
                a.user_agent = format!(
                    "Boto3/1.34.{day} md/Botocore#1.34.131 ua/2.0 os/linux#6.8.0 md/arch#x86_64 lang/python#3.12.3 {i}"
                );
                a.credential = format!("AKIAEXAMPLEKEY{day:06}");
                d.observe(&a);
            }
            t += MS_PER_DAY;
        }
        let (_, max) = d.state_bytes();
        assert!(max <= 4096, "{max}");
        let r = d.report();
        assert!(r.principals[0].alerts_total as usize > ALERTS_TO_FLAG + ALERTS_AFTER);
    }

    #[test]
    fn the_hasher_is_stable() {
        assert_eq!(
            hash_of("arn:aws:iam::1:user/a"),
            hash_of("arn:aws:iam::1:user/a")
        );
        assert_ne!(hash_of("a"), hash_of("b"));
    }
}
