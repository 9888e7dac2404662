//! What the llama.cpp under test says it supports, so that end-to-end expectations come from
//! the binary rather than from which version a run happens to use.
//!
//! The flags come from its `--help`, read by lmcpp's own parser ([`BinaryFlags`]), the
//! version from its `--version`, and the endpoints from what it answers ([`is_unknown_route`]
//! on a probe's answer). A test whose feature the binary lacks checks lmcpp's behaviour in
//! that case and says so with [`Supports::lacks`], which also appends the line to a report
//! beside the paths record (`cargo xtask test` prints it after each pass).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use lmcpp_types::args::help::BinaryFlags;

use crate::PreparedPaths;

/// The capabilities of the `llama-server` (and `rpc-server`) a paths record names.
#[derive(Debug, Clone)]
pub struct Supports {
    flags: BinaryFlags,
    version: String,
    label: String,
    rpc_debug_log: bool,
    report: PathBuf,
}

impl Supports {
    /// Reads what the binaries of `paths` say about themselves: the `--help` the toolchain
    /// captured (or the binary's own, when the record has none), the `--version` line, and
    /// whether `rpc-server` reads `GGML_RPC_DEBUG`. `report` is where [`Supports::lacks`]
    /// appends.
    pub fn of(paths: &PreparedPaths, report: PathBuf) -> Self {
        let help = paths
            .help
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .filter(|h| !h.trim().is_empty())
            .unwrap_or_else(|| output_of(&paths.llama_server, "--help"));
        let version = output_of(&paths.llama_server, "--version")
            .lines()
            .find(|l| l.starts_with("version:"))
            .map_or_else(|| paths.llama_version.clone(), str::to_owned);
        // `rpc-server` has no help line for its command log: the variable it reads is in
        // the binary's strings.
        let rpc_debug_log = paths
            .rpc_server
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .is_some_and(|bytes| contains(&bytes, b"GGML_RPC_DEBUG"));
        Self {
            flags: BinaryFlags::from_help(&help, paths.llama_version.clone()),
            version,
            label: paths.llama_version.clone(),
            rpc_debug_log,
            report,
        }
    }

    /// The flags of the binary's `--help`, as lmcpp reads them.
    pub fn flags(&self) -> &BinaryFlags {
        &self.flags
    }

    /// Whether the binary accepts `flag` in this spelling.
    pub fn flag(&self, flag: &str) -> bool {
        self.flags.accepts(flag)
    }

    /// The first of `spellings` the binary accepts (a flag renamed between versions).
    pub fn spelling<'a>(&self, spellings: &[&'a str]) -> Option<&'a str> {
        spellings.iter().copied().find(|f| self.flag(f))
    }

    /// The binary's `version: …` line.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Whether `rpc-server` logs every command it receives when `GGML_RPC_DEBUG` is set.
    pub fn rpc_debug_log(&self) -> bool {
        self.rpc_debug_log
    }

    /// Reports that the binary under test lacks `what` and that the test `checked` lmcpp's
    /// behaviour in that case instead: on stderr and as a line of the report.
    // Test plumbing: the line is for the person reading the test's output.
    #[allow(clippy::print_stderr)]
    pub fn lacks(&self, test: &str, what: &str, checked: &str) {
        let line = format!(
            "e2e: {test}: this llama-server ({}, {}) lacks {what}; checked that {checked}",
            self.label, self.version
        );
        eprintln!("{line}");
        // One short write with O_APPEND: lines of concurrent tests do not interleave.
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.report)
            .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
        if let Err(e) = written {
            eprintln!("e2e: cannot append to {}: {e}", self.report.display());
        }
    }
}

/// Whether an answer is llama-server's answer to a route it does not have: 404 with
/// "File Not Found" (an empty body in some versions). A 404 about something else (an
/// unknown task id, a missing file) comes from a route that exists.
pub fn is_unknown_route(status: u16, body: &[u8]) -> bool {
    if status != 404 {
        return false;
    }
    let text = String::from_utf8_lossy(body);
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| text.trim().to_owned());
    message.is_empty() || message == "File Not Found"
}

/// The lines [`Supports::lacks`] appended to `report`, each once, in first-seen order.
pub fn read_report(report: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(report).unwrap_or_default();
    let mut seen = Vec::<String>::new();
    for line in text.lines() {
        if !line.is_empty() && !seen.iter().any(|s| s == line) {
            seen.push(line.to_owned());
        }
    }
    seen
}

/// stdout and stderr of `binary arg` (llama-server prints its help and version on either,
/// depending on the version); empty when it cannot be run.
fn output_of(binary: &Path, arg: &str) -> String {
    Command::new(binary).arg(arg).output().map_or_else(
        |_| String::new(),
        |o| {
            let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
            s.push_str(&String::from_utf8_lossy(&o.stderr));
            s
        },
    )
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_route_is_a_404_file_not_found_or_an_empty_404() {
        let cases: &[(u16, &str, bool)] = &[
            (
                404,
                r#"{"error":{"code":404,"message":"File Not Found","type":"not_found_error"}}"#,
                true,
            ),
            (404, "", true),
            (404, "File Not Found", true),
            (
                404,
                r#"{"error":{"code":404,"message":"task id not found","type":"not_found_error"}}"#,
                false,
            ),
            (400, r#"{"error":{"message":"File Not Found"}}"#, false),
            (501, "", false),
        ];
        for (status, body, unknown) in cases {
            assert_eq!(
                is_unknown_route(*status, body.as_bytes()),
                *unknown,
                "{status} {body}"
            );
        }
    }
}
