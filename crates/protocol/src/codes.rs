//! Request and response codes: the single place where every RocketMQ code number is defined.
//!
//! Names are Java's `RequestCode` / `ResponseCode` constants, unchanged, so logs and remarks read the
//! same as a Java broker's. `name(code)` turns a number back into that name.

/// Declares a list of `pub const NAME: i32 = value;` together with `ALL` (every `(code, name)` pair,
/// in declaration order) and `name(code)`. Values in one list must be unique; aliases are declared
/// outside the list so that `name` has exactly one answer per number.
macro_rules! code_table {
    ($( $(#[$meta:meta])* $name:ident = $value:expr, )*) => {
        $( $(#[$meta])* pub const $name: i32 = $value; )*

        /// Every code of this table with its Java name, in declaration order.
        pub const ALL: &[(i32, &str)] = &[ $( ($name, stringify!($name)), )* ];

        /// The Java constant name of `code`, or `None` for a number this table does not know.
        pub fn name(code: i32) -> Option<&'static str> {
            match code {
                $( $name => Some(stringify!($name)), )*
                _ => None,
            }
        }
    };
}

/// `RequestCode`: what a request asks for. Includes broker -> client requests, the 5.x pop family,
/// the controller and ACL 2.0 codes, and the 4.x ACL 1.0 admin codes that 5.3.2 removed.
pub mod request_code {
    code_table! {
        // ---- messages and offsets (broker) ----
        SEND_MESSAGE = 10,
        PULL_MESSAGE = 11,
        QUERY_MESSAGE = 12,
        QUERY_BROKER_OFFSET = 13,
        QUERY_CONSUMER_OFFSET = 14,
        /// Java clients usually send it oneway.
        UPDATE_CONSUMER_OFFSET = 15,
        UPDATE_AND_CREATE_TOPIC = 17,
        UPDATE_AND_CREATE_TOPIC_LIST = 18,
        GET_ALL_TOPIC_CONFIG = 21,
        GET_TOPIC_CONFIG_LIST = 22,
        GET_TOPIC_NAME_LIST = 23,
        UPDATE_BROKER_CONFIG = 25,
        GET_BROKER_CONFIG = 26,
        TRIGGER_DELETE_FILES = 27,
        GET_BROKER_RUNTIME_INFO = 28,
        SEARCH_OFFSET_BY_TIMESTAMP = 29,
        GET_MAX_OFFSET = 30,
        GET_MIN_OFFSET = 31,
        GET_EARLIEST_MSG_STORETIME = 32,
        VIEW_MESSAGE_BY_ID = 33,
        HEART_BEAT = 34,
        UNREGISTER_CLIENT = 35,
        CONSUMER_SEND_MSG_BACK = 36,
        /// Producers send it oneway.
        END_TRANSACTION = 37,
        GET_CONSUMER_LIST_BY_GROUP = 38,
        /// Broker -> producer, oneway.
        CHECK_TRANSACTION_STATE = 39,
        /// Broker -> consumer, oneway.
        NOTIFY_CONSUMER_IDS_CHANGED = 40,
        LOCK_BATCH_MQ = 41,
        UNLOCK_BATCH_MQ = 42,
        GET_ALL_CONSUMER_OFFSET = 43,
        GET_ALL_DELAY_OFFSET = 45,
        CHECK_CLIENT_CONFIG = 46,
        GET_CLIENT_CONFIG = 47,

        // ---- ACL 1.0 admin (4.x up to 5.3.1) ----
        UPDATE_AND_CREATE_ACL_CONFIG = 50,
        DELETE_ACL_CONFIG = 51,
        GET_BROKER_CLUSTER_ACL_INFO = 52,
        UPDATE_GLOBAL_WHITE_ADDRS_CONFIG = 53,
        GET_BROKER_CLUSTER_ACL_CONFIG = 54,

        GET_TIMER_CHECK_POINT = 60,
        GET_TIMER_METRICS = 61,

        // ---- pop consumption (5.x; JSON headers only, the codes do not fit 16 bits) ----
        POP_MESSAGE = 200050,
        ACK_MESSAGE = 200051,
        BATCH_ACK_MESSAGE = 200151,
        PEEK_MESSAGE = 200052,
        CHANGE_MESSAGE_INVISIBLETIME = 200053,
        NOTIFICATION = 200054,
        POLLING_INFO = 200055,
        POP_ROLLBACK = 200056,

        // ---- name server ----
        PUT_KV_CONFIG = 100,
        GET_KV_CONFIG = 101,
        DELETE_KV_CONFIG = 102,
        REGISTER_BROKER = 103,
        UNREGISTER_BROKER = 104,
        GET_ROUTEINFO_BY_TOPIC = 105,
        GET_BROKER_CLUSTER_INFO = 106,

        // ---- admin ----
        UPDATE_AND_CREATE_SUBSCRIPTIONGROUP = 200,
        GET_ALL_SUBSCRIPTIONGROUP_CONFIG = 201,
        GET_TOPIC_STATS_INFO = 202,
        GET_CONSUMER_CONNECTION_LIST = 203,
        GET_PRODUCER_CONNECTION_LIST = 204,
        WIPE_WRITE_PERM_OF_BROKER = 205,
        GET_ALL_TOPIC_LIST_FROM_NAMESERVER = 206,
        DELETE_SUBSCRIPTIONGROUP = 207,
        GET_CONSUME_STATS = 208,
        SUSPEND_CONSUMER = 209,
        RESUME_CONSUMER = 210,
        RESET_CONSUMER_OFFSET_IN_CONSUMER = 211,
        RESET_CONSUMER_OFFSET_IN_BROKER = 212,
        ADJUST_CONSUMER_THREAD_POOL = 213,
        WHO_CONSUME_THE_MESSAGE = 214,
        DELETE_TOPIC_IN_BROKER = 215,
        DELETE_TOPIC_IN_NAMESRV = 216,
        REGISTER_TOPIC_IN_NAMESRV = 217,
        GET_KVLIST_BY_NAMESPACE = 219,
        /// Broker -> consumer.
        RESET_CONSUMER_CLIENT_OFFSET = 220,
        /// Broker -> consumer.
        GET_CONSUMER_STATUS_FROM_CLIENT = 221,
        INVOKE_BROKER_TO_RESET_OFFSET = 222,
        INVOKE_BROKER_TO_GET_CONSUMER_STATUS = 223,
        GET_TOPICS_BY_CLUSTER = 224,
        UPDATE_AND_CREATE_SUBSCRIPTIONGROUP_LIST = 225,
        QUERY_TOPIC_CONSUME_BY_WHO = 300,
        REGISTER_FILTER_SERVER = 301,
        REGISTER_MESSAGE_FILTER_CLASS = 302,
        QUERY_CONSUME_TIME_SPAN = 303,
        GET_SYSTEM_TOPIC_LIST_FROM_NS = 304,
        GET_SYSTEM_TOPIC_LIST_FROM_BROKER = 305,
        CLEAN_EXPIRED_CONSUMEQUEUE = 306,
        /// Broker -> consumer.
        GET_CONSUMER_RUNNING_INFO = 307,
        QUERY_CORRECTION_OFFSET = 308,
        /// Broker -> consumer.
        CONSUME_MESSAGE_DIRECTLY = 309,
        /// The send Java producers use by default (one-letter header, see `header::send`).
        SEND_MESSAGE_V2 = 310,
        GET_UNIT_TOPIC_LIST = 311,
        GET_HAS_UNIT_SUB_TOPIC_LIST = 312,
        GET_HAS_UNIT_SUB_UNUNIT_TOPIC_LIST = 313,
        CLONE_GROUP_OFFSET = 314,
        VIEW_BROKER_STATS_DATA = 315,
        CLEAN_UNUSED_TOPIC = 316,
        GET_BROKER_CONSUME_STATS = 317,
        UPDATE_NAMESRV_CONFIG = 318,
        GET_NAMESRV_CONFIG = 319,
        SEND_BATCH_MESSAGE = 320,
        QUERY_CONSUME_QUEUE = 321,
        QUERY_DATA_VERSION = 322,
        RESUME_CHECK_HALF_MESSAGE = 323,
        SEND_REPLY_MESSAGE = 324,
        SEND_REPLY_MESSAGE_V2 = 325,
        /// Broker -> requester.
        PUSH_REPLY_MESSAGE_TO_CLIENT = 326,
        ADD_WRITE_PERM_OF_BROKER = 327,
        GET_ALL_PRODUCER_INFO = 328,
        DELETE_EXPIRED_COMMITLOG = 329,
        QUERY_TOPICS_BY_CONSUMER = 343,
        QUERY_SUBSCRIPTION_BY_CONSUMER = 345,
        GET_TOPIC_CONFIG = 351,
        GET_SUBSCRIPTIONGROUP_CONFIG = 352,
        UPDATE_AND_GET_GROUP_FORBIDDEN = 353,
        CHECK_ROCKSDB_CQ_WRITE_PROGRESS = 354,
        EXPORT_ROCKSDB_CONFIG_TO_JSON = 355,
        /// Served by the pull handler.
        LITE_PULL_MESSAGE = 361,
        /// 5.3+.
        RECALL_MESSAGE = 370,
        QUERY_ASSIGNMENT = 400,
        SET_MESSAGE_REQUEST_MODE = 401,
        GET_ALL_MESSAGE_REQUEST_MODE = 402,
        UPDATE_AND_CREATE_STATIC_TOPIC = 513,

        // ---- broker groups and HA ----
        GET_BROKER_MEMBER_GROUP = 901,
        ADD_BROKER = 902,
        REMOVE_BROKER = 903,
        BROKER_HEARTBEAT = 904,
        NOTIFY_MIN_BROKER_ID_CHANGE = 905,
        EXCHANGE_BROKER_HA_INFO = 906,
        GET_BROKER_HA_STATUS = 907,
        RESET_MASTER_FLUSH_OFFSET = 908,

        // ---- controller ----
        CONTROLLER_ALTER_SYNC_STATE_SET = 1001,
        CONTROLLER_ELECT_MASTER = 1002,
        CONTROLLER_REGISTER_BROKER = 1003,
        CONTROLLER_GET_REPLICA_INFO = 1004,
        CONTROLLER_GET_METADATA_INFO = 1005,
        CONTROLLER_GET_SYNC_STATE_DATA = 1006,
        GET_BROKER_EPOCH_CACHE = 1007,
        NOTIFY_BROKER_ROLE_CHANGED = 1008,
        UPDATE_CONTROLLER_CONFIG = 1009,
        GET_CONTROLLER_CONFIG = 1010,
        CLEAN_BROKER_DATA = 1011,
        CONTROLLER_GET_NEXT_BROKER_ID = 1012,
        CONTROLLER_APPLY_BROKER_ID = 1013,
        /// Controller-internal raft events (declared as `short` in Java).
        BROKER_CLOSE_CHANNEL_REQUEST = 1014,
        CHECK_NOT_ACTIVE_BROKER_REQUEST = 1015,
        GET_BROKER_LIVE_INFO_REQUEST = 1016,
        GET_SYNC_STATE_DATA_REQUEST = 1017,
        RAFT_BROKER_HEART_BEAT_EVENT_REQUEST = 1018,

        // ---- tiered storage ----
        UPDATE_COLD_DATA_FLOW_CTR_CONFIG = 2001,
        REMOVE_COLD_DATA_FLOW_CTR_CONFIG = 2002,
        GET_COLD_DATA_FLOW_CTR_INFO = 2003,
        SET_COMMITLOG_READ_MODE = 2004,

        // ---- ACL 2.0 (5.3+) ----
        AUTH_CREATE_USER = 3001,
        AUTH_UPDATE_USER = 3002,
        AUTH_DELETE_USER = 3003,
        AUTH_GET_USER = 3004,
        AUTH_LIST_USER = 3005,
        AUTH_CREATE_ACL = 3006,
        AUTH_UPDATE_ACL = 3007,
        AUTH_DELETE_ACL = 3008,
        AUTH_GET_ACL = 3009,
        AUTH_LIST_ACL = 3010,
    }

    /// The misspelt name 4.x before 4.6 used for [`GET_ROUTEINFO_BY_TOPIC`].
    pub const GET_ROUTEINTO_BY_TOPIC: i32 = GET_ROUTEINFO_BY_TOPIC;
}

/// `ResponseCode` (including `RemotingSysResponseCode`): the outcome of a request.
pub mod response_code {
    code_table! {
        // ---- RemotingSysResponseCode ----
        SUCCESS = 0,
        SYSTEM_ERROR = 1,
        /// Java clients retry on it.
        SYSTEM_BUSY = 2,
        REQUEST_CODE_NOT_SUPPORTED = 3,
        TRANSACTION_FAILED = 4,

        // ---- ResponseCode ----
        FLUSH_DISK_TIMEOUT = 10,
        SLAVE_NOT_AVAILABLE = 11,
        FLUSH_SLAVE_TIMEOUT = 12,
        MESSAGE_ILLEGAL = 13,
        SERVICE_NOT_AVAILABLE = 14,
        VERSION_NOT_SUPPORTED = 15,
        NO_PERMISSION = 16,
        TOPIC_NOT_EXIST = 17,
        TOPIC_EXIST_ALREADY = 18,
        PULL_NOT_FOUND = 19,
        PULL_RETRY_IMMEDIATELY = 20,
        PULL_OFFSET_MOVED = 21,
        QUERY_NOT_FOUND = 22,
        SUBSCRIPTION_PARSE_FAILED = 23,
        SUBSCRIPTION_NOT_EXIST = 24,
        SUBSCRIPTION_NOT_LATEST = 25,
        SUBSCRIPTION_GROUP_NOT_EXIST = 26,
        FILTER_DATA_NOT_EXIST = 27,
        FILTER_DATA_NOT_LATEST = 28,
        INVALID_PARAMETER = 29,
        TRANSACTION_SHOULD_COMMIT = 200,
        TRANSACTION_SHOULD_ROLLBACK = 201,
        TRANSACTION_STATE_UNKNOW = 202,
        TRANSACTION_STATE_GROUP_WRONG = 203,
        NO_BUYER_ID = 204,
        NOT_IN_CURRENT_UNIT = 205,
        CONSUMER_NOT_ONLINE = 206,
        CONSUME_MSG_TIMEOUT = 207,
        NO_MESSAGE = 208,
        POLLING_FULL = 209,
        POLLING_TIMEOUT = 210,
        BROKER_NOT_EXIST = 211,
        BROKER_DISPATCH_NOT_COMPLETE = 212,
        BROADCAST_CONSUMPTION = 213,
        FLOW_CONTROL = 215,
        NOT_LEADER_FOR_QUEUE = 501,
        ILLEGAL_OPERATION = 604,
        /// Sent by a proxy that is shutting down.
        GO_AWAY = 1500,

        // ---- controller ----
        CONTROLLER_FENCED_MASTER_EPOCH = 2000,
        CONTROLLER_FENCED_SYNC_STATE_SET_EPOCH = 2001,
        CONTROLLER_INVALID_MASTER = 2002,
        CONTROLLER_INVALID_REPLICAS = 2003,
        CONTROLLER_MASTER_NOT_AVAILABLE = 2004,
        CONTROLLER_INVALID_REQUEST = 2005,
        CONTROLLER_BROKER_NOT_ALIVE = 2006,
        CONTROLLER_NOT_LEADER = 2007,
        CONTROLLER_BROKER_METADATA_NOT_EXIST = 2008,
        CONTROLLER_INVALID_CLEAN_BROKER_METADATA = 2009,
        CONTROLLER_BROKER_NEED_TO_BE_REGISTERED = 2010,
        CONTROLLER_MASTER_STILL_EXIST = 2011,
        CONTROLLER_ELECT_MASTER_FAILED = 2012,
        CONTROLLER_ALTER_SYNC_STATE_SET_FAILED = 2013,
        CONTROLLER_BROKER_ID_INVALID = 2014,
        CONTROLLER_JRAFT_INTERNAL_ERROR = 2015,
        CONTROLLER_BROKER_LIVE_INFO_NOT_EXISTS = 2016,

        // ---- ACL 2.0 ----
        USER_NOT_EXIST = 3001,
        POLICY_NOT_EXIST = 3002,

        // ---- client-local pseudo codes: never on the wire ----
        RPC_UNKNOWN = -1000,
        RPC_ADDR_IS_NULL = -1002,
        RPC_SEND_TO_CHANNEL_FAILED = -1004,
        RPC_TIME_OUT = -1006,
    }

    // 4.x ACL 1.0 failures reused numbers that 5.x gives to pop; `name` reports the 5.x meaning.
    /// 4.x only; same number as [`POLLING_FULL`].
    pub const UPDATE_AND_CREATE_ACL_CONFIG_FAILED: i32 = 209;
    /// 4.x only; same number as [`POLLING_TIMEOUT`].
    pub const DELETE_ACL_CONFIG_FAILED: i32 = 210;
    /// 4.x only; same number as [`BROKER_NOT_EXIST`].
    pub const UPDATE_GLOBAL_WHITE_ADDRS_CONFIG_FAILED: i32 = 211;
}

/// `PullSysFlag`: the `sysFlag` bits of a pull request.
pub mod pull_sys_flag {
    /// Persist the request's `commitOffset` for the group.
    pub const FLAG_COMMIT_OFFSET: i32 = 0x1;
    /// The broker may hold the request (long polling) for `suspendTimeoutMillis`.
    pub const FLAG_SUSPEND: i32 = 0x2;
    /// Filter with the request's `subscription`/`expressionType` instead of the heartbeat's.
    pub const FLAG_SUBSCRIPTION: i32 = 0x4;
    /// Legacy class filter.
    pub const FLAG_CLASS_FILTER: i32 = 0x8;
    /// Sent by lite pull consumers.
    pub const FLAG_LITE_PULL_MESSAGE: i32 = 0x10;

    /// Builds a flag word the way Java's `PullSysFlag.buildSysFlag` does.
    pub fn build(
        commit_offset: bool,
        suspend: bool,
        subscription: bool,
        class_filter: bool,
    ) -> i32 {
        let mut flag = 0;
        if commit_offset {
            flag |= FLAG_COMMIT_OFFSET;
        }
        if suspend {
            flag |= FLAG_SUSPEND;
        }
        if subscription {
            flag |= FLAG_SUBSCRIPTION;
        }
        if class_filter {
            flag |= FLAG_CLASS_FILTER;
        }
        flag
    }

    pub fn has_commit_offset(flag: i32) -> bool {
        flag & FLAG_COMMIT_OFFSET != 0
    }

    pub fn has_suspend(flag: i32) -> bool {
        flag & FLAG_SUSPEND != 0
    }

    pub fn has_subscription(flag: i32) -> bool {
        flag & FLAG_SUBSCRIPTION != 0
    }

    pub fn has_class_filter(flag: i32) -> bool {
        flag & FLAG_CLASS_FILTER != 0
    }

    pub fn has_lite_pull(flag: i32) -> bool {
        flag & FLAG_LITE_PULL_MESSAGE != 0
    }

    /// The flag with `FLAG_COMMIT_OFFSET` removed (a slave must not persist offsets).
    pub fn clear_commit_offset(flag: i32) -> i32 {
        flag & !FLAG_COMMIT_OFFSET
    }
}

/// `PermName`: topic and broker permission bits.
pub mod perm {
    pub const PRIORITY: i32 = 8;
    pub const READ: i32 = 4;
    pub const WRITE: i32 = 2;
    pub const INHERIT: i32 = 1;

    pub fn is_readable(perm: i32) -> bool {
        perm & READ == READ
    }

    pub fn is_writeable(perm: i32) -> bool {
        perm & WRITE == WRITE
    }

    pub fn is_inherited(perm: i32) -> bool {
        perm & INHERIT == INHERIT
    }

    pub fn is_priority(perm: i32) -> bool {
        perm & PRIORITY == PRIORITY
    }

    /// `PermName.perm2String`: `R`, `W`, `X` (inherit) or `-` for each bit, e.g. `RW-` for 6.
    pub fn to_display(perm: i32) -> String {
        let mut s = String::with_capacity(3);
        s.push(if is_readable(perm) { 'R' } else { '-' });
        s.push(if is_writeable(perm) { 'W' } else { '-' });
        s.push(if is_inherited(perm) { 'X' } else { '-' });
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_unique(table: &[(i32, &str)]) {
        for (i, (code, name)) in table.iter().enumerate() {
            for (other_code, other_name) in &table[i + 1..] {
                assert_ne!(code, other_code, "{name} and {other_name} share a code");
                assert_ne!(name, other_name);
            }
        }
    }

    #[test]
    fn request_codes_are_unique_and_named_back() {
        assert_unique(request_code::ALL);
        for &(code, name) in request_code::ALL {
            assert_eq!(request_code::name(code), Some(name));
        }
        assert!(request_code::ALL.len() > 160);
    }

    #[test]
    fn response_codes_are_unique_and_named_back() {
        assert_unique(response_code::ALL);
        for &(code, name) in response_code::ALL {
            assert_eq!(response_code::name(code), Some(name));
        }
    }

    #[test]
    fn request_codes_match_the_reference_table() {
        use request_code::*;
        let expected = [
            (SEND_MESSAGE, 10),
            (PULL_MESSAGE, 11),
            (UPDATE_AND_CREATE_TOPIC, 17),
            (HEART_BEAT, 34),
            (END_TRANSACTION, 37),
            (GET_ROUTEINFO_BY_TOPIC, 105),
            (WIPE_WRITE_PERM_OF_BROKER, 205),
            (ADD_WRITE_PERM_OF_BROKER, 327),
            (SEND_MESSAGE_V2, 310),
            (SEND_BATCH_MESSAGE, 320),
            (SEND_REPLY_MESSAGE_V2, 325),
            (LITE_PULL_MESSAGE, 361),
            (RECALL_MESSAGE, 370),
            (BROKER_HEARTBEAT, 904),
            (CONTROLLER_APPLY_BROKER_ID, 1013),
            (AUTH_LIST_ACL, 3010),
            (POP_MESSAGE, 200050),
            (ACK_MESSAGE, 200051),
            (BATCH_ACK_MESSAGE, 200151),
            (CHANGE_MESSAGE_INVISIBLETIME, 200053),
            (GET_ROUTEINTO_BY_TOPIC, 105),
        ];
        for (got, want) in expected {
            assert_eq!(got, want);
        }
        assert_eq!(name(200050), Some("POP_MESSAGE"));
        assert_eq!(name(16), None);
    }

    #[test]
    fn response_code_names_prefer_the_5x_meaning_of_shared_numbers() {
        assert_eq!(
            response_code::name(response_code::UPDATE_AND_CREATE_ACL_CONFIG_FAILED),
            Some("POLLING_FULL")
        );
        assert_eq!(response_code::name(21), Some("PULL_OFFSET_MOVED"));
        assert_eq!(response_code::name(-1006), Some("RPC_TIME_OUT"));
        assert_eq!(response_code::name(5), None);
    }

    #[test]
    fn pull_sys_flag_builds_and_reads_bits() {
        use pull_sys_flag::*;
        let f = build(true, true, true, false);
        assert_eq!(f, 0x7);
        assert!(has_commit_offset(f) && has_suspend(f) && has_subscription(f));
        assert!(!has_class_filter(f) && !has_lite_pull(f));
        assert_eq!(clear_commit_offset(f), 0x6);
        assert!(has_lite_pull(FLAG_LITE_PULL_MESSAGE));
    }

    #[test]
    fn perm_bits_and_display() {
        assert_eq!(perm::READ | perm::WRITE, 6);
        assert_eq!(perm::to_display(6), "RW-");
        assert_eq!(perm::to_display(7), "RWX");
        assert_eq!(perm::to_display(0), "---");
        assert!(perm::is_priority(8) && !perm::is_readable(8));
    }
}
