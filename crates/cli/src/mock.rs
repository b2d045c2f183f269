//! `distillguard upstream-mock`: the test and demo model server.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::wm_data;

pub(crate) fn run(
    listen: &str,
    models: &str,
    (latency_ms, chunk_ms): (u64, u64),
    reasoning: bool,
    key: Option<&Path>,
    corpus: &str,
    fault: Option<distillguard_mock::Fault>,
) -> Result<ExitCode> {
    use distillguard_mock::{Config, Source};
    let source = match key {
        None => Source::Canned,
        Some(k) => {
            let text =
                std::fs::read_to_string(k).with_context(|| format!("reading {}", k.display()))?;
            let key = distillguard_watermark::Key::parse(&text)
                .with_context(|| format!("key file {}", k.display()))?;
            let tokenizer = distillguard_watermark::tokenizer::Tokenizer::cl100k()?;
            let teacher = distillguard_teacher::Teacher::train(wm_data::answer_tokens(
                corpus, &tokenizer, 3_000_000,
            )?);
            Source::Teacher {
                teacher: Box::new(teacher),
                tokenizer: Box::new(tokenizer),
                scheme: distillguard_watermark::Scheme::Kgw(distillguard_watermark::Kgw {
                    key,
                    gamma: 0.25,
                    delta: 2.0,
                    seeding: distillguard_watermark::Seeding::LeftHash { h: 1 },
                }),
            }
        }
    };
    let cfg = Config {
        models: models
            .split(',')
            .map(|m| m.trim().to_string())
            .filter(|m| !m.is_empty())
            .collect(),
        first_token: std::time::Duration::from_millis(latency_ms),
        between_chunks: std::time::Duration::from_millis(chunk_ms),
        reasoning,
        source,
        fault,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(distillguard_mock::serve(listen, cfg, |addr| {
        let mut out = io::stdout().lock();
        let _ = writeln!(out, "upstream-mock listening on http://{addr}");
        let _ = out.flush();
    }))?;
    Ok(ExitCode::SUCCESS)
}
