"""Fixtures for the real-client suite: a fresh `apogee standalone` per test module (or per test
with `fresh_server`), unique topic and group names, and a client factory that shuts down every
producer and consumer it made."""

import os
import re

import pytest

from apogee_support import REPO_ROOT, Apogee, apogee_bin, unique_suffix

# The C++ client writes its logs to ~/logs/rocketmq-cpp and broadcasting offsets to
# ~/.rocketmq_offsets; keep both inside target/ instead of the user's home. Set before the
# client library is loaded, as it reads HOME when it creates its first client.
CLIENT_HOME = REPO_ROOT / "target" / "pyclient-home"
CLIENT_HOME.mkdir(parents=True, exist_ok=True)
os.environ["HOME"] = str(CLIENT_HOME)

from rocketmq.client import (  # noqa: E402
    Message,
    MessageModel,
    Producer,
    PullConsumer,
    PushConsumer,
    SendStatus,
)
from rocketmq.exceptions import ProducerSendSyncFailed  # noqa: E402
from rocketmq.ffi import dll  # noqa: E402

from apogee_support import wait_until  # noqa: E402

# A topic of its own for the producers' first send (see `Clients.producer`).
WARMUP_TOPIC = "ApogeeTestWarmup"


def pytest_report_header(config):
    return [
        f"apogee binary: {os.environ.get('APOGEE_BIN') or REPO_ROOT / 'target/debug/apogee'}",
        f"C++ client logs: {CLIENT_HOME / 'logs' / 'rocketmq-cpp'}",
    ]


@pytest.fixture(scope="session")
def binary():
    return apogee_bin()


def _server(binary, tmp_path_factory, name, extra_args=()):
    root = tmp_path_factory.mktemp(name)
    return Apogee(binary, root / "data", root / "apogee.log", extra_args)


@pytest.fixture(scope="module")
def server(binary, tmp_path_factory):
    """A broker and name server shared by the tests of one module (their names never collide)."""
    s = _server(binary, tmp_path_factory, "apogee").start()
    yield s
    s.stop()


@pytest.fixture
def fresh_server(binary, tmp_path_factory):
    """A broker and name server of this test's own, not started yet (restart tests drive it).
    Stopped gracefully at teardown if still running, which must exit 0."""
    s = _server(binary, tmp_path_factory, "apogee-own", ["--flush-disk-type", "sync"])
    yield s
    if s.running():
        s.stop()


class Names:
    """Topic and group names unique to one test, legal for RocketMQ ([A-Za-z0-9_-], < 127 chars)."""

    def __init__(self, test_name):
        base = re.sub(r"[^A-Za-z0-9]+", "_", test_name.removeprefix("test_"))[:40].strip("_")
        self.base = f"{base}_{unique_suffix()}"
        self.topic = f"T_{self.base}"

    def group(self, role="c"):
        return f"G{role}_{self.base}"


@pytest.fixture
def names(request):
    return Names(request.node.name)


class Clients:
    """Makes C++ clients against a server and shuts them all down at teardown. Every client gets
    its own instance name, so each has its own client factory inside the library and none can
    pick up another's name-server address or membership."""

    def __init__(self):
        self._open = []

    def producer(self, server, group, timeout_ms=10_000, max_message_size=None):
        p = Producer(group, timeout=timeout_ms, max_message_size=max_message_size)
        p.set_namesrv_addr(server.namesrv)
        dll.SetProducerInstanceName(p._handle, f"{group}-{unique_suffix()}".encode())
        p.start()
        self._open.append(p)
        self._connect(p, server)
        return p

    @staticmethod
    def _connect(producer, server):
        """Works around a race in the C++ client: while its heartbeat thread is still connecting
        to a broker it has just learnt of, a send on another thread finds no connection, gives up
        at once ("GetTransport ... get timed_mutex timeout" in its log) and reports "No route info
        of this topic". One acknowledged send to a side topic, retried until it goes through,
        leaves the connection in place before a test sends anything."""

        last = {}

        def attempt():
            msg = Message(WARMUP_TOPIC)
            msg.set_body(b"connect")
            try:
                status = producer.send_sync(msg).status
                last["outcome"] = f"status {status}"
                return status == SendStatus.OK
            except ProducerSendSyncFailed as e:
                last["outcome"] = str(e)
                return False

        try:
            wait_until(attempt, 30, "a first acknowledged send", interval_s=0.01)
        except AssertionError as e:
            raise AssertionError(
                f"{e}; last outcome: {last.get('outcome')}; server log:\n{server.log_tail()}"
            ) from None

    def push_consumer(self, server, group, topic, callback, expression="*", orderly=False,
                      model=MessageModel.CLUSTERING, start=True):
        c = PushConsumer(group, orderly=orderly, message_model=model)
        c.set_namesrv_addr(server.namesrv)
        c.set_instance_name(f"{group}-{unique_suffix()}")
        c.subscribe(topic, callback, expression)
        if start:
            c.start()
        self._open.append(c)
        return c

    def pull_consumer(self, server, group):
        c = PullConsumer(group)
        c.set_namesrv_addr(server.namesrv)
        c.start()
        self._open.append(c)
        return c

    def shutdown(self, client):
        client.shutdown()
        self._open.remove(client)

    def close_all(self):
        while self._open:
            self._open.pop().shutdown()


@pytest.fixture
def clients():
    c = Clients()
    yield c
    c.close_all()
