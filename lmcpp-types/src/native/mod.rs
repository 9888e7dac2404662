//! The native llama.cpp endpoints (not OpenAI-compatible).

pub mod completion;
pub mod embedding;
pub mod infill;
pub mod rerank;
pub mod template;
pub mod tokenize;
