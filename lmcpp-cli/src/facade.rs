//! The high-level API: toolchain + model + supervised server + typed client in one call.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lmcpp_server::{Client, LaunchOptions, Server, TransportChoice};
use lmcpp_toolchain::demo::DemoOptions;
use lmcpp_toolchain::download::DownloadOptions;
use lmcpp_toolchain::models::{ModelSource, ModelStore, ModelStoreOptions, PullOptions};
use lmcpp_toolchain::{
    Backend, CacheLayout, Installed, ProgressEvent, SharedProgress, Toolchain, ToolchainRequest,
    no_progress,
};
use lmcpp_types::args::ServerArgs;
use lmcpp_types::{Class, Classify};

use crate::model_ref::{DEFAULT_MODEL, DEMO_MODEL, ModelRef};

/// How long `run` waits to connect to the hub for the default model before falling back.
const DEFAULT_MODEL_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of the high-level API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Installing or building llama-server, or fetching a model, failed.
    #[error(transparent)]
    Toolchain(#[from] lmcpp_toolchain::Error),
    /// Starting or talking to the server failed.
    #[error(transparent)]
    Server(#[from] lmcpp_server::Error),
    /// The demo model needs the llama.cpp source tree for its vocabulary.
    #[error(
        "the demo model needs a llama.cpp source tree for its vocabulary, but {what} has none; \
         build a toolchain with `lmcpp toolchain build` or pass a model path"
    )]
    NoSourceTree {
        /// The toolchain entry (or explicit binary) without a source tree.
        what: String,
    },
    /// The blocking API could not start its runtime.
    #[error("cannot start the blocking API's runtime: {0}")]
    Runtime(String),
}

impl Classify for Error {
    /// A wrapped crate's error is classified as its type decides.
    fn class(&self) -> Class {
        match self {
            Self::Toolchain(e) => e.class(),
            Self::Server(e) => e.class(),
            Self::NoSourceTree { .. } | Self::Runtime(_) => Class::Failure,
        }
    }
}

/// How a model reference was resolved.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ModelResolution {
    /// The GGUF file to load (the first part of a split model; the others are next to it).
    pub path: PathBuf,
    /// A one-line notice for the user when a fallback was taken.
    pub notice: Option<String>,
    /// The name the server is started under (`--alias`, the model id clients see and
    /// select): the reference as given (`owner/repo:Q4_K_M`), the file stem of a path or
    /// URL, or [`LmcppBuilder::alias`].
    pub alias: String,
    /// The multimodal projector pulled with the model, passed as `--mmproj` (see
    /// [`LmcppBuilder::no_mmproj`]).
    pub mmproj: Option<PathBuf>,
    /// The speculative draft model's file, passed as the draft model (see
    /// [`LmcppBuilder::draft`]).
    pub draft: Option<PathBuf>,
}

impl ModelResolution {
    fn local(path: PathBuf, alias: Option<&str>) -> Self {
        let alias = alias.map_or_else(|| ModelSource::Local(path.clone()).alias(), str::to_owned);
        Self {
            path,
            notice: None,
            alias,
            mmproj: None,
            draft: None,
        }
    }

    fn pulled(pulled: lmcpp_toolchain::models::PulledModel) -> Self {
        Self {
            path: pulled.path,
            notice: None,
            alias: pulled.alias,
            mmproj: pulled.mmproj,
            draft: None,
        }
    }
}

/// A model text that did not parse, kept (as its message) until `resolve` reports it.
#[derive(Debug, Clone)]
struct InvalidModel(String);

/// Entry point of the high-level API.
#[derive(Debug)]
pub struct Lmcpp;

impl Lmcpp {
    /// A builder with defaults: the pinned llama.cpp, backend `auto`, the demo model
    /// unless [`LmcppBuilder::model`] is called, a Unix socket.
    pub fn builder() -> LmcppBuilder {
        LmcppBuilder::default()
    }
}

