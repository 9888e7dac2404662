//! The OpenAI-compatible endpoints under `/v1`.

pub mod chat;
pub mod completions;
pub mod embeddings;
pub mod models;
