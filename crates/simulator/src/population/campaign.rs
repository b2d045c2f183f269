/*!
Distillation campaigns, modelled on the February 2026 disclosures.

One engine with knobs covers every kind: reasoning harvesters with
synchronised bursts and shared payment methods, multi-capability agentic
campaigns over hundreds of varied accounts, a coding campaign that moves
half its traffic to a new model within a day of release, hydra resellers
whose accounts mix distillation with real end-user traffic, and
low-and-slow swarms of small accounts with human-like timing. Accounts get
opaque ids; only `truth.jsonl` names the campaign.
*/

use distillguard_core::time::{MS_PER_DAY, MS_PER_HOUR};
use distillguard_core::{AccountInfo, Label, Timestamp};

use super::Ctx;
use super::benign::{chat_sessions, human_params};
use crate::content::templates::Template;
use crate::content::wording::{self, Bank, Style};
use crate::network::{self, NetKind};
use crate::rng::{Rng, label};
use crate::scenario::{CAPABILITIES, CampaignSpec, ELICITATION_STYLES, LANGUAGES};
use crate::schedule;
use crate::world::{
    CampaignRt, IpPool, Kind, ModelHabit, NO_CONV, Profile, SimAccount, Spec, Stream,
};

/// Orca-style system prompts (Mukherjee et al. 2023) that ask for
/// explanation traces.
const ORCA: &[&str] = &[
    "You are an AI assistant. User will give you a task. Your goal is to complete the task as faithfully as you can. While performing the task think step-by-step and justify your steps.",
    "You are a helpful assistant, who always provide explanation. Think like you are answering to a five year old.",
    "You are an AI assistant that helps people find information. Provide a detailed answer so user don't need to search outside to understand the answer.",
    "Explain how you used the definition to come up with the answer.",
    "You should describe the task and explain your answer. While answering a multiple choice question, first output the correct answer(s). Then explain why other answers are wrong.",
    "You are a teacher. Given a task, you explain in simple steps what the task is asking, any guidelines it provides and how to use those guidelines to find the answer.",
];

fn weights_of(w: &crate::scenario::Weights, names: &[&str]) -> Vec<f64> {
    names
        .iter()
        .map(|n| w.get(*n).copied().unwrap_or(0.0))
        .collect()
}

fn pick_name<'a>(rng: &mut Rng, w: &'a crate::scenario::Weights) -> &'a str {
    let keys: Vec<&String> = w.keys().collect();
    let ws: Vec<f64> = w.values().copied().collect();
    keys[rng.weighted(&ws)].as_str()
}

fn ip_pool(rng: &mut Rng, kind: &str, n: u32) -> IpPool {
    let clouds = network::networks_of(NetKind::Cloud);
    let homes = network::networks_of(NetKind::Residential);
    // A datacenter campaign rents from one to three providers.
    let providers: Vec<usize> = (0..rng.range_u64(1, 3))
        .map(|_| *rng.pick(&clouds))
        .collect();
    (0..n)
        .map(|_| {
            let residential = match kind {
                "residential_proxy" => true,
                "mixed" => rng.chance(0.5),
                _ => false,
            };
            let net = if residential {
                *rng.pick(&homes)
            } else {
                *rng.pick(&providers)
            };
            (network::ip_in(rng, net), net as u16)
        })
        .collect()
}

