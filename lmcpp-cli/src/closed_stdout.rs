//! A closed stdout is the reader's choice (`lmcpp props | head -1`), not a failure: every
//! command then ends quietly with status 0, whether the write that found the pipe closed
//! returned an error or was a `println!`, which panics on it.
//!
//! Rust ignores SIGPIPE, so a write to a closed pipe fails with `EPIPE` instead of
//! killing the process; restoring the signal's default would also let a server closing
//! its socket kill the client. Instead the error is recognised where it ends up: in the
//! command's error chain, or in the panic `println!` raises, which unwinds (stopping any
//! server the command started) and is caught in `main`.

use std::any::Any;
use std::io;

/// What `std` says when `print!`/`println!` cannot write to stdout.
const PRINT_PANIC: &str = "failed printing to stdout";

/// `EPIPE` on Linux and macOS.
const EPIPE: i32 = 32;

/// Keeps the default panic output for everything but a `println!` to a closed stdout.
pub(crate) fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !is_closed_stdout_panic(info.payload()) {
            default(info);
        }
    }));
}

/// Whether a panic payload is `println!` failing on a closed stdout.
pub(crate) fn is_closed_stdout_panic(payload: &(dyn Any + Send)) -> bool {
    let message = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied());
    let epipe = io::Error::from_raw_os_error(EPIPE).to_string();
    message.is_some_and(|m| m.starts_with(PRINT_PANIC) && m.ends_with(&epipe))
}

/// Whether a command failed only because stdout was closed.
pub(crate) fn is_closed_stdout_error(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
            || e.downcast_ref::<serde_json::Error>()
                .and_then(serde_json::Error::io_error_kind)
                == Some(io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_only_a_closed_stdout() {
        let closed = format!("{PRINT_PANIC}: {}", io::Error::from_raw_os_error(EPIPE));
        assert!(is_closed_stdout_panic(&closed));
        assert!(!is_closed_stdout_panic(&"index out of bounds"));
        assert!(!is_closed_stdout_panic(
            &"failed printing to stdout: disk full"
        ));
        let err = anyhow::Error::new(io::Error::from(io::ErrorKind::BrokenPipe)).context("x");
        assert!(is_closed_stdout_error(&err));
        assert!(!is_closed_stdout_error(&anyhow::anyhow!("broken pipe")));
    }
}
