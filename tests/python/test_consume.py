"""Every way the C++ client consumes: orderly, clustering, broadcasting, and pull."""

import collections
import threading

from rocketmq.client import MessageModel, SendStatus

from apogee_support import (
    Collector,
    Spec,
    assert_all_received,
    assert_matches,
    make_specs,
    unique_suffix,
)

QUEUES = 4  # what the client asks for when it auto-creates a topic


def send_all(producer, specs):
    for s in specs:
        assert producer.send_sync(s.message()).status == SendStatus.OK


def probe_round(producer, topic, label):
    """One probe into every queue (the selector's argument is the queue id)."""
    probes = [Spec(topic=topic, mid=f"probe-{label}-{q}-{unique_suffix()}", body=b"probe", tags="Probe")
              for q in range(QUEUES)]
    for q, p in enumerate(probes):
        assert producer.send_orderly(p.message(), q).status == SendStatus.OK
    return probes


def test_orderly_send_and_orderly_consumer_keep_per_key_order(server, clients, names):
    producer = clients.producer(server, names.group("p"))
    keys, per_key = 6, 30
    specs = []
    for seq in range(per_key):
        for k in range(keys):
            specs.append(Spec(
                topic=names.topic, mid=f"k{k}-s{seq}-{unique_suffix()}",
                body=f"key {k} seq {seq}".encode(), tags="Order", keys=f"order-{k}",
                props={"order-key": str(k), "seq": str(seq)},
            ))
    # First half before the consumer starts, second half while it consumes.
    half = len(specs) // 2
    queue_of_key = {}
    for s in specs[:half]:
        k = int(s.props["order-key"])
        r = producer.send_orderly(s.message(), k)
        assert r.status == SendStatus.OK
    got = Collector("orderly")
    clients.push_consumer(server, names.group(), names.topic, got, orderly=True)
    for s in specs[half:]:
        assert producer.send_orderly(s.message(), int(s.props["order-key"])).status == SendStatus.OK
    received = got.wait_for_mids([s.mid for s in specs])
    assert_all_received(specs, received)
    by_key = collections.defaultdict(list)
    for r in received:
        by_key[r.props["order-key"]].append(r)
        queue_of_key.setdefault(r.props["order-key"], set()).add(r.queue_id)
    for k, recs in by_key.items():
        assert [int(r.props["seq"]) for r in recs] == list(range(per_key)), f"key {k} out of order"
        # The selector put each key in one queue (key % queues), and offsets grow with seq.
        assert queue_of_key[k] == {int(k) % QUEUES}
        offsets = [r.queue_offset for r in recs]
        assert offsets == sorted(offsets)


def test_two_clustering_consumers_split_the_queues_and_get_each_message_once(server, clients, names):
    producer = clients.producer(server, names.group("p"))
    # The topic must exist before consumers look up its route.
    warmup = probe_round(producer, names.topic, "warmup")
    shared = threading.Condition(threading.RLock())
    a, b = Collector("a", cond=shared), Collector("b", cond=shared)
    group = names.group()
    clients.push_consumer(server, group, names.topic, a)
    clients.push_consumer(server, group, names.topic, b)

    def both():
        return a.snapshot_list() + b.snapshot_list()

    # Wait for a stable split: two probe rounds in a row in which every queue's probe went to
    # exactly one consumer, both consumers got some, and the owners did not change.
    def owners_of(probes):
        want = {p.mid for p in probes}
        a.wait_for(lambda _: {r.mid for r in both()} >= want, "a probe round")
        owners = collections.defaultdict(set)
        for c in (a, b):
            for r in c.snapshot_list():
                if r.mid in want:
                    owners[r.queue_id].add(c.name)
        return owners

    previous, stable, rounds = None, False, 0
    while not stable:
        rounds += 1
        assert rounds <= 50, f"the group never settled: last owners {previous}"
        owners = owners_of(probe_round(producer, names.topic, f"r{rounds}"))
        clean = all(len(o) == 1 for o in owners.values()) and {n for o in owners.values() for n in o} == {"a", "b"}
        stable = clean and owners == previous
        previous = owners if clean else None

    specs = make_specs(names.topic, 60)
    send_all(producer, specs)
    # A fence in every queue behind the batch: once all fences are in, every consumer that could
    # have received a message of the batch has done so (each queue is pulled in order).
    fence = probe_round(producer, names.topic, "fence")
    want = {s.mid for s in specs + fence}
    a.wait_for(lambda _: {r.mid for r in both()} >= want, "the batch and the fence")
    got_a = [r for r in a.snapshot_list() if r.mid.startswith("m-")]
    got_b = [r for r in b.snapshot_list() if r.mid.startswith("m-")]
    assert got_a and got_b, "both consumers take part"
    # Membership was stable, so: each message exactly once, from the queue's one owner.
    assert_all_received(specs, got_a + got_b, exactly_once=True)
    for r in got_a + got_b:
        assert previous[r.queue_id] == {r.consumer}, (r.mid, r.queue_id, r.consumer, previous)
    assert not {r.mid for r in warmup} - {r.mid for r in both()}


