use std::collections::BTreeMap;
use std::sync::Arc;

use apogee_protocol::body::{DataVersion, QueueData, TopicConfig, TopicConfigSerializeWrapper};
use apogee_protocol::header::UnRegisterBrokerRequestHeader;

use super::*;
use crate::clock::ManualClock;

const START_MS: i64 = 1_700_000_000_000;

fn manager() -> (RouteInfoManager, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(START_MS));
    (
        RouteInfoManager::new(RouteSettings::default(), clock.clone()),
        clock,
    )
}

/// A full registration: every Java broker lists `SELF_TEST_TOPIC` in it.
fn topics(counter: i64, names: &[(&str, i32, i32)]) -> TopicConfigSerializeWrapper {
    let mut t = incremental(counter, names);
    t.topic_config_table.insert(
        SELF_TEST_TOPIC.to_owned(),
        TopicConfig::new(SELF_TEST_TOPIC),
    );
    t
}

/// What a broker sends after creating or updating topics: only those topics.
fn incremental(counter: i64, names: &[(&str, i32, i32)]) -> TopicConfigSerializeWrapper {
    let mut table = BTreeMap::new();
    for (name, queues, perm_bits) in names {
        let mut tc = TopicConfig::new(*name);
        tc.read_queue_nums = *queues;
        tc.write_queue_nums = *queues;
        tc.perm = *perm_bits;
        table.insert((*name).to_owned(), tc);
    }
    TopicConfigSerializeWrapper {
        data_version: DataVersion {
            counter,
            state_version: 0,
            timestamp: 1000 + counter,
        },
        topic_config_table: table,
    }
}

fn reg(
    cluster: &str,
    name: &str,
    id: i64,
    addr: &str,
    topic_config: TopicConfigSerializeWrapper,
) -> BrokerRegistration {
    BrokerRegistration {
        cluster_name: cluster.into(),
        broker_addr: addr.into(),
        broker_name: name.into(),
        broker_id: id,
        ha_server_addr: format!("{addr}-ha"),
        topic_config,
        ..BrokerRegistration::default()
    }
}

fn unreg(cluster: &str, name: &str, id: i64, addr: &str) -> UnRegisterBrokerRequestHeader {
    UnRegisterBrokerRequestHeader {
        broker_name: name.into(),
        broker_addr: addr.into(),
        cluster_name: cluster.into(),
        broker_id: id,
    }
}

const M_A: &str = "10.0.0.1:10911";
const S_A: &str = "10.0.0.2:10911";
const M_B: &str = "10.0.0.3:10911";

#[test]
fn master_and_slave_share_one_broker_data_and_only_the_master_defines_queues() {
    let (mut rim, _) = manager();
    let r = rim
        .register_broker(reg("c1", "a", 0, M_A, topics(1, &[("T", 8, 6)])))
        .unwrap();
    assert_eq!(r, RegisterBrokerResult::default());
    // The slave reports a different queue count; it must not override the master's.
    let r = rim
        .register_broker(reg(
            "c1",
            "a",
            1,
            S_A,
            topics(1, &[("T", 2, 6), ("S", 1, 6)]),
        ))
        .unwrap();
    assert_eq!(r.master_addr.as_deref(), Some(M_A));
    assert_eq!(r.ha_server_addr, Some(format!("{M_A}-ha")));

    let bd = rim.broker_data("a").unwrap();
    assert_eq!(bd.cluster, "c1");
    assert_eq!(
        bd.broker_addrs,
        BTreeMap::from([(0, M_A.to_owned()), (1, S_A.to_owned())])
    );
    assert_eq!(rim.topic_queues("T").unwrap()["a"].write_queue_nums, 8);
    assert!(rim.topic_queues("S").is_none());
    assert_eq!(rim.live_broker_count(), 2);

    let route = rim.pick_topic_route("T").unwrap();
    assert_eq!(route.broker_datas.len(), 1);
    assert_eq!(route.broker_datas[0].broker_addrs.len(), 2);
}

#[test]
fn slave_without_live_master_gets_no_master_addr() {
    let (mut rim, _) = manager();
    let r = rim
        .register_broker(reg("c1", "a", 1, S_A, topics(1, &[])))
        .unwrap();
    assert_eq!(r, RegisterBrokerResult::default());
    // An old-version slave (no enableActingMaster) defines no queues even alone.
    assert!(rim.all_topics().topic_list.is_empty());
}

