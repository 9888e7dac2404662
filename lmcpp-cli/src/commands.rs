//! What each `lmcpp` command does.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use futures_util::StreamExt;
use lmcpp::Lmcpp;
use lmcpp::server::{
    Endpoint, Entry, HttpPort, ProcessKind, Registry, RpcWorker, RpcWorkerOptions, TransportChoice,
    default_runtime_dir,
};
use lmcpp::toolchain::models::{ModelSource, ModelStore, ModelStoreOptions, PullOptions};
use lmcpp::toolchain::{
    Backend, Features, Mode, SharedProgress, Source, Toolchain, ToolchainRequest,
};
use lmcpp::types::args::ServerArgs;
use lmcpp::types::common::Prompt;
use lmcpp::types::native::completion::CompletionRequest;
use lmcpp::types::native::embedding::EmbeddingRequest;
use lmcpp::types::native::tokenize::{DetokenizeRequest, TokenizeRequest};
use lmcpp::types::openai::chat::{ChatCompletionRequest, ChatMessage};
use serde_json::json;

use crate::BadInput;
use crate::cli::{
    BackendArg, ChatArgs, Cli, Command, CompleteArgs, GenOpts, ModeArg, ModelCmd, RpcWorkerArgs,
    RunArgs, ServeArgs, ToolchainCmd, ToolchainOpts,
};
use crate::render::Renderer;
use crate::shutdown::Shutdown;
use crate::target::{self, live_records, live_servers};

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

    fn toolchain(&self) -> Result<Toolchain> {
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

    pub(crate) fn print_json(&self, value: &serde_json::Value) -> Result<()> {
        let mut out = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, value)?;
        writeln!(out)?;
        Ok(())
    }
}

impl Ctx {
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
}

