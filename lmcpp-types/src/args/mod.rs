//! `ServerArgs`: every `llama-server` flag as a typed field, rendered to argv.

/// Typed command line of `llama-server` (placeholder until generated).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServerArgs {}
