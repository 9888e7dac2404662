//! Zip: the central directory checked for duplicate names, each entry claimed and written by
//! the [`Extractor`], symlink targets read within a cap.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::error::Error;
use super::extractor::Extractor;
use crate::error::{IoContext, Result};

/// Longest symlink target read from a zip entry.
const MAX_LINK_TARGET: u64 = 4096;

impl Extractor<'_> {
    /// Extracts every entry of the zip archive.
    pub(super) fn unpack_zip(&mut self) -> Result<()> {
        let f = File::open(self.archive).ctx("open", self.archive)?;
        let mut zip = ::zip::ZipArchive::new(std::io::BufReader::new(f))
            .map_err(|e| self.corrupt(e.to_string()))?;
        self.count_entries(zip.len() as u64)?;
        // The reader keeps one entry per exact name; a second one would go unseen.
        if zip.has_duplicate_names() {
            return Err(self.refuse(
                "(central directory)",
                "names one path twice in the same spelling",
            ));
        }
        for i in 0..zip.len() {
            let mut file = zip.by_index(i).map_err(|e| self.corrupt(e.to_string()))?;
            let name = file
                .name()
                .map_err(|e| Error::Read {
                    path: self.archive.to_path_buf(),
                    message: e.to_string(),
                })?
                .into_owned();
            let Some(rel) = self.claim(&name, Path::new(&name))? else {
                continue;
            };
            if file.is_symlink() {
                let mut target = Vec::new();
                (&mut file)
                    .take(MAX_LINK_TARGET + 1)
                    .read_to_end(&mut target)
                    .map_err(|e| self.read_error(e))?;
                if target.len() as u64 > MAX_LINK_TARGET {
                    return Err(
                        self.refuse(&name, "is a link with a target longer than 4096 bytes")
                    );
                }
                if let Err(t) = self.meter.charge(target.len() as u64) {
                    return Err(self.limit_error(t));
                }
                let target = String::from_utf8(target)
                    .map_err(|_| self.refuse(&name, "is a link whose target is not UTF-8"))?;
                self.symlink(&name, &rel, Path::new(&target))?;
            } else if file.is_dir() {
                self.dir(&name, &rel)?;
            } else {
                let mode = file.unix_mode().unwrap_or(0o644);
                self.file(&name, &rel, mode, &mut file, true)?;
            }
        }
        Ok(())
    }
}
