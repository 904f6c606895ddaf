"""Broker restarts seen through the C++ client: a consumer group resumes where it committed after
a graceful restart, and every acknowledged message survives a SIGKILL. Each test has its own
`apogee standalone` (sync flush) and restarts it on the same data dir (new ports each start)."""

from rocketmq.client import SendStatus

from apogee_support import Collector, assert_all_received, make_specs


def send_all(producer, specs):
    for s in specs:
        assert producer.send_sync(s.message()).status == SendStatus.OK


def test_a_consumer_group_resumes_at_its_committed_offsets_after_a_graceful_restart(
    fresh_server, clients, names
):
    server = fresh_server.start()
    producer = clients.producer(server, names.group("p"))
    before = make_specs(names.topic, 40, prefix="before")
    send_all(producer, before)
    got = Collector("first")
    consumer = clients.push_consumer(server, names.group(), names.topic, got)
    got.wait_for_mids([s.mid for s in before])
    # Shutting down, the client commits its offsets to the broker; stopping, the broker writes them.
    clients.shutdown(consumer)
    clients.shutdown(producer)
    server.stop()

    server.start()
    producer = clients.producer(server, names.group("p"))
    after = make_specs(names.topic, 20, prefix="after")
    send_all(producer, after)
    again = Collector("second")
    clients.push_consumer(server, names.group(), names.topic, again)
    received = again.wait_for_mids([s.mid for s in after])
    assert_all_received(after, received)
    redelivered = {r.mid for r in received} & {s.mid for s in before}
    assert not redelivered, f"{len(redelivered)} messages consumed before the restart came again"


def test_every_acknowledged_message_survives_a_sigkill(fresh_server, clients, names):
    server = fresh_server.start()
    producer = clients.producer(server, names.group("p"))
    specs = make_specs(names.topic, 60)
    send_all(producer, specs)  # sync flush: each OK means on disk
    server.kill()
    clients.shutdown(producer)

    server.start()
    got = Collector("after-crash")
    clients.push_consumer(server, names.group(), names.topic, got)
    assert_all_received(specs, got.wait_for_mids([s.mid for s in specs]))
    # And the broker takes new messages after recovery.
    producer = clients.producer(server, names.group("p"))
    more = make_specs(names.topic, 5, prefix="more")
    send_all(producer, more)
    assert_all_received(specs + more, got.wait_for_mids([s.mid for s in specs + more]))
