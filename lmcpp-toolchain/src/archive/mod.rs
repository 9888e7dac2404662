//! Extraction of `.tar.gz`, `.tar` and `.zip` archives that cannot write, link or chmod
//! outside the destination.
//!
//! The archive is unpacked into `<dest>.extracting/x` next to the destination; when it has a
//! single top-level folder that folder is stripped, and the result is moved onto `dest` with
//! one rename. On any error the scratch dir is removed, so nothing half-done is left.
//!
//! The rules, each enforced against what is on disk rather than against an entry's text:
//! - Entry names are normalised (`./a//b/./c` is `a/b/c`); absolute names, `..` and a second
//!   entry for a path already extracted (in any spelling) are refused.
//! - Nothing is written through a link: every parent directory is checked with
//!   `symlink_metadata` (and created with `mkdir`, which never follows a link); files are
//!   created with `create_new` and `O_NOFOLLOW`; an existing path is never replaced.
//! - A symlink's target is resolved against the tree as extracted so far, following the links
//!   already there, so a chain of individually harmless links (`l1 -> .`, `l2 -> l1/..`) is
//!   caught. `..` may only step out of a directory that exists, so a link that is harmless
//!   now cannot turn into an escape when a later entry creates the missing part. After the
//!   last entry every link is resolved once more against the final root (the stripped top
//!   folder, if any).
//! - A hard link must name a regular file extracted earlier from the same archive.
//! - Modes come from the archive without set-uid, set-gid and sticky bits, and are applied to
//!   the handle of the file just created, never to a path.
//! - Total unpacked bytes, the number of entries and the compression ratio are capped
//!   ([`ExtractOptions`]); the tar reader's own header buffers are capped too.
//!
//! Prebuilt binaries use [`LinkPolicy::LibraryAliasesOnly`], which admits only shared-library
//! version aliases (`libggml.so -> libggml.so.0`) and refuses every other link.

//!
//! The files: `options` (what is asked), `extract` (scratch, strip, publish), `extractor`
//! (the writes below the root), `tar` and `zip` (the two readers), `guards` (names, link
//! targets, library aliases), `meter` (the byte caps), `error`.

pub(crate) mod error;
mod extract;
mod extractor;
mod guards;
mod meter;
mod options;
mod tar;
mod zip;

pub use error::Error;
pub use extract::{extract, extract_blocking, extract_with, extract_with_blocking};
pub use guards::verify_links;
pub use options::{
    ArchiveKind, DEFAULT_MAX_ENTRIES, DEFAULT_MAX_RATIO, DEFAULT_MAX_TOTAL_BYTES, ExtractOptions,
    LinkPolicy, RATIO_GRACE_BYTES,
};
