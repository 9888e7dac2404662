//! The `lmcpp` command line: argument definitions, and the one conversion of options into a
//! library request (`ToolchainOpts::request`), kept next to the options it reads.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use lmcpp::toolchain::{Backend, Features, Mode, Source, Target, Toolchain, ToolchainRequest};

use crate::exit::BadInput;

/// lmcpp: a supervised local llama-server and a typed client, with nothing to set up by hand.
#[derive(Debug, Parser)]
#[command(name = "lmcpp", version, about, long_about = None)]
pub(crate) struct Cli {
    /// Cache root for toolchains and models (default: $LMCPP_HOME, else the platform data dir).
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) home: Option<PathBuf>,
    /// Runtime directory for server state files, sockets and logs, which go into lmcpp's
    /// private subdirectory lmcpp-<uid> there (lmcpp-<user> on Windows); the directory
    /// itself is never changed (default: $XDG_RUNTIME_DIR, else /tmp; on Windows
    /// %LOCALAPPDATA%).
    #[arg(long, global = true, value_name = "DIR", env = "LMCPP_RUNTIME_DIR")]
    pub(crate) runtime_dir: Option<PathBuf>,
    /// Use this llama-server binary instead of one from the toolchain cache.
    #[arg(long, global = true, value_name = "PATH", env = "LMCPP_SERVER_BIN")]
    pub(crate) llama_server: Option<PathBuf>,
    /// Print machine-readable JSON where a command lists or reports.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// No progress output.
    #[arg(long, short, global = true)]
    pub(crate) quiet: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Install, build and manage llama-server toolchains.
    #[command(subcommand)]
    Toolchain(ToolchainCmd),
    /// Fetch, list, verify and inspect GGUF models.
    #[command(subcommand)]
    Model(ModelCmd),
    /// Start a llama-server with a model, or one endpoint for several models (foreground, or
    /// --detach).
    Serve(ServeArgs),
    /// Run a ggml rpc-server worker that lends this machine to a llama-server elsewhere
    /// (unauthenticated: trusted networks only).
    RpcWorker(RpcWorkerArgs),
    /// List servers, rpc workers and multi-model proxies (with their models) started by lmcpp.
    Ps,
    /// Stop a server started by lmcpp (never any other process).
    Stop(StopArgs),
    /// Show a server's log.
    Logs(LogsArgs),
    /// Complete a prompt.
    Complete(CompleteArgs),
    /// Chat interactively (streamed; `/exit` or end of input to leave).
    Chat(ChatArgs),
    /// Compute embeddings for texts.
    Embed(EmbedArgs),
    /// Tokenize text.
    Tokenize(TokenizeArgs),
    /// Turn token ids back into text.
    Detokenize(DetokenizeArgs),
    /// Show the server's properties.
    Props(TargetArgs),
    /// Check the server's health.
    Health(TargetArgs),
    /// Show the server's Prometheus metrics.
    Metrics(TargetArgs),
    /// The one-shot main job: ensure toolchain and model, start a server, stream the answer.
    Run(RunArgs),
    /// Print JSON Schemas of the request and response types.
    Schema(SchemaArgs),
    /// Remove abandoned downloads, unused sources, free lock files and old logs of stopped
    /// servers (nothing locked or in use).
    Gc(GcArgs),
}

/// Which llama-server build to use.
#[derive(Debug, Clone, Args)]
pub(crate) struct ToolchainOpts {
    /// llama.cpp version: a release tag (b11312), a commit, pypi:<llama-cpp-python version>
    /// or latest (default: the version this release is tested against, b11312).
    #[arg(
        long = "llama-version",
        value_name = "VERSION",
        env = "LMCPP_LLAMA_VERSION"
    )]
    pub(crate) version: Option<String>,
    /// Backend.
    #[arg(long, default_value = "auto", value_parser = backend_parser())]
    pub(crate) backend: Backend,
    /// Install prebuilt only, build from source only, or either.
    #[arg(long, value_enum, default_value_t = ModeArg::BuildOrInstall)]
    pub(crate) mode: ModeArg,
    /// Where the source comes from: a directory, an archive path, or a URL
    /// (default: GitHub, then the PyPI sdist).
    #[arg(long, value_name = "DIR|ARCHIVE|URL")]
    pub(crate) source: Option<String>,
    /// Extra CMake argument (repeatable), e.g. --cmake-arg=-DGGML_NATIVE=OFF.
    #[arg(long = "cmake-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub(crate) cmake_args: Vec<String>,
    /// Do not build rpc-server (the distributed backend) alongside llama-server.
    #[arg(long)]
    pub(crate) no_rpc: bool,
}

