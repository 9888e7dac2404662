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
