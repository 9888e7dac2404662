//! `cargo xtask codegen`.

use anyhow::Result;

pub(crate) fn run(_args: &[String]) -> Result<()> {
    anyhow::bail!("`cargo xtask codegen` is not implemented yet")
}
