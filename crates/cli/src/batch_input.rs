/*!
`analyze --input-format openai-batch|anthropic-batch`: batch input and
results files become one temporary event log, which `analyze` then reads
like any other.

Results are read first and held by `custom_id` (their raw bodies); the
requests are then streamed out as event lines, each joined to its result
(see `distillguard_core::import::batch`). A batch file does not say who sent
it or when, so `--batch-account` is required and `--batch-time` defaults to
the first file's modification time.
*/

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use distillguard_core::import::batch::{BatchKind, BatchLine, BatchMeta, Joiner, parse_line};
use distillguard_core::{Lines, Timestamp};

/// What `analyze` reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum InputFormat {
    /// The event log (`docs/event-log.md`).
    #[default]
    Events,
    /// OpenAI Batch API files: the uploaded input JSONL and the results file.
    OpenaiBatch,
    /// Anthropic Message Batches: the create body (or one request per line)
    /// and the results JSONL.
    AnthropicBatch,
    /// LiteLLM: its callbacks' `StandardLoggingPayload` or rows of its
    /// `LiteLLM_SpendLogs` table, one JSON object per line.
    Litellm,
    /// OpenTelemetry GenAI spans: OTLP/HTTP JSON export requests, one per
    /// line (the Collector's file exporter).
    Otlp,
    /// OpenTelemetry GenAI spans in protobuf, as the Collector's file
    /// exporter writes them with `format: proto`: each export request after
    /// its length (4 bytes, big-endian).
    OtlpProto,
    /// Kong AI Gateway: its logging plugins' lines with the `ai` object.
    Kong,
    /// Helicone: its request rows (`HeliconeRequest`), one per line or an
    /// API answer (`{"data": [...]}`) per line.
    Helicone,
}

/// `--litellm-account`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LitellmAccount {
    #[default]
    Key,
    EndUser,
}

impl From<LitellmAccount> for distillguard_core::import::litellm::AccountFrom {
    fn from(a: LitellmAccount) -> Self {
        match a {
            LitellmAccount::Key => Self::Key,
            LitellmAccount::EndUser => Self::EndUser,
        }
    }
}

/// The options of batch input.
#[derive(clap::Args, Debug, Default)]
pub(crate) struct BatchOptions {
    /// The input format.
    #[arg(long, value_enum, default_value = "events")]
    pub input_format: InputFormat,
    /// LiteLLM input: where the account comes from: `key` (the key's user,
    /// else its team, else the key) or `end-user` (the `user` a client
    /// sends, for a proxy without virtual keys; else as `key`).
    #[arg(long, value_enum, default_value = "key")]
    pub litellm_account: LitellmAccount,
    /// Batch input: the account that sent the batch.
    #[arg(long)]
    pub batch_account: Option<String>,
    /// Batch input: the key id it was sent with.
    #[arg(long)]
    pub batch_key: Option<String>,
    /// Batch input: the batch id (default: the first file's name).
    #[arg(long)]
    pub batch_id: Option<String>,
    /// Batch input: when it was submitted, RFC 3339 (default: the first
    /// file's modification time). Requests are a millisecond apart.
    #[arg(long)]
    pub batch_time: Option<String>,
}

/// Batch files can hold one request body of up to 256 MB on a line.
const MAX_LINE: usize = 512 << 20;

/// Malformed lines printed with their place; the rest are counted.
const SHOWN: u64 = 20;

/// The temporary event log, removed when dropped.
pub(crate) struct Converted {
    pub path: PathBuf,
    pub requests: u64,
    pub results: u64,
    pub malformed: u64,
}

impl Drop for Converted {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn meta(o: &BatchOptions, first: &Path) -> Result<BatchMeta> {
    let Some(account) = o.batch_account.clone().filter(|a| !a.is_empty()) else {
        bail!(
            "--batch-account is required with --input-format openai-batch|anthropic-batch (a batch file does not say who sent it)"
        );
    };
    let ts = match &o.batch_time {
        Some(t) => Timestamp::parse(t).map_err(|e| anyhow::anyhow!("--batch-time {t:?}: {e}"))?,
        None => {
            let m = std::fs::metadata(first)
                .and_then(|m| m.modified())
                .with_context(|| {
                    format!(
                        "{}: its modification time (or give --batch-time)",
                        first.display()
                    )
                })?;
            let ms = m
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            Timestamp(ms)
        }
    };
    let batch_id = o.batch_id.clone().unwrap_or_else(|| {
        let name = first
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        name.split('.').next().unwrap_or_default().to_string()
    });
    Ok(BatchMeta {
        account_id: account,
        api_key_id: o.batch_key.clone(),
        batch_id,
        ts,
    })
}

/// Reads every line of `inputs` as batch lines, handing each to `each`;
/// malformed lines are reported with their place (strict: the first stops).
fn each_line(
    inputs: &[PathBuf],
    kind: BatchKind,
    strict: bool,
    bad: &mut u64,
    mut each: impl FnMut(BatchLine) -> Result<()>,
) -> Result<()> {
    for path in inputs {
        let mut lines = Lines::open(path)?.with_max_line(MAX_LINE);
        loop {
            let err = match lines.next_line()? {
                None => break,
                Some(Err(e)) => e,
                Some(Ok(text)) => match parse_line(kind, text) {
                    Ok(l) => {
                        each(l)?;
                        continue;
                    }
                    Err(e) => lines.error(e),
                },
            };
            {
                let e = err;
                if strict {
                    bail!("malformed: {e}");
                }
                *bad += 1;
                if *bad <= SHOWN {
                    let _ = writeln!(io::stderr(), "malformed: {e}");
                }
            }
        }
    }
    Ok(())
}

/// A temporary file of its own (removed with the [`Converted`]).
fn temporary(what: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "distillguard-{what}-{}-{}.jsonl",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ))
}

