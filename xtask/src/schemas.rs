//! `cargo xtask schemas [--check]`: writes the JSON Schemas of the request and response
//! types (from `lmcpp_types::schema::all`) to `lmcpp-types/schemas/<Type>.json`;
//! `--check` fails when a file is missing, different or left over.

use std::collections::BTreeSet;

use anyhow::{Context, Result, bail};

use crate::workspace_root;

const DIR: &str = "lmcpp-types/schemas";

pub(crate) fn run(args: &[String]) -> Result<()> {
    let check = match args {
        [] => false,
        [a] if a == "--check" => true,
        other => bail!("unknown schemas options {other:?}; try --check"),
    };
    let dir = workspace_root().join(DIR);
    if !check {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut wanted = BTreeSet::new();
    let mut stale = Vec::new();
    for (name, schema) in lmcpp_types::schema::all() {
        let file = format!("{name}.json");
        let text = serde_json::to_string_pretty(&schema)? + "\n";
        let path = dir.join(&file);
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current != text {
            if check {
                stale.push(file.clone());
            } else {
                std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
        wanted.insert(file);
    }
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries {
            let entry = entry?;
            let file = entry.file_name().to_string_lossy().into_owned();
            if file.ends_with(".json") && !wanted.contains(&file) {
                if check {
                    stale.push(file);
                } else {
                    std::fs::remove_file(entry.path())?;
                }
            }
        }
    }
    if !stale.is_empty() {
        bail!(
            "{DIR} is stale ({}); run `cargo xtask schemas` and commit the result",
            stale.join(", ")
        );
    }
    Ok(())
}
