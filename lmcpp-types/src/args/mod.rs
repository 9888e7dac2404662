//! `ServerArgs`: every `llama-server` flag of the pinned version as a typed field
//! (generated from its `--help` by `cargo xtask codegen`), rendered to argv with
//! validation of conflicting flags; secrets go to the environment, never onto argv.
//!
//! ```
//! use lmcpp_types::ServerArgs;
//! let mut args = ServerArgs::default();
//! args.model = Some("/models/tiny.gguf".into());
//! args.host = Some("127.0.0.1".into());
//! args.port = Some(8080);
//! args.ctx_size = Some(2048);
//! args.api_key = Some("s3cret".into());
//! let argv = args.to_argv().unwrap();
//! assert_eq!(argv, ["--ctx-size", "2048", "--model", "/models/tiny.gguf", "--host", "127.0.0.1", "--port", "8080"]);
//! assert_eq!(args.secret_env(), [("LLAMA_API_KEY".to_owned(), "s3cret".to_owned())]);
//! ```

mod generated;
pub mod help;
pub mod passthrough;

pub use generated::{FLAGS, ServerArgs};

use crate::Error;

/// Static description of one flag of the pinned `--help`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlagInfo {
    /// The `ServerArgs` field that sets it.
    pub field: &'static str,
    /// All spellings, as printed by `--help`.
    pub flags: &'static [&'static str],
    /// Value placeholder (`N`, `FNAME`, ...); `None` for switches.
    pub value: Option<&'static str>,
    /// Environment variable the server also reads, if any.
    pub env: Option<&'static str>,
    /// Help section (`common params`, `sampling params`, ...).
    pub section: &'static str,
    /// Whether the value is a secret (never on argv).
    pub secret: bool,
}

impl FlagInfo {
    /// Finds the flag info by any spelling (`-c`, `--ctx-size`).
    pub fn lookup(flag: &str) -> Option<&'static FlagInfo> {
        let name = flag.split_once('=').map_or(flag, |(n, _)| n);
        FLAGS.iter().find(|f| f.flags.contains(&name))
    }
}

impl ServerArgs {
    /// Sets the model file, host and port: the usual minimum.
    pub fn new(model: impl Into<std::path::PathBuf>) -> Self {
        ServerArgs {
            model: Some(model.into()),
            ..Default::default()
        }
    }

    /// Validates the combination of flags and renders them to argv (without the program
    /// name). Secrets are left out; pass [`ServerArgs::secret_env`] to the child's
    /// environment.
    pub fn to_argv(&self) -> Result<Vec<String>, Error> {
        self.validate()?;
        let mut out = Vec::new();
        self.render_flags(&mut out);
        out.extend(self.extra.iter().cloned());
        Ok(out)
    }

    /// Environment variables the server reads for the secret flags that are set
    /// (`LLAMA_API_KEY` for `--api-key`, `HF_TOKEN` for `--hf-token`).
    pub fn secret_env(&self) -> Vec<(String, String)> {
        self.secret_env_generated()
    }

    /// Whether the server listens on a Unix domain socket (`--host` ends in `.sock`).
    pub fn is_unix_socket(&self) -> bool {
        self.host.as_deref().is_some_and(|h| h.ends_with(".sock"))
    }

    /// Checks for flags that cannot be combined; the error names both.
    pub fn validate(&self) -> Result<(), Error> {
        let conflict = |first: &str, second: &str, reason: &str| {
            Err(Error::ConflictingFlags {
                first: first.to_owned(),
                second: second.to_owned(),
                reason: reason.to_owned(),
            })
        };
        if self.is_unix_socket() && self.port.is_some() {
            return conflict(
                "--host",
                "--port",
                "a `.sock` host listens on a Unix socket, where a port has no meaning",
            );
        }
        let sources = [
            ("--model", self.model.is_some()),
            ("--model-url", self.model_url.is_some()),
            ("--hf-repo", self.hf_repo.is_some()),
            ("--docker-repo", self.docker_repo.is_some()),
        ];
        let set: Vec<&str> = sources
            .iter()
            .filter(|(_, s)| *s)
            .map(|(f, _)| *f)
            .collect();
        if let [a, b, ..] = set.as_slice() {
            return conflict(a, b, "the model can come from only one source");
        }
        if self.reranking
            && let Some(p) = self.pooling.as_deref()
            && p != "rank"
        {
            return conflict(
                "--reranking",
                "--pooling",
                "reranking needs `--pooling rank` (it sets it itself)",
            );
        }
        if self.embeddings && self.pooling.as_deref() == Some("none") && self.reranking {
            return conflict(
                "--embeddings",
                "--reranking",
                "reranking cannot use `--pooling none`",
            );
        }
        if self.ssl_key_file.is_some() != self.ssl_cert_file.is_some() {
            let (set, missing) = if self.ssl_key_file.is_some() {
                ("--ssl-key-file", "--ssl-cert-file")
            } else {
                ("--ssl-cert-file", "--ssl-key-file")
            };
            return conflict(set, missing, "TLS needs both the key and the certificate");
        }
        if self.is_unix_socket() && (self.ssl_key_file.is_some() || self.ssl_cert_file.is_some()) {
            return conflict(
                "--host",
                "--ssl-key-file",
                "TLS is not served on a Unix socket",
            );
        }
        if let Some(port) = self.port
            && port == 0
            && !self.is_unix_socket()
        {
            // Port 0 makes the server pick a port it does not report back.
            return Err(Error::InvalidValue {
                flag: "--port".to_owned(),
                value: "0".to_owned(),
                expected: "a fixed port between 1 and 65535 (choose a free one before spawning)"
                    .to_owned(),
            });
        }
        for raw in &self.extra {
            if let Some(info) = FlagInfo::lookup(raw)
                && info.secret
            {
                return Err(Error::SecretOnArgv {
                    flag: raw
                        .split_once('=')
                        .map_or(raw.as_str(), |(n, _)| n)
                        .to_owned(),
                    field: info.field.to_owned(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each field renders one of its own spellings followed by its value, so no field of
    /// the generated struct is silently dropped or rendered under another flag.
    #[test]
    fn every_field_renders_its_own_flag() {
        let all = generated::every_field_set();
        let mut argv = Vec::new();
        all.render_flags(&mut argv);
        let mut missing = Vec::new();
        for info in FLAGS.iter().filter(|f| !f.secret) {
            let Some(pos) = argv.iter().position(|a| info.flags.contains(&a.as_str())) else {
                missing.push(info.field);
                continue;
            };
            if info.value.is_some() {
                let value = argv.get(pos + 1).map(String::as_str).unwrap_or_default();
                assert!(
                    !value.starts_with("--"),
                    "{} has no value: {argv:?}",
                    info.field
                );
            }
        }
        assert!(
            missing.is_empty(),
            "fields that render nothing: {missing:?}"
        );
        assert!(
            !argv.iter().any(|a| a.contains("secret")),
            "a secret reached argv"
        );
        assert_eq!(
            all.secret_env().len(),
            FLAGS.iter().filter(|f| f.secret).count()
        );
        let toggles_off = argv.iter().filter(|a| a.starts_with("--no-")).count();
        assert!(
            toggles_off > 20,
            "`Some(false)` toggles render their `--no-` form"
        );
    }
}
