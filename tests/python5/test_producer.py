"""The official RocketMQ 5.x Python client (PyPI rocketmq-python-client) producing through
Apogee's gRPC endpoint: normal, FIFO, delay and transaction messages. Delivery is checked in the
broker's store (`apogee store inspect`), as the 5.x consumers need POP."""

import time

import pytest

from apogee_support import wait_until
from conftest import create_topic

from rocketmq import (ClientConfiguration, Credentials, Message, Producer, TransactionChecker,
                      TransactionResolution)


class RollbackOrphans(TransactionChecker):
    """Answers a check-back (none is expected here: every transaction is ended at once)."""

    def check(self, message):
        return TransactionResolution.ROLLBACK


def make_producer(server, topics, checker=None):
    config = ClientConfiguration(server.grpc, Credentials())
    producer = Producer(config, tuple(topics), checker)
    producer.startup()
    return producer


def message(topic, body, tag="TagA", key="k1"):
    msg = Message()
    msg.topic = topic
    msg.body = body
    msg.tag = tag
    msg.keys = key
    msg.add_property("origin", "python5")
    return msg


def records_of(server, topic):
    return [r for r in server.stored_records() if r.get("topic") == topic]


def wait_stored(server, topic, uniq_keys):
    def stored():
        got = {r["uniq_key"] for r in records_of(server, topic)}
        return set(uniq_keys) <= got

    wait_until(stored, 20, f"{uniq_keys} stored in {topic}")


def test_normal_message_is_stored_under_the_client_message_id(server, topic_name):
    create_topic(server, topic_name, "NORMAL")
    producer = make_producer(server, [topic_name])
    try:
        receipt = producer.send(message(topic_name, b"hello normal"))
    finally:
        producer.shutdown()
    assert receipt.message_id
    wait_stored(server, topic_name, [receipt.message_id])
    (record,) = records_of(server, topic_name)
    assert record["tags"] == "TagA"
    assert record["body_len"] == len(b"hello normal")


def test_fifo_messages_of_one_group_land_in_one_queue_in_order(server, topic_name):
    create_topic(server, topic_name, "FIFO")
    producer = make_producer(server, [topic_name])
    ids = []
    try:
        for i in range(3):
            msg = message(topic_name, f"fifo {i}".encode())
            msg.message_group = "order-42"
            ids.append(producer.send(msg).message_id)
    finally:
        producer.shutdown()
    wait_stored(server, topic_name, ids)
    records = records_of(server, topic_name)
    assert [r["uniq_key"] for r in sorted(records, key=lambda r: r["queue_offset"])] == ids
    assert len({r["queue_id"] for r in records}) == 1


def test_a_normal_message_to_a_fifo_topic_is_refused(server, topic_name):
    create_topic(server, topic_name, "FIFO")
    producer = make_producer(server, [topic_name])
    try:
        with pytest.raises(Exception):
            producer.send(message(topic_name, b"not fifo"))
    finally:
        producer.shutdown()


def test_delay_message_is_held_until_its_delivery_time(server, topic_name):
    create_topic(server, topic_name, "DELAY")
    producer = make_producer(server, [topic_name])
    try:
        msg = message(topic_name, b"later")
        # rocketmq-python-client 5.1.2 documents milliseconds but copies the value into
        # `Timestamp.seconds` as is: what reaches the server is this value in seconds.
        msg.delivery_timestamp = int(time.time()) + 2
        receipt = producer.send(msg)
    finally:
        producer.shutdown()
    assert receipt.message_id
    assert receipt.message_id not in {r["uniq_key"] for r in records_of(server, topic_name)}
    wait_stored(server, topic_name, [receipt.message_id])


def test_transaction_commit_is_stored_and_rollback_is_not(server, topic_name):
    create_topic(server, topic_name, "TRANSACTION")
    producer = make_producer(server, [topic_name], RollbackOrphans())
    try:
        committed = producer.begin_transaction()
        kept = producer.send(message(topic_name, b"commit me"), committed)
        rolled_back = producer.begin_transaction()
        dropped = producer.send(message(topic_name, b"roll me back"), rolled_back)
        assert records_of(server, topic_name) == [], "half messages must stay hidden"
        committed.commit()
        rolled_back.rollback()
    finally:
        producer.shutdown()
    wait_stored(server, topic_name, [kept.message_id])
    assert dropped.message_id not in {r["uniq_key"] for r in records_of(server, topic_name)}
