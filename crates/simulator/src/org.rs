/*!
A simulated organisation's cloud-storage audit log, with labelled
exfiltration incidents: the test world of `distillguard exfil`.

The organisation trains models on AWS. Its principals:

- **researchers** (IAM users): office hours in their own time zone, from
  the office or a home line, reading their projects' checkpoints, eval
  sets and training-data samples; now and then a new project, a trip
  (a hotel network, shifted hours), or a phone hotspot for a few minutes;
- **a data team** (IAM users): heavy readers and listers of training data;
- **training jobs** (assumed roles, a session a night): terabytes of
  training data through the VPC endpoint every night, checkpoints written;
- **evaluation jobs** (roles): checkpoints and eval sets after training;
- **CI** (roles): hourly smoke evaluations, a little listing;
- **backups** (a role): a weekly server-side copy into the backup bucket.

Hard negatives: a **new hire** ramping up mid-period; a **migration**
role created for a weekend copy of the training data into a new bucket;
an **end-of-quarter evaluation sweep** reading every checkpoint; an
**honest leaver** with a departure date and ordinary last weeks;
researchers **working from home** for one to three weeks at their usual
pace, and researchers in a **deadline push**, reading 2–3× their usual
day for one to two weeks from wherever they work.

Incidents (each drawn per seed in day, size and pace):
- `insider-copy`: a researcher copies checkpoints into a bucket of an
  outside account over two weeks, in office hours, from the office; or
  `insider-download` (half the seeds): downloads them over the home line
  it always uses, 3–12× its usual day;
- `stolen-key`: a researcher's access key used from a VPS, at night (or,
  a third of seeds, in office hours), with boto3 (or the owner's own
  tool), downloading checkpoints and weights while its owner works;
- `ci-token`: a CI role's credentials used from an outside address to
  enumerate the training-data prefix (or, half the seeds, going straight
  to the data), then download it;
- `departure`: a data-team member with a departure date downloads the
  data they worked on in a few big days before leaving.

Output: CloudTrail as delivered (`{"Records": [...]}` per line, a line per
five minutes), the asset map (`assets.toml`), and `truth.jsonl`: one line
per principal (`label` benign or incident) and, for incidents, the
timeline of bytes that left (`exfil`: `[ts_ms, bytes]` pairs).
*/

use std::collections::BTreeMap;
use std::fmt::Write as _;

use distillguard_core::Timestamp;
use distillguard_core::time::{MS_PER_DAY, MS_PER_HOUR, MS_PER_MINUTE, MS_PER_SECOND};
use serde::Serialize;
use serde_json::{Value, json};

use crate::rng::{Rng, label};

pub const ORG_ACCOUNT: &str = "111122223333";
pub const OUTSIDE_ACCOUNT: &str = "444455556666";
pub const VPCE: &str = "vpce-0a1b2c3d4e5f60718";
/// 2026-01-05, a Monday.
pub const START: i64 = 1_767_571_200_000;

const GB: f64 = 1_073_741_824.0;

/// Size and length of the simulated organisation.
#[derive(Debug, Clone, Copy)]
pub struct OrgSpec {
    pub seed: u64,
    pub days: u32,
    /// Multiplies the number of people and jobs.
    pub scale: f64,
}

/// One principal's truth.
#[derive(Debug, Clone, Serialize)]
pub struct OrgTruth {
    pub principal: String,
    /// `benign` or `incident`.
    pub label: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incident: Option<String>,
    /// What the principal is (researcher, training-job, …).
    pub role: String,
    /// Incident start (ms), and the bytes that left, in time order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exfil: Vec<(i64, u64)>,
}

/// The simulated organisation: records (time order), truth and asset map.
pub struct Org {
    pub records: Vec<(i64, Value)>,
    pub truth: Vec<OrgTruth>,
    pub assets_toml: String,
    /// The same departures as the asset map's, as an HR system exports
    /// them (CSV: employee, email, termination date).
    pub hr_csv: String,
}

#[derive(Clone)]
struct Who {
    arn: String,
    kind: &'static str,
    key: String,
    issuer: Option<String>,
}

struct Ctx {
    records: Vec<(i64, Value)>,
    start: i64,
    end: i64,
}

const CORP: &str = "198.51.100";
const BUCKET_CKPT: &str = "acme-checkpoints";
const BUCKET_WEIGHTS: &str = "acme-weights";
const BUCKET_DATA: &str = "acme-training-data";
const BUCKET_EVAL: &str = "acme-eval";
const BUCKET_BACKUP: &str = "acme-backup";
const DATA_PREFIXES: [&str; 6] = ["web", "code", "math", "books", "licensed", "synthetic"];
const UAS: [&str; 4] = [
    "aws-cli/2.15.30 Python/3.11.8 Linux/6.5.0 exe/x86_64.ubuntu.22",
    "aws-cli/2.17.2 Python/3.11.9 Darwin/23.5.0 exe/x86_64",
    "[S3Console/0.4]",
    "aws-sdk-go-v2/1.30.1 os/linux lang/go#1.22.4 md/GOOS#linux md/GOARCH#amd64",
];
const UA_BOTO: &str = "Boto3/1.34.131 md/Botocore#1.34.131 ua/2.0 os/linux#6.8.0 md/arch#x86_64 lang/python#3.12.3 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.131";
const UA_JOB: &str = "aws-sdk-java/2.25.60 Linux/5.10.219 OpenJDK_64-Bit_Server_VM/17.0.11 Java/17.0.11 vendor/Amazon.com_Inc. exec-env/AWS_ECS_EC2";

