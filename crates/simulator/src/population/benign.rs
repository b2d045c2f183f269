/*!
Ordinary human users.

Each account lives in a country (time zone), has a log-normal activity
level (many light users, a few heavy ones), and holds sessions that replay
a real ShareGPT conversation turn by turn, with think time between turns
and the occasional typo. Network: a home address, a corporate egress or a
campus NAT shared with colleagues, a carrier-grade NAT pool, or a cloud VM
for developers' scripts. Some accounts share a payment method (families,
small teams).
*/

use distillguard_core::time::MS_PER_DAY;
use distillguard_core::{AccountInfo, Label, Timestamp};

use super::Ctx;
use crate::network::{self, NETWORKS, NetKind};
use crate::rng::{Rng, label};
use crate::scenario::BenignSpec;
use crate::schedule;
use crate::world::{
    HumanParams, IpPool, Kind, ModelHabit, Profile, REASONING_SYSTEM, SimAccount, Spec, Stream,
};

/// A shared egress: address and what its users look like.
struct Nat {
    ip: String,
    net: u16,
    domain: String,
    country: &'static str,
}

const TIERS: &[(&str, f64)] = &[
    ("free", 45.0),
    ("tier1", 30.0),
    ("tier2", 14.0),
    ("tier3", 7.0),
    ("tier4", 4.0),
];

pub fn tier(rng: &mut Rng) -> &'static str {
    let w: Vec<f64> = TIERS.iter().map(|t| t.1).collect();
    TIERS[rng.weighted(&w)].0
}

/// Request parameters of a human developer.
pub fn human_params(rng: &mut Rng, anthropic: bool, spec_reasoning: f64, step: f64) -> HumanParams {
    let max_tokens = if anthropic || rng.chance(0.4) {
        Some(*rng.pick(&[512, 1024, 1024, 2048, 4096, 4096, 8192]))
    } else {
        None
    };
    let temperature = match rng.below(5) {
        0 | 1 => None,
        2 => Some(0.7),
        3 => Some(1.0),
        _ => Some(*rng.pick(&[0.0, 0.2, 0.3, 0.5, 0.8])),
    };
    HumanParams {
        max_tokens,
        temperature,
        stream: rng.range_f64(0.0, 1.0),
        step_by_step: step * rng.range_f64(0.0, 2.0),
        reasoning: spec_reasoning * rng.range_f64(0.0, 2.0),
        system: 0,
    }
}