def test_two_broadcasting_consumers_each_get_every_message(server, clients, names):
    producer = clients.producer(server, names.group("p"))
    probe_round(producer, names.topic, "warmup")
    a, b = Collector("a"), Collector("b")
    group = names.group()
    for c in (a, b):
        clients.push_consumer(server, group, names.topic, c, model=MessageModel.BROADCASTING)

    # A new broadcasting consumer starts at the end of each queue, wherever the end is when it
    # gets there; keep probing every queue until each consumer has a probe from every queue.
    def has_all_queues(c, probes_sent):
        seen = {r.queue_id for r in c.snapshot_list() if r.mid in probes_sent}
        return seen == set(range(QUEUES))

    probes_sent, rounds = set(), 0
    while not (has_all_queues(a, probes_sent) and has_all_queues(b, probes_sent)):
        rounds += 1
        assert rounds <= 100, "broadcasting consumers never started consuming every queue"
        probes_sent |= {p.mid for p in probe_round(producer, names.topic, f"r{rounds}")}
        for c in (a, b):
            try:
                c.wait_for(lambda items, c=c: has_all_queues(c, probes_sent), "probes", timeout_s=0.5)
            except AssertionError:
                pass  # probe again

    specs = make_specs(names.topic, 50)
    send_all(producer, specs)
    for c in (a, b):
        received = c.wait_for_mids([s.mid for s in specs])
        assert_all_received(specs, [r for r in received if r.mid.startswith("m-")])


def test_pull_consumer_reads_every_queue_and_resumes_where_it_stopped(server, clients, names):
    producer = clients.producer(server, names.group("p"))
    specs = make_specs(names.topic, 50)
    send_all(producer, specs)
    consumer = clients.pull_consumer(server, names.group())
    snap = Collector("pull").snapshot
    first = [snap(m) for m in consumer.pull(names.topic, "*", 16)]
    assert_all_received(specs, first)
    assert {r.queue_id for r in first} == set(range(QUEUES))
    # Offsets within a queue come back in order, without gaps.
    for q in range(QUEUES):
        offsets = [r.queue_offset for r in first if r.queue_id == q]
        assert offsets == list(range(len(offsets)))

    more = make_specs(names.topic, 10, prefix="more")
    send_all(producer, more)
    second = [snap(m) for m in consumer.pull(names.topic, "*", 16)]
    assert_all_received(more, second)
    assert len(second) == len(more)


def test_pull_consumer_with_a_tag_expression_gets_only_those_tags(server, clients, names):
    producer = clients.producer(server, names.group("p"))
    a = make_specs(names.topic, 12, prefix="a", tags="TagA")
    c = make_specs(names.topic, 12, prefix="c", tags="TagC")
    for x, y in zip(a, c):
        send_all(producer, [x, y])
    consumer = clients.pull_consumer(server, names.group())
    snap = Collector("pull").snapshot
    got = [snap(m) for m in consumer.pull(names.topic, "TagA || TagB", 32)]
    assert_all_received(a, got)
    assert {r.tags for r in got} == {"TagA"}
    for r in got:
        assert_matches(next(s for s in a if s.mid == r.mid), r)

