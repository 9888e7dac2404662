//! `lmcpp serve` with many models: one endpoint in front of one llama-server per model
//! (`lmcpp_server::Proxy`), each started through the facade at its first request, and the
//! proxy's side of `lmcpp ps`.
//!
//! The proxy lives in the `lmcpp serve` process itself; its model servers are that
//! process's children, contained as every server lmcpp starts, so killing `lmcpp serve`
//! takes them with it. `--detach` therefore runs the whole `lmcpp serve` again in the
//! background (its own process group, output to its log) and returns once the proxy's
//! registry record is there.

mod config;
mod detach;
mod log;
mod record;
mod reload;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use lmcpp::server::{HttpPort, ProxyOptions, TransportChoice, default_memory_budget};
use lmcpp::types::args::ServerArgs;
use lmcpp::{ModelEstimate, ProxyModel};

use super::ctx::{Ctx, human_size};
use crate::cli::ServeArgs;
use crate::exit::BadInput;
use crate::shutdown::Shutdown;
pub(crate) use config::{ModelPlan, ServePlan};
use log::ProxyLog;
pub(crate) use record::proxy_models;
use record::{ShownProxy, fresh_id};
use reload::{Reloader, has_terminal};

/// Whether `args` ask for the proxy rather than today's single server: a config file,
/// several models, or an option only the proxy has.
pub(crate) fn wants_proxy(args: &ServeArgs) -> bool {
    args.config.is_some()
        || args.model.len() > 1
        || args.memory_budget.is_some()
        || args.keep_alive.is_some()
        || args.proxy_id.is_some()
}

/// `lmcpp serve --model a=… --model b=…` or `lmcpp serve --config lmcpp.toml`.
pub(crate) async fn serve_many(ctx: &Ctx, args: ServeArgs) -> Result<ExitCode> {
    let plan = plan(&args)?;
    let api_key = api_key(&plan, &args)?;
    let budget = memory_budget(&plan)?;
    if args.detach {
        return detach::detach(ctx, budget, api_key.as_deref()).await;
    }
    let mut shutdown = Shutdown::listen()?;
    // Whether a SIGHUP may be the terminal going away (see `hangup_stops`).
    let had_terminal = has_terminal();
    let transport = transport(&plan, &args);
    // The id is chosen here (a detached proxy is given it), so the log its record names
    // is this process's to write from the start.
    let id = match &args.proxy_id {
        Some(id) => {
            lmcpp::server::validate_id(id).map_err(|e| BadInput(e.to_string()))?;
            id.clone()
        }
        None => fresh_id(),
    };
    let registry = ctx.registry();
    registry.ensure_dir()?;
    let log_path = registry.dir().join(format!("{id}.log"));
    let log = Arc::new(ProxyLog::open(&log_path)?);

    // The KV caches of the models that keep theirs, this proxy's own (removed when it
    // stops): `<cache root>/kv/<proxy id>/<alias>`.
    let kv_root = kv_root(ctx, &id)?;
    let mut opts = ProxyOptions::new(budget);
    opts.transport = transport;
    opts.runtime_dir = ctx.runtime_dir.clone();
    opts.api_key = api_key;
    opts.load_timeout = plan.load_timeout;
    opts.max_pass_over = plan.max_pass_over;
    opts.id = Some(id);
    opts.log_path = Some(log_path);
    // `--detach` runs this command again with the id it chose: that process is detached.
    opts.detached = args.proxy_id.is_some();
    let prepared = proxy_builder(ctx, &args, &plan, opts.clone(), &kv_root, &log)
        .await?
        .prepare()
        .await?;
    let shown_models: Vec<String> = plan
        .models
        .iter()
        .zip(prepared.estimates())
        .map(|(model, estimate)| shown_model(model, estimate))
        .collect();
    let mut proxy = tokio::select! {
        proxy = prepared.start() => proxy?,
        signal = shutdown.recv() => {
            log.line(format_args!("{signal} during start-up; nothing left running"));
            return Ok(ExitCode::SUCCESS);
        }
    };
    // The first receiver: every event since the proxy began to serve.
    let mut events = proxy.events();
    let record = registry.get(proxy.id())?;
    let shown = ShownProxy {
        record: &record,
        memory_budget: budget,
        models: proxy.models(),
    };
    ctx.output(&shown, || {
        println!("{} {}", proxy.id(), proxy.endpoint());
        Ok(())
    })?;
    log.line(format_args!(
        "serving {} models on {} (memory budget {}); each starts at its first request",
        plan.models.len(),
        proxy.endpoint(),
        human_size(budget)
    ));
    for line in &shown_models {
        log.line(format_args!("  {line}"));
    }
    log.line(stop_hint(&args, proxy.id()));
    let mut reloader = Reloader {
        ctx,
        args: &args,
        log: &log,
        kv_root: &kv_root,
        options: opts,
        plan,
    };
    let signal = reloader
        .serve(&mut proxy, &mut shutdown, &mut events, had_terminal)
        .await;
    log.line(format_args!("{signal}: stopping the proxy and its models"));
    log::while_stopping(&log, &mut events, proxy.stop()).await?;
    let _ = std::fs::remove_dir_all(&kv_root);
    log.line("stopped");
    Ok(ExitCode::SUCCESS)
}

