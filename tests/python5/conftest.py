"""Fixtures for the RocketMQ 5.x (gRPC) client suite: one `apogee standalone` per module, reached
through its gRPC endpoint (the `grpc=` of the ready line), with helpers to create typed topics over
remoting and to read what the broker stored."""

import json
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest

# The process fixture and helpers are shared with the 4.x suite.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))

from apogee_support import (  # noqa: E402
    READY_TIMEOUT_S, REPO_ROOT, STOP_TIMEOUT_S, Apogee, apogee_bin, unique_suffix,
)

UPDATE_AND_CREATE_TOPIC = 17


def pytest_report_header(config):
    return [f"apogee binary: {apogee_bin()}"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("apogee5")
    s = Apogee(apogee_bin(), root / "data", root / "apogee.log").start()
    assert s.grpc, "the ready line names no gRPC endpoint"
    yield s
    s.stop()


PROXY_READY_RE = re.compile(r"^apogee \S+ ready: proxy grpc=(\S+)")


class Proxy:
    """`apogee proxy -n <namesrv>` in front of a running `Apogee`: clients dial `grpc`, topics
    are still created on (and records read from) the cluster behind it."""

    def __init__(self, cluster, log_path):
        self.cluster = cluster
        self.broker = cluster.broker
        self.log_path = Path(log_path)
        self.grpc = None
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [str(apogee_bin()), "proxy", "-n", cluster.namesrv, "--grpc-listen", "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
        )
        log.close()
        ready = threading.Event()
        found = {}

        def read_stdout(stream):
            for raw in stream:
                m = PROXY_READY_RE.match(raw.decode("utf-8", "replace").rstrip("\n"))
                if m and not ready.is_set():
                    found["grpc"] = m.group(1)
                    ready.set()
            ready.set()

        threading.Thread(target=read_stdout, args=(self.proc.stdout,), daemon=True).start()
        if not ready.wait(READY_TIMEOUT_S) or "grpc" not in found:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"apogee proxy did not print its ready line; log:\n{self.log_text()}")
        self.grpc = found["grpc"]

    def stored_records(self, limit=100_000):
        return self.cluster.stored_records(limit)

    def log_text(self):
        try:
            return self.log_path.read_text("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"apogee proxy ignored SIGTERM for {STOP_TIMEOUT_S}s")
        assert code == 0, f"apogee proxy exited with {code}; log:\n{self.log_text()}"
        assert "panicked" not in self.log_text(), self.log_text()


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    """A standalone cluster with `apogee proxy` in front; `proxy.grpc` is the proxy's endpoint."""
    root = tmp_path_factory.mktemp("apogee5proxy")
    cluster = Apogee(apogee_bin(), root / "data", root / "apogee.log").start()
    try:
        p = Proxy(cluster, root / "proxy.log")
    except BaseException:
        cluster.stop()
        raise
    yield p
    try:
        p.stop()
    finally:
        cluster.stop()


def remoting_call(addr, code, ext_fields, timeout_s=10.0):
    """One JSON-header remoting request; returns the response header as a dict."""
    host, port = addr.rsplit(":", 1)
    header = json.dumps({
        "code": code, "extFields": ext_fields, "flag": 0, "language": "PYTHON",
        "opaque": 1, "serializeTypeCurrentRPC": "JSON", "version": 500,
    }).encode()
    frame = struct.pack(">ii", 4 + len(header), len(header)) + header
    with socket.create_connection((host, int(port)), timeout=timeout_s) as sock:
        sock.sendall(frame)

        def read_exact(n):
            buf = b""
            while len(buf) < n:
                chunk = sock.recv(n - len(buf))
                if not chunk:
                    raise AssertionError("connection closed before the response")
                buf += chunk
            return buf

        (total,) = struct.unpack(">i", read_exact(4))
        body = read_exact(total)
        (header_len,) = struct.unpack(">i", body[:4])
        return json.loads(body[4:4 + (header_len & 0xFFFFFF)])


def create_topic(server, topic, message_type, queues=4):
    response = remoting_call(server.broker, UPDATE_AND_CREATE_TOPIC, {
        "topic": topic, "defaultTopic": "TBW102", "readQueueNums": str(queues),
        "writeQueueNums": str(queues), "perm": "6", "topicFilterType": "SINGLE_TAG",
        "topicSysFlag": "0", "order": "false", "attributes": f"+message.type={message_type}",
    })
    assert response["code"] == 0, response


@pytest.fixture
def topic_name(request):
    base = "".join(c if c.isalnum() else "_" for c in request.node.name)[:40]
    return f"T5_{base}_{unique_suffix()}"
