//! The multi-model `lmcpp serve` refuses bad input before starting anything: a config file
//! with an unknown key, a duplicate alias or a typed key repeated as a flag in `args`
//! (naming the file, the line and the key), a missing file, and single-server options
//! combined with several models. Exit status 2.

use super::{lmcpp, stderr};

#[test]
fn bad_configs_and_option_mixes_exit_2_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let unknown = file(
        "unknown.toml",
        "[[models]]\nalias = \"a\"\nmodel = \"demo\"\nkeep_alive_s = 5\n",
    );
    let twice = file(
        "twice.toml",
        "[[models]]\nalias = \"a\"\nmodel = \"demo\"\n\n[[models]]\nalias = \"a\"\nmodel = \"demo\"\n",
    );
    let key_env = file(
        "key.toml",
        "api_key_env = \"LMCPP_TEST_UNSET_KEY\"\n[[models]]\nalias = \"a\"\nmodel = \"demo\"\n",
    );
    let ctx_twice = file(
        "ctx.toml",
        "[[models]]\nalias = \"a\"\nmodel = \"demo\"\nctx_size = 512\nargs = [\"-c\", \"1024\"]\n",
    );
    let bad_model = file(
        "model.toml",
        "[[models]]\nalias = \"a\"\nmodel = \"just some words\"\n",
    );
    let missing = dir.path().join("missing.toml");
    let missing = missing.to_str().unwrap();
    let table: Vec<(Vec<&str>, Vec<&str>)> = vec![
        // A model reference is parsed where it is read: the file's line and key, or the
        // --model entry, before anything is fetched or started.
        (
            vec!["serve", "--config", &bad_model],
            vec!["model.toml, line 2, models[0].model", "just some words"],
        ),
        (
            vec!["serve", "--model", "a=demo", "--model", "b=just words"],
            vec!["--model b=just words", "owner/repo"],
        ),
        (
            vec!["serve", "--config", &unknown],
            vec!["unknown.toml", "line 4", "keep_alive_s", "docs/serving.md"],
        ),
        (
            vec!["serve", "--config", &twice],
            vec!["twice.toml, line 6, models[1].alias", "used twice"],
        ),
        (
            vec!["serve", "--config", &key_env],
            vec!["LMCPP_TEST_UNSET_KEY", "not set"],
        ),
        (
            vec!["serve", "--config", &ctx_twice],
            vec![
                "ctx.toml, line 5, models[0].args",
                "\"-c\"",
                "`ctx_size`",
                "\"a\"",
            ],
        ),
        (
            vec!["serve", "--config", missing],
            vec!["missing.toml", "--config"],
        ),
        (
            vec!["serve", "--model", "a=demo", "--model", "a=demo"],
            vec!["used twice", "ALIAS=MODEL"],
        ),
        (
            vec![
                "serve", "--model", "a=demo", "--model", "b=demo", "--alias", "x",
            ],
            vec!["--alias", "ALIAS=MODEL"],
        ),
        (
            vec!["serve", "--model", "demo", "--keep-alive", "soon"],
            vec!["--keep-alive", "not a duration"],
        ),
        (
            vec!["serve", "--model", "demo", "--memory-budget", "200%"],
            vec!["--memory-budget", "at most 100%"],
        ),
        (
            vec!["serve", "--config", &unknown, "--model", "demo"],
            vec!["cannot be used with"],
        ),
    ];
    for (args, words) in table {
        let out = lmcpp(dir.path(), &args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        for w in words {
            assert!(err.contains(w), "{args:?}: {w:?} not in {err}");
        }
    }
}

/// What is not a config file is refused unread (a FIFO would block whoever reads it, the
/// proxy itself on a reload), and `--watch` needs one.
#[test]
fn what_is_not_a_config_file_is_bad_input_and_watch_needs_one() {
    let dir = tempfile::tempdir().unwrap();
    let huge = dir.path().join("huge.toml");
    std::fs::write(&huge, "#".repeat((1 << 20) + 1)).unwrap();
    let binary = dir.path().join("binary.toml");
    std::fs::write(&binary, b"[[models]]\nalias = \"\xff\"\n").unwrap();
    let config = |path: &std::path::Path| {
        vec![
            "serve".to_owned(),
            "--config".to_owned(),
            path.display().to_string(),
        ]
    };
    let words = |w: &[&'static str]| w.to_vec();
    let table: Vec<(Vec<String>, Vec<&str>)> = vec![
        (
            config(dir.path()),
            words(&["not a regular file", "--config"]),
        ),
        (config(&huge), words(&["huge.toml", "larger than 1024 KiB"])),
        (config(&binary), words(&["binary.toml", "not UTF-8"])),
        (
            ["serve", "--model", "a=demo", "--model", "b=demo", "--watch"]
                .map(String::from)
                .to_vec(),
            words(&["--watch", "--config FILE"]),
        ),
        (
            ["serve", "--model", "demo", "--watch"]
                .map(String::from)
                .to_vec(),
            words(&["--watch", "--config FILE"]),
        ),
    ];
    // A FIFO (Unix) would block whoever reads it.
    #[cfg(unix)]
    let table = {
        let fifo = dir.path().join("fifo.toml");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let mut table = table;
        table.push((config(&fifo), words(&["not a regular file"])));
        table
    };
    for (args, words) in table {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = lmcpp(dir.path(), &args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        for w in words {
            assert!(err.contains(w), "{args:?}: {w:?} not in {err}");
        }
    }
}

#[test]
fn model_inspect_refuses_an_unknown_model_without_touching_the_network() {
    let dir = tempfile::tempdir().unwrap();
    let out = lmcpp(
        dir.path(),
        &[
            "model",
            "inspect",
            "owner/repo:Q4_K_M",
            "--ctx-size",
            "4096",
        ],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("owner/repo"), "{}", stderr(&out));
}
