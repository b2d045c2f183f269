/*!
The asset map: what is sensitive, and what is the organisation's own.

Read from TOML (`docs/exfiltration.md`), parsed then validated: unknown
keys are refused, CIDRs and dates are checked when the file is read, and
an asset's sensitivity is one of four named levels.

```toml
[org]
accounts = ["111122223333"]              # cloud accounts / projects of the organisation
buckets = ["acme-*"]                     # its buckets ("*" at the end: a name prefix)
networks = ["10.0.0.0/8", "198.51.100.0/24"]  # corporate egress and private ranges
vpc_endpoints = ["vpce-0a1b2c3d"]

[[asset]]
bucket = "acme-models"
prefix = "checkpoints/"                  # "" or absent: the whole bucket
kind = "checkpoints"
sensitivity = "critical"                 # low | medium | high | critical

[[network]]                              # what is known of other networks
cidr = "203.0.113.0/24"
kind = "vpn"                             # cloud | residential | vpn | tor | corporate

[[departure]]                            # an HR feed
principal = "arn:aws:iam::111122223333:user/bob"
date = "2026-03-14"

[[team]]                                 # a peer group: judged against each other
name = "research"
principals = ["arn:aws:iam::111122223333:user/research-*"]  # "*" matches any run of characters
```
*/

use std::net::IpAddr;

use distillguard_core::net::{Cidr, canonical};
use distillguard_core::time::{MS_PER_DAY, days_from_civil};
use serde::{Deserialize, Serialize};

/// How much an asset matters; ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sensitivity {
    Low,
    Medium,
    High,
    Critical,
}

impl Sensitivity {
    pub fn name(self) -> &'static str {
        match self {
            Sensitivity::Low => "low",
            Sensitivity::Medium => "medium",
            Sensitivity::High => "high",
            Sensitivity::Critical => "critical",
        }
    }
}

/// What an asset holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AssetKind {
    Weights,
    Checkpoints,
    TrainingData,
    EvalSets,
    ProductionLogs,
    Other,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Asset {
    pub bucket: String,
    #[serde(default)]
    pub prefix: String,
    pub kind: AssetKind,
    pub sensitivity: Sensitivity,
}

/// What is known of a network that is not the organisation's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetKind {
    Corporate,
    Cloud,
    Residential,
    Vpn,
    Tor,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    pub cidr: String,
    pub kind: NetKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Departure {
    pub principal: String,
    /// The last working day (`YYYY-MM-DD`).
    pub date: String,
}

/// A peer group: principals that do the same work (a role, a team), so
/// that each is judged against the others as well as its own history.
/// A principal takes the first team with a matching pattern.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Team {
    pub name: String,
    /// Principal patterns; `*` matches any run of characters.
    pub principals: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Org {
    #[serde(default)]
    pub accounts: Vec<String>,
    #[serde(default)]
    pub buckets: Vec<String>,
    #[serde(default)]
    pub networks: Vec<String>,
    #[serde(default)]
    pub vpc_endpoints: Vec<String>,
}

/// The asset map as written.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetFile {
    #[serde(default)]
    pub org: Org,
    #[serde(default, rename = "asset")]
    pub assets: Vec<Asset>,
    #[serde(default, rename = "network")]
    pub networks: Vec<Network>,
    #[serde(default, rename = "departure")]
    pub departures: Vec<Departure>,
    #[serde(default, rename = "team")]
    pub teams: Vec<Team>,
}

/// Why an asset map was refused.
#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    #[error("{0}")]
    Toml(String),
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
}

/// The prefix an address is judged by: its /24 (IPv4) or /48 (IPv6), with
/// its family.
pub fn net_prefix(ip: IpAddr) -> (bool, u128) {
    match canonical(ip) {
        IpAddr::V4(a) => (true, u128::from(u32::from(a) & 0xffff_ff00)),
        IpAddr::V6(a) => (false, u128::from(a) & !((1u128 << 80) - 1)),
    }
}

/// Where an access came from, as far as the organisation is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Place {
    /// Through one of the organisation's VPC endpoints.
    Vpc,
    /// A VPC endpoint that is not the organisation's.
    ForeignVpc,
    /// The organisation's networks (or a private range).
    Corporate,
    /// The cloud provider itself, on the principal's behalf
    /// (`s3.amazonaws.com`, `AWS Internal`).
    Service,
    Cloud,
    Residential,
    Vpn,
    Tor,
    /// A public address the map says nothing of.
    External,
}

impl Place {
    /// Whether data that reaches this place has left the organisation.
    pub fn outside(self) -> bool {
        !matches!(self, Place::Vpc | Place::Corporate | Place::Service)
    }

