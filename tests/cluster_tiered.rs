//! The behaviour suites on a real local Redis Cluster with the in-process
//! tier in front of it for every read (`LocalTierConfig { all: true, .. }`):
//! the tier follows invalidations published through any node, and within
//! one process it must be invisible, except in speed.

mod common;
mod suite;

use cachekit::{Config, LocalTierConfig};
use common::cluster::shared_cluster;

fn ctx() -> suite::Ctx {
    suite::Ctx {
        name: "cluster-tiered",
        config: || {
            Config::cluster(&shared_cluster().urls()).local_tier(LocalTierConfig {
                all: true,
                ..LocalTierConfig::default()
            })
        },
        shared: true,
    }
}

all_tests!(ctx());
