/*!
Typed errors of the core crate.

[`EventError`] says why one line is not an event; [`LineError`] adds where
(file and line), which is what a user sees. Reading goes on after a bad
line unless the caller asked for strict mode.
*/

use std::path::PathBuf;

/// Why one line could not be turned into an event or record.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EventError {
    #[error("invalid JSON (column {column}): {reason}")]
    Json { column: usize, reason: String },
    #[error("missing required field `{0}`")]
    Missing(&'static str),
    #[error("field `{path}`: {reason}")]
    Field { path: String, reason: String },
    #[error("invalid value: {0}")]
    Invalid(String),
    #[error("line is not valid UTF-8")]
    Utf8,
    #[error("line is longer than the limit of {limit} bytes (skipped)")]
    TooLong { limit: usize },
}

/// A setting the types allow but its meaning does not (thresholds out of
/// order, a subject NATS refuses), said for a human: what the `validate`
/// of a config section returns; the caller adds the section's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl Invalid {
    /// The same error, its message prefixed with the section it is in.
    pub fn within(self, section: &str) -> Invalid {
        Invalid(format!("{section}: {}", self.0))
    }
}

impl From<&str> for Invalid {
    fn from(s: &str) -> Invalid {
        Invalid(s.to_string())
    }
}

impl From<String> for Invalid {
    fn from(s: String) -> Invalid {
        Invalid(s)
    }
}

/// A bad line, with its place.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{source_name}:{line}: {error}")]
pub struct LineError {
    /// File path, or `<stdin>`.
    pub source_name: String,
    /// 1-based line number.
    pub line: u64,
    #[source]
    pub error: EventError,
}

/// Failures that stop reading altogether.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    // The OS error is in the message and not a `source`, so that a report
    // of the error chain does not print it twice.
    #[error("cannot open {path}: {cause}")]
    Open {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{source_name}: read failed after line {line}: {cause}")]
    Io {
        source_name: String,
        line: u64,
        cause: std::io::Error,
    },
    /// Strict mode: the first bad line ends the read.
    #[error("{0} (stopped: strict mode)")]
    Strict(LineError),
    /// The caller's sink asked to stop (not a fault of the input).
    #[error("read stopped by the caller")]
    Stopped,
}

impl ReadError {
    /// For a read that failed part-way through a file (a truncated gzip,
    /// an I/O error), the file and the last line read: the lines before it
    /// were delivered, so a caller may report the place and go on.
    pub fn part_way(&self) -> Option<(&str, u64)> {
        match self {
            ReadError::Io {
                source_name, line, ..
            } => Some((source_name, *line)),
            _ => None,
        }
    }
}
