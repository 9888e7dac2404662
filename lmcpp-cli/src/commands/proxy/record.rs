//! A proxy as `lmcpp` shows it: its record with the budget and its models (`serve --json`),
//! the models it reports (`lmcpp ps`), and the id a new one gets.

use std::time::Duration;

use lmcpp::server::{ModelView, ServerRecord};
use serde::Serialize;

/// How long `lmcpp ps` waits for a proxy's model list.
const PS_TIMEOUT: Duration = Duration::from_secs(3);

/// What `serve --json` prints for a proxy: its registry record, the budget and its models.
#[derive(Serialize)]
pub(crate) struct ShownProxy<'a> {
    #[serde(flatten)]
    pub(crate) record: &'a ServerRecord,
    pub(crate) memory_budget: u64,
    pub(crate) models: Vec<ModelView>,
}

/// A registry id for a proxy: `p` and 11 hex digits from the clock and pid.
pub(crate) fn fresh_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mixed = (nanos as u64) ^ (u64::from(std::process::id()) << 40);
    format!("p{:011x}", mixed & 0xfff_ffff_ffff)
}

/// A proxy's models as it reports them in `/v1/models` (what `lmcpp ps` shows under it),
/// or why it did not answer.
pub(crate) async fn proxy_models(
    record: &ServerRecord,
    api_key: Option<&str>,
) -> Result<Vec<ModelView>, String> {
    let mut builder = lmcpp::server::Client::builder(record.endpoint.clone())
        .timeout(Some(PS_TIMEOUT))
        .connect_timeout(PS_TIMEOUT);
    if let Some(key) = api_key {
        builder = builder.api_key(key);
    }
    let list = builder
        .build()
        .models()
        .await
        .map_err(|e| format!("no model list: {e}"))?;
    list.data
        .iter()
        .map(|m| {
            let view = m
                .extra
                .get("lmcpp")
                .ok_or_else(|| format!("{} has no lmcpp state; not an lmcpp proxy?", m.id))?;
            serde_json::from_value(view.clone()).map_err(|e| format!("{}: {e}", m.id))
        })
        .collect()
}
