/*!
Developers' micro-benchmarks (BENCHMARKS.md), kept out of the user's
binary:

```text
cargo run --release -p distillguard --example bench -- sketches --events LOG
cargo run --release -p distillguard --example bench -- accounts --accounts 1000000
cargo run --release -p distillguard --example bench -- link --accounts 1000000
cargo run --release -p distillguard --example bench -- watermark
```
*/

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use distillguard_core::{RecordReader, TruthRecord};
use distillguard_simulator::Corpus;

#[derive(Copy, Clone, PartialEq, Eq, ValueEnum)]
enum BenchTarget {
    /// Template masking, MinHash and LSH bands.
    Sketches,
    /// Campaign linking over `--accounts` synthetic accounts.
    Link,
    /// Watermark detection speed (tokens per second on one core).
    Watermark,
    /// Detector state per account, measured at `--accounts` accounts.
    Accounts,
}

/// Measure the sketches (fingerprint speed on real prompts, and how
/// template bands are shared across accounts in a labelled log), linking,
/// detector state per account, or watermark detection.
#[derive(Parser)]
#[command(name = "bench")]
struct Args {
    /// What to measure.
    #[arg(value_enum)]
    target: BenchTarget,
    /// Prompts to fingerprint (default: auto, as for simulate).
    #[arg(long, default_value = "auto")]
    corpus: String,
    /// A labelled event log (with truth.jsonl beside it) to measure band sharing on.
    #[arg(long)]
    events: Option<PathBuf>,
    /// Accounts a band must be seen in to count as "shared".
    #[arg(long, default_value_t = 5)]
    min_accounts: usize,
    /// Also print the openings of the most shared honest prompts (raw
    /// prompt text: off by default, for simulated data).
    #[arg(long)]
    show_examples: bool,
    /// `accounts` target: how many accounts to hold.
    #[arg(long, default_value_t = 1_000_000)]
    accounts: u32,
}

fn main() -> ExitCode {
    let a = Args::parse();
    let r = match a.target {
        BenchTarget::Sketches => sketches(
            &a.corpus,
            a.events,
            a.min_accounts,
            a.show_examples,
            &mut io::stdout().lock(),
        ),
        BenchTarget::Accounts => accounts(a.accounts),
        BenchTarget::Link => link(a.accounts),
        BenchTarget::Watermark => watermark(),
    };
    r.unwrap_or_else(|e| {
        let _ = writeln!(io::stderr(), "error: {e:#}");
        ExitCode::FAILURE
    })
}

/// `path`'s sibling `name`, if it exists.
fn beside(path: &Path, name: &str) -> Option<PathBuf> {
    let p = path.parent().unwrap_or(Path::new(".")).join(name);
    p.exists().then_some(p)
}

