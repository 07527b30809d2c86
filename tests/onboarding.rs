//! The onboarding example (`examples/onboarding`) over real HTTP, on a real
//! Redis: the whole flow, every bad input with its error body, the keys and
//! TTLs on the store, concurrent saves, and a cache outage (503 only there).

mod common;

#[path = "../examples/onboarding/app/mod.rs"]
mod app;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use cachekit::Config;
use common::{free_port, run, shared_server};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::{OnceCell, RwLock};
use uuid::Uuid;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// Tests share the global cache; the outage test replaces it, alone.
static GATE: RwLock<()> = RwLock::const_new(());

/// The service, on a free port, over the shared Redis: its base URL.
static SERVICE: OnceCell<String> = OnceCell::const_new();

async fn service() -> &'static str {
    SERVICE
        .get_or_init(|| async {
            cachekit::init(Config::redis(&shared_server().url()))
                .await
                .expect("init");
            own_service().await
        })
        .await
}

fn client() -> &'static reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("client")
    })
}

/// A response: status and JSON body.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    body: Value,
}

impl Reply {
    /// Asserts an error reply: its status, its code, and a message that
    /// contains `says`.
    #[track_caller]
    fn error(&self, status: StatusCode, code: &str, says: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.body["error"]["code"], code, "{self:?}");
        let message = self.body["error"]["message"].as_str().expect("a message");
        assert!(message.contains(says), "`{message}` should say `{says}`");
    }

    #[track_caller]
    fn ok(&self, status: StatusCode) -> &Value {
        assert_eq!(self.status, status, "{self:?}");
        &self.body
    }
}

/// Sends a request; `body` is sent as is. Every reply must be JSON.
async fn send(method: Method, path: &str, body: Option<&str>) -> Reply {
    let url = format!("{}{path}", service().await);
    let mut request = client().request(method.clone(), &url);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_owned());
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.expect("body");
    assert_eq!(
        content_type.as_deref(),
        Some("application/json"),
        "{method} {path} -> {status}: every reply is JSON, got {text:?}"
    );
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    Reply { status, body }
}

async fn get(path: &str) -> Reply {
    send(Method::GET, path, None).await
}

async fn post(path: &str, body: Value) -> Reply {
    send(Method::POST, path, Some(&body.to_string())).await
}

async fn create() -> Uuid {
    let reply = send(Method::POST, "/session", None).await;
    let body = reply.ok(StatusCode::CREATED);
    body["session_id"]
        .as_str()
        .expect("a session_id")
        .parse()
        .expect("a UUID")
}

fn step_data(step: u8) -> Value {
    json!({"step": step, "answer": format!("answer {step}"), "nested": {"ok": true, "list": [step, 0]}})
}

fn completed(body: &Value) -> Vec<u64> {
    body["completed_steps"]
        .as_array()
        .expect("completed_steps")
        .iter()
        .map(|s| s.as_u64().unwrap())
        .collect()
}

/// Every key of a session on the store.
fn keys_of(id: Uuid) -> BTreeSet<String> {
    shared_server()
        .cmd::<Vec<String>>(&["KEYS", &format!("onboarding:{id}:*")])
        .into_iter()
        .collect()
}

fn pttl(key: &str) -> i64 {
    shared_server().cmd(&["PTTL", key])
}

