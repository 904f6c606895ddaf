//! Broker configuration and broker-group administration: GET_BROKER_CONFIG (26),
//! GET_BROKER_CONSUME_STATS (317), VIEW_BROKER_STATS_DATA (315), CHECK_ROCKSDB_CQ_WRITE_PROGRESS
//! (354), EXPORT_ROCKSDB_CONFIG_TO_JSON (355), GET_BROKER_MEMBER_GROUP (901), ADD_BROKER (902),
//! REMOVE_BROKER (903), NOTIFY_MIN_BROKER_ID_CHANGE (905), EXCHANGE_BROKER_HA_INFO (906),
//! RESET_MASTER_FLUSH_OFFSET (908), NOTIFY_BROKER_ROLE_CHANGED (1008).
//! UPDATE_BROKER_CONFIG carries a body only; GET_BROKER_CLUSTER_INFO, GET_BROKER_RUNTIME_INFO and
//! GET_ALL_DELAY_OFFSET carry nothing.

crate::command_header! {
    /// The body is the configuration as `key=value` lines; `version` is its data version JSON.
    pub struct GetBrokerConfigResponseHeader {
        version: String => "version",
    }
}

crate::command_header! {
    pub struct GetConsumeStatsInBrokerHeader {
        /// Spelt `isOrder` on the wire.
        is_order: bool => "isOrder",
    }
}

crate::command_header! {
    pub struct ViewBrokerStatsDataRequestHeader {
        stats_name: String => "statsName",
        stats_key: String => "statsKey",
    }
}

crate::command_header! {
    pub struct CheckRocksdbCqWriteProgressRequestHeader {
        topic: String => "topic",
        check_store_time: i64 => "checkStoreTime" = 0,
    }
}

crate::command_header! {
    pub struct ExportRocksDbConfigToJsonRequestHeader {
        /// Comma-separated config types.
        config_type: String => "configType",
    }
}

crate::command_header! {
    pub struct GetBrokerMemberGroupRequestHeader {
        cluster_name: String => "clusterName",
        broker_name: String => "brokerName",
    }
}

crate::command_header! {
    pub struct AddBrokerRequestHeader {
        config_path: Option<String> => "configPath",
    }
}

crate::command_header! {
    pub struct RemoveBrokerRequestHeader {
        broker_name: String => "brokerName",
        broker_cluster_name: String => "brokerClusterName",
        broker_id: i64 => "brokerId",
    }
}

crate::command_header! {
    pub struct NotifyMinBrokerIdChangeRequestHeader {
        min_broker_id: Option<i64> => "minBrokerId",
        broker_name: Option<String> => "brokerName",
        min_broker_addr: Option<String> => "minBrokerAddr",
        offline_broker_addr: Option<String> => "offlineBrokerAddr",
        ha_broker_addr: Option<String> => "haBrokerAddr",
    }
}

crate::command_header! {
    pub struct ExchangeHaInfoRequestHeader {
        master_ha_address: Option<String> => "masterHaAddress",
        master_flush_offset: Option<i64> => "masterFlushOffset",
        master_address: Option<String> => "masterAddress",
    }
}

crate::command_header! {
    pub struct ExchangeHaInfoResponseHeader {
        master_ha_address: Option<String> => "masterHaAddress",
        master_flush_offset: Option<i64> => "masterFlushOffset",
        master_address: Option<String> => "masterAddress",
    }
}

crate::command_header! {
    pub struct ResetMasterFlushOffsetHeader {
        master_flush_offset: i64 => "masterFlushOffset",
    }
}

crate::command_header! {
    /// Controller -> broker: the broker group's master changed.
    pub struct NotifyBrokerRoleChangedRequestHeader {
        master_address: Option<String> => "masterAddress",
        master_epoch: Option<i32> => "masterEpoch",
        sync_state_set_epoch: Option<i32> => "syncStateSetEpoch",
        master_broker_id: Option<i64> => "masterBrokerId",
    }
}
