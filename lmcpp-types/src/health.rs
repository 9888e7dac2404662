//! `GET /health` (also `/v1/health`): 200 `{"status":"ok"}` when ready; while the model
//! loads the server answers 503 with an [`ErrorBody`](crate::error::ErrorBody).

use serde::{Deserialize, Serialize};

use crate::common::Extra;
use crate::macros::open_enum;

open_enum! {
    /// The `status` of a successful health response.
    pub enum HealthStatus {
        /// The model is loaded and the server accepts requests.
        Ok = "ok",
        /// Reported by some versions while the model loads.
        Loading = "loading model",
        /// Reported by some versions when no slot is free.
        NoSlotAvailable = "no slot available",
    }
}

/// The body of `GET /health` with status 200.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
pub struct HealthResponse {
    /// `ok` when ready.
    pub status: HealthStatus,
    /// Fields this version does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The outcome of `GET /health`, classified from the status code and body.
#[derive(Debug, Clone, PartialEq)]
pub enum Health {
    /// 200: ready to serve.
    Ready(HealthResponse),
    /// 503: the model is still loading (or the server is waking from sleep).
    Loading(crate::error::ServerError),
    /// Any other error body.
    Error(crate::error::ServerError),
    /// A body that is neither a health response nor an error body.
    Unrecognized {
        /// HTTP status.
        status: u16,
        /// The body, lossily decoded.
        body: String,
    },
}

impl Health {
    /// Classifies a `/health` response.
    pub fn from_response(status: u16, body: &[u8]) -> Health {
        if status == 200
            && let Ok(ok) = serde_json::from_slice::<HealthResponse>(body)
        {
            return Health::Ready(ok);
        }
        match crate::error::ErrorBody::parse(body) {
            Some(e) if status == 503 => Health::Loading(e.error),
            Some(e) => Health::Error(e.error),
            None => Health::Unrecognized {
                status,
                body: String::from_utf8_lossy(body).into_owned(),
            },
        }
    }

    /// `true` when the server is ready.
    pub fn is_ready(&self) -> bool {
        matches!(self, Health::Ready(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_ready_loading_and_garbage() {
        assert!(Health::from_response(200, br#"{"status":"ok"}"#).is_ready());
        let loading =
            br#"{"error":{"code":503,"message":"Loading model","type":"unavailable_error"}}"#;
        assert!(
            matches!(Health::from_response(503, loading), Health::Loading(e) if e.message == "Loading model")
        );
        assert!(matches!(
            Health::from_response(401, br#"{"error":{"code":401,"message":"Invalid API Key","type":"authentication_error"}}"#),
            Health::Error(_)
        ));
        assert!(matches!(
            Health::from_response(502, b"<html>"),
            Health::Unrecognized { status: 502, .. }
        ));
    }
}