pub fn generate(ctx: &mut Ctx, spec: &BenignSpec) {
    let seed = ctx.seed;
    ctx.conversations = ((ctx.corpus.conversations.len() as f64 * spec.corpus_share).ceil()
        as usize)
        .clamp(1, ctx.corpus.conversations.len());
    let nat_rng = &mut Rng::derive(&[seed, label("benign-nats")]);
    let share = |k: &str| spec.network.get(k).copied().unwrap_or(0.0);
    let total: f64 = spec.network.values().sum();
    let expected = |k: &str| (spec.accounts as f64 * share(k) / total).ceil() as u32;
    let corp_count = (expected("corporate") / spec.corporate_nat_users.get()).max(1);
    let uni_count = (expected("university") / spec.university_nat_users.get()).max(1);
    let corporate: Vec<Nat> = (0..corp_count)
        .map(|_| {
            // Corporate traffic leaves through a security proxy or the office ISP line.
            let country = network::COUNTRIES
                [nat_rng.weighted(&network::COUNTRIES.iter().map(|c| c.2).collect::<Vec<_>>())]
            .0;
            let net = if nat_rng.chance(0.5) {
                *nat_rng.pick(&network::networks_of(NetKind::CorporateProxy))
            } else {
                network::network_in(nat_rng, NetKind::Residential, country)
            };
            Nat {
                ip: network::ip_in(nat_rng, net),
                net: net as u16,
                domain: network::company_domain(nat_rng),
                country,
            }
        })
        .collect();
    let universities: Vec<Nat> = (0..uni_count)
        .map(|_| {
            let net = *nat_rng.pick(&network::networks_of(NetKind::University));
            Nat {
                ip: network::ip_in(nat_rng, net),
                net: net as u16,
                domain: network::university_domain(NETWORKS[net].asn, nat_rng),
                country: NETWORKS[net].country,
            }
        })
        .collect();
    // Carrier-grade NAT pools: a few addresses per carrier, shared by all its users.
    let cgnat: Vec<IpPool> = network::networks_of(NetKind::Mobile)
        .into_iter()
        .map(|net| {
            (0..12)
                .map(|_| (network::ip_in(nat_rng, net), net as u16))
                .collect()
        })
        .collect();
    let net_names: Vec<&String> = spec.network.keys().collect();
    let net_weights: Vec<f64> = spec.network.values().copied().collect();
    let country_w: Vec<f64> = network::COUNTRIES.iter().map(|c| c.2).collect();
    let mut payments: Vec<String> = Vec::new();

    for i in 0..spec.accounts {
        let mut rng = Rng::derive(&[seed, label("benign"), i as u64]);
        let mut country = network::COUNTRIES[rng.weighted(&country_w)].0;
        let kind = net_names[rng.weighted(&net_weights)].as_str();
        let mut email = network::webmail(&mut rng).to_string();
        let mut signup = "standard";
        let mut homework: Option<u32> = None;
        let ips: IpPool = match kind {
            "corporate" => {
                let n = &corporate[rng.index(corporate.len())];
                email = n.domain.clone();
                country = n.country;
                vec![(n.ip.clone(), n.net)].into()
            }
            "university" => {
                let u = rng.index(universities.len());
                let n = &universities[u];
                if rng.chance(spec.homework_share) {
                    // One of a few courses at this campus.
                    homework = Some(u as u32 * 8 + rng.below(3) as u32);
                }
                email = n.domain.clone();
                country = n.country;
                signup = if rng.chance(0.7) {
                    "education"
                } else {
                    "standard"
                };
                vec![(n.ip.clone(), n.net)].into()
            }
            "mobile" => {
                let pools: Vec<usize> = (0..cgnat.len())
                    .filter(|&p| NETWORKS[cgnat[p][0].1 as usize].country == country)
                    .collect();
                let p = if pools.is_empty() {
                    rng.index(cgnat.len())
                } else {
                    *rng.pick(&pools)
                };
                cgnat[p].clone()
            }
            "cloud" => {
                let net = *rng.pick(&network::networks_of(NetKind::Cloud));
                vec![(network::ip_in(&mut rng, net), net as u16)].into()
            }
            "vpn" => {
                // A commercial VPN: its servers sit in hosting networks,
                // often in another country, and change between sessions.
                let clouds = network::networks_of(NetKind::Cloud);
                (0..4)
                    .map(|_| {
                        let net = *rng.pick(&clouds);
                        (network::ip_in(&mut rng, net), net as u16)
                    })
                    .collect::<Vec<_>>()
                    .into()
            }
            _ => {
                let net = network::network_in(&mut rng, NetKind::Residential, country);
                vec![(network::ip_in(&mut rng, net), net as u16)].into()
            }
        };
        if signup == "standard" && rng.chance(0.03) {
            signup = if rng.chance(0.7) {
                "startup"
            } else {
                "research"
            };
        }
        let client = network::honest_client(&mut rng);
        let anthropic = network::CLIENTS[client].anthropic;
        let tier_name = tier(&mut rng);
        let payment = if tier_name == "free" {
            None
        } else if !payments.is_empty() && rng.chance(spec.shared_payment_rate) {
            Some(rng.pick(&payments).clone())
        } else {
            let p = format!("pm_{}", rng.hex(16));
            payments.push(p.clone());
            Some(p)
        };
        let age_days = rng.lognormal(300.0, 1.0).clamp(1.0, 3000.0);
        let info = AccountInfo {
            created_at: Some(Timestamp(ctx.start - (age_days * MS_PER_DAY as f64) as i64)),
            tier: Some(tier_name.to_string()),
            signup_program: Some(signup.to_string()),
            payment_fingerprint: payment,
            email_domain: Some(email),
            country: Some(country.to_string()),
            verified: Some(rng.chance(0.92)),
        };
        let mut params = human_params(
            &mut rng,
            anthropic,
            spec.reasoning_rate,
            spec.step_by_step_rate,
        );
        if rng.chance(spec.reasoning_always_rate) {
            // Asks a reasoning model to think on every request (a setting
            // in the developer's code or app).
            params.reasoning = 1.0;
        }
        if rng.chance(spec.system_prompt_rate) {
            params.system = 1 + rng.below(1 << 30) as u32;
            if rng.chance(spec.reasoning_system_rate) {
                params.system |= REASONING_SYSTEM;
            }
        }
        let habit = ModelHabit::draw(
            &mut rng,
            &ctx.models,
            ctx.start,
            spec.adopt_days,
            spec.adopt_share,
        );
        let account = ctx.add_account(SimAccount {
            id: format!("acct_{}", rng.hex(16)),
            info,
            label: Label::Benign,
            campaign: None,
            streams: vec![Stream {
                key: format!("key_{}", rng.hex(12)),
                client: client as u16,
                anthropic,
                ips,
            }],
            profile: Profile::Human(params),
            harvest_streams: Vec::new(),
        });
        let rate = rng
            .lognormal(spec.sessions_per_day, spec.activity_sigma)
            .min(60.0);
        let offset = network::utc_offset_of(country);
        let sessions = schedule::human_sessions(
            &mut rng,
            ctx.start,
            ctx.end,
            offset,
            rate,
            spec.weekend_factor,
            &schedule::DIURNAL,
        );
        let pool_len = ctx.accounts[account as usize].streams[0].ips.len() as u64;
        let sessions = match homework {
            Some(set) => homework_sessions(
                ctx,
                &mut rng,
                account,
                set,
                &sessions,
                spec.think_seconds,
                &habit,
            ),
            None => sessions,
        };
        chat_sessions(
            ctx,
            &mut rng,
            account,
            0,
            &sessions,
            spec.turns_mean,
            spec.think_seconds,
            spec.typo_rate,
            spec.continue_rate,
            pool_len,
            &habit,
        );
    }
}

