//! `lmcpp serve --config` applying its file again with real llama-servers: with
//! `--watch` when the file is saved, and on SIGHUP. New models appear, removed ones stop,
//! a changed one restarts at its next request with its new arguments while the unchanged
//! one keeps its server, and a file with an error is refused with its line and key while
//! the running models stay.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::{Env, pid_alive};

const LIMIT: Duration = Duration::from_secs(60);

/// One `[[models]]` table serving the demo model as `alias` with `ctx` cells.
fn model(env: &Env, alias: &str, ctx: u32) -> String {
    format!(
        "[[models]]\nalias = \"{alias}\"\nmodel = \"{}\"\nctx_size = {ctx}\n\n",
        env.model()
    )
}

/// Writes the config as an editor saves: beside it, then renamed over it.
fn save(config: &Path, text: &str) {
    let beside = config.with_extension("toml.tmp");
    std::fs::write(&beside, text).unwrap();
    std::fs::rename(&beside, config).unwrap();
}

/// The proxy `id`'s models as `ps` lists them: alias, and the pid of a running server.
fn models(env: &Env, id: &str) -> Vec<(String, Option<u64>)> {
    crate::proxy_target::ps_models(env, id)
        .iter()
        .map(|m| (m["alias"].as_str().unwrap().to_owned(), m["pid"].as_u64()))
        .collect()
}

fn aliases(env: &Env, id: &str) -> Vec<String> {
    models(env, id).into_iter().map(|(a, _)| a).collect()
}

fn pid_of(env: &Env, id: &str, alias: &str) -> u64 {
    models(env, id)
        .into_iter()
        .find(|(a, _)| a == alias)
        .and_then(|(_, pid)| pid)
        .unwrap_or_else(|| panic!("{alias} has no server: {:?}", models(env, id)))
}

/// Waits until `cond` holds, up to [`LIMIT`].
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + LIMIT;
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A completion from model `alias` of the proxy `id`.
fn complete(env: &Env, id: &str, alias: &str) -> Value {
    env.json(&[
        "complete",
        "--server",
        id,
        "--model",
        alias,
        "-n",
        "2",
        "Once upon a time",
    ])
}

/// The log of `id` once it holds `want` (at most [`LIMIT`]).
fn log_with(env: &Env, id: &str, want: &str) -> String {
    let mut log = String::new();
    wait_for(&format!("{want:?} in the log"), || {
        log = env.ok(&["logs", id, "-n", "400"]);
        log.contains(want)
    });
    log
}

/// The context size the server of model `alias` was started with (from `ps`).
fn ctx_of(env: &Env, id: &str, alias: &str) -> String {
    let ps = env.json(&["ps"]);
    let server = ps
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["proxy"] == id && e["alias"] == alias)
        .unwrap_or_else(|| panic!("no server of {alias}: {ps}"))
        .clone();
    let args: Vec<&str> = server["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let at = args
        .iter()
        .position(|a| {
            lmcpp::types::args::FlagInfo::lookup(a).is_some_and(|i| i.field == "ctx_size")
        })
        .unwrap_or_else(|| panic!("no context size in {args:?}"));
    args[at + 1].to_owned()
}