fn sketches(
    corpus: &str,
    events: Option<PathBuf>,
    min_accounts: usize,
    show_examples: bool,
    out: &mut impl Write,
) -> Result<ExitCode> {
    use distillguard_sketches::Fingerprint;
    let corpus = Corpus::load(corpus)?;
    let prompts: Vec<&str> = corpus
        .conversations
        .iter()
        .flat_map(|c| c.turns.iter().filter(|t| t.user).map(|t| &*t.text))
        .collect();
    let bytes: usize = prompts.iter().map(|p| p.len()).sum();
    let mut scratch = Vec::new();
    let mut sink = 0u64;
    let rounds = 5;
    let start = std::time::Instant::now();
    for _ in 0..rounds {
        for p in &prompts {
            let f = Fingerprint::of(p, &mut scratch);
            sink ^= f.bands()[0];
        }
    }
    let secs = start.elapsed().as_secs_f64();
    writeln!(
        out,
        "fingerprint (mask + MinHash + bands): {} prompts ({:.1} MB) × {rounds} in {secs:.2}s: {:.0} prompts/s, {:.0} MB/s, {:.2} µs/prompt [{}; check {:x}]",
        prompts.len(),
        bytes as f64 / 1e6,
        (prompts.len() * rounds) as f64 / secs,
        (bytes * rounds) as f64 / secs / 1e6,
        secs * 1e6 / (prompts.len() * rounds) as f64,
        corpus.source,
        sink & 0xffff
    )?;
    let Some(events) = events else {
        return Ok(ExitCode::SUCCESS);
    };
    let truth_path = beside(&events, "truth.jsonl")
        .with_context(|| format!("no truth.jsonl beside {}", events.display()))?;
    let (truth, _) = RecordReader::<TruthRecord>::open(&truth_path)?.read_all(false)?;
    let label: std::collections::HashMap<String, (bool, Option<String>)> = truth
        .into_iter()
        .map(|t| {
            (
                t.account_id,
                (t.label == distillguard_core::Label::Attack, t.campaign),
            )
        })
        .collect();
    /// One request: account, LSH bands, exact-text hash, the text's start.
    struct Req {
        account: u32,
        bands: [u64; distillguard_sketches::fingerprint::BANDS],
        exact: u64,
        head: String,
    }
    let mut reqs: Vec<Req> = Vec::new();
    let mut accounts: Vec<String> = Vec::new();
    let mut ids: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    distillguard_core::parallel::par_read(
        &events,
        workers,
        |line| {
            let e = distillguard_core::parse_event_line(line)?;
            let text = &e.request.last_user_text;
            let f = Fingerprint::of(text, &mut Vec::new());
            let informative = f.is_informative(6);
            let head: String = text.chars().take(60).collect();
            let exact = distillguard_sketches::hash_bytes(text.as_bytes());
            Ok((e.account_id, informative.then(|| f.bands()), exact, head))
        },
        |item| {
            if let Ok((account, Some(bands), exact, head)) = item {
                let n = ids.len() as u32;
                let a = *ids.entry(account.clone()).or_insert_with(|| {
                    accounts.push(account);
                    n
                });
                reqs.push(Req {
                    account: a,
                    bands,
                    exact,
                    head,
                });
            }
            Ok(())
        },
    )?;
    let mut band_accounts: std::collections::HashMap<u64, std::collections::HashSet<u32>> =
        std::collections::HashMap::new();
    let mut exact_accounts: std::collections::HashMap<u64, std::collections::HashSet<u32>> =
        std::collections::HashMap::new();
    let mut per_account = vec![0u64; accounts.len()];
    for r in &reqs {
        per_account[r.account as usize] += 1;
        for b in r.bands.iter().chain(std::iter::once(&r.exact)) {
            let map = if b == &r.exact {
                &mut exact_accounts
            } else {
                &mut band_accounts
            };
            let set = map.entry(*b).or_default();
            if set.len() <= min_accounts {
                set.insert(r.account);
            }
        }
    }
    let wide = |m: &std::collections::HashMap<u64, std::collections::HashSet<u32>>, k: &u64| {
        m.get(k).is_some_and(|s| s.len() >= min_accounts)
    };
    // group → (requests, band shared, exact text shared)
    let mut by_group: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    let mut benign_examples: BTreeMap<&str, u64> = BTreeMap::new();
    for r in &reqs {
        let shared = r.bands.iter().any(|b| wide(&band_accounts, b));
        let exact = wide(&exact_accounts, &r.exact);
        let (attack, campaign) = label
            .get(&accounts[r.account as usize])
            .cloned()
            .unwrap_or((false, None));
        if exact && !attack && per_account[r.account as usize] <= 300 {
            *benign_examples.entry(r.head.as_str()).or_default() += 1;
        }
        let group = match (attack, per_account[r.account as usize] <= 300) {
            (true, _) => format!("attack: {}", campaign.unwrap_or_default()),
            (false, true) => "benign: light accounts".to_string(),
            (false, false) => "benign: heavy accounts".to_string(),
        };
        let e = by_group.entry(group).or_default();
        e.0 += 1;
        e.1 += shared as u64;
        e.2 += exact as u64;
    }
    writeln!(
        out,
        "requests (≥ 6 shingles) whose template band / exact text is used by ≥ {min_accounts} accounts ({}); light accounts: ≤ 300 requests:",
        events.display()
    )?;
    for (g, (n, shared, exact)) in by_group {
        let pct = |x: u64| 100.0 * x as f64 / n.max(1) as f64;
        writeln!(
            out,
            "  {g:<28} {n:>9} requests: band {:>6.2}%  exact {:>6.2}%",
            pct(shared),
            pct(exact)
        )?;
    }
    if show_examples {
        let mut ex: Vec<(&str, u64)> = benign_examples.into_iter().collect();
        ex.sort_by_key(|e| std::cmp::Reverse(e.1));
        writeln!(
            out,
            "most frequent exact-shared prompts of light benign accounts (first 60 characters):"
        )?;
        for (h, n) in ex.iter().take(8) {
            writeln!(out, "  {n:>7}  {h:?}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Resident memory of this process, from /proc (Linux), in bytes.
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Holds `n` accounts in the engine and reports the resident memory per
/// account. Each account sends three requests on three streams (API key,
/// client), so every account has its stream slots allocated: the worst case.
fn accounts(n: u32) -> Result<ExitCode> {
    use distillguard_detect::engine::{Engine, RequestSignals, Weights};
    use distillguard_detect::signals::request::capability::Capability;
    let weights = Weights::embedded();
    let before = rss_bytes().context("cannot read /proc/self/status")?;
    let mut engine = Engine::new(&weights, weights.thresholds, &[], Default::default());
    let start = std::time::Instant::now();
    const ROUNDS: u64 = 3;
    for round in 0..ROUNDS {
        for i in 0..n as u64 {
            let h = distillguard_sketches::mix64(i ^ round << 40);
            let p = RequestSignals {
                ts: distillguard_core::Timestamp(1_771_200_000_000 + (round * n as u64 + i) as i64),
                account_id: format!("acct_{:016x}", distillguard_sketches::mix64(i)),
                account_key: distillguard_sketches::mix64(i),
                model: 7,
                max_tokens: 1024,
                output_tokens: 700,
                elicit: if h % 7 == 0 { 1.0 } else { 0.02 },
                elicit_in_system: false,
                reasoning_param: h % 11 == 0,
                capability: Capability::ALL[(h % 9) as usize],
                logprobs: false,
                multi_sample: false,
                settings_key: Some(h % 5),
                single_shot: true,
                refers_back: false,
                template: Some([h, h.rotate_left(17)]),
                exact: h.rotate_left(31),
                system: 0,
                hosting_org: None,
                client_country: None,
                account: None,
                model_name: None,
                stream: round,
                stream_label: format!("key bench_{round} · bench-client/1.0"),
                key_id: Some(format!("bench_{round}")),
            };
            engine.process(&p);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let after = rss_bytes().context("cannot read /proc/self/status")?;
    let per = (after.saturating_sub(before)) as f64 / n as f64;
    writeln!(
        io::stdout().lock(),
        "{n} accounts, {} requests folded in {secs:.2}s ({:.0} requests/s on one thread); resident memory +{:.1} MB = {per:.0} bytes per account (engine state, id maps, count-min included)",
        ROUNDS * n as u64,
        (ROUNDS * n as u64) as f64 / secs,
        (after - before) as f64 / 1e6
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Links `n` synthetic accounts: 95% honest (behind 2,000 shared NATs,
/// webmail, varied prompts), 5% in campaigns of 50 accounts (shared cards,
/// exits, templates). Three requests each with seven keys; the suspicious
/// fifth of them at risk 0.9. Reports time per event and per account, and
/// how many campaigns came out.
fn link(n: u32) -> Result<ExitCode> {
    use distillguard_core::{AccountInfo, Timestamp};
    use distillguard_link::{Activity, Key, Kind, Label, Linker};
    use distillguard_sketches::mix64;
    let mut linker = Linker::new(distillguard_link::Config::default());
    let before = rss_bytes().context("cannot read /proc/self/status")?;
    let key = |kind: Kind, v: u64, label: Label| Key {
        kind,
        key: kind.key_of_hash(v),
        label,
    };
    let start = std::time::Instant::now();
    for i in 0..n {
        let camp = i % 20 == 0;
        let group = u64::from(i / 20 / 50);
        let info = AccountInfo {
            payment_fingerprint: Some(if camp {
                format!("pm_c{}", group * 7 + u64::from(i) % 7)
            } else {
                format!("pm_{i}")
            }),
            email_domain: Some(
                if camp {
                    "gmail.com"
                } else {
                    ["gmail.com", "outlook.com", "example.edu"][i as usize % 3]
                }
                .into(),
            ),
            ..Default::default()
        };
        linker.register(i, &info);
    }
    let setup = start.elapsed().as_secs_f64();
    let start = std::time::Instant::now();
    let mut events = 0u64;
    for round in 0..3u64 {
        for i in 0..n {
            let camp = i % 20 == 0;
            let group = u64::from(i / 20 / 50);
            let h = mix64(u64::from(i) ^ round << 40);
            let ip = if camp {
                mix64(group) % 1_000_000 * 16 + h % 16
            } else {
                u64::from(i % 2_000)
            };
            let tpl = if camp { mix64(group ^ 99) + h % 4 } else { h };
            let keys = [
                key(Kind::Ip, ip, Label::Hex(ip)),
                key(Kind::IpPrefix, ip >> 8, Label::Hex(ip >> 8)),
                key(Kind::Client, h % 50, Label::Text("sdk".into())),
                key(
                    Kind::SystemPrompt,
                    if camp { group } else { h % 1000 },
                    Label::Hex(0),
                ),
                key(Kind::Template, tpl, Label::Hex(tpl)),
                key(Kind::Synchrony, tpl ^ round, Label::Sync(tpl, round as i64)),
                key(Kind::EmailDomain, 1, Label::Hex(1)),
            ];
            let risk = if camp { 0.9 } else { 0.01 };
            linker.observe(
                i,
                None,
                &keys,
                Activity {
                    ts: Timestamp(1_771_200_000_000 + (round * u64::from(n) + u64::from(i)) as i64),
                    output_tokens: 500,
                    capability: 3,
                    risk,
                    flagged: camp && i % 3 == 0,
                },
            );
            events += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let campaigns = linker.campaign_roots().len();
    let after = rss_bytes().context("cannot read /proc/self/status")?;
    writeln!(
        io::stdout().lock(),
        "{n} accounts registered in {setup:.2}s; {events} requests linked in {secs:.2}s ({:.0} ns per request, {:.2} µs per account); {campaigns} campaigns (expected {}); resident memory +{:.0} MB",
        secs * 1e9 / events as f64,
        secs * 1e6 / f64::from(n.max(1)),
        (n as usize).div_ceil(20).div_ceil(50),
        (after.saturating_sub(before)) as f64 / 1e6
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Detection speed of each scheme on 10M pseudo-random tokens (a 50,257
/// vocabulary, like GPT-2's) in 50,000 texts of 200 tokens, one core, with
/// de-duplication and an exact p-value per text.
fn watermark() -> Result<ExitCode> {
    use distillguard_watermark::{Gumbel, Key, Kgw, Scheme, Seeding, Tournament, detect};
    let key = Key::from_parts(0x0123_4567_89ab_cdef, 0x0f1e_2d3c_4b5a_6978);
    let n = 10_000_000usize;
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let tokens: Vec<u32> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 50_257) as u32
        })
        .collect();
    let left = Seeding::LeftHash { h: 1 };
    let schemes = [
        (
            "kgw left-hash h=1",
            Scheme::Kgw(Kgw {
                key,
                gamma: 0.25,
                delta: 2.0,
                seeding: left,
            }),
        ),
        (
            "kgw min-hash h=4 self-salted",
            Scheme::Kgw(Kgw {
                key,
                gamma: 0.25,
                delta: 2.0,
                seeding: Seeding::MinHash {
                    h: 4,
                    self_salt: true,
                },
            }),
        ),
        ("gumbel h=1", Scheme::Gumbel(Gumbel { key, seeding: left })),
        (
            "tournament m=8 h=1",
            Scheme::Tournament(Tournament {
                key,
                layers: 8,
                seeding: left,
            }),
        ),
    ];
    let mut out = io::stdout().lock();
    for (name, s) in schemes {
        let start = std::time::Instant::now();
        let mut scored = 0usize;
        let mut below = 0usize;
        let texts = tokens.chunks(200);
        let count = texts.len();
        for text in texts {
            let score = detect(&s, text, 0);
            scored += score.tokens_scored;
            below += usize::from(score.p_value < 0.01);
        }
        let secs = start.elapsed().as_secs_f64();
        writeln!(
            out,
            "{name:<30} {n} tokens in {secs:.3}s = {:.1}M tokens/s; scored {scored}; {below} of {count} unmarked texts at p < 0.01",
            n as f64 / secs / 1e6,
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// Template bands separate campaign traffic from honest traffic: on a
    /// small simulated world, a campaign's templates recur across many of
    /// its accounts, honest prompts across few.
    #[test]
    fn template_bands_separate_campaign_traffic_from_honest_traffic() {
        let dir = std::env::temp_dir().join(format!("dg-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let corpus = Corpus::embedded().unwrap();
        let scenario = distillguard_simulator::Scenario::load("small").unwrap();
        distillguard_simulator::simulate(
            &scenario,
            13,
            &corpus,
            &dir,
            &distillguard_core::progress::NoProgress,
        )
        .unwrap();
        let mut out = Vec::new();
        sketches(
            "embedded",
            Some(dir.join("events.jsonl.gz")),
            8,
            false,
            &mut out,
        )
        .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("prompts/s"), "{text}");
        // The embedded sample has ~900 real user turns for ~3,000 human
        // requests, so honest prompts do recur across a few accounts here;
        // a template used by a campaign's 10–120 accounts recurs across
        // many more.
        let pct = |group: &str| -> f64 {
            let line = text
                .lines()
                .find(|l| l.trim_start().starts_with(group))
                .unwrap_or_else(|| panic!("{group}: {text}"));
            let band = line.split("band").nth(1).unwrap().trim_start();
            band.split('%').next().unwrap().trim().parse().unwrap()
        };
        let benign = pct("benign: light accounts");
        for c in ["agentic-multi", "coding-pivot", "low-and-slow"] {
            let p = pct(&format!("attack: {c}"));
            assert!(
                p > 60.0 && p > 3.0 * benign,
                "{c}: {p}% vs benign {benign}%\n{text}"
            );
        }
        assert!(benign < 25.0, "{text}");
    }
}
