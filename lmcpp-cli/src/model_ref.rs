//! A model as a user names it, parsed once where it enters (a command-line argument, a
//! config key, the builder) and carried typed to the model store and the launcher: the
//! demo model, the default model, or a file, URL or Hugging Face reference.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use lmcpp_toolchain::models::ModelSource;

/// The model name that selects the generated demo model.
pub const DEMO_MODEL: &str = "demo";

/// The model `lmcpp run` uses when none is given: a small real instruct model. Its SHA-256
/// is the one Hugging Face reports for the file (checked while downloading).
pub const DEFAULT_MODEL: &str = "Qwen/Qwen2.5-0.5B-Instruct-GGUF:qwen2.5-0.5b-instruct-q4_k_m.gguf";

/// A model reference, parsed.
///
/// ```
/// use lmcpp::ModelRef;
/// use lmcpp::toolchain::models::ModelSource;
///
/// assert_eq!("demo".parse::<ModelRef>().unwrap(), ModelRef::Demo);
/// let hub: ModelRef = "Qwen/Qwen2.5-0.5B-Instruct-GGUF:q4_k_m".parse().unwrap();
/// assert!(matches!(hub, ModelRef::Source(ModelSource::HuggingFace(_))));
/// let err = "not a model".parse::<ModelRef>().unwrap_err();
/// assert!(lmcpp::Classify::is_user_error(&err), "{err}");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ModelRef {
    /// The project's tiny generated model ([`DEMO_MODEL`]).
    Demo,
    /// [`DEFAULT_MODEL`] where the network allows it, else the demo model with a notice.
    Default,
    /// A file, a URL or a Hugging Face reference.
    Source(ModelSource),
}

impl ModelRef {
    /// Parses what a user wrote: [`DEMO_MODEL`], an existing file whatever its name, else a
    /// path to a `.gguf`, an http(s) or file URL, or `owner/repo[:file|:quant][@revision]`.
    pub fn parse(text: &str) -> Result<Self, lmcpp_toolchain::Error> {
        let text = text.trim();
        if text == DEMO_MODEL {
            return Ok(Self::Demo);
        }
        let path = Path::new(text);
        if !text.is_empty() && path.is_file() {
            return Ok(Self::Source(ModelSource::Local(path.to_path_buf())));
        }
        ModelSource::parse(text).map(Self::Source)
    }

    /// The name a server of this model is asked for when no alias is given.
    pub fn alias(&self) -> String {
        match self {
            Self::Demo => DEMO_MODEL.to_owned(),
            Self::Default => ModelSource::parse(DEFAULT_MODEL)
                .map_or_else(|_| DEFAULT_MODEL.to_owned(), |s| s.alias()),
            Self::Source(source) => source.alias(),
        }
    }
}

/// The demo model, as [`crate::Lmcpp::builder`] starts with.
impl Default for ModelRef {
    fn default() -> Self {
        Self::Demo
    }
}

impl FromStr for ModelRef {
    type Err = lmcpp_toolchain::Error;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Demo => f.write_str(DEMO_MODEL),
            Self::Default => f.write_str(DEFAULT_MODEL),
            Self::Source(source) => write!(f, "{source}"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use lmcpp_types::Classify;

    use super::*;

    #[test]
    fn every_kind_of_reference_is_parsed_once_and_shown_as_written() {
        let dir = tempfile::tempdir().unwrap();
        // An existing file is local whatever its name says.
        let odd = dir.path().join("weights.bin");
        std::fs::write(&odd, b"x").unwrap();
        let odd = odd.to_str().unwrap();
        for (text, local) in [
            ("demo", false),
            (odd, true),
            ("./m.gguf", true),
            ("https://host/m.gguf", false),
            ("owner/repo:q4_k_m", false),
            ("hf://owner/repo@main", false),
        ] {
            let parsed = ModelRef::parse(text).unwrap();
            assert_eq!(
                matches!(parsed, ModelRef::Source(ModelSource::Local(_))),
                local,
                "{text}"
            );
            assert_eq!(ModelRef::parse(&parsed.to_string()).unwrap(), parsed);
        }
        for bad in ["", "just words", "https://", "owner/"] {
            let err = ModelRef::parse(bad).unwrap_err();
            assert!(err.is_user_error(), "{bad}: {err}");
        }
        assert_eq!(ModelRef::Demo.alias(), "demo");
    }
}
