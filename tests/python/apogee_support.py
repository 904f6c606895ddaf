"""Helpers for the real-client suite: an `apogee standalone` process, polling with deadlines, and
message specs that remember what was sent so a test can compare it with what was received."""

import json
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_RE = re.compile(r"^apogee \S+ ready: namesrv=(\S+) broker=(\S+)(?: grpc=(\S+))?(?: http=(\S+))?$")
# Generous: a debug build on a loaded 2-core machine can take a while to open its store.
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
# How long a test waits for messages to arrive before it fails.
DELIVERY_TIMEOUT_S = 30.0
# `[broker]` settings of every server here: 64 MiB log segments and a small index keep each
# server's preallocated files small, and the disk-use limits sit at 100% so that no test depends on
# how full the machine's disk is (RocketMQ's 90% would refuse sends on a nearly full CI disk;
# retention and the disk-full answer have their own tests in the store).
TEST_BROKER_SETTINGS = {
    "mappedFileSizeCommitLog": 64 * 1024 * 1024,
    "maxHashSlotNum": 16384,
    "maxIndexNum": 65536,
    "consumeQueueEntriesPerFile": 16384,
    "diskMaxUsedSpaceRatio": 100,
    "diskSpaceCleanForciblyRatio": 100,
    "diskSpaceWarningLevelRatio": 100,
}


def apogee_bin():
    """The binary under test: `APOGEE_BIN`, else `target/debug/apogee` in this repository."""
    path = Path(os.environ.get("APOGEE_BIN") or REPO_ROOT / "target" / "debug" / "apogee")
    if not path.is_file():
        raise FileNotFoundError(
            f"apogee binary not found at {path}: run `cargo build -p apogee` or set APOGEE_BIN"
        )
    return path


