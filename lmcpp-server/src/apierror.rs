//! Temporary stand-ins for lmcpp-types items that have not landed yet.

use std::path::PathBuf;

/// Placeholder for `lmcpp_types::ServerArgs`.
#[derive(Debug, Clone, Default)]
pub struct ServerArgs {
    /// Model path.
    pub model: Option<PathBuf>,
    /// Host.
    pub host: Option<String>,
    /// Port.
    pub port: Option<u16>,
}

impl ServerArgs {
    /// Command line.
    pub fn to_argv(&self) -> Result<Vec<String>, std::convert::Infallible> {
        let mut v = Vec::new();
        if let Some(m) = &self.model {
            v.push("--model".to_owned());
            v.push(m.to_string_lossy().into_owned());
        }
        if let Some(h) = &self.host {
            v.push("--host".to_owned());
            v.push(h.clone());
        }
        if let Some(p) = self.port {
            v.push("--port".to_owned());
            v.push(p.to_string());
        }
        Ok(v)
    }

    /// Secrets.
    pub fn secret_env(&self) -> Vec<(String, String)> {
        Vec::new()
    }
}

pub(crate) fn api_error_from_text(status: u16, text: &str) -> crate::ApiError {
    crate::ApiError {
        code: status,
        message: text.to_owned(),
        kind: lmcpp_types::error::ErrorType::Unknown(String::new()),
        extra: Default::default(),
    }
}
