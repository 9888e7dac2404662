//! The `lmcpp` command.

#![allow(clippy::print_stdout)]

/// A line for the user on stderr, as `eprintln!` writes it, but one that never panics: a
/// line that cannot be written is dropped (the terminal was closed, and its hang-up is
/// stopping a server or proxy, which must still stop in order). `eprintln!` is linted out
/// of this crate.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod cli;
mod closed_stdout;
mod commands;
mod exit;
mod render;
mod shutdown;

use std::process::ExitCode;

use clap::Parser;

use exit::EXIT_FAILURE;

fn main() -> ExitCode {
    closed_stdout::install_panic_hook();
    let cli = cli::Cli::parse();
    // The proxy of `lmcpp serve` sits in the path of every request. On a current-thread
    // runtime its forwarding wakes no second worker (the proxy bench, both runtimes on 2
    // cores: time to first streamed chunk 1.006-1.018 of direct against 0.991-1.087, and
    // /tokenize at concurrency 1 0.53 against 0.47-0.48); its heavy work (builds,
    // downloads, hashing) runs in child processes and on the blocking pool.
    let mut builder = if commands::runs_proxy(&cli) {
        let mut current = tokio::runtime::Builder::new_current_thread();
        // Its only threads of its own are the blocking pool's.
        current.thread_name("lmcpp-blocking");
        current
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            say!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    // A `println!` to a closed stdout panics; unwinding stops what the command started,
    // and the closed stdout then ends the command quietly, like an error saying so.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // On the heap: a command's future (the largest of them, inline in `dispatch`'s) is
        // bigger than Windows gives a main thread (1 MiB) in a debug build.
        runtime.block_on(Box::pin(commands::dispatch(cli)))
    }));
    let result = match outcome {
        Ok(result) => result,
        Err(payload) if closed_stdout::is_closed_stdout_panic(payload.as_ref()) => {
            return ExitCode::SUCCESS;
        }
        Err(payload) => std::panic::resume_unwind(payload),
    };
    match result {
        Ok(code) => code,
        Err(err) if closed_stdout::is_closed_stdout_error(&err) => ExitCode::SUCCESS,
        Err(err) => {
            say!("error: {err:#}");
            exit::code(&err)
        }
    }
}
