//! SEND_MESSAGE (10), SEND_MESSAGE_V2 (310), SEND_BATCH_MESSAGE (320), SEND_REPLY_MESSAGE (324/325)
//! and PUSH_REPLY_MESSAGE_TO_CLIENT (326).
//!
//! Java producers send the V2 header, whose keys are single letters (`a`..`n`) to save bytes on
//! every send; processors work with the V1 long-name struct, so V2 is only a wire form here.

use super::CommandHeader;
use crate::codes::request_code;
use crate::command::ExtFields;
use crate::error::Result;

/// Extra extFields key of every successful send response: the broker's region (`regionId`).
pub const EXT_MSG_REGION: &str = "MSG_REGION";
/// Extra extFields key of every successful send response: `"true"`/`"false"` (trace enabled).
pub const EXT_TRACE_ON: &str = "TRACE_ON";

crate::command_header! {
    /// The send request with its long field names (`SendMessageRequestHeader`), also the decoded
    /// form of [`SendMessageRequestHeaderV2`].
    pub struct SendMessageRequestHeader {
        producer_group: String => "producerGroup",
        topic: String => "topic",
        /// Template topic for auto-create, normally `TBW102`.
        default_topic: String => "defaultTopic",
        /// Queue count for an auto-created topic.
        default_topic_queue_nums: i32 => "defaultTopicQueueNums",
        /// Negative: the broker picks a queue.
        queue_id: i32 => "queueId",
        /// `MessageSysFlag` bits.
        sys_flag: i32 => "sysFlag",
        born_timestamp: i64 => "bornTimestamp",
        /// The user flag stored with the message.
        flag: i32 => "flag",
        /// The properties string (`name\u{1}value\u{2}` pairs).
        properties: Option<String> => "properties",
        reconsume_times: Option<i32> => "reconsumeTimes",
        unit_mode: Option<bool> => "unitMode",
        batch: Option<bool> => "batch",
        max_reconsume_times: Option<i32> => "maxReconsumeTimes",
        /// Inherited `RpcRequestHeader.bname`; V2 carries it as `n`.
        broker_name: Option<String> => "bname",
    }
}

crate::command_header! {
    /// `SendMessageRequestHeaderV2`: the same fields under one-letter keys.
    pub struct SendMessageRequestHeaderV2 {
        /// producerGroup
        a: String => "a",
        /// topic
        b: String => "b",
        /// defaultTopic
        c: String => "c",
        /// defaultTopicQueueNums
        d: i32 => "d",
        /// queueId
        e: i32 => "e",
        /// sysFlag
        f: i32 => "f",
        /// bornTimestamp
        g: i64 => "g",
        /// flag
        h: i32 => "h",
        /// properties
        i: Option<String> => "i",
        /// reconsumeTimes
        j: Option<i32> => "j",
        /// unitMode
        k: Option<bool> => "k",
        /// maxReconsumeTimes
        l: Option<i32> => "l",
        /// batch
        m: Option<bool> => "m",
        /// brokerName
        n: Option<String> => "n",
    }
}

impl From<SendMessageRequestHeaderV2> for SendMessageRequestHeader {
    fn from(v2: SendMessageRequestHeaderV2) -> Self {
        Self {
            producer_group: v2.a,
            topic: v2.b,
            default_topic: v2.c,
            default_topic_queue_nums: v2.d,
            queue_id: v2.e,
            sys_flag: v2.f,
            born_timestamp: v2.g,
            flag: v2.h,
            properties: v2.i,
            reconsume_times: v2.j,
            unit_mode: v2.k,
            max_reconsume_times: v2.l,
            batch: v2.m,
            broker_name: v2.n,
        }
    }
}

impl From<SendMessageRequestHeader> for SendMessageRequestHeaderV2 {
    fn from(v1: SendMessageRequestHeader) -> Self {
        Self {
            a: v1.producer_group,
            b: v1.topic,
            c: v1.default_topic,
            d: v1.default_topic_queue_nums,
            e: v1.queue_id,
            f: v1.sys_flag,
            g: v1.born_timestamp,
            h: v1.flag,
            i: v1.properties,
            j: v1.reconsume_times,
            k: v1.unit_mode,
            l: v1.max_reconsume_times,
            m: v1.batch,
            n: v1.broker_name,
        }
    }
}