/// Converts protobuf OTLP files (the Collector's file exporter, `format:
/// proto`) into a temporary file of OTLP/JSON lines, one export request
/// each, which the OTLP reader then reads. A message that does not decode
/// is named with its file, number and byte offset; under `strict` it
/// stops the run.
pub(crate) fn convert_otlp_proto(inputs: &[PathBuf], strict: bool) -> Result<Converted> {
    use distillguard_core::import::otlp_proto::{decode_traces, frames};
    let mut out = Converted {
        path: temporary("otlp"),
        requests: 0,
        results: 0,
        malformed: 0,
    };
    let file = std::fs::File::create(&out.path)
        .with_context(|| format!("creating {}", out.path.display()))?;
    let mut w = BufWriter::new(file);
    for p in inputs {
        // One message at a time: the file is never held whole.
        let (name, r) = distillguard_core::reader::open_source(p)?;
        for (i, frame) in frames(r).enumerate() {
            let doc = frame.and_then(|(at, m)| {
                decode_traces(&m)
                    .map_err(|e| distillguard_core::EventError::Invalid(format!("byte {at}: {e}")))
            });
            match doc {
                Ok(doc) => {
                    serde_json::to_writer(&mut w, &doc)?;
                    w.write_all(b"\n")?;
                    out.requests += 1;
                }
                Err(error) => {
                    // Named by the message's number in the file.
                    let e = distillguard_core::LineError {
                        source_name: name.clone(),
                        line: i as u64 + 1,
                        error,
                    };
                    if strict {
                        return Err(distillguard_core::ReadError::Strict(e).into());
                    }
                    out.malformed += 1;
                    if out.malformed <= SHOWN {
                        let _ = writeln!(io::stderr(), "malformed: message {e}");
                    }
                }
            }
        }
    }
    w.flush()?;
    Ok(out)
}

/// Converts batch files into a temporary event log.
pub(crate) fn convert(o: &BatchOptions, inputs: &[PathBuf], strict: bool) -> Result<Converted> {
    let kind = match o.input_format {
        InputFormat::Events
        | InputFormat::Litellm
        | InputFormat::Otlp
        | InputFormat::OtlpProto
        | InputFormat::Kong
        | InputFormat::Helicone => bail!("not a batch format"),
        InputFormat::OpenaiBatch => BatchKind::OpenAi,
        InputFormat::AnthropicBatch => BatchKind::Anthropic,
    };
    if inputs.iter().any(|p| p.as_os_str() == "-") {
        bail!(
            "batch files are read twice (results, then requests): give files, not standard input"
        );
    }
    let Some(first) = inputs.first() else {
        bail!("no batch files given");
    };
    let meta = meta(o, first)?;
    let mut joiner = Joiner::default();
    let mut bad = 0u64;
    // Pass 1: the results, by custom_id.
    let mut results = 0u64;
    each_line(inputs, kind, strict, &mut bad, |l| {
        if let BatchLine::Result(r) = l {
            joiner.add_result(&r);
            results += 1;
        }
        Ok(())
    })?;
    // Pass 2: the requests, joined (malformed lines were reported once).
    let path = temporary("batch");
    let mut out = Converted {
        path,
        requests: 0,
        results,
        malformed: bad,
    };
    let file = std::fs::File::create(&out.path)
        .with_context(|| format!("creating {}", out.path.display()))?;
    let mut w = BufWriter::new(file);
    let mut ignored = 0u64;
    let mut n = 0u64;
    each_line(inputs, kind, false, &mut ignored, |l| {
        if let BatchLine::Requests(reqs) = l {
            for r in &reqs {
                w.write_all(joiner.event_line(&meta, n, r).as_bytes())?;
                w.write_all(b"\n")?;
                n += 1;
            }
        }
        Ok(())
    })?;
    w.flush()?;
    out.requests = n;
    if bad > SHOWN {
        let _ = writeln!(io::stderr(), "malformed: … and {} more", bad - SHOWN);
    }
    Ok(out)
}
