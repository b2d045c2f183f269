/*!
Reading JSON Lines sources: files, `.gz` files (detected by their magic
bytes, not their name) and standard input (`-`).

Lines are read with a length cap so that one enormous line cannot exhaust
memory; a bad line becomes a [`LineError`] with file and line number and
reading goes on (unless strict). Counters say how many lines were read,
accepted and rejected, so a summary can be printed at the end.
*/

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::marker::PhantomData;
use std::path::Path;

use flate2::read::MultiGzDecoder;
use serde::de::DeserializeOwned;

use crate::error::{EventError, LineError, ReadError};
use crate::event::Event;
use crate::normalize::parse_event_line;

/// Default cap on one line: 64 MiB (real bodies with pasted documents and
/// images run to megabytes; beyond this it is not an API request).
pub const DEFAULT_MAX_LINE: usize = 64 << 20;

/// Counts of what a reader saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadStats {
    pub lines: u64,
    pub blank: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// Bytes read from the (decompressed) stream.
    pub bytes: u64,
}

/// A line-oriented source with place tracking.
pub struct Lines {
    name: String,
    inner: Box<dyn BufRead + Send>,
    line_no: u64,
    max_line: usize,
    buf: Vec<u8>,
    pub stats: ReadStats,
}

/// Opens `path` (or stdin for `-`), transparently decompressing gzip.
pub fn open_source(path: &Path) -> Result<(String, Box<dyn BufRead + Send>), ReadError> {
    let (name, raw): (String, Box<dyn Read + Send>) = if path.as_os_str() == "-" {
        ("<stdin>".to_string(), Box::new(io::stdin()))
    } else {
        let f = File::open(path).map_err(|source| ReadError::Open {
            path: path.to_path_buf(),
            cause: source,
        })?;
        (path.display().to_string(), Box::new(f))
    };
    let mut br = BufReader::with_capacity(1 << 18, raw);
    let head = br.fill_buf().map_err(|source| ReadError::Io {
        source_name: name.clone(),
        line: 0,
        cause: source,
    })?;
    let gz = head.starts_with(&[0x1f, 0x8b]);
    let reader: Box<dyn BufRead + Send> = if gz {
        Box::new(BufReader::with_capacity(1 << 18, MultiGzDecoder::new(br)))
    } else {
        Box::new(br)
    };
    Ok((name, reader))
}

impl Lines {
    pub fn open(path: &Path) -> Result<Self, ReadError> {
        let (name, inner) = open_source(path)?;
        Ok(Self::from_reader(name, inner))
    }

    pub fn from_reader(name: impl Into<String>, inner: Box<dyn BufRead + Send>) -> Self {
        Lines {
            name: name.into(),
            inner,
            line_no: 0,
            max_line: DEFAULT_MAX_LINE,
            buf: Vec::with_capacity(1 << 14),
            stats: ReadStats::default(),
        }
    }

    pub fn with_max_line(mut self, max: usize) -> Self {
        self.max_line = max;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Makes a located error for the current line.
    pub fn error(&self, error: EventError) -> LineError {
        LineError {
            source_name: self.name.clone(),
            line: self.line_no,
            error,
        }
    }

    /// The next non-blank line: `Ok(None)` at the end; `Ok(Some(Err))` for a
    /// line that is too long or not UTF-8 (already skipped).
    pub fn next_line(&mut self) -> Result<Option<Result<&str, LineError>>, ReadError> {
        loop {
            self.buf.clear();
            let mut too_long = false;
            let mut any = false;
            loop {
                let chunk = self.inner.fill_buf().map_err(|source| ReadError::Io {
                    source_name: self.name.clone(),
                    line: self.line_no,
                    cause: source,
                })?;
                if chunk.is_empty() {
                    break;
                }
                any = true;
                let (take, done) = match memchr(b'\n', chunk) {
                    Some(i) => (i + 1, true),
                    None => (chunk.len(), false),
                };
                if !too_long {
                    if self.buf.len() + take > self.max_line + 1 {
                        too_long = true;
                        self.buf.clear();
                    } else {
                        self.buf.extend_from_slice(&chunk[..take]);
                    }
                }
                self.stats.bytes += take as u64;
                self.inner.consume(take);
                if done {
                    break;
                }
            }
            if !any {
                return Ok(None);
            }
            self.line_no += 1;
            self.stats.lines += 1;
            if too_long {
                self.stats.rejected += 1;
                return Ok(Some(Err(self.error(EventError::TooLong {
                    limit: self.max_line,
                }))));
            }
            while matches!(self.buf.last(), Some(b'\n' | b'\r')) {
                self.buf.pop();
            }
            if self.buf.iter().all(u8::is_ascii_whitespace) {
                self.stats.blank += 1;
                continue;
            }
            return match std::str::from_utf8(&self.buf) {
                Ok(s) => Ok(Some(Ok(s))),
                Err(_) => {
                    self.stats.rejected += 1;
                    Ok(Some(Err(self.error(EventError::Utf8))))
                }
            };
        }
    }
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    memchr::memchr(needle, hay)
}

/// Reads events from one source. Each item is an event or a located error.
pub struct EventReader {
    lines: Lines,
}

impl EventReader {
    pub fn open(path: &Path) -> Result<Self, ReadError> {
        Ok(EventReader {
            lines: Lines::open(path)?,
        })
    }

