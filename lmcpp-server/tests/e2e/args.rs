//! Typed `ServerArgs` against the real binary: an argv with many flags set is accepted,
//! the API key reaches the server through its environment, and the flags show in `/props`.

use std::path::PathBuf;

use lmcpp_server::{Client, Error, HttpPort, Server, TransportChoice};
use lmcpp_types::ServerArgs;
use lmcpp_types::health::HealthStatus;

use crate::support::options;

const KEY: &str = "lmcpp-e2e-secret";

#[tokio::test]
async fn rendered_argv_with_many_flags_is_accepted_and_the_api_key_arrives_via_env() {
    let dir = tempfile::tempdir().unwrap();
    let slots = dir.path().join("slots");
    std::fs::create_dir_all(&slots).unwrap();
    let mut opts = options(dir.path(), TransportChoice::Http(HttpPort::Auto));
    set_many_flags(&mut opts.args, slots);

    // A binary that lacks one of these flags (under every spelling lmcpp knows for it, in
    // either sense) gets an argv refused before anything starts, naming the flag and the
    // version, instead of a server that exits on it.
    let rendered = opts.args.to_argv().unwrap();
    let missing = flags_this_binary_lacks(&rendered);
    if !missing.is_empty() {
        let err = Server::launch(opts).await.unwrap_err();
        assert_refused_naming_one_of(&err, &missing);
        crate::support::supports().lacks(
            "rendered_argv_with_many_flags_is_accepted_and_the_api_key_arrives_via_env",
            &missing.join(", "),
            "lmcpp refuses the argv before spawning with UnsupportedFlag naming it",
        );
        return;
    }
    // `launch` fails with the server's exit status and log tail if it rejects the argv.
    let server = Server::launch(opts)
        .await
        .unwrap_or_else(|e| panic!("llama-server rejected the rendered argv: {e}"));
    let argv = &server.record().args;
    assert!(argv.len() > 60, "{argv:?}");
    assert!(!argv.iter().any(|x| x.contains(KEY)), "{argv:?}");
    // `/health` needs no key.
    let plain = Client::new(server.endpoint().clone());
    assert_eq!(plain.health().await.unwrap().status, HealthStatus::Ok);

    // The key travelled through LLAMA_API_KEY: requests without it are refused (`/props`:
    // some versions leave the model listing public, as they do `/health`).
    match plain.props().await {
        Err(Error::Api { status: 401, .. }) => {}
        other => panic!("the API key from the environment is not enforced: {other:?}"),
    }
    let keyed = Client::builder(server.endpoint().clone())
        .api_key(KEY)
        .build();
    let models = keyed.models().await.unwrap();
    assert_eq!(models.data[0].id, "demo");

    // Settings from argv are visible in /props.
    let props = keyed.props().await.unwrap();
    assert_eq!(props.total_slots, 2);
    let params = props
        .default_generation_settings
        .and_then(|d| d.params)
        .expect("params");
    assert_eq!(params.top_k, Some(20));
    assert_eq!(params.seed, Some(42));
    server.stop().await.unwrap();
}

/// Sets many flags at once, of every kind: numbers, strings, switches, lists, a path, the
/// API key and pass-through flags.
fn set_many_flags(a: &mut ServerArgs, slots: PathBuf) {
    a.ctx_size = Some(1024);
    a.parallel = Some(2);
    a.threads = Some(1);
    a.threads_batch = Some(1);
    a.threads_http = Some(2);
    a.batch_size = Some(256);
    a.ubatch_size = Some(128);
    a.n_predict = Some(-1);
    a.keep = Some(0);
    a.seed = Some(42);
    a.temp = Some(0.7);
    a.top_k = Some(20);
    a.top_p = Some(0.9);
    a.min_p = Some(0.05);
    a.repeat_penalty = Some(1.1);
    a.repeat_last_n = Some(32);
    a.samplers = Some("top_k;top_p;min_p;temperature".into());
    a.flash_attn = Some("off".into());
    a.kv_offload = Some(false);
    a.cont_batching = Some(true);
    a.context_shift = Some(false);
    a.cache_prompt = Some(true);
    a.cache_reuse = Some(0);
    a.jinja = Some(true);
    a.alias = vec!["demo".into(), "demo-alias".into()];
    a.metrics = true;
    a.props = true;
    a.slots = Some(true);
    a.slot_save_path = Some(slots);
    a.ui = Some(false);
    a.timeout = Some(30);
    a.warmup = Some(false);
    a.api_key = Some(KEY.into());
    a.extra = vec!["--log-verbosity".into(), "3".into()];
}

/// The flags of `rendered` that the binary under test accepts under none of the spellings
/// lmcpp knows for them.
fn flags_this_binary_lacks(rendered: &[String]) -> Vec<&str> {
    let supports = crate::support::supports();
    rendered
        .iter()
        .filter(|t| t.starts_with("--"))
        .map(String::as_str)
        .filter(|flag| {
            let spellings =
                lmcpp_types::args::FlagInfo::lookup(flag).map_or(&[][..], |info| info.flags);
            !supports.flag(flag) && supports.spelling(spellings).is_none()
        })
        .collect()
}

/// `err` is the refusal before spawning, naming one of `missing` and the binary's version.
fn assert_refused_naming_one_of(err: &Error, missing: &[&str]) {
    let version = crate::support::paths().llama_version;
    match err {
        Error::InvalidArgs {
            source:
                lmcpp_types::Error::UnsupportedFlag {
                    flag, version: v, ..
                },
        } => assert!(missing.contains(&flag.as_str()) && *v == version, "{err}"),
        other => panic!("expected an unsupported flag among {missing:?}, got {other}"),
    }
}