    pub fn name(self) -> &'static str {
        match self {
            Place::Vpc => "the organisation's VPC endpoint",
            Place::ForeignVpc => "a VPC endpoint outside the organisation",
            Place::Corporate => "a corporate network",
            Place::Service => "the cloud provider's service",
            Place::Cloud => "a cloud provider's address",
            Place::Residential => "a residential address",
            Place::Vpn => "a VPN exit",
            Place::Tor => "a Tor exit",
            Place::External => "an external address",
        }
    }
}

/// The asset map, validated and ready to look up.
#[derive(Debug, Clone, Default)]
pub struct AssetMap {
    /// Sorted by bucket, then longest prefix first.
    assets: Vec<Asset>,
    org_accounts: Vec<String>,
    org_buckets: Vec<String>,
    org_networks: Vec<Cidr>,
    vpc_endpoints: Vec<String>,
    networks: Vec<(Cidr, NetKind)>,
    /// Principal → last day's start in ms.
    departures: std::collections::HashMap<String, i64>,
    /// Team names and their principal patterns, in file order.
    teams: Vec<Team>,
    /// Principal → team index, from an HR feed (ahead of the patterns).
    members: std::collections::HashMap<String, u32>,
}

const PRIVATE: [&str; 5] = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "fc00::/7",
    "127.0.0.0/8",
];

impl AssetMap {
    pub fn from_toml(text: &str) -> Result<AssetMap, AssetError> {
        let file: AssetFile = toml::from_str(text).map_err(|e| AssetError::Toml(e.to_string()))?;
        AssetMap::new(file)
    }

    pub fn new(file: AssetFile) -> Result<AssetMap, AssetError> {
        let bad = |field: String, reason: String| AssetError::Invalid { field, reason };
        let mut org_networks = Vec::new();
        for (i, n) in file.org.networks.iter().enumerate() {
            org_networks.push(
                n.parse::<Cidr>()
                    .map_err(|r| bad(format!("org.networks[{i}]"), r.0))?,
            );
        }
        for n in PRIVATE {
            org_networks.push(n.parse::<Cidr>().map_err(|r| bad("built-in".into(), r.0))?);
        }
        let mut networks = Vec::new();
        for (i, n) in file.networks.iter().enumerate() {
            let c = n
                .cidr
                .parse::<Cidr>()
                .map_err(|r| bad(format!("network[{i}].cidr"), r.0))?;
            networks.push((c, n.kind));
        }
        for (i, a) in file.assets.iter().enumerate() {
            if a.bucket.is_empty() {
                return Err(bad(
                    format!("asset[{i}].bucket"),
                    "must not be empty".into(),
                ));
            }
        }
        let mut departures = std::collections::HashMap::new();
        for (i, d) in file.departures.iter().enumerate() {
            let day = parse_date(&d.date).ok_or_else(|| {
                bad(
                    format!("departure[{i}].date"),
                    format!("{:?} is not a YYYY-MM-DD date", d.date),
                )
            })?;
            departures.insert(d.principal.clone(), day);
        }
        for (i, t) in file.teams.iter().enumerate() {
            if t.name.trim().is_empty() {
                return Err(bad(format!("team[{i}].name"), "must not be empty".into()));
            }
            if let Some(j) = file.teams[..i].iter().position(|o| o.name == t.name) {
                return Err(bad(
                    format!("team[{i}].name"),
                    format!("{:?} is already team[{j}]", t.name),
                ));
            }
            if let Some(k) = t.principals.iter().position(|p| p.trim().is_empty()) {
                return Err(bad(
                    format!("team[{i}].principals[{k}]"),
                    "must not be empty".into(),
                ));
            }
        }
        let mut assets = file.assets;
        assets.sort_by(|a, b| {
            a.bucket
                .cmp(&b.bucket)
                .then(b.prefix.len().cmp(&a.prefix.len()))
        });
        Ok(AssetMap {
            assets,
            org_accounts: file.org.accounts,
            org_buckets: file.org.buckets,
            org_networks,
            vpc_endpoints: file.org.vpc_endpoints,
            networks,
            departures,
            teams: file.teams,
            members: std::collections::HashMap::new(),
        })
    }

    /// The most specific asset holding `bucket/object`.
    pub fn asset(&self, bucket: &str, object: &str) -> Option<&Asset> {
        let start = self.assets.partition_point(|a| a.bucket.as_str() < bucket);
        self.assets[start..]
            .iter()
            .take_while(|a| a.bucket == bucket)
            .find(|a| object.starts_with(&a.prefix))
    }