impl ToolchainOpts {
    /// The request these options make (`latest` is resolved through the release listing
    /// of the toolchain cache at `home`).
    pub(crate) async fn request(&self, home: Option<&Path>) -> Result<ToolchainRequest> {
        let mut req = ToolchainRequest {
            backend: self.backend,
            mode: self.mode.into(),
            cmake_args: self.cmake_args.clone(),
            features: Features { rpc: !self.no_rpc },
            ..ToolchainRequest::default()
        };
        if let Some(v) = &self.version {
            req.version = if v.trim() == "latest" {
                Toolchain::new(home)
                    .context("opening the toolchain cache")?
                    .latest_version(&req)
                    .await?
            } else {
                lmcpp::toolchain::versions::parse(v).map_err(|e| BadInput(e.to_string()))?
            };
        }
        if let Some(src) = &self.source {
            let path = PathBuf::from(src);
            let source = if src.starts_with("http://") || src.starts_with("https://") {
                Source::Url {
                    url: src.clone(),
                    sha256: None,
                }
            } else if path.is_dir() {
                Source::LocalDir(path)
            } else if path.is_file() {
                Source::LocalArchive { path, sha256: None }
            } else {
                return Err(BadInput(format!(
                    "--source {src} is neither a directory, an archive file, nor an http(s) URL"
                ))
                .into());
            };
            req.sources = vec![source];
        }
        Ok(req)
    }
}

/// The options of the `toolchain` commands: which build, and for which machine.
#[derive(Debug, Clone, Args)]
pub(crate) struct ToolchainTargetOpts {
    #[command(flatten)]
    pub(crate) toolchain: ToolchainOpts,
    /// Build for another machine, as a Rust target triple: x86_64-pc-windows-gnu cross-builds
    /// llama-server.exe with mingw-w64 on Linux (default: this machine).
    #[arg(long, value_name = "TRIPLE")]
    pub(crate) target: Option<Target>,
}

