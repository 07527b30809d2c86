//! Every error of the API, as a status and a JSON body:
//!
//! ```json
//! {"error": {"code": "invalid_step_id", "message": "step_id must be an integer from 1 to 23, got `24`"}}
//! ```
//!
//! `code` is stable, for programs; `message` says what to do, for people.
//! A 503 means only one thing: the cache could not be reached in time
//! (`cachekit::Error::Unavailable` or `Timeout`); retrying later may work,
//! and the response says so with `Retry-After`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use uuid::Uuid;

use super::keys::TOTAL_STEPS;

/// What went wrong with a request.
#[derive(Debug)]
pub enum ApiError {
    /// The path could not be decoded (not UTF-8 once percent-decoded).
    InvalidPath(String),
    /// The session id in the path is not a UUID.
    InvalidSessionId(String),
    /// The step id in the path is not an integer in `1..=TOTAL_STEPS`.
    InvalidStepId(String),
    /// The body is not JSON.
    InvalidJson(String),
    /// The body is JSON, but not an object (`kind` says what it is).
    StepDataNotObject(&'static str),
    /// The body could not be read (too large, cut short).
    BadBody(StatusCode, String),
    /// No such session: never created, expired, or deleted.
    SessionNotFound(Uuid),
    /// The session exists, but this step was not saved.
    StepNotFound(Uuid, u8),
    /// The session is finalized: its steps can no longer change.
    SessionFinalized(Uuid),
    /// Finalize was called before every step was saved.
    Incomplete(Vec<u8>),
    /// No such route (the path).
    NotFound(String),
    /// The route exists, with other methods (the method).
    MethodNotAllowed(String),
    /// The cache could not be reached in time: worth retrying later.
    CacheUnavailable(cachekit::Error),
    /// Anything else: a bug or a misconfiguration, logged.
    Internal(String),
}

impl From<cachekit::Error> for ApiError {
    fn from(e: cachekit::Error) -> Self {
        if e.is_transient() {
            ApiError::CacheUnavailable(e)
        } else {
            ApiError::Internal(e.to_string())
        }
    }
}

impl ApiError {
    /// The status and the stable code.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::InvalidPath(_) => (StatusCode::BAD_REQUEST, "invalid_path"),
            ApiError::InvalidSessionId(_) => (StatusCode::BAD_REQUEST, "invalid_session_id"),
            ApiError::InvalidStepId(_) => (StatusCode::BAD_REQUEST, "invalid_step_id"),
            ApiError::InvalidJson(_) => (StatusCode::BAD_REQUEST, "invalid_json"),
            ApiError::StepDataNotObject(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "step_data_not_object")
            }
            ApiError::BadBody(status, _) => (*status, "bad_body"),
            ApiError::SessionNotFound(_) => (StatusCode::NOT_FOUND, "session_not_found"),
            ApiError::StepNotFound(..) => (StatusCode::NOT_FOUND, "step_not_found"),
            ApiError::SessionFinalized(_) => (StatusCode::CONFLICT, "session_finalized"),
            ApiError::Incomplete(_) => (StatusCode::CONFLICT, "onboarding_incomplete"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::CacheUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "cache_unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        }
    }

    /// What to tell the client.
    pub fn message(&self) -> String {
        match self {
            ApiError::InvalidPath(e) => format!("the path could not be decoded: {e}"),
            ApiError::InvalidSessionId(got) => {
                format!("session_id must be a UUID, got `{got}`")
            }
            ApiError::InvalidStepId(got) => {
                format!("step_id must be an integer from 1 to {TOTAL_STEPS}, got `{got}`")
            }
            ApiError::InvalidJson(e) => format!("the body must be a JSON object: {e}"),
            ApiError::StepDataNotObject(kind) => {
                format!("step data must be a JSON object, got {kind}")
            }
            ApiError::BadBody(_, e) => format!("the body could not be read: {e}"),
            ApiError::SessionNotFound(id) => format!(
                "no onboarding session `{id}`: it was never created, expired after 7 days, or was deleted"
            ),
            ApiError::StepNotFound(id, step) => {
                format!("step {step} of session `{id}` has not been saved")
            }
            ApiError::SessionFinalized(id) => {
                format!("session `{id}` is finalized; its steps can no longer change")
            }
            ApiError::Incomplete(missing) => format!(
                "cannot finalize: {} of {TOTAL_STEPS} steps are not saved yet",
                missing.len()
            ),
            ApiError::NotFound(path) => {
                format!("no route for `{path}`; the API is under /api/v1/onboarding")
            }
            ApiError::MethodNotAllowed(method) => {
                format!("method {method} is not allowed on this route")
            }
            ApiError::CacheUnavailable(e) => {
                format!("the session store is unavailable; retry in a moment ({e})")
            }
            ApiError::Internal(_) => "internal error".to_owned(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let mut error = json!({"code": code, "message": self.message()});
        match &self {
            ApiError::Incomplete(missing) => error["missing_steps"] = json!(missing),
            ApiError::Internal(detail) => eprintln!("onboarding: internal error: {detail}"),
            _ => {}
        }
        let mut response = (status, Json(json!({ "error": error }))).into_response();
        if let ApiError::CacheUnavailable(_) = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// The JSON type of a value, for messages.
pub fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
