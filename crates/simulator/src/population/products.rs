/*!
Legitimate heavy API customers: the hard negatives.

- `support_bot`: one system prompt, thousands of customers' questions,
  office-hours curve, served from a few cloud addresses.
- `batch_job`: one template over documents every night at a fixed hour,
  close to a fixed rate, temperature 0.
- `eval_harness`: a fixed benchmark suite with step-by-step prompts, run
  within hours of every model release and on a schedule (a "pivot" that
  is not an attack); the same items every run.
- `coding_agent`: a product whose users run tool loops in quick succession.
- `multi_key_startup`: sibling accounts on one payment method, load
  balancing over several keys from one backend.
- `tutoring`: a learning platform with a key per school; its system prompt
  asks for every step, on every request, in school hours.
- `judge_pipeline`: LLM-as-judge runs over a product's answers, in bursts,
  at temperature 0, often asking to reason before scoring.
- `hackathon`: teams of brand-new accounts (often education or startup
  programmes, some unverified) running an app template from cloud VMs
  over a weekend.
*/

use distillguard_core::time::{MS_PER_DAY, MS_PER_HOUR, MS_PER_SECOND};
use distillguard_core::{AccountInfo, Label, Timestamp};

use super::Ctx;
use super::benign::chat_sessions;
use crate::content::products::BATCH_TEMPLATES;
use crate::network::{self, NetKind};
use crate::rng::{Rng, label};
use crate::scenario::ProductSpec;
use crate::schedule;
use crate::world::{HumanParams, IpPool, Kind, ModelHabit, Profile, SimAccount, Spec, Stream};

fn backend_ips(rng: &mut Rng, n: usize) -> IpPool {
    let net = *rng.pick(&network::networks_of(NetKind::Cloud));
    (0..n)
        .map(|_| (network::ip_in(rng, net), net as u16))
        .collect()
}

fn company_account(rng: &mut Rng, ctx: &Ctx, signup: &str, payment: Option<String>) -> AccountInfo {
    let age = rng.lognormal(500.0, 0.6).clamp(60.0, 3000.0);
    let cc = *rng.pick(&["US", "US", "GB", "DE", "FR", "JP", "IN", "CA"]);
    AccountInfo {
        created_at: Some(Timestamp(ctx.start - (age * MS_PER_DAY as f64) as i64)),
        tier: Some((*rng.pick(&["tier3", "tier4", "tier4", "enterprise"])).to_string()),
        signup_program: Some(signup.to_string()),
        payment_fingerprint: payment.or_else(|| Some(format!("pm_{}", rng.hex(16)))),
        email_domain: Some(network::company_domain(rng)),
        country: Some(cc.to_string()),
        verified: Some(true),
    }
}

fn stream(rng: &mut Rng, client: usize, ips: IpPool) -> Stream {
    Stream {
        key: format!("key_{}", rng.hex(12)),
        client: client as u16,
        anthropic: network::CLIENTS[client].anthropic,
        ips,
    }
}

/// Adds an honest customer account with a fresh opaque id.
fn add_customer(
    ctx: &mut Ctx,
    rng: &mut Rng,
    info: AccountInfo,
    streams: Vec<Stream>,
    profile: Profile,
) -> u32 {
    ctx.add_account(SimAccount {
        id: format!("acct_{}", rng.hex(16)),
        info,
        label: Label::Benign,
        campaign: None,
        streams,
        profile,
        harvest_streams: Vec::new(),
    })
}

/// Request parameters of product backends.
pub const PRODUCT_PARAMS: HumanParams = HumanParams {
    max_tokens: Some(1024),
    temperature: Some(0.3),
    stream: 0.9,
    step_by_step: 0.0,
    reasoning: 0.0,
    system: 0,
};

