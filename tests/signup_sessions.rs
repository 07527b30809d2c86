//! The signup-session repository of `examples/signup_sessions.rs`, on a real
//! Redis: what it stores, atomic updates and counting, TTLs, expiry, and the
//! example's own scripted conversation.

mod common;

#[path = "../examples/signup_sessions.rs"]
#[allow(dead_code)] // the example's `main`
mod signup;

use std::time::Duration;

use cachekit::Config;
use common::{run, shared_server};
use serde_json::Value;
use signup::{
    Field, MAX_ATTEMPTS, Plan, SessionPatch, Stage, Verification, create_session, delete_session,
    extend_ttl, get_session, increment_attempt, session_exists, update_field, update_session,
    verify_code,
};
use tokio::sync::OnceCell;
use uuid::Uuid;

async fn ready() {
    static READY: OnceCell<()> = OnceCell::const_new();
    READY
        .get_or_init(|| async {
            cachekit::init(Config::redis(&shared_server().url()))
                .await
                .expect("init");
        })
        .await;
}

fn raw(key: &str) -> Option<String> {
    shared_server().cmd(&["GET", key])
}

fn pttl(key: &str) -> i64 {
    shared_server().cmd(&["PTTL", key])
}

#[test]
fn sessions_are_readable_json_for_five_minutes() {
    run(async {
        ready().await;
        let session = create_session("ada@example.com", "123456").await.unwrap();
        let key = format!("signup:session:{}", session.id);
        let stored: Value = serde_json::from_str(&raw(&key).expect("stored")).unwrap();
        assert_eq!(stored["email"], "ada@example.com");
        assert_eq!(stored["stage"], "awaiting_code");
        assert_eq!(stored["plan"], Value::Null);
        let ttl = pttl(&key);
        assert!(ttl > 290_000 && ttl <= 300_000, "five minutes: {ttl}");

        assert_eq!(
            get_session(session.id).await.unwrap(),
            Some(session.clone())
        );
        assert!(session_exists(session.id).await.unwrap());
        let unknown = Uuid::new_v4();
        assert_eq!(get_session(unknown).await.unwrap(), None);
        assert!(!session_exists(unknown).await.unwrap());
    });
}

#[test]
fn fields_update_atomically_and_typed() {
    run(async {
        ready().await;
        let session = create_session("grace@example.com", "654321").await.unwrap();
        let id = session.id;
        assert!(
            update_field(id, Field::Name("Grace Hopper".into()))
                .await
                .unwrap()
        );
        let after = get_session(id).await.unwrap().expect("still there");
        assert_eq!(after.name.as_deref(), Some("Grace Hopper"));
        assert_eq!(after.email, session.email, "other fields untouched");
        assert!(after.updated_at_ms >= session.updated_at_ms);

        // Several fields in one update; the ones left `None` are kept.
        let patch = SessionPatch {
            stage: Some(Stage::ProfileComplete),
            plan: Some(Plan::Pro),
            ..SessionPatch::default()
        };
        assert!(update_session(id, &patch).await.unwrap());
        let after = get_session(id).await.unwrap().unwrap();
        assert_eq!(after.stage, Stage::ProfileComplete);
        assert_eq!(after.plan, Some(Plan::Pro));
        assert_eq!(after.name.as_deref(), Some("Grace Hopper"));

        // Concurrent updates of different fields all land, every time.
        for round in 0..20 {
            let name = format!("name {round}");
            let plan = if round % 2 == 0 {
                Plan::Free
            } else {
                Plan::Pro
            };
            let stage = if round % 2 == 0 {
                Stage::EmailVerified
            } else {
                Stage::ProfileComplete
            };
            let (a, b, c) = tokio::join!(
                update_field(id, Field::Name(name.clone())),
                update_field(id, Field::Plan(plan)),
                update_field(id, Field::Stage(stage)),
            );
            assert!(a.unwrap() && b.unwrap() && c.unwrap());
            let now = get_session(id).await.unwrap().unwrap();
            assert_eq!(
                (now.name.as_deref(), now.plan, now.stage),
                (Some(name.as_str()), Some(plan), stage),
                "round {round}"
            );
        }

        // A session that is gone is not recreated by an update.
        let unknown = Uuid::new_v4();
        assert!(!update_field(unknown, Field::Plan(Plan::Pro)).await.unwrap());
        assert!(!update_session(unknown, &patch).await.unwrap());
        assert_eq!(raw(&format!("signup:session:{unknown}")), None);
    });
}