#[test]
fn route_of_a_topic_on_two_brokers_lists_both_groups_and_queues() {
    let (mut rim, _) = manager();
    rim.register_broker(reg(
        "c1",
        "a",
        0,
        M_A,
        topics(1, &[("T", 8, 6), ("OnlyA", 4, 6)]),
    ))
    .unwrap();
    rim.register_broker(reg("c1", "b", 0, M_B, topics(1, &[("T", 4, 6)])))
        .unwrap();

    let route = rim.pick_topic_route("T").unwrap();
    let names: Vec<_> = route
        .broker_datas
        .iter()
        .map(|b| b.broker_name.as_str())
        .collect();
    assert_eq!(names, ["a", "b"]);
    let queues: Vec<_> = route
        .queue_datas
        .iter()
        .map(|q| {
            (
                q.broker_name.as_str(),
                q.read_queue_nums,
                q.write_queue_nums,
                q.perm,
            )
        })
        .collect();
    assert_eq!(queues, [("a", 8, 8, 6), ("b", 4, 4, 6)]);

    // Only the brokers serving the topic appear.
    let route = rim.pick_topic_route("OnlyA").unwrap();
    assert_eq!(route.broker_datas.len(), 1);
    assert_eq!(route.broker_datas[0].broker_name, "a");
    assert_eq!(route.queue_datas.len(), 1);

    assert_eq!(
        rim.cluster_brokers("c1")
            .unwrap()
            .iter()
            .collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert!(rim.pick_topic_route("Nope").is_none());
}

#[test]
fn topic_missing_from_a_masters_reregistration_is_removed_for_that_broker_only() {
    let (mut rim, _) = manager();
    rim.register_broker(reg(
        "c1",
        "a",
        0,
        M_A,
        topics(1, &[("T", 8, 6), ("Gone", 8, 6)]),
    ))
    .unwrap();
    rim.register_broker(reg("c1", "b", 0, M_B, topics(1, &[("Gone", 8, 6)])))
        .unwrap();
    rim.register_broker(reg("c1", "a", 0, M_A, topics(2, &[("T", 8, 6)])))
        .unwrap();

    let gone = rim.topic_queues("Gone").unwrap();
    assert_eq!(gone.keys().collect::<Vec<_>>(), ["b"]);
    rim.register_broker(reg("c1", "b", 0, M_B, topics(2, &[])))
        .unwrap();
    assert!(rim.topic_queues("Gone").is_none());
    assert!(rim.pick_topic_route("Gone").is_none());
    assert!(rim.topic_queues("T").is_some());
}

#[test]
fn topics_are_kept_on_reregistration_when_deletion_is_disabled() {
    let (mut rim, _) = manager();
    rim.settings_mut().delete_topic_with_broker_registration = false;
    rim.register_broker(reg(
        "c1",
        "a",
        0,
        M_A,
        topics(1, &[("T", 8, 6), ("Kept", 8, 6)]),
    ))
    .unwrap();
    rim.register_broker(reg("c1", "a", 0, M_A, topics(2, &[("T", 8, 6)])))
        .unwrap();
    assert!(rim.topic_queues("Kept").is_some());
}

#[test]
fn changed_queue_counts_are_picked_up_on_a_new_data_version() {
    let (mut rim, _) = manager();
    rim.register_broker(reg("c1", "a", 0, M_A, topics(1, &[("T", 8, 6)])))
        .unwrap();
    rim.register_broker(reg("c1", "a", 0, M_A, topics(2, &[("T", 16, 6)])))
        .unwrap();
    assert_eq!(rim.topic_queues("T").unwrap()["a"].read_queue_nums, 16);
}

#[test]
fn broker_expires_after_120_s_of_silence_and_not_before() {
    let (mut rim, clock) = manager();
    rim.register_broker(reg("c1", "a", 0, M_A, topics(1, &[("T", 8, 6)])))
        .unwrap();
    clock.advance(DEFAULT_BROKER_EXPIRY_MS);
    assert!(rim.scan_not_active_brokers().is_empty());
    assert!(rim.pick_topic_route("T").is_some());

    clock.advance(1);
    let removed = rim.scan_not_active_brokers();
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].broker_addr, M_A);
    assert_eq!(removed[0].cluster_name, "c1");
    assert!(rim.pick_topic_route("T").is_none());
    assert!(rim.broker_data("a").is_none());
    assert!(rim.cluster_brokers("c1").is_none());
    assert!(rim.all_topics().topic_list.is_empty());
    assert_eq!(rim.live_broker_count(), 0);
}

