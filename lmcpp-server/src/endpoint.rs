//! Where a server listens: a Unix socket or an HTTP host and port.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where a server listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "transport", rename_all = "lowercase")]
#[non_exhaustive]
pub enum Endpoint {
    /// A Unix domain socket.
    Unix {
        /// The socket path.
        socket: PathBuf,
    },
    /// Plain HTTP over TCP.
    Http {
        /// Host name or IP address.
        host: String,
        /// TCP port.
        port: u16,
    },
}

impl Endpoint {
    /// A Unix socket endpoint.
    pub fn unix(socket: impl Into<PathBuf>) -> Self {
        Self::Unix {
            socket: socket.into(),
        }
    }

    /// An HTTP endpoint.
    pub fn http(host: impl Into<String>, port: u16) -> Self {
        Self::Http {
            host: host.into(),
            port,
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unix { socket } => write!(f, "unix:{}", socket.display()),
            Self::Http { host, port } if host.contains(':') => write!(f, "http://[{host}]:{port}"),
            Self::Http { host, port } => write!(f, "http://{host}:{port}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_display() {
        assert_eq!(
            Endpoint::http("127.0.0.1", 8080).to_string(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(Endpoint::http("::1", 80).to_string(), "http://[::1]:80");
        assert_eq!(Endpoint::unix("/a/b.sock").to_string(), "unix:/a/b.sock");
    }
}
