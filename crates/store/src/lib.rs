//! `apogee-store`: the storage engine. Synchronous at its core: CommitLog segments, consume queues,
//! index files, checkpoint, flush and recovery. The on-disk format is in docs/storage-format.md.

mod checkpoint;
mod commitlog;
pub mod config;
mod consume_queue;
pub mod error;
mod flush;
mod index;
pub mod inspect;
mod segment;
mod store;
pub mod timer;
mod warm;

/// The topic delay-level messages wait in, one queue per level (`TopicValidator.RMQ_SYS_SCHEDULE_TOPIC`).
pub const SCHEDULE_TOPIC: &str = "SCHEDULE_TOPIC_XXXX";
/// The topic timer messages wait in before the timer service takes them (`TimerMessageStore.TIMER_TOPIC`).
pub const TIMER_TOPIC: &str = "rmq_sys_wheel_timer";

pub use checkpoint::CheckpointData;
pub use config::{
    parse_delete_when, DelayLevels, FlushDiskType, StoreConfig, DEFAULT_MESSAGE_DELAY_LEVEL,
};
pub use consume_queue::CqEntry;
pub use error::{Result, StoreError};
pub use flush::{FlushCallback, FlushStats};
pub use store::{
    local_hour, AppendListener, AppendResult, BoundaryType, GetMessageResult, GetMessageStatus,
    MessageStore, RecordFilter,
};
