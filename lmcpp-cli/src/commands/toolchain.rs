//! `lmcpp toolchain …`: install, build, list, status, remove, prune and path of
//! llama-server toolchains.

use std::process::ExitCode;

use anyhow::Result;
use lmcpp::toolchain::{EntryInfo, Mode, Toolchain, ToolchainRequest};
use serde_json::json;

use super::ctx::{Ctx, human_size};
use crate::cli::ToolchainCmd;

/// `lmcpp toolchain <command>`.
pub(crate) async fn toolchain(ctx: &Ctx, cmd: ToolchainCmd) -> Result<ExitCode> {
    let tc = ctx.toolchain()?;
    let home = ctx.home.as_deref();
    match cmd {
        ToolchainCmd::Install(opts) => install(ctx, &tc, opts.request(home).await?).await?,
        ToolchainCmd::Build(opts) => {
            let mut req = opts.request(home).await?;
            req.mode = Mode::BuildOnly;
            install(ctx, &tc, req).await?;
        }
        ToolchainCmd::List => list(ctx, &tc)?,
        ToolchainCmd::Status(opts) => {
            let st = tc.status(&opts.request(home).await?).await?;
            let value = json!({
                "fingerprint": st.fingerprint,
                "entry_dir": st.entry_dir,
                "entry": st.entry.as_ref().map(entry_json),
            });
            ctx.output(&value, || {
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
                Ok(())
            })?;
        }
        ToolchainCmd::Remove(opts) => {
            let removed = tc.remove(&opts.request(home).await?, &ctx.progress).await?;
            ctx.output(&json!({ "removed": removed }), || {
                if removed {
                    println!("removed");
                } else {
                    println!("nothing to remove");
                }
                Ok(())
            })?;
        }
        ToolchainCmd::Prune => {
            let removed = tc.prune(&ctx.progress).await?;
            ctx.output(&json!({ "removed": removed }), || {
                for p in &removed {
                    println!("removed {}", p.display());
                }
                println!("{} entries pruned", removed.len());
                Ok(())
            })?;
        }
        ToolchainCmd::Path(opts) => {
            let installed = tc.ensure_cached(&opts.request(home).await?).await?;
            println!("{}", installed.llama_server.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `lmcpp toolchain install` and `build`: ensures the entry and prints where it is.
async fn install(ctx: &Ctx, tc: &Toolchain, req: ToolchainRequest) -> Result<()> {
    let installed = tc.ensure(&req, &ctx.progress).await?;
    let value = json!({
        "llama_server": installed.llama_server,
        "rpc_server": installed.rpc_server,
        "entry_dir": installed.entry_dir,
        "fingerprint": installed.fingerprint,
        "backend": installed.backend.to_string(),
        "source": installed.source,
    });
    ctx.output(&value, || {
        println!("{}", installed.llama_server.display());
        Ok(())
    })
}

/// `lmcpp toolchain list`: one line (or JSON object) per cached entry.
fn list(ctx: &Ctx, tc: &Toolchain) -> Result<()> {
    let entries = tc.list()?;
    let value: Vec<_> = entries.iter().map(entry_json).collect();
    ctx.output(&value, || {
        if entries.is_empty() {
            println!("no toolchains in {}", tc.layout().root().display());
            return Ok(());
        }
        println!(
            "{:<18} {:<12} {:<20} {:<9} {:<8} {:<15} {:<9} {:>9}  SOURCE",
            "FINGERPRINT", "VERSION", "OBTAINED", "ORIGIN", "BACKEND", "TARGET", "STATUS", "SIZE"
        );
        for e in &entries {
            println!(
                "{:<18} {:<12} {:<20} {:<9} {:<8} {:<15} {:<9} {:>9}  {}",
                e.fingerprint,
                e.version,
                e.obtained.as_deref().unwrap_or("-"),
                e.origin.map(|o| o.to_string()).unwrap_or_default(),
                e.backend.map(|b| b.to_string()).unwrap_or_default(),
                e.target.as_ref().map(|t| t.to_string()).unwrap_or_default(),
                status_name(e),
                human_size(e.size),
                e.source.as_deref().unwrap_or("-")
            );
        }
        Ok(())
    })
}

fn status_name(e: &EntryInfo) -> String {
    match (&e.status, e.usable) {
        (_, true) => "ready".into(),
        (Some(s), false) => format!("{s:?}").to_lowercase(),
        (None, false) => "partial".into(),
    }
}

fn entry_json(e: &EntryInfo) -> serde_json::Value {
    json!({
        "fingerprint": e.fingerprint,
        "dir": e.dir,
        "status": status_name(e),
        "usable": e.usable,
        "version": e.version,
        "obtained": e.obtained,
        "origin": e.origin.map(|o| o.to_string()),
        "backend": e.backend.map(|b| b.to_string()),
        "target": e.target.as_ref().map(|t| t.to_string()),
        "source": e.source,
        "size": e.size,
        "failures": e.failures,
        "last_error": e.last_error,
        "updated_unix": e.updated_unix,
    })
}
