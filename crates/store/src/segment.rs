//! A preallocated, memory-mapped file holding one stretch of a log (a CommitLog segment, a
//! consume-queue file or an index file). Byte 0 of the file is global offset `start`.
//!
//! Concurrency contract: exactly one writer per segment, and readers only touch bytes the writer has
//! already published (through an atomic write position kept by the owner). The unsafe accessors below
//! rely on that contract; the safe types built on them (CommitLog, ConsumeQueue, index) enforce it.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use memmap2::{MmapOptions, MmapRaw};

pub(crate) struct Segment {
    start: u64,
    len: usize,
    path: PathBuf,
    file: File,
    map: MmapRaw,
    /// Set when the segment was removed by retention or recovery; the mapping stays valid for
    /// readers that still hold it, and the file is unlinked when the last holder lets go.
    deleted: AtomicBool,
}

/// Name of a file that starts at `offset`: 20 digits, zero-padded, as RocketMQ names its files.
pub(crate) fn file_name(offset: u64) -> String {
    format!("{offset:020}")
}

/// Parses a file name written by [`file_name`]; other names are not ours.
pub(crate) fn parse_file_name(name: &str) -> Option<u64> {
    if name.len() == 20 && name.bytes().all(|b| b.is_ascii_digit()) {
        name.parse().ok()
    } else {
        None
    }
}

