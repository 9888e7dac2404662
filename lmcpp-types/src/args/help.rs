//! The flags a particular `llama-server` binary accepts, read from its `--help`, and the
//! check (and adaptation) of an argv rendered for the pinned version against them.
//!
//! llama.cpp renames and re-types flags between releases: `--flash-attn` was a switch
//! before it took `on|off|auto`, `--no-webui` gained `--no-ui`. An argv that one version
//! accepts makes another exit with `invalid argument: off`. [`BinaryFlags::adapt`] turns
//! such differences into the form the binary accepts where the meaning is unambiguous, and
//! into an [`Error::UnsupportedFlag`] naming the flag, the value and the version otherwise,
//! before anything is spawned.
//!
//! ```
//! use lmcpp_types::args::help::BinaryFlags;
//! let old = BinaryFlags::from_help(
//!     "-fa,   --flash-attn                     enable Flash Attention (default: disabled)\n",
//!     "4227c9b",
//! );
//! let argv: Vec<String> = ["--flash-attn", "on"].map(String::from).into();
//! assert_eq!(old.adapt(&argv).unwrap(), ["--flash-attn"]);
//! ```

use crate::Error;
use crate::args::FlagInfo;

/// One option block of a `--help` text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelpOption {
    /// Help section (`common params`, `server-specific params`, ...).
    pub section: String,
    /// Every spelling (`-c`, `--ctx-size`).
    pub flags: Vec<String>,
    /// The value placeholder (`N`, `[on|off|auto]`); `None` for switches.
    pub hint: Option<String>,
    /// The description, joined into one line.
    pub desc: String,
    /// The environment variable the server also reads.
    pub env: Option<String>,
}

impl HelpOption {
    /// The values the hint enumerates (`[on|off|auto]`, `{none,mean,cls}`), if it does.
    pub fn choices(&self) -> Option<Vec<String>> {
        let h = self.hint.as_deref()?.trim();
        let inner = h
            .strip_prefix('[')
            .and_then(|x| x.strip_suffix(']'))
            .or_else(|| h.strip_prefix('{').and_then(|x| x.strip_suffix('}')))?;
        let parts: Vec<String> = inner
            .split(['|', ','])
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect();
        (parts.len() > 1 && parts.iter().all(|p| !p.contains(' '))).then_some(parts)
    }
}

/// Parses `llama-server --help`: a flag column padded to 40 characters (or on its own
/// line when longer) followed by the description and an optional `(env: NAME)` line.
/// Lines it cannot read are skipped (other versions may add prose).
pub fn parse_help(text: &str) -> Vec<HelpOption> {
    let mut opts: Vec<HelpOption> = Vec::new();
    let mut section = String::new();
    for line in text.lines() {
        if let Some(s) = line.strip_prefix("----- ") {
            section = s
                .trim_end_matches(" -----")
                .trim_end_matches('-')
                .trim()
                .to_owned();
            continue;
        }
        if line.starts_with('-') {
            let (head, desc) =
                if line.len() > 40 && line.is_char_boundary(40) && line[37..40].trim().is_empty() {
                    (line[..40].trim_end(), line[40..].trim())
                } else {
                    (line.trim_end(), "")
                };
            let (flags, hint) = parse_head(head);
            if flags.is_empty() {
                continue;
            }
            opts.push(HelpOption {
                section: section.clone(),
                flags,
                hint,
                desc: desc.to_owned(),
                env: None,
            });
        } else if let Some(o) = opts.last_mut() {
            let t = line.trim();
            if t.is_empty() {
                continue;
            }
            if let Some(env) = t.strip_prefix("(env: ").and_then(|e| e.strip_suffix(')')) {
                o.env = Some(env.to_owned());
            } else {
                if !o.desc.is_empty() {
                    o.desc.push(' ');
                }
                o.desc.push_str(t);
            }
        }
    }
    opts
}

/// Splits a flag column (`-c,    --ctx-size N`) into spellings and the value hint.
pub fn parse_head(head: &str) -> (Vec<String>, Option<String>) {
    let toks: Vec<&str> = head.split_whitespace().collect();
    let mut flags = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let t = toks[i];
        let continues = i == 0 || toks[i - 1].ends_with(',');
        if !(t.starts_with('-') && continues) {
            break;
        }
        flags.push(t.trim_end_matches(',').to_owned());
        i += 1;
        if !t.ends_with(',') {
            break;
        }
    }
    let hint = (i < toks.len()).then(|| toks[i..].join(" "));
    (flags, hint)
}

/// The flags of one `llama-server` binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryFlags {
    options: Vec<HelpOption>,
    version: String,
}

const TRUTHY: &[&str] = &["on", "true", "enabled", "1", "yes"];
const FALSY: &[&str] = &["off", "false", "disabled", "0", "no"];

impl BinaryFlags {
    /// Reads the flags from a binary's `--help` text; `version` names the binary in errors.
    pub fn from_help(help: &str, version: impl Into<String>) -> Self {
        Self {
            options: parse_help(help),
            version: version.into(),
        }
    }

