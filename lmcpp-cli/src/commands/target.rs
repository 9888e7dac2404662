//! Which server a command talks to: `--url` (with the model `--model` names sent as is),
//! `--server ID` (a server, or a proxy and the alias `--model` names), a proxy serving the
//! alias `--model` names, a server started for `--model M` for this command, or the only
//! server or proxy running.

use std::path::PathBuf;

use anyhow::{Context, Result};
use lmcpp::Running;
use lmcpp::server::{Client, Endpoint, Entry, ProcessKind, Registry, ServerRecord};

use super::ctx::{Ctx, server_args};
use super::proxy::proxy_models;
use crate::cli::TargetArgs;
use crate::exit::BadInput;

/// A client plus, when the command started its own server, that server (stopped on drop).
pub(crate) struct Target {
    pub(crate) client: Client,
    /// The alias to name in every request when the target is a proxy (its `model`, or
    /// `?model=` on a GET), so the proxy routes it; with `--url`, whatever `--model` says.
    pub(crate) model: Option<String>,
    _running: Option<Running>,
}

impl Target {
    /// `path` with `?model=ALIAS` when a model is named: how a GET names its model.
    pub(crate) fn get_path(&self, path: &str) -> String {
        match &self.model {
            Some(alias) => format!("{path}?model={}", query_escape(alias)),
            None => path.to_owned(),
        }
    }

    /// Sets `model` in a request body's extra fields when a model is named.
    pub(crate) fn name_model(&self, extra: &mut lmcpp::types::common::Extra) {
        if let Some(alias) = &self.model {
            extra.insert("model".to_owned(), alias.clone().into());
        }
    }
}

/// `text` percent-encoded for a query value (everything but unreserved characters).
fn query_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
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

/// Live servers in the registry that a command may talk to directly: not rpc workers,
/// which speak no HTTP, nor proxies, nor a proxy's model servers, which the proxy starts,
/// counts requests on and stops (they are the proxy process's children).
pub(crate) fn live_servers(registry: &Registry) -> Result<Vec<ServerRecord>> {
    let live = live_records(registry)?;
    let proxies: Vec<u32> = live
        .iter()
        .filter(|r| r.kind == ProcessKind::Proxy)
        .map(|r| r.pid)
        .collect();
    Ok(live
        .into_iter()
        .filter(|r| r.kind == ProcessKind::Server)
        .filter(|r| {
            lmcpp::server::parent_pid(r.pid).is_none_or(|parent| !proxies.contains(&parent))
        })
        .collect())
}