/// The log line saying how to stop the proxy (and reload its config).
fn stop_hint(args: &ServeArgs, id: &str) -> String {
    let stop = format!("`lmcpp stop {id}`");
    match (&args.config, crate::shutdown::STOPPED_BY_BUT_HANGUP) {
        (Some(path), Some(by)) => format!(
            "{by} (or {stop}) to stop; SIGHUP applies {} again{}",
            path.display(),
            if args.watch {
                ", as does saving it"
            } else {
                ""
            }
        ),
        (Some(path), None) if args.watch => format!(
            "{} (or {stop}) to stop; saving {} applies it again",
            crate::shutdown::STOPPED_BY,
            path.display()
        ),
        _ => format!("{} (or {stop}) to stop", crate::shutdown::STOPPED_BY),
    }
}

/// The plan's memory budget in bytes (by default a share of this machine's memory).
fn memory_budget(plan: &ServePlan) -> Result<u64> {
    Ok(match plan.memory_budget {
        Some(b) => b.bytes(lmcpp::server::total_memory()).map_err(BadInput)?,
        None => default_memory_budget(),
    })
}

/// The plan from `--config` or from the `--model` list, with the options that cannot go
/// with several models refused.
fn plan(args: &ServeArgs) -> Result<ServePlan> {
    if args.draft.is_some() {
        return Err(BadInput(
            "--draft drafts for the one model of a single server; with several models write \
             `draft = \"MODEL\"` for each model in a config (--config)"
                .to_owned(),
        )
        .into());
    }
    if args.alias.is_some() {
        return Err(BadInput(
            "--alias names the one model of a single server; with several models write \
             --model ALIAS=MODEL (or `alias` in the config)"
                .to_owned(),
        )
        .into());
    }
    if args.webui {
        return Err(BadInput(
            "--webui is for a single server; the multi-model proxy serves no web UI".to_owned(),
        )
        .into());
    }
    let keep_alive = args
        .keep_alive
        .as_deref()
        .map(|k| {
            config::parse_duration(k)
                .map(|d| (!d.is_zero()).then_some(d))
                .map_err(|e| BadInput(format!("--keep-alive: {e}")))
        })
        .transpose()?;
    let memory_budget = args
        .memory_budget
        .as_deref()
        .map(|b| config::parse_budget(b).map_err(|e| BadInput(format!("--memory-budget: {e}"))))
        .transpose()?;
    let mut plan = match &args.config {
        Some(path) => {
            let text = config::read_file(path)?;
            let mut plan = config::parse_file(path, &text)?;
            // Files named relative to the config are found next to it.
            let dir = path.parent().unwrap_or(Path::new("."));
            for m in &mut plan.models {
                if let Some(bin) = m.llama_server.as_mut().filter(|b| b.is_relative()) {
                    *bin = dir.join(&*bin);
                }
            }
            plan
        }
        None => ServePlan {
            memory_budget: None,
            http: false,
            port: None,
            load_timeout: Duration::from_secs(args.ready_timeout),
            start_timeout: config::DEFAULT_START_TIMEOUT,
            api_key_env: None,
            max_pass_over: lmcpp::server::DEFAULT_MAX_PASS_OVER,
            models: config::models_from_args(&args.model, |p| Path::new(p).is_file())?,
        },
    };
    // The command line wins over the file.
    if memory_budget.is_some() {
        plan.memory_budget = memory_budget;
    }
    if let Some(k) = keep_alive {
        for m in &mut plan.models {
            m.keep_alive = k;
        }
    }
    if args.config.is_none() {
        for m in &mut plan.models {
            m.args = args.extra.clone();
        }
    } else if !args.extra.is_empty() {
        return Err(BadInput(
            "llama-server arguments after `--` go into each model's `args` in the config file"
                .to_owned(),
        )
        .into());
    }
    Ok(plan)
}

