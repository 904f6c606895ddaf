#!/usr/bin/env bash
# Runs every test Apogee has. This is the README's test command and what CI calls.
# Needs Rust, Python 3 with pip and venv; installs the real-client suite's Python packages
# (tests/python/requirements.txt: PyPI rocketmq, which wraps Apache's C++ client, and pytest)
# into target/pyvenv.
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir="${CARGO_TARGET_DIR:-target}"

echo "== cargo test"
cargo test --workspace --locked

echo "== real-client suite (tests/python)"
cargo build --locked -p apogee
venv="$target_dir/pyvenv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" || {
        echo "cannot create a Python venv: install Python 3 with venv and pip (Debian: python3-venv)" >&2
        exit 1
    }
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt

status=0
APOGEE_BIN="$(cd "$target_dir/debug" && pwd)/apogee" "$venv/bin/python" -m pytest tests/python -q || status=$?
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests in tests/python: that is a failure here" >&2
fi
exit "$status"
