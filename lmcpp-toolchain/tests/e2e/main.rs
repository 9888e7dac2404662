//! x
mod models;
