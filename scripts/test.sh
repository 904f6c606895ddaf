#!/usr/bin/env bash
# Runs every test Apogee has. This is the README's test command and what CI calls.
# Needs Rust, Python 3 with pip and venv; installs the real-client suite's Python packages
# (tests/python/requirements.txt: PyPI rocketmq, which wraps Apache's C++ client, and pytest)
# into target/pyvenv, and the gRPC suite's (tests/python5/requirements.txt: PyPI
# rocketmq-python-client, Apache's 5.x Python client) into target/pyvenv5.
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

apogee_bin="$(cd "$target_dir/debug" && pwd)/apogee"
status=0
APOGEE_BIN="$apogee_bin" "$venv/bin/python" -m pytest tests/python -q || status=$?
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests in tests/python: that is a failure here" >&2
fi

# The 5.x client installs its own top-level `rocketmq` package: a venv of its own.
echo "== gRPC client suite (tests/python5)"
venv5="$target_dir/pyvenv5"
if [ ! -x "$venv5/bin/python" ]; then
    python3 -m venv "$venv5"
fi
"$venv5/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/python5/requirements.txt
status5=0
APOGEE_BIN="$apogee_bin" "$venv5/bin/python" -m pytest tests/python5 -q || status5=$?
if [ "$status5" -eq 5 ]; then
    echo "pytest collected no tests in tests/python5: that is a failure here" >&2
fi
[ "$status" -ne 0 ] && exit "$status"
exit "$status5"