pub fn generate(ctx: &mut Ctx, spec: &CampaignSpec) {
    let seed = ctx.seed;
    let crng = &mut Rng::derive(&[seed, label("campaign"), label(&spec.name)]);
    let cap_w = weights_of(&spec.capabilities, CAPABILITIES);
    let lang_w = weights_of(&spec.languages, LANGUAGES);
    let templates: Vec<Vec<Template>> = cap_w
        .iter()
        .enumerate()
        .map(|(c, w)| {
            if *w > 0.0 {
                (0..spec.templates.get())
                    .map(|_| Template::draw(c as u8, crng))
                    .collect()
            } else {
                Vec::new()
            }
        })
        .collect();
    let systems: Vec<String> = (0..spec.system_prompts)
        .map(|i| {
            let base = ORCA[(crng.below(ORCA.len() as u64) as usize + i as usize) % ORCA.len()];
            if i as usize >= ORCA.len() {
                format!("{base} ({})", crng.hex(4))
            } else {
                base.to_string()
            }
        })
        .collect();
    // The campaign's own wordings of "show your reasoning": a few styles,
    // `wordings` phrasings per language, some from the held-out bank.
    let styles: Vec<Style> = {
        let mut all = Style::ALL.to_vec();
        crng.shuffle(&mut all);
        all.truncate(crng.range_u64(1, 3) as usize);
        all
    };
    let bank = |crng: &mut Rng| {
        if crng.chance(spec.held_wording) {
            Bank::Held
        } else {
            Bank::Train
        }
    };
    let user_wordings: Vec<Vec<String>> = LANGUAGES
        .iter()
        .enumerate()
        .map(|(l, lang)| {
            if lang_w[l] <= 0.0 {
                return Vec::new();
            }
            (0..spec.wordings.get())
                .map(|_| {
                    let (style, b) = (*crng.pick(&styles), bank(crng));
                    wording::user(crng, lang, style, b)
                })
                .collect()
        })
        .collect();
    let main_lang = LANGUAGES[lang_w
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)];
    let system_wordings: Vec<String> = (0..spec.wordings.get().max(spec.system_prompts))
        .map(|_| {
            let (style, b) = (*crng.pick(&styles), bank(crng));
            wording::system(crng, main_lang, style, b)
        })
        .collect();
    let campaign = ctx.campaigns.len() as u16;
    ctx.campaigns.push(CampaignRt {
        name: spec.name.clone(),
        templates,
        systems,
        user_wordings,
        system_wordings,
    });
    let style_w = weights_of(&spec.elicitation, ELICITATION_STYLES);

    let span_start = ctx.start + (spec.start_day * MS_PER_DAY as f64) as i64;
    let span_end = match spec.end_day {
        Some(d) => (ctx.start + (d * MS_PER_DAY as f64) as i64).min(ctx.end),
        None => ctx.end,
    };
    let pool = ip_pool(crng, &spec.network.kind, spec.network.ips.get());
    let clients: Vec<usize> = (0..spec.network.clients.get())
        .map(|_| {
            let anthropic = crng.chance(spec.params.anthropic);
            network::script_client(crng, anthropic)
        })
        .collect();
    let payments: Vec<String> = (0..spec.identity.payment_fingerprints)
        .map(|_| format!("pm_{}", crng.hex(16)))
        .collect();
    let windows = schedule::windows(
        crng,
        span_start,
        span_end,
        spec.timing.windows_per_day,
        spec.timing.window_minutes,
    );
    let base_model = match &spec.model {
        Some(m) => ctx.models.iter().position(|x| &x.name == m).unwrap_or(0),
        None => (0..ctx.models.len())
            .filter(|&i| ctx.models[i].released <= ctx.start)
            .max_by_key(|&i| ctx.models[i].released)
            .unwrap_or(0),
    } as u8;
    let pivot = spec.pivot.as_ref().and_then(|p| {
        let m = ctx.models.iter().position(|x| x.name == p.model)?;
        let at = ctx.models[m].released
            + (crng.range_f64(0.2, 0.8) * p.within_hours * MS_PER_HOUR as f64) as i64;
        Some((
            m as u8,
            at,
            p.share,
            (p.within_hours * MS_PER_HOUR as f64) as i64,
        ))
    });
    // Per-account volumes: log-normal shares of the campaign total.
    let shares: Vec<f64> = (0..spec.accounts)
        .map(|_| crng.lognormal(1.0, spec.account_skew))
        .collect();
    let share_sum: f64 = shares.iter().sum();
    let country_w: Vec<f64> = spec.identity.countries.values().copied().collect();
    let countries: Vec<&String> = spec.identity.countries.keys().collect();
    let mut carry = 0.0;

    for a in 0..spec.accounts {
        let mut rng = Rng::derive(&[seed, label("campaign-account"), label(&spec.name), a as u64]);
        let exact = spec.requests as f64 * shares[a as usize] / share_sum + carry;
        let n = exact.floor().max(0.0) as u64;
        carry = exact - n as f64;
        let id = spec.identity.clone();
        let age = rng.lognormal(id.age_days.max(0.1), 0.6);
        let country = countries[rng.weighted(&country_w)].clone();
        let email = if id.email_domains.is_empty() {
            network::webmail(&mut rng).to_string()
        } else {
            rng.pick(&id.email_domains).clone()
        };
        let payment = if payments.is_empty() {
            format!("pm_{}", rng.hex(16))
        } else {
            rng.pick(&payments).clone()
        };
        let created = match id.signup_window_hours {
            // A batch of registrations: all inside one window, `age_days`
            // before the campaign starts.
            Some(w) => {
                span_start - (id.age_days.max(0.0) * MS_PER_DAY as f64) as i64
                    + rng.below(((w * MS_PER_HOUR as f64) as u64).max(1)) as i64
            }
            None => span_start - (age * MS_PER_DAY as f64) as i64,
        };
        let info = AccountInfo {
            created_at: Some(Timestamp(created)),
            tier: Some(pick_name(&mut rng, &id.tiers).to_string()),
            signup_program: Some(pick_name(&mut rng, &id.signup).to_string()),
            payment_fingerprint: Some(payment),
            email_domain: Some(email),
            country: Some(country.clone()),
            verified: Some(rng.chance(id.verified)),
        };
        let client = *rng.pick(&clients);
        let residential = spec.network.kind == "residential";
        let own_ip = if residential {
            let net = network::network_in(&mut rng, NetKind::Residential, &country);
            IpPool::from(vec![(network::ip_in(&mut rng, net), net as u16)])
        } else {
            pool.clone()
        };
        let mut streams = Vec::new();
        let mut distill_streams: Vec<u8> = Vec::new();
        let end_user = human_params(&mut rng, false, 0.05, 0.02);
        if let Some(mix) = &spec.mix {
            // The reseller's gateway forwards its customers' traffic, one
            // key per customer application.
            let gw = network::CLIENTS
                .iter()
                .position(|c| c.user_agent.starts_with("Go-http"))
                .unwrap_or(0);
            for _ in 0..mix.keys {
                streams.push(Stream {
                    key: format!("key_{}", rng.hex(12)),
                    client: gw as u16,
                    anthropic: false,
                    ips: own_ip.clone(),
                });
            }
            // The harvest on keys of its own, or hidden in a customer's.
            if !rng.chance(mix.separate_key) {
                distill_streams.push(rng.below(u64::from(mix.keys)) as u8);
            }
        }
        if distill_streams.is_empty() {
            for _ in 0..id.keys {
                distill_streams.push(streams.len() as u8);
                streams.push(Stream {
                    key: format!("key_{}", rng.hex(12)),
                    client: client as u16,
                    anthropic: network::CLIENTS[client].anthropic,
                    ips: own_ip.clone(),
                });
            }
        }
        let account = ctx.add_account(SimAccount {
            id: format!("acct_{}", rng.hex(16)),
            info,
            label: Label::Attack,
            campaign: Some(campaign),
            streams,
            profile: Profile::Campaign { campaign, end_user },
            harvest_streams: distill_streams.clone(),
        });

        let times = match spec.timing.mode.as_str() {
            "synchronized" => {
                let joined: Vec<(i64, i64)> = windows
                    .iter()
                    .copied()
                    .filter(|_| rng.chance(spec.timing.participation))
                    .collect();
                let joined = if joined.is_empty() && !windows.is_empty() {
                    vec![*rng.pick(&windows)]
                } else {
                    joined
                };
                let mut t = Vec::with_capacity(n as usize);
                for k in 0..n {
                    let (s, e) = joined[(k as usize) % joined.len()];
                    t.push(s + rng.below((e - s).max(1) as u64) as i64);
                }
                t.sort_unstable();
                t
            }
            "bursty" => {
                // The account's own bursts, at its own times.
                let own = schedule::windows(
                    &mut rng,
                    span_start,
                    span_end,
                    spec.timing.windows_per_day,
                    spec.timing.window_minutes,
                );
                let mut t = Vec::with_capacity(n as usize);
                for k in 0..n {
                    let (s, e) = own[(k as usize) % own.len().max(1)];
                    t.push(s + rng.below((e - s).max(1) as u64) as i64);
                }
                t.sort_unstable();
                t
            }
            "human" => {
                let per_session = spec.timing.session_requests.max(1.0);
                let days = ((span_end - span_start) as f64 / MS_PER_DAY as f64).max(0.01);
                let per_day = n as f64 / per_session / days;
                let starts = schedule::human_sessions(
                    &mut rng,
                    span_start,
                    span_end,
                    spec.timing.utc_offset,
                    per_day,
                    0.8,
                    &schedule::DIURNAL,
                );
                let mut t = Vec::with_capacity(n as usize);
                let mut i = 0usize;
                while (t.len() as u64) < n && !starts.is_empty() {
                    let mut ts = starts[i % starts.len()]
                        + if i >= starts.len() {
                            rng.below(MS_PER_HOUR as u64) as i64
                        } else {
                            0
                        };
                    for _ in 0..rng.geometric(per_session) {
                        if (t.len() as u64) >= n || ts >= span_end {
                            break;
                        }
                        t.push(ts);
                        ts += schedule::think_ms(&mut rng, spec.timing.think_seconds, 0);
                    }
                    i += 1;
                }
                t.sort_unstable();
                t
            }
            _ => schedule::steady(&mut rng, n, span_start, span_end, spec.timing.regularity),
        };
        let mut ip = rng.below(ctx.accounts[account as usize].streams[0].ips.len() as u64) as u16;
        let pool_len = ctx.accounts[account as usize].streams[0].ips.len() as u64;
        let account_pivot = pivot.map(|(m, at, share, within)| {
            (m, at + rng.below((within / 3).max(1) as u64) as i64, share)
        });
        for ts in times {
            if !rng.chance(spec.network.sticky) {
                ip = rng.below(pool_len) as u16;
            }
            let model = match account_pivot {
                Some((m, at, share)) if ts >= at && rng.chance(share) => m,
                _ => base_model,
            };
            let cap = rng.weighted(&cap_w) as u8;
            let ntemp = u64::from(spec.templates.get());
            // Zipf-like: a few templates carry most of the traffic.
            let template = ((rng.f64().powf(2.0)) * ntemp as f64) as u16;
            let system = if !ctx.campaigns[campaign as usize].systems.is_empty()
                && rng.chance(spec.system_prompt_rate)
            {
                1 + rng.below(spec.system_prompts as u64) as u16
            } else {
                0
            };
            let style = rng.weighted(&style_w) as u8;
            let wording = rng.below(u64::from(spec.wordings.get().max(spec.system_prompts))) as u16;
            let (conv, reuse) = if rng.chance(spec.real_questions) {
                let c = rng.index(ctx.corpus.conversations.len()) as u32;
                (c, ctx.use_turn(c, 0))
            } else {
                (NO_CONV, 0)
            };
            ctx.push(Spec {
                ts,
                account,
                seq: 0,
                stream: *rng.pick(&distill_streams),
                ip,
                model,
                kind: Kind::Distill {
                    cap,
                    template: template.min(ntemp as u16 - 1),
                    lang: rng.weighted(&lang_w) as u8,
                    elicit: rng.chance(spec.reasoning_elicitation),
                    follow_up: rng.chance(spec.follow_up_rate),
                    paraphrase: rng.chance(spec.paraphrase),
                    system,
                    style,
                    wording,
                    conv,
                    reuse,
                },
            });
        }
        if let Some(mix) = &spec.mix {
            // End users of the reseller: real conversations around the clock
            // (customers in many time zones), over the whole scenario.
            let sessions_total = (n as f64 * mix.benign_per_attack / 2.0).round();
            let days = ((ctx.end - ctx.start) as f64 / MS_PER_DAY as f64).max(0.01);
            let mut starts = Vec::new();
            let users = mix.end_users.max(1);
            for _ in 0..users {
                let offset = network::COUNTRIES[rng.index(network::COUNTRIES.len())].1;
                starts.extend(schedule::human_sessions(
                    &mut rng,
                    ctx.start,
                    ctx.end,
                    offset,
                    sessions_total / users as f64 / days,
                    0.6,
                    &schedule::DIURNAL,
                ));
            }
            starts.sort_unstable();
            let habit = ModelHabit::draw(&mut rng, &ctx.models, ctx.start, 2.0, 0.5);
            // Each customer application behind its own key.
            let mut by_key: Vec<Vec<i64>> = vec![Vec::new(); mix.keys as usize];
            for s in starts {
                by_key[rng.below(u64::from(mix.keys)) as usize].push(s);
            }
            for (k, starts) in by_key.iter().enumerate() {
                chat_sessions(
                    ctx, &mut rng, account, k as u8, starts, 2.0, 40.0, 0.06, 0.7, pool_len, &habit,
                );
            }
        }
    }
}
