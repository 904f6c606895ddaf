"""The official 5.x Python PushConsumer through Apogee's gRPC endpoint: it receives with
auto_renew (the server renews its receipt handles), gets every message exactly as sent, and, in
a group that consumes orderly, each message group's messages in the order they were sent."""

import json
import socket
import struct
import threading

from apogee_support import wait_until
from conftest import create_topic
from test_producer import make_producer

from rocketmq import (ClientConfiguration, ConsumeResult, Credentials, FilterExpression, Message,
                      MessageListener, PushConsumer)

UPDATE_AND_CREATE_SUBSCRIPTIONGROUP = 200


def create_group(server, group, orderly):
    """UPDATE_AND_CREATE_SUBSCRIPTIONGROUP with a JSON SubscriptionGroupConfig body."""
    body = json.dumps({"groupName": group, "consumeMessageOrderly": orderly,
                       "retryMaxTimes": 16}).encode()
    header = json.dumps({
        "code": UPDATE_AND_CREATE_SUBSCRIPTIONGROUP, "extFields": {}, "flag": 0,
        "language": "PYTHON", "opaque": 1, "serializeTypeCurrentRPC": "JSON", "version": 500,
    }).encode()
    host, port = server.broker.rsplit(":", 1)
    frame = struct.pack(">ii", 4 + len(header) + len(body), len(header)) + header + body
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(frame)
        buf = b""
        while len(buf) < 4:
            buf += sock.recv(4 - len(buf))
        (total,) = struct.unpack(">i", buf)
        rest = b""
        while len(rest) < total:
            chunk = sock.recv(total - len(rest))
            assert chunk, "connection closed"
            rest += chunk
        (header_len,) = struct.unpack(">i", rest[:4])
        response = json.loads(rest[4:4 + (header_len & 0xFFFFFF)])
    assert response["code"] == 0, response


class Collect(MessageListener):
    def __init__(self):
        self.got = []
        self.lock = threading.Lock()

    def consume(self, message):
        with self.lock:
            self.got.append(message)
        return ConsumeResult.SUCCESS

    def snapshot(self):
        with self.lock:
            return list(self.got)


def push_consumer(server, group, topic, listener):
    consumer = PushConsumer(ClientConfiguration(server.grpc, Credentials()), group, listener,
                            {topic: FilterExpression()})
    consumer.startup()
    return consumer


def test_push_consumer_receives_every_message_exactly_as_sent(server, topic_name):
    create_topic(server, topic_name, "NORMAL")
    sent = {}
    producer = make_producer(server, [topic_name])
    try:
        for i in range(5):
            msg = Message()
            msg.topic = topic_name
            msg.body = f"push body {i}".encode()
            msg.tag = f"Tag{i % 2}"
            msg.keys = f"key-{i}"
            msg.add_property("index", str(i))
            msg.add_property("origin", "python5")
            sent[producer.send(msg).message_id] = (msg.body, msg.tag, f"key-{i}", str(i))
    finally:
        producer.shutdown()

    listener = Collect()
    consumer = push_consumer(server, f"G5P_{topic_name}", topic_name, listener)
    try:
        wait_until(lambda: len({m.message_id for m in listener.snapshot()}) >= len(sent), 30,
                   "every message pushed")
    finally:
        consumer.shutdown()
    got = {m.message_id: m for m in listener.snapshot()}
    assert set(got) == set(sent)
    for message_id, (body, tag, key, index) in sent.items():
        m = got[message_id]
        assert m.body == body
        assert m.tag == tag
        assert key in m.keys
        assert m.properties.get("index") == index
        assert m.properties.get("origin") == "python5"
        assert m.topic == topic_name
    server.assert_no_panic()


def test_push_consumer_of_an_orderly_group_keeps_each_message_group_in_order(server, topic_name):
    create_topic(server, topic_name, "FIFO")
    group = f"G5F_{topic_name}"
    create_group(server, group, orderly=True)
    order = {"order-a": [], "order-b": []}
    producer = make_producer(server, [topic_name])
    try:
        for i in range(8):
            message_group = "order-a" if i % 2 == 0 else "order-b"
            msg = Message()
            msg.topic = topic_name
            msg.body = f"{message_group} step {i}".encode()
            msg.tag = "Fifo"
            msg.message_group = message_group
            order[message_group].append(producer.send(msg).message_id)
    finally:
        producer.shutdown()

    listener = Collect()
    consumer = push_consumer(server, group, topic_name, listener)
    try:
        wait_until(lambda: len(listener.snapshot()) >= 8, 30, "every FIFO message pushed")
    finally:
        consumer.shutdown()
    got = listener.snapshot()
    for message_group, ids in order.items():
        seen = [m.message_id for m in got if m.message_group == message_group]
        assert seen == ids, f"{message_group} out of order"
    server.assert_no_panic()
