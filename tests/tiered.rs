//! The behaviour suites with the in-process tier in front of Redis for
//! every read (`LocalTierConfig { all: true, .. }`): within one process the
//! tier must be invisible, except in speed.

mod common;
mod suite;

use cachekit::{Config, LocalTierConfig};
use common::shared_server;

fn ctx() -> suite::Ctx {
    suite::Ctx {
        name: "tiered",
        config: || {
            Config::redis(&shared_server().url()).local_tier(LocalTierConfig {
                all: true,
                ..LocalTierConfig::default()
            })
        },
        shared: true,
    }
}

all_tests!(ctx());