#[test]
fn a_watched_config_takes_new_removed_and_changed_models_and_a_bad_edit_changes_nothing() {
    let env = Env::new();
    let config = env.dir.path().join("lmcpp.toml");
    save(&config, &(model(&env, "a", 512) + &model(&env, "b", 512)));
    let path = config.to_str().unwrap();
    let record = env.json(&["serve", "--config", path, "--watch", "--detach"]);
    let id = record["id"].as_str().unwrap().to_owned();
    complete(&env, &id, "a");
    complete(&env, &id, "b");
    let (a_pid, b_pid) = (pid_of(&env, &id, "a"), pid_of(&env, &id, "b"));
    assert_eq!(ctx_of(&env, &id, "b"), "512");

    // b's context changes and c is added: c is listed, b's idle server stops at once and
    // its next request starts it with the new context; a keeps its server.
    let changed = model(&env, "a", 512) + &model(&env, "b", 1024) + &model(&env, "c", 512);
    save(&config, &changed);
    wait_for("c is listed", || aliases(&env, &id) == ["a", "b", "c"]);
    wait_for("b's old server exits", || !pid_alive(b_pid));
    let log = log_with(&env, &id, "reloaded: ");
    assert!(
        log.contains("reloaded: added c; changed b (each restarts at its next request)\n"),
        "{log}"
    );
    complete(&env, &id, "b");
    complete(&env, &id, "c");
    assert_ne!(pid_of(&env, &id, "b"), b_pid);
    assert_eq!(ctx_of(&env, &id, "b"), "1024");
    assert_eq!(pid_of(&env, &id, "a"), a_pid);

    // A value that does not read: refused with its line and key; nothing changes.
    let bad = changed.replace("alias = \"b\"\n", "alias = \"b\"\nkeep_alive = \"soon\"\n");
    save(&config, &bad);
    let log = log_with(&env, &id, "reload refused");
    let refused = log.lines().find(|l| l.contains("reload refused")).unwrap();
    assert!(
        refused.contains(&format!("{path}, line 8, models[1].keep_alive")),
        "{refused}"
    );
    assert!(
        refused.ends_with("the models stay as they were"),
        "{refused}"
    );
    assert_eq!(aliases(&env, &id), ["a", "b", "c"]);
    assert_eq!(pid_of(&env, &id, "a"), a_pid);
    complete(&env, &id, "a");

    // a and c removed: their servers stop, and a request for a is refused by name.
    let c_pid = pid_of(&env, &id, "c");
    save(&config, &model(&env, "b", 1024));
    wait_for("only b is listed", || aliases(&env, &id) == ["b"]);
    wait_for("a's and c's servers exit", || {
        !pid_alive(a_pid) && !pid_alive(c_pid)
    });
    let out = env
        .cmd(&["complete", "--server", &id, "--model", "a", "x"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // The proxy's record lists its models now, so the client names them.
    assert!(
        !out.status.success() && err.contains("serves no model a; its models are b"),
        "{err}"
    );
    complete(&env, &id, "b");
    env.ok(&["stop", &id]);
}

#[cfg(unix)]
#[test]
fn sighup_applies_the_config_again_and_stops_a_proxy_without_one() {
    let env = Env::new();
    let config = env.dir.path().join("lmcpp.toml");
    save(&config, &model(&env, "a", 512));
    let record = env.json(&["serve", "--config", config.to_str().unwrap(), "--detach"]);
    let id = record["id"].as_str().unwrap().to_owned();
    let pid = record["pid"].as_u64().unwrap();
    complete(&env, &id, "a");
    let a_pid = pid_of(&env, &id, "a");
    // Without --watch a save changes nothing until the SIGHUP.
    save(&config, &(model(&env, "a", 512) + &model(&env, "b", 512)));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(aliases(&env, &id), ["a"]);
    hangup(pid);
    log_with(&env, &id, "SIGHUP: reading ");
    wait_for("b is listed", || aliases(&env, &id) == ["a", "b"]);
    complete(&env, &id, "b");
    assert!(pid_alive(pid), "the proxy runs on");
    assert_eq!(pid_of(&env, &id, "a"), a_pid);
    env.ok(&["stop", &id]);

    // Started from the command line, there is nothing to read again: SIGHUP stops it.
    let a = format!("a={}", env.model());
    let b = format!("b={}", env.model());
    let record = env.json(&["serve", "--model", &a, "--model", &b, "--detach"]);
    let pid = record["pid"].as_u64().unwrap();
    hangup(pid);
    wait_for("the proxy without a config stops", || !pid_alive(pid));
}

/// Sends SIGHUP to `pid`.
#[cfg(unix)]
fn hangup(pid: u64) {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// `cmd` as one line for `sh -c`: its environment changes, program and arguments, each
/// quoted.
#[cfg(target_os = "linux")]
fn shell_line(cmd: &std::process::Command) -> String {
    let quote = |s: &std::ffi::OsStr| format!("'{}'", s.to_string_lossy().replace('\'', r"'\''"));
    let mut words = vec!["env".to_owned()];
    // `env` takes its options (`-u NAME`) before the assignments.
    for (key, _) in cmd.get_envs().filter(|(_, v)| v.is_none()) {
        words.extend(["-u".to_owned(), quote(key)]);
    }
    for (key, value) in cmd.get_envs() {
        if let Some(v) = value {
            let set = format!("{}={}", key.to_string_lossy(), v.to_string_lossy());
            words.push(quote(set.as_ref()));
        }
    }
    words.push(quote(cmd.get_program()));
    words.extend(cmd.get_args().map(quote));
    words.join(" ")
}

/// In a terminal (a pseudo-terminal that `script` holds), SIGHUP reloads a foreground
/// proxy's config; closing the terminal still stops it, in order: its log says so to the
/// end (no line to the gone terminal stops it half-way), and its model server is gone.
#[cfg(target_os = "linux")]
#[test]
fn closing_its_terminal_stops_a_foreground_proxy_that_a_sighup_reloads() {
    let env = Env::new();
    let config = env.dir.path().join("lmcpp.toml");
    save(&config, &model(&env, "a", 512));
    let serve = env.cmd(&["serve", "--config", config.to_str().unwrap()]);
    let mut terminal = std::process::Command::new("script")
        .args(["-qfec", &shell_line(&serve), "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut record = Value::Null;
    wait_for("the proxy is listed", || {
        record = env
            .json(&["ps"])
            .as_array()
            .and_then(|all| all.iter().find(|e| e["kind"] == "proxy").cloned())
            .unwrap_or(Value::Null);
        !record.is_null()
    });
    let (id, pid) = (
        record["id"].as_str().unwrap().to_owned(),
        record["pid"].as_u64().unwrap(),
    );
    complete(&env, &id, "a");
    let server = pid_of(&env, &id, "a");
    hangup(pid);
    log_with(&env, &id, "reloaded: no model changed");
    assert!(pid_alive(pid), "a SIGHUP with the terminal open reloads");
    // The terminal goes: `script` ends, and the kernel hangs up the proxy's session.
    let _ = terminal.kill();
    let _ = terminal.wait();
    wait_for("the proxy stops", || !pid_alive(pid));
    wait_for("its model server stops", || !pid_alive(server));
    let log = std::fs::read_to_string(record["log_path"].as_str().unwrap()).unwrap();
    assert!(
        log.contains("lmcpp: SIGHUP: stopping the proxy and its models\n")
            && log.ends_with("lmcpp: stopped\n"),
        "{log}"
    );
}