impl Ctx {
    #[expect(clippy::too_many_arguments)]
    fn push(
        &mut self,
        ts: i64,
        who: &Who,
        name: &str,
        bucket: &str,
        key: &str,
        bytes: u64,
        from: &From,
        ua: &str,
    ) {
        if ts < self.start || ts >= self.end {
            return;
        }
        let mut params =
            json!({"bucketName": bucket, "Host": format!("{bucket}.s3.us-east-1.amazonaws.com")});
        if name.starts_with("List") {
            params["prefix"] = json!(key);
            params["list-type"] = json!("2");
        } else if !key.is_empty() {
            params["key"] = json!(key);
        }
        self.emit(ts, who, name, params, bucket, bytes, from, ua, ORG_ACCOUNT);
    }

    #[expect(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        ts: i64,
        who: &Who,
        name: &str,
        params: Value,
        bucket: &str,
        bytes: u64,
        from: &From,
        ua: &str,
        owner: &str,
    ) {
        let mut identity = json!({
            "type": who.kind,
            "principalId": format!("AID{}", &who.key[4..]),
            "arn": who.arn,
            "accountId": ORG_ACCOUNT,
            "accessKeyId": who.key,
        });
        if let Some(issuer) = &who.issuer {
            identity["sessionContext"] = json!({
                "sessionIssuer": {"type": "Role", "arn": issuer, "accountId": ORG_ACCOUNT},
                "attributes": {"mfaAuthenticated": "false"}
            });
        }
        let n = self.records.len() as u64;
        let mut r = json!({
            "eventVersion": "1.10",
            "userIdentity": identity,
            "eventTime": Timestamp(ts - ts % 1000).to_string().replace(".000Z", "Z"),
            "eventSource": "s3.amazonaws.com",
            "eventName": name,
            "awsRegion": "us-east-1",
            "sourceIPAddress": from.ip,
            "userAgent": ua,
            "requestParameters": params,
            "responseElements": null,
            "additionalEventData": {
                "SignatureVersion": "SigV4",
                "CipherSuite": "TLS_AES_128_GCM_SHA256",
                "bytesTransferredIn": 0,
                "bytesTransferredOut": bytes,
                "AuthenticationMethod": "AuthHeader"
            },
            "requestID": format!("{:016X}", crate::rng::mix(&[n, ts as u64])),
            "eventID": format!("{:032x}", crate::rng::mix(&[ts as u64, n])),
            "readOnly": !matches!(name, "PutObject" | "CopyObject"),
            "resources": [
                {"type": "AWS::S3::Bucket", "ARN": format!("arn:aws:s3:::{bucket}"), "accountId": owner}
            ],
            "eventType": "AwsApiCall",
            "managementEvent": false,
            "recipientAccountId": ORG_ACCOUNT,
            "eventCategory": "Data"
        });
        if let Some(v) = &from.vpce {
            r["vpcEndpointId"] = json!(v);
            r["vpcEndpointAccountId"] = json!(ORG_ACCOUNT);
        }
        self.records.push((ts, r));
    }
}

/// Where a call came from.
#[derive(Clone)]
struct From {
    ip: String,
    vpce: Option<String>,
}

fn corp(rng: &mut Rng) -> From {
    From {
        ip: format!("{CORP}.{}", rng.range_u64(2, 250)),
        vpce: None,
    }
}

fn vpc(rng: &mut Rng) -> From {
    From {
        ip: format!("10.20.{}.{}", rng.below(16), rng.range_u64(2, 250)),
        vpce: Some(VPCE.into()),
    }
}

/// A public /24 of an ISP (not in the asset map: "external").
fn public_net(rng: &mut Rng) -> String {
    let first = *rng.pick(&[24u8, 67, 71, 73, 76, 98, 108, 174]);
    format!("{first}.{}.{}", rng.below(256), rng.below(256))
}

fn user(name: &str, rng: &mut Rng) -> Who {
    Who {
        arn: format!("arn:aws:iam::{ORG_ACCOUNT}:user/{name}"),
        kind: "IAMUser",
        key: format!("AKIA{}", rng.hex(16).to_uppercase()),
        issuer: None,
    }
}

fn role_session(role: &str, session: &str, rng: &mut Rng) -> Who {
    Who {
        arn: format!("arn:aws:sts::{ORG_ACCOUNT}:assumed-role/{role}/{session}"),
        kind: "AssumedRole",
        key: format!("ASIA{}", rng.hex(16).to_uppercase()),
        issuer: Some(format!("arn:aws:iam::{ORG_ACCOUNT}:role/{role}")),
    }
}

fn role_arn(role: &str) -> String {
    format!("arn:aws:iam::{ORG_ACCOUNT}:role/{role}")
}

fn day_start(spec_start: i64, d: u32) -> i64 {
    spec_start + i64::from(d) * MS_PER_DAY
}

fn weekday(d: u32) -> bool {
    d % 7 < 5
}

fn bytes(rng: &mut Rng, median_gb: f64, sigma: f64) -> u64 {
    (rng.lognormal(median_gb, sigma) * GB) as u64
}