#[test]
fn the_whole_flow_create_23_steps_progress_summary_finalize_delete() {
    run(async {
        let _shared = GATE.read().await;
        let id = create().await;

        // The keys, on the store, with the service's templates.
        let metadata = format!("onboarding:{id}:metadata");
        let progress_key = format!("onboarding:{id}:progress");
        assert_eq!(
            keys_of(id),
            BTreeSet::from([metadata.clone(), progress_key.clone()])
        );
        let raw: String = shared_server().cmd(&["GET", &metadata]);
        let stored: Value = serde_json::from_str(&raw).expect("readable JSON");
        assert_eq!(stored["status"], "in_progress");
        let ttl = pttl(&metadata);
        assert!(
            ttl > 7 * DAY_MS - 60_000 && ttl <= 7 * DAY_MS,
            "7 days: {ttl}"
        );

        let fresh = get(&format!("/{id}/progress")).await;
        let body = fresh.ok(StatusCode::OK);
        assert_eq!(body["completed"], 0);
        assert_eq!(body["total_steps"], 23);
        assert_eq!(body["next_step"], 1);
        assert_eq!(body["remaining_steps"].as_array().unwrap().len(), 23);

        for step in 1..=23u8 {
            let saved = post(&format!("/{id}/steps/{step}"), step_data(step)).await;
            let body = saved.ok(StatusCode::OK);
            assert_eq!(body["step_id"], step);
            assert_eq!(body["completed"], step);
            if step % 5 == 0 || step == 23 {
                let progress = get(&format!("/{id}/progress")).await;
                let body = progress.ok(StatusCode::OK);
                assert_eq!(completed(body), (1..=u64::from(step)).collect::<Vec<_>>());
                assert_eq!(body["status"], "in_progress");
                if step < 23 {
                    assert_eq!(body["next_step"], step + 1);
                } else {
                    assert_eq!(body["next_step"], Value::Null);
                    assert_eq!(body["percent_complete"], 100.0);
                }
            }
        }

        // Saving a step again replaces its data.
        post(
            &format!("/{id}/steps/7"),
            json!({"answer": "changed my mind"}),
        )
        .await
        .ok(StatusCode::OK);
        let step7 = get(&format!("/{id}/steps/7")).await;
        assert_eq!(
            step7.ok(StatusCode::OK)["data"],
            json!({"answer": "changed my mind"})
        );
        let step12 = get(&format!("/{id}/steps/12")).await;
        assert_eq!(step12.ok(StatusCode::OK)["data"], step_data(12));

        // Every key expires when the session does (7 days after creation).
        let keys = keys_of(id);
        assert_eq!(keys.len(), 25, "{keys:?}");
        assert!(keys.contains(&format!("onboarding:{id}:step:23")));
        let end = pttl(&metadata);
        for key in &keys {
            let ttl = pttl(key);
            assert!(
                ttl <= end + 1_000 && ttl > end - 60_000,
                "{key} expires with its session: {ttl} vs {end}"
            );
        }

        let summary = get(&format!("/{id}/summary")).await;
        let body = summary.ok(StatusCode::OK);
        let steps = body["steps"].as_array().expect("steps");
        assert_eq!(steps.len(), 23);
        for (i, step) in steps.iter().enumerate() {
            let n = i as u8 + 1;
            assert_eq!(step["step_id"], n);
            if n != 7 {
                assert_eq!(step["data"], step_data(n));
            }
        }

        let finalized = post(&format!("/{id}/finalize"), json!({})).await;
        let body = finalized.ok(StatusCode::OK);
        assert_eq!(body["status"], "finalized");
        assert!(body["finalized_at_ms"].as_u64().is_some());
        assert_eq!(body["steps"].as_array().unwrap().len(), 23);
        let end_after = pttl(&metadata);
        assert!(
            end_after <= end,
            "finalizing does not extend the session: {end_after} vs {end}"
        );

        // Finalized: read-only.
        post(&format!("/{id}/steps/1"), json!({"late": true}))
            .await
            .error(StatusCode::CONFLICT, "session_finalized", "finalized");
        post(&format!("/{id}/finalize"), json!({})).await.error(
            StatusCode::CONFLICT,
            "session_finalized",
            "finalized",
        );
        let progress = get(&format!("/{id}/progress")).await;
        assert_eq!(progress.ok(StatusCode::OK)["status"], "finalized");

        let deleted = send(Method::DELETE, &format!("/{id}"), None).await;
        assert_eq!(deleted.ok(StatusCode::OK)["deleted"], true);
        assert!(keys_of(id).is_empty(), "nothing left: {:?}", keys_of(id));
        for path in [
            format!("/{id}/progress"),
            format!("/{id}/summary"),
            format!("/{id}/steps/1"),
        ] {
            get(&path)
                .await
                .error(StatusCode::NOT_FOUND, "session_not_found", &id.to_string());
        }
        send(Method::DELETE, &format!("/{id}"), None).await.error(
            StatusCode::NOT_FOUND,
            "session_not_found",
            "deleted",
        );
    });
}

