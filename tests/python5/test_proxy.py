"""The official 5.x Python client through `apogee proxy` (cluster mode) instead of the broker's own
gRPC endpoint: the producer's sends land in the cluster behind it, the SimpleConsumer receives and
acks them, and a transaction committed through the proxy is delivered."""

from conftest import create_topic
from test_producer import make_producer, message, wait_stored
from test_simple_consumer import make_consumer, receive_all


def test_producer_and_simple_consumer_through_the_proxy(proxy, topic_name):
    create_topic(proxy, topic_name, "NORMAL")
    producer = make_producer(proxy, [topic_name])
    try:
        ids = [producer.send(message(topic_name, f"via proxy {i}".encode())).message_id
               for i in range(3)]
    finally:
        producer.shutdown()
    wait_stored(proxy, topic_name, ids)

    consumer = make_consumer(proxy, f"G5_{topic_name}", topic_name)
    try:
        got = receive_all(consumer, len(ids))
        assert set(got) == set(ids)
        for msg in got.values():
            assert msg.topic == topic_name
            assert msg.tag == "TagA"
            assert msg.properties.get("origin") == "python5"
            assert msg.delivery_attempt == 1
            consumer.ack(msg)
        assert consumer.receive(16, 15) == []
    finally:
        consumer.shutdown()


def test_transaction_commit_through_the_proxy(proxy, topic_name):
    from test_producer import RollbackOrphans, records_of

    create_topic(proxy, topic_name, "TRANSACTION")
    producer = make_producer(proxy, [topic_name], RollbackOrphans())
    try:
        committed = producer.begin_transaction()
        kept = producer.send(message(topic_name, b"commit me"), committed)
        rolled_back = producer.begin_transaction()
        dropped = producer.send(message(topic_name, b"roll me back"), rolled_back)
        committed.commit()
        rolled_back.rollback()
    finally:
        producer.shutdown()
    wait_stored(proxy, topic_name, [kept.message_id])
    assert dropped.message_id not in {r["uniq_key"] for r in records_of(proxy, topic_name)}