    /// Whether the help text listed any option (an empty one cannot be checked against).
    pub fn is_empty(&self) -> bool {
        self.options.is_empty()
    }

    /// The version label given at construction.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The option a spelling belongs to.
    pub fn find(&self, flag: &str) -> Option<&HelpOption> {
        self.options
            .iter()
            .find(|o| o.flags.iter().any(|f| f == flag))
    }

    /// Whether the binary accepts `flag` in any form.
    pub fn accepts(&self, flag: &str) -> bool {
        self.find(flag).is_some()
    }

    /// Checks `argv` (as [`crate::ServerArgs::to_argv`] renders it for the pinned version)
    /// against this binary and returns the argv it accepts: renamed flags spelled the way
    /// it knows them, switch/value changes bridged where the meaning is clear. Anything
    /// else it would reject is an [`Error::UnsupportedFlag`].
    pub fn adapt(&self, argv: &[String]) -> Result<Vec<String>, Error> {
        if self.is_empty() {
            return Ok(argv.to_vec());
        }
        let mut out = Vec::with_capacity(argv.len());
        let mut i = 0;
        while i < argv.len() {
            let token = &argv[i];
            i += 1;
            if !token.starts_with('-') || token == "-" || token.parse::<f64>().is_ok() {
                // A stray positional (e.g. a negative number's value) passes as is.
                out.push(token.clone());
                continue;
            }
            let (flag, inline) = match token.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
                _ => (token.clone(), None),
            };
            let pinned = FlagInfo::lookup(&flag);
            // Whether the argv carries a value for this flag: the pinned table knows for
            // its flags; for others the binary's own help decides.
            let takes_value = match (pinned, self.find(&flag)) {
                (Some(p), _) => p.value.is_some(),
                (None, Some(o)) => o.hint.is_some(),
                (None, None) => false,
            };
            let value = match inline {
                Some(v) => Some(v),
                None if takes_value && i < argv.len() => {
                    i += 1;
                    Some(argv[i - 1].clone())
                }
                None => None,
            };
            self.adapt_one(&flag, value, pinned, &mut out)?;
        }
        Ok(out)
    }

    fn unsupported(&self, flag: &str, value: Option<&str>, reason: String) -> Error {
        Error::UnsupportedFlag {
            flag: flag.to_owned(),
            value: value.map(str::to_owned),
            version: self.version.clone(),
            reason,
        }
    }

    fn adapt_one(
        &self,
        flag: &str,
        value: Option<String>,
        pinned: Option<&FlagInfo>,
        out: &mut Vec<String>,
    ) -> Result<(), Error> {
        let negated = flag.starts_with("--no-");
        let spelled = self.spelling(flag, negated, pinned);
        // A switch this binary knows only by its negation (`--no-webui` without `--webui`)
        // is on by default there: turning it on means leaving it out.
        let only_negation = !negated
            && value.is_none()
            && pinned.is_some_and(|p| {
                p.flags
                    .iter()
                    .any(|f| f.starts_with("--no-") && self.accepts(f))
            });
        if spelled.is_none() && only_negation {
            return Ok(());
        }
        let Some(spelled) = spelled else {
            return Err(self.unsupported(
                flag,
                value.as_deref(),
                "this llama-server does not have the flag".into(),
            ));
        };
        let Some(opt) = self.find(&spelled) else {
            return Err(self.unsupported(flag, value.as_deref(), "unknown flag".into()));
        };
        match (value, &opt.hint) {
            (None, None) => out.push(spelled),
            (Some(v), Some(_)) => {
                if let Some(choices) = opt.choices()
                    && !choices.iter().any(|c| c == &v)
                {
                    return Err(self.unsupported(
                        flag,
                        Some(&v),
                        format!("this llama-server accepts {}", choices.join(", ")),
                    ));
                }
                out.push(spelled);
                out.push(v);
            }
            (Some(v), None) => self.value_as_switch(flag, spelled, &v, opt, out)?,
            (None, Some(_)) => self.switch_as_value(flag, spelled, opt, out)?,
        }
        Ok(())
    }

    /// The binary's spelling of `flag`: the flag itself, or another spelling of the same
    /// pinned option that this binary knows (a rename). A `--no-x` spelling keeps its sense.
    fn spelling(&self, flag: &str, negated: bool, pinned: Option<&FlagInfo>) -> Option<String> {
        if self.accepts(flag) {
            return Some(flag.to_owned());
        }
        pinned.and_then(|p| {
            p.flags
                .iter()
                .filter(|f| f.starts_with("--no-") == negated)
                .find(|f| self.accepts(f))
                .map(|f| (*f).to_owned())
        })
    }

    /// The pinned version takes a value where this binary has a switch: a true value is
    /// the switch, a false one its negation (or nothing), `auto` the binary's default.
    fn value_as_switch(
        &self,
        flag: &str,
        spelled: String,
        v: &str,
        opt: &HelpOption,
        out: &mut Vec<String>,
    ) -> Result<(), Error> {
        let lower = v.to_ascii_lowercase();
        if TRUTHY.contains(&lower.as_str()) {
            out.push(spelled);
        } else if FALSY.contains(&lower.as_str()) || lower == "auto" {
            // Off (or the binary's own default): the switch's negation if it has
            // one, else leaving the switch out.
            let base = spelled.trim_start_matches("--");
            let neg = opt.flags.iter().find(|f| *f == &format!("--no-{base}"));
            if let Some(neg) = neg
                && lower != "auto"
            {
                out.push(neg.clone());
            }
        } else {
            return Err(self.unsupported(
                flag,
                Some(v),
                "this llama-server has it as a switch without a value".into(),
            ));
        }
        Ok(())
    }

    /// A switch of the pinned version that this binary wants a value for: `on` or `true`
    /// when it takes one of them.
    fn switch_as_value(
        &self,
        flag: &str,
        spelled: String,
        opt: &HelpOption,
        out: &mut Vec<String>,
    ) -> Result<(), Error> {
        let on = opt.choices().and_then(|c| {
            ["on", "true"]
                .into_iter()
                .find(|x| c.iter().any(|y| y == x))
        });
        let Some(on) = on else {
            return Err(self.unsupported(
                flag,
                None,
                format!(
                    "this llama-server wants a value ({})",
                    opt.hint.clone().unwrap_or_default()
                ),
            ));
        };
        out.push(spelled);
        out.push(on.into());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const PINNED: &str = include_str!("../../llama-server-help.txt");

    fn argv(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| (*x).to_owned()).collect()
    }

    /// Help lines in the shape of llama.cpp of August 2025 (4227c9b).
    const OLD: &str = "\
----- common params -----

