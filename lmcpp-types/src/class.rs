//! What an error means for whoever handles it: one [`Class`] and one [`Classify`] trait
//! shared by every error type of lmcpp (the toolchain's and its areas', the server's, the
//! facade's), so a caller decides the same way whichever error it holds. The CLI exits
//! with status 2 for a [`Class::UserError`] and 1 otherwise.
//!
//! ```
//! use lmcpp_types::{Class, Classify};
//!
//! #[derive(Debug)]
//! enum MyError { BadPath, Busy }
//!
//! impl Classify for MyError {
//!     fn class(&self) -> Class {
//!         match self {
//!             MyError::BadPath => Class::UserError,
//!             MyError::Busy => Class::Transient,
//!         }
//!     }
//! }
//!
//! assert!(MyError::BadPath.is_user_error());
//! assert!(MyError::Busy.is_transient());
//! ```

/// What an error means for whoever handles it: exactly one answer per error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// The caller's input is wrong (a path, an argument, a file that is not a model);
    /// retrying the same thing fails the same way.
    UserError,
    /// Retrying the same operation later could succeed (a busy server, a dropped
    /// connection, a rate limit).
    Transient,
    /// The work failed; the message says what to do.
    Failure,
}

/// An error that knows its [`Class`]. Implementations classify every variant in one
/// `match` without a catch-all, so a new variant does not compile until someone decides
/// what it means.
pub trait Classify {
    /// This error's class.
    fn class(&self) -> Class;

    /// Whether the error is the caller's input rather than a failure of the work.
    fn is_user_error(&self) -> bool {
        self.class() == Class::UserError
    }

    /// Whether retrying the same operation later could succeed.
    fn is_transient(&self) -> bool {
        self.class() == Class::Transient
    }
}