def wait_until(predicate, timeout_s, what, interval_s=0.02):
    """Polls `predicate` until it returns a truthy value (returned) or `timeout_s` passes (fails)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(interval_s)


class Apogee:
    """One `apogee standalone` process on ephemeral loopback ports with a given data dir.

    Its TOML configuration (written next to the log) holds `TEST_BROKER_SETTINGS` updated with
    `broker_settings`. `start` waits for the ready line; `stop` sends SIGTERM and requires exit
    code 0; `kill` sends SIGKILL. The same object can be started again on the same data dir (new
    ports each time)."""

    def __init__(self, binary, data_dir, log_path, extra_args=(), broker_settings=None):
        self.binary = Path(binary)
        self.data_dir = Path(data_dir)
        self.log_path = Path(log_path)
        self.extra_args = list(extra_args)
        self.config_path = self.log_path.with_suffix(".toml")
        settings = {**TEST_BROKER_SETTINGS, **(broker_settings or {})}
        self.config_path.write_text(
            "[broker]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items())
        )
        self.proc = None
        self.namesrv = None
        self.broker = None
        self.grpc = None
        self.starts = 0

    def start(self):
        assert self.proc is None, "already running"
        self.starts += 1
        log = open(self.log_path, "ab")
        log.write(f"---- start #{self.starts}\n".encode())
        log.flush()
        cmd = [
            str(self.binary), "standalone",
            "--data-dir", str(self.data_dir),
            "--namesrv-listen", "127.0.0.1:0",
            "--broker-listen", "127.0.0.1:0",
            "--broker-ip", "127.0.0.1",
            "--grpc-listen", "127.0.0.1:0",
            "--http-listen", "127.0.0.1:0",
            "--config", str(self.config_path),
            *self.extra_args,
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        ready = threading.Event()
        found = {}

        def read_stdout(stream):
            for raw in stream:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                m = READY_RE.match(line)
                if m and not ready.is_set():
                    found["namesrv"], found["broker"], found["grpc"] = m.group(1), m.group(2), m.group(3)
                    ready.set()
            ready.set()  # stdout closed: the process is gone; start() reports it

        threading.Thread(target=read_stdout, args=(self.proc.stdout,), daemon=True).start()
        if not ready.wait(READY_TIMEOUT_S) or "namesrv" not in found:
            code = self.proc.poll()
            self._reap()
            raise AssertionError(
                f"apogee did not print its ready line (exit code {code}); log:\n{self.log_tail()}"
            )
        self.namesrv, self.broker, self.grpc = found["namesrv"], found["broker"], found["grpc"]
        return self

    def _reap(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def stop(self):
        """Graceful stop: SIGTERM, then the process must exit 0 within the timeout."""
        proc = self.proc
        assert proc is not None, "not running"
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._reap()
            raise AssertionError(f"apogee ignored SIGTERM for {STOP_TIMEOUT_S}s")
        self.proc = None
        assert code == 0, f"apogee exited with {code} after SIGTERM; log:\n{self.log_tail()}"
        self.assert_no_panic()

    def kill(self):
        """Crash stop: SIGKILL, no chance to flush or persist anything."""
        proc = self.proc
        assert proc is not None, "not running"
        proc.kill()
        proc.wait()
        self.proc = None

    def stored_records(self, limit=100_000):
        """Every record in the CommitLog, read by `apogee store inspect` (read-only, safe while
        the broker runs)."""
        out = subprocess.run(
            [str(self.binary), "store", "inspect", "--dir", str(self.data_dir / "store"),
             "records", "--json", "--limit", str(limit)],
            check=True, capture_output=True,
        ).stdout
        return json.loads(out)["records"]

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def log_text(self):
        try:
            return self.log_path.read_text("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines=40):
        return "\n".join(self.log_text().splitlines()[-lines:])

    def assert_no_panic(self):
        text = self.log_text()
        assert "panicked" not in text, f"apogee panicked; log:\n{self.log_tail()}"


def unique_suffix():
    return uuid.uuid4().hex[:8]


@dataclass(frozen=True)
class Spec:
    """A message as sent: enough to build it and to check what a consumer got."""

    topic: str
    mid: str  # test-made id, also in the properties as `mid`
    body: bytes
    tags: str = ""
    keys: str = ""
    props: dict = field(default_factory=dict)

    def message(self):
        from rocketmq.client import Message

        msg = Message(self.topic)
        if self.tags:
            msg.set_tags(self.tags)
        if self.keys:
            msg.set_keys(self.keys)
        msg.set_property("mid", self.mid)
        for k, v in self.props.items():
            msg.set_property(k, v)
        msg.set_body(self.body)
        return msg


@dataclass
class Received:
    """What a consumer callback saw, copied out (the native message is freed after the callback)."""

    topic: str
    mid: str
    body: bytes
    tags: str
    keys: str
    props: dict
    queue_id: int
    queue_offset: int
    msg_id: str
    consumer: str = ""


# Property names the specs use besides `mid`; the collector reads exactly these back.
PROP_NAMES = ("color", "note", "seq", "order-key")


def make_specs(topic, n, prefix="m", tags="TagA", with_props=True, body_size=None):
    """`n` distinct messages, each with its own keys, tags and properties."""
    specs = []
    for i in range(n):
        mid = f"{prefix}-{i}-{unique_suffix()}"
        body = f"body of {mid} | héllo wörld | {i}".encode()
        if body_size is not None:
            body = pseudo_random_body(body_size, seed=i)
        props = {"color": ["red", "green", "blue"][i % 3], "note": f"n={i}; a=b, c:d"} if with_props else {}
        specs.append(
            Spec(topic=topic, mid=mid, body=body, tags=tags, keys=f"key-{i} order-{i % 7}", props=props)
        )
    return specs


def pseudo_random_body(size, seed=0):
    """`size` bytes without NUL (the client passes bodies as C strings), half random, half text,
    so zlib shrinks it but not to nothing."""
    import random

    rng = random.Random(seed)
    out = bytearray()
    while len(out) < size:
        if rng.random() < 0.5:
            out.extend(rng.randrange(1, 256) for _ in range(64))
        else:
            out.extend(b"apogee speaks rocketmq; " * 3)
    return bytes(out[:size])


def to_text(value):
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


class Collector:
    """Thread-safe sink for consumer callbacks, with waits that wake on each arrival."""

    def __init__(self, name="", prop_names=PROP_NAMES, cond=None):
        """Collectors given one `cond` wake each other's waits, for conditions over several."""
        self.name = name
        self.prop_names = prop_names
        self.items = []
        self._cond = cond or threading.Condition(threading.RLock())

    def __call__(self, msg):
        self.add(self.snapshot(msg))

    def snapshot(self, msg):
        return Received(
            topic=to_text(msg.topic),
            mid=to_text(msg.get_property("mid")),
            body=bytes(msg.body or b""),
            tags=to_text(msg.tags),
            keys=to_text(msg.keys),
            props={k: to_text(msg.get_property(k)) for k in self.prop_names},
            queue_id=msg.queue_id,
            queue_offset=msg.queue_offset,
            msg_id=to_text(msg.id),
            consumer=self.name,
        )

    def add(self, rec):
        with self._cond:
            self.items.append(rec)
            self._cond.notify_all()

    def snapshot_list(self):
        with self._cond:
            return list(self.items)

    def mids(self):
        return [r.mid for r in self.snapshot_list()]

    def wait_for(self, predicate, what, timeout_s=DELIVERY_TIMEOUT_S):
        """Waits until `predicate(items)` holds; wakes on every new message."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not predicate(self.items):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"timed out after {timeout_s:.0f}s waiting for {what} "
                        f"({len(self.items)} messages received by {self.name or 'consumer'})"
                    )
                self._cond.wait(left)
            return list(self.items)

    def wait_for_mids(self, mids, timeout_s=DELIVERY_TIMEOUT_S):
        want = set(mids)
        return self.wait_for(
            lambda items: want <= {r.mid for r in items},
            f"{len(want)} messages",
            timeout_s,
        )


def assert_matches(spec, rec):
    """The received message is the sent one: topic, body, tags, keys and every property."""
    assert rec.mid == spec.mid
    assert rec.topic == spec.topic, (spec.mid, rec.topic)
    assert rec.body == spec.body, f"{spec.mid}: body differs ({len(rec.body)} vs {len(spec.body)} bytes)"
    assert rec.tags == spec.tags, (spec.mid, rec.tags, spec.tags)
    assert rec.keys == spec.keys, (spec.mid, rec.keys, spec.keys)
    for k in PROP_NAMES:
        assert rec.props.get(k, "") == spec.props.get(k, ""), (spec.mid, k, rec.props, spec.props)


def assert_all_received(specs, received, exactly_once=True):
    """Every spec arrived intact; with `exactly_once`, none of them arrived twice."""
    by_mid = {}
    for rec in received:
        by_mid.setdefault(rec.mid, []).append(rec)
    missing = [s.mid for s in specs if s.mid not in by_mid]
    assert not missing, f"{len(missing)} of {len(specs)} messages never arrived, e.g. {missing[:3]}"
    for s in specs:
        for rec in by_mid[s.mid]:
            assert_matches(s, rec)
    if exactly_once:
        dups = {m: len(v) for m, v in by_mid.items() if len(v) > 1}
        assert not dups, f"duplicates: {dups}"
