//! The model store: pull GGUF models from URLs or Hugging Face into a content-addressed
//! cache, verified by SHA-256, and list, remove, verify and inspect them.
//!
//! Models from Hugging Face live in the hub cache that llama.cpp (`-hf`) and
//! `huggingface_hub` share (see [`resolve_hub_cache`] and the `hub` module): a file already
//! there is used without asking the hub, and what lmcpp pulls there is found by them. A
//! model is every part of a split GGUF plus, unless [`PullOptions::no_mmproj`], the
//! repository's multimodal projector. URLs (and hub files without an LFS digest or a
//! commit) use lmcpp's own area. Every pull leaves a readable ref in lmcpp's area, so
//! `list`, `remove` and `verify` see both.
//!
//! Layout under `<cache root>/models`:
//!
//! ```text
//! blobs/<sha256>                 the files, named by content; published only once verified
//! refs/<source key>.json         what each pulled reference resolved to (readable JSON)
//! by-name/<source key>/<file>    a symlink to the blob, carrying the original file name
//! downloads/<source key>.gguf    in-flight downloads whose digest is not known up front
//! locks/<source key>.lock        one lock per reference (threads and processes)
//! locks/blob-<sha256>.lock       one lock per blob: publishing, removing and verifying it
//! ```
//!
//! A pull takes the reference's lock, re-checks the refs (another task or process probably
//! just pulled the same model), and otherwise downloads through the crate's one
//! [`Downloader`](crate::download::Downloader) (`.part` file, `Range` resume vouched for by
//! the digest or the ETag, SHA-256 while streaming, GGUF magic, retries honouring
//! `Retry-After`, atomic rename).
//!
//! Lock order: a reference's lock before a blob's; several blobs' locks in digest order. A
//! blob is moved into place and its ref written under the blob's lock (for a known digest
//! the lock is taken before the download starts), and removal decides "no ref uses it any
//! more" and deletes it under the same lock, so a removal never deletes a blob that a
//! concurrent pull is publishing.
//!
//! The files: `store` (the handle, its layout and locks), `options`, `refs` (the stored
//! references), `pull` (local files, URLs, and what a ref gives to load), `pull_hf` (Hugging
//! Face repositories and the hub cache), `manage` (list, resolve, inspect, remove),
//! `verify`; and below them `source` (what a reference is), `hf`, `hub`, `pick`,
//! `error`.

pub(crate) mod error;
mod hf;
mod hub;
mod manage;
mod options;
mod pick;
mod pull;
mod pull_hf;
mod refs;
mod source;
mod store;
mod verify;

pub use crate::demo::{demo_model_path, ensure_demo_model};
pub use error::Error;
pub use hf::{DEFAULT_HF_ENDPOINT, HfToken, default_token_file, resolve_endpoint};
pub use hub::resolve_hub_cache;
pub use manage::{CachedModel, RemovedModel, inspect};
pub use options::{ModelStoreOptions, PullOptions};
pub use pick::{MMPROJ_PREFERENCE, QUANT_PREFERENCE};
pub use pull::PulledModel;
pub use refs::{RefFile, StoredRef};
pub use source::{DEFAULT_REVISION, HfSelector, HfSource, ModelSource};
pub use store::ModelStore;
pub use verify::{VerifyReport, VerifyStatus};