pub fn generate(ctx: &mut Ctx, index: usize, spec: &ProductSpec) {
    let seed = ctx.seed;
    for a in 0..spec.accounts {
        let mut rng = Rng::derive(&[seed, label("product"), index as u64, a as u64]);
        match spec.kind.as_str() {
            "support_bot" => support_bot(ctx, &mut rng, spec),
            "batch_job" => batch_job(ctx, &mut rng, spec),
            "eval_harness" => eval_harness(ctx, &mut rng, spec),
            "coding_agent" => coding_agent(ctx, &mut rng, spec),
            "tutoring" => tutoring(ctx, &mut rng, spec),
            "judge_pipeline" => judge_pipeline(ctx, &mut rng, spec),
            "hackathon" => hackathon(ctx, &mut rng, spec),
            _ => startup(ctx, &mut rng, spec),
        }
    }
}

fn support_bot(ctx: &mut Ctx, rng: &mut Rng, spec: &ProductSpec) {
    let info = company_account(rng, ctx, "standard", None);
    let anthropic = rng.chance(0.5);
    let client = network::script_client(rng, anthropic);
    let ips = backend_ips(rng, 3);
    let streams = (0..spec.keys)
        .map(|_| stream(rng, client, ips.clone()))
        .collect();
    let brand = rng.below(1000) as u16;
    let account = add_customer(ctx, rng, info, streams, Profile::Support { brand });
    let model = ModelHabit::draw(rng, &ctx.models, ctx.start, 10.0, 1.0);
    // Customers in a few time zones; each conversation is 1–4 turns.
    let sessions_per_day = spec.requests_per_day / 2.2;
    let mut starts = Vec::new();
    for offset in [-6.0, 0.0, 1.0] {
        starts.extend(schedule::human_sessions(
            rng,
            ctx.start,
            ctx.end,
            offset,
            sessions_per_day / 3.0,
            0.7,
            &schedule::OFFICE,
        ));
    }
    starts.sort_unstable();
    for s in starts {
        let turns = rng.geometric(2.2).min(4);
        let mut ts = s;
        let m = model.at(ts, rng);
        for t in 0..turns {
            ctx.push(Spec {
                ts,
                account,
                seq: 0,
                stream: rng.below(spec.keys as u64) as u8,
                ip: rng.below(3) as u16,
                model: m,
                kind: Kind::Support { turns: t as u8 + 1 },
            });
            ts += schedule::think_ms(rng, 25.0, 300);
        }
    }
}

fn batch_job(ctx: &mut Ctx, rng: &mut Rng, spec: &ProductSpec) {
    let info = company_account(rng, ctx, "standard", None);
    let offset = network::utc_offset_of(info.country.as_deref().unwrap_or("US"));
    let client = network::script_client(rng, false);
    let ips = backend_ips(rng, 1);
    let template = rng.below(BATCH_TEMPLATES) as u8;
    let streams = vec![stream(rng, client, ips)];
    let account = add_customer(ctx, rng, info, streams, Profile::Batch { template });
    let model = ModelHabit::draw(rng, &ctx.models, ctx.start, 30.0, 1.0).base;
    let mut day =
        (ctx.start + (offset * MS_PER_HOUR as f64) as i64).div_euclid(MS_PER_DAY) * MS_PER_DAY;
    while day < ctx.end {
        let run_start = day
            + ((spec.run_hour - offset) * MS_PER_HOUR as f64) as i64
            + rng.below(120_000) as i64;
        let n = rng.poisson(spec.requests_per_day);
        // Three requests a second, a little jitter from the queue.
        let times = schedule::steady(
            rng,
            n,
            run_start,
            run_start + (n as i64 * MS_PER_SECOND / 3).max(1),
            0.9,
        );
        let corpus_len = ctx.corpus.answers.len() as u64;
        for ts in times {
            ctx.push(Spec {
                ts,
                account,
                seq: 0,
                stream: 0,
                ip: 0,
                model,
                kind: Kind::Batch {
                    doc: rng.below(corpus_len) as u32,
                },
            });
        }
        day += MS_PER_DAY;
    }
}

