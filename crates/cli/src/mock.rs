//! `distillguard upstream-mock`: the test and demo model server.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::wm_data;

/// `upstream-mock`'s arguments.
#[derive(clap::Args)]
pub(crate) struct MockArgs {
    /// Address to listen on (port 0: any free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub listen: String,
    /// Models listed by /v1/models (any model name is answered).
    #[arg(long, default_value = "atlas-2-pro,atlas-3")]
    pub models: String,
    /// Delay before the first token (ms).
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Delay between streamed chunks (ms).
    #[arg(long, default_value_t = 0)]
    pub chunk_ms: u64,
    /// Add reasoning (OpenAI `reasoning_content`, Anthropic `thinking` blocks).
    #[arg(long)]
    pub reasoning: bool,
    /// Answer with the reference teacher, watermarked with this key
    /// (KGW γ 0.25 δ 2, h 1); default: canned filler text.
    #[arg(long)]
    pub watermark_key: Option<PathBuf>,
    /// Teacher training text: auto, embedded, or a path.
    #[arg(long, default_value = "auto")]
    pub corpus: String,
    /// Inject a fault into every answer: status:CODE, reset (after 256
    /// bytes), drip:MS (16 bytes every MS ms) or hang.
    #[arg(long)]
    pub fault: Option<distillguard_mock::Fault>,
}

pub(crate) fn run(a: MockArgs) -> Result<ExitCode> {
    use distillguard_mock::{Config, Source};
    let MockArgs {
        listen,
        models,
        latency_ms,
        chunk_ms,
        reasoning,
        watermark_key: key,
        corpus,
        fault,
    } = a;
    let (listen, models, corpus) = (listen.as_str(), models.as_str(), corpus.as_str());
    let source = match key.as_deref() {
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
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        let addr = listener.local_addr()?;
        let mut out = io::stdout().lock();
        let _ = writeln!(out, "upstream-mock listening on http://{addr}");
        let _ = out.flush();
        drop(out);
        distillguard_mock::serve(listener, cfg, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serving")
    })?;
    Ok(ExitCode::SUCCESS)
}
