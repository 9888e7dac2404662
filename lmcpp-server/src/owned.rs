//! What the launcher owns: the flags and environment variables lmcpp sets itself, which a
//! caller therefore cannot pass through, and which variables of the caller's environment
//! reach a child at all.
//!
//! lmcpp validates the model it records, chooses where the server listens, and gives its
//! own client the key the server expects. A passthrough `--host 0.0.0.0`, `-m other.gguf`
//! or an inherited `LLAMA_API_KEY` would silently make each of those untrue, so they are
//! refused (extra arguments, explicit environment) or removed (inherited environment).

use std::ffi::OsString;

use lmcpp_types::args::{FLAGS, FlagInfo};

use crate::error::{Error, Result};

/// The lmcpp setting that replaces each owned `ServerArgs` field.
const SERVER_OWNED: &[(&str, &str)] = &[
    (
        "host",
        "the transport (`LaunchOptions::transport`; `lmcpp serve --http --bind ADDR`)",
    ),
    (
        "port",
        "the transport (`HttpPort::Fixed`; `lmcpp serve --http --port N`)",
    ),
    ("model", MODEL),
    ("model_url", MODEL),
    ("hf_repo", MODEL),
    ("docker_repo", MODEL),
    ("api_key", API_KEY),
    ("api_key_file", API_KEY),
    ("log_file", "the log file (`LaunchOptions::log_path`)"),
];

const MODEL: &str = "the model (`LaunchOptions::model`; `lmcpp serve --model`)";
const API_KEY: &str = "the API key (`ServerArgs::api_key`, which lmcpp's client sends too; `LLAMA_API_KEY` for the lmcpp command)";

/// The spellings of `rpc-server`'s owned flags and what sets them.
const RPC_OWNED: &[(&[&str], &str)] = &[
    (
        &["-H", "--host"],
        "the address (`RpcWorkerOptions::host`; `lmcpp rpc-worker --bind`)",
    ),
    (
        &["-p", "--port"],
        "the port (`RpcWorkerOptions::port`; `lmcpp rpc-worker --bind`)",
    ),
];

/// The variable `llama-server` reads its API key from.
pub(crate) const API_KEY_ENV: &str = "LLAMA_API_KEY";

fn owned_setting(info: &FlagInfo) -> Option<&'static str> {
    SERVER_OWNED
        .iter()
        .find(|(field, _)| *field == info.field)
        .map(|(_, setting)| *setting)
}

fn owned(flag: &str, setting: &'static str) -> Error {
    Error::LauncherOwned {
        flag: flag.to_owned(),
        setting,
    }
}

/// Refuses any spelling (`--host x`, `--host=x`, `-m x`, `--model=x`, ...) of a flag
/// lmcpp sets itself among passthrough `llama-server` arguments. Values of known flags
/// are skipped, so `--alias --host` names an alias, as llama-server reads it.
pub(crate) fn check_server_args(extra: &[String]) -> Result<()> {
    for flag in lmcpp_types::args::passthrough::read(extra) {
        if let Some(setting) = flag.info.and_then(owned_setting) {
            return Err(owned(flag.name, setting));
        }
    }
    Ok(())
}

/// Refuses typed fields lmcpp cannot honour while it owns what they set: a key file
/// whose key lmcpp's client would not know, and a log file that would hide the log
/// lmcpp reads start-up failures from. (Model, host and port are overridden, as
/// documented on [`crate::LaunchOptions::args`].)
pub(crate) fn check_server_fields(args: &lmcpp_types::ServerArgs) -> Result<()> {
    if args.api_key_file.is_some() {
        return Err(owned("--api-key-file", API_KEY));
    }
    if args.log_file.is_some() {
        return Err(owned(
            "--log-file",
            "the log file (`LaunchOptions::log_path`)",
        ));
    }
    Ok(())
}

/// Refuses explicit environment variables that set an owned flag (`LLAMA_ARG_HOST`,
/// `LLAMA_API_KEY`, ...).
pub(crate) fn check_server_env(env: &[(String, String)]) -> Result<()> {
    for (name, _) in env {
        let info = FLAGS.iter().find(|f| f.env == Some(name.as_str()));
        if let Some(setting) = info.and_then(owned_setting) {
            return Err(owned(name, setting));
        }
    }
    Ok(())
}

