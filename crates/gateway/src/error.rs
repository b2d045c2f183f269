/*!
The gateway's errors, tagged by side (as in Pingora): `Downstream` (the
client's request), `Upstream` (the model server: refused, timed out,
failed), `Internal`, and `Limited` (over a limit). Each is answered in the
API's own error format, so that the official SDKs raise the right
exception.
*/

use crate::dialect::{Dialect, api};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Which side an error is on.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The client's request is wrong (status 4xx).
    #[error("{message}")]
    Downstream {
        status: StatusCode,
        kind: &'static str,
        message: String,
    },
    /// The model server failed.
    #[error("upstream {upstream}: {message}")]
    Upstream {
        status: StatusCode,
        upstream: String,
        message: String,
    },
    #[error("internal: {0}")]
    Internal(String),
    /// Over a limit (429 with Retry-After).
    #[error("{what} limit of {who} reached; retry after {retry_after}s")]
    Limited {
        retry_after: u64,
        who: String,
        what: &'static str,
    },
}

impl GatewayError {
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::Limited { .. } => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::Downstream { status, .. } | GatewayError::Upstream { status, .. } => {
                *status
            }
            GatewayError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn into_response(self, dialect: Dialect) -> Response {
        let retry = match &self {
            GatewayError::Limited { retry_after, .. } => Some(*retry_after),
            _ => None,
        };
        let status = self.status();
        let kind = match &self {
            GatewayError::Limited { .. } => "rate_limit_error",
            GatewayError::Downstream { kind, .. } => kind,
            GatewayError::Upstream { .. } | GatewayError::Internal(_) => "api_error",
        };
        let message = self.to_string();
        let body = api(dialect).error_body(status, kind, &message);
        let mut r = (status, axum::Json(body)).into_response();
        if let Some(s) = retry
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        r
    }
}

/// Why the gateway could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("binding {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("serving: {0}")]
    Serve(std::io::Error),
    #[error("{0}")]
    Keys(distillguard_storage::StoreError),
    #[error("{0}")]
    Config(String),
}