#[test]
fn every_bad_input_gets_a_clear_json_error() {
    run(async {
        let _shared = GATE.read().await;
        let id = create().await;
        post(&format!("/{id}/steps/1"), json!({"name": "Ada"}))
            .await
            .ok(StatusCode::OK);

        // Steps outside 1..=23, or not integers.
        for step in [
            "0",
            "24",
            "255",
            "256",
            "-1",
            "+1",
            "1.5",
            "abc",
            "99999999999999999999",
            "%20",
        ] {
            post(&format!("/{id}/steps/{step}"), json!({"a": 1}))
                .await
                .error(StatusCode::BAD_REQUEST, "invalid_step_id", "from 1 to 23");
            get(&format!("/{id}/steps/{step}")).await.error(
                StatusCode::BAD_REQUEST,
                "invalid_step_id",
                "from 1 to 23",
            );
        }

        // Data that is JSON but not an object.
        for (body, kind) in [
            ("[1, 2]", "an array"),
            ("\"text\"", "a string"),
            ("42", "a number"),
            ("null", "null"),
            ("true", "a boolean"),
        ] {
            send(Method::POST, &format!("/{id}/steps/2"), Some(body))
                .await
                .error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "step_data_not_object",
                    kind,
                );
        }
        // Data that is not JSON.
        for body in ["{\"a\": ", "{oops}", ""] {
            send(Method::POST, &format!("/{id}/steps/2"), Some(body))
                .await
                .error(StatusCode::BAD_REQUEST, "invalid_json", "JSON object");
        }
        // Over the body limit (2 MiB).
        let huge = format!("{{\"blob\": \"{}\"}}", "x".repeat((2 << 20) + 1024));
        send(Method::POST, &format!("/{id}/steps/2"), Some(&huge))
            .await
            .error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "bad_body",
                "could not be read",
            );
        // None of them was saved.
        let progress = get(&format!("/{id}/progress")).await;
        assert_eq!(completed(progress.ok(StatusCode::OK)), vec![1]);

        // Session ids that are not UUIDs, on every endpoint.
        for bad in [
            "nope",
            "1234",
            "not-a-uuid-at-all-but-36-characters",
            "%E2%9C%93",
        ] {
            let says = "must be a UUID";
            post(&format!("/{bad}/steps/1"), json!({})).await.error(
                StatusCode::BAD_REQUEST,
                "invalid_session_id",
                says,
            );
            get(&format!("/{bad}/steps/1")).await.error(
                StatusCode::BAD_REQUEST,
                "invalid_session_id",
                says,
            );
            for path in ["progress", "summary"] {
                get(&format!("/{bad}/{path}")).await.error(
                    StatusCode::BAD_REQUEST,
                    "invalid_session_id",
                    says,
                );
            }
            post(&format!("/{bad}/finalize"), json!({})).await.error(
                StatusCode::BAD_REQUEST,
                "invalid_session_id",
                says,
            );
            send(Method::DELETE, &format!("/{bad}"), None).await.error(
                StatusCode::BAD_REQUEST,
                "invalid_session_id",
                says,
            );
        }
        // Undecodable percent-encoding.
        get("/%FF/progress").await.error(
            StatusCode::BAD_REQUEST,
            "invalid_path",
            "could not be decoded",
        );

        // Unknown sessions, on every endpoint.
        let unknown = Uuid::new_v4();
        let says = "never created, expired after 7 days, or was deleted";
        post(&format!("/{unknown}/steps/1"), json!({"a": 1}))
            .await
            .error(StatusCode::NOT_FOUND, "session_not_found", says);
        assert!(
            keys_of(unknown).is_empty(),
            "no step saved for an unknown session"
        );
        get(&format!("/{unknown}/steps/1")).await.error(
            StatusCode::NOT_FOUND,
            "session_not_found",
            says,
        );
        for path in ["progress", "summary"] {
            get(&format!("/{unknown}/{path}")).await.error(
                StatusCode::NOT_FOUND,
                "session_not_found",
                says,
            );
        }
        post(&format!("/{unknown}/finalize"), json!({}))
            .await
            .error(StatusCode::NOT_FOUND, "session_not_found", says);
        send(Method::DELETE, &format!("/{unknown}"), None)
            .await
            .error(StatusCode::NOT_FOUND, "session_not_found", says);

        // A step not saved yet.
        get(&format!("/{id}/steps/2")).await.error(
            StatusCode::NOT_FOUND,
            "step_not_found",
            "step 2",
        );

        // Finalize before every step is saved: which ones are missing.
        let early = post(&format!("/{id}/finalize"), json!({})).await;
        early.error(
            StatusCode::CONFLICT,
            "onboarding_incomplete",
            "22 of 23 steps",
        );
        assert_eq!(
            early.body["error"]["missing_steps"],
            json!((2..=23).collect::<Vec<u8>>())
        );

        // Routes that do not exist, methods that are not allowed.
        get("/")
            .await
            .error(StatusCode::NOT_FOUND, "not_found", "no route");
        get("/../../nothing/here")
            .await
            .error(StatusCode::NOT_FOUND, "not_found", "no route");
        get("/session")
            .await
            .error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "GET");
        send(Method::PUT, &format!("/{id}/steps/1"), Some("{}"))
            .await
            .error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "PUT");
        post(&format!("/{id}/progress"), json!({})).await.error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "POST",
        );

        // An expired session: its keys run out on the store.
        for key in keys_of(id) {
            let _: i64 = shared_server().cmd(&["PEXPIRE", &key, "1"]);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        get(&format!("/{id}/progress")).await.error(
            StatusCode::NOT_FOUND,
            "session_not_found",
            "expired",
        );
        post(&format!("/{id}/steps/2"), json!({"a": 1}))
            .await
            .error(StatusCode::NOT_FOUND, "session_not_found", "expired");
        assert!(keys_of(id).is_empty(), "{:?}", keys_of(id));
    });
}

