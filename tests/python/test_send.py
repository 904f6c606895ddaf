"""Every way the C++ client sends, proved by a push consumer that gets each message back with its
body, tags, keys and properties."""

import threading

import pytest
from rocketmq.client import SendStatus

from apogee_support import (
    Collector,
    Spec,
    assert_all_received,
    make_specs,
    pseudo_random_body,
    unique_suffix,
    wait_until,
)


def consume_all(clients, server, names, specs, expression="*"):
    """Starts a push consumer in a new group and waits for every spec."""
    got = Collector("c1")
    clients.push_consumer(server, names.group(), names.topic, got, expression)
    got.wait_for_mids([s.mid for s in specs])
    return got


def test_sync_send_delivers_every_message_with_keys_tags_and_properties(server, clients, names):
    producer = clients.producer(server, names.group("p"))
    specs = make_specs(names.topic, 40)
    # Half before the consumer exists (it starts from the queue heads), half while it long-polls.
    early, late = specs[:20], specs[20:]
    for s in early:
        r = producer.send_sync(s.message())
        assert r.status == SendStatus.OK
        assert r.msg_id, "the client reports the message id (its UNIQ_KEY)"
    got = Collector("c1")
    clients.push_consumer(server, names.group(), names.topic, got)
    got.wait_for_mids([s.mid for s in early])
    for s in late:
        assert producer.send_sync(s.message()).status == SendStatus.OK
    got.wait_for_mids([s.mid for s in specs])
    assert_all_received(specs, got.snapshot_list())
    # The id the producer saw is the one the consumer sees.
    assert all(len(r.msg_id) == 32 for r in got.snapshot_list())


def test_async_send_calls_back_for_every_message_and_delivers_all(server, clients, names):
    producer = clients.producer(server, names.group("p"))
    specs = make_specs(names.topic, 40)
    lock = threading.Lock()
    results, errors = [], []

    def on_success(result):
        with lock:
            results.append(result)

    def on_error(exc):
        with lock:
            errors.append(exc)

    # Keep every native message alive until all callbacks have run.
    messages = [s.message() for s in specs]
    for m in messages:
        producer.send_async(m, on_success, on_error)
    wait_until(lambda: len(results) + len(errors) == len(specs), 30, "every async send callback")
    assert not errors, errors
    assert all(r.status == SendStatus.OK for r in results)
    assert len({r.msg_id for r in results}) == len(specs)
    got = consume_all(clients, server, names, specs)
    assert_all_received(specs, got.snapshot_list())
    assert {r.msg_id for r in results} == {r.msg_id for r in got.snapshot_list()}


def test_oneway_send_delivers_every_message(server, clients, names):
    producer = clients.producer(server, names.group("p"))
    # Oneway sends get no answer, so nothing tells when the broker has made the topic: create it
    # with one acknowledged send first, then the consumer can find its route.
    first = make_specs(names.topic, 1, prefix="sync")
    assert producer.send_sync(first[0].message()).status == SendStatus.OK
    specs = make_specs(names.topic, 40)
    for s in specs:
        producer.send_oneway(s.message())
    specs = first + specs
    got = consume_all(clients, server, names, specs)
    assert_all_received(specs, got.snapshot_list())


def test_batch_send_delivers_every_message_of_the_batch(server, clients, names):
    producer = clients.producer(server, names.group("p"))
    specs = make_specs(names.topic, 16)
    r = producer.send_batch([s.message() for s in specs])
    assert r.status == SendStatus.OK
    got = consume_all(clients, server, names, specs)
    received = got.snapshot_list()
    assert_all_received(specs, received)
    # A batch goes to one queue, in order.
    assert len({m.queue_id for m in received}) == 1
    by_mid = {m.mid: m for m in received}
    offsets = [by_mid[s.mid].queue_offset for s in specs]
    assert offsets == list(range(offsets[0], offsets[0] + len(specs)))


@pytest.mark.parametrize("size", [4097, 64 * 1024, 1024 * 1024])
def test_bodies_over_4_kib_are_compressed_by_the_client_and_arrive_as_sent(
    server, clients, names, size
):
    # The client refuses bodies over 128 KiB unless told otherwise; the broker takes up to 4 MiB.
    producer = clients.producer(server, names.group("p"), max_message_size=4 * 1024 * 1024)
    body = pseudo_random_body(size, seed=size)
    spec = Spec(
        topic=names.topic,
        mid=f"big-{size}-{unique_suffix()}",
        body=body,
        tags="Big",
        keys=f"big-{size}",
        props={"note": "compressed on the wire"},
    )
    assert producer.send_sync(spec.message()).status == SendStatus.OK
    got = consume_all(clients, server, names, [spec])
    assert_all_received([spec], got.snapshot_list())
    # It crossed the wire and sits in the store compressed (sysFlag bit 0), smaller than sent.
    [stored] = [r for r in server.stored_records() if r.get("topic") == names.topic]
    assert stored["sys_flag"] & 0x1, stored
    assert stored["body_len"] < size, stored


def test_tag_expression_with_spaces_delivers_only_the_named_tags(server, clients, names):
    producer = clients.producer(server, names.group("p"))
    a = make_specs(names.topic, 10, prefix="a", tags="TagA")
    b = make_specs(names.topic, 10, prefix="b", tags="TagB")
    c = make_specs(names.topic, 10, prefix="c", tags="TagC")
    for x, y, z in zip(a, b, c):
        for s in (x, y, z):
            assert producer.send_sync(s.message()).status == SendStatus.OK
    got = Collector("filtered")
    clients.push_consumer(server, names.group(), names.topic, got, "TagA || TagB")
    got.wait_for_mids([s.mid for s in a + b])
    # A fence behind everything in every queue: each queue is pulled in order, so once the fences
    # are in, the TagC messages before them have been pulled and filtered out.
    fence = [Spec(topic=names.topic, mid=f"fence-{q}-{unique_suffix()}", body=b"fence", tags="TagB")
             for q in range(4)]
    for q, s in enumerate(fence):
        assert producer.send_orderly(s.message(), q).status == SendStatus.OK
    got.wait_for_mids([s.mid for s in fence])
    received = got.snapshot_list()
    assert_all_received(a + b + fence, received)
    assert not [r for r in received if r.tags == "TagC"]
