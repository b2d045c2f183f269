/*!
OTLP protobuf: an `ExportTraceServiceRequest` (what an OTLP/HTTP exporter
posts with `Content-Type: application/x-protobuf`) decoded into the shape
of its OTLP/JSON encoding, so that one mapping ([`super::otel`]) reads
both. A small wire decoder for the handful of messages involved
(`opentelemetry/proto/trace/v1/trace.proto` and `common/v1/common.proto`):
no code generator, and no dependency. Unknown fields are skipped, as
protobuf readers must; a truncated or malformed message is an error,
never a panic.

The JSON shape follows the OTLP/JSON rules: ids as hex strings, 64-bit
integers and times as decimal strings, camelCase field names.
*/

use serde_json::{Map, Value, json};

use crate::error::EventError;

/// Nesting deeper than this is refused (an `AnyValue` can nest itself).
const MAX_DEPTH: u32 = 32;

fn bad(what: &str) -> EventError {
    EventError::Invalid(format!("OTLP protobuf: {what}"))
}

/// One field of a message: its number and its value.
enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, at: 0 }
    }

    fn varint(&mut self) -> Result<u64, EventError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.at)
                .ok_or_else(|| bad("truncated varint"))?;
            self.at += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(bad("varint longer than 10 bytes"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], EventError> {
        let end = self
            .at
            .checked_add(n)
            .ok_or_else(|| bad("length overflow"))?;
        let s = self
            .buf
            .get(self.at..end)
            .ok_or_else(|| bad("field runs past the message"))?;
        self.at = end;
        Ok(s)
    }

    /// The next field, or `None` at the end.
    fn field(&mut self) -> Result<Option<(u64, Wire<'a>)>, EventError> {
        if self.at >= self.buf.len() {
            return Ok(None);
        }
        let tag = self.varint()?;
        let (num, kind) = (tag >> 3, tag & 7);
        if num == 0 {
            return Err(bad("field number 0"));
        }
        let w = match kind {
            0 => Wire::Varint(self.varint()?),
            1 => {
                let b = self.take(8)?;
                Wire::Fixed64(u64::from_le_bytes(
                    b.try_into().map_err(|_| bad("fixed64"))?,
                ))
            }
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| bad("length"))?;
                Wire::Bytes(self.take(n)?)
            }
            5 => {
                let b = self.take(4)?;
                Wire::Fixed32(u32::from_le_bytes(
                    b.try_into().map_err(|_| bad("fixed32"))?,
                ))
            }
            k => return Err(bad(&format!("wire type {k} (groups are not used by OTLP)"))),
        };
        Ok(Some((num, w)))
    }
}

fn string(b: &[u8]) -> Result<Value, EventError> {
    std::str::from_utf8(b)
        .map(|s| Value::String(s.to_string()))
        .map_err(|_| bad("a string field is not UTF-8"))
}