/// Configures and starts a supervised server. See [`Lmcpp::builder`].
#[derive(Clone)]
pub struct LmcppBuilder {
    home: Option<PathBuf>,
    /// The model as parsed when it was given (an invalid one fails `resolve`, before
    /// anything is fetched).
    model: Result<ModelRef, InvalidModel>,
    request: ToolchainRequest,
    transport: TransportChoice,
    args: ServerArgs,
    runtime_dir: Option<PathBuf>,
    ready_timeout: Duration,
    progress: SharedProgress,
    detached: bool,
    llama_server: Option<PathBuf>,
    pull: PullOptions,
    draft: Option<ModelRef>,
}

impl std::fmt::Debug for LmcppBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LmcppBuilder")
            .field("home", &self.home)
            .field("model", &self.model)
            .field("request", &self.request)
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

impl LmcppBuilder {
    /// Everything that decides which server this builder starts, as text (secrets only
    /// as a hash, progress not at all): equal fingerprints start the same server. A
    /// proxy's reload keeps a model's running server while its fingerprint is unchanged.
    pub(crate) fn fingerprint(&self) -> String {
        use std::hash::{Hash, Hasher};
        let mut secrets = std::collections::hash_map::DefaultHasher::new();
        self.args.secret_env().hash(&mut secrets);
        format!(
            "{:?} {:?} {:?} {:?} {:?} {:?} {:?} {} {:?} {:?} {:?} secrets {:016x}",
            self.home,
            self.model,
            self.request,
            self.transport,
            self.args,
            self.runtime_dir,
            self.ready_timeout,
            self.detached,
            self.llama_server,
            self.pull,
            self.draft,
            secrets.finish()
        )
    }
}

impl Default for LmcppBuilder {
    fn default() -> Self {
        Self {
            home: None,
            model: Ok(ModelRef::Demo),
            request: ToolchainRequest::default(),
            transport: TransportChoice::default(),
            args: ServerArgs::default(),
            runtime_dir: None,
            ready_timeout: Duration::from_secs(120),
            progress: no_progress(),
            detached: false,
            llama_server: None,
            pull: PullOptions::default(),
            draft: None,
        }
    }
}

