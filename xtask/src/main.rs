//! `cargo xtask`: the build matrix, code generation and checks for this workspace.

fn main() {}