/// Turns about half of a student's sessions into work on the course's
/// problem set; returns the other sessions.
fn homework_sessions(
    ctx: &mut Ctx,
    rng: &mut Rng,
    account: u32,
    set: u32,
    starts: &[i64],
    think_s: f64,
    habit: &ModelHabit,
) -> Vec<i64> {
    let mut rest = Vec::new();
    // Each student works through the set in their own order.
    let mut item = rng.below(16) as u16;
    let step_habit = rng.range_f64(0.2, 0.9);
    for &s in starts {
        if !rng.chance(0.5) {
            rest.push(s);
            continue;
        }
        let mut ts = s;
        let model = habit.at(ts, rng);
        for _ in 0..rng.geometric(2.5).min(6) {
            ctx.push(Spec {
                ts,
                account,
                seq: 0,
                stream: 0,
                ip: 0,
                model,
                kind: Kind::Homework {
                    set,
                    item: item % 16,
                    step: rng.chance(step_habit),
                },
            });
            item += 1;
            ts += schedule::think_ms(rng, think_s * 3.0, 800);
        }
    }
    rest
}

/// Replays corpus conversations as sessions starting at `starts`.
#[expect(clippy::too_many_arguments)]
pub fn chat_sessions(
    ctx: &mut Ctx,
    rng: &mut Rng,
    account: u32,
    stream: u8,
    starts: &[i64],
    turns_mean: f64,
    think_s: f64,
    typo_rate: f64,
    continue_rate: f64,
    ip_pool: u64,
    habit: &ModelHabit,
) {
    let corpus = ctx.corpus;
    for &start in starts {
        let conv = rng.index(ctx.conversations);
        let c = &corpus.conversations[conv];
        // Some sessions open a new chat; the others continue an old one from
        // a later turn (with its history), so the whole corpus is used and
        // the same opening prompts do not recur across many accounts.
        let first = if rng.chance(continue_rate) {
            rng.index(c.user_turns().min(200))
        } else {
            0
        };
        let turns = (rng.geometric(turns_mean) as usize)
            .min(c.user_turns() - first)
            .min(50);
        let mut ts = start;
        let ip = rng.below(ip_pool) as u16;
        let model = habit.at(ts, rng);
        for turn in first..first + turns {
            if ts >= ctx.end {
                break;
            }
            let reuse = ctx.use_turn(conv as u32, turn as u8);
            ctx.push(Spec {
                ts,
                account,
                seq: 0,
                stream,
                ip,
                model,
                kind: Kind::Chat {
                    conv: conv as u32,
                    turn: turn as u8,
                    typo: rng.chance(typo_rate),
                    reuse,
                },
            });
            let answer_len = c.turns.get(turn * 2 + 1).map_or(0, |t| t.text.len());
            ts += schedule::think_ms(rng, think_s, answer_len);
        }
    }
}
