"""Delay levels and retries with the C++ client: `Message.set_delay_time_level` and a push
consumer's failed messages (CONSUMER_SEND_MSG_BACK), against the broker's default levels
(1s 5s 10s 30s ...)."""

import time

import pytest
from rocketmq.client import SendStatus

from apogee_support import Collector, assert_all_received, make_specs


class TimedCollector(Collector):
    """Also notes when each message arrived (monotonic seconds)."""

    def __init__(self, name=""):
        super().__init__(name)
        self.arrived = {}

    def __call__(self, msg):
        rec = self.snapshot(msg)
        with self._cond:
            self.arrived.setdefault(rec.mid, []).append(time.monotonic())
        self.add(rec)


def test_delay_level_messages_arrive_after_their_delay_exactly_once(server, clients, names):
    producer = clients.producer(server, names.group("p"))
    got = TimedCollector("delayed")
    # The topic exists before the consumer asks for its route.
    warm = make_specs(names.topic, 1, prefix="warm")
    assert producer.send_sync(warm[0].message()).status == SendStatus.OK
    clients.push_consumer(server, names.group(), names.topic, got)
    got.wait_for_mids([warm[0].mid])

    specs = make_specs(names.topic, 5, prefix="d")
    sent_at = {}
    for s in specs:
        msg = s.message()
        msg.set_delay_time_level(1)  # 1 s
        sent_at[s.mid] = time.monotonic()
        assert producer.send_sync(msg).status == SendStatus.OK
    received = got.wait_for_mids([s.mid for s in specs])
    assert_all_received(specs, [r for r in received if r.mid != warm[0].mid])
    for s in specs:
        waited = got.arrived[s.mid][0] - sent_at[s.mid]
        assert waited >= 0.9, f"{s.mid} arrived after {waited:.2f}s, before its 1 s delay"
    # Nothing more comes: a further plain message arrives alone.
    tail = make_specs(names.topic, 1, prefix="tail")
    assert producer.send_sync(tail[0].message()).status == SendStatus.OK
    got.wait_for_mids([tail[0].mid])
    assert sorted(r.mid for r in got.snapshot_list()) == sorted(
        [warm[0].mid, tail[0].mid] + [s.mid for s in specs]
    )


# The client library reports the callback's exception (how it learns RECONSUME_LATER) as unraisable.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_failed_message_comes_back_through_the_retry_topic(server, clients, names):
    producer = clients.producer(server, names.group("p"))
    warm = make_specs(names.topic, 1, prefix="warm")
    assert producer.send_sync(warm[0].message()).status == SendStatus.OK
    failures = {}
    got = TimedCollector("retry")

    def consume(msg):
        rec = got.snapshot(msg)
        with got._cond:
            got.arrived.setdefault(rec.mid, []).append(time.monotonic())
            first = rec.mid not in failures
            if first and rec.mid.startswith("r-"):
                failures[rec.mid] = msg.reconsume_times
        got.add(rec)
        if first and rec.mid.startswith("r-"):
            raise RuntimeError("consume later")  # RECONSUME_LATER

    clients.push_consumer(server, names.group(), names.topic, consume)
    got.wait_for_mids([warm[0].mid])
    spec = make_specs(names.topic, 1, prefix="r")[0]
    assert producer.send_sync(spec.message()).status == SendStatus.OK
    # First delivery fails; the broker keeps it in %RETRY% for level 3 (10 s), then it is back.
    got.wait_for(lambda items: sum(r.mid == spec.mid for r in items) >= 2, "the redelivery",
                 timeout_s=60)
    times = got.arrived[spec.mid]
    assert times[1] - times[0] >= 9.5, f"redelivered after {times[1] - times[0]:.1f}s"
    deliveries = [r for r in got.snapshot_list() if r.mid == spec.mid]
    for r in deliveries:
        assert r.topic == spec.topic  # the client restores the real topic from RETRY_TOPIC
        assert r.body == spec.body
    assert deliveries[0].msg_id == deliveries[1].msg_id
    assert failures[spec.mid] == 0
