/*!
Audit-log sources: AWS CloudTrail, GCP Cloud Audit Logs, and the generic
JSONL form, each line mapped to [`Access`]es.

- **CloudTrail** as delivered: a file of `{"Records": [...]}` (one
  document per line, as CloudTrail writes to S3), or one record per line
  (as CloudWatch Logs and most shippers export). S3 data events and
  management events; fields used: `eventTime`, `eventName`,
  `userIdentity` (type, arn, accessKeyId, `sessionContext`),
  `sourceIPAddress`, `userAgent`, `requestParameters.bucketName`, `key`,
  `prefix` and `x-amz-copy-source`, `additionalEventData.bytesTransferredOut`,
  `resources[].accountId`, `vpcEndpointId`, `recipientAccountId`, `errorCode`.
- **GCP** Cloud Audit Log entries for Cloud Storage, one `LogEntry` per
  line (a Cloud Logging sink's export): `timestamp`,
  `protoPayload.methodName`, `authenticationInfo.principalEmail`,
  `requestMetadata.callerIp` and `callerSuppliedUserAgent`,
  `resourceName`, `status.code`. GCP logs no byte counts.
- **Generic**: [`Access`] as JSON, one per line.

Every parser names the field that was wrong (`Records[2].eventTime`), and
a line that fails loses only itself.
*/

use std::borrow::Cow;

use distillguard_core::{EventError, Timestamp};
use serde::Deserialize;

use crate::event::{Access, Action};

/// Which audit log a source is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFormat {
    CloudTrail,
    Gcp,
    Generic,
    /// Decided per line: `Records` or `eventName` is CloudTrail,
    /// `protoPayload` is GCP, anything else the generic form.
    Auto,
}

impl SourceFormat {
    pub const NAMES: [&'static str; 4] = ["auto", "cloudtrail", "gcp", "generic"];

    pub fn by_name(name: &str) -> Option<SourceFormat> {
        Some(match name {
            "auto" => SourceFormat::Auto,
            "cloudtrail" => SourceFormat::CloudTrail,
            "gcp" => SourceFormat::Gcp,
            "generic" | "jsonl" => SourceFormat::Generic,
            _ => return None,
        })
    }
}

/// Parses one line of `format` into the accesses it holds (a CloudTrail
/// file line holds many).
pub fn parse_line(format: SourceFormat, line: &str) -> Result<Vec<Access>, EventError> {
    let format = match format {
        SourceFormat::Auto => sniff(line),
        f => f,
    };
    match format {
        SourceFormat::CloudTrail => cloudtrail(line),
        SourceFormat::Gcp => gcp(line).map(|a| vec![a]),
        _ => generic(line).map(|a| vec![a]),
    }
}

/// Guesses a line's format from its first keys (cheap: no parse).
fn sniff(line: &str) -> SourceFormat {
    let mut cut = line.len().min(4096);
    while !line.is_char_boundary(cut) {
        cut -= 1;
    }
    let head = &line[..cut];
    if head.contains("\"Records\"") || head.contains("\"eventName\"") {
        SourceFormat::CloudTrail
    } else if head.contains("\"protoPayload\"") {
        SourceFormat::Gcp
    } else {
        SourceFormat::Generic
    }
}

fn json_error(line: &str, e: serde_path_to_error::Error<serde_json::Error>) -> EventError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    if inner.is_eof() && line.trim_start().starts_with('{') && !line.trim_end().ends_with('}') {
        return EventError::Json {
            column: inner.column(),
            reason: format!(
                "{inner} (a pretty-printed document? one JSON document per line is read; `jq -c` makes one)"
            ),
        };
    }
    if inner.is_syntax() || inner.is_eof() || path == "." {
        EventError::Json {
            column: inner.column(),
            reason: inner.to_string(),
        }
    } else {
        EventError::Field {
            path,
            reason: inner.to_string(),
        }
    }
}

fn typed<'a, T: Deserialize<'a>>(line: &'a str) -> Result<T, EventError> {
    // The fast path parses without tracking where it is; only a line that
    // fails is parsed again to name the field that was wrong.
    serde_json::from_str(line).or_else(|_| typed_tracked(line))
}

fn typed_tracked<'a, T: Deserialize<'a>>(line: &'a str) -> Result<T, EventError> {
    let mut de = serde_json::Deserializer::from_str(line);
    let v = serde_path_to_error::deserialize(&mut de).map_err(|e| json_error(line, e))?;
    de.end().map_err(|e| EventError::Json {
        column: e.column(),
        reason: e.to_string(),
    })?;
    Ok(v)
}

fn time(path: &str, text: &str) -> Result<i64, EventError> {
    Timestamp::parse(text)
        .map(|t| t.0)
        .map_err(|e| EventError::Field {
            path: path.to_string(),
            reason: e.to_string(),
        })
}

