//! `lmcpp rpc-worker`, `lmcpp serve --rpc` and `lmcpp ps` with real `rpc-server` workers
//! on loopback.

use std::path::PathBuf;

use super::{Env, pid_alive};

/// The `rpc_server` of the prerequisites file; fails with the command that provides it.
fn rpc_server() -> PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    super::paths()
        .rpc_server(root)
        .map(PathBuf::from)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn kinds(ps: &serde_json::Value) -> Vec<(String, String)> {
    let mut v: Vec<_> = ps
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap().to_owned(),
                r["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn workers_serve_list_stop_and_unreachable_ones_are_named() {
    let env = Env::new();
    let bin = rpc_server();
    let bin = bin.to_str().unwrap();
    let start = || {
        env.json(&[
            "rpc-worker",
            "--bind",
            "127.0.0.1:0",
            "--detach",
            "--rpc-server",
            bin,
        ])
    };
    let (w1, w2) = (start(), start());
    let addr = |w: &serde_json::Value| {
        format!(
            "{}:{}",
            w["endpoint"]["host"].as_str().unwrap(),
            w["endpoint"]["port"]
        )
    };
    let rpc = format!("{},{}", addr(&w1), addr(&w2));
    let id = |w: &serde_json::Value| w["id"].as_str().unwrap().to_owned();
    assert_eq!(w1["kind"], "rpc-worker");

    let server = env.json(&["serve", "--model", env.model(), "--rpc", &rpc, "--detach"]);
    assert!(
        server["args"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a.as_str() == Some(rpc.as_str())),
        "{server}"
    );
    let mut expected = vec![
        ("rpc-worker".to_owned(), id(&w1)),
        ("rpc-worker".to_owned(), id(&w2)),
        ("server".to_owned(), id(&server)),
    ];
    expected.sort();
    assert_eq!(kinds(&env.json(&["ps"])), expected);
    let table = env.ok(&["ps"]);
    assert!(table.lines().next().unwrap().contains("KIND"), "{table}");
    assert!(table.contains(&format!("rpc://{}", addr(&w1))), "{table}");

    // With workers running, the one server is still the default target.
    let done = env.json(&["complete", "Once upon a time", "-n", "4"]);
    assert!(done["tokens_predicted"].as_u64().unwrap() > 0, "{done}");
    // A worker is not a target.
    let out = env
        .cmd(&["complete", "x", "-n", "1", "--server", &id(&w1)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");

    // Stopping the server, then a worker: the worker is gone from `ps`.
    env.ok(&["stop", &id(&server)]);
    env.ok(&["stop", &id(&w1)]);
    assert!(!pid_alive(w1["pid"].as_u64().unwrap()));
    assert_eq!(
        kinds(&env.json(&["ps"])),
        vec![("rpc-worker".to_owned(), id(&w2))]
    );

    // The stopped worker's address is refused before llama-server is started.
    let out = env
        .cmd(&["serve", "--model", env.model(), "--rpc", &rpc, "--detach"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("rpc worker {} is unreachable", addr(&w1))),
        "{stderr}"
    );
    assert_eq!(kinds(&env.json(&["ps"])).len(), 1);

    // Bad --bind values are bad input.
    let out = env
        .cmd(&["rpc-worker", "--bind", "localhost:1", "--rpc-server", bin])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");

    env.ok(&["stop", "--all"]);
    assert_eq!(env.json(&["ps"]), serde_json::json!([]));
}