#[test]
fn custom_heartbeat_timeout_expires_sooner_and_heartbeats_keep_a_broker_alive() {
    let (mut rim, clock) = manager();
    let mut r = reg("c1", "a", 0, M_A, topics(1, &[("T", 8, 6)]));
    r.heartbeat_timeout_ms = Some(10_000);
    rim.register_broker(r).unwrap();
    rim.register_broker(reg("c1", "b", 0, M_B, topics(1, &[("T", 8, 6)])))
        .unwrap();

    clock.advance(8_000);
    assert!(rim.broker_heartbeat("c1", M_A));
    assert!(!rim.broker_heartbeat("c1", "10.9.9.9:1"));
    clock.advance(8_000);
    assert!(rim.scan_not_active_brokers().is_empty());

    clock.advance(2_001);
    let removed = rim.scan_not_active_brokers();
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].broker_addr, M_A);
    let route = rim.pick_topic_route("T").unwrap();
    assert_eq!(route.broker_datas.len(), 1);
    assert_eq!(route.broker_datas[0].broker_name, "b");
    assert_eq!(route.queue_datas.len(), 1);
}

#[test]
fn unregistering_the_master_keeps_the_slave_then_the_last_address_drops_the_group() {
    let (mut rim, _) = manager();
    rim.register_broker(reg("c1", "a", 0, M_A, topics(1, &[("T", 8, 6)])))
        .unwrap();
    rim.register_broker(reg("c1", "a", 1, S_A, topics(1, &[("T", 8, 6)])))
        .unwrap();
    rim.register_broker(reg("c1", "b", 0, M_B, topics(1, &[("U", 8, 6)])))
        .unwrap();

    rim.unregister_broker(&unreg("c1", "a", 0, M_A));
    let bd = rim.broker_data("a").unwrap();
    assert_eq!(bd.broker_addrs, BTreeMap::from([(1, S_A.to_owned())]));
    // Queues stay: the slave still serves reads (and the group is not acting-master enabled).
    assert_eq!(rim.topic_queues("T").unwrap()["a"].perm, 6);
    assert!(rim.live_broker("c1", M_A).is_none());

    rim.unregister_broker(&unreg("c1", "a", 1, S_A));
    assert!(rim.broker_data("a").is_none());
    assert!(rim.topic_queues("T").is_none());
    assert_eq!(
        rim.cluster_brokers("c1")
            .unwrap()
            .iter()
            .collect::<Vec<_>>(),
        ["b"]
    );
    rim.unregister_broker(&unreg("c1", "b", 0, M_B));
    assert!(rim.cluster_info().cluster_addr_table.is_empty());
    assert!(rim.cluster_info().broker_addr_table.is_empty());
    // Unknown brokers are a no-op.
    rim.unregister_broker(&unreg("c1", "zz", 0, "1.1.1.1:1"));
}

#[test]
fn closing_a_brokers_connection_unregisters_it() {
    let (mut rim, _) = manager();
    let mut r = reg("c1", "a", 0, M_A, topics(1, &[("T", 8, 6)]));
    r.channel_id = Some(7);
    rim.register_broker(r).unwrap();
    let mut r = reg("c1", "b", 0, M_B, topics(1, &[("T", 8, 6)]));
    r.channel_id = Some(8);
    rim.register_broker(r).unwrap();

    assert!(rim.on_channel_destroy(99).is_empty());
    let removed = rim.on_channel_destroy(7);
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].channel_id, Some(7));
    assert!(rim.broker_data("a").is_none());
    assert_eq!(rim.pick_topic_route("T").unwrap().broker_datas.len(), 1);
}