fn eval_harness(ctx: &mut Ctx, rng: &mut Rng, spec: &ProductSpec) {
    let info = company_account(rng, ctx, "research", None);
    let anthropic = rng.chance(0.5);
    let client = network::script_client(rng, anthropic);
    let ips = backend_ips(rng, 2);
    let suite_seed = rng.next_u64();
    let streams = vec![stream(rng, client, ips)];
    let profile = Profile::Eval {
        suite_seed,
        samples: spec.samples.get(),
        cot: spec.elicit,
    };
    let account = add_customer(ctx, rng, info, streams, profile);
    // Runs: each in-scenario release (1–6 h after), plus scheduled runs.
    let mut runs: Vec<(i64, u8)> = Vec::new();
    for (i, m) in ctx.models.iter().enumerate() {
        if m.released > ctx.start && m.released < ctx.end {
            runs.push((
                m.released + rng.range_u64(1, 6) as i64 * MS_PER_HOUR,
                i as u8,
            ));
        }
    }
    let established: Vec<u8> = (0..ctx.models.len())
        .filter(|&i| ctx.models[i].released <= ctx.start)
        .map(|i| i as u8)
        .collect();
    let per_day = spec.requests_per_day / f64::from(spec.suite_items.get());
    let days = (ctx.end - ctx.start) as f64 / MS_PER_DAY as f64;
    for _ in 0..rng.poisson(per_day * days).max(1) {
        runs.push((
            ctx.start + rng.below((ctx.end - ctx.start) as u64) as i64,
            *rng.pick(&established),
        ));
    }
    for (start, model) in runs {
        let mut ts = start;
        for item in 0..spec.suite_items.get() {
            if ts >= ctx.end {
                break;
            }
            ctx.push(Spec {
                ts,
                account,
                seq: 0,
                stream: 0,
                ip: rng.below(2) as u16,
                model,
                kind: Kind::Eval { item },
            });
            // Four workers, a few seconds per answer.
            ts += (rng.lognormal(4.0, 0.4) * MS_PER_SECOND as f64 / 4.0) as i64;
        }
    }
}

fn coding_agent(ctx: &mut Ctx, rng: &mut Rng, spec: &ProductSpec) {
    let info = company_account(rng, ctx, "startup", None);
    let ips = backend_ips(rng, 4);
    let streams = (0..spec.keys)
        .map(|_| {
            let client = network::script_client(rng, true);
            stream(rng, client, ips.clone())
        })
        .collect();
    let account = add_customer(ctx, rng, info, streams, Profile::CodingAgent);
    let habit = ModelHabit::draw(rng, &ctx.models, ctx.start, 2.0, 0.8);
    let steps_mean = 6.0;
    let per_day = spec.requests_per_day / steps_mean;
    let mut starts = Vec::new();
    for offset in [-7.0, -5.0, 0.0, 1.0, 5.5, 8.0] {
        starts.extend(schedule::human_sessions(
            rng,
            ctx.start,
            ctx.end,
            offset,
            per_day / 6.0,
            0.4,
            &schedule::OFFICE,
        ));
    }
    starts.sort_unstable();
    let coding = ctx.corpus.coding.clone();
    for s in starts {
        let conv = *rng.pick(&coding);
        let steps = rng.geometric(steps_mean).min(30);
        let m = habit.at(s, rng);
        let mut ts = s;
        let key = rng.below(spec.keys as u64) as u8;
        for step in 0..steps {
            ctx.push(Spec {
                ts,
                account,
                seq: 0,
                stream: key,
                ip: rng.below(4) as u16,
                model: m,
                kind: Kind::Agent {
                    conv,
                    step: step as u8,
                },
            });
            ts += (rng.lognormal(6.0, 0.6) * MS_PER_SECOND as f64) as i64;
        }
    }
}

