#!/usr/bin/env bash
# Runs every test of the project on a fresh Debian machine with Rust: formatting, then the whole
# workspace (unit, integration, crash and model-based tests, doc tests). `.ci/run` calls exactly
# this script, and the README names it as the test command.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all -- --check
# The end-to-end tests run the real binary.
cargo build -p auditlog --locked
cargo test --workspace --locked
# The fuzz targets (their own workspace, built by cargo-fuzz with its flags) still compile
# against the crates they drive: an API change would otherwise break them silently.
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}" cargo check --manifest-path fuzz/Cargo.toml --locked --bins
# The Audit Logs page in headless Chromium (installs chromium and playwright-core if missing).
bash tests/browser/run.sh
