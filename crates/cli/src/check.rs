//! `distillguard check`: parse-only validation of event logs.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use distillguard_core::{Dialect, ReadError, Timestamp};

use crate::{Format, progress};

#[derive(Default, serde::Serialize)]
pub(crate) struct CheckSummary {
    file: String,
    lines: u64,
    events: u64,
    malformed: u64,
    openai: u64,
    anthropic: u64,
    /// OpenAI Responses API requests.
    responses: u64,
    accounts: u64,
    first_ts: Option<Timestamp>,
    last_ts: Option<Timestamp>,
    /// Events whose timestamp is earlier than the one before (analyze sorts).
    out_of_order: u64,
    /// The line after which reading failed (a truncated file).
    #[serde(skip_serializing_if = "Option::is_none")]
    truncated_at: Option<u64>,
}

#[derive(clap::Args)]
pub(crate) struct CheckArgs {
    /// Event logs (`.jsonl`, `.jsonl.gz`, or `-` for standard input).
    #[arg(required = true)]
    input: Vec<PathBuf>,
    /// Output: `table` for people, `json` for tools.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Stop at the first malformed line (exit code 2).
    #[arg(long)]
    strict: bool,
    /// Malformed lines listed on standard error (the rest are counted).
    #[arg(long, default_value_t = 20)]
    max_errors: usize,
    /// No progress or summary on standard error.
    #[arg(long, short)]
    quiet: bool,
}

pub(crate) fn run(a: CheckArgs) -> Result<ExitCode> {
    let CheckArgs {
        input,
        format,
        strict,
        max_errors,
        quiet,
    } = a;
    let inputs = input.as_slice();
    let bar = progress::Bar::new(!quiet);
    let mut summaries = Vec::new();
    let mut listed = 0usize;
    let mut total_bad = 0u64;
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    for path in inputs {
        let name = if path.as_os_str() == "-" {
            "<stdin>".to_string()
        } else {
            path.display().to_string()
        };
        distillguard_core::progress::Progress::stage(&bar, &format!("checking {name}"), None);
        let mut s = CheckSummary {
            file: name,
            ..Default::default()
        };
        let mut accounts = std::collections::HashSet::new();
        let mut last = i64::MIN;
        let stats = distillguard_core::parallel::par_read(
            path,
            workers,
            distillguard_core::parse_event_line,
            |item| {
                distillguard_core::progress::Progress::advance(&bar, 1);
                match item {
                    Ok(ev) => {
                        s.events += 1;
                        match ev.dialect {
                            Dialect::OpenAi => s.openai += 1,
                            Dialect::Anthropic => s.anthropic += 1,
                            Dialect::Responses => s.responses += 1,
                        }
                        if ev.ts.0 < last {
                            s.out_of_order += 1;
                        }
                        last = last.max(ev.ts.0);
                        s.first_ts = Some(s.first_ts.map_or(ev.ts, |t| t.min(ev.ts)));
                        s.last_ts = Some(s.last_ts.map_or(ev.ts, |t| t.max(ev.ts)));
                        if !accounts.contains(ev.account_id.as_str()) {
                            accounts.insert(ev.account_id);
                        }
                    }
                    Err(e) if strict => return Err(ReadError::Strict(e)),
                    Err(e) => {
                        s.malformed += 1;
                        if listed < max_errors {
                            let _ = writeln!(io::stderr(), "malformed: {e}");
                            listed += 1;
                        }
                    }
                }
                Ok(())
            },
        );
        match stats {
            Ok(stats) => s.lines = stats.lines,
            // A file that fails part-way (a truncated gzip): what came
            // before is counted, the place is reported, the other files
            // are still checked.
            Err(e) => match e.part_way().filter(|_| !strict) {
                Some((_, line)) => {
                    let _ = writeln!(io::stderr(), "error: {e}");
                    s.lines = line;
                    s.truncated_at = Some(line);
                }
                None => return Err(e.into()),
            },
        }
        s.accounts = accounts.len() as u64;
        total_bad += s.malformed;
        summaries.push(s);
    }
    drop(bar);
    if total_bad as usize > listed {
        let _ = writeln!(
            io::stderr(),
            "malformed: … and {} more (see --max-errors)",
            total_bad as usize - listed
        );
    }
    let mut stdout = io::stdout().lock();
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut stdout, &summaries)?;
            writeln!(stdout)?;
        }
        Format::Table => {
            for s in &summaries {
                writeln!(
                    stdout,
                    "{}: {} events ({} OpenAI, {} Anthropic, {} OpenAI Responses) from {} accounts; {} malformed of {} lines",
                    s.file,
                    s.events,
                    s.openai,
                    s.anthropic,
                    s.responses,
                    s.accounts,
                    s.malformed,
                    s.lines
                )?;
                if let Some(l) = s.truncated_at {
                    writeln!(stdout, "  truncated: reading failed after line {l}")?;
                }
                if let (Some(a), Some(b)) = (s.first_ts, s.last_ts) {
                    writeln!(
                        stdout,
                        "  span {a} … {b}{}",
                        if s.out_of_order > 0 {
                            format!("; {} events out of time order", s.out_of_order)
                        } else {
                            String::new()
                        }
                    )?;
                }
            }
        }
    }
    // Not a log to trust: a file ended early, or nothing in it was valid.
    let broken = summaries
        .iter()
        .any(|s| s.truncated_at.is_some() || (s.events == 0 && s.lines > 0));
    Ok(if broken {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
