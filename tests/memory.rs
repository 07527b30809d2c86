//! The behaviour suites on the embedded in-memory backend.

mod common;
mod suite;

fn ctx() -> suite::Ctx {
    suite::Ctx {
        name: "memory",
        config: cachekit::Config::memory,
        shared: false,
    }
}

all_tests!(ctx());
