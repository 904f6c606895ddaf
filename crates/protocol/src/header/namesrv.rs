//! Name server commands: KV config (100/101/102/219), REGISTER_BROKER (103), UNREGISTER_BROKER
//! (104), GET_ROUTEINFO_BY_TOPIC (105), WIPE/ADD_WRITE_PERM_OF_BROKER (205/327),
//! DELETE_TOPIC_IN_NAMESRV (216), REGISTER_TOPIC_IN_NAMESRV (217), GET_TOPICS_BY_CLUSTER (224),
//! QUERY_DATA_VERSION (322), BROKER_HEARTBEAT (904).

crate::command_header! {
    pub struct GetRouteInfoRequestHeader {
        topic: String => "topic",
        /// Ask for standard JSON (quoted numeric keys) even from an old-version requester.
        accept_standard_json_only: Option<bool> => "acceptStandardJsonOnly",
        /// Added by the zone RPC hook: filter the route to this zone.
        zone_name: Option<String> => "__ZONE_NAME",
        /// Added by the zone RPC hook: whether zone filtering is on.
        zone_mode: Option<bool> => "__ZONE_MODE",
    }
}

crate::command_header! {
    pub struct RegisterBrokerRequestHeader {
        broker_name: String => "brokerName",
        /// `ip:port`.
        broker_addr: String => "brokerAddr",
        cluster_name: String => "clusterName",
        /// `ip:haPort`.
        ha_server_addr: String => "haServerAddr",
        /// 0 = master.
        broker_id: i64 => "brokerId",
        /// Overrides the name server's 120 s expiry for this broker.
        heartbeat_timeout_millis: Option<i64> => "heartbeatTimeoutMillis",
        enable_acting_master: Option<bool> => "enableActingMaster",
        /// Brokers always send `false`.
        compressed: bool => "compressed" = false,
        /// CRC32 of the body masked with 0x7FFFFFFF; 0 = not checked.
        body_crc32: i32 => "bodyCrc32" = 0,
        /// Added by the zone RPC hook.
        zone_name: Option<String> => "__ZONE_NAME",
    }
}

crate::command_header! {
    pub struct RegisterBrokerResponseHeader {
        ha_server_addr: Option<String> => "haServerAddr",
        /// Filled for a slave when its master is registered.
        master_addr: Option<String> => "masterAddr",
    }
}

crate::command_header! {
    pub struct UnRegisterBrokerRequestHeader {
        broker_name: String => "brokerName",
        broker_addr: String => "brokerAddr",
        cluster_name: String => "clusterName",
        broker_id: i64 => "brokerId",
    }
}

crate::command_header! {
    pub struct BrokerHeartbeatRequestHeader {
        cluster_name: String => "clusterName",
        broker_addr: String => "brokerAddr",
        broker_name: String => "brokerName",
        broker_id: Option<i64> => "brokerId",
        epoch: Option<i32> => "epoch",
        max_offset: Option<i64> => "maxOffset",
        confirm_offset: Option<i64> => "confirmOffset",
        /// Spelt `Mills` on the wire.
        heartbeat_timeout_mills: Option<i64> => "heartbeatTimeoutMills",
        election_priority: Option<i32> => "electionPriority",
    }
}

crate::command_header! {
    pub struct QueryDataVersionRequestHeader {
        broker_name: String => "brokerName",
        broker_addr: String => "brokerAddr",
        cluster_name: String => "clusterName",
        broker_id: i64 => "brokerId",
    }
}

crate::command_header! {
    pub struct QueryDataVersionResponseHeader {
        changed: bool => "changed",
    }
}

crate::command_header! {
    pub struct PutKVConfigRequestHeader {
        namespace: String => "namespace",
        key: String => "key",
        value: String => "value",
    }
}

crate::command_header! {
    pub struct GetKVConfigRequestHeader {
        namespace: String => "namespace",
        key: String => "key",
    }
}

crate::command_header! {
    pub struct GetKVConfigResponseHeader {
        value: Option<String> => "value",
    }
}

crate::command_header! {
    pub struct DeleteKVConfigRequestHeader {
        namespace: String => "namespace",
        key: String => "key",
    }
}

crate::command_header! {
    pub struct GetKVListByNamespaceRequestHeader {
        namespace: String => "namespace",
    }
}

crate::command_header! {
    pub struct DeleteTopicFromNamesrvRequestHeader {
        topic: String => "topic",
        /// Only from this cluster's brokers; absent = everywhere.
        cluster_name: Option<String> => "clusterName",
    }
}

crate::command_header! {
    /// REGISTER_TOPIC_IN_NAMESRV (217); the body is the topic route data.
    pub struct RegisterTopicRequestHeader {
        topic: String => "topic",
    }
}

crate::command_header! {
    pub struct RegisterOrderTopicRequestHeader {
        topic: String => "topic",
        /// `brokerName:queueNum;...`
        order_topic_string: String => "orderTopicString",
    }
}

crate::command_header! {
    pub struct GetTopicsByClusterRequestHeader {
        cluster: String => "cluster",
    }
}

crate::command_header! {
    pub struct WipeWritePermOfBrokerRequestHeader {
        broker_name: String => "brokerName",
    }
}

crate::command_header! {
    pub struct WipeWritePermOfBrokerResponseHeader {
        wipe_topic_count: i32 => "wipeTopicCount",
    }
}

crate::command_header! {
    pub struct AddWritePermOfBrokerRequestHeader {
        broker_name: String => "brokerName",
    }
}

crate::command_header! {
    pub struct AddWritePermOfBrokerResponseHeader {
        add_topic_count: i32 => "addTopicCount",
    }
}
