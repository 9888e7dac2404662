//! `cargo xtask prepare`: everything the end-to-end tests need, made through the project's
//! own code — `llama-server` from the toolchain cache (built on first use) and the demo model.
//!
//! The toolchain lives in its normal cache (`$LMCPP_HOME`, else the platform data dir), so
//! the ~10 minute first build is paid once per machine, not once per clone or test run.
//! The demo model and `paths.json` go to `target/lmcpp-test/` of this checkout.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::workspace_root;
use lmcpp_test_support::PreparedPaths;
use lmcpp_toolchain::demo::{DEMO_VOCAB, DemoOptions, write_demo_model};
use lmcpp_toolchain::{ProgressEvent, SharedProgress, Toolchain, ToolchainRequest};

/// The llama.cpp versions the end-to-end suites run against: the pinned one (every test)
/// and the oldest supported one (the end-to-end binaries again), both built through the
/// toolchain cache.
pub(crate) const VERSIONS: &[&str] = &["pinned", "pypi:0.3.16"];

/// Where the end-to-end prerequisites were recorded.
pub(crate) struct Prepared {
    /// The pinned version's record.
    pub(crate) paths_json: PathBuf,
    /// The pinned version's label.
    pub(crate) label: String,
    /// The older versions' records, with their labels.
    pub(crate) others: Vec<(String, PathBuf)>,
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    match args {
        [] => prepare().map(|_| ()),
        [flag, spec] if flag == "--llama-version" => {
            let (label, path) = prepare_one(spec)?;
            eprintln!(
                "xtask: run the end-to-end suites against llama.cpp {label} with\n  \
                 LMCPP_TEST_PATHS={} cargo nextest run --workspace -E 'binary(e2e)'",
                path.display()
            );
            Ok(())
        }
        [bad, ..] => bail!(
            "`cargo xtask prepare` takes no arguments, or `--llama-version <VERSION>` to \
             prepare one more llama.cpp version (got `{bad}`)"
        ),
    }
}

/// Prepares one llama.cpp version besides the default ones (`spec` as `lmcpp toolchain
/// install --llama-version` takes it) and records it in `paths-<label>.json`; the demo
/// model of the default preparation is reused when there is one. Returns the label and
/// the record's path.
fn prepare_one(spec: &str) -> Result<(String, PathBuf)> {
    let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    let toolchain = Toolchain::new(None).context("opening the toolchain cache")?;
    let root = workspace_root();
    let out_dir = PreparedPaths::default_location(&root)
        .parent()
        .map_or_else(workspace_root, Path::to_path_buf);
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let existing = PreparedPaths::load_from(&PreparedPaths::default_location(&root))
        .ok()
        .map(|p| (p.demo_model, p.vocab_gguf));
    let (label, installed) = ensure(&rt, &toolchain, &line_progress(), spec)?;
    let (model, vocab) = match existing {
        Some(d) => d,
        None => write_demo(installed.source_dir.as_deref(), &out_dir)?,
    };
    let path = PreparedPaths::location_for(&root, &label);
    record(&installed, &label, model, vocab)
        .write(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok((label, path))
}

/// Ensures `llama-server` of the version `spec` through the toolchain cache (built on
/// first use); returns its label and what the toolchain made.
fn ensure(
    rt: &tokio::runtime::Runtime,
    toolchain: &Toolchain,
    progress: &SharedProgress,
    spec: &str,
) -> Result<(String, lmcpp_toolchain::Installed)> {
    let version = lmcpp_toolchain::versions::parse(spec)
        .with_context(|| format!("reading llama.cpp version {spec}"))?;
    let label = version.label();
    let request = ToolchainRequest {
        version,
        ..ToolchainRequest::default()
    };
    eprintln!("xtask: llama.cpp {label}");
    let installed = rt
        .block_on(toolchain.ensure(&request, progress))
        .with_context(|| format!("ensuring llama-server {label} through lmcpp-toolchain"))?;
    eprintln!(
        "xtask: llama-server {} ({}, {}, {})",
        installed.llama_server.display(),
        installed.backend,
        installed.source,
        installed
            .version
            .as_ref()
            .map_or_else(|| "version unknown".into(), |v| v.line.clone())
    );
    Ok((label, installed))
}

/// The record of one prepared version.
fn record(
    installed: &lmcpp_toolchain::Installed,
    label: &str,
    demo_model: PathBuf,
    vocab_gguf: PathBuf,
) -> PreparedPaths {
    PreparedPaths {
        llama_server: installed.llama_server.clone(),
        rpc_server: installed.rpc_server.clone(),
        demo_model,
        vocab_gguf,
        source_dir: installed.source_dir.clone(),
        llama_version: label.to_owned(),
        help: installed.help.clone(),
    }
}

/// Plain-line progress for xtask output (CI logs are not terminals).
pub(crate) fn line_progress() -> SharedProgress {
    let last = std::sync::Mutex::new((String::new(), 0u8, 0u64));
    Arc::new(move |event: ProgressEvent| {
        let Ok(mut last) = last.lock() else { return };
        match event {
            ProgressEvent::Stage { name } => {
                eprintln!("xtask: {name}");
                *last = (name, 0, 0);
            }
            ProgressEvent::BuildPercent { percent, .. } if percent >= last.1 + 10 => {
                last.1 = percent;
                eprintln!("xtask:   build {percent}%");
            }
            ProgressEvent::Bytes { done, total } if done >= last.2 + (32 << 20) => {
                last.2 = done;
                let of = total.map(|t| format!(" of {t}")).unwrap_or_default();
                eprintln!("xtask:   {done} bytes{of}");
            }
            ProgressEvent::Waiting { path, holder } => eprintln!(
                "xtask: waiting for {} (lock {})",
                holder.as_deref().unwrap_or("another process"),
                path.display()
            ),
            ProgressEvent::Note { message } => eprintln!("xtask: {message}"),
            _ => {}
        }
    })
}

/// The hub-cache tests check lmcpp's layout with the `huggingface_hub` package itself;
/// install it from the package index when it is missing.
fn ensure_huggingface_hub() -> Result<()> {
    let python = std::env::var("LMCPP_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let has = std::process::Command::new(&python)
        .args(["-c", "import huggingface_hub"])
        .output()
        .is_ok_and(|o| o.status.success());
    if has {
        return Ok(());
    }
    eprintln!("xtask: installing huggingface_hub for the hub-cache tests");
    let status = std::process::Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "huggingface_hub",
        ])
        .status()
        .context("running pip")?;
    if !status.success() {
        bail!("`{python} -m pip install huggingface_hub` failed ({status})");
    }
    Ok(())
}

