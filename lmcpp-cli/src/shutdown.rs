//! The signals that end a foreground process: Ctrl-C (SIGINT), SIGTERM (service
//! managers, `kill`) and SIGHUP (a closed terminal); on Windows the console's Ctrl-C,
//! Ctrl-Break (what lmcpp itself sends to stop a process group gracefully) and close
//! events. Each stops the server gracefully, where the default action would kill lmcpp and
//! leave the kernel (or the Job object) to kill the server. A proxy with a config file
//! takes SIGHUP as "read the file again" instead, unless its terminal is gone
//! (`commands/proxy/reload.rs`).

use anyhow::{Context, Result};

/// The name [`Shutdown::recv`] gives SIGHUP (never received on Windows).
pub(crate) const HANGUP: &str = "SIGHUP";

/// What stops a foreground process, as its start-up line tells the user.
pub(crate) const STOPPED_BY: &str = os::STOPPED_BY;

/// The same but SIGHUP, for a proxy that reloads its config on it; `None` where there is
/// no SIGHUP.
pub(crate) const STOPPED_BY_BUT_HANGUP: Option<&str> = os::STOPPED_BY_BUT_HANGUP;

/// Listens for the signals from creation on, so one that arrives while a server starts
/// is not lost (and does not kill lmcpp mid-way).
pub(crate) struct Shutdown {
    signals: Vec<(&'static str, os::Listener)>,
}

impl Shutdown {
    /// Installs the handlers.
    pub(crate) fn listen() -> Result<Self> {
        let signals = os::KINDS
            .iter()
            .map(|&(name, kind)| {
                os::listen(kind)
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
                os::recv(signal).await;
                *name
            })
        });
        futures_util::future::select_all(waits).await.0
    }
}

#[cfg(unix)]
mod os {
    use tokio::signal::unix::{Signal, SignalKind, signal};

    pub(super) type Listener = Signal;

    pub(super) const STOPPED_BY: &str = "Ctrl-C, SIGTERM or SIGHUP";
    pub(super) const STOPPED_BY_BUT_HANGUP: Option<&str> = Some("Ctrl-C or SIGTERM");

    pub(super) const KINDS: &[(&str, SignalKind)] = &[
        ("SIGINT", SignalKind::interrupt()),
        ("SIGTERM", SignalKind::terminate()),
        (super::HANGUP, SignalKind::hangup()),
    ];

    pub(super) fn listen(kind: SignalKind) -> std::io::Result<Listener> {
        signal(kind)
    }

    pub(super) async fn recv(listener: &mut Listener) {
        listener.recv().await;
    }
}

#[cfg(windows)]
mod os {
    use tokio::signal::windows::{CtrlBreak, CtrlC, CtrlClose, ctrl_break, ctrl_c, ctrl_close};

    /// The console events, each with tokio's own listener type.
    #[derive(Clone, Copy)]
    pub(super) enum Kind {
        CtrlC,
        CtrlBreak,
        CtrlClose,
    }

    pub(super) const STOPPED_BY: &str = "Ctrl-C, Ctrl-Break or closing the console";
    pub(super) const STOPPED_BY_BUT_HANGUP: Option<&str> = None;

    pub(super) enum Listener {
        CtrlC(CtrlC),
        CtrlBreak(CtrlBreak),
        CtrlClose(CtrlClose),
    }

    pub(super) const KINDS: &[(&str, Kind)] = &[
        ("Ctrl-C", Kind::CtrlC),
        ("Ctrl-Break", Kind::CtrlBreak),
        ("console close", Kind::CtrlClose),
    ];

    pub(super) fn listen(kind: Kind) -> std::io::Result<Listener> {
        Ok(match kind {
            Kind::CtrlC => Listener::CtrlC(ctrl_c()?),
            Kind::CtrlBreak => Listener::CtrlBreak(ctrl_break()?),
            Kind::CtrlClose => Listener::CtrlClose(ctrl_close()?),
        })
    }

    pub(super) async fn recv(listener: &mut Listener) {
        match listener {
            Listener::CtrlC(l) => l.recv().await,
            Listener::CtrlBreak(l) => l.recv().await,
            Listener::CtrlClose(l) => l.recv().await,
        };
    }
}
