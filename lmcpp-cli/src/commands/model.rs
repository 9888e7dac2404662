//! `lmcpp model …`: pull, list, remove, verify and inspect cached models, and write the demo
//! model. For `rm` and `verify`, what a user names (a source, a sha256, or a unique prefix
//! of one) is resolved against the store before anything is hashed or deleted, so an
//! unknown name is an error that touches nothing.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use lmcpp::toolchain::gguf::estimate::{EstimateOptions, MemoryEstimate, estimate_path};
use lmcpp::toolchain::models::{ModelSource, ModelStore, PullOptions, VerifyStatus};
use serde_json::json;

use super::ctx::{Ctx, human_size};
use crate::cli::{DemoArgs, ModelCmd, PullArgs};
use crate::exit::BadInput;

/// `lmcpp model <command>`.
pub(crate) async fn model(ctx: &Ctx, cmd: ModelCmd) -> Result<ExitCode> {
    match cmd {
        ModelCmd::Pull(args) => pull(ctx, args).await,
        ModelCmd::List => list(ctx),
        ModelCmd::Rm { model } => rm(ctx, &ctx.store()?, &model).await,
        ModelCmd::Verify { model } => verify(ctx, &ctx.store()?, model.as_deref()).await,
        ModelCmd::Inspect {
            model,
            ctx_size,
            parallel,
        } => {
            let mut opts = EstimateOptions::default();
            opts.ctx_size = ctx_size;
            opts.parallel = parallel;
            inspect(ctx, &model, &opts).await
        }
        ModelCmd::Demo(args) => demo(ctx, args).await,
    }
}

