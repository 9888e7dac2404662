//! `lmcpp model rm` and `lmcpp model verify`: what a user names (a source, a sha256, or a
//! unique prefix of one) is resolved against the store before anything is hashed or
//! deleted, so an unknown name is an error that touches nothing.

use std::process::ExitCode;

use anyhow::Result;
use lmcpp::toolchain::Error as ToolchainError;
use lmcpp::toolchain::models::{ModelSource, ModelStore, VerifyStatus};
use serde_json::json;

use crate::BadInput;
use crate::commands::Ctx;

/// Whether `s` reads as a sha256 or a prefix long enough to name one (as `model list` shows).
fn is_digest_like(s: &str) -> bool {
    let s = s.trim();
    (12..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Unknown or ambiguous names are the user's input, not a failure of the work.
fn user_error(e: ToolchainError) -> anyhow::Error {
    match e {
        ToolchainError::UnknownModel { .. } | ToolchainError::AmbiguousModel { .. } => {
            BadInput(e.to_string()).into()
        }
        other => other.into(),
    }
}

/// `lmcpp model rm <source | sha256 | prefix>`.
pub(crate) async fn rm(ctx: &Ctx, store: &ModelStore, model: &str) -> Result<ExitCode> {
    if is_digest_like(model) {
        let sha = store.resolve(model).map_err(user_error)?;
        let removed = store.remove_digest(&sha).await.map_err(user_error)?;
        if ctx.json {
            ctx.print_json(&serde_json::to_value(&removed)?)?;
        } else {
            let sources = if removed.sources.is_empty() {
                "no references".to_owned()
            } else {
                removed.sources.join(", ")
            };
            println!("removed {} ({sources})", removed.sha256);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let source = ModelSource::parse(model)?;
    if !store.remove(&source).await? {
        return Err(BadInput(format!(
            "{model} is not in the model cache; see `lmcpp model list`"
        ))
        .into());
    }
    if ctx.json {
        ctx.print_json(&json!({ "removed": model }))?;
    } else {
        println!("removed {model}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `lmcpp model verify [source | sha256 | prefix]`.
pub(crate) async fn verify(ctx: &Ctx, store: &ModelStore, model: Option<&str>) -> Result<ExitCode> {
    let reports = match model {
        Some(m) => {
            let sha = store.resolve(m).map_err(user_error)?;
            vec![store.verify_digest(&sha).await.map_err(user_error)?]
        }
        None => store.verify().await?,
    };
    let bad = reports
        .iter()
        .filter(|r| !matches!(r.status, VerifyStatus::Ok))
        .count();
    if ctx.json {
        ctx.print_json(&serde_json::to_value(&reports)?)?;
    } else {
        for r in &reports {
            println!("{:?}  {}  {}", r.status, r.sha256, r.sources.join(", "));
        }
        println!("{} verified, {} bad", reports.len() - bad, bad);
    }
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
