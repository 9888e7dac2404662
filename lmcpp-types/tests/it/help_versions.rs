//! Every flag of the pinned llama-server, rendered and adapted for the `--help` of the
//! oldest supported llama.cpp (4227c9b, August 2025, captured by the toolchain): the result
//! is either an argv whose every flag that binary accepts, or the typed error naming the
//! flag. No flag falls through to a start-up failure.

use lmcpp_types::Error;
use lmcpp_types::args::FLAGS;
use lmcpp_types::args::help::{BinaryFlags, parse_help};

const OLD_HELP: &str = include_str!("../data/llama-server-help-4227c9b.txt");
const PINNED_HELP: &str = include_str!("../../llama-server-help.txt");

/// A value each flag's own help would accept: its first listed choice, else a number.
fn sample_value(flag: &str) -> String {
    parse_help(PINNED_HELP)
        .into_iter()
        .find(|o| o.flags.iter().any(|f| f == flag))
        .and_then(|o| o.choices())
        .and_then(|c| c.into_iter().next())
        .unwrap_or_else(|| "1".to_owned())
}

#[test]
fn every_pinned_flag_is_adapted_to_the_older_binary_or_refused_by_name() {
    let old = BinaryFlags::from_help(OLD_HELP, "4227c9b");
    assert!(!old.is_empty());
    let (mut kept, mut refused) = (0, 0);
    for info in FLAGS.iter().filter(|f| !f.secret) {
        for flag in info.flags.iter().filter(|f| f.starts_with("--")) {
            let mut argv = vec![(*flag).to_owned()];
            if info.value.is_some() {
                argv.push(sample_value(flag));
            }
            match old.adapt(&argv) {
                Ok(out) => {
                    kept += 1;
                    for token in out.iter().filter(|t| t.starts_with("--")) {
                        assert!(old.accepts(token), "{argv:?} became {out:?}");
                    }
                }
                Err(Error::UnsupportedFlag {
                    flag: named,
                    version,
                    ..
                }) => {
                    refused += 1;
                    assert_eq!((named.as_str(), version.as_str()), (*flag, "4227c9b"));
                }
                Err(other) => panic!("{argv:?}: {other}"),
            }
        }
    }
    // Most flags exist in both; a good number were added since.
    assert!(kept > 150 && refused > 10, "kept {kept}, refused {refused}");
}

#[test]
fn the_value_forms_that_changed_are_bridged() {
    let old = BinaryFlags::from_help(OLD_HELP, "4227c9b");
    let argv = |s: &[&str]| s.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    // `--flash-attn on|off|auto` is a switch there; the web UI is on unless `--no-webui`.
    assert_eq!(
        old.adapt(&argv(&["--flash-attn", "on"])).unwrap(),
        ["--flash-attn"]
    );
    assert!(
        old.adapt(&argv(&["--flash-attn", "off"]))
            .unwrap()
            .is_empty()
    );
    assert_eq!(old.adapt(&argv(&["--no-ui"])).unwrap(), ["--no-webui"]);
}