impl Segment {
    /// Creates the file at its full length (allocating the blocks, so later writes cannot run out of
    /// space and fdatasync need not update the size) and maps it. The directory is synced too: an
    /// fdatasync of the file alone does not make its name durable, and records acknowledged under
    /// sync flush may live in it.
    pub fn create(path: &Path, start: u64, len: usize) -> io::Result<Segment> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        preallocate(&file, len as u64)?;
        if let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Self::map(file, path, start, len)
    }

    /// Opens an existing file. A file shorter than `len` (a crash during creation) is extended.
    pub fn open(path: &Path, start: u64, len: usize) -> io::Result<Segment> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let actual = file.metadata()?.len();
        if actual < len as u64 {
            preallocate(&file, len as u64)?;
        } else if actual > len as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is {actual} bytes, larger than the configured {len}",
                    path.display()
                ),
            ));
        }
        Self::map(file, path, start, len)
    }

    fn map(file: File, path: &Path, start: u64, len: usize) -> io::Result<Segment> {
        let map = MmapOptions::new().len(len).map_raw(&file)?;
        Ok(Segment {
            start,
            len,
            path: path.to_path_buf(),
            file,
            map,
            deleted: AtomicBool::new(false),
        })
    }

    pub fn start(&self) -> u64 {
        self.start
    }

    pub fn end(&self) -> u64 {
        self.start + self.len as u64
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Copies `data` to file position `pos`.
    ///
    /// # Safety
    /// The caller is the segment's only writer and no reader looks at `pos..pos + data.len()` until
    /// the caller publishes it.
    pub unsafe fn write(&self, pos: usize, data: &[u8]) {
        assert!(pos + data.len() <= self.len, "write past segment end");
        std::ptr::copy_nonoverlapping(data.as_ptr(), self.map.as_mut_ptr().add(pos), data.len());
    }

    /// Copies `data` to file position `pos` with `pwrite` (same page cache as the mapping).
    ///
    /// # Safety
    /// As for [`Segment::write`].
    pub unsafe fn write_through_file(&self, pos: usize, data: &[u8]) -> io::Result<()> {
        assert!(pos + data.len() <= self.len, "write past segment end");
        self.file.write_all_at(data, pos as u64)
    }

    /// Fills `pos..end` with zeros.
    ///
    /// Whole pages are zeroed by the file system (`FALLOC_FL_ZERO_RANGE`: the blocks stay allocated
    /// and turn back into unwritten extents, without reading or dirtying a page), so cutting the
    /// tail of a large segment costs a metadata update, not a write of the whole tail. The partial
    /// pages at either end, or everything on a file system without zero-range, are cleared through
    /// the mapping.
    ///
    /// # Safety
    /// As for [`Segment::write`].
    pub unsafe fn zero(&self, pos: usize, end: usize) {
        assert!(pos <= end && end <= self.len, "zero range outside segment");
        const PAGE: usize = 4096;
        let first_page = pos.div_ceil(PAGE) * PAGE;
        let last_page = end / PAGE * PAGE;
        if last_page > first_page && zero_range(&self.file, first_page, last_page - first_page) {
            std::ptr::write_bytes(self.map.as_mut_ptr().add(pos), 0, first_page - pos);
            std::ptr::write_bytes(self.map.as_mut_ptr().add(last_page), 0, end - last_page);
        } else {
            std::ptr::write_bytes(self.map.as_mut_ptr().add(pos), 0, end - pos);
        }
    }

    /// The bytes at `pos..pos + len`.
    ///
    /// # Safety
    /// The range was published by the writer (or the store is not accepting writes yet, as during
    /// recovery), so no write to it is in progress.
    pub unsafe fn slice(&self, pos: usize, len: usize) -> &[u8] {
        assert!(pos + len <= self.len, "read past segment end");
        std::slice::from_raw_parts(self.map.as_ptr().add(pos), len)
    }

    /// The bytes at `pos..pos + len` as a `Bytes` that keeps the mapping alive: no copy.
    ///
    /// # Safety
    /// As for [`Segment::slice`], and the range is never written again while the `Bytes` lives
    /// (true for published CommitLog records, which are immutable).
    pub unsafe fn bytes(self: &Arc<Self>, pos: usize, len: usize) -> Bytes {
        assert!(pos + len <= self.len, "read past segment end");
        Bytes::from_owner(SegmentSlice {
            segment: Arc::clone(self),
            pos,
            len,
        })
    }

    /// Brings `pos..pos + len` into the page cache as dirty zero pages by writing zeros through the
    /// file, so that later stores through the mapping find the pages present and writable.
    ///
    /// Why: the first store to each page of a preallocated (unwritten-extent) file through a shared
    /// mapping takes a read fault that zero-fills the page and then a write fault that converts the
    /// block, costing several microseconds per 4 KiB page (the CommitLog appended at ~0.5 GB/s). A
    /// `pwrite` of zeros in large chunks does the same work in bulk at several GB/s.
    ///
    /// # Safety
    /// The caller is the segment's only writer and nothing has been or is being written to the range
    /// (it lies above everything the writer wrote), so no record byte is overwritten.
    pub unsafe fn prefault(&self, pos: usize, len: usize) -> io::Result<()> {
        static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
        let end = (pos + len).min(self.len);
        let mut at = pos;
        while at < end {
            let n = (end - at).min(ZEROS.len());
            self.file.write_all_at(&ZEROS[..n], at as u64)?;
            at += n;
        }
        Ok(())
    }

    /// Maps `pos..pos + len` writable into this process in one call (`MADV_POPULATE_WRITE`), so the
    /// stores that follow take no page fault per page. Best effort: an older kernel (before 5.14)
    /// answers `EINVAL` and the pages are then faulted in one by one as before.
    ///
    /// # Safety
    /// As for [`Segment::prefault`]: populating writes nothing, but it must not race a truncation.
    pub unsafe fn populate(&self, pos: usize, len: usize) {
        const MADV_POPULATE_WRITE: libc::c_int = 23;
        let page = 4096;
        let from = pos / page * page;
        let end = (pos + len).min(self.len);
        if end > from {
            libc::madvise(
                self.map.as_mut_ptr().add(from).cast(),
                end - from,
                MADV_POPULATE_WRITE,
            );
        }
    }

    /// Drops the whole pages inside `pos..pos + len` from this process's mapping
    /// (`MADV_DONTNEED`). The bytes stay in the page cache (dirty ones are still written back):
    /// this is not a truncation, and a later access maps the same page again.
    ///
    /// Why: a flush has to write-protect every page that is mapped writable before writing it back,
    /// one TLB shootdown (an inter-processor interrupt, costly in a VM) per page, and that took
    /// about a third of the CPU when records were appended one at a time. Unmapping a range first
    /// costs one batched shootdown.
    pub fn unmap(&self, pos: usize, len: usize) {
        const PAGE: usize = 4096;
        let from = pos.div_ceil(PAGE) * PAGE;
        let end = (pos + len).min(self.len) / PAGE * PAGE;
        if end > from {
            // SAFETY: the range lies inside our own mapping; on a shared file mapping MADV_DONTNEED
            // only removes page-table entries, so no byte changes for any reader or writer.
            unsafe {
                libc::madvise(
                    self.map.as_mut_ptr().add(from).cast(),
                    end - from,
                    libc::MADV_DONTNEED,
                );
            }
        }
    }

    /// Makes every write so far durable (fdatasync: the size never changes, so no metadata waits).
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Marks the segment deleted; the file is unlinked when the last holder drops it.
    pub fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::Release);
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        if self.deleted.load(Ordering::Acquire) {
            if let Err(e) = std::fs::remove_file(&self.path) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!("could not remove {}: {e}", self.path.display());
                }
            }
        }
    }
}

