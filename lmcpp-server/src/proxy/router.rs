//! The proxy in the shapes of llama-server's router mode, so that router clients (the
//! llama.cpp web UI's model picker among them) work against it: each model's `/models`
//! entry, the router's own `/props`, and the `/models/sse` events made from the proxy's
//! [`ModelEvent`]s. The keys and JSON types are checked against the recorded answers of
//! the pinned router (`lmcpp-types/tests/fixtures/router_*.json`).

use serde_json::{Map, Value, json};

use super::{
    entry::{self, ServerEntry},
    events::{ModelEvent, ModelEventKind},
    view::{ModelState, ModelView},
};

/// The router's `status.value` of a model in `state`: a failed model is `unloaded` with
/// `failed` and `exit_code` beside it, as the router reports a failed instance.
pub(crate) fn status_value(state: ModelState) -> &'static str {
    match state {
        ModelState::Stopped | ModelState::Failed => "unloaded",
        ModelState::Loading => "loading",
        ModelState::Ready => "loaded",
    }
}

/// One entry of `/models` and `/v1/models`: the proxy's fields (`id` the alias, `object`,
/// `created`, `owned_by`, `status`, `lmcpp`) over what the model's own server listed,
/// then the router's remaining keys where neither gave them (`aliases`, `tags`,
/// `architecture` text in and out, `source` `lmcpp`, `can_remove` false).
/// `status.args` is the command line of the model's last server (empty before its first
/// start); the router's `status.preset` (its INI preset) has no counterpart and is left
/// out.
pub(crate) fn model_entry(
    view: &ModelView,
    server: Option<&ServerEntry>,
    argv: &[String],
    created: u64,
) -> Value {
    let mut status = json!({ "value": status_value(view.state), "args": argv });
    if view.state == ModelState::Failed {
        status["failed"] = json!(true);
        // The router's failed instance always has a code; a start that failed without
        // an exit (a missing model file) is reported as 1.
        status["exit_code"] = json!(view.exit_code.unwrap_or(1));
    }
    let mut own = Map::new();
    own.insert("id".into(), json!(view.alias));
    own.insert("object".into(), json!("model"));
    own.insert("created".into(), json!(created));
    own.insert("owned_by".into(), json!("lmcpp"));
    own.insert("status".into(), status);
    own.insert("lmcpp".into(), json!(view));
    let mut merged = entry::merge(server, own);
    if let Some(fields) = merged.as_object_mut() {
        for (key, value) in [
            ("aliases", json!([])),
            ("tags", json!([])),
            (
                "architecture",
                json!({"input_modalities": ["text"], "output_modalities": ["text"]}),
            ),
            ("source", json!("lmcpp")),
            ("can_remove", json!(false)),
        ] {
            fields.entry(key).or_insert(value);
        }
    }
    merged
}

/// `GET /props` without `?model=` on a proxy of several models: the router's own
/// properties (`role: "router"`, which is how the web UI knows to offer its model
/// picker), with the placeholders the router sends for the fields of one model.
pub(crate) fn props(models: usize) -> Value {
    json!({
        "role": "router",
        "max_instances": models,
        "models_autoload": true,
        "model_alias": "llama-server",
        "model_path": "none",
        "default_generation_settings": {"params": {}, "n_ctx": 0},
        "build_info": concat!("lmcpp ", env!("CARGO_PKG_VERSION")),
    })
}

/// A [`ModelEvent`] as the router's `/models/sse` sends it: a status change is
/// `{"model", "event": "status_change", "data": {"status", ...}}`, where a start is
/// preceded by the router's `model_status` of `loading`, a loaded model carries `info`
/// (its listing entry, from `info`), and a model that ends up not running (stopped,
/// failed, refused, dead) is `unloaded` with the exit code of its server (0 for a stop the
/// proxy asked for or a start refused for room; 1 for a start that failed without an
/// exit). A reload is the router's one `{"model": "*", "event": "models_reload"}` (on
/// which its clients list the models again); the per-model events of a reload have no
/// status change of their own (an old server's stop is one) and send nothing. The
/// router's load `progress` has no counterpart and is left out.
pub(crate) fn sse_event(event: &ModelEvent, info: impl FnOnce() -> Option<Value>) -> Vec<Value> {
    let change =
        |data: Value| json!({"model": event.alias, "event": "status_change", "data": data});
    let unloaded = |code: i32| change(json!({"status": "unloaded", "exit_code": code}));
    match &event.kind {
        ModelEventKind::Starting => vec![
            json!({"model": event.alias, "event": "model_status", "data": {"status": "loading"}}),
            change(json!({"status": "loading"})),
        ],
        ModelEventKind::Ready => {
            let mut data = json!({"status": "loaded"});
            if let Some(info) = info() {
                data["info"] = info;
            }
            vec![change(data)]
        }
        ModelEventKind::StartFailed { exit_code, .. } | ModelEventKind::Died { exit_code, .. } => {
            vec![unloaded(exit_code.unwrap_or(1))]
        }
        ModelEventKind::NoRoom { .. } | ModelEventKind::Stopped { .. } => vec![unloaded(0)],
        ModelEventKind::Reloaded => vec![json!({"model": event.alias, "event": "models_reload"})],
        ModelEventKind::Added
        | ModelEventKind::Removed
        | ModelEventKind::Replaced
        | ModelEventKind::Updated => Vec::new(),
    }
}
