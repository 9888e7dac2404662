//! Typed request and response schemas for every `llama-server` endpoint, and `ServerArgs`.