/// `lmcpp model pull <model>`.
async fn pull(ctx: &Ctx, args: PullArgs) -> Result<ExitCode> {
    let store = ctx.store()?;
    let opts = PullOptions {
        sha256: args.sha256,
        cache_only: args.cache_only,
        no_mmproj: args.no_mmproj,
        ..PullOptions::default()
    };
    let pulled = store.pull_str(&args.model, &opts).await?;
    ctx.output(&pulled, || {
        println!("{}", pulled.path.display());
        // What `owner/repo` alone chose, the other parts and the projector, on stderr so
        // stdout stays one path.
        if let Some(file) = &pulled.repo_file {
            say!("lmcpp: {} is {file}", pulled.alias);
        }
        if pulled.parts.len() > 1 {
            say!("lmcpp: {} parts, all next to the first", pulled.parts.len());
        }
        if let Some(mmproj) = &pulled.mmproj {
            say!("lmcpp: multimodal projector {}", mmproj.display());
        }
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `lmcpp model list`.
fn list(ctx: &Ctx) -> Result<ExitCode> {
    let models = ctx.store()?.list()?;
    ctx.output(&models, || {
        if models.is_empty() {
            println!("no cached models");
            return Ok(());
        }
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
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `lmcpp model inspect <path | cached source>`: the summary, then the memory estimate.
async fn inspect(ctx: &Ctx, model: &str, opts: &EstimateOptions) -> Result<ExitCode> {
    let path = PathBuf::from(model);
    let path = if path.exists() {
        path
    } else {
        let source = ModelSource::parse(model)?;
        ctx.store()?
            .pull(&source, &PullOptions::cache_only())
            .await?
            .path
    };
    let summary = lmcpp::toolchain::models::inspect(&path).await?;
    let memory = estimate_path(&path, opts).await?;
    let shown = Inspected {
        summary: &summary,
        memory: &memory,
    };
    ctx.output(&shown, || {
        let serde_json::Value::Object(map) = serde_json::to_value(&summary)? else {
            return Ok(());
        };
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
        for line in memory_lines(&memory) {
            println!("{line}");
        }
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// What `model inspect --json` prints: the summary's fields and `memory`.
#[derive(serde::Serialize)]
struct Inspected<'a> {
    #[serde(flatten)]
    summary: &'a lmcpp::toolchain::gguf::GgufSummary,
    memory: &'a MemoryEstimate,
}

/// The estimate as `label  value` lines in the style of the summary.
pub(crate) fn memory_lines(m: &MemoryEstimate) -> Vec<String> {
    let mut lines = vec![
        format!(
            "{:<22} {} (weights {} + KV cache {} + compute {})",
            "memory",
            human_size(m.total_bytes),
            human_size(m.weights_bytes),
            human_size(m.kv_cache_bytes),
            human_size(m.compute_bytes)
        ),
        format!(
            "{:<22} {} cells, {} slots{}, {} per slot, K {} / V {}",
            "memory context",
            m.ctx_size,
            m.slots,
            if m.kv_unified {
                " sharing one cache"
            } else {
                ""
            },
            m.ctx_per_slot,
            m.cache_type_k,
            m.cache_type_v
        ),
    ];
    lines.extend(
        m.assumptions
            .iter()
            .map(|a| format!("{:<22} {a}", "memory assumption")),
    );
    lines
}

/// `lmcpp model demo`: writes the demo model for the toolchain the options name.
async fn demo(ctx: &Ctx, args: DemoArgs) -> Result<ExitCode> {
    let tc = ctx.toolchain()?;
    let installed = tc
        .ensure(
            &args.toolchain.request(ctx.home.as_deref()).await?,
            &ctx.progress,
        )
        .await?;
    let path = lmcpp::demo_model(
        tc.layout(),
        Some(&installed),
        args.seed
            .unwrap_or(lmcpp::toolchain::demo::DemoOptions::default().seed),
        args.out.as_deref(),
    )
    .await?;
    ctx.output(&json!({ "path": path }), || {
        println!("{}", path.display());
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Whether `s` reads as a sha256 or a prefix long enough to name one (as `model list` shows).
fn is_digest_like(s: &str) -> bool {
    let s = s.trim();
    (12..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `lmcpp model rm <source | sha256 | prefix>`.
async fn rm(ctx: &Ctx, store: &ModelStore, model: &str) -> Result<ExitCode> {
    if is_digest_like(model) {
        let sha = store.resolve(model)?;
        let removed = store.remove_digest(&sha).await?;
        ctx.output(&removed, || {
            let sources = if removed.sources.is_empty() {
                "no references".to_owned()
            } else {
                removed.sources.join(", ")
            };
            println!("removed {} ({sources})", removed.sha256);
            Ok(())
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    let source = ModelSource::parse(model)?;
    if !store.remove(&source).await? {
        return Err(BadInput(format!(
            "{model} is not in the model cache; see `lmcpp model list`"
        ))
        .into());
    }
    ctx.output(&json!({ "removed": model }), || {
        println!("removed {model}");
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `lmcpp model verify [source | sha256 | prefix]`.
async fn verify(ctx: &Ctx, store: &ModelStore, model: Option<&str>) -> Result<ExitCode> {
    let reports = match model {
        Some(m) => {
            let sha = store.resolve(m)?;
            vec![store.verify_digest(&sha).await?]
        }
        None => store.verify().await?,
    };
    let bad = reports
        .iter()
        .filter(|r| !matches!(r.status, VerifyStatus::Ok))
        .count();
    ctx.output(&reports, || {
        for r in &reports {
            println!("{:?}  {}  {}", r.status, r.sha256, r.sources.join(", "));
        }
        println!("{} verified, {} bad", reports.len() - bad, bad);
        Ok(())
    })?;
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_and_prefixes_are_told_from_sources() {
        assert!(is_digest_like(&"ab".repeat(32)));
        assert!(is_digest_like("0123456789abcdef"));
        assert!(!is_digest_like("0123456789a"), "too short to be unique");
        assert!(!is_digest_like("owner/repo:Q4_K_M"));
        assert!(!is_digest_like(&"ab".repeat(33)));
    }
}
