//! Commands that show what a server is and what its types look like: `props`, `health`,
//! `metrics` and `schema`.

use std::process::ExitCode;

use anyhow::Result;
use serde_json::json;

use super::ctx::Ctx;
use super::target;
use crate::cli::TargetArgs;
use crate::exit::BadInput;

/// `lmcpp props`: always JSON.
pub(crate) async fn props(ctx: &Ctx, t: &TargetArgs) -> Result<ExitCode> {
    let t = target::resolve(ctx, t).await?;
    ctx.print_json(&t.client.props().await?)?;
    Ok(ExitCode::SUCCESS)
}

/// `lmcpp health`: `ok`, or the server's answer as JSON.
pub(crate) async fn health(ctx: &Ctx, t: &TargetArgs) -> Result<ExitCode> {
    let t = target::resolve(ctx, t).await?;
    let health = t.client.health().await?;
    ctx.output(&health, || {
        println!("ok");
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `lmcpp metrics`: the Prometheus text as the server wrote it, or its samples as JSON.
pub(crate) async fn metrics(ctx: &Ctx, t: &TargetArgs) -> Result<ExitCode> {
    let t = target::resolve(ctx, t).await?;
    // The two forms are two requests: the parsed families, or the text untouched.
    if ctx.json {
        let metrics = t.client.metrics().await?;
        let samples: Vec<_> = metrics
            .families
            .iter()
            .flat_map(|f| &f.samples)
            .map(|s| json!({ "name": s.name, "labels": s.labels, "value": s.value }))
            .collect();
        ctx.print_json(&samples)?;
    } else {
        print!("{}", t.client.metrics_text().await?);
    }
    Ok(ExitCode::SUCCESS)
}

/// `lmcpp schema [NAME]`: the names of the JSON Schemas, or one schema.
pub(crate) fn schema(ctx: &Ctx, name: Option<&str>) -> Result<ExitCode> {
    let all = lmcpp::types::schema::all();
    match name {
        None => {
            let names: Vec<_> = all.iter().map(|(n, _)| *n).collect();
            ctx.output(&names, || {
                for n in &names {
                    println!("{n}");
                }
                Ok(())
            })?;
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
