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
    let props: lmcpp::types::props::Props = t.client.get(&t.get_path("/props")).await?;
    ctx.print_json(&props)?;
    Ok(ExitCode::SUCCESS)
}

/// `lmcpp health`: `ok`, or the server's answer as JSON (a proxy answers for itself).
pub(crate) async fn health(ctx: &Ctx, t: &TargetArgs) -> Result<ExitCode> {
    let t = target::resolve_process(ctx, t).await?;
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
        let metrics = match &t.model {
            None => t.client.metrics().await?,
            Some(_) => {
                let text = metrics_text(&t).await?;
                lmcpp::types::metrics::Metrics::parse(&text)
                    .map_err(|e| anyhow::anyhow!("the metrics are not Prometheus text: {e}"))?
            }
        };
        let samples: Vec<_> = metrics
            .families
            .iter()
            .flat_map(|f| &f.samples)
            .map(|s| json!({ "name": s.name, "labels": s.labels, "value": s.value }))
            .collect();
        ctx.print_json(&samples)?;
    } else {
        print!("{}", metrics_text(&t).await?);
    }
    Ok(ExitCode::SUCCESS)
}

/// `GET /metrics` as text, of the target's model when it is a proxy.
async fn metrics_text(t: &target::Target) -> Result<String> {
    if t.model.is_none() {
        return Ok(t.client.metrics_text().await?);
    }
    let path = t.get_path("/metrics");
    let raw = t.client.raw(http::Method::GET, &path, None).await?;
    if !raw.status.is_success() {
        anyhow::bail!(
            "{path} answered {}: {}",
            raw.status,
            String::from_utf8_lossy(&raw.body)
        );
    }
    Ok(String::from_utf8_lossy(&raw.body).into_owned())
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
