//! `ServerArgs`: coverage of the pinned `--help`, rendering, validation, secrets.

use lmcpp_types::args::{FLAGS, FlagInfo};
use lmcpp_types::{Error, ServerArgs};

const HELP: &str = include_str!("../../llama-server-help.txt");

/// The flag spellings of every option line of the help text, parsed independently of
/// the code generator: a line starting with `-` lists comma-separated spellings.
fn help_options() -> Vec<Vec<String>> {
    HELP.lines()
        .filter(|l| l.starts_with('-') && !l.starts_with("-----"))
        .map(|l| {
            let mut flags = Vec::new();
            for tok in l.split_whitespace() {
                if !tok.starts_with('-') {
                    break;
                }
                flags.push(tok.trim_end_matches(',').to_owned());
                if !tok.ends_with(',') {
                    break;
                }
            }
            flags
        })
        .collect()
}

#[test]
#[allow(clippy::print_stdout)]
fn server_args_cover_every_flag_of_the_pinned_help() {
    let options = help_options();
    let spellings: Vec<&String> = options.iter().flatten().collect();
    let missing: Vec<&&String> = spellings
        .iter()
        .filter(|f| FlagInfo::lookup(f).is_none())
        .collect();
    let covered = options.len()
        - options
            .iter()
            .filter(|o| FlagInfo::lookup(&o[0]).is_none())
            .count();
    println!(
        "ServerArgs covers {covered}/{} options of the pinned llama-server --help ({} spellings, {} typed fields)",
        options.len(),
        spellings.len(),
        FLAGS.len()
    );
    assert!(
        missing.is_empty(),
        "flags without a ServerArgs field: {missing:?}"
    );
    assert_eq!(covered, options.len());
    assert_eq!(FLAGS.len(), options.len(), "one field per option");
    assert!(
        options.len() > 200,
        "the help text looks truncated: {} options",
        options.len()
    );
}

#[test]
fn the_fields_others_rely_on_exist_with_their_flags() {
    let mut a = ServerArgs::new("/m.gguf");
    a.host = Some("127.0.0.1".into());
    a.port = Some(8088);
    a.rpc = vec!["10.0.0.1:50052".into(), "10.0.0.2:50052".into()];
    a.ctx_size = Some(512);
    a.n_predict = Some(-1);
    a.temp = Some(0.5);
    a.kv_offload = Some(false);
    a.embeddings = true;
    a.lora = vec!["/a.gguf".into(), "/b.gguf".into()];
    a.extra = vec!["--future-flag".into(), "1".into()];
    let argv = a.to_argv().expect("valid");
    let pairs = [
        ("--model", "/m.gguf"),
        ("--host", "127.0.0.1"),
        ("--port", "8088"),
        ("--rpc", "10.0.0.1:50052,10.0.0.2:50052"),
        ("--ctx-size", "512"),
        ("--predict", "-1"),
        ("--temp", "0.5"),
        ("--lora", "/a.gguf,/b.gguf"),
    ];
    for (flag, value) in pairs {
        let i = argv
            .iter()
            .position(|x| x == flag)
            .unwrap_or_else(|| panic!("{flag} missing in {argv:?}"));
        assert_eq!(argv[i + 1], value, "{flag}");
    }
    assert!(argv.contains(&"--no-kv-offload".to_owned()));
    assert!(argv.contains(&"--embedding".to_owned()));
    assert_eq!(&argv[argv.len() - 2..], ["--future-flag", "1"]);
    assert!(
        ServerArgs::default()
            .to_argv()
            .expect("empty is valid")
            .is_empty()
    );
}

#[test]
fn invalid_combinations_name_both_flags() {
    let sock = ServerArgs {
        host: Some("/run/x/llama.sock".into()),
        port: Some(8080),
        ..Default::default()
    };
    let mut two_sources = ServerArgs::new("/m.gguf");
    two_sources.hf_repo = Some("org/repo".into());
    let mut rerank = ServerArgs::new("/m.gguf");
    rerank.reranking = true;
    rerank.pooling = Some("mean".into());
    let mut tls = ServerArgs::new("/m.gguf");
    tls.ssl_key_file = Some("/k.pem".into());
    let cases = [
        (sock, "--host", "--port"),
        (two_sources, "--model", "--hf-repo"),
        (rerank, "--reranking", "--pooling"),
        (tls, "--ssl-key-file", "--ssl-cert-file"),
    ];
    for (args, a, b) in cases {
        let err = args.to_argv().expect_err("conflict");
        let msg = err.to_string();
        assert!(msg.contains(a) && msg.contains(b), "{msg}");
        assert!(matches!(err, Error::ConflictingFlags { .. }), "{err:?}");
    }
}

#[test]
fn secrets_never_reach_argv_or_debug() {
    let mut a = ServerArgs::new("/m.gguf");
    a.api_key = Some("sk-very-secret".into());
    a.hf_token = Some("hf_secret_token".into());
    let argv = a.to_argv().expect("valid");
    let joined = argv.join(" ");
    assert!(
        !joined.contains("sk-very-secret") && !joined.contains("hf_secret_token"),
        "{joined}"
    );
    assert!(
        !joined.contains("--api-key") && !joined.contains("--hf-token"),
        "{joined}"
    );
    let mut env = a.secret_env();
    env.sort();
    assert_eq!(
        env,
        [
            ("HF_TOKEN".to_owned(), "hf_secret_token".to_owned()),
            ("LLAMA_API_KEY".to_owned(), "sk-very-secret".to_owned())
        ]
    );
    let dbg = format!("{a:?}");
    assert!(
        !dbg.contains("sk-very-secret") && !dbg.contains("hf_secret_token"),
        "{dbg}"
    );

    for raw in ["--api-key", "--api-key=abc", "-hft", "--hf-token"] {
        let b = ServerArgs {
            extra: vec![raw.to_owned(), "abc".to_owned()],
            ..Default::default()
        };
        let err = b.to_argv().expect_err("secret in extra");
        assert!(matches!(err, Error::SecretOnArgv { .. }), "{raw}: {err:?}");
    }
}
