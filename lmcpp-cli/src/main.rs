//! The `lmcpp` command.

#![allow(clippy::print_stdout, clippy::print_stderr)]

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
            exit::code(&err)
        }
    }
}
