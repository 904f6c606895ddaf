#!/usr/bin/env bash
# Runs every test Apogee has. This is the README's test command and what CI calls.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --workspace --locked