impl SendMessageRequestHeader {
    /// Reads the one-letter V2 form.
    pub fn from_ext_fields_v2(ext: &ExtFields) -> Result<Self> {
        SendMessageRequestHeaderV2::from_ext_fields(ext).map(Self::from)
    }

    /// Writes the one-letter V2 form (what SEND_MESSAGE_V2 and SEND_BATCH_MESSAGE carry).
    pub fn write_ext_fields_v2(&self, ext: &mut ExtFields) {
        // Field by field rather than through a converted clone: this runs on every send.
        use super::HeaderField;
        self.producer_group.write_field(ext, "a");
        self.topic.write_field(ext, "b");
        self.default_topic.write_field(ext, "c");
        self.default_topic_queue_nums.write_field(ext, "d");
        self.queue_id.write_field(ext, "e");
        self.sys_flag.write_field(ext, "f");
        self.born_timestamp.write_field(ext, "g");
        self.flag.write_field(ext, "h");
        self.properties.write_field(ext, "i");
        self.reconsume_times.write_field(ext, "j");
        self.unit_mode.write_field(ext, "k");
        self.max_reconsume_times.write_field(ext, "l");
        self.batch.write_field(ext, "m");
        self.broker_name.write_field(ext, "n");
    }

    /// `batch`, absent meaning false.
    pub fn is_batch(&self) -> bool {
        self.batch.unwrap_or(false)
    }

    /// `unitMode`, absent meaning false.
    pub fn is_unit_mode(&self) -> bool {
        self.unit_mode.unwrap_or(false)
    }
}

/// Whether requests with `code` carry the V2 (one-letter) send header.
pub fn send_uses_v2_header(code: i32) -> bool {
    matches!(
        code,
        request_code::SEND_MESSAGE_V2
            | request_code::SEND_BATCH_MESSAGE
            | request_code::SEND_REPLY_MESSAGE_V2
    )
}

/// Decodes a send request's header in the form its code implies: V2 for SEND_MESSAGE_V2,
/// SEND_BATCH_MESSAGE and SEND_REPLY_MESSAGE_V2, V1 for SEND_MESSAGE, SEND_REPLY_MESSAGE and
/// anything else.
pub fn decode_send_request(code: i32, ext: &ExtFields) -> Result<SendMessageRequestHeader> {
    if send_uses_v2_header(code) {
        SendMessageRequestHeader::from_ext_fields_v2(ext)
    } else {
        SendMessageRequestHeader::from_ext_fields(ext)
    }
}

crate::command_header! {
    /// The send response (`SendMessageResponseHeader`). The response also needs the extFields
    /// [`EXT_MSG_REGION`] and [`EXT_TRACE_ON`], which are not part of this header.
    pub struct SendMessageResponseHeader {
        /// The offset message id; for a batch, the ids joined with commas.
        msg_id: String => "msgId",
        queue_id: i32 => "queueId",
        /// Logical offset of the (first) message.
        queue_offset: i64 => "queueOffset",
        /// The message's `UNIQ_KEY`.
        transaction_id: Option<String> => "transactionId",
        batch_uniq_id: Option<String> => "batchUniqId",
        /// 5.3+: handle for RECALL_MESSAGE (timer messages).
        recall_handle: Option<String> => "recallHandle",
    }
}

crate::command_header! {
    /// PUSH_REPLY_MESSAGE_TO_CLIENT (326): a reply message pushed by the broker to the requester.
    pub struct ReplyMessageRequestHeader {
        producer_group: String => "producerGroup",
        topic: String => "topic",
        default_topic: String => "defaultTopic",
        default_topic_queue_nums: i32 => "defaultTopicQueueNums",
        queue_id: i32 => "queueId",
        sys_flag: i32 => "sysFlag",
        born_timestamp: i64 => "bornTimestamp",
        flag: i32 => "flag",
        properties: Option<String> => "properties",
        reconsume_times: Option<i32> => "reconsumeTimes",
        unit_mode: bool => "unitMode" = false,
        /// `ip:port` of the original requester.
        born_host: String => "bornHost",
        /// `ip:port` of the broker.
        store_host: String => "storeHost",
        store_timestamp: i64 => "storeTimestamp",
    }
}