pub(crate) async fn dispatch(cli: Cli) -> Result<ExitCode> {
    let ctx = Ctx {
        home: cli.home,
        llama_server: cli.llama_server,
        runtime_dir: cli.runtime_dir,
        json: cli.json,
        progress: Renderer::shared(cli.quiet),
    };
    match cli.command {
        Command::Toolchain(cmd) => toolchain(&ctx, cmd).await,
        Command::Model(cmd) => model(&ctx, cmd).await,
        Command::Serve(args) => serve(&ctx, args).await,
        Command::RpcWorker(args) => rpc_worker(&ctx, args).await,
        Command::Ps => ps(&ctx),
        Command::Stop(args) => stop(&ctx, args.id, args.all).await,
        Command::Logs(args) => logs(&ctx, &args.id, args.lines, args.follow).await,
        Command::Complete(args) => complete(&ctx, args).await,
        Command::Chat(args) => chat(&ctx, args).await,
        Command::Embed(args) => {
            let t = target::resolve(&ctx, &args.target).await?;
            let resp = t
                .client
                .embedding(&EmbeddingRequest::new(Prompt::Many(
                    args.texts.into_iter().map(Prompt::Text).collect(),
                )))
                .await?;
            ctx.print_json(&serde_json::to_value(resp)?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Tokenize(args) => {
            let t = target::resolve(&ctx, &args.target).await?;
            let mut req = TokenizeRequest::new(args.text);
            req.with_pieces = Some(args.pieces);
            let resp = t.client.tokenize(&req).await?;
            if ctx.json || args.pieces {
                ctx.print_json(&serde_json::to_value(resp)?)?;
            } else {
                let ids: Vec<String> = resp.tokens.iter().map(|t| t.id().to_string()).collect();
                println!("{}", ids.join(" "));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Detokenize(args) => {
            let t = target::resolve(&ctx, &args.target).await?;
            let resp = t
                .client
                .detokenize(&DetokenizeRequest::new(args.tokens))
                .await?;
            if ctx.json {
                ctx.print_json(&serde_json::to_value(resp)?)?;
            } else {
                println!("{}", resp.content);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Props(t) => {
            let t = target::resolve(&ctx, &t).await?;
            ctx.print_json(&serde_json::to_value(t.client.props().await?)?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Health(t) => {
            let t = target::resolve(&ctx, &t).await?;
            let health = t.client.health().await?;
            if ctx.json {
                ctx.print_json(&serde_json::to_value(health)?)?;
            } else {
                println!("ok");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Metrics(t) => {
            let t = target::resolve(&ctx, &t).await?;
            if ctx.json {
                let metrics = t.client.metrics().await?;
                let samples: Vec<_> = metrics
                    .families
                    .iter()
                    .flat_map(|f| &f.samples)
                    .map(|s| json!({ "name": s.name, "labels": s.labels, "value": s.value }))
                    .collect();
                ctx.print_json(&json!(samples))?;
            } else {
                print!("{}", t.client.metrics_text().await?);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => run(&ctx, args).await,
        Command::Schema(args) => schema(&ctx, args.name.as_deref()),
        Command::Gc(args) => crate::gc::gc(&ctx, args).await,
    }
}

/// Turns the CLI's toolchain options into a request (`latest` is resolved through the
/// release listing).
pub(crate) async fn request(ctx: &Ctx, opts: &ToolchainOpts) -> Result<ToolchainRequest> {
    let mut req = ToolchainRequest {
        backend: match opts.backend {
            BackendArg::Auto => Backend::Auto,
            BackendArg::Cpu => Backend::Cpu,
            BackendArg::Cuda => Backend::Cuda,
            BackendArg::Metal => Backend::Metal,
            BackendArg::Vulkan => Backend::Vulkan,
        },
        mode: match opts.mode {
            ModeArg::InstallOnly => Mode::InstallOnly,
            ModeArg::BuildOnly => Mode::BuildOnly,
            ModeArg::BuildOrInstall => Mode::BuildOrInstall,
        },
        cmake_args: opts.cmake_args.clone(),
        features: Features { rpc: !opts.no_rpc },
        ..ToolchainRequest::default()
    };
    if let Some(v) = &opts.version {
        req.version = if v.trim() == "latest" {
            ctx.toolchain()?.latest_version(&req).await?
        } else {
            lmcpp::toolchain::versions::parse(v).map_err(|e| BadInput(e.to_string()))?
        };
    }
    if let Some(src) = &opts.source {
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

async fn toolchain(ctx: &Ctx, cmd: ToolchainCmd) -> Result<ExitCode> {
    let tc = ctx.toolchain()?;
    match cmd {
        ToolchainCmd::Install(opts) => install(ctx, &tc, request(ctx, &opts).await?).await,
        ToolchainCmd::Build(opts) => {
            let mut req = request(ctx, &opts).await?;
            req.mode = Mode::BuildOnly;
            install(ctx, &tc, req).await
        }
        ToolchainCmd::List => {
            let entries = tc.list()?;
            if ctx.json {
                let v: Vec<_> = entries.iter().map(entry_json).collect();
                ctx.print_json(&json!(v))?;
            } else if entries.is_empty() {
                println!("no toolchains in {}", tc.layout().root().display());
            } else {
                println!(
                    "{:<18} {:<12} {:<20} {:<9} {:<8} {:<9} {:>9}  SOURCE",
                    "FINGERPRINT", "VERSION", "OBTAINED", "ORIGIN", "BACKEND", "STATUS", "SIZE"
                );
                for e in &entries {
                    println!(
                        "{:<18} {:<12} {:<20} {:<9} {:<8} {:<9} {:>9}  {}",
                        e.fingerprint,
                        e.version,
                        e.obtained.as_deref().unwrap_or("-"),
                        e.origin.map(|o| o.to_string()).unwrap_or_default(),
                        e.backend.map(|b| b.to_string()).unwrap_or_default(),
                        status_name(e),
                        human_size(e.size),
                        e.source.as_deref().unwrap_or("-")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ToolchainCmd::Status(opts) => {
            let st = tc.status(&request(ctx, &opts).await?).await?;
            if ctx.json {
                ctx.print_json(&json!({
                    "fingerprint": st.fingerprint,
                    "entry_dir": st.entry_dir,
                    "entry": st.entry.as_ref().map(entry_json),
                }))?;
            } else {
                println!("fingerprint {}", st.fingerprint);
                println!("entry       {}", st.entry_dir.display());
                match &st.entry {
                    Some(e) => {
                        println!("status      {}", status_name(e));
                        if let Some(err) = &e.last_error {
                            println!("last error  {err}");
                        }
                    }
                    None => println!("status      not installed"),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ToolchainCmd::Remove(opts) => {
            let removed = tc
                .remove(&request(ctx, &opts).await?, &ctx.progress)
                .await?;
            if ctx.json {
                ctx.print_json(&json!({ "removed": removed }))?;
            } else {
                if removed {
                    println!("removed");
                } else {
                    println!("nothing to remove");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ToolchainCmd::Prune => {
            let removed = tc.prune(&ctx.progress).await?;
            if ctx.json {
                ctx.print_json(&json!({ "removed": removed }))?;
            } else {
                for p in &removed {
                    println!("removed {}", p.display());
                }
                println!("{} entries pruned", removed.len());
            }
            Ok(ExitCode::SUCCESS)
        }
        ToolchainCmd::Path(opts) => {
            let installed = tc.ensure_cached(&request(ctx, &opts).await?).await?;
            println!("{}", installed.llama_server.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn install(ctx: &Ctx, tc: &Toolchain, req: ToolchainRequest) -> Result<ExitCode> {
    let installed = tc.ensure(&req, &ctx.progress).await?;
    if ctx.json {
        ctx.print_json(&json!({
            "llama_server": installed.llama_server,
            "rpc_server": installed.rpc_server,
            "entry_dir": installed.entry_dir,
            "fingerprint": installed.fingerprint,
            "backend": installed.backend.to_string(),
            "source": installed.source,
        }))?;
    } else {
        println!("{}", installed.llama_server.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn status_name(e: &lmcpp::toolchain::manage::EntryInfo) -> String {
    match (&e.status, e.usable) {
        (_, true) => "ready".into(),
        (Some(s), false) => format!("{s:?}").to_lowercase(),
        (None, false) => "partial".into(),
    }
}

fn entry_json(e: &lmcpp::toolchain::manage::EntryInfo) -> serde_json::Value {
    json!({
        "fingerprint": e.fingerprint,
        "dir": e.dir,
        "status": status_name(e),
        "usable": e.usable,
        "version": e.version,
        "obtained": e.obtained,
        "origin": e.origin.map(|o| o.to_string()),
        "backend": e.backend.map(|b| b.to_string()),
        "source": e.source,
        "size": e.size,
        "failures": e.failures,
        "last_error": e.last_error,
        "updated_unix": e.updated_unix,
    })
}

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

async fn model(ctx: &Ctx, cmd: ModelCmd) -> Result<ExitCode> {
    match cmd {
        ModelCmd::Pull(args) => {
            let store = ctx.store()?;
            let opts = PullOptions {
                sha256: args.sha256,
                cache_only: args.cache_only,
            };
            let pulled = store.pull_str(&args.model, &opts).await?;
            if ctx.json {
                ctx.print_json(&serde_json::to_value(&pulled)?)?;
            } else {
                println!("{}", pulled.path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        ModelCmd::List => {
            let models = ctx.store()?.list()?;
            if ctx.json {
                ctx.print_json(&serde_json::to_value(&models)?)?;
            } else if models.is_empty() {
                println!("no cached models");
            } else {
                println!("{:<16} {:>10}  SOURCE", "SHA256", "SIZE");
                for m in &models {
                    let r = &m.reference;
                    println!(
                        "{:<16} {:>10}  {}{}",
                        &r.sha256[..r.sha256.len().min(16)],
                        human_size(r.size),
                        r.source,
                        if m.present { "" } else { " (blob missing)" }
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ModelCmd::Rm { model } => crate::model::rm(ctx, &ctx.store()?, &model).await,
        ModelCmd::Verify { model } => {
            crate::model::verify(ctx, &ctx.store()?, model.as_deref()).await
        }
        ModelCmd::Inspect { model } => {
            let path = PathBuf::from(&model);
            let summary = if path.exists() {
                lmcpp::toolchain::models::inspect(&path).await?
            } else {
                let source = ModelSource::parse(&model)?;
                ctx.store()?.inspect_source(&source).await?
            };
            if ctx.json {
                ctx.print_json(&serde_json::to_value(&summary)?)?;
            } else {
                let v = serde_json::to_value(&summary)?;
                if let serde_json::Value::Object(map) = v {
                    for (k, v) in map {
                        let shown = match &v {
                            serde_json::Value::String(s) if s.len() > 120 => {
                                format!("{}… ({} chars)", &s[..s.floor_char_boundary(120)], s.len())
                            }
                            serde_json::Value::String(s) => s.clone(),
                            serde_json::Value::Null => continue,
                            other => other.to_string(),
                        };
                        println!("{k:<22} {shown}");
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ModelCmd::Demo(args) => {
            let tc = ctx.toolchain()?;
            let installed = tc
                .ensure(&request(ctx, &args.toolchain).await?, &ctx.progress)
                .await?;
            let path = lmcpp::demo_model(
                tc.layout(),
                Some(&installed),
                args.seed
                    .unwrap_or(lmcpp::toolchain::demo::DemoOptions::default().seed),
                args.out.as_deref(),
            )
            .await?;
            if ctx.json {
                ctx.print_json(&json!({ "path": path }))?;
            } else {
                println!("{}", path.display());
            }
            Ok(ExitCode::SUCCESS)
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

async fn serve(ctx: &Ctx, args: ServeArgs) -> Result<ExitCode> {
    let mut shutdown = Shutdown::listen()?;
    let port = args.port.map_or(HttpPort::Auto, HttpPort::Fixed);
    let transport = match (args.http, args.bind) {
        (false, _) => TransportChoice::Unix,
        (true, None) => TransportChoice::Http(port),
        (true, Some(bind)) => {
            if !bind.is_loopback() {
                eprintln!(
                    "lmcpp: warning: serving on {bind}: anyone who can reach it can use this server{}",
                    if args.api_key.is_none() {
                        "; set LLAMA_API_KEY to require a key"
                    } else {
                        ""
                    }
                );
            }
            TransportChoice::PublicHttp { bind, port }
        }
    };
    let start = ctx
        .builder(Some(args.model.clone()))
        .toolchain_request(request(ctx, &args.toolchain).await?)
        .transport(transport)
        .args(server_args(args.extra, args.rpc, args.api_key.clone()))
        .ready_timeout(Duration::from_secs(args.ready_timeout))
        .detached(args.detach)
        .start();
    // A signal during start-up ends it; dropping the start stops whatever it spawned.
    let running = tokio::select! {
        running = start => running?,
        signal = shutdown.recv() => {
            eprintln!("lmcpp: {signal} during start-up; nothing left running");
            return Ok(ExitCode::SUCCESS);
        }
    };
    if let Some(notice) = &running.model.notice {
        eprintln!("lmcpp: {notice}");
    }
    let record = running.server.record().clone();
    if ctx.json {
        ctx.print_json(&serde_json::to_value(&record)?)?;
    } else {
        println!("{} {}", record.id, record.endpoint);
    }
    if args.detach {
        let _ = running.server.detach();
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "lmcpp: serving {} on {} (log {}); Ctrl-C, SIGTERM or SIGHUP to stop",
        running.model.path.display(),
        record.endpoint,
        record.log_path.display()
    );
    let server = running.server;
    tokio::select! {
        signal = shutdown.recv() => {
            eprintln!("lmcpp: {signal}: stopping the server");
            server.stop().await?;
            Ok(ExitCode::SUCCESS)
        }
        status = server.exited() => {
            if let Some(lost) = server.rpc_worker_lost() {
                return Err(lost.into());
            }
            let tail = server.log_tail(20).unwrap_or_default();
            anyhow::bail!("llama-server exited ({status}); last log lines:\n{}", tail.join("\n"));
        }
    }
}

/// Parses `--bind ADDR[:PORT]` (IPv4 only, like rpc-server); port 0 means "pick one".
fn parse_bind(bind: &str) -> Result<(std::net::Ipv4Addr, Option<u16>)> {
    let bad = || {
        BadInput(format!(
            "--bind {bind}: write it as an IPv4 address with an optional port, \
             e.g. 127.0.0.1:50052 or 192.168.1.20 (rpc-server accepts no host names)"
        ))
    };
    let (host, port) = match bind.rsplit_once(':') {
        Some((host, port)) => (host, port.parse::<u16>().map_err(|_| bad())?),
        None => (bind, lmcpp::server::DEFAULT_RPC_PORT),
    };
    let host = host.parse().map_err(|_| bad())?;
    Ok((host, (port != 0).then_some(port)))
}

async fn rpc_worker(ctx: &Ctx, args: RpcWorkerArgs) -> Result<ExitCode> {
    let (host, port) = parse_bind(&args.bind)?;
    let binary = match args.rpc_server {
        Some(path) => path,
        None => {
            let installed = ctx
                .toolchain()?
                .ensure(&request(ctx, &args.toolchain).await?, &ctx.progress)
                .await?;
            installed.rpc_server.ok_or_else(|| {
                anyhow::anyhow!(
                    "toolchain {} has no rpc-server; build one without --no-rpc \
                     (`lmcpp toolchain build`) or pass --rpc-server PATH",
                    installed.fingerprint
                )
            })?
        }
    };
    let mut opts = RpcWorkerOptions::new(binary);
    opts.host = host;
    opts.port = port;
    opts.threads = args.threads;
    opts.devices = args.device;
    opts.cache_dir = args.cache_dir;
    opts.debug_log = args.debug_log;
    opts.runtime_dir = ctx.runtime_dir.clone();
    opts.ready_timeout = Duration::from_secs(args.ready_timeout);
    opts.detached = args.detach;
    if !host.is_loopback() {
        eprintln!(
            "lmcpp: warning: ggml RPC is unauthenticated; anyone who can reach {host} can use \
             this worker. Only run it on a trusted network."
        );
    }
    // From here on a signal stops the worker; before, its default action ends lmcpp.
    let mut shutdown = Shutdown::listen()?;
    let worker = RpcWorker::launch(opts).await?;
    let record = worker.record().clone();
    if ctx.json {
        ctx.print_json(&serde_json::to_value(&record)?)?;
    } else {
        println!("{} {}", record.id, worker.address());
    }
    if args.detach {
        let _ = worker.detach();
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "lmcpp: rpc worker listening on {} (log {}); point a server at it with \
         `lmcpp serve --rpc {}`; Ctrl-C to stop",
        worker.address(),
        record.log_path.display(),
        worker.address()
    );
    tokio::select! {
        _ = shutdown.recv() => {
            worker.stop().await?;
            Ok(ExitCode::SUCCESS)
        }
        status = worker.exited() => {
            let tail = worker.log_tail(20).unwrap_or_default();
            anyhow::bail!("rpc-server exited ({status}); last log lines:\n{}", tail.join("\n"));
        }
    }
}

fn ps(ctx: &Ctx) -> Result<ExitCode> {
    let entries = ctx.registry().list()?;
    let live: Vec<_> = entries
        .iter()
        .filter_map(|e| match e {
            Entry::Live(r) => Some(r),
            _ => None,
        })
        .collect();
    if ctx.json {
        ctx.print_json(&serde_json::to_value(&live)?)?;
    } else if live.is_empty() {
        println!("no servers running");
    } else {
        println!(
            "{:<13} {:<10} {:>8}  {:<40} MODEL",
            "ID", "KIND", "PID", "ENDPOINT"
        );
        for r in live {
            let (endpoint, model) = match (&r.kind, &r.endpoint) {
                (ProcessKind::RpcWorker, Endpoint::Http { host, port }) => {
                    (format!("rpc://{host}:{port}"), "-".to_owned())
                }
                _ => (r.endpoint.to_string(), r.model.display().to_string()),
            };
            println!(
                "{:<13} {:<10} {:>8}  {:<40} {}",
                r.id,
                r.kind.to_string(),
                r.pid,
                endpoint,
                model
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn stop(ctx: &Ctx, id: Option<String>, all: bool) -> Result<ExitCode> {
    let registry = ctx.registry();
    let ids: Vec<String> = if all {
        // Servers before workers: a server whose worker vanishes aborts noisily.
        let mut live = live_records(&registry)?;
        live.sort_by_key(|r| r.kind != ProcessKind::Server);
        live.into_iter().map(|r| r.id).collect()
    } else {
        id.into_iter().collect()
    };
    let mut stopped = Vec::new();
    for id in ids {
        let outcome = registry.stop(&id, Duration::from_secs(5)).await?;
        stopped.push(json!({ "id": id, "outcome": format!("{outcome:?}").to_lowercase() }));
        if !ctx.json {
            println!("stopped {id}");
        }
    }
    if ctx.json {
        ctx.print_json(&json!(stopped))?;
    } else if all && stopped.is_empty() {
        println!("no servers running");
    }
    Ok(ExitCode::SUCCESS)
}

async fn logs(ctx: &Ctx, id: &str, lines: usize, follow: bool) -> Result<ExitCode> {
    let registry = ctx.registry();
    for line in registry.log_tail(id, lines)? {
        println!("{line}");
    }
    if follow {
        use std::io::{Read, Seek, SeekFrom};
        let path = registry.log_path(id)?;
        let mut pos = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let mut fresh = Vec::new();
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
                () = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
            let Ok(mut file) = std::fs::File::open(&path) else {
                return Ok(ExitCode::SUCCESS);
            };
            if file.metadata()?.len() < pos {
                // The log was truncated or replaced: start over.
                pos = 0;
            }
            // Only what was appended since the last look is read.
            file.seek(SeekFrom::Start(pos))?;
            fresh.clear();
            pos += file.read_to_end(&mut fresh)? as u64;
            if !fresh.is_empty() {
                let mut out = std::io::stdout().lock();
                out.write_all(&fresh)?;
                out.flush()?;
            }
            if registry.get(id).is_err() {
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn completion_request(prompt: String, g: &GenOpts) -> CompletionRequest {
    let mut req = CompletionRequest::new(prompt).n_predict(g.n_predict);
    req.params.temperature = g.temperature.map(f64::from);
    req.params.seed = g.seed.map(i64::from);
    req
}

async fn complete(ctx: &Ctx, args: CompleteArgs) -> Result<ExitCode> {
    let t = target::resolve(ctx, &args.target).await?;
    let req = completion_request(args.prompt, &args.gen_opts);
    if args.stream && !ctx.json {
        let mut stream = t.client.completion_stream(&req.stream(true)).await?;
        let mut out = std::io::stdout().lock();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            out.write_all(chunk.content.as_bytes())?;
            out.flush()?;
        }
        writeln!(out)?;
    } else {
        let resp = t.client.completion(&req).await?;
        if ctx.json {
            ctx.print_json(&serde_json::to_value(resp)?)?;
        } else {
            println!("{}", resp.content);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn chat_request(history: &[ChatMessage], g: &GenOpts) -> ChatCompletionRequest {
    let mut req = ChatCompletionRequest::new(history.to_vec()).max_tokens(g.n_predict);
    req.params.temperature = g.temperature.map(f64::from);
    req.params.seed = g.seed.map(i64::from);
    req.params.stream = Some(true);
    req
}

/// Streams one chat answer to stdout and returns its text.
async fn stream_chat(
    client: &lmcpp::server::Client,
    req: &ChatCompletionRequest,
) -> Result<String> {
    let mut stream = client.chat_completions_stream(req).await?;
    let mut answer = String::new();
    let mut out = std::io::stdout().lock();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        for choice in &chunk.choices {
            if let Some(text) = &choice.delta.content {
                out.write_all(text.as_bytes())?;
                out.flush()?;
                answer.push_str(text);
            }
        }
    }
    writeln!(out)?;
    Ok(answer)
}

async fn chat(ctx: &Ctx, args: ChatArgs) -> Result<ExitCode> {
    let t = target::resolve(ctx, &args.target).await?;
    let mut history = Vec::new();
    if let Some(system) = args.system {
        history.push(ChatMessage::system(system));
    }
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        eprintln!("lmcpp: chatting; /exit or Ctrl-D to leave");
    }
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        if interactive {
            eprint!("> ");
            std::io::stderr().flush()?;
        }
        let Some(line) = lines.next() else { break };
        let line = line?;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line == "/exit" || line == "/quit" {
            break;
        }
        history.push(ChatMessage::user(line.to_owned()));
        let answer = stream_chat(&t.client, &chat_request(&history, &args.gen_opts)).await?;
        history.push(ChatMessage::assistant(answer));
    }
    Ok(ExitCode::SUCCESS)
}

async fn run(ctx: &Ctx, args: RunArgs) -> Result<ExitCode> {
    let resolved = ctx
        .builder(args.model)
        .args(server_args(Vec::new(), Vec::new(), args.api_key.clone()))
        .toolchain_request(request(ctx, &args.toolchain).await?)
        .resolve()
        .await?;
    if let Some(notice) = &resolved.model.notice {
        eprintln!("lmcpp: {notice}");
    }
    let req = chat_request(&[ChatMessage::user(args.prompt)], &args.gen_opts);
    // Reuse a server this tool already runs for the same model and binary.
    let reuse = live_servers(&ctx.registry())?.into_iter().find(|r| {
        same_file(&r.model, &resolved.model.path) && same_file(&r.exe, resolved.binary())
    });
    if let Some(record) = reuse {
        eprintln!(
            "lmcpp: using running server {} ({})",
            record.id, record.endpoint
        );
        let client = keyed_client(record.endpoint, args.api_key.as_deref());
        stream_chat(&client, &req).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let running = resolved.start().await?;
    let result = stream_chat(&running.client(), &req).await;
    running.server.stop().await?;
    result?;
    Ok(ExitCode::SUCCESS)
}

fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn schema(ctx: &Ctx, name: Option<&str>) -> Result<ExitCode> {
    let all = lmcpp::types::schema::all();
    match name {
        None => {
            if ctx.json {
                let names: Vec<_> = all.iter().map(|(n, _)| *n).collect();
                ctx.print_json(&json!(names))?;
            } else {
                for (n, _) in &all {
                    println!("{n}");
                }
            }
        }
        Some(name) => {
            let Some((_, schema)) = all.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) else {
                return Err(BadInput(format!(
                    "no schema named {name}; run `lmcpp schema` to list the names"
                ))
                .into());
            };
            ctx.print_json(schema)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
