"""The official RocketMQ 5.x Python client's SimpleConsumer receiving, through Apogee's gRPC
endpoint, what its Producer sent: ReceiveMessage over the broker's POP support, AckMessage, and
an empty long poll answered as "no message"."""

import time

from rocketmq import ClientConfiguration, Credentials, FilterExpression, SimpleConsumer

from conftest import create_topic
from test_producer import make_producer, message


def make_consumer(server, group, topic, await_s=2):
    config = ClientConfiguration(server.grpc, Credentials())
    consumer = SimpleConsumer(config, group, {topic: FilterExpression()}, await_duration=await_s)
    consumer.startup()
    return consumer


def receive_all(consumer, expected, timeout_s=20):
    got = {}
    deadline = time.monotonic() + timeout_s
    while len(got) < expected and time.monotonic() < deadline:
        for msg in consumer.receive(16, 15):
            got[msg.message_id] = msg
    return got


def test_simple_consumer_receives_and_acks_what_the_producer_sent(server, topic_name):
    create_topic(server, topic_name, "NORMAL")
    producer = make_producer(server, [topic_name])
    try:
        ids = [producer.send(message(topic_name, f"pop {i}".encode())).message_id for i in range(3)]
    finally:
        producer.shutdown()

    consumer = make_consumer(server, f"G5_{topic_name}", topic_name)
    try:
        got = receive_all(consumer, len(ids))
        assert set(got) == set(ids)
        for msg in got.values():
            assert msg.topic == topic_name
            assert msg.tag == "TagA"
            assert msg.body.decode().startswith("pop ")
            assert msg.properties.get("origin") == "python5"
            assert msg.delivery_attempt == 1
            assert msg.receipt_handle
            assert not msg.corrupted
            consumer.ack(msg)
        # Acked: an empty long poll, answered as "no message" rather than an error.
        assert consumer.receive(16, 15) == []
    finally:
        consumer.shutdown()
