//! `cargo xtask`: the build matrix, code generation and checks for this workspace.

mod codegen;
mod fixtures;
mod schemas;

use anyhow::{Result, bail};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(cmd) = args.next() else {
        bail!("usage: cargo xtask <codegen|schemas> [--check]");
    };
    let rest: Vec<String> = args.collect();
    match cmd.as_str() {
        "codegen" => codegen::run(&rest),
        "schemas" => schemas::run(&rest),
        "fixtures" => fixtures::run(&rest),
        other => bail!("unknown xtask command `{other}`; try: codegen, schemas"),
    }
}