struct SegmentSlice {
    segment: Arc<Segment>,
    pos: usize,
    len: usize,
}

impl AsRef<[u8]> for SegmentSlice {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: the range was published before this slice was made and is immutable from then on.
        unsafe { self.segment.slice(self.pos, self.len) }
    }
}

/// Zeroes `len` bytes at `pos` (page-aligned) in the file system, keeping the blocks allocated.
/// False if the file system cannot do it (the caller then writes zeros itself).
fn zero_range(file: &File, pos: usize, len: usize) -> bool {
    let (Ok(pos), Ok(len)) = (libc::off_t::try_from(pos), libc::off_t::try_from(len)) else {
        return false;
    };
    // SAFETY: fallocate on a valid, owned descriptor; no memory is passed.
    unsafe { libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_ZERO_RANGE, pos, len) == 0 }
}

/// Allocates the blocks of `file` up to `len` bytes. Falls back to a sparse `set_len` on file systems
/// without fallocate.
fn preallocate(file: &File, len: u64) -> io::Result<()> {
    let len_off = libc::off_t::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file too large"))?;
    // SAFETY: fallocate on a valid, owned descriptor; no memory is passed.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len_off) };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => file.set_len(len),
        _ => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_twenty_digits_and_parse_back() {
        assert_eq!(file_name(1_073_741_824), "00000000001073741824");
        assert_eq!(parse_file_name("00000000001073741824"), Some(1_073_741_824));
        assert_eq!(parse_file_name("1073741824"), None);
        assert_eq!(parse_file_name("0000000000107374182x"), None);
    }

    #[test]
    fn written_bytes_are_read_back_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name(4096));
        let seg = Arc::new(Segment::create(&path, 4096, 8192).unwrap());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 8192);
        unsafe { seg.write(100, b"hello") };
        let b = unsafe { seg.bytes(100, 5) };
        assert_eq!(&b[..], b"hello");
        seg.sync().unwrap();
        drop(seg);
        // The Bytes kept the mapping alive after the segment handle was dropped.
        assert_eq!(&b[..], b"hello");
        let seg = Segment::open(&path, 4096, 8192).unwrap();
        assert_eq!(unsafe { seg.slice(100, 5) }, b"hello");
        assert_eq!(unsafe { seg.slice(0, 4) }, &[0, 0, 0, 0]);
    }

    #[test]
    fn zero_clears_exactly_the_range_including_partial_pages() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name(0));
        let len = 64 * 1024;
        let seg = Segment::create(&path, 0, len).unwrap();
        unsafe { seg.write(0, &vec![0xAB; len]) };
        seg.sync().unwrap();
        // From inside one page to inside another, spanning whole pages.
        unsafe { seg.zero(1000, 50_000) };
        let check = |seg: &Segment| {
            let b = unsafe { seg.slice(0, len) };
            assert!(b[..1000].iter().all(|&x| x == 0xAB));
            assert!(b[1000..50_000].iter().all(|&x| x == 0));
            assert!(b[50_000..].iter().all(|&x| x == 0xAB));
        };
        check(&seg);
        seg.sync().unwrap();
        drop(seg);
        check(&Segment::open(&path, 0, len).unwrap());
        // Within one page.
        let seg = Segment::open(&path, 0, len).unwrap();
        unsafe { seg.zero(60_000, 60_010) };
        assert_eq!(
            unsafe { seg.slice(59_999, 12) },
            &[0xAB, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xAB]
        );
    }

    #[test]
    fn prefault_leaves_written_bytes_alone_and_zeroes_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name(0));
        let seg = Segment::create(&path, 0, 8192).unwrap();
        unsafe { seg.write(0, &[7u8; 100]) };
        unsafe { seg.prefault(100, 1 << 20).unwrap() };
        unsafe { seg.write(100, &[8u8; 10]) };
        let want: Vec<u8> = [vec![7u8; 5], vec![8u8; 10], vec![0u8; 5]].concat();
        assert_eq!(unsafe { seg.slice(95, 20) }, &want[..]);
        assert!(unsafe { seg.slice(110, 8082) }.iter().all(|&b| b == 0));
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            8192,
            "never grows the file"
        );
    }

    /// Resident KiB of the mapping starting at `start`, from /proc/self/smaps.
    fn mapped_kib(start: usize) -> Option<u64> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let mut lines = smaps.lines();
        while let Some(line) = lines.next() {
            let range = line.split_whitespace().next()?;
            let Some((a, _)) = range.split_once('-') else {
                continue;
            };
            if usize::from_str_radix(a, 16).ok() != Some(start) {
                continue;
            }
            return lines
                .find_map(|l| l.strip_prefix("Rss:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok());
        }
        None
    }

    #[test]
    fn unmapped_pages_keep_their_bytes_in_memory_and_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name(0));
        let len = 64 * 1024;
        let seg = Arc::new(Segment::create(&path, 0, len).unwrap());
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        unsafe { seg.write(0, &data) };
        let held = unsafe { seg.bytes(4096, 8192) };
        let start = seg.map.as_ptr() as usize;
        assert_eq!(mapped_kib(start), Some(64));
        // From inside the first page to inside the last: only whole pages go.
        seg.unmap(100, len - 200);
        assert_eq!(
            mapped_kib(start),
            Some(8),
            "the two partial pages stay mapped"
        );
        assert_eq!(unsafe { seg.slice(0, len) }, &data[..]);
        assert_eq!(&held[..], &data[4096..4096 + 8192]);
        // Written through the mapping, unmapped before the flush: still written back.
        seg.sync().unwrap();
        drop((seg, held));
        assert_eq!(std::fs::read(&path).unwrap(), data);
    }

    #[test]
    fn creating_an_existing_file_fails_instead_of_overwriting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name(0));
        Segment::create(&path, 0, 4096).unwrap();
        assert!(Segment::create(&path, 0, 4096).is_err());
    }

    #[test]
    fn deleted_segment_is_unlinked_when_last_holder_drops() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name(0));
        let seg = Arc::new(Segment::create(&path, 0, 4096).unwrap());
        unsafe { seg.write(0, b"x") };
        let held = unsafe { seg.bytes(0, 1) };
        seg.mark_deleted();
        drop(seg);
        assert!(path.exists(), "a reader still holds it");
        assert_eq!(&held[..], b"x");
        drop(held);
        assert!(!path.exists());
    }
}
