/*!
Parsing JSON into typed values with errors that name the bad field.

The fast path is a plain `serde_json` parse. Only when it fails is the text
parsed again with path tracking (`serde_path_to_error`), so well-formed
input pays nothing for good error messages.
*/

use serde::Deserialize;

use crate::error::EventError;

/// `serde_json`'s message without its " at line … column …" suffix (the
/// caller reports the place in its own terms).
pub(crate) fn strip_position(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

fn join(prefix: Option<&str>, path: &str) -> String {
    match prefix {
        Some(p) if path.is_empty() || path == "." => p.to_string(),
        Some(p) => format!("{p}.{path}"),
        None => path.to_string(),
    }
}

/// Parses `text` as `T`. `prefix` is the JSON path of `text` inside a
/// larger document (e.g. `request`), used to name fields in errors.
pub fn parse_at<'a, T: Deserialize<'a>>(
    text: &'a str,
    prefix: Option<&str>,
) -> Result<T, EventError> {
    let e = match serde_json::from_str::<T>(text) {
        Ok(v) => return Ok(v),
        Err(e) => e,
    };
    let reason = strip_position(&e.to_string());
    if e.is_syntax() || e.is_eof() {
        return Err(match prefix {
            Some(p) => EventError::Field {
                path: p.to_string(),
                reason,
            },
            None => EventError::Json {
                column: e.column(),
                reason,
            },
        });
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let path = match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Err(pe) => pe.path().to_string(),
        Ok(_) => ".".to_string(),
    };
    if path != "." {
        return Err(EventError::Field {
            path: join(prefix, &path),
            reason,
        });
    }
    // A missing field is reported at the object that lacks it.
    if let Some(field) = reason
        .strip_prefix("missing field `")
        .and_then(|r| r.strip_suffix('`'))
    {
        return Err(EventError::Field {
            path: join(prefix, field),
            reason: "missing required field".into(),
        });
    }
    Err(match prefix {
        Some(p) => EventError::Field {
            path: p.to_string(),
            reason,
        },
        None => EventError::Invalid(reason),
    })
}