fn hex(b: &[u8]) -> Value {
    Value::String(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// `AnyValue`.
fn any_value(b: &[u8], depth: u32) -> Result<Value, EventError> {
    if depth > MAX_DEPTH {
        return Err(bad("values nested too deep"));
    }
    let mut r = Reader::new(b);
    let mut out = Map::new();
    while let Some((n, w)) = r.field()? {
        match (n, w) {
            (1, Wire::Bytes(s)) => {
                out.insert("stringValue".into(), string(s)?);
            }
            (2, Wire::Varint(v)) => {
                out.insert("boolValue".into(), Value::Bool(v != 0));
            }
            (3, Wire::Varint(v)) => {
                out.insert("intValue".into(), Value::String((v as i64).to_string()));
            }
            (4, Wire::Fixed64(v)) => {
                out.insert("doubleValue".into(), json!(f64::from_bits(v)));
            }
            (5, Wire::Bytes(s)) => {
                let values = repeated(s, |v| any_value(v, depth + 1))?;
                out.insert("arrayValue".into(), json!({ "values": values }));
            }
            (6, Wire::Bytes(s)) => {
                let values = repeated(s, |v| key_value(v, depth + 1))?;
                out.insert("kvlistValue".into(), json!({ "values": values }));
            }
            (7, Wire::Bytes(s)) => {
                out.insert("bytesValue".into(), hex(s));
            }
            _ => {}
        }
    }
    Ok(Value::Object(out))
}

/// The repeated message field 1 of `b` (`ArrayValue`, `KeyValueList`),
/// each read with `read`.
fn repeated(
    b: &[u8],
    mut read: impl FnMut(&[u8]) -> Result<Value, EventError>,
) -> Result<Vec<Value>, EventError> {
    let mut r = Reader::new(b);
    let mut out = Vec::new();
    while let Some((n, w)) = r.field()? {
        if let (1, Wire::Bytes(v)) = (n, w) {
            out.push(read(v)?);
        }
    }
    Ok(out)
}

/// `KeyValue`.
fn key_value(b: &[u8], depth: u32) -> Result<Value, EventError> {
    let mut r = Reader::new(b);
    let (mut key, mut value) = (Value::String(String::new()), Value::Object(Map::new()));
    while let Some((n, w)) = r.field()? {
        match (n, w) {
            (1, Wire::Bytes(s)) => key = string(s)?,
            (2, Wire::Bytes(s)) => value = any_value(s, depth + 1)?,
            _ => {}
        }
    }
    Ok(json!({"key": key, "value": value}))
}

/// The repeated `KeyValue` field `num` of a message, as `attributes`.
fn attributes_of(fields: &[(u64, &[u8])], num: u64) -> Result<Value, EventError> {
    fields
        .iter()
        .filter(|(n, _)| *n == num)
        .map(|(_, b)| key_value(b, 0))
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

/// A message's length-delimited fields, and its scalar ones.
type Fields<'a> = (Vec<(u64, &'a [u8])>, Vec<(u64, u64)>);

fn fields(b: &[u8]) -> Result<Fields<'_>, EventError> {
    let mut r = Reader::new(b);
    let (mut bytes, mut scalars) = (Vec::new(), Vec::new());
    while let Some((n, w)) = r.field()? {
        match w {
            Wire::Bytes(s) => bytes.push((n, s)),
            Wire::Varint(v) | Wire::Fixed64(v) => scalars.push((n, v)),
            Wire::Fixed32(v) => scalars.push((n, u64::from(v))),
        }
    }
    Ok((bytes, scalars))
}

fn scalar(s: &[(u64, u64)], num: u64) -> Option<u64> {
    s.iter().rev().find(|(n, _)| *n == num).map(|(_, v)| *v)
}

fn bytes_field<'a>(b: &[(u64, &'a [u8])], num: u64) -> Option<&'a [u8]> {
    b.iter().rev().find(|(n, _)| *n == num).map(|(_, v)| *v)
}

/// `Span.Event`.
fn event(b: &[u8]) -> Result<Value, EventError> {
    let (bytes, scalars) = fields(b)?;
    Ok(json!({
        "timeUnixNano": scalar(&scalars, 1).unwrap_or(0).to_string(),
        "name": bytes_field(&bytes, 2).map(string).transpose()?.unwrap_or(Value::String(String::new())),
        "attributes": attributes_of(&bytes, 3)?,
    }))
}