/// Live entries of every kind in the registry: servers, rpc workers and proxies.
pub(crate) fn live_records(registry: &Registry) -> Result<Vec<ServerRecord>> {
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

/// The target of a command that asks a model: a proxy needs the alias to route to.
pub(crate) async fn resolve(ctx: &Ctx, t: &TargetArgs) -> Result<Target> {
    resolve_as(ctx, t, true)
        .await
        .map(|target| with_timeout(target, t))
}

/// The target of a command a proxy answers itself (`health`): a proxy with several
/// models and no `--model` is asked as it is.
pub(crate) async fn resolve_process(ctx: &Ctx, t: &TargetArgs) -> Result<Target> {
    resolve_as(ctx, t, false)
        .await
        .map(|target| with_timeout(target, t))
}

/// `--timeout` for every request of the command (the client's own limits otherwise).
fn with_timeout(mut target: Target, t: &TargetArgs) -> Target {
    if let Some(limit) = t.timeout {
        target.client = target.client.with_timeout(Some(limit));
    }
    target
}

async fn resolve_as(ctx: &Ctx, t: &TargetArgs, needs_model: bool) -> Result<Target> {
    let direct = |endpoint: Endpoint| Target {
        client: keyed(endpoint, t),
        model: None,
        _running: None,
    };
    // A registered server is asked with the key lmcpp generated for it (Windows), unless
    // the command line gives one.
    let registered = |record: ServerRecord| Target {
        client: recorded(&record, t),
        model: None,
        _running: None,
    };
    if let Some(url) = &t.url {
        // What is at a URL is not in the registry, so it cannot be asked whether it is a
        // proxy or which aliases it serves: the model goes into each request as given. A
        // proxy routes by it (and names its models when it serves none by that name); a
        // llama-server of one model ignores it.
        return Ok(Target {
            model: t.model.clone(),
            ..direct(parse_url(url)?)
        });
    }
    let registry = ctx.registry();
    if let Some(id) = &t.server {
        let record = registry.get(id)?;
        return match record.kind {
            ProcessKind::Proxy => proxy_target(record, t, needs_model).await,
            ProcessKind::Server if t.model.is_none() => Ok(registered(record)),
            ProcessKind::Server => Err(BadInput(format!(
                "{id} is a llama-server serving one model; --model with --server chooses a \
                 model of a proxy, so drop --model or pass the id of a proxy (see `lmcpp ps`)"
            ))
            .into()),
            _ => Err(BadInput(format!(
                "{id} is an rpc worker, not a llama-server; pass the id of a server \
                 (see `lmcpp ps`)"
            ))
            .into()),
        };
    }
    if let Some(model) = &t.model {
        // A running proxy that serves this alias, else a server just for this command.
        let mut serving: Vec<_> = live_records(&registry)?
            .into_iter()
            .filter(|r| r.kind == ProcessKind::Proxy && r.args.contains(model))
            .collect();
        return match serving.len() {
            0 => start_for_command(ctx, t, model).await,
            1 => proxy_target(serving.remove(0), t, needs_model).await,
            n => Err(BadInput(format!(
                "{n} proxies serve {model} ({}); choose one with --server ID",
                ids(&serving)
            ))
            .into()),
        };
    }
    let mut live = live_servers(&registry)?;
    live.extend(
        live_records(&registry)?
            .into_iter()
            .filter(|r| r.kind == ProcessKind::Proxy),
    );
    match live.len() {
        0 => Err(BadInput(
            "no server is running; start one with `lmcpp serve --model MODEL --detach`, \
             or pass --model MODEL to start one for this command"
                .into(),
        )
        .into()),
        1 => {
            let record = live.remove(0);
            match record.kind {
                ProcessKind::Proxy => proxy_target(record, t, needs_model).await,
                _ => Ok(registered(record)),
            }
        }
        n => Err(BadInput(format!(
            "{n} servers are running ({}); choose one with --server ID",
            ids(&live)
        ))
        .into()),
    }
}

/// The ids of `records`, comma-separated.
fn ids(records: &[ServerRecord]) -> String {
    let ids: Vec<_> = records.iter().map(|r| r.id.as_str()).collect();
    ids.join(", ")
}

/// A client for `endpoint` with the key of the command line, if any.
fn keyed(endpoint: Endpoint, t: &TargetArgs) -> Client {
    super::ctx::keyed_client(endpoint, t.api_key.as_deref())
}

/// A client for a registered process: the command line's key, else the one lmcpp
/// generated for it and recorded.
fn recorded(record: &ServerRecord, t: &TargetArgs) -> Client {
    let key = t.api_key.as_deref().or(record.api_key.as_deref());
    super::ctx::keyed_client(record.endpoint.clone(), key)
}

/// A server for `--model` started for this command; the key it requires is the one this
/// client sends.
async fn start_for_command(ctx: &Ctx, t: &TargetArgs, model: &str) -> Result<Target> {
    let running = ctx
        .builder(Some(model.to_owned()))
        .args(server_args(Vec::new(), Vec::new(), t.api_key.clone()))
        .start()
        .await?;
    if let Some(notice) = &running.model.notice {
        say!("lmcpp: {notice}");
    }
    Ok(Target {
        client: running.client(),
        model: None,
        _running: Some(running),
    })
}

/// A proxy as the target: its endpoint, and the alias `--model` names (one of the models
/// it lists) or its only model.
async fn proxy_target(record: ServerRecord, t: &TargetArgs, needs_model: bool) -> Result<Target> {
    if !needs_model && t.model.is_none() {
        return Ok(Target {
            client: recorded(&record, t),
            model: None,
            _running: None,
        });
    }
    let key = t.api_key.as_deref().or(record.api_key.as_deref());
    let models = proxy_models(&record, key)
        .await
        .map_err(|e| anyhow::anyhow!("proxy {} gives {e}", record.id))?;
    let aliases: Vec<&str> = models.iter().map(|m| m.alias.as_str()).collect();
    let alias = choose_alias(&record.id, &aliases, t.model.as_deref())?;
    Ok(Target {
        client: recorded(&record, t),
        model: Some(alias),
        _running: None,
    })
}

/// The alias a command asks a proxy for: the one `--model` names if the proxy serves it,
/// else its only model; several models and no `--model` is bad input naming them.
fn choose_alias(id: &str, aliases: &[&str], wanted: Option<&str>) -> Result<String, BadInput> {
    let listed = || aliases.join(", ");
    match (wanted, aliases) {
        (Some(w), _) if aliases.contains(&w) => Ok(w.to_owned()),
        (Some(w), _) => Err(BadInput(format!(
            "proxy {id} serves no model {w}; its models are {}; pass one with --model ALIAS",
            listed()
        ))),
        (None, [only]) => Ok((*only).to_owned()),
        (None, _) => Err(BadInput(format!(
            "proxy {id} serves {} models ({}); choose one with --model ALIAS",
            aliases.len(),
            listed()
        ))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_alias_asked_of_a_proxy() {
        /// The proxy's aliases, `--model`, and the alias asked or words of the error.
        type Case<'a> = (
            &'a [&'a str],
            Option<&'a str>,
            Result<&'a str, &'a [&'a str]>,
        );
        let table: &[Case<'_>] = &[
            (&["a"], None, Ok("a")),
            (&["a"], Some("a"), Ok("a")),
            (&["a", "b"], Some("b"), Ok("b")),
            (
                &["a", "b"],
                None,
                Err(&["2 models", "a, b", "--model ALIAS"]),
            ),
            (
                &["a", "b"],
                Some("c"),
                Err(&["no model c", "a, b", "--model"]),
            ),
            (&["a"], Some("c"), Err(&["no model c", "are a;"])),
        ];
        for (aliases, wanted, want) in table {
            let got = choose_alias("p1", aliases, *wanted);
            match (got, want) {
                (Ok(got), Ok(want)) => assert_eq!(got, *want),
                (Err(e), Err(words)) => {
                    assert!(e.0.contains("proxy p1"), "{}", e.0);
                    for w in *words {
                        assert!(
                            e.0.contains(w),
                            "{aliases:?} {wanted:?}: {w:?} not in {}",
                            e.0
                        );
                    }
                }
                (got, _) => panic!("{aliases:?} {wanted:?}: {got:?}"),
            }
        }
    }

    #[test]
    fn aliases_in_a_query_are_escaped() {
        for (alias, want) in [
            ("chat", "chat"),
            ("a.b-c_d~", "a.b-c_d~"),
            ("x&model=y", "x%26model%3Dy"),
            ("50%+#?", "50%25%2B%23%3F"),
        ] {
            assert_eq!(query_escape(alias), want);
        }
    }
}
