//! `cargo xtask test`: prepare the end-to-end prerequisites, then run every test.
//!
//! After each pass it prints what the end-to-end tests found that llama.cpp version to
//! lack (the report they append to beside its record), so a version's gaps are named in
//! the run's output rather than only in the captured output of passing tests.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::prepare::prepare;
use crate::workspace_root;
use lmcpp_test_support::{PreparedPaths, read_report};

/// Removes the report of what `label` lacks before a pass writes it anew.
fn clear_report(paths: &Path, label: &str) {
    let _ = std::fs::remove_file(PreparedPaths::report_location(paths, label));
}

/// Prints the report of what the end-to-end tests found `label` to lack.
fn print_report(paths: &Path, label: &str) {
    let report = PreparedPaths::report_location(paths, label);
    let lines = read_report(&report);
    if lines.is_empty() {
        eprintln!("xtask: llama.cpp {label}: the end-to-end tests found nothing it lacks");
        return;
    }
    eprintln!(
        "xtask: llama.cpp {label} lacks, as the end-to-end tests found ({}):",
        report.display()
    );
    for line in lines {
        eprintln!("xtask:   {line}");
    }
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    let prepared = prepare()?;
    let root = workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let has_nextest = Command::new(&cargo)
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    let mut cmd = Command::new(&cargo);
    if has_nextest {
        cmd.args(["nextest", "run", "--workspace", "--no-fail-fast"]);
    } else {
        eprintln!("xtask: cargo-nextest not found; using cargo test");
        cmd.args(["test", "--workspace", "--no-fail-fast"]);
    }
    cmd.args(args)
        .current_dir(&root)
        .env("LMCPP_TEST_PATHS", &prepared.paths_json);
    eprintln!("xtask: running {cmd:?}");
    clear_report(&prepared.paths_json, &prepared.label);
    let status = cmd.status().context("running the test runner")?;
    print_report(&prepared.paths_json, &prepared.label);
    let mut failed = Vec::new();
    if !status.success() {
        failed.push(format!("tests failed ({status})"));
    }
    // The end-to-end suites once more against every older llama.cpp version.
    for (label, paths) in &prepared.others {
        let mut cmd = Command::new(&cargo);
        if has_nextest {
            cmd.args([
                "nextest",
                "run",
                "--workspace",
                "--no-fail-fast",
                "-E",
                "binary(e2e)",
            ]);
        } else {
            cmd.args(["test", "--workspace", "--no-fail-fast", "--test", "e2e"]);
        }
        cmd.args(args)
            .current_dir(&root)
            .env("LMCPP_TEST_PATHS", paths);
        eprintln!("xtask: end-to-end tests against llama.cpp {label}: {cmd:?}");
        clear_report(paths, label);
        let status = cmd.status().context("running the test runner")?;
        print_report(paths, label);
        if !status.success() {
            failed.push(format!(
                "end-to-end tests against llama.cpp {label} failed ({status})"
            ));
        }
    }
    if !failed.is_empty() {
        bail!("{}", failed.join("; "));
    }
    // nextest does not run doc tests; the README's and docs/' Rust examples are ones.
    let status = Command::new(&cargo)
        .args(["test", "--workspace", "--doc"])
        .current_dir(&root)
        .env("LMCPP_TEST_PATHS", &prepared.paths_json)
        .status()
        .context("running doc tests")?;
    if !status.success() {
        bail!("doc tests failed ({status})");
    }
    Ok(())
}
