//! Two models behind one endpoint, from Rust, with the library alone:
//!
//! ```sh
//! cargo run -p lmcpp-cli --no-default-features --example two_models -- [MODEL_A] [MODEL_B]
//! ```
//!
//! Each model is a path, a URL, a Hugging Face reference or `demo` (the default for both:
//! the project's tiny generated model, served twice with different contexts). The
//! toolchain provides `llama-server` (`LMCPP_SERVER_BIN` names one instead). Each model
//! starts at its first request; the example asks both, prints what the endpoint lists and
//! stops everything.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use lmcpp::server::Classify;
use lmcpp::types::native::tokenize::TokenizeRequest;
use lmcpp::{Lmcpp, ProxyModel};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let a = args.next().unwrap_or_else(|| "demo".to_owned());
    let b = args.next().unwrap_or_else(|| "demo".to_owned());
    let mut small = ProxyModel::new("small", a.parse()?);
    small.args.ctx_size = Some(256);
    let mut large = ProxyModel::new("large", b.parse()?);
    large.args.ctx_size = Some(1024);
    let mut builder = Lmcpp::proxy()
        .memory_budget(4 << 30)
        .model(small)
        .model(large);
    if let Some(bin) = std::env::var_os("LMCPP_SERVER_BIN") {
        builder = builder.llama_server(bin);
    }
    let proxy = match builder.start().await {
        Ok(proxy) => proxy,
        Err(e) if e.is_user_error() => {
            eprintln!("two_models: {e}");
            std::process::exit(2);
        }
        Err(e) => return Err(e.into()),
    };
    let client = proxy.client();
    for alias in ["small", "large"] {
        let mut request = TokenizeRequest::new("Hello from two models");
        request.extra.insert("model".into(), alias.into());
        let tokens = client.tokenize(&request).await?;
        println!("{alias}: {} tokens", tokens.tokens.len());
    }
    for model in proxy.models() {
        println!("{} {:?}", model.alias, model.state);
    }
    proxy.stop().await?;
    Ok(())
}
