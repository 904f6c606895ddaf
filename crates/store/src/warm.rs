//! Extent warming for sync flush.
//!
//! Segments are preallocated with `fallocate`, which leaves *unwritten* extents. The first write to
//! an unwritten block has to convert it, and on ext4 an `fdatasync` that covers a conversion must
//! also make the changed extent metadata durable (a journal commit, or on a journal-less ext4 such
//! as the one we measure on, a synchronous write of the inode's extent block): that doubles the
//! cost of a group-commit fsync (about 250 µs instead of 120 µs for 60 KiB). The flusher therefore writes zeros a few MiB
//! ahead of the writer, one chunk (1 MiB) in a round now and then, so that by the time records land
//! there the blocks are ordinary written blocks (and their pages are already in the page cache) and
//! most group-commit fsyncs only write data. The round that carries a chunk pays for its
//! conversion; one round in about sixteen at 64 KiB per round.
//!
//! Why in the flusher and not in a thread of its own: a warming thread's writeback and metadata
//! writes land in the middle of other rounds' fdatasyncs at random (an fdatasync waits for every
//! page of the file under writeback), which doubled the p99 of sync sends for the same throughput.
//!
//! The writer and the warmer must never touch the same bytes: zeros written over a range the
//! writer has filled would replace the records. The [`WarmFence`] keeps
//! them apart with two sequentially consistent counters (Dekker style): the writer raises
//! `touched` before touching bytes and then checks `busy`; the warmer publishes `busy` (the start of
//! the chunk it is about to write, under `lock`) and then checks `touched`. At least one of them sees
//! the other: either the warmer backs off, or the writer waits on `lock` until the chunk is done.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::segment::Segment;

/// Largest warming write (smaller segments use a sixteenth of their size). Larger chunks make the
/// round that carries one stall longer; smaller ones make more rounds pay for a metadata write.
pub(crate) const WARM_CHUNK: u64 = 1 << 20;
const PAGE: u64 = 4096;

pub(crate) struct WarmFence {
    /// Highest offset the writer has written, prefaulted or is about to.
    touched: AtomicU64,
    /// End of the last chunk the warmer finished (0 before the first).
    warmed: AtomicU64,
    /// Start of the chunk being warmed, or `u64::MAX` when the warmer is idle.
    busy: AtomicU64,
    /// Held by the warmer for the whole of one chunk.
    lock: Mutex<()>,
}

impl WarmFence {
    pub fn new() -> WarmFence {
        WarmFence {
            touched: AtomicU64::new(0),
            warmed: AtomicU64::new(0),
            busy: AtomicU64::new(u64::MAX),
            lock: Mutex::new(()),
        }
    }

    /// Writer side: call before touching any byte below `end`. Returns once no warming write can
    /// overlap `..end`.
    pub fn enter(&self, end: u64) {
        self.touched.fetch_max(end, Ordering::SeqCst);
        if self.busy.load(Ordering::SeqCst) < end {
            drop(self.lock.lock().unwrap_or_else(|p| p.into_inner()));
        }
    }

    /// End of the warmed stretch ahead of the writer: pages below it need no prefault.
    pub fn warmed(&self) -> u64 {
        self.warmed.load(Ordering::Acquire)
    }

    /// Records that everything below `end` is (or may be) data, without waiting: for recovery and
    /// loading, before any warming starts.
    pub fn raise(&self, end: u64) {
        self.touched.fetch_max(end, Ordering::SeqCst);
    }

    /// Sets the writer's mark to exactly `end` (recovery, before any warming starts).
    pub fn reset(&self, end: u64) {
        self.touched.store(end, Ordering::SeqCst);
    }

    pub fn touched(&self) -> u64 {
        self.touched.load(Ordering::SeqCst)
    }
}

/// The warmer's state (owned by the flusher).
pub(crate) struct Warmer {
    /// Everything below this offset was warmed or already touched by the writer.
    warmed: u64,
    ahead: u64,
    /// Size of one warming write; warming starts a quarter of it past the writer's mark.
    chunk: u64,
    disabled: bool,
}

/// What one [`Warmer::step`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum WarmStep {
    /// A chunk was warmed: call again.
    Warmed,
    /// Nothing to do until the writer moves on.
    Idle,
}

impl Warmer {
    /// Warms up to `ahead` bytes past the writer in segments of `segment_bytes`.
    pub fn new(ahead: u64, segment_bytes: u64) -> Warmer {
        Warmer {
            warmed: 0,
            ahead,
            chunk: (segment_bytes / 16).clamp(PAGE, WARM_CHUNK) / PAGE * PAGE,
            disabled: ahead == 0,
        }
    }

    pub fn is_disabled(&self) -> bool {
        self.disabled
    }