/// `Span`.
fn span(b: &[u8]) -> Result<Value, EventError> {
    let (bytes, scalars) = fields(b)?;
    let status = match bytes_field(&bytes, 15) {
        Some(s) => {
            let (sb, ss) = fields(s)?;
            json!({
                "message": bytes_field(&sb, 2).map(string).transpose()?.unwrap_or(Value::String(String::new())),
                "code": scalar(&ss, 3).unwrap_or(0),
            })
        }
        None => json!({}),
    };
    let events = bytes
        .iter()
        .filter(|(n, _)| *n == 11)
        .map(|(_, e)| event(e))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json!({
        "traceId": bytes_field(&bytes, 1).map_or(Value::String(String::new()), hex),
        "spanId": bytes_field(&bytes, 2).map_or(Value::String(String::new()), hex),
        "parentSpanId": bytes_field(&bytes, 4).map_or(Value::String(String::new()), hex),
        "name": bytes_field(&bytes, 5).map(string).transpose()?.unwrap_or(Value::String(String::new())),
        "kind": scalar(&scalars, 6).unwrap_or(0),
        "startTimeUnixNano": scalar(&scalars, 7).unwrap_or(0).to_string(),
        "endTimeUnixNano": scalar(&scalars, 8).unwrap_or(0).to_string(),
        "attributes": attributes_of(&bytes, 9)?,
        "events": events,
        "status": status,
    }))
}

/// An `ExportTraceServiceRequest` (or `TracesData`: the same field 1) in
/// the OTLP/JSON shape (`{"resourceSpans": [...]}`).
pub fn decode_traces(b: &[u8]) -> Result<Value, EventError> {
    let (top, _) = fields(b)?;
    let mut resource_spans = Vec::new();
    for (_, rs) in top.iter().filter(|(n, _)| *n == 1) {
        let (rb, _) = fields(rs)?;
        let resource = match bytes_field(&rb, 1) {
            Some(r) => {
                let (b, _) = fields(r)?;
                json!({"attributes": attributes_of(&b, 1)?})
            }
            None => json!({"attributes": []}),
        };
        let mut scopes = Vec::new();
        for (_, ss) in rb.iter().filter(|(n, _)| *n == 2) {
            let (sb, _) = fields(ss)?;
            let spans = sb
                .iter()
                .filter(|(n, _)| *n == 2)
                .map(|(_, s)| span(s))
                .collect::<Result<Vec<_>, _>>()?;
            let scope = match bytes_field(&sb, 1) {
                Some(s) => {
                    let (b, _) = fields(s)?;
                    json!({"name": bytes_field(&b, 1).map(string).transpose()?.unwrap_or(Value::String(String::new()))})
                }
                None => json!({}),
            };
            scopes.push(json!({"scope": scope, "spans": spans}));
        }
        resource_spans.push(json!({"resource": resource, "scopeSpans": scopes}));
    }
    Ok(json!({ "resourceSpans": resource_spans }))
}

/// The messages of a file the Collector's file exporter wrote with
/// `format: proto`: each message after its length, 4 bytes big-endian,
/// read from `r` one at a time (the file is never held whole). Yields
/// (the message's byte offset, the message), or an error naming the
/// offset where the file is cut short (and nothing after it).
pub fn frames<R: std::io::Read>(r: R) -> Frames<R> {
    Frames {
        r,
        at: 0,
        done: false,
    }
}

/// See [`frames`].
pub struct Frames<R> {
    r: R,
    at: u64,
    done: bool,
}

impl<R: std::io::Read> Frames<R> {
    /// Up to `n` bytes (fewer only at the end of the input).
    fn take(&mut self, n: u64) -> Result<Vec<u8>, EventError> {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(&mut self.r, n), &mut buf)
            .map_err(|e| EventError::Invalid(format!("byte {}: {e}", self.at)))?;
        Ok(buf)
    }

    fn next_frame(&mut self) -> Result<Option<(u64, Vec<u8>)>, EventError> {
        let at = self.at;
        let head = self.take(4)?;
        match head.len() {
            0 => return Ok(None),
            4 => {}
            k => {
                return Err(EventError::Invalid(format!(
                    "byte {at}: {k} bytes left, too few for a message length"
                )));
            }
        }
        let n = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let msg = self.take(u64::from(n))?;
        if msg.len() < n as usize {
            return Err(EventError::Invalid(format!(
                "byte {at}: a message of {n} bytes, but only {} are left",
                msg.len()
            )));
        }
        self.at = at + 4 + u64::from(n);
        Ok(Some((at, msg)))
    }
}

