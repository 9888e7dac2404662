//! Arguments rendered for the binary at hand: checked and adapted against its `--help`
//! before anything is spawned.

use std::time::Duration;

use lmcpp_server::{Error, LaunchOptions, Server};
use lmcpp_types::args::help::BinaryFlags;

use crate::support::{eventually, launch_options, script};
use lmcpp_server::Classify;

/// Help lines in the shape of llama.cpp of August 2025 (4227c9b): `--flash-attn` is a
/// switch there, and there is no `--sleep-idle-seconds`.
const OLD_HELP: &str = "\
-c,    --ctx-size N                     size of the prompt context (default: 4096)
-fa,   --flash-attn                     enable Flash Attention (default: disabled)
-m,    --model FNAME                    model path
--host HOST                             ip address to listen
--port PORT                             port to listen (default: 8080)
";

fn options(dir: &std::path::Path, body: &str) -> LaunchOptions {
    let mut opts = launch_options(dir, script(dir, "server", body));
    opts.flags = Some(BinaryFlags::from_help(OLD_HELP, "4227c9b"));
    opts
}

#[tokio::test]
async fn an_older_binary_gets_the_argv_form_it_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path(), "echo \"args=$*\"; exec sleep 60");
    opts.args.flash_attn = Some("on".into());
    opts.args.ctx_size = Some(64);
    let server = Server::spawn(opts).await.unwrap();
    let log = server.log_path().to_owned();
    assert!(
        eventually(Duration::from_secs(5), || {
            std::fs::read_to_string(&log).is_ok_and(|l| l.contains("args="))
        })
        .await
    );
    let line = std::fs::read_to_string(&log).unwrap();
    assert!(line.contains("--flash-attn"), "{line}");
    assert!(!line.contains("--flash-attn on"), "{line}");
    assert!(line.contains("--ctx-size 64"), "{line}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_flag_the_binary_lacks_fails_before_spawning_naming_flag_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("spawned");
    let mut opts = options(
        dir.path(),
        &format!("touch {}; exec sleep 60", marker.display()),
    );
    opts.args.sleep_idle_seconds = Some(30);
    let err = Server::spawn(opts).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::InvalidArgs { .. }), "{msg}");
    assert!(
        msg.contains("--sleep-idle-seconds") && msg.contains("30") && msg.contains("4227c9b"),
        "{msg}"
    );
    assert!(err.is_user_error());
    assert!(!marker.exists(), "nothing was spawned");
}