impl LmcppBuilder {
    /// The model: a path, a URL, Hugging Face `owner/repo[:file|:quant][@revision]`, or
    /// [`DEMO_MODEL`], parsed here ([`ModelRef::parse`]); an invalid one is the error of
    /// [`LmcppBuilder::resolve`], before anything is fetched.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        let text = model.into();
        self.model = ModelRef::parse(&text).map_err(|e| InvalidModel(e.to_string()));
        self
    }

    /// The model, parsed already.
    pub fn model_ref(mut self, model: ModelRef) -> Self {
        self.model = Ok(model);
        self
    }

    /// Like [`LmcppBuilder::model`], where `None` means [`DEFAULT_MODEL`] when the network
    /// allows it and the demo model (with a notice in [`ModelResolution::notice`]) when not.
    pub fn model_or_default(self, model: Option<String>) -> Self {
        match model {
            Some(text) => self.model(text),
            None => self.model_ref(ModelRef::Default),
        }
    }

    /// The name to serve the model under (`--alias`) instead of the reference as given.
    pub fn alias(mut self, alias: impl Into<String>) -> Self {
        self.pull.alias = Some(alias.into());
        self
    }

    /// Whether to leave out the multimodal projector (`mmproj*.gguf`) that a Hugging Face
    /// model's repository ships; by default it is pulled and passed as `--mmproj`.
    pub fn no_mmproj(mut self, no_mmproj: bool) -> Self {
        self.pull.no_mmproj = no_mmproj;
        self
    }

    /// A small model of the same vocabulary for speculative decoding: resolved like the
    /// model (pulled if need be) and passed as llama-server's draft model.
    pub fn draft(mut self, draft: ModelRef) -> Self {
        self.draft = Some(draft);
        self
    }

    /// The backend to install or build for (default `auto`).
    pub fn backend(mut self, backend: Backend) -> Self {
        self.request.backend = backend;
        self
    }

    /// The whole toolchain request (version, mode, sources, CMake args, features).
    pub fn toolchain_request(mut self, request: ToolchainRequest) -> Self {
        self.request = request;
        self
    }

    /// Cache root for toolchains and models (default `$LMCPP_HOME`, else the data dir).
    pub fn home(mut self, home: impl Into<PathBuf>) -> Self {
        self.home = Some(home.into());
        self
    }

    /// Runtime dir for state files, sockets and logs.
    pub fn runtime_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.runtime_dir = Some(dir.into());
        self
    }

    /// Unix socket (default) or HTTP on 127.0.0.1.
    pub fn transport(mut self, transport: TransportChoice) -> Self {
        self.transport = transport;
        self
    }

    /// Extra server arguments (model, host and port are set by lmcpp).
    pub fn args(mut self, args: ServerArgs) -> Self {
        self.args = args;
        self
    }

    /// How long to wait for the server to load the model (default 120 s).
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Where progress goes (default: nowhere).
    pub fn progress(mut self, progress: SharedProgress) -> Self {
        self.progress = progress;
        self
    }

    /// Start the server so that it outlives this process (call [`Server::detach`] on it).
    pub fn detached(mut self, detached: bool) -> Self {
        self.detached = detached;
        self
    }

    /// Use this `llama-server` binary instead of one from the toolchain cache. The demo
    /// model then needs a toolchain with a source tree, so pass a model path too.
    pub fn llama_server(mut self, binary: impl Into<PathBuf>) -> Self {
        self.llama_server = Some(binary.into());
        self
    }

    /// Ensures the toolchain and the model, starts the server and waits until it is ready.
    pub async fn start(self) -> Result<Running, Error> {
        self.resolve().await?.start().await
    }

    /// Ensures the toolchain and the model without starting anything, so a caller can
    /// look at them first (e.g. to reuse a server that already runs them).
    pub async fn resolve(self) -> Result<Resolved, Error> {
        let model = self.model.clone().map_err(|InvalidModel(message)| {
            Error::Toolchain(lmcpp_toolchain::Error::InvalidRequest { reason: message })
        })?;
        let toolchain = Toolchain::new(self.home.as_deref())?;
        let (binary, installed) = match &self.llama_server {
            Some(binary) => (binary.clone(), None),
            None => {
                let installed = toolchain.ensure(&self.request, &self.progress).await?;
                (installed.llama_server.clone(), Some(installed))
            }
        };
        let store = ModelStore::with_progress(
            ModelStoreOptions {
                cache_root: self.home.clone(),
                ..ModelStoreOptions::from_env()
            },
            self.progress.clone(),
        )?;
        let model = resolve_model(
            &model,
            &store,
            toolchain.layout(),
            installed.as_ref(),
            &self.progress,
            &self.pull,
        )
        .await?;
        let mut model = model;
        if let Some(draft) = &self.draft {
            let pull = PullOptions {
                no_mmproj: true,
                ..PullOptions::default()
            };
            let resolved = resolve_model(
                draft,
                &store,
                toolchain.layout(),
                installed.as_ref(),
                &self.progress,
                &pull,
            )
            .await?;
            model.draft = Some(resolved.path);
        }
        let mut launch = LaunchOptions::new(&binary, &model.path);
        launch.args = with_model_args(self.args, &model);
        launch.transport = self.transport;
        launch.runtime_dir = self.runtime_dir;
        launch.ready_timeout = self.ready_timeout;
        launch.detached = self.detached;
        // Render the arguments for the binary at hand, not for the pinned llama.cpp: the
        // toolchain captured its --help; a binary given by path is asked once per version
        // of the file (the answer is kept in the cache under its identity).
        launch.flags = match &installed {
            Some(i) => i.help.as_ref().and_then(|h| {
                let help = std::fs::read_to_string(h).ok()?;
                let version = i
                    .version
                    .as_ref()
                    .map_or_else(|| self.request.version.label(), |v| v.label());
                Some(lmcpp_types::args::help::BinaryFlags::from_help(
                    &help, version,
                ))
            }),
            None => probe_flags(toolchain.layout(), &binary).await,
        };
        Ok(Resolved {
            toolchain: installed,
            model,
            launch,
            progress: self.progress,
        })
    }
}

