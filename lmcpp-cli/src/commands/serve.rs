//! `lmcpp serve`, `rpc-worker`, `ps`, `stop` and `logs`: processes lmcpp starts, lists, stops
//! and whose logs it shows (always through the registry, never any other process).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use lmcpp::server::{
    Endpoint, Entry, HttpPort, ProcessKind, RpcWorker, RpcWorkerOptions, ServerRecord,
    TransportChoice,
};
use serde_json::json;

use super::ctx::{Ctx, human_size, server_args};
use super::proxy;
use super::target::live_records;
use crate::cli::{LogsArgs, RpcWorkerArgs, ServeArgs, StopArgs};
use crate::exit::BadInput;
use crate::shutdown::Shutdown;

/// Refuses `--watch` without `--config`: clap drops `requires = "config"` once --model
/// (which --config conflicts with) is given.
fn no_watch_without_config(args: &ServeArgs) -> Result<(), crate::exit::BadInput> {
    match args.watch && args.config.is_none() {
        true => Err(crate::exit::BadInput(
            "--watch applies a config file again when it changes; give the file with --config \
             FILE (models given with --model are read once)"
                .to_owned(),
        )),
        false => Ok(()),
    }
}

/// `lmcpp serve`: starts a server and stays with it (or leaves it running with `--detach`).
pub(crate) async fn serve(ctx: &Ctx, mut args: ServeArgs) -> Result<ExitCode> {
    no_watch_without_config(&args)?;
    if proxy::wants_proxy(&args) {
        return proxy::serve_many(ctx, args).await;
    }
    // One model and no proxy option: exactly the single server of before.
    let model = args.model.pop().unwrap_or_default();
    let mut shutdown = Shutdown::listen()?;
    let port = args.port.map_or(HttpPort::Auto, HttpPort::Fixed);
    let transport = match (args.http, args.bind) {
        (false, _) => TransportChoice::default(),
        (true, None) => TransportChoice::Http(port),
        (true, Some(bind)) => {
            if !bind.is_loopback() {
                say!(
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
    let mut server_args = server_args(args.extra, args.rpc, args.api_key.clone());
    // The web UI is off unless asked for (llama-server's own default is on).
    server_args.ui = Some(args.webui);
    let mut builder = ctx.builder(Some(model));
    if let Some(alias) = &args.alias {
        builder = builder.alias(alias);
    }
    if let Some(draft) = &args.draft {
        builder = builder.draft((**draft).clone());
    }
    let start = builder
        .no_mmproj(args.no_mmproj)
        .toolchain_request(args.toolchain.request(ctx.home.as_deref()).await?)
        .transport(transport)
        .args(server_args)
        .ready_timeout(Duration::from_secs(args.ready_timeout))
        .detached(args.detach)
        .start();
    // A signal during start-up ends it; dropping the start stops whatever it spawned.
    let running = tokio::select! {
        running = start => running?,
        signal = shutdown.recv() => {
            say!("lmcpp: {signal} during start-up; nothing left running");
            return Ok(ExitCode::SUCCESS);
        }
    };
    if let Some(notice) = &running.model.notice {
        say!("lmcpp: {notice}");
    }
    let record = running.server.record().clone();
    let shown = Shown::new(&record);
    ctx.output(&shown, || {
        println!("{} {}", record.id, record.endpoint);
        Ok(())
    })?;
    if args.webui && matches!(record.endpoint, Endpoint::Http { .. }) {
        say!("lmcpp: web UI at {}/", record.endpoint);
    }
    if args.detach {
        let _ = running.server.detach();
        return Ok(ExitCode::SUCCESS);
    }
    say!(
        "lmcpp: serving {} ({}) on {} (log {}); {} to stop",
        running.model.alias,
        running.model.path.display(),
        record.endpoint,
        record.log_path.display(),
        crate::shutdown::STOPPED_BY
    );
    let server = running.server;
    tokio::select! {
        signal = shutdown.recv() => {
            say!("lmcpp: {signal}: stopping the server");
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

/// `lmcpp rpc-worker`: starts a ggml rpc-server worker and stays with it (or detaches).
pub(crate) async fn rpc_worker(ctx: &Ctx, args: RpcWorkerArgs) -> Result<ExitCode> {
    let (host, port) = parse_bind(&args.bind)?;
    let binary = match args.rpc_server {
        Some(path) => path,
        None => {
            let installed = ctx
                .toolchain()?
                .ensure(
                    &args.toolchain.request(ctx.home.as_deref()).await?,
                    &ctx.progress,
                )
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
        say!(
            "lmcpp: warning: ggml RPC is unauthenticated; anyone who can reach {host} can use \
             this worker. Only run it on a trusted network."
        );
    }
    // From here on a signal stops the worker; before, its default action ends lmcpp.
    let mut shutdown = Shutdown::listen()?;
    let worker = RpcWorker::launch(opts).await?;
    let record = worker.record().clone();
    ctx.output(&record, || {
        println!("{} {}", record.id, worker.address());
        Ok(())
    })?;
    if args.detach {
        let _ = worker.detach();
        return Ok(ExitCode::SUCCESS);
    }
    say!(
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

/// `lmcpp ps`: live servers, workers and proxies from the registry; under a proxy, its
/// models as the proxy reports them (state, memory estimate, last use).
pub(crate) async fn ps(ctx: &Ctx) -> Result<ExitCode> {
    let entries = ctx.registry().list()?;
    let live: Vec<_> = entries
        .iter()
        .filter_map(|e| match e {
            Entry::Live(r) => Some(r),
            _ => None,
        })
        .collect();
    let mut shown: Vec<Shown<'_>> = live.iter().map(|r| Shown::new(r)).collect();
    // A proxy that requires a key answers lmcpp's clients with the usual one.
    let api_key = std::env::var("LLAMA_API_KEY").ok();
    for s in &mut shown {
        if s.record.kind == ProcessKind::Proxy {
            match proxy::proxy_models(s.record, api_key.as_deref()).await {
                Ok(models) => s.models = Some(models),
                Err(e) => s.proxy_error = Some(e),
            }
        }
    }
    // Which proxy owns each model server, by the server ids the proxies report.
    let owners: Vec<(String, String)> = shown
        .iter()
        .flat_map(|s| {
            s.models.iter().flatten().filter_map(|m| {
                m.server_id
                    .clone()
                    .map(|server| (server, s.record.id.clone()))
            })
        })
        .collect();
    for s in &mut shown {
        s.proxy = owners
            .iter()
            .find(|(server, _)| *server == s.record.id)
            .map(|(_, proxy)| proxy.clone());
    }
    ctx.output(&shown, || {
        if live.is_empty() {
            println!("no servers running");
            return Ok(());
        }
        println!(
            "{:<13} {:<10} {:>8}  {:<40} MODEL",
            "ID", "KIND", "PID", "ENDPOINT"
        );
        // A proxy's model servers are shown under it, not on their own.
        for s in shown.iter().filter(|s| s.proxy.is_none()) {
            let r = s.record;
            let (endpoint, model) = match (&r.kind, &r.endpoint) {
                (ProcessKind::RpcWorker, Endpoint::Http { host, port }) => {
                    (format!("rpc://{host}:{port}"), "-".to_owned())
                }
                (ProcessKind::Proxy, _) => (
                    r.endpoint.to_string(),
                    match (&s.models, &s.proxy_error) {
                        (Some(models), _) => format!("{} models", models.len()),
                        (None, Some(e)) => e.clone(),
                        (None, None) => "-".to_owned(),
                    },
                ),
                // The name clients select the model by, then the file it is.
                _ => match &s.alias {
                    Some(alias) => (
                        r.endpoint.to_string(),
                        format!("{alias} ({})", r.model.display()),
                    ),
                    None => (r.endpoint.to_string(), r.model.display().to_string()),
                },
            };
            println!(
                "{:<13} {:<10} {:>8}  {:<40} {}",
                r.id,
                r.kind.to_string(),
                r.pid,
                endpoint,
                model
            );
            for m in s.models.iter().flatten() {
                println!("{}", model_line(m));
            }
        }
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// One model of a proxy, as `ps` shows it under the proxy.
fn model_line(m: &lmcpp::server::ModelView) -> String {
    let pid = m.pid.map_or_else(|| "-".to_owned(), |p| p.to_string());
    let used = m.last_used.map_or_else(
        || "never used".to_owned(),
        |t| match t.elapsed() {
            Ok(ago) => format!("used {}s ago", ago.as_secs()),
            Err(_) => "used just now".to_owned(),
        },
    );
    let mut line = format!(
        "  {:<11} {:<10} {:>8}  memory {}, {used}",
        m.alias,
        m.state.to_string(),
        pid,
        human_size(m.estimate_bytes)
    );
    if m.in_flight > 0 {
        line.push_str(&format!(", {} in flight", m.in_flight));
    }
    if m.pinned {
        line.push_str(", pinned");
    }
    if let Some(e) = &m.error {
        line.push_str(&format!(
            ", failed: {}",
            e.lines().next().unwrap_or_default()
        ));
    }
    line
}

/// A registry record as `serve` and `ps` show it: every field, plus the model's alias (the
/// id the server reports in `/v1/models` and responses), read from its command line; for a
/// proxy its models (or why it did not answer), for a proxy's model server the proxy's id.
#[derive(serde::Serialize)]
struct Shown<'a> {
    #[serde(flatten)]
    record: &'a ServerRecord,
    alias: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    models: Option<Vec<lmcpp::server::ModelView>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    proxy_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    proxy: Option<String>,
}

impl<'a> Shown<'a> {
    fn new(record: &'a ServerRecord) -> Self {
        Self {
            alias: alias_of(&record.args),
            record,
            models: None,
            proxy_error: None,
            proxy: None,
        }
    }
}

/// The `--alias`/`-a` value of a llama-server command line (the last one, as the server
/// reads it).
fn alias_of(args: &[String]) -> Option<String> {
    let mut found = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if let Some(v) = a.strip_prefix("--alias=") {
            found = Some(v.to_owned());
        } else if a == "--alias" || a == "-a" {
            found = it.next().cloned();
        }
    }
    found
}

/// `lmcpp stop ID | --all`.
pub(crate) async fn stop(ctx: &Ctx, args: StopArgs) -> Result<ExitCode> {
    let registry = ctx.registry();
    let all = args.all;
    let ids: Vec<String> = if all {
        // Proxies first (they stop their own model servers), then servers before
        // workers: a server whose worker vanishes aborts noisily.
        let mut live = live_records(&registry)?;
        live.sort_by_key(|r| match r.kind {
            ProcessKind::Proxy => 0,
            ProcessKind::Server => 1,
            _ => 2,
        });
        live.into_iter().map(|r| r.id).collect()
    } else {
        args.id.into_iter().collect()
    };
    let mut stopped = Vec::new();
    for id in ids {
        let outcome = match registry.stop(&id, Duration::from_secs(10)).await {
            Ok(outcome) => outcome,
            // A proxy's model server that went with its proxy.
            Err(lmcpp::server::Error::UnknownServer { .. }) if all => continue,
            Err(e) => return Err(e.into()),
        };
        stopped.push(json!({ "id": id, "outcome": format!("{outcome:?}").to_lowercase() }));
        if !ctx.json {
            println!("stopped {id}");
        }
    }
    ctx.output(&stopped, || {
        if all && stopped.is_empty() {
            println!("no servers running");
        }
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `lmcpp logs ID [-n LINES] [--follow]`.
pub(crate) async fn logs(ctx: &Ctx, args: LogsArgs) -> Result<ExitCode> {
    let (id, registry) = (args.id.as_str(), ctx.registry());
    for line in registry.log_tail(id, args.lines)? {
        println!("{line}");
    }
    if args.follow {
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_alias_is_read_from_the_command_line() {
        let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let table: &[(&[&str], Option<&str>)] = &[
            (
                &["--host", "x", "--alias", "o/r:Q4_K_M"],
                Some("o/r:Q4_K_M"),
            ),
            (&["-a", "one", "--alias=two"], Some("two")),
            (&["--ctx-size", "8"], None),
            (&["--alias"], None),
        ];
        for (a, want) in table {
            assert_eq!(super::alias_of(&args(a)).as_deref(), *want, "{a:?}");
        }
    }
}
