//! The [`Toolchain`] handle: what it works with (cache layout, downloader, lock timeout,
//! failure limit, machine probes, build driver) and how it is set up.

use std::path::Path;
use std::time::Duration;

use crate::cache::CacheLayout;
use crate::download::{DownloadOptions, Downloader};
use crate::error::Result;
use crate::toolchain::backend::Probes;

/// Consecutive failures after which an entry is purged.
pub(crate) const DEFAULT_FAIL_LIMIT: u32 = 3;

/// Default wait for an entry held by another thread or process (a cold build takes minutes).
pub(crate) const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(3600);

/// How a source tree is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BuildDriver {
    /// The cmake command line, with output streamed to `build.log` and progress events.
    #[default]
    CmakeCli,
    /// The `cmake` crate, for use inside a downstream crate's `build.rs` (see
    /// [`crate::toolchain::build_script`]); output goes to cargo's build-script log.
    CmakeCrate,
}

/// The entry point: installs, builds and manages cached `llama-server` toolchains.
#[derive(Debug, Clone)]
pub struct Toolchain {
    pub(crate) layout: CacheLayout,
    pub(crate) downloader: Downloader,
    pub(crate) lock_timeout: Duration,
    pub(crate) fail_limit: u32,
    /// Machine probes, taken once per `Toolchain` on first need (or fixed by tests).
    probes: std::sync::OnceLock<Probes>,
    pub(super) driver: BuildDriver,
}

impl Toolchain {
    /// A toolchain manager on the cache root resolved from `cache_root` (see
    /// [`crate::resolve_cache_root`]) with default download options.
    pub fn new(cache_root: Option<&Path>) -> Result<Self> {
        Ok(Self {
            layout: CacheLayout::resolve(cache_root)?,
            downloader: Downloader::new(DownloadOptions::default())?,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            fail_limit: DEFAULT_FAIL_LIMIT,
            probes: std::sync::OnceLock::new(),
            driver: BuildDriver::CmakeCli,
        })
    }

    /// Chooses how source trees are built.
    pub fn with_build_driver(mut self, driver: BuildDriver) -> Self {
        self.driver = driver;
        self
    }

    /// Uses this downloader (e.g. with other timeouts or retries).
    pub fn with_downloader(mut self, downloader: Downloader) -> Self {
        self.downloader = downloader;
        self
    }

    /// How long to wait for an entry held by someone else.
    pub fn with_lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// Consecutive failures after which an entry is purged (at least 1).
    pub fn with_fail_limit(mut self, limit: u32) -> Self {
        self.fail_limit = limit.max(1);
        self
    }

    /// Uses fixed machine probes instead of probing (for tests and planning).
    pub fn with_probes(mut self, probes: Probes) -> Self {
        self.probes = std::sync::OnceLock::from(probes);
        self
    }

    /// The cache layout.
    pub fn layout(&self) -> &CacheLayout {
        &self.layout
    }

    /// The downloader (shared with the model store).
    pub fn downloader(&self) -> &Downloader {
        &self.downloader
    }

    /// The machine probes, taken on first need.
    pub(super) fn probes(&self) -> &Probes {
        self.probes.get_or_init(Probes::probe)
    }
}
