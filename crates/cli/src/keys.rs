//! `distillguard keys`: API keys of the gateway, admin tokens, and the
//! audit log of operator actions.
//!
//! The store is a SQLite file (the default) or a PostgreSQL URL
//! (`--db postgres://…`), the same locator as the gateway's `keys_db`.
//! Every change is written to the store's audit log as
//! `cli:<user>@<host>`.

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};

use crate::Format;

#[derive(Args)]
pub(crate) struct KeysArgs {
    #[command(subcommand)]
    cmd: KeysCommand,
    /// The key store: a SQLite file, or `postgres://user@host/db`.
    #[arg(long, default_value = "distillguard.db", global = true)]
    db: String,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key for an account; the key is printed once, never stored.
    Create {
        /// The account the key belongs to.
        #[arg(long)]
        account: String,
        /// The account's tier (its request limits: see docs/scoreboard.md).
        #[arg(long, default_value = "tier1")]
        tier: String,
    },
    /// List keys (ids, accounts, tiers; never secrets).
    List {
        /// Output: `table` for people, `json` for tools.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Revoke a key by its id.
    Revoke {
        /// The key's id (the part between `dg_` and the secret, or as `keys list` shows it).
        id: String,
        /// Why, for the audit log.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// The newest operator actions (keys created and revoked, overrides,
    /// reloads): who, when, what, why. Newest first.
    Audit {
        /// How many entries.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Output: `table` for people, `json` for tools.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// A new admin token for the gateway's admin API: the token is
    /// printed once on standard output, the config line with its hash on
    /// standard error. Nothing is stored.
    AdminToken,
}

/// `cli:<user>@<host>`, as the audit log names this operator.
fn actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("cli:{user}@{host}")
}

pub(crate) fn run(args: KeysArgs) -> Result<ExitCode> {
    let KeysArgs { cmd, db } = args;
    let mut out = io::stdout().lock();
    if let KeysCommand::AdminToken = cmd {
        let token = format!("dgadmin_{}", distillguard_storage::random_token()?);
        writeln!(out, "{token}")?;
        let _ = writeln!(
            io::stderr(),
            "put this in the gateway config (the token is shown once and not stored):\n[admin]\ntoken_sha256 = \"{}\"",
            distillguard_storage::sha256_hex(&token)
        );
        return Ok(ExitCode::SUCCESS);
    }
    // Only `create` makes a store: listing or revoking in a mistyped path
    // must not leave an empty database behind.
    let store = match &cmd {
        KeysCommand::Create { .. } => distillguard_storage::open(&db)?,
        _ => distillguard_storage::open_existing(&db)?,
    };
    match cmd {
        KeysCommand::Create { account, tier } => {
            check_new_key(&account, &tier)?;
            let (rec, key) = store.create_key(&account, &tier, &actor())?;
            writeln!(out, "{key}")?;
            let _ = writeln!(
                io::stderr(),
                "key {} for account {} ({}): shown once, stored only as a hash",
                rec.id,
                rec.account,
                rec.tier
            );
        }
        KeysCommand::List { format } => {
            let rows = store.keys()?;
            match format {
                Format::Table => {
                    writeln!(
                        out,
                        "{:<14} {:<28} {:<12} {:<25}revoked",
                        "id", "account", "tier", "created"
                    )?;
                    for r in rows {
                        // RFC 3339, not epoch seconds.
                        let created = distillguard_core::Timestamp::from_millis(
                            r.created.saturating_mul(1000),
                        );
                        writeln!(
                            out,
                            "{:<14} {:<28} {:<12} {:<25}{}",
                            r.id,
                            r.account,
                            r.tier,
                            created.to_string(),
                            r.revoked
                        )?;
                    }
                }
                Format::Json => {
                    let v: Vec<serde_json::Value> = rows
                        .iter()
                        .map(|r| serde_json::json!({"id": r.id, "account": r.account, "tier": r.tier, "created": r.created, "created_at": distillguard_core::Timestamp::from_millis(r.created.saturating_mul(1000)).to_string(), "revoked": r.revoked}))
                        .collect();
                    serde_json::to_writer_pretty(&mut out, &v)?;
                    writeln!(out)?;
                }
            }
        }
        KeysCommand::Revoke { id, reason } => {
            store.revoke_key(&id, &actor(), &reason)?;
            writeln!(out, "revoked {id}")?;
        }
        KeysCommand::Audit { limit, format } => {
            let log = store.audit_log(limit)?;
            match format {
                Format::Table => {
                    writeln!(
                        out,
                        "{:<12}{:<28}{:<16}{:<24}detail",
                        "at", "actor", "action", "target"
                    )?;
                    for e in log {
                        writeln!(
                            out,
                            "{:<12}{:<28}{:<16}{:<24}{}",
                            e.at,
                            e.actor,
                            e.action,
                            e.target,
                            e.detail.escape_debug()
                        )?;
                    }
                }
                Format::Json => {
                    let v: Vec<serde_json::Value> = log
                        .iter()
                        .map(|e| serde_json::json!({"at": e.at, "actor": e.actor, "action": e.action, "target": e.target, "detail": e.detail}))
                        .collect();
                    serde_json::to_writer_pretty(&mut out, &v)?;
                    writeln!(out)?;
                }
            }
        }
        KeysCommand::AdminToken => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// A new key's account and tier: refused with the reason, or a note for
/// a tier without built-in limits.
fn check_new_key(account: &str, tier: &str) -> Result<()> {
    if account.trim().is_empty() || account.chars().any(char::is_control) {
        bail!("--account {account:?}: give the account's id (not empty, no control characters)");
    }
    if tier.is_empty()
        || !tier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        bail!("tier {tier:?}: use letters, digits, '_' and '-'");
    }
    if !distillguard_core::tier::TIER_LIMITS
        .iter()
        .any(|(t, _)| *t == tier)
    {
        let _ = writeln!(
            io::stderr(),
            "note: {tier:?} is not a built-in tier ({}); give it limits in the gateway's [limits.tiers.{tier}], else it gets tier1's",
            distillguard_core::tier::TIER_LIMITS
                .iter()
                .map(|t| t.0)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}