    pub fn from_lines(lines: Lines) -> Self {
        EventReader { lines }
    }

    pub fn stats(&self) -> ReadStats {
        self.lines.stats
    }

    pub fn name(&self) -> &str {
        self.lines.name()
    }

    /// The next event, a located error for a bad line, or `None` at the end.
    pub fn next_event(&mut self) -> Result<Option<Result<Event, LineError>>, ReadError> {
        let parsed = match self.lines.next_line()? {
            None => return Ok(None),
            Some(Err(e)) => return Ok(Some(Err(e))),
            Some(Ok(line)) => parse_event_line(line),
        };
        Ok(Some(match parsed {
            Ok(ev) => {
                self.lines.stats.accepted += 1;
                Ok(ev)
            }
            Err(e) => {
                self.lines.stats.rejected += 1;
                Err(self.lines.error(e))
            }
        }))
    }
}

/// Reads typed records (accounts, models, truth) from a JSON Lines source.
pub struct RecordReader<T> {
    lines: Lines,
    _t: PhantomData<T>,
}

impl<T: DeserializeOwned> RecordReader<T> {
    pub fn open(path: &Path) -> Result<Self, ReadError> {
        Ok(RecordReader {
            lines: Lines::open(path)?,
            _t: PhantomData,
        })
    }

    pub fn from_lines(lines: Lines) -> Self {
        RecordReader {
            lines,
            _t: PhantomData,
        }
    }

    pub fn stats(&self) -> ReadStats {
        self.lines.stats
    }

    pub fn next_record(&mut self) -> Result<Option<Result<T, LineError>>, ReadError> {
        let parsed = match self.lines.next_line()? {
            None => return Ok(None),
            Some(Err(e)) => return Ok(Some(Err(e))),
            Some(Ok(line)) => parse_record::<T>(line),
        };
        Ok(Some(match parsed {
            Ok(v) => {
                self.lines.stats.accepted += 1;
                Ok(v)
            }
            Err(e) => {
                self.lines.stats.rejected += 1;
                Err(self.lines.error(e))
            }
        }))
    }

