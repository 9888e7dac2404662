//! What every command may need (the global options), and the one way a command prints a
//! result: JSON with `--json`, text for people otherwise.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use lmcpp::Lmcpp;
use lmcpp::server::{Endpoint, Registry, default_runtime_dir};
use lmcpp::toolchain::models::{ModelStore, ModelStoreOptions};
use lmcpp::toolchain::{SharedProgress, Toolchain};
use lmcpp::types::args::ServerArgs;
use serde::Serialize;

/// What every command may need.
pub(crate) struct Ctx {
    pub(crate) home: Option<PathBuf>,
    pub(crate) llama_server: Option<PathBuf>,
    pub(crate) runtime_dir: Option<PathBuf>,
    pub(crate) json: bool,
    pub(crate) progress: SharedProgress,
}

impl Ctx {
    pub(crate) fn registry(&self) -> Registry {
        Registry::new(self.runtime_dir.clone().unwrap_or_else(default_runtime_dir))
    }

    pub(crate) fn toolchain(&self) -> Result<Toolchain> {
        Toolchain::new(self.home.as_deref()).context("opening the toolchain cache")
    }

    pub(crate) fn store(&self) -> Result<ModelStore> {
        ModelStore::with_progress(
            ModelStoreOptions {
                cache_root: self.home.clone(),
                ..ModelStoreOptions::from_env()
            },
            self.progress.clone(),
        )
        .context("opening the model cache")
    }

    /// A facade builder carrying the global options; `None` is the default model.
    pub(crate) fn builder(&self, model: Option<String>) -> lmcpp::LmcppBuilder {
        let mut builder = Lmcpp::builder()
            .model_or_default(model)
            .progress(self.progress.clone());
        if let Some(home) = &self.home {
            builder = builder.home(home);
        }
        if let Some(dir) = &self.runtime_dir {
            builder = builder.runtime_dir(dir);
        }
        if let Some(bin) = &self.llama_server {
            builder = builder.llama_server(bin);
        }
        builder
    }

    /// Prints `value` as pretty JSON on stdout.
    pub(crate) fn print_json<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        // Through a `Value`, so objects print with the key order every command always had.
        let value = serde_json::to_value(value)?;
        let mut out = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, &value)?;
        writeln!(out)?;
        Ok(())
    }

    /// The result of a command: `value` as JSON with `--json`, else what `human` prints.
    pub(crate) fn output<T: Serialize + ?Sized>(
        &self,
        value: &T,
        human: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        if self.json {
            self.print_json(value)
        } else {
            human()
        }
    }
}

/// Server arguments from the command line. `api_key` is the one key setting: the server
/// requires it and every lmcpp client of that server sends it.
pub(crate) fn server_args(
    extra: Vec<String>,
    rpc: Vec<String>,
    api_key: Option<String>,
) -> ServerArgs {
    ServerArgs {
        extra,
        rpc,
        api_key,
        ..ServerArgs::default()
    }
}

/// A client for `endpoint` that sends `api_key`, if any.
pub(crate) fn keyed_client(endpoint: Endpoint, api_key: Option<&str>) -> lmcpp::server::Client {
    let mut builder = lmcpp::server::Client::builder(endpoint);
    if let Some(key) = api_key {
        builder = builder.api_key(key);
    }
    builder.build()
}

/// A size for people: `512 B`, `1.5 KiB`, `3.2 GiB`.
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}
