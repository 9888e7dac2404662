//! The byte meter: unpacked bytes counted against the size and ratio cap, and the bytes the
//! tar reader consumes for one entry's headers against their own cap.

use std::cell::Cell;
use std::io::Read;
use std::rc::Rc;

/// Largest tar header block sequence (long names, pax extensions) read for one entry.
pub(super) const MAX_HEADER_BYTES: u64 = 1 << 20;

/// Why the byte meter stopped the input.
#[derive(Debug, Clone, Copy)]
pub(super) enum Trip {
    Bytes,
    Header,
}

/// Counts unpacked bytes against the size and ratio limit, and (while a window is open) the
/// bytes the tar reader consumes for one entry's headers.
#[derive(Debug)]
pub(super) struct Meter {
    pub(super) used: Cell<u64>,
    pub(super) limit: u64,
    pub(super) window: Cell<Option<u64>>,
    pub(super) tripped: Cell<Option<Trip>>,
}

impl Meter {
    /// Counts `n` more bytes; `Err` (remembered in `tripped`) once a cap is passed.
    pub(super) fn charge(&self, n: u64) -> std::result::Result<(), Trip> {
        let used = self.used.get().saturating_add(n);
        self.used.set(used);
        let trip = if used > self.limit {
            Some(Trip::Bytes)
        } else if self
            .window
            .get()
            .is_some_and(|start| used - start > MAX_HEADER_BYTES)
        {
            Some(Trip::Header)
        } else {
            None
        };
        match trip {
            Some(t) => {
                self.tripped.set(Some(t));
                Err(t)
            }
            None => Ok(()),
        }
    }
}

/// The decompressed tar stream, metered.
pub(super) struct Metered<R> {
    pub(super) inner: R,
    pub(super) meter: Rc<Meter>,
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.meter
            .charge(n as u64)
            .map_err(|_| std::io::Error::other("extraction limit reached"))?;
        Ok(n)
    }
}
