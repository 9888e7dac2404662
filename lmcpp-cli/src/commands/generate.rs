//! Commands that send text to a server and print what it generates or computes: `complete`,
//! `chat`, `run`, `embed`, `tokenize` and `detokenize`.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Result;
use futures_util::StreamExt;
use lmcpp::types::common::Prompt;
use lmcpp::types::native::completion::CompletionRequest;
use lmcpp::types::native::embedding::EmbeddingRequest;
use lmcpp::types::native::tokenize::{DetokenizeRequest, TokenizeRequest};
use lmcpp::types::openai::chat::{ChatCompletionRequest, ChatMessage};

use super::ctx::{Ctx, keyed_client, server_args};
use super::target::{self, live_servers};
use crate::cli::{
    ChatArgs, CompleteArgs, DetokenizeArgs, EmbedArgs, GenOpts, RunArgs, TokenizeArgs,
};

/// The completion request the generation options describe.
fn completion_request(prompt: String, g: &GenOpts) -> CompletionRequest {
    let mut req = CompletionRequest::new(prompt).n_predict(g.n_predict);
    req.params.temperature = g.temperature.map(f64::from);
    req.params.seed = g.seed.map(i64::from);
    req
}

/// `lmcpp complete PROMPT [--stream]`.
pub(crate) async fn complete(ctx: &Ctx, args: CompleteArgs) -> Result<ExitCode> {
    let t = target::resolve(ctx, &args.target).await?;
    let mut req = completion_request(args.prompt, &args.gen_opts);
    t.name_model(&mut req.extra);
    if args.stream && !ctx.json {
        let mut stream = t.client.completion_stream(&req.stream(true)).await?;
        let mut out = std::io::stdout().lock();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            out.write_all(chunk.content.as_bytes())?;
            out.flush()?;
        }
        writeln!(out)?;
    } else {
        let resp = t.client.completion(&req).await?;
        ctx.output(&resp, || {
            println!("{}", resp.content);
            Ok(())
        })?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The streamed chat request the generation options describe.
fn chat_request(history: &[ChatMessage], g: &GenOpts) -> ChatCompletionRequest {
    let mut req = ChatCompletionRequest::new(history.to_vec()).max_tokens(g.n_predict);
    req.params.temperature = g.temperature.map(f64::from);
    req.params.seed = g.seed.map(i64::from);
    req.params.stream = Some(true);
    req
}

/// Streams one chat answer to stdout and returns its text.
async fn stream_chat(
    client: &lmcpp::server::Client,
    req: &ChatCompletionRequest,
) -> Result<String> {
    let mut stream = client.chat_completions_stream(req).await?;
    let mut answer = String::new();
    let mut out = std::io::stdout().lock();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        for choice in &chunk.choices {
            if let Some(text) = &choice.delta.content {
                out.write_all(text.as_bytes())?;
                out.flush()?;
                answer.push_str(text);
            }
        }
    }
    writeln!(out)?;
    Ok(answer)
}

/// `lmcpp chat`: a conversation read line by line from stdin.
pub(crate) async fn chat(ctx: &Ctx, args: ChatArgs) -> Result<ExitCode> {
    let t = target::resolve(ctx, &args.target).await?;
    let mut history = Vec::new();
    if let Some(system) = args.system {
        history.push(ChatMessage::system(system));
    }
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        say!("lmcpp: chatting; /exit or Ctrl-D to leave");
    }
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        if interactive {
            // A prompt that cannot be shown is no reason to stop reading.
            let mut stderr = std::io::stderr();
            let _ = write!(stderr, "> ").and_then(|()| stderr.flush());
        }
        let Some(line) = lines.next() else { break };
        let line = line?;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line == "/exit" || line == "/quit" {
            break;
        }
        history.push(ChatMessage::user(line.to_owned()));
        let mut req = chat_request(&history, &args.gen_opts);
        req.model.clone_from(&t.model);
        let answer = stream_chat(&t.client, &req).await?;
        history.push(ChatMessage::assistant(answer));
    }
    Ok(ExitCode::SUCCESS)
}

/// `lmcpp run PROMPT`: the main job in one command (reusing a running server when one fits).
pub(crate) async fn run(ctx: &Ctx, args: RunArgs) -> Result<ExitCode> {
    let mut server_args = server_args(Vec::new(), Vec::new(), args.api_key.clone());
    // The web UI is off unless asked for, as with `serve` (llama-server's own default is
    // on); a one-shot server has no use for it.
    server_args.ui = Some(false);
    let resolved = ctx
        .builder(args.model)
        .args(server_args)
        .toolchain_request(args.toolchain.request(ctx.home.as_deref()).await?)
        .resolve()
        .await?;
    if let Some(notice) = &resolved.model.notice {
        say!("lmcpp: {notice}");
    }
    let req = chat_request(&[ChatMessage::user(args.prompt)], &args.gen_opts);
    // Reuse a server this tool already runs for the same model and binary.
    let reuse = live_servers(&ctx.registry())?.into_iter().find(|r| {
        same_file(&r.model, &resolved.model.path) && same_file(&r.exe, resolved.binary())
    });
    if let Some(record) = reuse {
        say!(
            "lmcpp: using running server {} ({})",
            record.id,
            record.endpoint
        );
        let client = keyed_client(record.endpoint, args.api_key.as_deref());
        stream_chat(&client, &req).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let running = resolved.start().await?;
    let result = stream_chat(&running.client(), &req).await;
    running.server.stop().await?;
    result?;
    Ok(ExitCode::SUCCESS)
}

/// Whether two paths name the same file (compared as given when either cannot be resolved).
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// `lmcpp embed TEXT...`: always JSON (the vectors are for programs).
pub(crate) async fn embed(ctx: &Ctx, args: EmbedArgs) -> Result<ExitCode> {
    let t = target::resolve(ctx, &args.target).await?;
    let mut req = EmbeddingRequest::new(Prompt::Many(
        args.texts.into_iter().map(Prompt::Text).collect(),
    ));
    t.name_model(&mut req.extra);
    let resp = t.client.embedding(&req).await?;
    ctx.print_json(&resp)?;
    Ok(ExitCode::SUCCESS)
}

/// `lmcpp tokenize TEXT [--pieces]`: token ids, or JSON with the pieces.
pub(crate) async fn tokenize(ctx: &Ctx, args: TokenizeArgs) -> Result<ExitCode> {
    let t = target::resolve(ctx, &args.target).await?;
    let mut req = TokenizeRequest::new(args.text);
    req.with_pieces = Some(args.pieces);
    t.name_model(&mut req.extra);
    let resp = t.client.tokenize(&req).await?;
    if args.pieces {
        // Pieces do not fit the plain list of ids, so they are shown as JSON either way.
        ctx.print_json(&resp)?;
    } else {
        ctx.output(&resp, || {
            let ids: Vec<String> = resp.tokens.iter().map(|t| t.id().to_string()).collect();
            println!("{}", ids.join(" "));
            Ok(())
        })?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `lmcpp detokenize ID...`.
pub(crate) async fn detokenize(ctx: &Ctx, args: DetokenizeArgs) -> Result<ExitCode> {
    let t = target::resolve(ctx, &args.target).await?;
    let mut req = DetokenizeRequest::new(args.tokens);
    t.name_model(&mut req.extra);
    let resp = t.client.detokenize(&req).await?;
    ctx.output(&resp, || {
        println!("{}", resp.content);
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