impl ToolchainTargetOpts {
    /// The request these options make (see [`ToolchainOpts::request`]).
    pub(crate) async fn request(&self, home: Option<&Path>) -> Result<ToolchainRequest> {
        let mut req = self.toolchain.request(home).await?;
        req.target = self.target.clone();
        Ok(req)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ModeArg {
    InstallOnly,
    BuildOnly,
    BuildOrInstall,
}

impl From<ModeArg> for Mode {
    fn from(arg: ModeArg) -> Self {
        match arg {
            ModeArg::InstallOnly => Mode::InstallOnly,
            ModeArg::BuildOnly => Mode::BuildOnly,
            ModeArg::BuildOrInstall => Mode::BuildOrInstall,
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum ToolchainCmd {
    /// Ensure a llama-server is installed (prebuilt or built, per --mode).
    Install(ToolchainTargetOpts),
    /// Build llama-server from source (same as install --mode build-only).
    Build(ToolchainTargetOpts),
    /// List cached toolchains.
    List,
    /// Show the state of the toolchain a request maps to.
    Status(ToolchainTargetOpts),
    /// Remove the toolchain a request maps to (only that one).
    Remove(ToolchainTargetOpts),
    /// Remove failed and partial toolchain entries.
    Prune,
    /// Print the path of the llama-server binary (cache only; never builds).
    Path(ToolchainTargetOpts),
}

#[derive(Debug, Subcommand)]
pub(crate) enum ModelCmd {
    /// Fetch a model into the cache and verify it.
    Pull(PullArgs),
    /// List cached models.
    List,
    /// Remove a cached model: one source, or a sha256 (or a unique prefix of at least 12
    /// hex digits, as `lmcpp model list` shows) with every source that names it.
    Rm {
        /// Model source, or sha256 (prefix) as shown by `lmcpp model list`.
        model: String,
    },
    /// Re-hash cached models and report any that do not match (corrupt blobs are deleted).
    Verify {
        /// Only this model: source, or sha256 (prefix); unknown names are an error
        /// (default: all).
        model: Option<String>,
    },
    /// Show what a GGUF file is: architecture, sizes, tokenizer, chat template, and the
    /// memory llama-server needs for it (weights + KV cache + compute).
    Inspect {
        /// A path, or a model source that is already cached.
        model: String,
        /// Context for the memory estimate, as llama-server's --ctx-size (default: the
        /// model's trained context, which is what llama-server uses when none is given).
        #[arg(long, short = 'c', value_name = "N")]
        ctx_size: Option<u64>,
        /// Slots for the memory estimate, as llama-server's --parallel (default: the
        /// server's automatic 4 slots sharing one cache).
        #[arg(long, value_name = "N")]
        parallel: Option<u64>,
    },
    /// Write the generated tiny demo model (random weights, real vocabulary).
    Demo(DemoArgs),
}

#[derive(Debug, Args)]
pub(crate) struct PullArgs {
    /// `path`, `https://…/x.gguf`, or Hugging Face `owner/repo[:file|:quant][@revision]`.
    pub(crate) model: String,
    /// Expected SHA-256 of the file.
    #[arg(long)]
    pub(crate) sha256: Option<String>,
    /// Never touch the network; fail if the model is not cached.
    #[arg(long)]
    pub(crate) cache_only: bool,
    /// Leave out the multimodal projector (`mmproj*.gguf`) of a Hugging Face repository.
    #[arg(long)]
    pub(crate) no_mmproj: bool,
}

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Where to write the model (default: the model cache).
    #[arg(long, value_name = "PATH")]
    pub(crate) out: Option<PathBuf>,
    /// Seed for the random weights (default: the seed of the demo model `--model demo` uses).
    #[arg(long)]
    pub(crate) seed: Option<u64>,
    #[command(flatten)]
    pub(crate) toolchain: ToolchainOpts,
}

/// How to reach a server: an existing one, or one started on the fly for a model.
#[derive(Debug, Clone, Args)]
pub(crate) struct TargetArgs {
    /// Id of a running server or proxy (see `lmcpp ps`); default: the only one running.
    #[arg(long, value_name = "ID")]
    pub(crate) server: Option<String>,
    /// With a proxy: the alias of the model to ask (a proxy serving it is found without
    /// --server). With --url: the model named in each request, as sent (a proxy routes by
    /// it, a llama-server of one model ignores it). Otherwise: start a server for this model
    /// just for this command.
    #[arg(long, value_name = "ALIAS|MODEL")]
    pub(crate) model: Option<String>,
    /// Talk to any llama-server or lmcpp proxy at this URL (http://host:port) or socket
    /// path; with a proxy of several models, name one with --model.
    #[arg(long, value_name = "URL|SOCKET", conflicts_with = "server")]
    pub(crate) url: Option<String>,
    /// API key for the server (read from the environment only).
    #[arg(long, env = "LLAMA_API_KEY", hide_env_values = true, hide = true)]
    pub(crate) api_key: Option<String>,
    /// Give up on a request after this many seconds, like curl's --max-time (default:
    /// 600 for requests that generate, less for the quick ones).
    #[arg(long, value_name = "SECONDS", value_parser = seconds)]
    pub(crate) timeout: Option<std::time::Duration>,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Model: path, URL, or Hugging Face `owner/repo[:file|:quant]`; `demo` for the demo model.
    /// Repeat it to serve several models behind one endpoint, each as ALIAS=MODEL (or the
    /// model's own name), started at its first request.
    #[arg(long, short, required_unless_present = "config")]
    pub(crate) model: Vec<String>,
    /// Serve the models of this TOML file behind one endpoint (every key is in
    /// docs/serving.md, "The configuration file").
    #[arg(long, value_name = "FILE", conflicts_with = "model")]
    pub(crate) config: Option<PathBuf>,
    /// With --config: apply the file again whenever it changes, as SIGHUP does (new models
    /// appear, removed ones stop once their requests finish, changed ones restart at their
    /// next request; a file with an error is refused and the running models stay).
    #[arg(long, requires = "config")]
    pub(crate) watch: bool,
    /// With several models: what the running models' memory estimates may add up to, e.g.
    /// 12GiB or 75% (default: 75% of RAM); idle models are stopped to make room.
    #[arg(long, value_name = "SIZE")]
    pub(crate) memory_budget: Option<String>,
    /// With several models: how long an idle model keeps running, e.g. 5m (the default),
    /// 1h, or 0 for never stopping.
    #[arg(long, value_name = "DURATION")]
    pub(crate) keep_alive: Option<String>,
    /// The registry id of a proxy (set by --detach for the process it starts).
    #[arg(long, value_name = "ID", hide = true)]
    pub(crate) proxy_id: Option<String>,
    /// Listen on HTTP (127.0.0.1) instead of a Unix socket.
    #[arg(long)]
    pub(crate) http: bool,
    /// Port for --http (default: a free one).
    #[arg(long, requires = "http")]
    pub(crate) port: Option<u16>,
    /// Serve --http on this address instead of 127.0.0.1 (e.g. 0.0.0.0 or a LAN address).
    /// Anyone who can reach it can use the server: set LLAMA_API_KEY.
    #[arg(long, value_name = "ADDR", requires = "http")]
    pub(crate) bind: Option<std::net::IpAddr>,
    /// API key the server requires and lmcpp's clients send (read from the environment only).
    #[arg(long, env = "LLAMA_API_KEY", hide_env_values = true, hide = true)]
    pub(crate) api_key: Option<String>,
    /// Keep running after this command exits.
    #[arg(long)]
    pub(crate) detach: bool,
    /// The model id the server reports and clients select it by (default: the model as
    /// given, e.g. `owner/repo:Q4_K_M`, or a path's file stem).
    #[arg(long, value_name = "NAME")]
    pub(crate) alias: Option<String>,
    /// Do not pull and pass the multimodal projector (`mmproj*.gguf`) of a Hugging Face model.
    #[arg(long)]
    pub(crate) no_mmproj: bool,
    /// A small model of the same vocabulary to draft tokens with (speculative decoding),
    /// named as --model is; with several models, `draft` per model in the config.
    #[arg(long, value_name = "MODEL", value_parser = model_ref)]
    pub(crate) draft: Option<Box<lmcpp::ModelRef>>,
    /// Turn on llama-server's web UI (off unless asked); its URL is printed.
    #[arg(long, requires = "http")]
    pub(crate) webui: bool,
    /// rpc-server workers to offload to, as host:port,host:port.
    #[arg(long, value_name = "HOST:PORT,...", value_delimiter = ',', value_parser = rpc_address)]
    pub(crate) rpc: Vec<String>,
    /// Seconds to wait for the server to become ready (with several models: how long a
    /// request waits for its model to load, a 503 then while the start goes on; a model
    /// server may take up to `start_timeout` of the config, 1 hour by default).
    #[arg(long, default_value_t = 120)]
    pub(crate) ready_timeout: u64,
    #[command(flatten)]
    pub(crate) toolchain: ToolchainOpts,
    /// Extra llama-server flags, after `--` (not those lmcpp sets itself: --host, --port,
    /// -m/--model and the other model sources, --api-key-file, --log-file).
    #[arg(last = true, value_name = "LLAMA_SERVER_ARGS")]
    pub(crate) extra: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct RpcWorkerArgs {
    /// IPv4 address and port to listen on; the port defaults to 50052, and 0 picks a free
    /// one. Anything but 127.0.0.1 exposes an unauthenticated service to that network.
    #[arg(long, value_name = "ADDR[:PORT]", default_value = "127.0.0.1:50052")]
    pub(crate) bind: String,
    /// Keep running after this command exits.
    #[arg(long)]
    pub(crate) detach: bool,
    /// Threads for the CPU device (rpc-server's default is 1).
    #[arg(long, short)]
    pub(crate) threads: Option<u32>,
    /// Devices to serve, e.g. CUDA0,CUDA1 (default: every accelerator, else the CPU).
    #[arg(long, value_name = "DEV,...", value_delimiter = ',')]
    pub(crate) device: Vec<String>,
    /// Cache tensors sent by clients in this directory (rpc-server -c).
    #[arg(long, value_name = "DIR")]
    pub(crate) cache_dir: Option<PathBuf>,
    /// Log every RPC command the worker receives (verbose).
    #[arg(long)]
    pub(crate) debug_log: bool,
    /// Use this rpc-server binary instead of the toolchain's.
    #[arg(long, value_name = "PATH", env = "LMCPP_RPC_SERVER_BIN")]
    pub(crate) rpc_server: Option<PathBuf>,
    /// Seconds to wait for the worker to accept connections.
    #[arg(long, default_value_t = 30)]
    pub(crate) ready_timeout: u64,
    #[command(flatten)]
    pub(crate) toolchain: ToolchainOpts,
}

#[derive(Debug, Args)]
pub(crate) struct StopArgs {
    /// Server id (see `lmcpp ps`).
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub(crate) id: Option<String>,
    /// Stop every server this tool started (never other processes).
    #[arg(long)]
    pub(crate) all: bool,
}

#[derive(Debug, Args)]
pub(crate) struct LogsArgs {
    /// Server id (see `lmcpp ps`).
    pub(crate) id: String,
    /// Keep printing new lines as they are written.
    #[arg(long, short)]
    pub(crate) follow: bool,
    /// How many lines from the end.
    #[arg(long, short = 'n', default_value_t = 50)]
    pub(crate) lines: usize,
}

#[derive(Debug, Args)]
pub(crate) struct GenOpts {
    /// Tokens to generate (-1: until the model stops).
    #[arg(
        long,
        short = 'n',
        default_value_t = 128,
        allow_negative_numbers = true
    )]
    pub(crate) n_predict: i32,
    /// Sampling temperature.
    #[arg(long)]
    pub(crate) temperature: Option<f32>,
    /// Sampling seed.
    #[arg(long)]
    pub(crate) seed: Option<u32>,
}

#[derive(Debug, Args)]
pub(crate) struct CompleteArgs {
    /// The prompt.
    pub(crate) prompt: String,
    /// Print tokens as they are generated.
    #[arg(long)]
    pub(crate) stream: bool,
    #[command(flatten)]
    pub(crate) gen_opts: GenOpts,
    #[command(flatten)]
    pub(crate) target: TargetArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ChatArgs {
    /// A system prompt.
    #[arg(long)]
    pub(crate) system: Option<String>,
    #[command(flatten)]
    pub(crate) gen_opts: GenOpts,
    #[command(flatten)]
    pub(crate) target: TargetArgs,
}

#[derive(Debug, Args)]
pub(crate) struct EmbedArgs {
    /// Texts to embed.
    #[arg(required = true)]
    pub(crate) texts: Vec<String>,
    #[command(flatten)]
    pub(crate) target: TargetArgs,
}

#[derive(Debug, Args)]
pub(crate) struct TokenizeArgs {
    /// Text to tokenize.
    pub(crate) text: String,
    /// Also show each token's text piece.
    #[arg(long)]
    pub(crate) pieces: bool,
    #[command(flatten)]
    pub(crate) target: TargetArgs,
}

#[derive(Debug, Args)]
pub(crate) struct DetokenizeArgs {
    /// Token ids.
    #[arg(required = true)]
    pub(crate) tokens: Vec<i32>,
    #[command(flatten)]
    pub(crate) target: TargetArgs,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The prompt.
    pub(crate) prompt: String,
    /// Model (default: a small instruct model from Hugging Face; offline, the demo model).
    #[arg(long, short)]
    pub(crate) model: Option<String>,
    /// API key the server requires and lmcpp's client sends (read from the environment only).
    #[arg(long, env = "LLAMA_API_KEY", hide_env_values = true, hide = true)]
    pub(crate) api_key: Option<String>,
    #[command(flatten)]
    pub(crate) gen_opts: GenOpts,
    #[command(flatten)]
    pub(crate) toolchain: ToolchainOpts,
}

#[derive(Debug, Args)]
pub(crate) struct GcArgs {
    /// List what would be removed without removing anything.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Only remove files not written to for this many hours (free lock files go at any age).
    #[arg(long, value_name = "HOURS", default_value_t = 24)]
    pub(crate) older_than: u64,
}

#[derive(Debug, Args)]
pub(crate) struct SchemaArgs {
    /// Type name (default: list the names).
    pub(crate) name: Option<String>,
}

/// A model reference, parsed where it is given (an error is exit 2 before anything runs).
fn model_ref(text: &str) -> Result<Box<lmcpp::ModelRef>, String> {
    text.parse()
        .map(Box::new)
        .map_err(|e: lmcpp::toolchain::Error| e.to_string())
}

/// A positive number of seconds, fractions allowed (`0.5`, `30`).
fn seconds(text: &str) -> Result<std::time::Duration, String> {
    match text.parse::<f64>() {
        Ok(s) if s > 0.0 && s.is_finite() && s <= 1e9 => Ok(std::time::Duration::from_secs_f64(s)),
        _ => Err(format!(
            "`{text}` is not a number of seconds above 0 (write e.g. 30 or 0.5)"
        )),
    }
}

/// One `--rpc` entry, checked as llama-server takes it (an error is exit 2, before anything
/// is resolved or started).
fn rpc_address(addr: &str) -> Result<String, String> {
    lmcpp::server::parse_rpc_address(addr)
        .map(|()| addr.to_owned())
        .map_err(|e| e.to_string())
}

/// `--backend`: the toolchain's own names (and its parser), listed in `--help`.
fn backend_parser() -> impl clap::builder::TypedValueParser<Value = Backend> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(Backend::ALL.map(Backend::as_str))
        .try_map(|name| name.parse::<Backend>())
}
