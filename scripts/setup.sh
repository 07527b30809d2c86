#!/usr/bin/env bash
# What the tests need on a fresh machine, installed when absent: Debian's
# redis-server and redis-tools (the tests start their own servers and
# clusters on free ports) and openssl (the TLS tests make their
# certificates). Called by scripts/test.sh and .ci/run; fails if any is
# still missing afterwards.
set -euo pipefail

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
for tool in redis-server redis-cli openssl; do
    command -v "$tool" >/dev/null 2>&1 || { echo "$tool is still missing" >&2; exit 1; }
done