#[test]
fn wipe_and_add_write_perm_count_the_brokers_topics_and_survive_unchanged_reregistration() {
    let (mut rim, _) = manager();
    let t = topics(1, &[("T1", 8, 6), ("T2", 8, 7)]);
    rim.register_broker(reg("c1", "a", 0, M_A, t.clone()))
        .unwrap();
    rim.register_broker(reg("c1", "b", 0, M_B, topics(1, &[("T1", 8, 6)])))
        .unwrap();

    assert_eq!(rim.wipe_write_perm_of_broker("a"), 3);
    assert_eq!(rim.topic_queues("T1").unwrap()["a"].perm, 4);
    assert_eq!(rim.topic_queues("T2").unwrap()["a"].perm, 5);
    assert_eq!(rim.topic_queues("T1").unwrap()["b"].perm, 6);
    assert_eq!(rim.wipe_write_perm_of_broker("nobody"), 0);

    // A periodic re-registration with the same data version keeps the wipe in force.
    rim.register_broker(reg("c1", "a", 0, M_A, t)).unwrap();
    assert_eq!(rim.topic_queues("T1").unwrap()["a"].perm, 4);

    assert_eq!(rim.add_write_perm_of_broker("a"), 3);
    assert_eq!(rim.topic_queues("T1").unwrap()["a"].perm, 6);
    assert_eq!(rim.topic_queues("T2").unwrap()["a"].perm, 6);
}

#[test]
fn delete_topic_everywhere_or_only_from_one_clusters_brokers() {
    let (mut rim, _) = manager();
    rim.register_broker(reg(
        "c1",
        "a",
        0,
        M_A,
        topics(1, &[("T", 8, 6), ("U", 8, 6)]),
    ))
    .unwrap();
    rim.register_broker(reg("c2", "b", 0, M_B, topics(1, &[("T", 8, 6)])))
        .unwrap();

    assert!(rim.delete_topic_in_cluster("T", "c1"));
    assert_eq!(
        rim.topic_queues("T").unwrap().keys().collect::<Vec<_>>(),
        ["b"]
    );
    assert!(!rim.delete_topic_in_cluster("T", "unknown"));
    assert!(rim.delete_topic_in_cluster("T", "c2"));
    assert!(rim.topic_queues("T").is_none());

    assert!(rim.delete_topic("U"));
    assert!(!rim.delete_topic("U"));
    assert!(rim.pick_topic_route("U").is_none());
}

#[test]
fn query_data_version_reports_changes_and_refreshes_the_broker() {
    let (mut rim, clock) = manager();
    let t = topics(3, &[("T", 8, 6)]);
    let v = t.data_version;
    rim.register_broker(reg("c1", "a", 0, M_A, t)).unwrap();

    let (changed, known) = rim.query_data_version("c1", M_A, &v);
    assert!(!changed);
    assert_eq!(known, Some(v));
    let mut newer = v;
    newer.next_version(v.timestamp + 5, 0);
    assert!(rim.query_data_version("c1", M_A, &newer).0);
    let (changed, known) = rim.query_data_version("c1", "9.9.9.9:1", &v);
    assert!(changed);
    assert_eq!(known, None);

    clock.advance(100_000);
    rim.query_data_version("c1", M_A, &v);
    clock.advance(100_000);
    assert!(rim.scan_not_active_brokers().is_empty());
    assert_eq!(
        rim.live_broker("c1", M_A).unwrap().last_update_ms,
        START_MS + 100_000
    );
}

#[test]
fn single_topic_registration_before_the_first_full_one_is_refused() {
    let (mut rim, _) = manager();
    let err = rim
        .register_broker(reg("c1", "a", 0, M_A, incremental(1, &[("T", 8, 6)])))
        .map(|_| ())
        .err();
    // One topic is Java's marker for an incremental registration.
    assert!(matches!(err, Some(RouteError::BrokerNotRegistered { .. })));
    assert!(rim.broker_data("a").is_none());
    assert!(rim.cluster_info().cluster_addr_table.is_empty());

    rim.register_broker(reg(
        "c1",
        "a",
        0,
        M_A,
        topics(1, &[("T", 8, 6), ("U", 8, 6)]),
    ))
    .unwrap();
    rim.register_broker(reg("c1", "a", 0, M_A, incremental(2, &[("V", 8, 6)])))
        .unwrap();
    assert!(rim.topic_queues("V").is_some());
}

#[test]
fn incremental_registration_adds_topics_without_dropping_the_others() {
    let (mut rim, _) = manager();
    rim.register_broker(reg(
        "c1",
        "a",
        0,
        M_A,
        topics(1, &[("T", 8, 6), ("U", 8, 6)]),
    ))
    .unwrap();
    rim.register_broker(reg("c1", "a", 0, M_A, incremental(2, &[("New", 2, 6)])))
        .unwrap();
    for topic in ["T", "U", "New", SELF_TEST_TOPIC] {
        assert!(rim.topic_queues(topic).is_some(), "{topic} missing");
    }
    // The next full registration is the complete set again.
    rim.register_broker(reg(
        "c1",
        "a",
        0,
        M_A,
        topics(3, &[("T", 8, 6), ("New", 2, 6)]),
    ))
    .unwrap();
    assert!(rim.topic_queues("U").is_none());
    assert!(rim.topic_queues("New").is_some());
}

