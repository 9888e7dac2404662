//! What each `lmcpp` command does, one module per group of commands; this file only
//! dispatches. `ctx` holds what every command may need and the one JSON-or-text output
//! helper; `target` finds the server a command talks to.

mod ctx;
mod gc;
mod generate;
mod inspect;
mod model;
mod proxy;
mod serve;

/// Whether the command is `lmcpp serve` as a multi-model proxy.
pub(crate) fn runs_proxy(cli: &crate::cli::Cli) -> bool {
    matches!(&cli.command, crate::cli::Command::Serve(args) if proxy::wants_proxy(args))
}
mod target;
mod toolchain;

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{Cli, Command};
use crate::render::Renderer;
use ctx::Ctx;

/// Runs the command `cli` names with the global options it carries.
pub(crate) async fn dispatch(cli: Cli) -> Result<ExitCode> {
    let ctx = Ctx {
        home: cli.home,
        llama_server: cli.llama_server,
        runtime_dir: cli.runtime_dir,
        json: cli.json,
        progress: Renderer::shared(cli.quiet),
    };
    match cli.command {
        Command::Toolchain(cmd) => toolchain::toolchain(&ctx, cmd).await,
        Command::Model(cmd) => model::model(&ctx, cmd).await,
        Command::Serve(args) => serve::serve(&ctx, args).await,
        Command::RpcWorker(args) => serve::rpc_worker(&ctx, args).await,
        Command::Ps => serve::ps(&ctx).await,
        Command::Stop(args) => serve::stop(&ctx, args).await,
        Command::Logs(args) => serve::logs(&ctx, args).await,
        Command::Complete(args) => generate::complete(&ctx, args).await,
        Command::Chat(args) => generate::chat(&ctx, args).await,
        Command::Embed(args) => generate::embed(&ctx, args).await,
        Command::Tokenize(args) => generate::tokenize(&ctx, args).await,
        Command::Detokenize(args) => generate::detokenize(&ctx, args).await,
        Command::Props(t) => inspect::props(&ctx, &t).await,
        Command::Health(t) => inspect::health(&ctx, &t).await,
        Command::Metrics(t) => inspect::metrics(&ctx, &t).await,
        Command::Run(args) => generate::run(&ctx, args).await,
        Command::Schema(args) => inspect::schema(&ctx, args.name.as_deref()),
        Command::Gc(args) => gc::gc(&ctx, args).await,
    }
}