struct Human {
    who: Who,
    /// Hours east of UTC.
    tz: i64,
    home: String,
    uas: Vec<&'static str>,
    projects: Vec<String>,
    /// Median sensitive GB a working day.
    daily_gb: f64,
    lists_per_day: u32,
    /// First and last working day (new hire, leaver).
    from_day: u32,
    to_day: u32,
    /// Days worked from home (a remote spell), and days of a deadline
    /// push with the volume it multiplies the day by.
    remote: std::ops::Range<u32>,
    push: std::ops::Range<u32>,
    push_scale: f64,
}

fn human(rng: &mut Rng, name: &str, daily_gb: f64, lists: u32) -> Human {
    let who = user(name, rng);
    let tz = *rng.pick(&[-8i64, -5, -5, 0, 1, 1]);
    let n_ua = 1 + rng.below(2) as usize;
    let uas = (0..n_ua).map(|_| *rng.pick(&UAS)).collect();
    let projects = (0..3)
        .map(|_| {
            format!(
                "{}/run-{}",
                rng.pick(&["llm", "code", "vision", "rl"]),
                rng.below(40)
            )
        })
        .collect();
    Human {
        who,
        tz,
        home: public_net(rng),
        uas,
        projects,
        daily_gb: daily_gb * rng.lognormal(1.0, 0.5),
        lists_per_day: lists,
        from_day: 0,
        to_day: u32::MAX,
        remote: 0..0,
        push: 0..0,
        push_scale: 1.0,
    }
}

/// One working day of a human: sessions in office hours, reads of their
/// projects' checkpoints, eval sets and data samples.
fn human_day(
    ctx: &mut Ctx,
    rng: &mut Rng,
    h: &mut Human,
    d: u32,
    scale_today: f64,
    data_team: bool,
) {
    let day0 = day_start(ctx.start, d);
    // A trip: a hotel network and shifted hours for a few days.
    let trip = rng.chance(0.004);
    let from_home = rng.chance(0.25) || h.remote.contains(&d);
    let net = if trip {
        From {
            ip: format!("{}.{}", public_net(rng), rng.range_u64(2, 250)),
            vpce: None,
        }
    } else if from_home {
        From {
            ip: format!("{}.{}", h.home, rng.range_u64(2, 250)),
            vpce: None,
        }
    } else {
        corp(rng)
    };
    let tz = if trip {
        h.tz + rng.range_u64(3, 9) as i64
    } else {
        h.tz
    };
    let push = if h.push.contains(&d) {
        h.push_scale
    } else {
        1.0
    };
    let mut target = bytes(rng, h.daily_gb, 0.8) as f64 * scale_today * push;
    let mut t = day0 + (9 - tz) * MS_PER_HOUR + rng.below(90 * 60) as i64 * MS_PER_SECOND;
    let end = t + (8 + rng.below(3) as i64) * MS_PER_HOUR;
    // Now and then a new project.
    if rng.chance(0.02) {
        let p = format!(
            "{}/run-{}",
            rng.pick(&["llm", "code", "vision", "rl"]),
            rng.below(60)
        );
        h.projects.push(p);
        if h.projects.len() > 5 {
            h.projects.remove(0);
        }
    }
    let hotspot_at = rng
        .chance(0.003)
        .then(|| t + rng.below(6 * 3600) as i64 * MS_PER_SECOND);
    let mut lists = h.lists_per_day;
    while t < end && (target > 0.0 || lists > 0) {
        let ua = *rng.pick(&h.uas);
        let mut from = net.clone();
        if let Some(at) = hotspot_at
            && t >= at
            && t < at + 15 * MS_PER_MINUTE
        {
            from = From {
                ip: format!("{}.{}", public_net(rng), rng.range_u64(2, 250)),
                vpce: None,
            };
        }
        let p = rng.pick(&h.projects).clone();
        if lists > 0 && rng.chance(0.5) {
            let (b, pre) = if data_team {
                (BUCKET_DATA, format!("{}/", rng.pick(&DATA_PREFIXES)))
            } else {
                (BUCKET_CKPT, format!("{p}/"))
            };
            ctx.push(t, &h.who, "ListObjects", b, &pre, 0, &from, ua);
            lists -= 1;
        } else if target > 0.0 {
            let (b, key, size) = match rng.below(10) {
                0..=4 if !data_team => (
                    BUCKET_CKPT,
                    format!(
                        "{p}/step-{}/shard-{}.safetensors",
                        rng.below(200) * 500,
                        rng.below(8)
                    ),
                    bytes(rng, 2.0, 0.6),
                ),
                5..=6 => (
                    BUCKET_EVAL,
                    format!(
                        "{}/{}.jsonl",
                        rng.pick(&["mmlu", "gsm8k", "humaneval", "internal"]),
                        rng.below(50)
                    ),
                    bytes(rng, 0.05, 1.0),
                ),
                _ => (
                    BUCKET_DATA,
                    format!(
                        "{}/shard-{:05}.parquet",
                        rng.pick(&DATA_PREFIXES),
                        rng.below(20_000)
                    ),
                    bytes(rng, if data_team { 2.0 } else { 0.3 }, 0.7),
                ),
            };
            ctx.push(t, &h.who, "GetObject", b, &key, size, &from, ua);
            target -= size as f64;
        }
        t += (rng.exp(120.0) * MS_PER_SECOND as f64) as i64 + MS_PER_SECOND;
    }
}