    /// Warms the next chunk ahead of the writer, if any. `segment_for` finds the segment holding an
    /// offset (the warmer never creates segments).
    pub fn step(
        &mut self,
        fence: &WarmFence,
        segment_for: impl Fn(u64) -> Option<Arc<Segment>>,
    ) -> io::Result<WarmStep> {
        if self.is_disabled() {
            return Ok(WarmStep::Idle);
        }
        let touched = fence.touched();
        let margin = (self.chunk / 4).max(PAGE);
        let start = self.warmed.max(round_up(touched + margin, self.chunk));
        if start >= touched + self.ahead {
            return Ok(WarmStep::Idle);
        }
        let Some(seg) = segment_for(start).filter(|s| s.start() <= start && start < s.end()) else {
            return Ok(WarmStep::Idle);
        };
        let end = (start + self.chunk).min(seg.end());
        let _chunk = fence.lock.lock().unwrap_or_else(|p| p.into_inner());
        fence.busy.store(start, Ordering::SeqCst);
        if fence.touched() > start {
            // The writer got there first: start again above it.
            fence.busy.store(u64::MAX, Ordering::SeqCst);
            return Ok(WarmStep::Warmed);
        }
        let res = self.write_zeros(&seg, start, end);
        fence.busy.store(u64::MAX, Ordering::SeqCst);
        match res {
            Ok(()) => {
                self.warmed = end;
                fence.warmed.store(end, Ordering::Release);
                Ok(WarmStep::Warmed)
            }
            Err(e) => {
                // Warming is only a speed-up: after an error, leave the blocks to the writer.
                self.disabled = true;
                Err(e)
            }
        }
    }

    fn write_zeros(&mut self, seg: &Segment, start: u64, end: u64) -> io::Result<()> {
        let from = (start - seg.start()) as usize;
        // SAFETY: the fence guarantees the writer touches nothing in `start..end` until the chunk
        // is done, and everything there lies above what it ever wrote (zeros only).
        unsafe { seg.prefault(from, (end - start) as usize)? };
        // No sync here: the flush round that runs this step syncs right after.
        Ok(())
    }
}

fn round_up(v: u64, to: u64) -> u64 {
    v.div_ceil(to) * to
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::file_name;
    use std::sync::atomic::AtomicBool;

    #[test]
    fn the_warmer_stays_above_the_writer_and_within_its_window() {
        let dir = tempfile::tempdir().unwrap();
        let seg = Arc::new(Segment::create(&dir.path().join(file_name(0)), 0, 32 << 20).unwrap());
        let fence = WarmFence::new();
        let mut w = Warmer::new(16 << 20, 64 << 20);
        let data = vec![0xABu8; 3 << 20];
        fence.enter(data.len() as u64);
        unsafe { seg.write(0, &data) };
        let mut steps = 0;
        loop {
            match w.step(&fence, |_| Some(seg.clone())) {
                Ok(WarmStep::Warmed) => steps += 1,
                Ok(WarmStep::Idle) => break,
                Err(e) => panic!("warming failed: {e}"),
            }
        }
        assert!(steps >= 1);
        assert!(w.warmed >= (3 << 20) + WARM_CHUNK / 4);
        assert!(w.warmed <= (3 << 20) + (16 << 20) + WARM_CHUNK);
        assert!(unsafe { seg.slice(0, data.len()) } == &data[..]);
    }

    #[test]
    fn a_writer_racing_the_warmer_never_loses_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let len = 64 << 20;
        let seg = Arc::new(Segment::create(&dir.path().join(file_name(0)), 0, len).unwrap());
        let fence = Arc::new(WarmFence::new());
        let stop = Arc::new(AtomicBool::new(false));
        let warmer = {
            let (seg, fence, stop) = (seg.clone(), fence.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut w = Warmer::new(8 << 20, len as u64);
                while !stop.load(Ordering::Relaxed) && !w.is_disabled() {
                    if let Ok(WarmStep::Idle) = w.step(&fence, |_| Some(seg.clone())) {
                        std::thread::yield_now();
                    }
                }
            })
        };
        // Write in odd-sized pieces so writes straddle chunk boundaries.
        let piece = 777 * 1024 + 13;
        let mut pos = 0usize;
        let mut n = 0u8;
        while pos + piece <= len {
            n = n.wrapping_add(1).max(1);
            fence.enter((pos + piece) as u64);
            unsafe { seg.write(pos, &vec![n; piece]) };
            pos += piece;
        }
        stop.store(true, Ordering::Relaxed);
        warmer.join().unwrap();
        // A warming write over written bytes would have replaced them: check both the mapping and
        // a read of the file.
        seg.sync().unwrap();
        let mut at = 0usize;
        let mut n = 0u8;
        while at + piece <= pos {
            n = n.wrapping_add(1).max(1);
            let got = unsafe { seg.slice(at, piece) };
            assert!(got.iter().all(|&b| b == n), "piece at {at} damaged");
            let mut disk = vec![0u8; piece];
            std::os::unix::fs::FileExt::read_exact_at(
                &std::fs::File::open(seg.path()).unwrap(),
                &mut disk,
                at as u64,
            )
            .unwrap();
            assert!(
                disk.iter().all(|&b| b == n),
                "piece at {at} damaged on disk"
            );
            at += piece;
        }
    }
}