fn startup(ctx: &mut Ctx, rng: &mut Rng, spec: &ProductSpec) {
    let payment = format!("pm_{}", rng.hex(16));
    let ips = backend_ips(rng, 2);
    let client = network::script_client(rng, false);
    let brand = rng.below(1000) as u16;
    let domain = network::company_domain(rng);
    for _ in 0..spec.sibling_accounts {
        let mut info = company_account(rng, ctx, "startup", Some(payment.clone()));
        info.email_domain = Some(domain.clone());
        let streams = (0..spec.keys)
            .map(|_| stream(rng, client, ips.clone()))
            .collect();
        let account = add_customer(ctx, rng, info, streams, Profile::Startup { brand });
        let habit = ModelHabit::draw(rng, &ctx.models, ctx.start, 4.0, 0.5);
        let offset = network::utc_offset_of("US");
        let starts = schedule::human_sessions(
            rng,
            ctx.start,
            ctx.end,
            offset,
            spec.requests_per_day / 2.0,
            0.3,
            &schedule::OFFICE,
        );
        // Load balancing: each session lands on the next key.
        for (k, s) in starts.iter().enumerate() {
            let key = (k % spec.keys as usize) as u8;
            chat_sessions(
                ctx,
                rng,
                account,
                key,
                &[*s],
                2.0,
                30.0,
                0.02,
                0.7,
                2,
                &habit,
            );
        }
    }
}

fn tutoring(ctx: &mut Ctx, rng: &mut Rng, spec: &ProductSpec) {
    let info = company_account(rng, ctx, "standard", None);
    let anthropic = rng.chance(0.4);
    let client = network::script_client(rng, anthropic);
    let ips = backend_ips(rng, 3);
    let streams = (0..spec.keys)
        .map(|_| stream(rng, client, ips.clone()))
        .collect();
    let brand = rng.below(1000) as u16;
    let seed = rng.below(1 << 30) as u32;
    let account = add_customer(ctx, rng, info, streams, Profile::Tutoring { brand, seed });
    let model = ModelHabit::draw(rng, &ctx.models, ctx.start, 20.0, 1.0);
    // Schools in a few time zones; lessons and homework hours.
    let per_day = spec.requests_per_day / 2.5;
    let zones = [-5.0, -8.0, 0.0, 5.5, 1.0];
    let mut starts = Vec::new();
    for (z, offset) in zones.iter().enumerate().take(rng.range_u64(1, 5) as usize) {
        starts.extend(schedule::human_sessions(
            rng,
            ctx.start,
            ctx.end,
            *offset,
            per_day / (z as f64 + 1.0).max(1.0),
            0.25,
            &schedule::OFFICE,
        ));
    }
    starts.sort_unstable();
    let n_conv = ctx.corpus.conversations.len() as u64;
    for s in starts {
        let turns = rng.geometric(2.5).min(6);
        let key = rng.below(spec.keys as u64) as u8;
        let conv = rng.below(n_conv.max(1)) as u32;
        let math = rng.chance(0.35);
        let m = model.at(s, rng);
        let mut ts = s;
        for t in 0..turns {
            ctx.push(Spec {
                ts,
                account,
                seq: 0,
                stream: key,
                ip: rng.below(3) as u16,
                model: m,
                kind: Kind::Tutor {
                    conv,
                    turns: t as u8,
                    math,
                },
            });
            ts += schedule::think_ms(rng, 40.0, 600);
        }
    }
}