#[test]
fn registration_with_an_older_state_version_at_a_taken_id_is_ignored() {
    let (mut rim, _) = manager();
    let mut t = topics(1, &[]);
    t.data_version.state_version = 5;
    rim.register_broker(reg("c1", "a", 0, M_A, t)).unwrap();
    let mut old = topics(1, &[]);
    old.data_version.state_version = 4;
    let r = rim
        .register_broker(reg("c1", "a", 0, "10.0.0.9:10911", old))
        .unwrap();
    assert_eq!(r, RegisterBrokerResult::default());
    assert_eq!(rim.broker_data("a").unwrap().master_addr(), Some(M_A));
    assert!(rim.live_broker("c1", "10.0.0.9:10911").is_none());
}

#[test]
fn slave_promoted_to_master_at_the_same_address_keeps_one_entry() {
    let (mut rim, _) = manager();
    rim.register_broker(reg("c1", "a", 1, S_A, topics(1, &[])))
        .unwrap();
    rim.register_broker(reg(
        "c1",
        "a",
        0,
        S_A,
        topics(2, &[("T", 8, 6), ("U", 1, 6)]),
    ))
    .unwrap();
    assert_eq!(
        rim.broker_data("a").unwrap().broker_addrs,
        BTreeMap::from([(0, S_A.to_owned())])
    );
    assert!(rim.topic_queues("T").is_some());
}

#[test]
fn expired_address_whose_id_was_taken_over_is_dropped_from_the_live_table() {
    let (mut rim, clock) = manager();
    rim.register_broker(reg("c1", "a", 0, M_A, topics(1, &[])))
        .unwrap();
    clock.advance(1_000);
    // A new master at another address takes id 0.
    rim.register_broker(reg("c1", "a", 0, "10.0.0.9:10911", topics(1, &[])))
        .unwrap();
    clock.advance(DEFAULT_BROKER_EXPIRY_MS);
    let removed = rim.scan_not_active_brokers();
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].broker_addr, M_A);
    assert_eq!(rim.live_broker_count(), 1);
    assert_eq!(
        rim.broker_data("a").unwrap().master_addr(),
        Some("10.0.0.9:10911")
    );
}

#[test]
fn lowest_slave_of_an_acting_master_group_defines_read_only_queues() {
    let (mut rim, _) = manager();
    rim.settings_mut().support_acting_master = true;
    let mut r = reg("c1", "a", 1, S_A, topics(1, &[("T", 8, 6), ("U", 8, 6)]));
    r.enable_acting_master = Some(true);
    rim.register_broker(r).unwrap();
    assert_eq!(rim.topic_queues("T").unwrap()["a"].perm, 4);

    // Routes report the acting master under id 0.
    let route = rim.pick_topic_route("T").unwrap();
    assert_eq!(
        route.broker_datas[0].broker_addrs,
        BTreeMap::from([(0, S_A.to_owned())])
    );
    assert!(route.broker_datas[0].enable_acting_master);
}

#[test]
fn losing_the_master_of_an_acting_master_group_wipes_write_perm() {
    let (mut rim, _) = manager();
    let mut m = reg("c1", "a", 0, M_A, topics(1, &[("T", 8, 6), ("U", 8, 6)]));
    m.enable_acting_master = Some(true);
    rim.register_broker(m).unwrap();
    let mut s = reg("c1", "a", 1, S_A, topics(1, &[("T", 8, 6), ("U", 8, 6)]));
    s.enable_acting_master = Some(true);
    rim.register_broker(s).unwrap();
    assert_eq!(rim.topic_queues("T").unwrap()["a"].perm, 6);
    rim.unregister_broker(&unreg("c1", "a", 0, M_A));
    assert_eq!(rim.topic_queues("T").unwrap()["a"].perm, 4);
}

