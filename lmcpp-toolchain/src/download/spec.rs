//! What a download is asked for ([`DownloadSpec`], [`Content`]) and what it gives
//! ([`Downloaded`]).

use std::path::PathBuf;

/// What to download.
#[derive(Clone, Default)]
pub struct DownloadSpec {
    /// `http(s)://` or `file://` URL, or a plain local path.
    pub url: String,
    /// Final location of the file.
    pub dest: PathBuf,
    /// Expected SHA-256 (hex, any case). A mismatch deletes the partial file and fails.
    pub expected_sha256: Option<String>,
    /// Extra request headers, e.g. `("Authorization", "Bearer …")`. Never logged.
    pub headers: Vec<(String, String)>,
    /// What the bytes must be beyond matching the digest; checked before publishing.
    pub content: Content,
}

/// What a download must contain, checked before it is published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Content {
    /// Anything. Without a digest and a `Content-Length` a cleanly ended body is taken as
    /// complete: archives are checked when they are extracted (gzip and zip carry their
    /// own checksums and lengths).
    #[default]
    Any,
    /// A GGUF model: it must start with the `GGUF` magic, and when neither a digest nor a
    /// `Content-Length` vouches for its length it must parse as a whole GGUF file whose
    /// tensor data fits in what arrived.
    Gguf,
}

impl std::fmt::Debug for DownloadSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header values may be secrets; show only their names.
        f.debug_struct("DownloadSpec")
            .field("url", &self.url)
            .field("dest", &self.dest)
            .field("expected_sha256", &self.expected_sha256)
            .field("content", &self.content)
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl DownloadSpec {
    /// A spec with no checksum and no extra headers.
    pub fn new(url: impl Into<String>, dest: impl Into<PathBuf>) -> Self {
        Self {
            url: url.into(),
            dest: dest.into(),
            ..Self::default()
        }
    }

    /// Sets the expected SHA-256.
    pub fn sha256(mut self, hex: impl Into<String>) -> Self {
        self.expected_sha256 = Some(hex.into());
        self
    }

    /// Adds a request header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets what the content must be.
    pub fn content(mut self, content: Content) -> Self {
        self.content = content;
        self
    }
}

/// A finished download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    /// The published file (`spec.dest`).
    pub path: PathBuf,
    /// SHA-256 of the whole file, lower-case hex.
    pub sha256: String,
    /// File size in bytes.
    pub size: u64,
    /// Bytes received over the network by this call (0 when `dest` was already valid).
    pub bytes_transferred: u64,
    /// The ETag of the final response, when there was one.
    pub etag: Option<String>,
    /// The URL after redirects.
    pub final_url: String,
}
