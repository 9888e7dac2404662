//! `cargo xtask schemas`.

use anyhow::Result;

pub(crate) fn run(_args: &[String]) -> Result<()> {
    anyhow::bail!("`cargo xtask schemas` is not implemented yet")
}
