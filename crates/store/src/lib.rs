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

pub use checkpoint::CheckpointData;
pub use config::{FlushDiskType, StoreConfig};
pub use consume_queue::CqEntry;
pub use error::{Result, StoreError};
pub use flush::{FlushCallback, FlushStats};
pub use store::{
    AppendListener, AppendResult, BoundaryType, GetMessageResult, GetMessageStatus, MessageStore,
    RecordFilter,
};
