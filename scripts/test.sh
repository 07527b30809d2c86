#!/usr/bin/env bash
# The project's tests, on a fresh machine: installs what they need when it
# is absent (Debian's redis-server and redis-tools, whose servers and
# clusters the tests start on free ports, and openssl, which makes the TLS
# tests' certificates), then runs them. Extra arguments go to `cargo test`.
#
#   bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
redis-server --version

# Every crate, every test binary, the examples' tests and the doctests;
# `http` adds the HTTP layer's tests (tests/http.rs) and the trading
# service's, which cache with it.
cargo test --workspace --features http "$@"
# The optional features' own tests.
cargo test -p cachekit-runtime --features metrics --lib stats "$@"