pub(crate) fn prepare() -> Result<Prepared> {
    let started = Instant::now();
    ensure_huggingface_hub()?;
    let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    let toolchain = Toolchain::new(None).context("opening the toolchain cache")?;
    eprintln!(
        "xtask: toolchain cache {}",
        toolchain.layout().root().display()
    );
    let progress = line_progress();
    let out_dir = PreparedPaths::default_location(&workspace_root())
        .parent()
        .map_or_else(workspace_root, Path::to_path_buf);
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let mut demo: Option<(PathBuf, PathBuf)> = None;
    let mut paths_json = None;
    let mut others = Vec::new();
    for (i, spec) in VERSIONS.iter().enumerate() {
        let (label, installed) = ensure(&rt, &toolchain, &progress, spec)?;
        // The demo model is written once, from the pinned tree's vocabulary.
        let (model, vocab) = match &demo {
            Some(d) => d.clone(),
            None => {
                let d = write_demo(installed.source_dir.as_deref(), &out_dir)?;
                demo = Some(d.clone());
                d
            }
        };
        let path = if i == 0 {
            PreparedPaths::default_location(&workspace_root())
        } else {
            PreparedPaths::location_for(&workspace_root(), &label)
        };
        record(&installed, &label, model, vocab)
            .write(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        if i == 0 {
            paths_json = Some((label, path));
        } else {
            others.push((label, path));
        }
    }
    let (label, paths_json) = paths_json.context("no llama.cpp version to prepare")?;
    eprintln!(
        "xtask: prepared {} in {:.1}s",
        paths_json.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(Prepared {
        paths_json,
        label,
        others,
    })
}

/// Writes the demo model from the vocabulary of `source_dir` (a llama.cpp tree).
fn write_demo(source_dir: Option<&Path>, out_dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let source_dir = source_dir.context(
        "the cached toolchain has no llama.cpp source tree to take the demo vocabulary from; \
         remove it with `cargo run -p lmcpp-cli -- toolchain remove` and run prepare again",
    )?;
    let vocab = source_dir.join(DEMO_VOCAB);
    let demo = out_dir.join("demo.gguf");
    let model = write_demo_model(&vocab, &demo, &DemoOptions::default())
        .with_context(|| format!("writing the demo model from {}", vocab.display()))?;
    eprintln!(
        "xtask: demo model {} ({} bytes)",
        model.path.display(),
        model.size
    );
    Ok((model.path, vocab))
}
