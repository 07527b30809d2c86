//! A signup-session repository on a [`Cache`]: typed sessions that live five
//! minutes, updated field by field without read-modify-write races, with
//! verification attempts counted atomically.
//!
//! ```text
//! cargo run --example signup_sessions                                   # embedded store, no server
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --example signup_sessions  # the same on Redis
//! ```
//!
//! On the store (Redis) a session is readable JSON under
//! `signup:session:{id}`, and its attempt counter an integer under
//! `signup:attempts:{id}`. Both keys are `#[derive(CacheKey)]` structs, so
//! their templates are checked at compile time.
//!
//! The integration tests (`tests/signup_sessions.rs`) include this file as a
//! module and run the repository, and the conversation below, on Redis.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cachekit::{Cache, CacheKey, Config};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Sessions live five minutes; every update starts the five minutes again.
pub static SESSIONS: Cache = Cache::new("signup", Duration::from_secs(300));

/// Wrong verification codes tolerated per session (per five-minute window).
pub const MAX_ATTEMPTS: i64 = 3;

/// Where a session is on the store: `signup:session:{id}`.
#[derive(CacheKey)]
#[cache_key("session:{id}")]
struct SessionKey {
    id: Uuid,
}

/// Its attempt counter: `signup:attempts:{id}`.
#[derive(CacheKey)]
#[cache_key("attempts:{id}")]
struct AttemptsKey {
    id: Uuid,
}

fn session_key(id: Uuid) -> String {
    SessionKey { id }.cache_key()
}

fn attempts_key(id: Uuid) -> String {
    AttemptsKey { id }.cache_key()
}

/// How far a signup has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// A code was sent to the email address.
    AwaitingCode,
    /// The code matched.
    EmailVerified,
    /// Name and plan are filled in.
    ProfileComplete,
}

/// A plan to sign up for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Plan {
    /// Free.
    Free,
    /// Paid.
    Pro,
}

/// A signup in progress, stored as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignupSession {
    /// The session's id.
    pub id: Uuid,
    /// The address being verified.
    pub email: String,
    /// The code sent to it.
    pub code: String,
    /// Where the signup is.
    pub stage: Stage,
    /// Filled in after verification.
    pub name: Option<String>,
    /// Filled in after verification.
    pub plan: Option<Plan>,
    /// Unix time in milliseconds.
    pub created_at_ms: u64,
    /// Unix time in milliseconds of the last change.
    pub updated_at_ms: u64,
}

/// One field of a session, typed, for [`update_field`].
///
/// It serializes as a one-field JSON object (`{"plan": "pro"}`), which is
/// exactly the patch `Cache::update` merges: a field can only be set to a
/// value of its own type, so an update can never make a session undecodable.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    /// The stage.
    Stage(Stage),
    /// The name.
    Name(String),
    /// The plan.
    Plan(Plan),
}

/// Several fields at once, for [`update_session`]: the fields left `None`
/// are not touched.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SessionPatch {
    /// A new stage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<Stage>,
    /// A new name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A new plan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Starts a signup for `email`, with the verification code that was sent.
pub async fn create_session(email: &str, code: &str) -> Result<SignupSession, cachekit::Error> {
    let now = now_ms();
    let session = SignupSession {
        id: Uuid::new_v4(),
        email: email.to_owned(),
        code: code.to_owned(),
        stage: Stage::AwaitingCode,
        name: None,
        plan: None,
        created_at_ms: now,
        updated_at_ms: now,
    };
    SESSIONS.set(&session_key(session.id), &session).await?;
    Ok(session)
}

/// The session, if it exists and has not expired.
pub async fn get_session(id: Uuid) -> Result<Option<SignupSession>, cachekit::Error> {
    SESSIONS.get(&session_key(id)).await
}

/// Sets one field, atomically: concurrent updates of other fields are never
/// lost. Like every update, it starts the session's five minutes again.
/// `false` if the session is gone.
pub async fn update_field(id: Uuid, field: Field) -> Result<bool, cachekit::Error> {
    let mut patch =
        serde_json::to_value(&field).map_err(|e| cachekit::Error::Codec(e.to_string()))?;
    patch["updated_at_ms"] = now_ms().into();
    SESSIONS.update(&session_key(id), patch).await
}

/// Sets several fields in one atomic update. `false` if the session is gone.
pub async fn update_session(id: Uuid, patch: &SessionPatch) -> Result<bool, cachekit::Error> {
    let mut patch =
        serde_json::to_value(patch).map_err(|e| cachekit::Error::Codec(e.to_string()))?;
    patch["updated_at_ms"] = now_ms().into();
    SESSIONS.update(&session_key(id), patch).await
}

/// Ends a signup: the session and its attempt counter. `false` if there was
/// no session.
pub async fn delete_session(id: Uuid) -> Result<bool, cachekit::Error> {
    let existed = SESSIONS.delete(&session_key(id)).await?;
    SESSIONS.delete(&attempts_key(id)).await?;
    Ok(existed)
}

