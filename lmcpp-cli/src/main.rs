//! The `lmcpp` command.

fn main() {}