#[test]
fn steps_saved_at_once_are_all_counted() {
    run(async {
        let _shared = GATE.read().await;
        let id = create().await;
        let mut saves = tokio::task::JoinSet::new();
        for step in 1..=23u8 {
            saves.spawn(async move { post(&format!("/{id}/steps/{step}"), step_data(step)).await });
        }
        while let Some(reply) = saves.join_next().await {
            reply.expect("no panic").ok(StatusCode::OK);
        }
        let progress = get(&format!("/{id}/progress")).await;
        assert_eq!(
            completed(progress.ok(StatusCode::OK)),
            (1..=23).collect::<Vec<_>>(),
            "the atomic merge keeps every concurrent step"
        );
        post(&format!("/{id}/finalize"), json!({}))
            .await
            .ok(StatusCode::OK);
        send(Method::DELETE, &format!("/{id}"), None)
            .await
            .ok(StatusCode::OK);
    });
}

#[test]
fn a_store_problem_that_is_not_an_outage_is_500_not_503() {
    run(async {
        let _shared = GATE.read().await;
        // Metadata someone else wrote, in a shape the service never writes.
        let id = create().await;
        let _: () = shared_server().cmd(&[
            "SET",
            &format!("onboarding:{id}:metadata"),
            r#"{"not": "metadata"}"#,
        ]);
        get(&format!("/{id}/progress")).await.error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal error",
        );

        // A progress key holding another Redis type: the server refuses the
        // command (WRONGTYPE), which no retry can fix.
        let id = create().await;
        let progress = format!("onboarding:{id}:progress");
        let _: i64 = shared_server().cmd(&["DEL", &progress]);
        let _: i64 = shared_server().cmd(&["LPUSH", &progress, "x"]);
        post(&format!("/{id}/steps/1"), json!({"a": 1}))
            .await
            .error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "internal error",
            );
        let _: i64 = shared_server().cmd(&["DEL", &progress]);
        send(Method::DELETE, &format!("/{id}"), None)
            .await
            .ok(StatusCode::OK);
    });
}

#[test]
fn health_reports_redis() {
    run(async {
        let _shared = GATE.read().await;
        let health = get("/health").await;
        let body = health.ok(StatusCode::OK);
        assert_eq!(body["status"], "ok");
        assert_eq!(body["backend"], "redis");
        assert_eq!(body["reachable"], true);
        assert_eq!(body["circuit"], "closed");
        assert!(body["latency_ms"].as_f64().is_some());
    });
}

