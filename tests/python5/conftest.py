"""Fixtures for the RocketMQ 5.x (gRPC) client suite: one `apogee standalone` per module, reached
through its gRPC endpoint (the `grpc=` of the ready line), with helpers to create typed topics over
remoting and to read what the broker stored."""

import json
import socket
import struct
import sys
from pathlib import Path

import pytest

# The process fixture and helpers are shared with the 4.x suite.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "python"))

from apogee_support import REPO_ROOT, Apogee, apogee_bin, unique_suffix  # noqa: E402

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
