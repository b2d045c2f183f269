/*!
The traffic simulator: realistic LLM API traffic with labelled
distillation campaigns, deterministic per seed.

`simulate` builds the world from a [`Scenario`] (benign humans, legitimate
heavy customers, campaigns), sorts every request by time, renders each as
an event-log line and writes:

- `events.jsonl.gz` — the event log (`docs/event-log.md`), in time order;
- `accounts.jsonl` — account records (`--accounts` input of analyze);
- `models.jsonl` — model releases (`--models` input);
- `truth.jsonl` — labels: `{account_id, label, campaign}`;
- `manifest.json` — scenario, seed, corpus and counts of the run.

The same scenario, seed and corpus give the same bytes. The event log is
written as independent gzip members of 4,096 whole lines, each carrying its
own size (`distillguard_core::parallel`), so that chunks render and compress
on every core and readers can inflate them on every core; any gzip reader
reads the file as one stream.
*/

pub mod batches;
pub mod content;
pub mod corpus;
pub mod network;
pub mod org;
pub mod population;
pub mod random;
pub mod render;
pub mod rng;
pub mod scenario;
pub mod schedule;
pub mod world;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use distillguard_core::progress::Progress;
use distillguard_core::time::MS_PER_DAY;
use distillguard_core::{AccountRecord, Label, ModelRelease, Timestamp, TruthRecord};
use serde::Serialize;

pub use corpus::Corpus;
pub use scenario::Scenario;

use population::Ctx;
use render::World as RenderWorld;
use world::ModelRt;

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    Scenario(#[from] scenario::ScenarioError),
    #[error(transparent)]
    Corpus(#[from] corpus::CorpusError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What a run produced.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub scenario: String,
    pub seed: u64,
    pub corpus: String,
    pub start: Timestamp,
    pub end: Timestamp,
    pub events: u64,
    pub accounts: u64,
    pub benign_accounts: u64,
    pub attack_accounts: u64,
    pub attack_events: u64,
    /// Per campaign: accounts and distillation requests.
    pub campaigns: BTreeMap<String, CampaignCount>,
    pub bytes_uncompressed: u64,
    pub bytes_written: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CampaignCount {
    pub accounts: u64,
    pub events: u64,
}

/// Events per rendering chunk (one gzip member each).
const CHUNK: usize = 4096;

fn write_err(path: &Path) -> impl Fn(std::io::Error) -> SimError + '_ {
    move |source| SimError::Write {
        path: path.to_path_buf(),
        source,
    }
}

/// A generated world, before rendering: its accounts, campaigns and every
/// request spec in time order. Render it to files ([`simulate`]) or to
/// lines in memory ([`World::for_each_chunk`]).
pub struct World<'c> {
    scenario: Scenario,
    ctx: Ctx<'c>,
    specs: Vec<world::Spec>,
    pub summary: Summary,
}

/// Builds the world of a scenario (no rendering yet).
pub fn build<'c>(scenario: &Scenario, seed: u64, corpus: &'c Corpus) -> World<'c> {
    let start = scenario.start_ts().0;
    let end = start + (scenario.days * MS_PER_DAY as f64) as i64;
    let models: Vec<ModelRt> = scenario
        .models
        .iter()
        .map(|m| ModelRt {
            name: m.name.clone(),
            released: start + (m.released_day * MS_PER_DAY as f64) as i64,
            max_output: m.max_output_tokens,
            reasoning: m.reasoning,
            share: m.share,
        })
        .collect();
    let mut ctx = Ctx::new(seed, start, end, corpus, models);
    if let Some(b) = &scenario.benign {
        population::benign::generate(&mut ctx, b);
    }
    for (i, p) in scenario.products.iter().enumerate() {
        population::products::generate(&mut ctx, i, p);
    }
    for c in &scenario.campaigns {
        population::campaign::generate(&mut ctx, c);
    }
    let mut specs = std::mem::take(&mut ctx.specs);
    batches::deliver(&mut specs, &ctx.accounts);
    specs.sort_unstable_by_key(|s| (s.ts, s.account, s.seq));

    let mut summary = Summary {
        scenario: scenario.name.clone(),
        seed,
        corpus: corpus.source.clone(),
        start: Timestamp(start),
        end: Timestamp(end),
        events: specs.len() as u64,
        accounts: ctx.accounts.len() as u64,
        benign_accounts: 0,
        attack_accounts: 0,
        attack_events: 0,
        campaigns: BTreeMap::new(),
        bytes_uncompressed: 0,
        bytes_written: 0,
    };
    for a in &ctx.accounts {
        match a.label {
            Label::Benign => summary.benign_accounts += 1,
            Label::Attack => summary.attack_accounts += 1,
        }
        if let Some(c) = a.campaign {
            summary
                .campaigns
                .entry(ctx.campaigns[c as usize].name.clone())
                .or_default()
                .accounts += 1;
        }
    }
    for s in &specs {
        let a = &ctx.accounts[s.account as usize];
        if let (Some(c), world::Kind::Distill { .. }) = (a.campaign, s.kind) {
            summary.attack_events += 1;
            summary
                .campaigns
                .entry(ctx.campaigns[c as usize].name.clone())
                .or_default()
                .events += 1;
        }
    }
    World {
        scenario: scenario.clone(),
        ctx,
        specs,
        summary,
    }
}