/// An incident's kind, first exfiltration (ms) and timeline of bytes out.
type Incident = (String, i64, Vec<(i64, u64)>);

/// Builds the organisation and its incidents.
pub fn generate(spec: OrgSpec) -> Org {
    let mut rng = Rng::derive(&[spec.seed, label("org")]);
    let start = START;
    let end = start + i64::from(spec.days) * MS_PER_DAY;
    let mut ctx = Ctx {
        records: Vec::new(),
        start,
        end,
    };
    let mut truth: Vec<OrgTruth> = Vec::new();
    let n = |base: f64, rng: &mut Rng| {
        ((base * spec.scale * rng.range_f64(0.7, 1.3)).round() as usize).max(1)
    };
    let days = spec.days;

    // People.
    let n_res = n(40.0, &mut rng);
    let n_data = n(10.0, &mut rng);
    let mut researchers: Vec<Human> = (0..n_res)
        .map(|i| human(&mut rng, &format!("researcher-{i:03}"), 4.0, 6))
        .collect();
    let mut data_team: Vec<Human> = (0..n_data)
        .map(|i| human(&mut rng, &format!("data-{i:03}"), 40.0, 40))
        .collect();
    // A new hire (hard negative), joining a third of the way in.
    let mut hire = human(&mut rng, "new-hire", 4.0, 6);
    hire.from_day = days / 3;
    // An honest leaver (hard negative) and the dishonest one (incident).
    let leave_day = days.saturating_sub(5 + rng.below(5) as u32).max(10);
    let mut honest_leaver = human(&mut rng, "leaver-honest", 4.0, 6);
    honest_leaver.to_day = leave_day;
    let thief_idx = rng.index(n_data);
    data_team[thief_idx].to_day = leave_day;
    let mut departures = vec![
        (honest_leaver.who.arn.clone(), leave_day),
        (data_team[thief_idx].who.arn.clone(), leave_day),
    ];

    // Incident parameters.
    let insider = rng.index(n_res);
    let mut stolen = rng.index(n_res);
    if stolen == insider {
        stolen = (stolen + 1) % n_res;
    }
    let insider_from = (days / 2).saturating_sub(rng.below(10) as u32).max(14);
    let stolen_day = (days * 2 / 3 + rng.below(8) as u32).min(days - 2);
    let ci_day = (days / 2 + rng.below(12) as u32).min(days - 2);
    let sweep_day = (days * 3 / 4).min(days - 3);

    // Hard negatives among the other researchers (their own stream of
    // draws, so the rest of the world is unchanged): remote spells and
    // deadline pushes, after the learning weeks.
    let mut spell = Rng::derive(&[spec.seed, label("spells")]);
    let mut spell_role: BTreeMap<String, &'static str> = BTreeMap::new();
    let n_spells = ((n_res as f64 / 8.0).round() as usize).max(1);
    for k in 0..2 * n_spells {
        let i = spell.index(n_res);
        let h = &mut researchers[i];
        if i == insider || i == stolen || spell_role.contains_key(&h.who.arn) {
            continue;
        }
        let from = spell.range_u64(21, u64::from(days.saturating_sub(7).max(22))) as u32;
        if k % 2 == 0 {
            h.remote = from..from + spell.range_u64(7, 21) as u32;
            spell_role.insert(h.who.arn.clone(), "researcher-remote");
        } else {
            h.push = from..from + spell.range_u64(7, 14) as u32;
            h.push_scale = spell.range_f64(2.0, 3.0);
            spell_role.insert(h.who.arn.clone(), "researcher-deadline");
        }
    }

    let mut exfil: BTreeMap<String, Incident> = BTreeMap::new();

    for d in 0..days {
        let work = weekday(d);
        for (i, h) in researchers.iter_mut().enumerate() {
            if work && rng.chance(0.9) {
                let mut r = Rng::derive(&[spec.seed, label("res"), i as u64, u64::from(d)]);
                human_day(&mut ctx, &mut r, h, d, 1.0, false);
            }
        }
        for (i, h) in data_team.iter_mut().enumerate() {
            if d > h.to_day {
                continue;
            }
            if work && rng.chance(0.9) {
                let mut r = Rng::derive(&[spec.seed, label("data"), i as u64, u64::from(d)]);
                human_day(&mut ctx, &mut r, h, d, 1.0, true);
            }
        }
        if work && d >= hire.from_day {
            // Ramping up: a tenth of a full day at first, full after three weeks.
            let ramp = ((d - hire.from_day) as f64 / 15.0).clamp(0.1, 1.0);
            let mut r = Rng::derive(&[spec.seed, label("hire"), u64::from(d)]);
            human_day(&mut ctx, &mut r, &mut hire, d, ramp, false);
        }
        if work && d <= honest_leaver.to_day && rng.chance(0.9) {
            let mut r = Rng::derive(&[spec.seed, label("leaver"), u64::from(d)]);
            human_day(&mut ctx, &mut r, &mut honest_leaver, d, 1.0, false);
        }
    }

    // Training jobs: every night, terabytes through the VPC endpoint.
    let n_train = n(8.0, &mut rng);
    for j in 0..n_train {
        let role = format!("train-{j:02}");
        let hour = rng.range_u64(0, 6) as i64;
        let prefix = *rng.pick(&DATA_PREFIXES);
        let tb = rng.range_f64(0.5, 2.0);
        let proj = format!("llm/run-{}", rng.below(40));
        for d in 0..days {
            let mut r = Rng::derive(&[spec.seed, label("train"), j as u64, u64::from(d)]);
            let who = role_session(&role, &format!("job-{d}-{}", r.hex(6)), &mut r);
            let mut t =
                day_start(start, d) + hour * MS_PER_HOUR + r.below(600) as i64 * MS_PER_SECOND;
            let mut left = tb * 1024.0 * GB * r.range_f64(0.8, 1.2);
            while left > 0.0 {
                let size = bytes(&mut r, 2.0, 0.2);
                let from = vpc(&mut r);
                let key = format!("{prefix}/shard-{:05}.parquet", r.below(20_000));
                ctx.push(t, &who, "GetObject", BUCKET_DATA, &key, size, &from, UA_JOB);
                left -= size as f64;
                t += r.range_u64(2, 12) as i64 * MS_PER_SECOND;
            }
            for s in 0..8 {
                let from = vpc(&mut r);
                let key = format!("{proj}/step-{}/shard-{s}.safetensors", d * 1000);
                ctx.push(t, &who, "PutObject", BUCKET_CKPT, &key, 0, &from, UA_JOB);
                t += MS_PER_SECOND;
            }
        }
        truth.push(benign(&role_arn(&role), "training-job"));
    }

    // Evaluation jobs: checkpoints and eval sets a few times a day; an
    // end-of-quarter sweep reads every project's checkpoints.
    let n_eval = n(4.0, &mut rng);
    for j in 0..n_eval {
        let role = format!("eval-{j:02}");
        for d in 0..days {
            let mut r = Rng::derive(&[spec.seed, label("eval"), j as u64, u64::from(d)]);
            let who = role_session(&role, &format!("eval-{d}"), &mut r);
            let sweep = d >= sweep_day && d < sweep_day + 2;
            let runs = if sweep { 40 } else { r.range_u64(1, 4) };
            for _ in 0..runs {
                let mut t = day_start(start, d) + r.below(86_400) as i64 * MS_PER_SECOND;
                let proj = format!(
                    "{}/run-{}",
                    r.pick(&["llm", "code", "vision", "rl"]),
                    if sweep { r.below(60) } else { r.below(8) }
                );
                for s in 0..4 {
                    let from = vpc(&mut r);
                    let key = format!("{proj}/step-{}/shard-{s}.safetensors", r.below(200) * 500);
                    ctx.push(
                        t,
                        &who,
                        "GetObject",
                        BUCKET_CKPT,
                        &key,
                        bytes(&mut r, 2.0, 0.3),
                        &from,
                        UA_JOB,
                    );
                    t += r.range_u64(5, 30) as i64 * MS_PER_SECOND;
                }
                for _ in 0..10 {
                    let from = vpc(&mut r);
                    let key = format!(
                        "{}/{}.jsonl",
                        r.pick(&["mmlu", "gsm8k", "humaneval", "internal"]),
                        r.below(50)
                    );
                    ctx.push(
                        t,
                        &who,
                        "GetObject",
                        BUCKET_EVAL,
                        &key,
                        bytes(&mut r, 0.05, 0.8),
                        &from,
                        UA_JOB,
                    );
                    t += r.range_u64(1, 5) as i64 * MS_PER_SECOND;
                }
            }
        }
        truth.push(benign(&role_arn(&role), "eval-job"));
    }

    // CI: hourly smoke evals through the VPC endpoint, some listing.
    let n_ci = n(3.0, &mut rng);
    let ci_hit = rng.index(n_ci);
    for j in 0..n_ci {
        let role = format!("ci-runner-{j:02}");
        for d in 0..days {
            let mut r = Rng::derive(&[spec.seed, label("ci"), j as u64, u64::from(d)]);
            let who = role_session(&role, &format!("gh-{d}"), &mut r);
            for hr in 0..24 {
                if !r.chance(if weekday(d) { 0.8 } else { 0.2 }) {
                    continue;
                }
                let mut t =
                    day_start(start, d) + hr * MS_PER_HOUR + r.below(3000) as i64 * MS_PER_SECOND;
                let from = vpc(&mut r);
                ctx.push(
                    t,
                    &who,
                    "ListObjects",
                    BUCKET_EVAL,
                    "smoke/",
                    0,
                    &from,
                    UA_BOTO,
                );
                for _ in 0..r.range_u64(2, 6) {
                    t += r.range_u64(1, 10) as i64 * MS_PER_SECOND;
                    let key = format!("smoke/{}.jsonl", r.below(20));
                    ctx.push(
                        t,
                        &who,
                        "GetObject",
                        BUCKET_EVAL,
                        &key,
                        bytes(&mut r, 0.01, 0.5),
                        &from,
                        UA_BOTO,
                    );
                }
            }
            // Incident: the token used from outside, enumerating training data.
            if j == ci_hit && d == ci_day {
                let thief = From {
                    ip: format!("{}.{}", public_net(&mut r), r.range_u64(2, 250)),
                    vpce: None,
                };
                let ua = "python-requests/2.31.0 aws-sigv4";
                let mut t = day_start(start, d) + r.range_u64(1, 22) as i64 * MS_PER_HOUR;
                let first = t;
                let mut timeline = Vec::new();
                // Half the thieves walk the tree first; the others know
                // where the data is.
                let lists = if r.chance(0.5) {
                    r.range_u64(60, 200)
                } else {
                    0
                };
                for i in 0..lists {
                    let pre = format!(
                        "{}/{:02}/",
                        DATA_PREFIXES[i as usize % DATA_PREFIXES.len()],
                        i / 6
                    );
                    ctx.push(t, &who, "ListObjects", BUCKET_DATA, &pre, 0, &thief, ua);
                    t += r.range_u64(1, 4) as i64 * MS_PER_SECOND;
                }
                for _ in 0..r.range_u64(150, 400) {
                    let size = bytes(&mut r, 1.0, 0.4);
                    let key = format!(
                        "{}/shard-{:05}.parquet",
                        r.pick(&DATA_PREFIXES),
                        r.below(20_000)
                    );
                    ctx.push(t, &who, "GetObject", BUCKET_DATA, &key, size, &thief, ua);
                    timeline.push((t - t % 1000, size));
                    t += r.range_u64(2, 9) as i64 * MS_PER_SECOND;
                }
                exfil.insert(
                    role_arn(&role),
                    ("ci-token".into(), first - first % 1000, timeline),
                );
            }
        }
    }

    // Backups: a weekly server-side copy into the backup bucket (inside).
    let backup = role_session("backup", "weekly", &mut rng);
    for d in (6..days).step_by(7) {
        let mut r = Rng::derive(&[spec.seed, label("backup"), u64::from(d)]);
        let mut t = day_start(start, d) + 2 * MS_PER_HOUR;
        for _ in 0..200 {
            let key = format!(
                "llm/run-{}/step-{}/shard-{}.safetensors",
                r.below(40),
                r.below(200) * 500,
                r.below(8)
            );
            let params = json!({"bucketName": BUCKET_BACKUP, "key": format!("daily/{key}"), "x-amz-copy-source": format!("{BUCKET_CKPT}/{key}")});
            let from = vpc(&mut r);
            ctx.emit(
                t,
                &backup,
                "CopyObject",
                params,
                BUCKET_BACKUP,
                0,
                &from,
                UA_JOB,
                ORG_ACCOUNT,
            );
            t += r.range_u64(2, 10) as i64 * MS_PER_SECOND;
        }
    }
    truth.push(benign(&role_arn("backup"), "backup"));

    // A migration (hard negative): a role made for one weekend copies the
    // training data into a new bucket, listing as it goes.
    let mig_day = ((days / 3) / 7 * 7 + 5).min(days - 2);
    let mig = role_session("data-migration", "weekend", &mut rng);
    let mut r = Rng::derive(&[spec.seed, label("migration")]);
    let mut t = day_start(start, mig_day) + 20 * MS_PER_HOUR;
    for i in 0..3000u64 {
        let prefix = DATA_PREFIXES[(i / 500) as usize % DATA_PREFIXES.len()];
        let from = vpc(&mut r);
        if i % 10 == 0 {
            ctx.push(
                t,
                &mig,
                "ListObjects",
                BUCKET_DATA,
                &format!("{prefix}/"),
                0,
                &from,
                UA_JOB,
            );
        }
        let key = format!("{prefix}/shard-{:05}.parquet", i);
        let params = json!({"bucketName": "acme-training-data-v2", "key": key, "x-amz-copy-source": format!("{BUCKET_DATA}/{key}")});
        ctx.emit(
            t,
            &mig,
            "CopyObject",
            params,
            "acme-training-data-v2",
            0,
            &from,
            UA_JOB,
            ORG_ACCOUNT,
        );
        t += r.range_u64(5, 40) as i64 * MS_PER_SECOND;
    }
    truth.push(benign(&role_arn("data-migration"), "migration"));

    // Incident: the insider takes checkpoints over two weeks, in office
    // hours: copied into an outside account's bucket, or (half the seeds)
    // downloaded over the home line it always uses, a few times its usual
    // day.
    {
        let h = &researchers[insider];
        let bucket = format!("personal-archive-{}", rng.hex(6));
        let by_copy = rng.chance(0.5);
        let pace = rng.range_f64(3.0, 12.0);
        let mut timeline = Vec::new();
        let mut first = None;
        for d in insider_from..(insider_from + 14).min(days) {
            if !weekday(d) {
                continue;
            }
            let mut r = Rng::derive(&[spec.seed, label("insider"), u64::from(d)]);
            let mut t = day_start(start, d)
                + (11 - h.tz) * MS_PER_HOUR
                + r.below(7200) as i64 * MS_PER_SECOND;
            if by_copy {
                for _ in 0..r.range_u64(3, 7) {
                    let p = r.pick(&h.projects).clone();
                    let key = format!(
                        "{p}/step-{}/shard-{}.safetensors",
                        r.below(200) * 500,
                        r.below(8)
                    );
                    let size = bytes(&mut r, 8.0, 0.5);
                    let params = json!({"bucketName": bucket, "key": format!("backup/{key}"), "x-amz-copy-source": format!("{BUCKET_CKPT}/{key}")});
                    let from = corp(&mut r);
                    ctx.emit(
                        t,
                        &h.who,
                        "CopyObject",
                        params,
                        &bucket,
                        0,
                        &from,
                        h.uas[0],
                        OUTSIDE_ACCOUNT,
                    );
                    first.get_or_insert(t - t % 1000);
                    timeline.push((t - t % 1000, size));
                    t += r.range_u64(60, 1800) as i64 * MS_PER_SECOND;
                }
            } else {
                let home = From {
                    ip: format!("{}.{}", h.home, r.range_u64(2, 250)),
                    vpce: None,
                };
                let mut left = h.daily_gb * pace * GB;
                while left > 0.0 {
                    let p = r.pick(&h.projects).clone();
                    let key = format!(
                        "{p}/step-{}/shard-{}.safetensors",
                        r.below(200) * 500,
                        r.below(8)
                    );
                    let size = bytes(&mut r, 2.0, 0.5);
                    ctx.push(
                        t,
                        &h.who,
                        "GetObject",
                        BUCKET_CKPT,
                        &key,
                        size,
                        &home,
                        h.uas[0],
                    );
                    first.get_or_insert(t - t % 1000);
                    timeline.push((t - t % 1000, size));
                    left -= size as f64;
                    t += r.range_u64(30, 300) as i64 * MS_PER_SECOND;
                }
            }
        }
        let kind = if by_copy {
            "insider-copy"
        } else {
            "insider-download"
        };
        exfil.insert(
            h.who.arn.clone(),
            (kind.into(), first.unwrap_or(start), timeline),
        );
    }

    // Incident: a researcher's key used from a VPS at night.
    {
        let h = &researchers[stolen];
        let mut r = Rng::derive(&[spec.seed, label("stolen")]);
        let vps = format!("{}.{}", public_net(&mut r), r.range_u64(2, 250));
        let from = From {
            ip: vps,
            vpce: None,
        };
        // At night in the owner's time zone, or (a third of seeds) in its
        // office hours; with boto3, or (a third) the owner's own tool.
        let hour = if r.chance(0.67) { 1 } else { 14 };
        let ua = if r.chance(0.67) { UA_BOTO } else { h.uas[0] };
        let mut t = day_start(start, stolen_day) + (hour - h.tz).rem_euclid(24) * MS_PER_HOUR;
        let first = t;
        let mut timeline = Vec::new();
        for i in 0..r.range_u64(40, 120) {
            let (b, key, size) = if i % 5 == 4 {
                (
                    BUCKET_WEIGHTS,
                    format!(
                        "release/atlas-{}/model-{:05}.safetensors",
                        r.below(4),
                        r.below(60)
                    ),
                    bytes(&mut r, 5.0, 0.3),
                )
            } else {
                let p = format!("llm/run-{}", r.below(40));
                (
                    BUCKET_CKPT,
                    format!(
                        "{p}/step-{}/shard-{}.safetensors",
                        r.below(200) * 500,
                        r.below(8)
                    ),
                    bytes(&mut r, 2.0, 0.5),
                )
            };
            ctx.emit(
                t,
                &h.who,
                "GetObject",
                json!({"bucketName": b, "key": key}),
                b,
                size,
                &from,
                ua,
                ORG_ACCOUNT,
            );
            timeline.push((t - t % 1000, size));
            t += r.range_u64(20, 200) as i64 * MS_PER_SECOND;
        }
        exfil.insert(
            h.who.arn.clone(),
            ("stolen-key".into(), first - first % 1000, timeline),
        );
    }

    // Incident: the leaver downloads their data in a few big days.
    {
        let h = &data_team[thief_idx];
        let mut timeline = Vec::new();
        let mut first = None;
        let from_d = leave_day.saturating_sub(6 + rng.below(6) as u32);
        for d in from_d..=leave_day {
            if !weekday(d) {
                continue;
            }
            let mut r = Rng::derive(&[spec.seed, label("departure"), u64::from(d)]);
            let mut t = day_start(start, d) + (10 - h.tz) * MS_PER_HOUR;
            let mut left = h.daily_gb * r.range_f64(8.0, 25.0) * GB;
            while left > 0.0 {
                let size = bytes(&mut r, 2.0, 0.5);
                let key = format!(
                    "{}/shard-{:05}.parquet",
                    r.pick(&DATA_PREFIXES),
                    r.below(20_000)
                );
                let from = corp(&mut r);
                ctx.push(
                    t,
                    &h.who,
                    "GetObject",
                    BUCKET_DATA,
                    &key,
                    size,
                    &from,
                    h.uas[0],
                );
                first.get_or_insert(t - t % 1000);
                timeline.push((t - t % 1000, size));
                left -= size as f64;
                t += r.range_u64(20, 90) as i64 * MS_PER_SECOND;
            }
        }
        exfil.insert(
            h.who.arn.clone(),
            ("departure".into(), first.unwrap_or(start), timeline),
        );
    }

    for h in researchers.iter().chain(data_team.iter()) {
        let role = if h.who.arn.contains("user/data-") {
            "data-team"
        } else {
            spell_role.get(&h.who.arn).copied().unwrap_or("researcher")
        };
        truth.push(benign(&h.who.arn, role));
    }
    for (i, _) in (0..n_ci).enumerate() {
        truth.push(benign(&role_arn(&format!("ci-runner-{i:02}")), "ci"));
    }
    truth.push(benign(&hire.who.arn, "new-hire"));
    truth.push(benign(&honest_leaver.who.arn, "leaver"));
    for t in &mut truth {
        if let Some((kind, first, timeline)) = exfil.remove(&t.principal) {
            t.label = "incident".into();
            t.incident = Some(kind);
            t.start = Some(first);
            t.exfil = timeline
                .into_iter()
                .filter(|(ts, _)| *ts >= start && *ts < end)
                .collect();
        }
    }
    truth.sort_by(|a, b| a.principal.cmp(&b.principal));
    ctx.records.sort_by_key(|(ts, _)| *ts);
    departures.sort();
    Org {
        records: ctx.records,
        truth,
        assets_toml: assets_toml(&departures),
        hr_csv: hr_csv(&departures),
    }
}