#[test]
fn attempts_are_counted_atomically_within_a_window() {
    run(async {
        ready().await;
        let session = create_session("eve@example.com", "000000").await.unwrap();
        let id = session.id;
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..100 {
            tasks.spawn(async move { increment_attempt(id).await.unwrap() });
        }
        let mut seen = Vec::new();
        while let Some(n) = tasks.join_next().await {
            seen.push(n.unwrap());
        }
        seen.sort();
        assert_eq!(seen, (1..=100).collect::<Vec<i64>>(), "each count once");
        let key = format!("signup:attempts:{id}");
        assert_eq!(raw(&key).as_deref(), Some("100"));
        let ttl = pttl(&key);
        assert!(
            ttl > 290_000 && ttl <= 300_000,
            "a five-minute window: {ttl}"
        );
    });
}

#[test]
fn verification_locks_after_max_attempts() {
    run(async {
        ready().await;
        let session = create_session("mallory@example.com", "424242")
            .await
            .unwrap();
        let id = session.id;
        for left in (0..MAX_ATTEMPTS).rev() {
            assert_eq!(
                verify_code(id, "000000").await.unwrap(),
                Verification::WrongCode { left }
            );
        }
        assert_eq!(
            verify_code(id, "424242").await.unwrap(),
            Verification::Locked,
            "the right code, too late"
        );
        assert_eq!(
            get_session(id).await.unwrap().unwrap().stage,
            Stage::AwaitingCode
        );

        let other = create_session("ada@example.com", "111111").await.unwrap();
        assert_eq!(
            verify_code(other.id, "111111").await.unwrap(),
            Verification::Verified
        );
        assert_eq!(
            get_session(other.id).await.unwrap().unwrap().stage,
            Stage::EmailVerified
        );
        assert_eq!(
            verify_code(Uuid::new_v4(), "111111").await.unwrap(),
            Verification::NoSession
        );
    });
}

#[test]
fn ttls_extend_and_sessions_expire() {
    run(async {
        ready().await;
        let session = create_session("linus@example.com", "1").await.unwrap();
        let id = session.id;
        let key = format!("signup:session:{id}");
        assert!(extend_ttl(id, Duration::from_secs(900)).await.unwrap());
        let ttl = pttl(&key);
        assert!(ttl > 890_000 && ttl <= 900_000, "extended: {ttl}");
        assert!(
            !extend_ttl(Uuid::new_v4(), Duration::from_secs(900))
                .await
                .unwrap()
        );

        // An update starts the five minutes again.
        update_field(id, Field::Plan(Plan::Free)).await.unwrap();
        let ttl = pttl(&key);
        assert!(
            ttl > 290_000 && ttl <= 300_000,
            "back to five minutes: {ttl}"
        );

        // When it runs out, it is gone for every operation.
        assert!(extend_ttl(id, Duration::from_millis(30)).await.unwrap());
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(get_session(id).await.unwrap(), None);
        assert!(!session_exists(id).await.unwrap());
        assert!(!update_field(id, Field::Plan(Plan::Pro)).await.unwrap());
        assert_eq!(verify_code(id, "1").await.unwrap(), Verification::NoSession);
    });
}

#[test]
fn delete_removes_the_session_and_its_counter() {
    run(async {
        ready().await;
        let session = create_session("del@example.com", "9").await.unwrap();
        let id = session.id;
        increment_attempt(id).await.unwrap();
        assert!(raw(&format!("signup:attempts:{id}")).is_some());
        assert!(delete_session(id).await.unwrap());
        assert_eq!(raw(&format!("signup:session:{id}")), None);
        assert_eq!(raw(&format!("signup:attempts:{id}")), None);
        assert!(!session_exists(id).await.unwrap());
        assert!(!delete_session(id).await.unwrap(), "deleted once");
    });
}

#[test]
fn the_scripted_conversation_runs_on_redis() {
    run(async {
        ready().await;
        signup::conversation()
            .await
            .unwrap_or_else(|e| panic!("the example's conversation failed: {e}"));
    });
}