-c,    --ctx-size N                     size of the prompt context (default: 4096, 0 = loaded from model)
                                        (env: LLAMA_ARG_CTX_SIZE)
-fa,   --flash-attn                     enable Flash Attention (default: disabled)
                                        (env: LLAMA_ARG_FLASH_ATTN)
-m,    --model FNAME                    model path
--host HOST                             ip address to listen
--port PORT                             port to listen (default: 8080)
--no-webui                              Disable the Web UI (default: enabled)
--pooling {none,mean,cls,last,rank}     pooling type for embeddings
--slots                                 enable slots monitoring endpoint (default: disabled)
";

    #[test]
    fn the_pinned_help_accepts_every_pinned_flag_unchanged() {
        let flags = BinaryFlags::from_help(PINNED, "b11312");
        assert!(!flags.is_empty());
        for info in crate::args::FLAGS {
            assert!(
                info.flags.iter().any(|f| flags.accepts(f)),
                "{:?} missing from the pinned help",
                info.flags
            );
        }
        let a = argv(&[
            "--ctx-size",
            "256",
            "--flash-attn",
            "off",
            "--no-webui",
            "-m",
            "x.gguf",
        ]);
        assert_eq!(flags.adapt(&a).unwrap(), a);
    }

    #[test]
    fn older_binaries_get_the_form_they_accept() {
        let old = BinaryFlags::from_help(OLD, "4227c9b");
        let cases: &[(&[&str], &[&str])] = &[
            (&["--flash-attn", "on"], &["--flash-attn"]),
            (&["--flash-attn", "off"], &[]),
            (&["-fa", "auto", "-c", "64"], &["-c", "64"]),
            (&["--no-ui"], &["--no-webui"]),
            (&["--ui"], &[]),
            (&["--pooling", "mean"], &["--pooling", "mean"]),
            (&["--slots"], &["--slots"]),
            (&["--port=8081"], &["--port", "8081"]),
        ];
        for (given, want) in cases {
            assert_eq!(old.adapt(&argv(given)).unwrap(), argv(want), "{given:?}");
        }
    }

    #[test]
    fn what_cannot_be_bridged_is_an_error_naming_flag_value_and_version() {
        let old = BinaryFlags::from_help(OLD, "4227c9b");
        let cases: &[(&[&str], &str)] = &[
            (&["--sleep-idle-seconds", "5"], "--sleep-idle-seconds"),
            (&["--pooling", "weighted"], "weighted"),
            (&["--flash-attn", "maybe"], "maybe"),
        ];
        for (given, needle) in cases {
            let e = old.adapt(&argv(given)).unwrap_err().to_string();
            assert!(
                e.contains(needle) && e.contains("4227c9b"),
                "{given:?}: {e}"
            );
        }
        // A switch of the pinned version that a binary wants a value for gets `on`.
        let newer = BinaryFlags::from_help(
            "--slots [on|off]                        expose slots (default: on)\n",
            "b99999",
        );
        assert_eq!(newer.adapt(&argv(&["--slots"])).unwrap(), ["--slots", "on"]);
    }

    #[test]
    fn an_empty_help_checks_nothing() {
        let none = BinaryFlags::from_help("version: 1 (x)\n", "x");
        assert!(none.is_empty());
        let a = argv(&["--anything", "1"]);
        assert_eq!(none.adapt(&a).unwrap(), a);
    }
}
