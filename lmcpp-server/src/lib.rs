//! Supervises `llama-server` processes and talks to them, typed, over a Unix socket or HTTP.
