#!/usr/bin/env bash
# The project's tests, on a fresh machine: installs what they need when it
# is absent (Debian's redis-server and redis-tools, whose servers and
# clusters the tests start on free ports, and openssl, which makes the TLS
# tests' certificates), then runs them. Extra arguments go to `cargo test`.
#
#   bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing ${missing[*]} from Debian's packages"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
redis-server --version

# Every crate, every test binary, the examples' tests and the doctests;
# `http` adds the HTTP layer's tests (tests/http.rs) and the trading
# service's, which cache with it.
cargo test --workspace --features http "$@"
# The optional features' own tests.
cargo test -p cachekit-runtime --features metrics --lib stats "$@"
