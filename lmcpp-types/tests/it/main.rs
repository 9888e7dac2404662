//! Fast integration tests of lmcpp-types: fixture round trips, forward compatibility,
//! error bodies, `ServerArgs` rendering and validation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod args;
mod compat;
mod fixtures;
mod help_versions;