impl<R: std::io::Read> Iterator for Frames<R> {
    type Item = Result<(u64, Vec<u8>), EventError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let r = self.next_frame().transpose();
        self.done = !matches!(r, Some(Ok(_)));
        r
    }
}

/// Encoders for tests (and for a client that wants to send protobuf):
/// the inverse of the decoder, field by field.
pub mod encode {
    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// A length-delimited field.
    pub fn bytes(num: u64, b: &[u8], out: &mut Vec<u8>) {
        varint(num << 3 | 2, out);
        varint(b.len() as u64, out);
        out.extend_from_slice(b);
    }

    /// A fixed64 field.
    pub fn fixed64(num: u64, v: u64, out: &mut Vec<u8>) {
        varint(num << 3 | 1, out);
        out.extend_from_slice(&v.to_le_bytes());
    }

    /// A varint field.
    pub fn uint(num: u64, v: u64, out: &mut Vec<u8>) {
        varint(num << 3, out);
        varint(v, out);
    }

    /// A `KeyValue` with a string value.
    pub fn kv_str(key: &str, value: &str) -> Vec<u8> {
        let mut any = Vec::new();
        bytes(1, value.as_bytes(), &mut any);
        let mut kv = Vec::new();
        bytes(1, key.as_bytes(), &mut kv);
        bytes(2, &any, &mut kv);
        kv
    }

    /// A `KeyValue` with an int value.
    pub fn kv_int(key: &str, value: i64) -> Vec<u8> {
        let mut any = Vec::new();
        uint(3, value as u64, &mut any);
        let mut kv = Vec::new();
        bytes(1, key.as_bytes(), &mut kv);
        bytes(2, &any, &mut kv);
        kv
    }
}

#[cfg(test)]
mod tests {
    use super::encode::*;
    use super::*;

    #[test]
    fn file_exporter_frames_are_split_by_their_lengths() {
        let mut file = Vec::new();
        for m in [&b"abc"[..], &b""[..], &b"hello"[..]] {
            file.extend((m.len() as u32).to_be_bytes());
            file.extend(m);
        }
        let got: Vec<(u64, Vec<u8>)> = frames(&file[..]).map(Result::unwrap).collect();
        assert_eq!(
            got,
            vec![
                (0, b"abc".to_vec()),
                (7, Vec::new()),
                (11, b"hello".to_vec())
            ]
        );
        // Cut short: the place is named, and nothing is read past it.
        let cut = &file[..file.len() - 2];
        let all: Vec<_> = frames(cut).collect();
        assert_eq!(all.len(), 3);
        let e = all[2].as_ref().unwrap_err().to_string();
        assert!(e.contains("byte 11") && e.contains("5 bytes"), "{e}");
        assert!(frames(&[0, 0][..]).next().unwrap().is_err());
    }