/// Adds `--alias` and `--mmproj` for `model`, unless the arguments already set them (as
/// fields or among the pass-through arguments, where llama-server would see them twice).
fn with_model_args(mut args: ServerArgs, model: &ModelResolution) -> ServerArgs {
    let given: Vec<&str> = lmcpp_types::args::passthrough::read(&args.extra)
        .iter()
        .filter_map(|f| f.info.map(|i| i.field))
        .collect();
    let passed = |fields: &[&str]| given.iter().any(|f| fields.contains(f));
    if args.alias.is_empty() && !passed(&["alias"]) {
        args.alias = vec![model.alias.clone()];
    }
    if args.mmproj.is_none()
        && args.mmproj_url.is_none()
        && !passed(&["mmproj", "mmproj_url", "mmproj_auto"])
    {
        args.mmproj = model.mmproj.clone();
    }
    if args.spec_draft_model.is_none() && !passed(&["spec_draft_model"]) {
        args.spec_draft_model = model.draft.clone();
    }
    args
}

/// Asks a binary given by path for its flags (`--help`) and version, bounded to a few
/// seconds each; `None` when it does not answer like llama-server.
///
/// The answers are kept under `<home>/probes/`, keyed by the binary's identity (canonical
/// path, size, modification time, inode, device), so a later start of the same file
/// spawns nothing; a rebuilt or replaced binary has another identity and is asked again.
/// They are kept only when the identity did not change while it was asked, and a cache
/// that cannot be written costs a probe, never the start.
async fn probe_flags(
    layout: &CacheLayout,
    binary: &Path,
) -> Option<lmcpp_types::args::help::BinaryFlags> {
    use lmcpp_toolchain::{FileIdentity, ProbeKind, run_binary};
    use lmcpp_types::args::help::BinaryFlags;
    let before = FileIdentity::of(binary).ok();
    if let Some(id) = &before
        && let Some(help) = layout.read_probe(id, ProbeKind::BinaryHelp)
        && let Some(version) = layout.read_probe(id, ProbeKind::BinaryVersion)
    {
        let flags = BinaryFlags::from_help(&help, version);
        if !flags.is_empty() {
            return Some(flags);
        }
    }
    let help = run_binary(binary, "--help").await.ok()?;
    let version = run_binary(binary, "--version")
        .await
        .ok()
        .and_then(|v| lmcpp_toolchain::BinaryVersion::parse(&v))
        .map_or_else(|| binary.display().to_string(), |v| v.label());
    let flags = BinaryFlags::from_help(&help, version.clone());
    if flags.is_empty() {
        return None;
    }
    if let Some(id) = before
        && FileIdentity::of(binary).is_ok_and(|after| after == id)
    {
        // Version first: a reader needs both, so a help record alone is never used.
        let _ = layout
            .write_probe(&id, ProbeKind::BinaryVersion, &version)
            .and_then(|()| layout.write_probe(&id, ProbeKind::BinaryHelp, &help));
    }
    Some(flags)
}

/// A toolchain and a model, ready to be started. See [`LmcppBuilder::resolve`].
#[non_exhaustive]
pub struct Resolved {
    /// The toolchain (`None` when a binary was given explicitly).
    pub toolchain: Option<Installed>,
    /// The model.
    pub model: ModelResolution,
    launch: LaunchOptions,
    progress: SharedProgress,
}

impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolved")
            .field("toolchain", &self.toolchain)
            .field("model", &self.model)
            .field("launch", &self.launch)
            .finish_non_exhaustive()
    }
}

impl Resolved {
    /// The `llama-server` binary that [`Resolved::start`] will run.
    pub fn binary(&self) -> &Path {
        &self.launch.binary
    }