// ---------------------------------------------------------------- CloudTrail

#[derive(Deserialize)]
struct TrailFile<'a> {
    #[serde(rename = "Records", borrow)]
    records: Vec<TrailRecord<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct TrailRecord<'a> {
    #[serde(borrow)]
    event_time: Option<Cow<'a, str>>,
    #[serde(borrow)]
    event_name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    event_source: Cow<'a, str>,
    #[serde(borrow)]
    user_identity: Option<Identity<'a>>,
    #[serde(rename = "sourceIPAddress", borrow)]
    source_ip_address: Cow<'a, str>,
    #[serde(borrow)]
    user_agent: Cow<'a, str>,
    #[serde(borrow)]
    request_parameters: Option<RequestParameters<'a>>,
    additional_event_data: Option<AdditionalData>,
    #[serde(borrow)]
    resources: Option<Vec<Resource<'a>>>,
    #[serde(borrow)]
    vpc_endpoint_id: Cow<'a, str>,
    #[serde(borrow)]
    recipient_account_id: Cow<'a, str>,
    #[serde(borrow)]
    error_code: Cow<'a, str>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Identity<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    arn: Cow<'a, str>,
    #[serde(borrow)]
    access_key_id: Cow<'a, str>,
    #[serde(borrow)]
    invoked_by: Cow<'a, str>,
    #[serde(borrow)]
    session_context: Option<SessionContext<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct SessionContext<'a> {
    #[serde(borrow)]
    session_issuer: Option<SessionIssuer<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct SessionIssuer<'a> {
    #[serde(borrow)]
    arn: Cow<'a, str>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RequestParameters<'a> {
    #[serde(rename = "bucketName", borrow)]
    bucket_name: Cow<'a, str>,
    #[serde(borrow)]
    key: Cow<'a, str>,
    #[serde(borrow)]
    prefix: Cow<'a, str>,
    #[serde(rename = "x-amz-copy-source", borrow)]
    copy_source: Cow<'a, str>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AdditionalData {
    #[serde(rename = "bytesTransferredOut")]
    bytes_out: Option<f64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Resource<'a> {
    #[serde(rename = "accountId", borrow)]
    account_id: Cow<'a, str>,
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(rename = "ARN", borrow)]
    arn: Cow<'a, str>,
}

/// The S3 action of a CloudTrail event name.
fn s3_action(name: &str) -> Action {
    match name {
        "GetObject" | "SelectObjectContent" | "RestoreObject" => Action::Get,
        "PutObject" | "CompleteMultipartUpload" | "UploadPart" | "CreateMultipartUpload" => {
            Action::Put
        }
        "CopyObject" | "UploadPartCopy" => Action::Copy,
        "HeadObject" | "GetObjectAttributes" | "GetObjectTagging" | "GetObjectAcl" => Action::Head,
        "DeleteObject" | "DeleteObjects" => Action::Delete,
        n if n.starts_with("List") => Action::List,
        _ => Action::Other,
    }
}

/// `x-amz-copy-source`: `bucket/key` (percent-encoded, maybe a leading
/// `/`, maybe `?versionId=`).
fn split_copy_source(raw: &str) -> (String, String) {
    let decoded = percent_decode(raw.trim_start_matches('/'));
    let path = decoded.split("?versionId=").next().unwrap_or_default();
    match path.split_once('/') {
        Some((b, k)) => (b.to_string(), k.to_string()),
        None => (path.to_string(), String::new()),
    }
}

fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// The principal of a CloudTrail identity: a role's ARN for an assumed
/// role (its sessions, often named per run, are one principal), except
/// an IAM Identity Center role, whose session is a person; the ARN
/// otherwise; an AWS service by its name.
fn trail_principal(id: &Identity<'_>) -> String {
    if id.kind == "AssumedRole"
        && let Some(issuer) = id
            .session_context
            .as_ref()
            .and_then(|s| s.session_issuer.as_ref())
        && !issuer.arn.is_empty()
        && !issuer.arn.contains("AWSReservedSSO_")
    {
        return issuer.arn.to_string();
    }
    if !id.arn.is_empty() {
        return id.arn.to_string();
    }
    if !id.invoked_by.is_empty() {
        return id.invoked_by.to_string();
    }
    String::new()
}

