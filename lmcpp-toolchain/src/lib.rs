//! Installs or builds `llama-server`, fetches and verifies models, and reads/writes GGUF files.

pub mod progress;

pub use progress::{NoProgress, Progress, ProgressEvent, SharedProgress, no_progress};