/// Refuses the address and port flags among passthrough `rpc-server` arguments.
pub(crate) fn check_rpc_args(extra: &[String]) -> Result<()> {
    for arg in extra {
        let name = arg.split_once('=').map_or(arg.as_str(), |(name, _)| name);
        if let Some((_, setting)) = RPC_OWNED.iter().find(|(f, _)| f.contains(&name)) {
            return Err(owned(name, setting));
        }
    }
    Ok(())
}

/// Whether `name` is a variable `llama-server` reads configuration or secrets from.
fn is_llama_env(name: &str) -> bool {
    name.starts_with("LLAMA_ARG_") || FLAGS.iter().any(|f| f.env == Some(name))
}

/// Whether `name` sets something lmcpp owns (always removed from the inherited env).
fn is_owned_env(name: &str) -> bool {
    FLAGS
        .iter()
        .any(|f| f.env == Some(name) && owned_setting(f).is_some())
}

/// The variables of `inherited` (the caller's environment) a `llama-server` child must
/// not see: every llama-server variable, or with `inherit_llama_env` only the owned ones.
pub(crate) fn server_env_removals(
    inherited: impl IntoIterator<Item = OsString>,
    inherit_llama_env: bool,
) -> Vec<OsString> {
    inherited
        .into_iter()
        .filter(|name| {
            name.to_str().is_some_and(|name| {
                is_owned_env(name) || (!inherit_llama_env && is_llama_env(name))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn every_spelling_of_an_owned_flag_is_refused() {
        for (extra, flag) in [
            ("--host 0.0.0.0", "--host"),
            ("--host=0.0.0.0", "--host"),
            ("--ctx-size 8 --port 9", "--port"),
            ("--port=9", "--port"),
            ("-m other.gguf", "-m"),
            ("--model=other.gguf", "--model"),
            ("-hf owner/repo", "-hf"),
            ("--hf-repo=owner/repo", "--hf-repo"),
            ("-mu http://x/y.gguf", "-mu"),
            ("--api-key-file /k", "--api-key-file"),
            ("--api-key k", "--api-key"),
            ("--log-file /tmp/l", "--log-file"),
        ] {
            match check_server_args(&argv(extra)) {
                Err(Error::LauncherOwned { flag: f, setting }) => {
                    assert_eq!(f, flag, "{extra}");
                    assert!(!setting.is_empty());
                }
                other => panic!("{extra}: {other:?}"),
            }
        }
    }

    #[test]
    fn other_flags_and_values_that_look_like_flags_pass() {
        for extra in [
            "",
            "--ctx-size 8 --alias --host",
            "--alias=x -ngl 0",
            "--path /srv --jinja",
            "--some-future-flag",
        ] {
            check_server_args(&argv(extra)).unwrap();
        }
    }

    #[test]
    fn owned_environment_is_refused_and_named() {
        for name in [
            "LLAMA_ARG_HOST",
            "LLAMA_ARG_PORT",
            "LLAMA_ARG_MODEL",
            "LLAMA_API_KEY",
        ] {
            let env = vec![(name.to_owned(), "x".to_owned())];
            assert!(
                matches!(check_server_env(&env), Err(Error::LauncherOwned { flag, .. }) if flag == name),
                "{name}"
            );
        }
        check_server_env(&[("LLAMA_ARG_CTX_SIZE".into(), "8".into())]).unwrap();
    }

    #[test]
    fn rpc_address_flags_are_refused() {
        for extra in ["-H 0.0.0.0", "--host=0.0.0.0", "-p 1", "--port 2"] {
            assert!(check_rpc_args(&argv(extra)).is_err(), "{extra}");
        }
        check_rpc_args(&argv("--threads 2 -c")).unwrap();
    }

    #[test]
    fn inherited_llama_environment_is_removed_unless_asked_for() {
        let inherited: Vec<OsString> = [
            "PATH",
            "HOME",
            "LLAMA_ARG_CTX_SIZE",
            "LLAMA_ARG_HOST",
            "LLAMA_API_KEY",
            "HF_TOKEN",
            "LLAMA_CACHE_X",
        ]
        .into_iter()
        .map(OsString::from)
        .collect();
        let removed = |inherit| -> Vec<String> {
            server_env_removals(inherited.clone(), inherit)
                .into_iter()
                .map(|s| s.into_string().unwrap())
                .collect()
        };
        assert_eq!(
            removed(false),
            [
                "LLAMA_ARG_CTX_SIZE",
                "LLAMA_ARG_HOST",
                "LLAMA_API_KEY",
                "HF_TOKEN"
            ]
        );
        assert_eq!(removed(true), ["LLAMA_ARG_HOST", "LLAMA_API_KEY"]);
    }
}
