//! Which server a command talks to: `--url`, `--server ID`, `--model M` (started for this
//! command), or the only server running.

use std::path::PathBuf;

use anyhow::{Context, Result};
use lmcpp::Running;
use lmcpp::server::{Client, Endpoint, Entry, ProcessKind, Registry};

use super::ctx::{Ctx, server_args};
use crate::cli::TargetArgs;
use crate::exit::BadInput;

/// A client plus, when the command started its own server, that server (stopped on drop).
pub(crate) struct Target {
    pub(crate) client: Client,
    _running: Option<Running>,
}

/// Parses `--url`: `http://host:port` or a Unix socket path.
pub(crate) fn parse_url(url: &str) -> Result<Endpoint> {
    if let Some(rest) = url.strip_prefix("http://") {
        let hostport = rest.trim_end_matches('/');
        let (host, port) = hostport.rsplit_once(':').ok_or_else(|| {
            BadInput(format!(
                "--url {url} has no port; write it as http://HOST:PORT"
            ))
        })?;
        let port: u16 = port
            .parse()
            .map_err(|_| BadInput(format!("--url {url}: `{port}` is not a port number")))?;
        return Ok(Endpoint::http(host, port));
    }
    if url.contains("://") {
        return Err(BadInput(format!(
            "--url {url}: only http://HOST:PORT or a Unix socket path are supported"
        ))
        .into());
    }
    Ok(Endpoint::unix(PathBuf::from(url)))
}

/// Live servers in the registry (not rpc workers, which speak no HTTP).
pub(crate) fn live_servers(registry: &Registry) -> Result<Vec<lmcpp::server::ServerRecord>> {
    let mut live = live_records(registry)?;
    live.retain(|r| r.kind == ProcessKind::Server);
    Ok(live)
}

/// Live entries of every kind in the registry: servers and rpc workers.
pub(crate) fn live_records(registry: &Registry) -> Result<Vec<lmcpp::server::ServerRecord>> {
    Ok(registry
        .list()
        .context("reading the server registry")?
        .into_iter()
        .filter_map(|e| match e {
            Entry::Live(r) => Some(r),
            _ => None,
        })
        .collect())
}

pub(crate) async fn resolve(ctx: &Ctx, t: &TargetArgs) -> Result<Target> {
    let with_key = |endpoint: Endpoint| {
        let mut b = Client::builder(endpoint);
        if let Some(key) = &t.api_key {
            b = b.api_key(key.clone());
        }
        b.build()
    };
    if let Some(url) = &t.url {
        return Ok(Target {
            client: with_key(parse_url(url)?),
            _running: None,
        });
    }
    if let Some(model) = &t.model {
        // The key the started server requires is the one this client sends.
        let running = ctx
            .builder(Some(model.clone()))
            .args(server_args(Vec::new(), Vec::new(), t.api_key.clone()))
            .start()
            .await?;
        if let Some(notice) = &running.model.notice {
            eprintln!("lmcpp: {notice}");
        }
        return Ok(Target {
            client: running.client(),
            _running: Some(running),
        });
    }
    let registry = ctx.registry();
    let record = match &t.server {
        Some(id) => {
            let record = registry.get(id)?;
            if record.kind != ProcessKind::Server {
                return Err(BadInput(format!(
                    "{id} is an rpc worker, not a llama-server; pass the id of a server \
                     (see `lmcpp ps`)"
                ))
                .into());
            }
            record
        }
        None => {
            let mut live = live_servers(&registry)?;
            match live.len() {
                0 => {
                    return Err(BadInput(
                        "no server is running; start one with `lmcpp serve --model MODEL --detach`, \
                         or pass --model MODEL to start one for this command"
                            .into(),
                    )
                    .into());
                }
                1 => live.remove(0),
                _ => {
                    let ids: Vec<_> = live.iter().map(|r| r.id.as_str()).collect();
                    return Err(BadInput(format!(
                        "{} servers are running ({}); choose one with --server ID",
                        live.len(),
                        ids.join(", ")
                    ))
                    .into());
                }
            }
        }
    };
    Ok(Target {
        client: with_key(record.endpoint),
        _running: None,
    })
}