#[test]
fn an_unreachable_cache_is_503_and_bad_input_still_4xx() {
    run(async {
        service().await;
        let _alone = GATE.write().await;
        // Nothing listens there: every cache call fails as Unavailable.
        let dead = format!("redis://127.0.0.1:{}", free_port());
        cachekit::init(
            Config::redis(&dead)
                .timeout(Duration::from_millis(300))
                .connect_timeout(Duration::from_millis(300)),
        )
        .await
        .expect("init succeeds while Redis is unreachable");

        let health = get("/health").await;
        assert_eq!(health.status, StatusCode::SERVICE_UNAVAILABLE, "{health:?}");
        assert_eq!(health.body["status"], "unavailable");
        assert_eq!(health.body["reachable"], false);

        let id = Uuid::new_v4();
        let cache_calls = [
            (Method::POST, "/session".to_owned(), None),
            (Method::POST, format!("/{id}/steps/1"), Some("{\"a\": 1}")),
            (Method::GET, format!("/{id}/steps/1"), None),
            (Method::GET, format!("/{id}/progress"), None),
            (Method::GET, format!("/{id}/summary"), None),
            (Method::POST, format!("/{id}/finalize"), None),
            (Method::DELETE, format!("/{id}"), None),
        ];
        for (method, path, body) in cache_calls {
            let url = format!("{}{path}", service().await);
            let mut request = client().request(method.clone(), &url);
            if let Some(body) = body {
                request = request.body(body);
            }
            let response = request.send().await.expect("an answer");
            assert_eq!(
                response.status(),
                StatusCode::SERVICE_UNAVAILABLE,
                "{method} {path}"
            );
            assert_eq!(
                response.headers().get("retry-after").map(|v| v.as_bytes()),
                Some(&b"1"[..])
            );
            let body: Value = response.json().await.expect("JSON");
            assert_eq!(body["error"]["code"], "cache_unavailable", "{body}");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("retry in a moment"),
                "{body}"
            );
        }

        // Input errors are found before the cache is asked: still 4xx.
        post(&format!("/{id}/steps/24"), json!({})).await.error(
            StatusCode::BAD_REQUEST,
            "invalid_step_id",
            "from 1 to 23",
        );
        post("/nope/steps/1", json!({})).await.error(
            StatusCode::BAD_REQUEST,
            "invalid_session_id",
            "UUID",
        );
        post(&format!("/{id}/steps/1"), json!([1])).await.error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "step_data_not_object",
            "array",
        );

        cachekit::init(Config::redis(&shared_server().url()))
            .await
            .expect("init");
        let health = get("/health").await;
        health.ok(StatusCode::OK);
    });
}

#[test]
fn retries_are_for_transient_errors_only() {
    run(async {
        let calls = AtomicU32::new(0);
        // Unavailable twice, then an answer: retried until it comes.
        let answer = app::retry::transient(|| async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 => Err(cachekit::Error::Unavailable("down".into())),
                1 => Err(cachekit::Error::Timeout {
                    op: "get",
                    after: Duration::from_millis(1),
                }),
                _ => Ok(7),
            }
        })
        .await;
        assert_eq!(answer, Ok(7));
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        // Still down after every attempt: the last error, after ATTEMPTS.
        calls.store(0, Ordering::SeqCst);
        let down: Result<(), _> = app::retry::transient(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(cachekit::Error::Unavailable("down".into()))
        })
        .await;
        assert!(matches!(down, Err(cachekit::Error::Unavailable(_))));
        assert_eq!(calls.load(Ordering::SeqCst), app::retry::ATTEMPTS);

        // Not transient: never retried.
        for error in [
            cachekit::Error::Codec("not an object".into()),
            cachekit::Error::Backend("WRONGTYPE".into()),
            cachekit::Error::InvalidInput("empty key".into()),
        ] {
            calls.store(0, Ordering::SeqCst);
            let failed: Result<(), _> = app::retry::transient(|| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(error.clone())
            })
            .await;
            assert_eq!(failed, Err(error));
            assert_eq!(calls.load(Ordering::SeqCst), 1, "tried once");
        }
    });
}

/// The service on a free port of the current runtime, its base URL: under
/// `#[cachekit::test]`, its handlers use the test's own cache.
async fn own_service() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app::app()).await.expect("serve") });
    format!("http://{addr}{}", app::PREFIX)
}

/// A cache outage tested with injected faults, in a cache of the test's
/// own: no server to stop, no global cache to replace, and the other
/// tests of this binary go on beside it.
#[cachekit::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_cache_is_503_until_it_heals() {
    let base = own_service().await;
    let created = client()
        .post(format!("{base}/session"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(created.status(), StatusCode::CREATED);
    let id = created.json::<Value>().await.expect("JSON")["session_id"]
        .as_str()
        .expect("a session_id")
        .to_owned();

    cachekit::testing::faults().fail_all();
    let progress = client()
        .get(format!("{base}/{id}/progress"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(progress.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        progress.headers().get("retry-after").map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    assert!(cachekit::testing::stats().errors > 0);
    assert!(cachekit::testing::faults().injected() > 0);

    cachekit::testing::faults().heal();
    // The breaker the failures opened lets calls through again within a
    // second or so.
    let healed = std::time::Instant::now();
    loop {
        let progress = client()
            .get(format!("{base}/{id}/progress"))
            .send()
            .await
            .expect("an answer");
        if progress.status() == StatusCode::OK {
            break;
        }
        assert_eq!(progress.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            healed.elapsed() < Duration::from_secs(5),
            "the service never recovered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
