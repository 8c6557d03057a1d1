#!/usr/bin/env bash
# Runs every check and test on a fresh machine or a developer's: installs what is missing, starts the
# local services (scripts/services.sh), runs fmt, clippy and all tests, and stops the services again
# (set CASCADE_KEEP_SERVICES=1 to leave them running).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf 'test: %s\n' "$*" >&2; }

# Build tools for librdkafka (built from source by rdkafka-sys) and the Rust components we use.
missing=()
for tool in make gcc g++ python3 pkg-config openssl; do command -v "$tool" >/dev/null || missing+=("$tool"); done
# TLS (native-tls, librdkafka) builds against the system OpenSSL.
pkg-config --exists openssl 2>/dev/null || missing+=(libssl-dev)
if [ "${#missing[@]}" -gt 0 ]; then
  [ "$(id -u)" -eq 0 ] || { log "missing ${missing[*]}; install build-essential, python3, pkg-config, openssl and libssl-dev"; exit 1; }
  log "installing build tools (${missing[*]})"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    build-essential python3 pkg-config openssl libssl-dev >/dev/null
fi
command -v cargo >/dev/null || { log "cargo not found; install Rust with rustup"; exit 1; }
if command -v rustup >/dev/null; then
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
fi

scripts/services.sh up
if [ "${CASCADE_KEEP_SERVICES:-0}" != "1" ]; then
  trap 'scripts/services.sh down' EXIT
fi
# shellcheck disable=SC1091
. target/services/env

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "cargo test"
cargo test --workspace --locked
