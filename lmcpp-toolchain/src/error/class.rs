//! What an error means for whoever handles it, shared by the crate error and the areas'
//! errors, and the check that keeps each error type's classification table complete.

/// What an error means for whoever handles it: exactly one answer per variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// The caller's input is wrong; retrying the same thing fails the same way.
    UserError,
    /// Retrying the same operation later could succeed.
    Transient,
    /// The work failed; see the message for what to do.
    Failure,
}

/// Checks an error type's table of examples: every variant (numbered by `ordinal`, which
/// has no catch-all) has an example, and each example has the class the table says, through
/// `class` and through the public `is_user_error`/`is_transient` answers.
#[cfg(test)]
pub(crate) fn check_class_table<E: std::fmt::Debug>(
    table: &[(E, Class)],
    ordinal: fn(&E) -> usize,
    variants: usize,
    class: fn(&E) -> Class,
    answers: fn(&E) -> (bool, bool),
) {
    let mut seen: Vec<usize> = table.iter().map(|(e, _)| ordinal(e)).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(
        seen,
        (0..variants).collect::<Vec<_>>(),
        "every variant needs an example in the table"
    );
    for (e, expected) in table {
        assert_eq!(class(e), *expected, "{e:?}");
        let (user, transient) = answers(e);
        assert_eq!(user, *expected == Class::UserError, "{e:?}");
        assert_eq!(transient, *expected == Class::Transient, "{e:?}");
    }
}
