//! One error type for every HTTP answer that is not a success, so that status
//! codes and bodies are decided in one place. Bodies are Relay's shape:
//! `{"detail": "..."}`; ingest errors also carry `X-Sentry-Error`.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use picket_store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub detail: String,
    /// Seconds to wait, for 429.
    pub retry_after: Option<u64>,
    /// `X-Sentry-Rate-Limits` value, for 429.
    pub rate_limits: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> ApiError {
        ApiError { status, detail: detail.into(), retry_after: None, rate_limits: None }
    }
    pub fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, detail)
    }
    pub fn unauthorized(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, detail)
    }
    pub fn forbidden(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, detail)
    }
    pub fn not_found(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, detail)
    }
    pub fn too_large(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, detail)
    }
    /// 429 with `Retry-After` and `X-Sentry-Rate-Limits` (integer seconds, as SDKs parse them).
    pub fn rate_limited(detail: impl Into<String>, retry_after: u64, scope: &str, reason: &str) -> ApiError {
        let secs = retry_after.max(1);
        ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            detail: detail.into(),
            retry_after: Some(secs),
            rate_limits: Some(format!("{secs}::{scope}:{reason}")),
        }
    }
    pub fn internal(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, detail)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NotFound(what) => ApiError::not_found(format!("{what} not found")),
            e @ StoreError::Missing { .. } => ApiError::not_found(e.to_string()),
            StoreError::Invalid(msg) => ApiError::bad_request(msg),
            StoreError::Conflict(what) => ApiError::new(StatusCode::CONFLICT, format!("{what} already exists")),
            other => {
                tracing::error!(error = %other, "storage failure");
                ApiError::internal("internal storage error; see the server log")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "detail": self.detail });
        let mut resp = (self.status, axum::Json(body)).into_response();
        let h = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&self.detail.chars().filter(|c| c.is_ascii() && !c.is_ascii_control()).collect::<String>()) {
            h.insert("x-sentry-error", v);
        }
        if let Some(s) = self.retry_after {
            h.insert("retry-after", HeaderValue::from(s));
        }
        if let Some(l) = self.rate_limits.and_then(|l| HeaderValue::from_str(&l).ok()) {
            h.insert("x-sentry-rate-limits", l);
        }
        resp
    }
}

/// `axum::extract::Query` whose rejection is an [`ApiError`]: a bad query
/// string (`?limit=-3`) is answered `400 {"detail": ...}` naming the
/// parameter, like every other API error, instead of axum's plain text.
pub struct ApiQuery<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(ApiError::bad_request(format!("invalid query string: {}", query_problem(&rejection.body_text())))),
        }
    }
}

/// The useful part of axum's message ("Failed to deserialize query string:
/// limit: invalid digit found in string" → "limit: invalid digit ...").
fn query_problem(text: &str) -> &str {
    text.strip_prefix("Failed to deserialize query string: ").unwrap_or(text)
}
