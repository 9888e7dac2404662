//! What a model's own server says about its model (its `/v1/models` entry: `meta`,
//! `aliases`, `tags`, the Ollama-style `models` entry, ...): asked once per start, read
//! within a size cap and a timeout, kept only if it is a JSON object of the shapes the
//! typed client reads, and merged under the proxy's own fields in the proxy's listing.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use lmcpp_types::{openai::models::Model, router::RouterModel};
use serde_json::{Map, Value, json};

use crate::{client::keeps_alive, pool::Pool};

/// Largest answer of a model server's `/v1/models` that is read; a larger one is ignored
/// whole (llama-server's is under 1 KiB).
pub(crate) const MAX_ENTRY_BYTES: usize = 64 * 1024;

/// How long asking a model server for its entry may take, connection included
/// (llama-server answers in well under a millisecond).
pub(crate) const FETCH_TIMEOUT: Duration = Duration::from_secs(2);

/// The keys of a `data` entry the proxy sets itself; a server's own are dropped.
const OWN_KEYS: [&str; 6] = ["id", "object", "created", "owned_by", "status", "lmcpp"];

/// The keys of a `models` entry the proxy sets itself (both the alias).
const OWN_MODEL_KEYS: [&str; 2] = ["name", "model"];

/// A model server's description of its model, without the keys the proxy sets.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ServerEntry {
    /// Its first `data` entry.
    pub(crate) data: Map<String, Value>,
    /// Its first `models` entry (llama-server's Ollama-style list), if it has one.
    pub(crate) model: Option<Map<String, Value>>,
}

/// Asks the server behind `pool` for its `/v1/models` and returns its entry; `None` when
/// it does not answer 200 within [`FETCH_TIMEOUT`] with a JSON object of at most
/// [`MAX_ENTRY_BYTES`] that has one.
pub(crate) async fn fetch(pool: &Pool, auth: Option<&HeaderValue>) -> Option<ServerEntry> {
    let body = tokio::time::timeout(FETCH_TIMEOUT, answer(pool, auth))
        .await
        .ok()??;
    parse(&body)
}

/// The body of a 200 answer to `GET /v1/models`, whole and within the cap.
async fn answer(pool: &Pool, auth: Option<&HeaderValue>) -> Option<Bytes> {
    let mut req = Request::new(Full::new(Bytes::new()));
    *req.method_mut() = Method::GET;
    *req.uri_mut() = http::Uri::from_static("/v1/models");
    req.headers_mut().insert(header::HOST, pool.host().clone());
    if let Some(auth) = auth {
        req.headers_mut()
            .insert(header::AUTHORIZATION, auth.clone());
    }
    let (res, sender) = pool.send(req).await.ok()?;
    if res.status() != StatusCode::OK {
        return None;
    }
    let reusable = keeps_alive(&res);
    let body = Limited::new(res.into_body(), MAX_ENTRY_BYTES)
        .collect()
        .await
        .ok()?
        .to_bytes();
    // Read whole, so the connection can serve the model's first request.
    if reusable {
        pool.put(sender);
    }
    Some(body)
}

/// The entry in a `/v1/models` answer: its first object in `data` and in `models`,
/// without the keys the proxy sets, and without any field that would make the proxy's
/// listing unreadable to the typed client (a `meta` that is not an object of numbers,
/// say). `None` when the answer is not a JSON object or has neither.
pub(crate) fn parse(body: &[u8]) -> Option<ServerEntry> {
    let Value::Object(mut answer) = serde_json::from_slice(body).ok()? else {
        return None;
    };
    let first = |list: Option<Value>| match list {
        Some(Value::Array(items)) => items.into_iter().find_map(|item| match item {
            Value::Object(entry) => Some(entry),
            _ => None,
        }),
        _ => None,
    };
    let data = first(answer.remove("data"));
    let model = first(answer.remove("models"));
    if data.is_none() && model.is_none() {
        return None;
    }
    let mut data = data.unwrap_or_default();
    data.retain(|key, value| !OWN_KEYS.contains(&key.as_str()) && readable(key, value));
    let model = model.map(|mut model| {
        model.retain(|key, _| !OWN_MODEL_KEYS.contains(&key.as_str()));
        model
    });
    Some(ServerEntry { data, model })
}

/// Whether an entry with `key: value` still reads as the typed client's model entry
/// ([`Model`], and [`RouterModel`] for `/models`).
fn readable(key: &str, value: &Value) -> bool {
    let entry = json!({ "id": "", key: value });
    serde_json::from_value::<Model>(entry.clone()).is_ok()
        && serde_json::from_value::<RouterModel>(entry).is_ok()
}

/// One `data` entry of the proxy's listing: the server's fields (when known) under the
/// proxy's `own`, which win.
pub(crate) fn merge(server: Option<&ServerEntry>, own: Map<String, Value>) -> Value {
    let mut entry = own;
    for (key, value) in server.map(|s| &s.data).into_iter().flatten() {
        entry.entry(key).or_insert_with(|| value.clone());
    }
    Value::Object(entry)
}