    /// Reads everything: records, plus the bad lines (or the first bad line
    /// as an error in strict mode).
    pub fn read_all(mut self, strict: bool) -> Result<(Vec<T>, Vec<LineError>), ReadError> {
        let mut out = Vec::new();
        let mut bad = Vec::new();
        while let Some(item) = self.next_record()? {
            match item {
                Ok(v) => out.push(v),
                Err(e) if strict => return Err(ReadError::Strict(e)),
                Err(e) => bad.push(e),
            }
        }
        Ok((out, bad))
    }
}

/// Parses one record line, naming the failing field.
pub fn parse_record<'a, T: serde::Deserialize<'a>>(line: &'a str) -> Result<T, EventError> {
    crate::json::parse_at(line, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{AccountRecord, ModelRelease};
    use std::io::Write;

    fn lines_of(text: &str) -> Lines {
        Lines::from_reader(
            "mem.jsonl",
            Box::new(io::Cursor::new(text.as_bytes().to_vec())),
        )
    }

    const GOOD: &str = r#"{"ts":"2026-02-24T08:00:00Z","account_id":"a","request":{"messages":[{"role":"user","content":"hi"}]}}"#;

    #[test]
    fn bad_lines_are_reported_with_place_and_reading_goes_on() {
        let text =
            format!("{GOOD}\n\nnot json\n{GOOD}\r\n{{\"ts\":\"2026-02-24T08:00:00Z\"}}\n{GOOD}");
        let mut r = EventReader::from_lines(lines_of(&text));
        let mut ok = 0;
        let mut errs = Vec::new();
        while let Some(item) = r.next_event().unwrap() {
            match item {
                Ok(_) => ok += 1,
                Err(e) => errs.push(e.to_string()),
            }
        }
        assert_eq!(ok, 3);
        assert_eq!(errs.len(), 2);
        assert!(
            errs[0].starts_with("mem.jsonl:3: invalid JSON"),
            "{}",
            errs[0]
        );
        assert!(
            errs[1].starts_with("mem.jsonl:5: missing required field `account_id`"),
            "{}",
            errs[1]
        );
        let s = r.stats();
        assert_eq!((s.lines, s.blank, s.accepted, s.rejected), (6, 1, 3, 2));
    }

    #[test]
    fn too_long_and_non_utf8_lines_are_skipped() {
        let long = format!("{{\"x\":\"{}\"}}", "y".repeat(5000));
        let mut bytes = format!("{GOOD}\n{long}\n").into_bytes();
        bytes.extend_from_slice(b"\xff\xfe\n");
        bytes.extend_from_slice(GOOD.as_bytes());
        let lines = Lines::from_reader("m", Box::new(io::Cursor::new(bytes))).with_max_line(1000);
        let mut r = EventReader::from_lines(lines);
        let mut seen = Vec::new();
        while let Some(item) = r.next_event().unwrap() {
            seen.push(
                item.map(|_| "ok".to_string())
                    .unwrap_or_else(|e| e.to_string()),
            );
        }
        assert_eq!(seen[0], "ok");
        assert!(seen[1].contains("m:2: line is longer"), "{}", seen[1]);
        assert!(seen[2].contains("m:3: line is not valid UTF-8"));
        assert_eq!(seen[3], "ok");
    }

    #[test]
    fn gzip_is_detected_by_magic_bytes() {
        let dir = std::env::temp_dir().join(format!("dg-reader-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("no-extension");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        writeln!(gz, "{GOOD}\n{GOOD}").unwrap();
        std::fs::write(&path, gz.finish().unwrap()).unwrap();
        let mut r = EventReader::open(&path).unwrap();
        let mut n = 0;
        while let Some(item) = r.next_event().unwrap() {
            item.unwrap();
            n += 1;
        }
        assert_eq!(n, 2);
        std::fs::remove_dir_all(&dir).unwrap();
        let missing = EventReader::open(Path::new("/nonexistent/x.jsonl"))
            .err()
            .unwrap();
        assert!(
            missing
                .to_string()
                .contains("cannot open /nonexistent/x.jsonl")
        );
    }

    #[test]
    fn records_report_missing_and_mistyped_fields() {
        let text = "{\"account_id\":\"a\",\"tier\":\"free\",\"verified\":true}\n{\"tier\":\"x\"}\n{\"account_id\":\"b\",\"created_at\":\"soon\"}\n";
        let (ok, bad) = RecordReader::<AccountRecord>::from_lines(lines_of(text))
            .read_all(false)
            .unwrap();
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].tier.as_deref(), Some("free"));
        assert!(
            bad[0]
                .to_string()
                .contains("mem.jsonl:2: field `account_id`: missing required field"),
            "{}",
            bad[0]
        );
        assert!(
            bad[1]
                .to_string()
                .contains("mem.jsonl:3: field `created_at`"),
            "{}",
            bad[1]
        );
        let strict =
            RecordReader::<ModelRelease>::from_lines(lines_of("{\"model\":1}\n")).read_all(true);
        assert!(matches!(strict, Err(ReadError::Strict(_))));
    }
}
