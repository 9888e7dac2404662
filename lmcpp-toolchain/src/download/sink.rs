//! The hashing sink: a blocking writer that appends received bytes to the `.part` file and
//! feeds the same bytes to SHA-256, so the digest is ready when the last byte lands.
//!
//! On resume the sink first hashes the bytes already in the part (streamed in 1 MiB
//! blocks, never loaded whole) and then continues both the file and the hash. Writeback is
//! started every few MiB so the final `fsync` before the publishing rename is short.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use sha2::Digest;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::digest::Sha256 as Digest256;
use crate::error::{IoContext, Result, join_error};

/// How much written data may wait in the page cache before writeback is started.
const WRITEBACK_STEP: u64 = 8 << 20;

/// Size of the blocks read while hashing what is already on disk.
const READ_BLOCK: usize = 1 << 20;

/// What the sink wrote.
pub(super) struct Written {
    /// SHA-256 of the whole part, lower-case hex.
    pub(super) sha256: String,
    /// Length of the part.
    pub(super) len: u64,
}

/// A running writer; batches go in through [`Sink::send`], [`Sink::finish`] ends it.
pub(super) struct Sink {
    tx: mpsc::Sender<Vec<Bytes>>,
    writer: JoinHandle<Result<Written>>,
}

impl Sink {
    /// Opens `part` and keeps its first `start` bytes (hashing them), or truncates it.
    pub(super) fn spawn(part: PathBuf, start: u64, fsync: bool) -> Self {
        // Eight batches of about 256 KiB in flight: one cross-thread wake-up per batch
        // instead of one per frame keeps the transfer close to a plain copy.
        let (tx, rx) = mpsc::channel::<Vec<Bytes>>(8);
        let writer = tokio::task::spawn_blocking(move || write_part(&part, start, fsync, rx));
        Self { tx, writer }
    }

    /// Hands a batch to the writer; `false` when the writer has stopped (it failed, and
    /// [`Sink::finish`] says why).
    pub(super) async fn send(&self, batch: Vec<Bytes>) -> bool {
        self.tx.send(batch).await.is_ok()
    }

    /// Waits for everything to be written (and synced).
    pub(super) async fn finish(self) -> Result<Written> {
        drop(self.tx);
        self.writer.await.map_err(join_error)?
    }
}

fn write_part(
    part: &Path,
    start: u64,
    fsync: bool,
    mut rx: mpsc::Receiver<Vec<Bytes>>,
) -> Result<Written> {
    let mut hasher = sha2::Sha256::new();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true);
    if start > 0 {
        opts.read(true);
    } else {
        opts.truncate(true);
    }
    let mut file = opts.open(part).ctx("open", part)?;
    let mut written = 0u64;
    if start > 0 {
        written = hash_prefix(&mut file, start, &mut hasher).ctx("read", part)?;
        // Anything past the resumed offset is dropped; appending starts right here.
        file.set_len(written).ctx("truncate", part)?;
        file.seek(SeekFrom::Start(written)).ctx("seek", part)?;
    }
    // Chunks are written as they come (hyper hands over large frames); nothing is held back
    // in a user-space buffer, so a killed process loses at most one batch.
    let mut flushed = written;
    while let Some(batch) = rx.blocking_recv() {
        for chunk in batch {
            hasher.update(&chunk);
            file.write_all(&chunk).ctx("write", part)?;
            written += chunk.len() as u64;
        }
        if fsync && written - flushed >= WRITEBACK_STEP {
            start_writeback(&file, flushed, written - flushed);
            flushed = written;
        }
    }
    if fsync {
        file.sync_all().ctx("sync", part)?;
    }
    Ok(Written {
        sha256: Digest256::from_hasher(hasher).into(),
        len: written,
    })
}

/// Feeds up to `limit` bytes from the start of `reader` to `hasher`; returns how many.
fn hash_prefix(
    reader: &mut impl Read,
    limit: u64,
    hasher: &mut sha2::Sha256,
) -> std::io::Result<u64> {
    let mut buf = vec![0u8; READ_BLOCK];
    let mut done = 0u64;
    while done < limit {
        let want = usize::try_from((limit - done).min(READ_BLOCK as u64)).unwrap_or(READ_BLOCK);
        let n = reader.read(&mut buf[..want])?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        done += n as u64;
    }
    Ok(done)
}

/// SHA-256 (lower-case hex) and size of a file, computed off the async runtime.
pub async fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut f = std::fs::File::open(&path).ctx("open", &path)?;
        let mut h = sha2::Sha256::new();
        let n = hash_prefix(&mut f, u64::MAX, &mut h).ctx("read", &path)?;
        Ok((Digest256::from_hasher(h).into(), n))
    })
    .await
    .map_err(join_error)?
}

/// The first (up to) four bytes of a file.
pub(super) fn file_head(path: &Path) -> Result<Vec<u8>> {
    let f = std::fs::File::open(path).ctx("open", path)?;
    let mut head = Vec::with_capacity(4);
    f.take(4).read_to_end(&mut head).ctx("read", path)?;
    Ok(head)
}

/// Copies `src` into `part` while hashing; returns what was written.
pub(super) fn copy_hashing(
    src: &Path,
    part: &Path,
    mut on_progress: impl FnMut(u64, Option<u64>),
) -> Result<Written> {
    let mut input = std::fs::File::open(src).ctx("open", src)?;
    let total = input.metadata().ok().map(|m| m.len());
    let mut out = std::fs::File::create(part).ctx("create", part)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; READ_BLOCK];
    let mut done = 0u64;
    loop {
        let n = input.read(&mut buf).ctx("read", src)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        out.write_all(&buf[..n]).ctx("write", part)?;
        done += n as u64;
        on_progress(done, total);
    }
    out.sync_all().ctx("sync", part)?;
    Ok(Written {
        sha256: Digest256::from_hasher(h).into(),
        len: done,
    })
}

/// Asks the kernel to start writing a range of `file` to disk without waiting for it, so
/// the disk works while the transfer goes on and the final `fsync` before the atomic
/// rename finds little left to flush. Advisory: durability still comes from that `fsync`.
#[cfg(target_os = "linux")]
fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: a valid open fd and a byte range; the call only schedules writeback and
    // touches none of our memory. Its result is advisory and ignored on purpose.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &std::fs::File, _offset: u64, _len: u64) {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn resuming_hashes_the_kept_prefix_and_appends() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("f.part");
        let whole: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        // A part longer than what is resumed: the tail past the offset is dropped.
        let mut on_disk = whole[..2_500_000].to_vec();
        on_disk.extend_from_slice(&[0xff; 1000]);
        std::fs::write(&part, &on_disk).unwrap();
        let sink = Sink::spawn(part.clone(), 2_500_000, false);
        assert!(
            sink.send(vec![Bytes::copy_from_slice(&whole[2_500_000..])])
                .await
        );
        let w = sink.finish().await.unwrap();
        assert_eq!(w.len, whole.len() as u64);
        assert_eq!(w.sha256, hex::encode(sha2::Sha256::digest(&whole)));
        assert_eq!(std::fs::read(&part).unwrap(), whole);
        assert_eq!(sha256_file(&part).await.unwrap(), (w.sha256, w.len));
    }
}
