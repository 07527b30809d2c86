//! The behaviour suites on one real Redis server, and what cachekit stores
//! there: key names, readable JSON, TTLs.

mod common;
mod suite;

use std::time::Duration;

use cachekit::{Cache, cached};
use common::{run, shared_server};

fn ctx() -> suite::Ctx {
    suite::Ctx {
        name: "redis",
        config: || cachekit::Config::redis(&shared_server().url()),
        shared: true,
    }
}

all_tests!(ctx());

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Account {
    id: u64,
    owner: String,
}

#[cached(ttl = 30, key = "acc:user:{id}")]
async fn account(id: u64) -> Result<Account, String> {
    suite::bump("raw-account");
    Ok(Account {
        id,
        owner: "ada".into(),
    })
}

#[test]
fn keys_values_and_ttls_are_what_redis_users_expect() {
    run(async {
        ctx().ready().await;
        let server = shared_server();
        account(7).await.unwrap();
        let raw: String = server.cmd(&["GET", "acc:user:7"]);
        let value: serde_json::Value = serde_json::from_str(&raw).expect("readable JSON");
        assert_eq!(value, serde_json::json!({"id": 7, "owner": "ada"}));
        let pttl: i64 = server.cmd(&["PTTL", "acc:user:7"]);
        assert!(
            pttl > 25_000 && pttl <= 30_000,
            "PTTL {pttl} is within the TTL"
        );
        account(7).await.unwrap();
        assert_eq!(suite::count("raw-account"), 1);
        assert_eq!(cachekit::invalidate("acc:user:*").await.unwrap(), 1);
        let exists: i64 = server.cmd(&["EXISTS", "acc:user:7"]);
        assert_eq!(exists, 0);
        account(7).await.unwrap();
        assert_eq!(
            suite::count("raw-account"),
            2,
            "recomputed after the invalidation"
        );
    });
}

#[test]
fn namespaced_keys_live_under_their_prefix() {
    run(async {
        ctx().ready().await;
        let server = shared_server();
        static SIGNUP: Cache = Cache::new("signup-raw", Duration::from_secs(300));
        SIGNUP
            .set("abc", &serde_json::json!({"email": "a@b.c"}))
            .await
            .unwrap();
        let raw: String = server.cmd(&["GET", "signup-raw:abc"]);
        assert_eq!(raw, r#"{"email":"a@b.c"}"#);
        cachekit::invalidate_namespace("signup-raw").await.unwrap();
        SIGNUP.set("abc", &1).await.unwrap();
        let raw: String = server.cmd(&["GET", "signup-raw#1:abc"]);
        assert_eq!(raw, "1");
    });
}

#[cached(ttl = 30, key = "acc:garbage:{id}")]
async fn account_over_garbage(id: u64) -> Result<Account, String> {
    Ok(Account {
        id,
        owner: "ada".into(),
    })
}

#[test]
fn garbage_written_by_others_is_a_miss_and_gets_overwritten() {
    run(async {
        ctx().ready().await;
        let server = shared_server();
        for (i, garbage) in ["{not json", "\u{0}\u{ff}binary", "[1,2,3]", "\"a string\""]
            .iter()
            .enumerate()
        {
            let id = 100 + i as u64;
            let key = format!("acc:garbage:{id}");
            let _: () = server.cmd(&["SET", &key, garbage]);
            let got = account_over_garbage(id).await.unwrap();
            assert_eq!(got.id, id);
            let raw: String = server.cmd(&["GET", &key]);
            assert!(raw.starts_with('{'), "overwritten with a good value: {raw}");
        }
    });
}