/// The proxy's API key: the variable the config names, else `LLAMA_API_KEY`.
fn api_key(plan: &ServePlan, args: &ServeArgs) -> Result<Option<String>> {
    match &plan.api_key_env {
        Some(name) => match std::env::var(name) {
            Ok(key) if !key.is_empty() => Ok(Some(key)),
            _ => Err(BadInput(format!(
                "the config's api_key_env names {name}, which is not set; export {name}=<key> \
                 or remove api_key_env"
            ))
            .into()),
        },
        None => Ok(args.api_key.clone()),
    }
}

/// Where the proxy listens: the command line's `--http`/`--port`/`--bind`, else the
/// config's transport, else a Unix socket.
fn transport(plan: &ServePlan, args: &ServeArgs) -> TransportChoice {
    let port = args
        .port
        .or(plan.port)
        .map_or(HttpPort::Auto, HttpPort::Fixed);
    match (args.http || plan.http, args.bind) {
        (false, _) => TransportChoice::default(),
        (true, None) => TransportChoice::Http(port),
        (true, Some(bind)) => {
            if !bind.is_loopback() {
                say!(
                    "lmcpp: warning: serving on {bind}: anyone who can reach it can use these \
                     models; set an API key"
                );
            }
            TransportChoice::PublicHttp { bind, port }
        }
    }
}

/// The library's builder for the plan: its models, each model's start logged to `log`.
async fn proxy_builder(
    ctx: &Ctx,
    args: &ServeArgs,
    plan: &ServePlan,
    opts: ProxyOptions,
    kv_root: &Path,
    log: &Arc<ProxyLog>,
) -> Result<lmcpp::ProxyBuilder> {
    let lines = Arc::clone(log);
    let mut builder = lmcpp::Lmcpp::proxy()
        .options(opts)
        .toolchain_request(args.toolchain.request(ctx.home.as_deref()).await?)
        .start_timeout(plan.start_timeout)
        .no_mmproj(args.no_mmproj)
        .progress(ctx.progress.clone())
        .lines(Arc::new(move |line: &str| lines.line(line)));
    if let Some(home) = &ctx.home {
        builder = builder.home(home);
    }
    for model in &plan.models {
        let kv = model
            .keep_kv_cache
            .then(|| kv_root.join(kv_dir_name(&model.alias)));
        builder = builder.model(proxy_model(ctx, args, model, kv).await?);
    }
    Ok(builder)
}

/// One model of the plan as the library takes it: its own toolchain request when it
/// names a llama.cpp version or backend, its binary, its server arguments.
async fn proxy_model(
    ctx: &Ctx,
    args: &ServeArgs,
    model: &ModelPlan,
    slot_cache: Option<PathBuf>,
) -> Result<ProxyModel> {
    let llama_server = model
        .llama_server
        .clone()
        .or_else(|| ctx.llama_server.clone());
    if let (Some(bin), Some(version)) = (&llama_server, &model.llama_version) {
        say!(
            "lmcpp: warning: model {} runs {}, not a toolchain of llama_version {version}",
            model.alias,
            bin.display()
        );
    }
    let mut spec = ProxyModel::new(model.alias.clone(), model.model.clone());
    if model.llama_version.is_some() || model.backend.is_some() {
        let mut toolchain = args.toolchain.clone();
        if let Some(v) = &model.llama_version {
            toolchain.version = Some(v.clone());
        }
        if let Some(b) = model.backend {
            toolchain.backend = b;
        }
        spec.toolchain_request = Some(toolchain.request(ctx.home.as_deref()).await?);
    }
    spec.llama_server = llama_server;
    spec.args = server_args(model, args);
    spec.memory = model.memory;
    spec.keep_alive = model.keep_alive;
    spec.pinned = model.pinned;
    spec.max_queue = model.max_queue;
    spec.start_timeout = model.start_timeout;
    spec.slot_cache = slot_cache;
    spec.draft = model.draft.clone();
    Ok(spec)
}

