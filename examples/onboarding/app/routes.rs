//! The HTTP handlers. Each validates its input before touching the cache,
//! so a bad request is a 4xx whether or not the cache is up, and answers
//! with JSON, errors included (see `error`).

use axum::Json;
use axum::body::Bytes;
use axum::extract::Path;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::error::{ApiError, json_kind};
use super::keys::TOTAL_STEPS;
use super::store::{self, ProgressView, SavedStep, StepView, Summary};

/// At most this much of a rejected value is echoed back in an error.
const ECHO_LIMIT: usize = 64;

fn echo(raw: &str) -> String {
    match raw.char_indices().nth(ECHO_LIMIT) {
        Some((end, _)) => format!("{}...", &raw[..end]),
        None => raw.to_owned(),
    }
}

/// A session id: any form `Uuid` parses (hyphenated, simple, braced, URN),
/// stored in its canonical form.
fn session_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::try_parse(raw).map_err(|_| ApiError::InvalidSessionId(echo(raw)))
}

/// A step id: decimal digits, `1..=TOTAL_STEPS`.
fn step_id(raw: &str) -> Result<u8, ApiError> {
    let invalid = || ApiError::InvalidStepId(echo(raw));
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    match raw.parse::<u8>() {
        Ok(step) if (1..=TOTAL_STEPS).contains(&step) => Ok(step),
        _ => Err(invalid()),
    }
}

/// A step's data: a JSON object.
fn step_data(body: Result<Bytes, BytesRejection>) -> Result<Map<String, Value>, ApiError> {
    let body = body.map_err(|r| ApiError::BadBody(r.status(), r.body_text()))?;
    let value: Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    match value {
        Value::Object(data) => Ok(data),
        other => Err(ApiError::StepDataNotObject(json_kind(&other))),
    }
}

fn session_path(path: Result<Path<String>, PathRejection>) -> Result<Uuid, ApiError> {
    let Path(raw) = path.map_err(|r| ApiError::InvalidPath(r.body_text()))?;
    session_id(&raw)
}

fn step_path(path: Result<Path<(String, String)>, PathRejection>) -> Result<(Uuid, u8), ApiError> {
    let Path((session, step)) = path.map_err(|r| ApiError::InvalidPath(r.body_text()))?;
    Ok((session_id(&session)?, step_id(&step)?))
}

/// `GET /health`: 200 when the cache answers, 503 when it does not.
pub async fn health() -> Response {
    let health = cachekit::health().await;
    let circuit = health.circuit.map(|c| match c {
        cachekit::CircuitState::Closed => "closed",
        cachekit::CircuitState::Open => "open",
        cachekit::CircuitState::HalfOpen => "half_open",
    });
    let body = json!({
        "status": if health.reachable { "ok" } else { "unavailable" },
        "backend": health.backend,
        "reachable": health.reachable,
        "latency_ms": health.latency.map(|d| d.as_secs_f64() * 1e3),
        "circuit": circuit,
        "error": health.error,
        "caching_enabled": health.enabled,
    });
    let status = if health.reachable {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// `POST /session`: a new session, `201` with its `session_id`.
pub async fn create_session() -> Result<(StatusCode, Json<ProgressView>), ApiError> {
    Ok((StatusCode::CREATED, Json(store::create().await?)))
}

/// `POST /{session_id}/steps/{step_id}`: saves a step's data (a JSON object).
pub async fn save_step(
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<SavedStep>, ApiError> {
    let (id, step) = step_path(path)?;
    let data = step_data(body)?;
    Ok(Json(store::save_step(id, step, data).await?))
}

/// `GET /{session_id}/steps/{step_id}`: a saved step's data.
pub async fn get_step(
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<StepView>, ApiError> {
    let (id, step) = step_path(path)?;
    Ok(Json(store::step(id, step).await?))
}

/// `GET /{session_id}/progress`.
pub async fn progress(
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<ProgressView>, ApiError> {
    Ok(Json(store::progress(session_path(path)?).await?))
}

/// `GET /{session_id}/summary`: progress and every saved step.
pub async fn summary(path: Result<Path<String>, PathRejection>) -> Result<Json<Summary>, ApiError> {
    Ok(Json(store::summary(session_path(path)?).await?))
}

/// `POST /{session_id}/finalize`: `409` until every step is saved.
pub async fn finalize(
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Summary>, ApiError> {
    Ok(Json(store::finalize(session_path(path)?).await?))
}

/// `DELETE /{session_id}`.
pub async fn delete_session(
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = session_path(path)?;
    store::delete(id).await?;
    Ok(Json(json!({"session_id": id, "deleted": true})))
}

/// Any other path.
pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(echo(uri.path()))
}

/// A known path with another method.
pub async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::MethodNotAllowed(method.to_string())
}