impl World<'_> {
    /// Renders every request as event-log lines, in time order, in chunks
    /// of whole lines (rendered on every core); `each` receives them in
    /// order. Stops at the first error `each` returns.
    pub fn for_each_chunk<E: Send>(
        &self,
        mut each: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        self.map_chunks(|buf| Ok(buf.to_vec()), |_, text| each(&text))
    }

    /// Renders chunks of whole lines on worker threads, maps each with
    /// `map` there (parse it, say), and hands the results to `each` in
    /// order, with the chunk's number.
    pub fn map_chunks<T: Send, E: Send>(
        &self,
        map: impl Fn(&[u8]) -> Result<T, E> + Sync,
        mut each: impl FnMut(usize, T) -> Result<(), E>,
    ) -> Result<(), E> {
        let world = RenderWorld {
            seed: self.ctx.seed,
            corpus: self.ctx.corpus,
            models: &self.ctx.models,
            accounts: &self.ctx.accounts,
            campaigns: &self.ctx.campaigns,
            campaign_specs: &self.scenario.campaigns,
            knobs: &self.scenario.output,
        };
        let chunks: Vec<&[world::Spec]> = self.specs.chunks(CHUNK).collect();
        let next = AtomicUsize::new(0);
        let workers = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(1, 8);
        let (tx, rx) = mpsc::sync_channel::<(usize, Result<T, E>)>(workers * 2);
        std::thread::scope(|scope| {
            for _ in 0..workers {
                let tx = tx.clone();
                let (world, chunks, next, map) = (&world, &chunks, &next, &map);
                scope.spawn(move || {
                    let mut buf = Vec::with_capacity(CHUNK * 2048);
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(chunk) = chunks.get(i) else { break };
                        buf.clear();
                        for s in chunk.iter() {
                            render::render(world, s, &mut buf);
                        }
                        if tx.send((i, map(&buf))).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            let mut pending: BTreeMap<usize, Result<T, E>> = BTreeMap::new();
            let mut want = 0usize;
            for (i, r) in rx {
                pending.insert(i, r);
                while let Some(r) = pending.remove(&want) {
                    each(want, r?)?;
                    want += 1;
                }
            }
            Ok(())
        })
    }

    /// Events per chunk handed out (for progress).
    pub fn chunk_len(&self, i: usize) -> usize {
        self.specs
            .chunks(CHUNK)
            .nth(i)
            .map_or(0, <[world::Spec]>::len)
    }

    /// The truth: every account's label, campaign and family.
    pub fn truth(&self) -> Vec<TruthRecord> {
        let ctx = &self.ctx;
        self.id_order()
            .iter()
            .map(|&i| {
                let a = &ctx.accounts[i];
                TruthRecord {
                    account_id: a.id.clone(),
                    label: a.label,
                    campaign: a.campaign.map(|c| ctx.campaigns[c as usize].name.clone()),
                    family: a
                        .campaign
                        .and_then(|c| self.scenario.campaigns.get(c as usize))
                        .map(|c| c.family().to_string()),
                    kind: Some(a.profile.kind().to_string()),
                    bad_keys: (a.label == Label::Attack).then(|| {
                        let mut k: Vec<String> = a
                            .harvest_streams
                            .iter()
                            .filter_map(|&i| a.streams.get(i as usize).map(|s| s.key.clone()))
                            .collect();
                        k.sort();
                        k.dedup();
                        k
                    }),
                }
            })
            .collect()
    }

    /// The account records the scenario exports (all, or a share, or none:
    /// `output.account_records`), in id order.
    pub fn account_records(&self) -> Vec<AccountRecord> {
        let ctx = &self.ctx;
        let share = self.scenario.output.account_records;
        self.id_order()
            .into_iter()
            .filter(|&i| {
                share >= 1.0
                    || rng::Rng::derive(&[ctx.seed, rng::label("record"), i as u64]).chance(share)
            })
            .map(|i| AccountRecord::new(ctx.accounts[i].id.clone(), ctx.accounts[i].info.clone()))
            .collect()
    }

    /// Model releases.
    pub fn models(&self) -> Vec<ModelRelease> {
        self.ctx
            .models
            .iter()
            .map(|m| ModelRelease {
                model: m.name.clone(),
                released_at: Timestamp(m.released),
            })
            .collect()
    }

    fn id_order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.ctx.accounts.len()).collect();
        order.sort_by(|&a, &b| self.ctx.accounts[a].id.cmp(&self.ctx.accounts[b].id));
        order
    }
}