/// The line describing a model when the proxy starts.
fn shown_model(model: &ModelPlan, estimate: &ModelEstimate) -> String {
    format!(
        "{} = {}: memory {} ({}), keep-alive {}{}",
        model.alias,
        model.reference,
        human_size(estimate.bytes),
        estimate.how,
        model
            .keep_alive
            .map_or_else(|| "never stops".to_owned(), |d| format!("{}s", d.as_secs())),
        if model.pinned { ", pinned" } else { "" }
    )
}

/// Where a proxy's models keep their KV caches: `<cache root>/kv/<proxy id>`.
fn kv_root(ctx: &Ctx, id: &str) -> Result<PathBuf> {
    let layout = lmcpp::toolchain::CacheLayout::resolve(ctx.home.as_deref())?;
    Ok(kv_dir(layout.root()).join(id))
}

/// Where proxies keep their models' KV caches, one folder per proxy id (which `lmcpp gc`
/// removes once that proxy no longer runs).
pub(crate) fn kv_dir(cache_root: &Path) -> PathBuf {
    cache_root.join("kv")
}

/// A directory name for an alias: its characters outside `[A-Za-z0-9._-]` as `_`, and
/// its length and a hash so that two aliases never share one.
fn kv_dir_name(alias: &str) -> String {
    let plain: String = alias
        .chars()
        .map(|c| match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '.' | '_' | '-' => c,
            _ => '_',
        })
        .collect();
    // FNV-1a: stable across runs and platforms, unlike the std hasher.
    let hash = alias.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{plain}-{hash:016x}")
}

/// The server arguments of one model: its own, the command line's `--rpc`, and the web
/// UI off. Model servers listen on private sockets, so they get no API key; the proxy
/// checks the key.
fn server_args(model: &ModelPlan, args: &ServeArgs) -> ServerArgs {
    ServerArgs {
        extra: model.args.clone(),
        rpc: args.rpc.clone(),
        ctx_size: model.ctx_size.and_then(|c| i64::try_from(c).ok()),
        parallel: model.parallel.and_then(|p| i64::try_from(p).ok()),
        embeddings: model.embeddings,
        pooling: model.pooling.clone(),
        ui: Some(false),
        ..ServerArgs::default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn serve_args(argv: &[&str]) -> ServeArgs {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from(["lmcpp", "serve"].iter().chain(argv).copied())
            .unwrap();
        match cli.command {
            crate::cli::Command::Serve(args) => args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn one_model_without_proxy_options_stays_a_single_server() {
        let table: &[(&[&str], bool)] = &[
            (&["--model", "demo"], false),
            (&["--model", "a=demo"], false),
            (&["--model", "demo", "--http", "--", "-c", "512"], false),
            (&["--model", "a=demo", "--model", "b=demo"], true),
            (&["--model", "demo", "--keep-alive", "10m"], true),
            (&["--model", "demo", "--memory-budget", "1GiB"], true),
            (&["--config", "lmcpp.toml"], true),
        ];
        for (argv, proxy) in table {
            assert_eq!(wants_proxy(&serve_args(argv)), *proxy, "{argv:?}");
        }
    }

    #[test]
    fn the_command_line_fills_and_overrides_the_plan() {
        let got = plan(&serve_args(&[
            "--model",
            "a=demo",
            "--model",
            "b=/m/x.gguf",
            "--keep-alive",
            "0",
            "--memory-budget",
            "50%",
            "--ready-timeout",
            "30",
            "--",
            "-c",
            "512",
        ]))
        .unwrap();
        assert_eq!(got.memory_budget, Some(config::Budget::Percent(50.0)));
        assert_eq!(got.load_timeout, Duration::from_secs(30));
        for m in &got.models {
            assert_eq!(m.keep_alive, None, "0 = never");
            assert_eq!(m.args, ["-c", "512"]);
        }
        let aliases: Vec<_> = got.models.iter().map(|m| m.alias.as_str()).collect();
        assert_eq!(aliases, ["a", "b"]);

        for (argv, words) in [
            (
                &["--model", "a=demo", "--model", "b=demo", "--alias", "x"][..],
                "--alias",
            ),
            (
                &[
                    "--model", "a=demo", "--model", "b=demo", "--http", "--webui",
                ],
                "--webui",
            ),
        ] {
            let err = plan(&serve_args(argv)).unwrap_err().to_string();
            assert!(err.contains(words), "{argv:?}: {err}");
        }
    }

    #[test]
    fn fresh_ids_are_valid_registry_ids() {
        let id = fresh_id();
        assert_eq!(id.len(), 12);
        lmcpp::server::validate_id(&id).unwrap();
    }
}
