//! The `lmcpp` command.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod cli;
mod closed_stdout;
mod commands;
mod render;
mod shutdown;

use std::process::ExitCode;

use clap::Parser;

/// Exit codes: 0 success, 1 the work failed, 2 bad input (clap uses 2 for usage errors too).
const EXIT_FAILURE: u8 = 1;
const EXIT_BAD_INPUT: u8 = 2;

/// An error that is the user's input, not a failure of the work.
#[derive(Debug)]
pub(crate) struct BadInput(pub(crate) String);

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

fn main() -> ExitCode {
    closed_stdout::install_panic_hook();
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    // A `println!` to a closed stdout panics; unwinding stops what the command started,
    // and the closed stdout then ends the command quietly, like an error saying so.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(commands::dispatch(cli))
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
            eprintln!("error: {err:#}");
            if err.downcast_ref::<BadInput>().is_some() || is_bad_input(&err) {
                ExitCode::from(EXIT_BAD_INPUT)
            } else {
                ExitCode::from(EXIT_FAILURE)
            }
        }
    }
}

/// Library errors that mean the input was wrong (a missing or non-GGUF model file, an
/// unknown server id, an invalid request).
fn is_bad_input(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        if let Some(e) = e.downcast_ref::<lmcpp::Error>() {
            return match e {
                lmcpp::Error::Toolchain(t) => toolchain_bad_input(t),
                lmcpp::Error::Server(s) => server_bad_input(s),
                _ => false,
            };
        }
        e.downcast_ref::<lmcpp::toolchain::Error>()
            .is_some_and(toolchain_bad_input)
            || e.downcast_ref::<lmcpp::server::Error>()
                .is_some_and(server_bad_input)
    })
}

fn toolchain_bad_input(e: &lmcpp::toolchain::Error) -> bool {
    use lmcpp::toolchain::Error as T;
    matches!(
        e,
        T::ModelFileMissing { .. }
            | T::InvalidModelSource { .. }
            | T::GgufBadMagic { .. }
            | T::DownloadNotGguf { .. }
            | T::UnknownModel { .. }
            | T::AmbiguousModel { .. }
            | T::InvalidRequest { .. }
            | T::InvalidUrl { .. }
    )
}

fn server_bad_input(e: &lmcpp::server::Error) -> bool {
    e.is_user_error()
}
