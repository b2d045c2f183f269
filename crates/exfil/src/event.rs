/*!
One storage access, whatever the audit log it came from.

CloudTrail, GCP Cloud Audit Logs and the generic JSONL form all become an
[`Access`]: who (principal and credential), from where (address, VPC
endpoint, user agent), what (an [`Action`] on a bucket and object), how
much (bytes out) and, for copies, where to. What a source lacks stays
empty, never invented: GCP's audit logs carry no byte counts, so
byte-based detectors see zero for them and say so in their reasons.

The generic form is this struct's JSON (`docs/exfiltration.md`).
*/

use serde::{Deserialize, Serialize};

/// What an access did to the stored data, as far as exfiltration goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Read an object's content (S3 `GetObject`, GCS `storage.objects.get`).
    Get,
    /// Wrote an object.
    Put,
    /// Copied an object server-side (`CopyObject`, `UploadPartCopy`,
    /// `storage.objects.copy`/`rewrite`): the data may leave without
    /// passing through the caller.
    Copy,
    /// Listed a bucket or prefix.
    List,
    /// Read an object's metadata only.
    Head,
    Delete,
    /// A management call (policies, ACLs, replication, credentials).
    #[default]
    Other,
}

impl Action {
    /// Whether data leaves the object with this action (a read or a copy).
    pub fn moves_data(self) -> bool {
        matches!(self, Action::Get | Action::Copy)
    }
}

/// One access to cloud storage, normalised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Access {
    /// Milliseconds since the epoch (RFC 3339 in JSON).
    #[serde(with = "rfc3339")]
    pub ts: i64,
    /// The identity: an IAM ARN (an assumed role's session issuer with
    /// the session name), a service account or user email.
    pub principal: String,
    /// `IAMUser`, `AssumedRole`, `AWSService`, `Root`, `serviceAccount`,
    /// `user`… as the source names it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub principal_type: String,
    /// The credential used (an access key id is an identifier, not a
    /// secret); empty when the source has none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub credential: String,
    /// The caller's address, or a service name (`s3.amazonaws.com`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source_ip: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user_agent: String,
    /// The source's own name for the call (`GetObject`).
    pub event_name: String,
    #[serde(default)]
    pub action: Action,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bucket: String,
    /// The object key, or the listed prefix.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub object: String,
    /// For a copy: the source bucket and key (the data that moved);
    /// `bucket`/`object` are then the destination.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub copy_source_bucket: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub copy_source_object: String,
    /// The cloud account that owns the bucket written to or read from,
    /// when the log says.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bucket_account: String,
    /// Bytes that left storage (0 when the log does not say).
    #[serde(default)]
    pub bytes_out: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub vpc_endpoint: String,
    /// The account whose log this is.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub recipient_account: String,
    /// An error code: the call was refused or failed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
}

impl Access {
    /// The bucket and object whose data this access read: the copy
    /// source for a copy, else the bucket and object themselves.
    pub fn read_target(&self) -> (&str, &str) {
        if self.action == Action::Copy && !self.copy_source_bucket.is_empty() {
            (&self.copy_source_bucket, &self.copy_source_object)
        } else {
            (&self.bucket, &self.object)
        }
    }
}

mod rfc3339 {
    use distillguard_core::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&Timestamp(*ms).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Timestamp::parse(&text)
            .map(|t| t.0)
            .map_err(serde::de::Error::custom)
    }
}
