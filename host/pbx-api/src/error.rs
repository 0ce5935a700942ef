//! The crate's error type and the one HTTP error body every handler returns.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// What can go wrong starting the API or running a CLI helper.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] store::Error),
    /// A file could not be read or written.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The configuration is unusable (bad TLS files, plain HTTP off loopback, ...).
    #[error("config: {0}")]
    Config(String),
    /// A key or certificate could not be made or parsed.
    #[error("crypto: {0}")]
    Crypto(String),
    /// The input was refused (weak password, unknown tenant, ...).
    #[error("invalid: {0}")]
    Invalid(String),
}

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

/// An error answer: a status, a stable machine code and a human message. Internal
/// failures are logged and shown as a generic text.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after_s: Option<u64>,
}

impl ApiError {
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after_s: None,
        }
    }

    /// The one answer for "missing" and "not yours".
    pub(crate) fn not_found() -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "resource not found")
    }

    pub(crate) fn unauthorized() -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required",
        )
    }

    pub(crate) fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub(crate) fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub(crate) fn too_many(code: &'static str, retry_after_s: u64) -> Self {
        ApiError {
            retry_after_s: Some(retry_after_s.max(1)),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                code,
                "too many requests; retry later",
            )
        }
    }

    pub(crate) fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "API request failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }
}

impl From<store::Error> for ApiError {
    fn from(err: store::Error) -> Self {
        match err {
            store::Error::NotFound(_) => ApiError::not_found(),
            store::Error::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            store::Error::Invalid(m) => ApiError::bad_request("invalid", m),
            store::Error::QuotaExceeded(m) => {
                ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "quota_exceeded", m)
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        match err {
            Error::Store(e) => e.into(),
            Error::Invalid(m) => ApiError::bad_request("invalid", m),
            other => ApiError::internal(other),
        }
    }
}

/// The body of every error answer: `{"error":{"code":"...","message":"..."}}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Error, examples(json!({
    "error": { "code": "not_found", "message": "resource not found" }
})))]
pub(crate) struct ErrorBody {
    error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorDetail {
    /// Stable and machine-readable, such as `not_found` or `invalid_totp`.
    code: &'static str,
    /// For people; may change between versions.
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
            },
        };
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(s) = self.retry_after_s
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

/// Handler result.
pub(crate) type ApiResult<T> = std::result::Result<T, ApiError>;