    /// Whether a bucket (and its owning account, when known) belongs to
    /// the organisation: a mapped asset's bucket, a name in `org.buckets`,
    /// or a bucket owned by one of `org.accounts`.
    pub fn org_bucket(&self, bucket: &str, owner: &str) -> bool {
        if !owner.is_empty() {
            return self.org_accounts.iter().any(|a| a == owner);
        }
        let start = self.assets.partition_point(|a| a.bucket.as_str() < bucket);
        if self.assets.get(start).is_some_and(|a| a.bucket == bucket) {
            return true;
        }
        self.org_buckets.iter().any(|b| match b.strip_suffix('*') {
            Some(p) => bucket.starts_with(p),
            None => b == bucket,
        })
    }

    /// Where an access came from.
    pub fn place(&self, source_ip: &str, vpc_endpoint: &str) -> Place {
        if !vpc_endpoint.is_empty() {
            return if self.vpc_endpoints.iter().any(|v| v == vpc_endpoint) {
                Place::Vpc
            } else {
                Place::ForeignVpc
            };
        }
        let Ok(ip) = source_ip.parse::<IpAddr>() else {
            // A service name (`s3.amazonaws.com`, `AWS Internal`) or nothing.
            return if source_ip.is_empty() {
                Place::External
            } else {
                Place::Service
            };
        };
        if self.org_networks.iter().any(|c| c.contains(ip)) {
            return Place::Corporate;
        }
        match self.networks.iter().find(|(c, _)| c.contains(ip)) {
            Some((_, NetKind::Corporate)) => Place::Corporate,
            Some((_, NetKind::Cloud)) => Place::Cloud,
            Some((_, NetKind::Residential)) => Place::Residential,
            Some((_, NetKind::Vpn)) => Place::Vpn,
            Some((_, NetKind::Tor)) => Place::Tor,
            None => Place::External,
        }
    }

    /// The principal's last working day (start, ms), from the HR feed.
    pub fn departure(&self, principal: &str) -> Option<i64> {
        self.departures.get(principal).copied()
    }

    /// Adds an HR feed's departures ([`crate::hr`]); a principal listed
    /// again takes the later entry's date. The dates were checked when the
    /// feed was read.
    pub fn add_departures(&mut self, departures: Vec<Departure>) {
        for d in departures {
            if let Some(day) = parse_date(&d.date) {
                self.departures.insert(d.principal, day);
            }
        }
    }

    /// The principal's team (an index into [`AssetMap::team_names`]): an
    /// HR feed's entry, else the first team with a matching pattern.
    pub fn team(&self, principal: &str) -> Option<u32> {
        if let Some(t) = self.members.get(principal) {
            return Some(*t);
        }
        self.teams
            .iter()
            .position(|t| t.principals.iter().any(|p| glob(p, principal)))
            .map(|i| i as u32)
    }

    /// The teams' names, in order.
    pub fn team_names(&self) -> impl Iterator<Item = &str> {
        self.teams.iter().map(|t| t.name.as_str())
    }

    /// Adds an HR feed's team memberships: a team the map does not name is
    /// added; a principal listed again takes the later entry's team.
    pub fn add_members(&mut self, members: Vec<(String, String)>) {
        for (principal, team) in members {
            let i = match self.teams.iter().position(|t| t.name == team) {
                Some(i) => i,
                None => {
                    self.teams.push(Team {
                        name: team,
                        principals: Vec::new(),
                    });
                    self.teams.len() - 1
                }
            };
            self.members.insert(principal, i as u32);
        }
    }

    /// How many principals have a departure date.
    pub fn departures(&self) -> usize {
        self.departures.len()
    }