#[test]
fn system_topic_list_holds_cluster_and_broker_names_and_one_address() {
    let (mut rim, _) = manager();
    rim.register_broker(reg("c1", "a", 0, M_A, topics(1, &[])))
        .unwrap();
    rim.register_broker(reg("c2", "b", 0, M_B, topics(1, &[])))
        .unwrap();
    let list = rim.system_topic_list();
    assert_eq!(
        list.topic_list.iter().collect::<Vec<_>>(),
        ["a", "b", "c1", "c2"]
    );
    assert_eq!(list.broker_addr.as_deref(), Some(M_A));
    let (empty, _) = manager();
    assert_eq!(empty.system_topic_list().broker_addr, None);
}

#[test]
fn topics_by_cluster_and_unit_flags_select_the_right_topics() {
    let (mut rim, _) = manager();
    let mut t = topics(
        1,
        &[("T", 8, 6), ("Unit", 8, 6), ("Sub", 8, 6), ("Both", 8, 6)],
    );
    t.topic_config_table.get_mut("Unit").unwrap().topic_sys_flag = TOPIC_SYS_FLAG_UNIT;
    t.topic_config_table.get_mut("Sub").unwrap().topic_sys_flag = TOPIC_SYS_FLAG_UNIT_SUB;
    t.topic_config_table.get_mut("Both").unwrap().topic_sys_flag =
        TOPIC_SYS_FLAG_UNIT | TOPIC_SYS_FLAG_UNIT_SUB;
    rim.register_broker(reg("c1", "a", 0, M_A, t)).unwrap();
    rim.register_broker(reg(
        "c2",
        "b",
        0,
        M_B,
        topics(1, &[("Other", 8, 6), ("X", 1, 6)]),
    ))
    .unwrap();

    let names = |l: TopicList| l.topic_list.into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(rim.topics_by_cluster("c1")),
        ["Both", SELF_TEST_TOPIC, "Sub", "T", "Unit"]
    );
    assert_eq!(
        names(rim.topics_by_cluster("c2")),
        ["Other", SELF_TEST_TOPIC, "X"]
    );
    assert!(rim.topics_by_cluster("nope").topic_list.is_empty());
    assert_eq!(names(rim.unit_topics()), ["Both", "Unit"]);
    assert_eq!(names(rim.has_unit_sub_topics()), ["Both", "Sub"]);
    assert_eq!(names(rim.has_unit_sub_ununit_topics()), ["Sub"]);
    assert_eq!(rim.all_topics().topic_list.len(), 7);
}

#[test]
fn register_topic_adds_queues_only_for_known_brokers() {
    let (mut rim, _) = manager();
    rim.register_broker(reg("c1", "a", 0, M_A, topics(1, &[])))
        .unwrap();
    let qd = |name: &str| QueueData {
        broker_name: name.into(),
        perm: 6,
        read_queue_nums: 4,
        topic_sys_flag: 0,
        write_queue_nums: 4,
    };
    assert!(!rim.register_topic("T", &[qd("a"), qd("ghost")]));
    assert!(rim.topic_queues("T").is_none());
    assert!(!rim.register_topic("T", &[]));
    assert!(rim.register_topic("T", &[qd("a")]));
    let route = rim.pick_topic_route("T").unwrap();
    assert_eq!(route.queue_datas, vec![qd("a")]);
}

#[test]
fn filter_servers_appear_in_the_route_of_their_broker() {
    let (mut rim, _) = manager();
    let mut r = reg("c1", "a", 0, M_A, topics(1, &[("T", 8, 6), ("U", 8, 6)]));
    r.filter_server_list = vec!["10.0.0.1:20000".into()];
    rim.register_broker(r).unwrap();
    let route = rim.pick_topic_route("T").unwrap();
    assert_eq!(
        route.filter_server_table,
        BTreeMap::from([(M_A.to_owned(), vec!["10.0.0.1:20000".to_owned()])])
    );
}

#[test]
fn zone_name_and_member_group_are_reported() {
    let (mut rim, _) = manager();
    let mut r = reg("c1", "a", 0, M_A, topics(1, &[]));
    r.zone_name = Some("z1".into());
    rim.register_broker(r).unwrap();
    assert_eq!(
        rim.broker_data("a").unwrap().zone_name.as_deref(),
        Some("z1")
    );
    assert_eq!(
        rim.broker_member_group("a"),
        BTreeMap::from([(0, M_A.to_owned())])
    );
    assert!(rim.broker_member_group("zz").is_empty());
}
