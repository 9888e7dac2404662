//! The `lmcpp` command.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod cli;
mod commands;
mod render;
mod target;

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
    match runtime.block_on(commands::dispatch(cli)) {
        Ok(code) => code,
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

/// Library errors that mean the input was wrong (a missing or non-GGUF model file).
fn is_bad_input(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        matches!(
            e.downcast_ref::<lmcpp::server::Error>(),
            Some(
                lmcpp::server::Error::ModelNotFound { .. }
                    | lmcpp::server::Error::ModelNotGguf { .. }
                    | lmcpp::server::Error::UnknownServer { .. }
                    | lmcpp::server::Error::BinaryNotFound { .. }
            )
        )
    })
}