/// Whether the session exists and has not expired.
pub async fn session_exists(id: Uuid) -> Result<bool, cachekit::Error> {
    SESSIONS.exists(&session_key(id)).await
}

/// Gives the session `ttl` to live from now (for a step that takes longer
/// than five minutes, such as waiting for an email). `false` if it is gone.
pub async fn extend_ttl(id: Uuid, ttl: Duration) -> Result<bool, cachekit::Error> {
    SESSIONS.set_ttl(&session_key(id), ttl).await
}

/// How long the session has left, if it exists.
pub async fn session_ttl(id: Uuid) -> Result<Option<Duration>, cachekit::Error> {
    SESSIONS.ttl(&session_key(id)).await
}

/// Counts one verification attempt and returns how many there were in the
/// current window, atomically (concurrent attempts are all counted). The
/// window is five minutes from the first attempt.
pub async fn increment_attempt(id: Uuid) -> Result<i64, cachekit::Error> {
    SESSIONS.increment(&attempts_key(id), 1).await
}

/// What a verification attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// The code matched; the session moved to [`Stage::EmailVerified`].
    Verified,
    /// Wrong code; this many attempts are left.
    WrongCode {
        /// Attempts left in the window.
        left: i64,
    },
    /// Too many attempts in the window.
    Locked,
    /// No such session (or it expired).
    NoSession,
}

/// Checks a verification code, counting the attempt first so that a burst of
/// guesses cannot get past [`MAX_ATTEMPTS`].
pub async fn verify_code(id: Uuid, code: &str) -> Result<Verification, cachekit::Error> {
    let Some(session) = get_session(id).await? else {
        return Ok(Verification::NoSession);
    };
    let attempts = increment_attempt(id).await?;
    if attempts > MAX_ATTEMPTS {
        return Ok(Verification::Locked);
    }
    if session.code != code {
        return Ok(Verification::WrongCode {
            left: MAX_ATTEMPTS - attempts,
        });
    }
    let moved = update_field(id, Field::Stage(Stage::EmailVerified)).await?;
    Ok(if moved {
        Verification::Verified
    } else {
        Verification::NoSession
    })
}

/// The scripted conversation `main` runs: a signup from start to finish,
/// printing each step.
pub async fn conversation() -> Result<(), Box<dyn std::error::Error>> {
    let session = create_session("ada@example.com", "482913").await?;
    let id = session.id;
    println!("created session {id} for {} (code sent)", session.email);
    println!(
        "  exists: {}, expires in {:?}",
        session_exists(id).await?,
        session_ttl(id)
            .await?
            .map(|d| Duration::from_secs(d.as_secs()))
    );

    for guess in ["111111", "482931"] {
        let outcome = verify_code(id, guess).await?;
        println!("user types {guess}: {outcome:?}");
    }
    let outcome = verify_code(id, "482913").await?;
    println!("user types 482913: {outcome:?}");
    if outcome != Verification::Verified {
        return Err(format!("the right code was refused: {outcome:?}").into());
    }

    // Two browser tabs submit at the same moment, each its own field: the
    // atomic merge keeps both.
    let (name, plan) = tokio::join!(
        update_field(id, Field::Name("Ada Lovelace".into())),
        update_field(id, Field::Plan(Plan::Free)),
    );
    println!(
        "two tabs set name and plan at once: {} and {}",
        name?, plan?
    );

    let patch = SessionPatch {
        stage: Some(Stage::ProfileComplete),
        plan: Some(Plan::Pro),
        ..SessionPatch::default()
    };
    update_session(id, &patch).await?;
    println!("upgraded to pro and completed the profile in one update");

    extend_ttl(id, Duration::from_secs(15 * 60)).await?;
    println!(
        "waiting for the welcome email: session extended, expires in {:?}",
        session_ttl(id)
            .await?
            .map(|d| Duration::from_secs(d.as_secs()))
    );

    let session = get_session(id).await?.ok_or("the session vanished")?;
    println!(
        "session now: stage {:?}, name {:?}, plan {:?}",
        session.stage, session.name, session.plan
    );

    println!("deleted: {}", delete_session(id).await?);
    println!(
        "after delete: exists {}, get {:?}, update applied {}",
        session_exists(id).await?,
        get_session(id).await?,
        update_field(id, Field::Plan(Plan::Free)).await?
    );

    // A second signup, and someone guessing codes.
    let other = create_session("mallory@example.com", "000042").await?;
    for guess in ["000001", "000002", "000003", "000042"] {
        let outcome = verify_code(other.id, guess).await?;
        println!("mallory types {guess}: {outcome:?}");
    }
    delete_session(other.id).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The embedded store unless REDIS_URL is set.
    cachekit::init(Config::from_env()?).await?;
    let health = cachekit::health().await;
    println!(
        "cache backend: {} (reachable: {})\n",
        health.backend, health.reachable
    );
    conversation().await
}