fn trail_access(r: &TrailRecord<'_>, at: &str) -> Result<Access, EventError> {
    let field = |f: &str| format!("{at}{f}");
    let ts = match &r.event_time {
        Some(t) => time(&field("eventTime"), t)?,
        None => return Err(EventError::Missing("eventTime")),
    };
    let name = r
        .event_name
        .as_deref()
        .ok_or(EventError::Missing("eventName"))?;
    let id = r.user_identity.as_ref();
    let principal = id.map(trail_principal).unwrap_or_default();
    if principal.is_empty() {
        return Err(EventError::Field {
            path: field("userIdentity"),
            reason: "no arn, session issuer or invoking service".into(),
        });
    }
    let action = if r.event_source.is_empty() || r.event_source == "s3.amazonaws.com" {
        s3_action(name)
    } else {
        Action::Other
    };
    let params = r.request_parameters.as_ref();
    let bucket = params
        .map(|p| p.bucket_name.to_string())
        .unwrap_or_default();
    let object = params
        .map(|p| {
            if p.key.is_empty() {
                p.prefix.to_string()
            } else {
                p.key.to_string()
            }
        })
        .unwrap_or_default();
    let (copy_source_bucket, copy_source_object) = params
        .filter(|p| !p.copy_source.is_empty())
        .map(|p| split_copy_source(&p.copy_source))
        .unwrap_or_default();
    // The owner of the bucket named in the request, when CloudTrail lists it.
    let bucket_account = r
        .resources
        .iter()
        .flatten()
        .find(|res| {
            res.kind == "AWS::S3::Bucket"
                && !res.account_id.is_empty()
                && res.arn.rsplit(':').next() == Some(bucket.as_str())
        })
        .map(|res| res.account_id.to_string())
        .unwrap_or_default();
    let bytes_out = r
        .additional_event_data
        .as_ref()
        .and_then(|a| a.bytes_out)
        .filter(|b| b.is_finite() && *b >= 0.0)
        .map(|b| b as u64)
        .unwrap_or(0);
    Ok(Access {
        ts,
        principal,
        principal_type: id.map(|i| i.kind.to_string()).unwrap_or_default(),
        credential: id.map(|i| i.access_key_id.to_string()).unwrap_or_default(),
        source_ip: r.source_ip_address.to_string(),
        user_agent: r.user_agent.to_string(),
        event_name: name.to_string(),
        action,
        bucket,
        object,
        copy_source_bucket,
        copy_source_object,
        bucket_account,
        bytes_out,
        vpc_endpoint: r.vpc_endpoint_id.to_string(),
        recipient_account: r.recipient_account_id.to_string(),
        error: r.error_code.to_string(),
    })
}

/// Whether a line is a delivered CloudTrail file (`{"Records": [...]}`)
/// rather than one record: its first key is `Records`.
fn is_delivery(line: &str) -> bool {
    line.trim_start()
        .strip_prefix('{')
        .is_some_and(|rest| rest.trim_start().starts_with("\"Records\""))
}

/// A CloudTrail line: a delivered file (`{"Records": [...]}`) or one record.
pub fn cloudtrail(line: &str) -> Result<Vec<Access>, EventError> {
    if is_delivery(line) {
        let f: TrailFile<'_> = typed(line)?;
        f.records
            .iter()
            .enumerate()
            .map(|(i, r)| trail_access(r, &format!("Records[{i}].")))
            .collect()
    } else {
        let r: TrailRecord<'_> = typed(line)?;
        trail_access(&r, "").map(|a| vec![a])
    }
}

// ---------------------------------------------------------------- GCP

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct LogEntry<'a> {
    #[serde(borrow)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(borrow)]
    proto_payload: Option<AuditLog<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct AuditLog<'a> {
    #[serde(borrow)]
    method_name: Cow<'a, str>,
    #[serde(borrow)]
    service_name: Cow<'a, str>,
    #[serde(borrow)]
    resource_name: Cow<'a, str>,
    #[serde(borrow)]
    authentication_info: Option<AuthInfo<'a>>,
    #[serde(borrow)]
    request_metadata: Option<RequestMetadata<'a>>,
    status: Option<Status>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct AuthInfo<'a> {
    #[serde(borrow)]
    principal_email: Cow<'a, str>,
    #[serde(borrow)]
    service_account_key_name: Cow<'a, str>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct RequestMetadata<'a> {
    #[serde(borrow)]
    caller_ip: Cow<'a, str>,
    #[serde(borrow)]
    caller_supplied_user_agent: Cow<'a, str>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Status {
    code: i64,
}

fn gcs_action(method: &str) -> Action {
    match method {
        "storage.objects.get" => Action::Get,
        "storage.objects.create" | "storage.objects.update" | "storage.objects.patch" => {
            Action::Put
        }
        "storage.objects.copy" | "storage.objects.rewrite" => Action::Copy,
        "storage.objects.list" | "storage.buckets.list" => Action::List,
        "storage.objects.delete" => Action::Delete,
        _ => Action::Other,
    }
}

