//! Tar and gzip-compressed tar: the stream metered, each entry claimed and written by the
//! [`Extractor`], kinds that carry nothing needed (devices, fifos) skipped.

use std::io::Read;

use super::extractor::Extractor;
use super::meter::Metered;
use crate::error::Result;

impl Extractor<'_> {
    /// Extracts every entry of a tar stream.
    pub(super) fn unpack_tar(&mut self, reader: impl Read) -> Result<()> {
        use ::tar::EntryType as T;
        let meter = self.meter.clone();
        let mut ar = ::tar::Archive::new(Metered {
            inner: reader,
            meter: meter.clone(),
        });
        let mut entries = ar.entries().map_err(|e| self.read_error(e))?;
        loop {
            // The tar reader buffers long names and pax extensions whole; the window caps
            // what it may read between two entries (our own reads drain each entry's data).
            meter.window.set(Some(meter.used.get()));
            let next = entries.next();
            meter.window.set(None);
            let Some(entry) = next else { break };
            let mut entry = entry.map_err(|e| self.read_error(e))?;
            self.count_entries(1)?;
            let kind = entry.header().entry_type();
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let skip = !matches!(
                kind,
                T::Regular | T::Continuous | T::GNUSparse | T::Directory | T::Symlink | T::Link
            );
            // Devices, fifos, global headers and unknown kinds carry nothing we need.
            if !skip {
                let path = entry.path().map_err(|e| self.corrupt(e.to_string()))?;
                let Some(rel) = self.claim(&name, &path)? else {
                    drain(&mut entry).map_err(|e| self.read_error(e))?;
                    continue;
                };
                match kind {
                    T::Directory => self.dir(&name, &rel)?,
                    T::Symlink | T::Link => {
                        let raw = entry
                            .link_name_bytes()
                            .ok_or_else(|| self.refuse(&name, "is a link without a target"))?;
                        let target_name = String::from_utf8_lossy(&raw).into_owned();
                        let target = entry
                            .link_name()
                            .map_err(|e| self.corrupt(e.to_string()))?
                            .ok_or_else(|| self.refuse(&name, "is a link without a target"))?
                            .into_owned();
                        if kind == T::Symlink {
                            self.symlink(&name, &rel, &target)?;
                        } else {
                            self.hard_link(&name, &rel, &target_name, &target)?;
                        }
                    }
                    _ => {
                        let mode = entry.header().mode().unwrap_or(0o644);
                        let mtime = entry.header().mtime().ok();
                        let out = self.file(&name, &rel, mode, &mut entry, false)?;
                        if let Some(t) = mtime {
                            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(t);
                            let _ = out.set_modified(t);
                        }
                    }
                }
            }
            drain(&mut entry).map_err(|e| self.read_error(e))?;
        }
        Ok(())
    }
}

/// Reads the rest of an entry's data.
fn drain(r: &mut impl Read) -> std::io::Result<u64> {
    std::io::copy(r, &mut std::io::sink())
}
