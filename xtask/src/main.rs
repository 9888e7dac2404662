//! `cargo xtask`: the build matrix, code generation and checks for this workspace.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bench;
mod codegen;
mod cross;
mod fixtures;
mod matrix;
mod prepare;
mod schemas;
mod structure;
mod test;
mod wine;
mod wine_e2e;

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(cmd) = args.next() else {
        bail!(
            "usage: cargo xtask <prepare|test|bench|matrix|codegen|schemas|fixtures|structure|cross|wine-test|wine-e2e> [args]"
        );
    };
    let rest: Vec<String> = args.collect();
    match cmd.as_str() {
        "codegen" => codegen::run(&rest),
        "schemas" => schemas::run(&rest),
        "fixtures" => fixtures::run(&rest),
        "prepare" => prepare::run(&rest),
        "matrix" => matrix::run(&rest),
        "test" => test::run(&rest),
        "bench" => bench::run(&rest),
        "structure" => structure::run(&rest),
        "cross" => cross::run(&rest),
        "wine-test" => wine::run(&rest),
        "wine-e2e" => wine_e2e::run(&rest),
        other => {
            bail!(
                "unknown xtask command `{other}`; try: prepare, test, bench, matrix, codegen, schemas, fixtures, structure, cross, wine-test, wine-e2e"
            )
        }
    }
}

/// The workspace root (the parent of `xtask/`).
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}
