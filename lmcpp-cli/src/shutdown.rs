//! The signals that end a foreground process: Ctrl-C (SIGINT), SIGTERM (service
//! managers, `kill`) and SIGHUP (a closed terminal). Each stops the server gracefully,
//! where the default action would kill lmcpp and leave the kernel to SIGKILL the server.

use anyhow::{Context, Result};
use tokio::signal::unix::{Signal, SignalKind, signal};

/// Listens for the signals from creation on, so one that arrives while a server starts
/// is not lost (and does not kill lmcpp mid-way).
pub(crate) struct Shutdown {
    signals: Vec<(&'static str, Signal)>,
}

impl Shutdown {
    /// Installs the handlers.
    pub(crate) fn listen() -> Result<Self> {
        let kinds = [
            ("SIGINT", SignalKind::interrupt()),
            ("SIGTERM", SignalKind::terminate()),
            ("SIGHUP", SignalKind::hangup()),
        ];
        let signals = kinds
            .into_iter()
            .map(|(name, kind)| {
                signal(kind)
                    .map(|s| (name, s))
                    .with_context(|| format!("cannot listen for {name}"))
            })
            .collect::<Result<_>>()?;
        Ok(Self { signals })
    }

    /// Resolves with the name of the first signal received.
    pub(crate) async fn recv(&mut self) -> &'static str {
        let waits = self.signals.iter_mut().map(|(name, signal)| {
            Box::pin(async move {
                signal.recv().await;
                *name
            })
        });
        futures_util::future::select_all(waits).await.0
    }
}