fn benign(principal: &str, role: &str) -> OrgTruth {
    OrgTruth {
        principal: principal.to_string(),
        label: "benign".into(),
        incident: None,
        role: role.into(),
        start: None,
        exfil: Vec::new(),
    }
}

fn hr_csv(departures: &[(String, u32)]) -> String {
    let mut s = String::from("employee,email,termination_date\n");
    for (i, (p, d)) in departures.iter().enumerate() {
        let date = Timestamp(day_start(START, *d)).to_string();
        let _ = writeln!(s, "\"Employee {}\",{p},{}", i + 1, &date[..10]);
    }
    s
}

fn assets_toml(departures: &[(String, u32)]) -> String {
    let mut s = format!(
        r#"# The simulated organisation's asset map (distillguard exfil simulate).
[org]
accounts = ["{ORG_ACCOUNT}"]
buckets = ["acme-*"]
networks = ["{CORP}.0/24"]
vpc_endpoints = ["{VPCE}"]

[[asset]]
bucket = "{BUCKET_CKPT}"
kind = "checkpoints"
sensitivity = "critical"

[[asset]]
bucket = "{BUCKET_WEIGHTS}"
kind = "weights"
sensitivity = "critical"

[[asset]]
bucket = "{BUCKET_DATA}"
kind = "training-data"
sensitivity = "high"

[[asset]]
bucket = "{BUCKET_DATA}"
prefix = "licensed/"
kind = "training-data"
sensitivity = "critical"

[[asset]]
bucket = "{BUCKET_EVAL}"
kind = "eval-sets"
sensitivity = "high"

[[asset]]
bucket = "{BUCKET_EVAL}"
prefix = "smoke/"
kind = "eval-sets"
sensitivity = "low"

[[asset]]
bucket = "{BUCKET_BACKUP}"
kind = "checkpoints"
sensitivity = "critical"

# Peer groups: each principal is judged against its team as well.
[[team]]
name = "research"
principals = ["arn:aws:iam::{ORG_ACCOUNT}:user/researcher-*", "arn:aws:iam::{ORG_ACCOUNT}:user/new-hire", "arn:aws:iam::{ORG_ACCOUNT}:user/leaver-*"]

[[team]]
name = "data"
principals = ["arn:aws:iam::{ORG_ACCOUNT}:user/data-*"]

[[team]]
name = "training"
principals = ["arn:aws:iam::{ORG_ACCOUNT}:role/train-*"]

[[team]]
name = "evaluation"
principals = ["arn:aws:iam::{ORG_ACCOUNT}:role/eval-*"]

[[team]]
name = "ci"
principals = ["arn:aws:iam::{ORG_ACCOUNT}:role/ci-runner-*"]
"#
    );
    for (p, d) in departures {
        let date = Timestamp(day_start(START, *d)).to_string();
        let _ = write!(
            s,
            "\n[[departure]]\nprincipal = \"{p}\"\ndate = \"{}\"\n",
            &date[..10]
        );
    }
    s
}

