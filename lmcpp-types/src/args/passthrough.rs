//! The one reader of pass-through `llama-server` arguments (`ServerArgs::extra`, a
//! config's `args`): each flag with its value, over the generated flag table, so every
//! spelling a flag has is known and no flag is typed by hand.
//!
//! ```
//! use lmcpp_types::args::passthrough::read;
//! let args: Vec<String> = ["-c", "4096", "--alias", "--host", "-no-kvu", "--new-flag=1"]
//!     .map(String::from)
//!     .into();
//! let read = read(&args);
//! let fields: Vec<_> = read.iter().map(|f| f.info.map(|i| i.field)).collect();
//! assert_eq!(fields, [Some("ctx_size"), Some("alias"), Some("kv_unified"), None]);
//! assert_eq!(read[0].value, Some("4096"));
//! assert_eq!(read[1].value, Some("--host"), "a value is a value, as llama-server reads it");
//! assert!(read[2].negated());
//! assert_eq!(read[3].value, Some("1"));
//! ```

use super::FlagInfo;

/// One flag of a pass-through argument list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Passed<'a> {
    /// The spelling used (`-c`, `--ctx-size`), without an inline `=value`.
    pub name: &'a str,
    /// The flag table's entry for it; `None` for a flag the table does not know (one a
    /// newer `llama-server` added), whose value, if any, only an inline `=` can tell.
    pub info: Option<&'static FlagInfo>,
    /// Its value: inline (`--ctx-size=4096`), or the next argument for a known flag that
    /// takes one; `None` when that argument is missing.
    pub value: Option<&'a str>,
}

impl Passed<'_> {
    /// Whether the spelling is a switch's negative form (`--no-kv-unified`, `-no-kvu`).
    pub fn negated(&self) -> bool {
        self.name.starts_with("--no-") || self.name.starts_with("-no-")
    }

    /// Whether the flag takes a value and none was given.
    pub fn lacks_value(&self) -> bool {
        self.info.is_some_and(|i| i.value.is_some()) && self.value.is_none()
    }
}

/// Every flag of `args` in order, with its value; a known flag's value is consumed, so a
/// value that looks like a flag is read as the value it is. Words that are not flags are
/// skipped.
pub fn read(args: &[String]) -> Vec<Passed<'_>> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if !arg.starts_with('-') {
            continue;
        }
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (arg.as_str(), None),
        };
        let info = FlagInfo::lookup(name);
        let value = match inline {
            Some(v) => Some(v),
            None if info.is_some_and(|i| i.value.is_some()) => it.next().map(String::as_str),
            None => None,
        };
        out.push(Passed { name, info, value });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_value_and_every_spelling_of_a_flag() {
        let args: Vec<String> = ["--ctx-size=8", "-c"].map(String::from).into();
        let read = read(&args);
        assert_eq!(read.len(), 2);
        assert!(
            read.iter()
                .all(|f| f.info.map(|i| i.field) == Some("ctx_size"))
        );
        assert_eq!(read[0].value, Some("8"));
        assert!(read[1].lacks_value());
        for info in super::super::FLAGS {
            for spelling in info.flags {
                let one = [spelling.to_string()];
                let got = super::read(&one);
                assert_eq!(got[0].info.map(|i| i.field), Some(info.field), "{spelling}");
            }
        }
    }
}