    /// Starts the server and waits until it is ready.
    pub async fn start(self) -> Result<Running, Error> {
        self.progress.event(ProgressEvent::Stage {
            name: format!("starting llama-server with {}", self.model.path.display()),
        });
        let server = Server::launch(self.launch).await?;
        self.progress.event(ProgressEvent::Done);
        Ok(Running {
            server,
            toolchain: self.toolchain,
            model: self.model,
        })
    }
}

/// A running, supervised server with everything that went into it.
#[derive(Debug)]
#[non_exhaustive]
pub struct Running {
    /// The supervised process; stopped when dropped unless detached.
    pub server: Server,
    /// The toolchain it runs from (`None` when a binary was given explicitly).
    pub toolchain: Option<Installed>,
    /// The model it serves.
    pub model: ModelResolution,
}

impl Running {
    /// A typed client for the server.
    pub fn client(&self) -> Client {
        self.server.client()
    }
}

/// Writes (once) and returns the default demo model of the cache at `layout`, taking its
/// vocabulary from the toolchain's llama.cpp source tree.
pub async fn ensure_demo_model(
    layout: &CacheLayout,
    installed: Option<&Installed>,
) -> Result<PathBuf, Error> {
    demo_model(layout, installed, DemoOptions::default().seed, None).await
}

/// The demo model with weights from `seed`, written to `out` (default: the model cache,
/// where an existing file of that seed is reused as is). The vocabulary comes from the
/// toolchain's llama.cpp source tree.
pub async fn demo_model(
    layout: &CacheLayout,
    installed: Option<&Installed>,
    seed: u64,
    out: Option<&Path>,
) -> Result<PathBuf, Error> {
    let source = installed
        .and_then(|i| i.source_dir.clone())
        .ok_or_else(|| Error::NoSourceTree {
            what: installed.map_or_else(
                || "an explicitly given llama-server".to_owned(),
                |i| format!("toolchain {}", i.fingerprint),
            ),
        })?;
    Ok(lmcpp_toolchain::models::ensure_demo_model(layout, &source, seed, out).await?)
}