/// One entry of the proxy's Ollama-style `models` list: `name` and `model` are the alias,
/// with the server's other fields when known.
pub(crate) fn merge_model(server: Option<&ServerEntry>, alias: &str) -> Value {
    let mut entry = Map::new();
    entry.insert("name".into(), json!(alias));
    entry.insert("model".into(), json!(alias));
    for (key, value) in server.and_then(|s| s.model.as_ref()).into_iter().flatten() {
        entry.entry(key).or_insert_with(|| value.clone());
    }
    Value::Object(entry)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn answers_table() {
        let pinned = br#"{"models":[{"name":"m.gguf","model":"m.gguf","size":"","tags":[""],"capabilities":["completion"]}],"object":"list","data":[{"id":"m.gguf","aliases":["m.gguf"],"tags":[],"object":"model","created":1,"owned_by":"llamacpp","meta":{"n_vocab":32000,"n_ctx":2048,"ftype":"all F32"}}]}"#;
        let entry = parse(pinned).unwrap();
        assert_eq!(
            Value::Object(entry.data),
            json!({"aliases":["m.gguf"],"tags":[],"meta":{"n_vocab":32000,"n_ctx":2048,"ftype":"all F32"}})
        );
        assert_eq!(
            entry.model.map(Value::Object),
            Some(json!({"size":"","tags":[""],"capabilities":["completion"]}))
        );
        for (body, data, model) in [
            // Only the first object of each list counts.
            (
                &br#"{"data":[1,{"meta":{"size":5}},{"meta":{"size":6}}]}"#[..],
                Some(json!({"meta":{"size":5}})),
                None,
            ),
            (
                br#"{"models":[{"name":"x","size":"1"}]}"#,
                Some(json!({})),
                Some(json!({"size":"1"})),
            ),
            // Fields the typed client could not read are dropped, the rest kept.
            (
                br#"{"data":[{"meta":"big","path":5,"architecture":7,"tags":["t"]}]}"#,
                Some(json!({"architecture":7,"tags":["t"]})),
                None,
            ),
            (
                br#"{"data":[{"meta":{"n_params":"many"}}]}"#,
                Some(json!({})),
                None,
            ),
            (
                br#"{"data":[{"meta":null}]}"#,
                Some(json!({"meta":null})),
                None,
            ),
            (br#"{"data":[]}"#, None, None),
            (br#"{"data":{"meta":{}}}"#, None, None),
            (br#"[{"data":[{"meta":{}}]}]"#, None, None),
            (b"not json", None, None),
            (b"", None, None),
        ] {
            let entry = parse(body);
            assert_eq!(
                entry.as_ref().map(|e| Value::Object(e.data.clone())),
                data,
                "{}",
                String::from_utf8_lossy(body)
            );
            assert_eq!(
                entry.and_then(|e| e.model).map(Value::Object),
                model,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn the_proxy_fields_win() {
        let entry =
            parse(br#"{"data":[{"id":"evil","status":"up","lmcpp":0,"owned_by":"x","meta":{"size":1}}],"models":[{"name":"evil","model":"evil"}]}"#)
                .unwrap();
        let mut own = Map::new();
        own.insert("id".into(), json!("a"));
        own.insert("object".into(), json!("model"));
        own.insert("status".into(), json!({"value": "loaded"}));
        assert_eq!(
            merge(Some(&entry), own.clone()),
            json!({"id": "a", "object": "model", "status": {"value": "loaded"}, "meta": {"size": 1}})
        );
        assert_eq!(merge(None, own.clone()), Value::Object(own));
        assert_eq!(
            merge_model(Some(&entry), "a"),
            json!({"name": "a", "model": "a"})
        );
        assert_eq!(merge_model(None, "b"), json!({"name": "b", "model": "b"}));
    }

    /// JSON values with the keys a model entry has, nested a few levels.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| json!(f)),
            "[ -~]{0,8}".prop_map(Value::from),
        ];
        let key = prop_oneof![
            Just("id"),
            Just("meta"),
            Just("path"),
            Just("status"),
            Just("n_params"),
            Just("size"),
            Just("name"),
            Just("data"),
            Just("models"),
            Just("x"),
        ]
        .prop_map(str::to_owned);
        leaf.prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(key.clone(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

        /// Whatever a model server answers, the proxy's entry keeps the alias as its id
        /// and still reads as the typed client's model entry.
        #[test]
        fn hostile_answers_never_hide_the_alias_or_break_the_typed_list(
            data in json_value(),
            models in json_value(),
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let _ = parse(&bytes);
            let body = json!({"data": [data], "models": [models]}).to_string();
            let entry = parse(body.as_bytes());
            let mut own = Map::new();
            own.insert("id".into(), json!("alias"));
            let merged = merge(entry.as_ref(), own);
            prop_assert_eq!(&merged["id"], "alias");
            prop_assert!(serde_json::from_value::<Model>(merged.clone()).is_ok(), "{}", merged);
            prop_assert!(serde_json::from_value::<RouterModel>(merged.clone()).is_ok(), "{}", merged);
            let model = merge_model(entry.as_ref(), "alias");
            prop_assert_eq!((&model["name"], &model["model"]), (&json!("alias"), &json!("alias")));
        }
    }
}