/// Groups records into CloudTrail delivery lines: one `{"Records": [...]}`
/// per five minutes (at most 1,000 records).
pub fn delivery_lines(records: &[(i64, Value)]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < records.len() {
        let window = records[i].0 / (5 * MS_PER_MINUTE);
        let mut j = i;
        while j < records.len() && j - i < 1000 && records[j].0 / (5 * MS_PER_MINUTE) == window {
            j += 1;
        }
        let batch: Vec<&Value> = records[i..j].iter().map(|(_, v)| v).collect();
        out.push(json!({ "Records": batch }).to_string());
        i = j;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_log_and_incidents_are_labelled() {
        let spec = OrgSpec {
            seed: 3,
            days: 30,
            scale: 0.2,
        };
        let a = generate(spec);
        let b = generate(spec);
        assert_eq!(delivery_lines(&a.records), delivery_lines(&b.records));
        let incidents: Vec<_> = a.truth.iter().filter_map(|t| t.incident.clone()).collect();
        for k in ["insider-", "stolen-key", "ci-token", "departure"] {
            assert!(
                incidents.iter().any(|i| i.starts_with(k)),
                "{k}: {incidents:?}"
            );
        }
        for t in a.truth.iter().filter(|t| t.label == "incident") {
            assert!(!t.exfil.is_empty(), "{}", t.principal);
        }
        assert!(a.records.windows(2).all(|w| w[0].0 <= w[1].0));
    }
}