/// Resolves a model reference to a local GGUF file and the name to serve it under.
///
/// `None` means the default: [`DEFAULT_MODEL`] when the network allows (tried with a
/// 10 s connect timeout and one retry), else the demo model with a notice. [`DEMO_MODEL`]
/// is the generated demo model; anything else goes through the model store (local path,
/// URL or Hugging Face, verified and cached). `pull` carries the alias override and
/// whether to leave out a multimodal projector.
pub async fn resolve_model(
    model: &ModelRef,
    store: &ModelStore,
    layout: &CacheLayout,
    installed: Option<&Installed>,
    progress: &SharedProgress,
    pull: &PullOptions,
) -> Result<ModelResolution, Error> {
    let alias = pull.alias.as_deref();
    match model {
        ModelRef::Demo => Ok(ModelResolution {
            alias: alias.unwrap_or(DEMO_MODEL).to_owned(),
            ..ModelResolution::local(ensure_demo_model(layout, installed).await?, None)
        }),
        ModelRef::Source(ModelSource::Local(path)) if path.is_file() => {
            Ok(ModelResolution::local(path.clone(), alias))
        }
        ModelRef::Source(source) => {
            let pulled = store.pull(source, pull).await?;
            Ok(ModelResolution::pulled(pulled))
        }
        ModelRef::Default => {
            progress.event(ProgressEvent::Stage {
                name: format!("fetching the default model {DEFAULT_MODEL}"),
            });
            // There is a fallback, so an unreachable hub should cost seconds, not the
            // minutes a store with the default retry budget would spend on a dead network.
            let quick = ModelStore::with_progress(
                ModelStoreOptions {
                    cache_root: Some(layout.root().to_path_buf()),
                    download: DownloadOptions {
                        connect_timeout: DEFAULT_MODEL_CONNECT_TIMEOUT,
                        retries: 1,
                        ..DownloadOptions::default()
                    },
                    ..ModelStoreOptions::from_env()
                },
                progress.clone(),
            )?;
            match quick.pull_str(DEFAULT_MODEL, pull).await {
                Ok(pulled) => Ok(ModelResolution::pulled(pulled)),
                Err(err) => {
                    let reason = err.to_string();
                    let reason = reason.lines().next().unwrap_or_default().to_owned();
                    Ok(ModelResolution {
                        notice: Some(format!(
                            "could not fetch {DEFAULT_MODEL} ({reason}); using the generated demo model, whose answers are random text"
                        )),
                        alias: alias.unwrap_or(DEMO_MODEL).to_owned(),
                        ..ModelResolution::local(ensure_demo_model(layout, installed).await?, None)
                    })
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The facade's own variants, and the wrapped errors classified as their crates say.
    #[test]
    fn every_variant_is_classified_as_the_table_says() {
        let table = vec![
            (
                Error::Toolchain(lmcpp_toolchain::Error::InvalidRequest { reason: "x".into() }),
                Class::UserError,
            ),
            (
                Error::Server(lmcpp_server::Error::UnixSocketsUnavailable),
                Class::UserError,
            ),
            (Error::NoSourceTree { what: "x".into() }, Class::Failure),
            (Error::Runtime("x".into()), Class::Failure),
        ];
        let ordinal = |e: &Error| match e {
            Error::Toolchain(_) => 0,
            Error::Server(_) => 1,
            Error::NoSourceTree { .. } => 2,
            Error::Runtime(_) => 3,
        };
        lmcpp_test_support::check_class_table(&table, ordinal, 4);
    }

    /// A llama-server stand-in that appends a line to `count` on each `--help`: a shell
    /// script, on Windows a batch file (`name.cmd`, which `Command` runs through `cmd`).
    fn counting_binary(dir: &Path, name: &str, count: &Path, flag: &str) -> PathBuf {
        let (bin, script) = if cfg!(windows) {
            let script = format!(
                "@echo off\r\nif \"%1\"==\"--help\" (\r\n  echo x>> \"{}\"\r\n  \
                 echo -c,    {flag} N    size of the prompt context\r\n  exit /b 0\r\n)\r\n\
                 echo version: 4321 (abcdef12) 1>&2\r\n",
                count.display()
            );
            (dir.join(format!("{name}.cmd")), script)
        } else {
            let script = format!(
                "#!/bin/sh\nif [ \"$1\" = --help ]; then echo x >> '{}'; \
                 echo '-c,    {flag} N    size of the prompt context'; exit 0; fi\n\
                 echo 'version: 4321 (abcdef12)' >&2\n",
                count.display()
            );
            (dir.join(name), script)
        };
        std::fs::write(&bin, script).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        bin
    }

    fn probes(count: &Path) -> usize {
        std::fs::read_to_string(count).map_or(0, |s| s.lines().count())
    }

    #[tokio::test]
    async fn a_binary_given_by_path_is_asked_for_its_help_once_per_version_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let layout = CacheLayout::new(dir.path().join("home"));
        let count = dir.path().join("count");
        let bin = counting_binary(dir.path(), "llama-server", &count, "--ctx-size");

        let first = probe_flags(&layout, &bin).await.unwrap();
        assert_eq!(probes(&count), 1);
        assert_eq!(first.version(), "b4321 (abcdef12)");
        let second = probe_flags(&layout, &bin).await.unwrap();
        assert_eq!(
            probes(&count),
            1,
            "the second start did not spawn the probe"
        );
        assert_eq!(second, first);

        // A replaced binary (another inode, its own flags) is asked again.
        let staged = counting_binary(dir.path(), "staged", &count, "--ctx-len");
        std::fs::rename(&staged, &bin).unwrap();
        let third = probe_flags(&layout, &bin).await.unwrap();
        assert_eq!(probes(&count), 2);
        assert_ne!(third, first);
        probe_flags(&layout, &bin).await.unwrap();
        assert_eq!(probes(&count), 2);
    }
}
