//! What the pipeline knows besides requests: the provider's account
//! records (sign-up, payment, verification) and model releases, read from
//! their files the same way by `analyze`, the gateway and the workers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use distillguard_core::{
    AccountInfo, AccountRecord, LineError, ModelRelease, ReadError, RecordReader,
};

/// Account records and model releases.
#[derive(Debug, Clone, Default)]
pub struct Known {
    pub accounts: HashMap<String, AccountInfo>,
    pub models: Vec<ModelRelease>,
}

/// A file of [`Known`] that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{what} {}: {source}", path.display())]
pub struct KnownError {
    /// `accounts` or `models`.
    pub what: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: ReadError,
}

/// Lines of the files that were skipped (without `strict`), by file.
#[derive(Debug, Default)]
pub struct Skipped {
    pub accounts: Vec<LineError>,
    pub models: Vec<LineError>,
}

impl Known {
    /// Reads the accounts file (`accounts.jsonl`) and the models file
    /// (`models.jsonl`), either optional. With `strict`, a bad line is an
    /// error that names it; without, bad lines are skipped and returned.
    pub fn load(
        accounts: Option<&Path>,
        models: Option<&Path>,
        strict: bool,
    ) -> Result<(Known, Skipped), KnownError> {
        let mut k = Known::default();
        let mut skipped = Skipped::default();
        if let Some(p) = accounts {
            let (rows, bad) = read::<AccountRecord>("accounts", p, strict)?;
            k.accounts = rows.into_iter().map(AccountRecord::into_parts).collect();
            skipped.accounts = bad;
        }
        if let Some(p) = models {
            let (rows, bad) = read::<ModelRelease>("models", p, strict)?;
            k.models = rows;
            skipped.models = bad;
        }
        Ok((k, skipped))
    }
}

fn read<T: serde::de::DeserializeOwned>(
    what: &'static str,
    path: &Path,
    strict: bool,
) -> Result<(Vec<T>, Vec<LineError>), KnownError> {
    RecordReader::<T>::open(path)
        .and_then(|r| r.read_all(strict))
        .map_err(|source| KnownError {
            what,
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn files_are_read_and_bad_lines_named_or_skipped() {
        let dir = std::env::temp_dir().join(format!("dg-known-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let accounts = dir.join("accounts.jsonl");
        std::fs::write(
            &accounts,
            "{\"account_id\":\"a1\",\"created_at\":\"2026-01-01T00:00:00Z\"}\nnot json\n",
        )
        .unwrap();
        let e = Known::load(Some(&accounts), None, true).unwrap_err();
        assert!(e.to_string().starts_with("accounts "), "{e}");
        assert!(e.to_string().contains(":2:"), "{e}");
        let (k, skipped) = Known::load(Some(&accounts), None, false).unwrap();
        assert_eq!(k.accounts.len(), 1);
        assert_eq!(skipped.accounts.len(), 1);
        assert!(k.models.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