    pub fn assets(&self) -> &[Asset] {
        &self.assets
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of
/// characters (none included) and everything else matches itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        // No `*`: the whole text.
        return rest.is_empty();
    };
    for m in middle {
        match rest.find(m) {
            Some(i) => rest = &rest[i + m.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

pub(crate) fn parse_date(s: &str) -> Option<i64> {
    let mut it = s.split('-');
    let y: i64 = it.next()?.parse().ok()?;
    let m: u32 = it.next()?.parse().ok()?;
    let d: u32 = it.next()?.parse().ok()?;
    if it.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    Some(days_from_civil(y, m, d) * MS_PER_DAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAP: &str = r#"
[org]
accounts = ["111122223333"]
buckets = ["acme-*"]
networks = ["198.51.100.0/24"]
vpc_endpoints = ["vpce-1"]

[[asset]]
bucket = "models"
kind = "weights"
sensitivity = "high"

[[asset]]
bucket = "models"
prefix = "release/"
kind = "weights"
sensitivity = "critical"

[[network]]
cidr = "203.0.113.0/24"
kind = "tor"

[[departure]]
principal = "bob"
date = "2026-03-14"

[[team]]
name = "research"
principals = ["arn:aws:iam::1:user/r-*", "carol"]

[[team]]
name = "jobs"
principals = ["arn:aws:iam::1:role/*-job", "arn:aws:iam::1:user/r-x"]
"#;

    #[test]
    fn the_most_specific_asset_wins() {
        let m = AssetMap::from_toml(MAP).unwrap();
        assert_eq!(
            m.asset("models", "release/v1.bin").unwrap().sensitivity,
            Sensitivity::Critical
        );
        assert_eq!(
            m.asset("models", "scratch/x").unwrap().sensitivity,
            Sensitivity::High
        );
        assert!(m.asset("other", "release/v1.bin").is_none());
    }

    #[test]
    fn places_and_org_buckets() {
        let m = AssetMap::from_toml(MAP).unwrap();
        assert_eq!(m.place("198.51.100.7", ""), Place::Corporate);
        assert_eq!(m.place("10.1.2.3", ""), Place::Corporate);
        assert_eq!(m.place("203.0.113.9", ""), Place::Tor);
        assert_eq!(m.place("8.8.8.8", ""), Place::External);
        assert_eq!(m.place("s3.amazonaws.com", ""), Place::Service);
        assert_eq!(m.place("8.8.8.8", "vpce-1"), Place::Vpc);
        assert_eq!(m.place("8.8.8.8", "vpce-9"), Place::ForeignVpc);
        assert_eq!(m.place("::ffff:198.51.100.7", ""), Place::Corporate);
        assert!(m.org_bucket("acme-backup", ""));
        assert!(m.org_bucket("models", ""));
        assert!(!m.org_bucket("bobs-bucket", ""));
        assert!(!m.org_bucket("acme-lookalike", "999999999999"));
        assert!(m.departure("bob").is_some());
        let p = |s: &str| net_prefix(s.parse().unwrap());
        assert_eq!(p("192.0.2.7"), p("::ffff:192.0.2.200"));
        assert_ne!(p("192.0.2.7"), p("192.0.3.7"));
        assert_eq!(p("2001:db8:1:2::1"), p("2001:db8:1:ffff::9"));
        assert_ne!(p("2001:db8:1::1"), p("2001:db8:2::1"));
    }

    #[test]
    fn globs_match_any_run_of_characters() {
        assert!(glob("a*", "a"));
        assert!(glob("a*", "abc"));
        assert!(glob("*c", "abc"));
        assert!(glob("a*c", "abc"));
        assert!(glob("a*b*c", "aXbYc"));
        assert!(glob("*", ""));
        assert!(glob("abc", "abc"));
        assert!(!glob("abc", "abcd"));
        assert!(!glob("a*c", "ab"));
        assert!(!glob("a*bc*c", "abc"));
        assert!(!glob("*x*", "abc"));
    }

    #[test]
    fn principals_take_the_first_matching_team_or_the_hr_feed() {
        let mut m = AssetMap::from_toml(MAP).unwrap();
        let names: Vec<&str> = m.team_names().collect();
        assert_eq!(names, ["research", "jobs"]);
        assert_eq!(m.team("arn:aws:iam::1:user/r-alice"), Some(0));
        assert_eq!(m.team("arn:aws:iam::1:user/r-x"), Some(0));
        assert_eq!(m.team("carol"), Some(0));
        assert_eq!(m.team("arn:aws:iam::1:role/eval-job"), Some(1));
        assert_eq!(m.team("arn:aws:iam::1:user/bob"), None);
        m.add_members(vec![
            ("arn:aws:iam::1:user/bob".into(), "data".into()),
            ("carol".into(), "jobs".into()),
        ]);
        assert_eq!(m.team("arn:aws:iam::1:user/bob"), Some(2));
        assert_eq!(m.team("carol"), Some(1));
        assert_eq!(m.team_names().nth(2), Some("data"));
    }

    #[test]
    fn bad_maps_name_their_field() {
        let e = AssetMap::from_toml("[org]\nnetworks = [\"10.0.0.0/33\"]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("org.networks[0]"), "{e}");
        let e = AssetMap::from_toml("[[departure]]\nprincipal = \"a\"\ndate = \"14/03/2026\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("departure[0].date"), "{e}");
        let e = AssetMap::from_toml(
            "[[asset]]\nbucket = \"b\"\nkind = \"weights\"\nsensitivity = \"extreme\"",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("extreme"), "{e}");
        assert!(AssetMap::from_toml("[org]\ncolour = 1").is_err());
        let e = AssetMap::from_toml(
            "[[team]]\nname = \"a\"\nprincipals = [\"x\"]\n[[team]]\nname = \"a\"\nprincipals = []",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("team[1].name"), "{e}");
        let e = AssetMap::from_toml("[[team]]\nname = \"a\"\nprincipals = [\"\"]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("team[0].principals[0]"), "{e}");
    }
}