    /// An export request with one GenAI chat span and one plain HTTP span,
    /// as an OTLP/HTTP protobuf exporter sends it.
    fn request() -> Vec<u8> {
        let mut span = Vec::new();
        bytes(1, &[0xaa; 16], &mut span);
        bytes(2, &[0xbb; 8], &mut span);
        bytes(5, b"chat atlas-3", &mut span);
        uint(6, 3, &mut span);
        fixed64(7, 1_787_113_201_719_000_000, &mut span);
        fixed64(8, 1_787_113_203_219_000_000, &mut span);
        for kv in [
            kv_str("gen_ai.operation.name", "chat"),
            kv_str("gen_ai.provider.name", "openai"),
            kv_str("gen_ai.request.model", "atlas-3"),
            kv_int("gen_ai.request.max_tokens", 2048),
            kv_str("user.id", "acct_otlp"),
            kv_int("gen_ai.usage.input_tokens", 31),
            kv_int("gen_ai.usage.output_tokens", 700),
            kv_str(
                "gen_ai.input.messages",
                r#"[{"role":"user","parts":[{"type":"text","content":"Think step by step: is 221 prime?"}]}]"#,
            ),
        ] {
            bytes(9, &kv, &mut span);
        }
        let mut status = Vec::new();
        uint(3, 1, &mut status);
        bytes(15, &status, &mut span);
        let mut plain = Vec::new();
        bytes(5, b"GET /health", &mut plain);
        bytes(9, &kv_str("http.request.method", "GET"), &mut plain);
        let mut scope = Vec::new();
        let mut scope_name = Vec::new();
        bytes(
            1,
            b"opentelemetry.instrumentation.openai_v2",
            &mut scope_name,
        );
        bytes(1, &scope_name, &mut scope);
        bytes(2, &span, &mut scope);
        bytes(2, &plain, &mut scope);
        let mut resource = Vec::new();
        bytes(1, &kv_str("service.name", "tutor-app"), &mut resource);
        let mut rs = Vec::new();
        bytes(1, &resource, &mut rs);
        bytes(2, &scope, &mut rs);
        let mut req = Vec::new();
        bytes(1, &rs, &mut req);
        req
    }

    #[test]
    fn a_protobuf_export_reads_as_its_json_encoding_does() {
        let events = crate::import::otel::parse_protobuf(&request()).unwrap();
        assert_eq!(events.len(), 1, "the HTTP span is not a GenAI request");
        let e = &events[0];
        assert_eq!(e.account_id, "acct_otlp");
        assert_eq!(e.model.as_deref(), Some("atlas-3"));
        assert_eq!(e.ts.millis(), 1_787_113_201_719);
        assert_eq!(e.latency_ms, Some(1500.0));
        assert_eq!(e.request.sampling.max_tokens, Some(2048));
        assert!(e.request.last_user_text.contains("step by step"));
        let r = e.response.as_ref().unwrap();
        assert_eq!((r.input_tokens, r.output_tokens), (Some(31), Some(700)));
        // The same request written as OTLP/JSON gives the same event.
        let json = decode_traces(&request()).unwrap();
        assert_eq!(
            json["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"],
            "aa".repeat(16)
        );
        let line = serde_json::to_string(&json).unwrap();
        let from_json = crate::import::otel::parse_line(&line).unwrap();
        assert_eq!(from_json[0].account_id, e.account_id);
        assert_eq!(from_json[0].ts, e.ts);
        assert_eq!(from_json[0].request, e.request);
    }

    #[test]
    fn truncated_or_malformed_bytes_are_errors_never_panics() {
        let req = request();
        for n in 0..req.len() {
            // Every prefix: an error or fewer spans, never a panic.
            let _ = decode_traces(&req[..n]);
        }
        assert!(decode_traces(&req[..req.len() - 3]).is_err());
        assert!(decode_traces(&[0x0b]).is_err(), "wire type 3 (a group)");
        assert!(decode_traces(&[0xff; 11]).is_err(), "an endless varint");
        // Deeply nested values are refused, not recursed into for ever.
        let mut any = Vec::new();
        bytes(1, b"x", &mut any);
        for _ in 0..100 {
            let mut arr = Vec::new();
            bytes(1, &any, &mut arr);
            let mut outer = Vec::new();
            bytes(5, &arr, &mut outer);
            any = outer;
        }
        let mut kv = Vec::new();
        bytes(1, b"k", &mut kv);
        bytes(2, &any, &mut kv);
        let mut span = Vec::new();
        bytes(9, &kv, &mut span);
        let mut scope = Vec::new();
        bytes(2, &span, &mut scope);
        let mut rs = Vec::new();
        bytes(2, &scope, &mut rs);
        let mut req = Vec::new();
        bytes(1, &rs, &mut req);
        assert!(
            decode_traces(&req)
                .unwrap_err()
                .to_string()
                .contains("nested")
        );
    }
}