/// Runs a scenario and writes its files into `out_dir`.
pub fn simulate(
    scenario: &Scenario,
    seed: u64,
    corpus: &Corpus,
    out_dir: &Path,
    progress: &dyn Progress,
) -> Result<Summary, SimError> {
    std::fs::create_dir_all(out_dir).map_err(write_err(out_dir))?;
    progress.stage("generating traffic", None);
    let world = build(scenario, seed, corpus);
    let mut summary = world.summary.clone();

    // Render and compress chunks in parallel; write them in order.
    progress.stage("writing events", Some(world.specs.len() as u64));
    let events_path = out_dir.join("events.jsonl.gz");
    let file = File::create(&events_path).map_err(write_err(&events_path))?;
    let mut sink = BufWriter::with_capacity(1 << 20, file);
    let mut raw_bytes = 0u64;
    let mut written = 0u64;
    let result: Result<(), std::io::Error> = world.map_chunks(
        |buf| {
            distillguard_core::parallel::write_member(buf, 3)
                .map(|packed| (packed, buf.len() as u64))
        },
        |i, (packed, raw)| {
            raw_bytes += raw;
            sink.write_all(&packed)?;
            written += packed.len() as u64;
            progress.advance(world.chunk_len(i) as u64);
            Ok(())
        },
    );
    result
        .and_then(|()| sink.flush())
        .map_err(write_err(&events_path))?;
    summary.bytes_uncompressed = raw_bytes;
    summary.bytes_written = written;

    write_jsonl(&out_dir.join("accounts.jsonl"), &world.account_records())?;
    write_jsonl(&out_dir.join("truth.jsonl"), &world.truth())?;
    write_jsonl(&out_dir.join("models.jsonl"), &world.models())?;
    let manifest = serde_json::json!({ "summary": summary, "scenario": scenario });
    let path = out_dir.join("manifest.json");
    let text = serde_json::to_string_pretty(&manifest).map_err(|e| SimError::Write {
        path: path.clone(),
        source: e.into(),
    })?;
    std::fs::write(&path, text + "\n").map_err(write_err(&path))?;
    Ok(summary)
}

fn write_jsonl<T: Serialize>(path: &Path, rows: &[T]) -> Result<(), SimError> {
    let file = File::create(path).map_err(write_err(path))?;
    let mut w = BufWriter::new(file);
    for r in rows {
        serde_json::to_writer(&mut w, r).map_err(|e| SimError::Write {
            path: path.to_path_buf(),
            source: e.into(),
        })?;
        w.write_all(b"\n").map_err(write_err(path))?;
    }
    w.flush().map_err(write_err(path))
}