fn judge_pipeline(ctx: &mut Ctx, rng: &mut Rng, spec: &ProductSpec) {
    let info = company_account(rng, ctx, "standard", None);
    let anthropic = rng.chance(0.3);
    let client = network::script_client(rng, anthropic);
    let ips = backend_ips(rng, 2);
    let rubric = rng.below(3) as u8;
    let seed = rng.below(1 << 30) as u32;
    let streams = vec![stream(rng, client, ips)];
    let account = add_customer(ctx, rng, info, streams, Profile::Judge { rubric, seed });
    let model = ModelHabit::draw(rng, &ctx.models, ctx.start, 30.0, 1.0).base;
    // Runs: after deploys and nightly, a batch of answers each.
    let days = (ctx.end - ctx.start) as f64 / MS_PER_DAY as f64;
    let per_day_runs = rng.range_f64(1.0, 4.0);
    let runs = rng.poisson(days * per_day_runs).max(1);
    let per_run = (spec.requests_per_day * days / runs as f64).max(1.0);
    let corpus_len = ctx.corpus.answers.len() as u64;
    for _ in 0..runs {
        let mut ts = ctx.start + rng.below((ctx.end - ctx.start) as u64) as i64;
        for _ in 0..rng.poisson(per_run) {
            if ts >= ctx.end {
                break;
            }
            ctx.push(Spec {
                ts,
                account,
                seq: 0,
                stream: 0,
                ip: rng.below(2) as u16,
                model,
                kind: Kind::Judge {
                    doc: rng.below(corpus_len) as u32,
                    explain: rng.chance(spec.elicit),
                },
            });
            ts += (rng.lognormal(1.5, 0.5) * MS_PER_SECOND as f64) as i64;
        }
    }
}

fn hackathon(ctx: &mut Ctx, rng: &mut Rng, spec: &ProductSpec) {
    // A fresh account made for the event, from a cloud VM or a laptop.
    let age = rng.range_f64(0.1, 3.0);
    let cc = *rng.pick(&["US", "GB", "DE", "IN", "FR", "CA", "SG"]);
    let info = AccountInfo {
        created_at: Some(Timestamp(ctx.start - (age * MS_PER_DAY as f64) as i64)),
        tier: Some((*rng.pick(&["free", "tier1", "tier1"])).to_string()),
        signup_program: Some((*rng.pick(&["education", "startup", "standard"])).to_string()),
        payment_fingerprint: rng.chance(0.6).then(|| format!("pm_{}", rng.hex(16))),
        email_domain: Some(if rng.chance(0.5) {
            network::webmail(rng).to_string()
        } else {
            network::university_domain(0, rng)
        }),
        country: Some(cc.to_string()),
        verified: Some(rng.chance(0.5)),
    };
    let anthropic = rng.chance(0.3);
    let client = network::script_client(rng, anthropic);
    let ips = if rng.chance(0.6) {
        backend_ips(rng, 1)
    } else {
        let net = network::network_in(rng, NetKind::Residential, cc);
        vec![(network::ip_in(rng, net), net as u16)].into()
    };
    let app = rng.below(4) as u8;
    let seed = rng.below(1 << 30) as u32;
    let streams = vec![stream(rng, client, ips)];
    let account = add_customer(ctx, rng, info, streams, Profile::Hackathon { app, seed });
    let model = ModelHabit::draw(rng, &ctx.models, ctx.start, 1.0, 1.0).base;
    // A weekend: a 36-hour window somewhere in the scenario, in bursts of
    // testing and demos, day and night.
    let span = (36 * MS_PER_HOUR).min(ctx.end - ctx.start);
    let from = ctx.start + rng.below((ctx.end - ctx.start - span).max(1) as u64) as i64;
    let bursts = schedule::windows(rng, from, from + span, 8.0, 30.0);
    let total = rng.poisson(spec.requests_per_day * 1.5).max(5);
    let n_conv = ctx.corpus.conversations.len() as u64;
    let elicits = rng.chance(spec.elicit);
    for k in 0..total {
        let (s, e) = bursts[(k as usize) % bursts.len()];
        ctx.push(Spec {
            ts: s + rng.below((e - s).max(1) as u64) as i64,
            account,
            seq: 0,
            stream: 0,
            ip: 0,
            model,
            kind: Kind::Hackathon {
                conv: rng.below(n_conv.max(1)) as u32,
                elicit: elicits && rng.chance(0.8),
            },
        });
    }
}