/// `projects/_/buckets/B/objects/O` → (B, O).
fn gcs_resource(name: &str) -> (String, String) {
    let rest = name.strip_prefix("projects/_/").unwrap_or(name);
    let Some(rest) = rest.strip_prefix("buckets/") else {
        return (String::new(), String::new());
    };
    match rest.split_once("/objects/") {
        Some((b, o)) => (b.to_string(), o.to_string()),
        None => (rest.trim_end_matches('/').to_string(), String::new()),
    }
}

/// One GCP Cloud Audit Log entry (a `LogEntry` with an `AuditLog` payload).
pub fn gcp(line: &str) -> Result<Access, EventError> {
    let e: LogEntry<'_> = typed(line)?;
    let ts = match &e.timestamp {
        Some(t) => time("timestamp", t)?,
        None => return Err(EventError::Missing("timestamp")),
    };
    let p = e
        .proto_payload
        .as_ref()
        .ok_or(EventError::Missing("protoPayload"))?;
    if p.method_name.is_empty() {
        return Err(EventError::Missing("protoPayload.methodName"));
    }
    let auth = p.authentication_info.as_ref();
    let principal = auth
        .map(|a| a.principal_email.to_string())
        .unwrap_or_default();
    if principal.is_empty() {
        return Err(EventError::Missing(
            "protoPayload.authenticationInfo.principalEmail",
        ));
    }
    let action = if p.service_name.is_empty() || p.service_name == "storage.googleapis.com" {
        gcs_action(&p.method_name)
    } else {
        Action::Other
    };
    let (bucket, object) = gcs_resource(&p.resource_name);
    let meta = p.request_metadata.as_ref();
    let code = p.status.as_ref().map(|s| s.code).unwrap_or(0);
    Ok(Access {
        ts,
        principal_type: if principal.ends_with(".gserviceaccount.com") {
            "serviceAccount".into()
        } else {
            "user".into()
        },
        principal,
        credential: auth
            .map(|a| a.service_account_key_name.to_string())
            .unwrap_or_default(),
        source_ip: meta.map(|m| m.caller_ip.to_string()).unwrap_or_default(),
        user_agent: meta
            .map(|m| m.caller_supplied_user_agent.to_string())
            .unwrap_or_default(),
        event_name: p.method_name.to_string(),
        action,
        bucket,
        object,
        error: if code == 0 {
            String::new()
        } else {
            format!("status {code}")
        },
        ..Access::default()
    })
}

/// One line of the generic form: an [`Access`] as JSON.
pub fn generic(line: &str) -> Result<Access, EventError> {
    let a: Access = typed(line)?;
    if a.principal.is_empty() {
        return Err(EventError::Missing("principal"));
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_sources_are_decoded_and_split() {
        assert_eq!(
            split_copy_source("/src-bucket/ckpt/step%201.pt?versionId=abc"),
            ("src-bucket".to_string(), "ckpt/step 1.pt".to_string())
        );
        assert_eq!(split_copy_source("b"), ("b".to_string(), String::new()));
    }

    #[test]
    fn gcs_resources_name_bucket_and_object() {
        assert_eq!(
            gcs_resource("projects/_/buckets/weights/objects/a/b.bin"),
            ("weights".to_string(), "a/b.bin".to_string())
        );
        assert_eq!(
            gcs_resource("projects/_/buckets/weights"),
            ("weights".to_string(), String::new())
        );
    }

    #[test]
    fn a_bad_field_is_named_with_its_record() {
        let line = r#"{"Records":[{"eventTime":"2026-01-01T00:00:00Z","eventName":"GetObject","userIdentity":{"arn":"arn:aws:iam::1:user/a"}},{"eventTime":"yesterday","eventName":"GetObject","userIdentity":{"arn":"x"}}]}"#;
        let e = cloudtrail(line).unwrap_err().to_string();
        assert!(e.contains("Records[1].eventTime"), "{e}");
        let e = cloudtrail(r#"{"eventName":"GetObject","userIdentity":{"arn":"x"}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("eventTime"), "{e}");
        let e = parse_line(SourceFormat::Auto, "{\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("jq -c"), "{e}");
    }

    #[test]
    fn generic_lines_round_trip() {
        let a = Access {
            ts: 1_767_225_600_000,
            principal: "alice".into(),
            event_name: "GetObject".into(),
            action: Action::Get,
            bucket: "w".into(),
            object: "x".into(),
            bytes_out: 9,
            ..Access::default()
        };
        let line = serde_json::to_string(&a).unwrap();
        assert!(
            line.contains("\"ts\":\"2026-01-01T00:00:00.000Z\""),
            "{line}"
        );
        assert_eq!(parse_line(SourceFormat::Auto, &line).unwrap(), vec![a]);
        let e =
            generic(r#"{"ts":"2026-01-01T00:00:00Z","principal":"a","event_name":"x","colour":1}"#)
                .unwrap_err()
                .to_string();
        assert!(e.contains("colour"), "{e}");
    }
}
