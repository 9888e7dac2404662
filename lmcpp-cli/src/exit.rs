//! How a failed command ends: the exit codes, the CLI's own bad-input error, and which
//! library errors are the user's input (each library error type answers that itself).

use std::process::ExitCode;

use lmcpp::Classify;

/// Exit codes: 0 success, 1 the work failed, 2 bad input (clap uses 2 for usage errors too).
pub(crate) const EXIT_FAILURE: u8 = 1;
const EXIT_BAD_INPUT: u8 = 2;

/// An error that is the user's input, not a failure of the work.
#[derive(Debug)]
pub(crate) struct BadInput(pub(crate) String);

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

/// The exit code of a command that failed with `err`.
pub(crate) fn code(err: &anyhow::Error) -> ExitCode {
    if is_bad_input(err) {
        ExitCode::from(EXIT_BAD_INPUT)
    } else {
        ExitCode::from(EXIT_FAILURE)
    }
}

/// Whether `err` (or what it wraps) says the input was wrong: the CLI's own [`BadInput`],
/// or a library error whose type classifies it as the user's (a missing or non-GGUF model
/// file, an unknown server id, an invalid request, ...).
fn is_bad_input(err: &anyhow::Error) -> bool {
    err.downcast_ref::<BadInput>().is_some()
        || err.chain().any(|e| {
            e.downcast_ref::<lmcpp::Error>()
                .is_some_and(Classify::is_user_error)
                || e.downcast_ref::<lmcpp::toolchain::Error>()
                    .is_some_and(Classify::is_user_error)
                || e.downcast_ref::<lmcpp::server::Error>()
                    .is_some_and(Classify::is_user_error)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_errors_are_classified_by_their_own_types_wherever_they_sit_in_the_chain() {
        let user = lmcpp::server::Error::UnknownServer { id: "x".into() };
        let failure = lmcpp::server::Error::StopTimeout { pid: 1 };
        let cases: Vec<(anyhow::Error, bool)> = vec![
            (BadInput("x".into()).into(), true),
            (anyhow::anyhow!("plain failure"), false),
            (
                lmcpp::server::Error::UnknownServer { id: "x".into() }.into(),
                true,
            ),
            (anyhow::Error::from(user).context("stopping x"), true),
            (anyhow::Error::from(failure).context("stopping x"), false),
            (
                lmcpp::Error::from(lmcpp::toolchain::Error::InvalidRequest { reason: "x".into() })
                    .into(),
                true,
            ),
            (
                lmcpp::Error::from(lmcpp::toolchain::Error::NoCacheRoot).into(),
                false,
            ),
            (
                lmcpp::toolchain::Error::from(lmcpp::toolchain::models::Error::Unknown {
                    query: "x".into(),
                    root: "/x".into(),
                })
                .into(),
                true,
            ),
        ];
        for (err, bad) in &cases {
            assert_eq!(is_bad_input(err), *bad, "{err:#}");
        }
    }
}
