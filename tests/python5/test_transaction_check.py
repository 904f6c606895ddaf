"""Transaction check-back over gRPC: the broker asks the official 5.x Python producer about half
messages it never ended (RecoverOrphanedTransactionCommand on its Telemetry stream), and the
producer's TransactionChecker answer (EndTransaction from SERVER_CHECK) commits or rolls back."""

import threading

import pytest

from apogee_support import Apogee, apogee_bin, wait_until
from conftest import create_topic

from rocketmq import (ClientConfiguration, Credentials, Message, Producer, TransactionChecker,
                      TransactionResolution)

OP_TOPIC = "RMQ_SYS_TRANS_OP_HALF_TOPIC"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A standalone that checks transactions back within a second or two."""
    root = tmp_path_factory.mktemp("apogee5tx")
    s = Apogee(apogee_bin(), root / "data", root / "apogee.log",
               broker_settings={"transactionCheckInterval": 300, "transactionTimeOut": 1000}).start()
    assert s.grpc, "the ready line names no gRPC endpoint"
    yield s
    s.stop()


class ByBody(TransactionChecker):
    """Commits what says "commit", rolls back the rest; remembers what it was asked."""

    def __init__(self):
        self.asked = {}
        self.lock = threading.Lock()

    def check(self, message):
        with self.lock:
            self.asked[message.message_id] = bytes(message.body)
        if message.body.startswith(b"commit"):
            return TransactionResolution.COMMIT
        return TransactionResolution.ROLLBACK


def records(server, topic):
    return [r for r in server.stored_records() if r.get("topic") == topic]


def test_the_checker_answers_commit_one_and_rollback_the_other(server, topic_name):
    create_topic(server, topic_name, "TRANSACTION")
    checker = ByBody()
    producer = Producer(ClientConfiguration(server.grpc, Credentials()), (topic_name,), checker)
    producer.startup()
    try:
        ids = {}
        for body in (b"commit me later", b"roll me back later"):
            msg = Message()
            msg.topic = topic_name
            msg.body = body
            msg.tag = "TagTx"
            msg.keys = "tx-key"
            msg.add_property("origin", "python5")
            # Sent in a transaction that is never ended: only the check-back can resolve it.
            ids[body] = producer.send(msg, producer.begin_transaction()).message_id
        assert records(server, topic_name) == [], "half messages must stay hidden"

        committed, rolled_back = ids[b"commit me later"], ids[b"roll me back later"]
        wait_until(lambda: committed in {r["uniq_key"] for r in records(server, topic_name)},
                   30, "the checked-back commit to be stored")
        # Each resolution writes one op record: both are resolved once there are two.
        wait_until(lambda: len(records(server, OP_TOPIC)) >= 2, 30, "both transactions resolved")
        with checker.lock:
            assert checker.asked.get(committed) == b"commit me later"
            assert checker.asked.get(rolled_back) == b"roll me back later"
        stored = records(server, topic_name)
        assert [r["uniq_key"] for r in stored] == [committed]
        assert stored[0]["tags"] == "TagTx"
    finally:
        producer.shutdown()
    server.assert_no_panic()
