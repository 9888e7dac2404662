//! Readable names and the web UI against the real llama-server: a model found in the
//! Hugging Face cache is served under the reference the user gave, which `/v1/models`, the
//! responses and `lmcpp ps` report; `--webui` serves the UI page and without it there is none.
//!
//! The multimodal projector is a tiny generated LLaVA-style one that the real server loads
//! next to the demo model.
//!
//! A llama-server built offline embeds no UI assets (its build fetches or builds them), so
//! the page comes from `--path`, which llama-server serves only while its UI is on; what
//! the binary itself embeds is checked too (the page, or its absence reported by name).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::Env;

const COMMIT: &str = "1111111111111111111111111111111111111111";
const REPO: &str = "org/tiny-GGUF";
const PAGE: &str = "<!doctype html><title>lmcpp ui test</title>";

/// Places the demo model in a hub cache as `REPO`'s `tiny-Q4_K_M.gguf`, as
/// `huggingface_hub` would (blob named by its SHA-256, snapshot link, `refs/main`).
fn place_demo(hub: &Path, demo: &Path) {
    let out = Command::new("sha256sum").arg(demo).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let digest = text.split_whitespace().next().unwrap().to_owned();
    let dir = hub.join("models--org--tiny-GGUF");
    for sub in ["blobs", "refs", &format!("snapshots/{COMMIT}")] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    std::fs::copy(demo, dir.join("blobs").join(&digest)).unwrap();
    std::fs::write(dir.join("refs/main"), COMMIT).unwrap();
    super::hub_link(
        &format!("../../blobs/{digest}"),
        &dir.join("snapshots").join(COMMIT).join("tiny-Q4_K_M.gguf"),
    );
}

/// One HTTP/1.1 request on loopback; the status and the body.
fn http(port: u16, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

fn json_body(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn serve(env: &Env, extra: &[&str]) -> (serde_json::Value, String) {
    let hub = env.dir.path().join("hub");
    let public = env.dir.path().join("public");
    std::fs::create_dir_all(&public).unwrap();
    std::fs::write(public.join("index.html"), PAGE).unwrap();
    let mut args = vec!["--json", "serve", "--model", REPO, "--http", "--detach"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "--path", public.to_str().unwrap()]);
    let out = env
        .cmd(&args)
        .env("HF_HUB_CACHE", &hub)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    (serde_json::from_slice(&out.stdout).unwrap(), stderr)
}

#[test]
fn a_model_from_the_hub_cache_is_served_by_its_name_and_the_web_ui_only_when_asked() {
    let env = Env::new();
    place_demo(&env.dir.path().join("hub"), &env.paths.demo_model);

    let (record, stderr) = serve(&env, &["--webui"]);
    assert_eq!(record["alias"], REPO, "{record}");
    let port = u16::try_from(record["endpoint"]["port"].as_u64().unwrap()).unwrap();
    assert!(
        stderr.contains(&format!("web UI at http://127.0.0.1:{port}/")),
        "{stderr}"
    );
    // The id every OpenAI client selects the model by.
    let (status, body) = http(port, "GET", "/v1/models", None);
    assert_eq!(status, 200, "{body}");
    let models = json_body(&body);
    assert_eq!(models["data"][0]["id"], REPO, "{models}");
    let request = format!(
        r#"{{"model":"{REPO}","messages":[{{"role":"user","content":"Hi"}}],"max_tokens":2}}"#
    );
    let (status, body) = http(port, "POST", "/v1/chat/completions", Some(&request));
    assert_eq!(status, 200, "{body}");
    assert_eq!(json_body(&body)["model"], REPO, "{body}");
    let ps = env.json(&["ps"]);
    assert_eq!(ps[0]["alias"], REPO, "{ps}");
    // The web UI's page.
    let (status, body) = http(port, "GET", "/", None);
    assert_eq!(status, 200, "{}", &body[..body.len().min(200)]);
    assert!(body.contains(PAGE), "{body}");
    env.ok(&["stop", "--all"]);

    // Without --webui there is no page: llama-server's own 404.
    let (record, _) = serve(&env, &[]);
    let port = u16::try_from(record["endpoint"]["port"].as_u64().unwrap()).unwrap();
    let (status, body) = http(port, "GET", "/", None);
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        json_body(&body)["error"]["type"],
        "not_found_error",
        "{body}"
    );
    let (status, body) = http(port, "GET", "/v1/models", None);
    assert_eq!(status, 200);
    assert_eq!(json_body(&body)["data"][0]["id"], REPO);
    env.ok(&["stop", "--all"]);

    the_ui_the_build_embeds(&env);
}

/// `--webui` without `--path`: the page the binary embeds, if any.
///
/// A llama-server built offline embeds UI assets only when its build can fetch or build
/// them (an older tree keeps its page in the source, so its offline build has one). Without
/// a page, its `/` is a 404 even with the UI on; that the UI is on then shows in `/sw.js`,
/// which a current llama-server answers (with a service worker that removes itself) only
/// while the UI is off or comes from `--path`. A build with assets serves its page at `/`.
fn the_ui_the_build_embeds(env: &Env) {
    use super::real_clients::{Target, curl_with};
    const TEST: &str =
        "a_model_from_the_hub_cache_is_served_by_its_name_and_the_web_ui_only_when_asked";
    let supports = crate::supports();
    let port_of = |record: &serde_json::Value| {
        Target::Http(u16::try_from(record["endpoint"]["port"].as_u64().unwrap()).unwrap())
    };

    // The UI off: no page, and the self-removing service worker where the server has one.
    let (record, _) = serve_model(env, &["--model", REPO]);
    let target = port_of(&record);
    let (status, body) = curl_with(&target, "/", None, &["--compressed"]);
    assert_eq!(status, 404, "{}", &body[..body.len().min(300)]);
    let (status, sw) = curl_with(&target, "/sw.js", None, &[]);
    let kill_switch = status == 200;
    if kill_switch {
        assert!(sw.contains("unregister()"), "the UI is off: {sw}");
    } else {
        assert_eq!(status, 404, "{sw}");
        supports.lacks(
            TEST,
            "a self-removing /sw.js while the UI is off",
            "`/` is a 404 with the UI off",
        );
    }
    env.ok(&["stop", "--all"]);

    let (record, _) = serve_model(env, &["--model", REPO, "--webui"]);
    let target = port_of(&record);
    let (status, body) = curl_with(&target, "/", None, &["--compressed"]);
    let head = &body[..body.len().min(300)];
    if status == 200 {
        assert!(
            body.to_ascii_lowercase().contains("<!doctype html>"),
            "{head}"
        );
    } else {
        assert_eq!(status, 404, "{head}");
        assert_eq!(json_body(&body)["error"]["type"], "not_found_error");
        supports.lacks(
            TEST,
            "an embedded UI page (a build without UI assets)",
            "`/` is its 404 with the UI on",
        );
        if kill_switch {
            let (status, _) = curl_with(&target, "/sw.js", None, &[]);
            assert_eq!(status, 404, "the UI is on: no self-removing service worker");
        }
    }
    env.ok(&["stop", "--all"]);
}

/// Writes `demo` as a split GGUF of two parts into `dir`, as `gguf-split` lays one out: the
/// first part holds the metadata and half the tensors, the second the rest, each with the
/// `split.*` keys llama.cpp reads.
fn split_demo(demo: &Path, dir: &Path, prefix: &str) -> Vec<std::path::PathBuf> {
    use lmcpp::toolchain::gguf::{GgufValue, GgufWriter, read_gguf};
    let file = read_gguf(demo).unwrap();
    let bytes = std::fs::read(demo).unwrap();
    let half = file.tensors.len() / 2;
    let mut out = Vec::new();
    for (no, tensors) in [&file.tensors[..half], &file.tensors[half..]]
        .into_iter()
        .enumerate()
    {
        let mut w = GgufWriter::new();
        if no == 0 {
            *w.metadata_mut() = file.metadata.clone();
        }
        w.set("split.no", GgufValue::U16(u16::try_from(no).unwrap()));
        w.set("split.count", GgufValue::U16(2));
        w.set(
            "split.tensors.count",
            GgufValue::I32(i32::try_from(file.tensors.len()).unwrap()),
        );
        for t in tensors {
            let r = file.tensor_range(t);
            let data = bytes[r.start as usize..r.end as usize].to_vec();
            w.add_tensor(&t.name, &t.dims, t.ggml_type, data).unwrap();
        }
        let path = dir.join(format!("{prefix}-{:05}-of-00002.gguf", no + 1));
        w.write_file(&path).unwrap();
        out.push(path);
    }
    out
}

#[test]
fn a_split_model_in_the_hub_cache_loads_from_its_first_part() {
    let env = Env::new();
    let parts = split_demo(&env.paths.demo_model, env.dir.path(), "tiny-Q4_K_M");
    let hub = env.dir.path().join("hub");
    let dir = hub.join("models--org--split-GGUF");
    for sub in ["blobs", "refs", &format!("snapshots/{COMMIT}")] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    std::fs::write(dir.join("refs/main"), COMMIT).unwrap();
    // Blobs named by digest, links named like the parts: the server must be given the
    // link's name, not the blob's, to find part 2.
    for (i, part) in parts.iter().enumerate() {
        let digest = format!("{:x}", i + 10).repeat(64);
        std::fs::rename(part, dir.join("blobs").join(&digest)).unwrap();
        super::hub_link(
            &format!("../../blobs/{digest}"),
            &dir.join("snapshots")
                .join(COMMIT)
                .join(part.file_name().unwrap()),
        );
    }
    let out = env
        .cmd(&[
            "--json",
            "serve",
            "--model",
            "org/split-GGUF",
            "--http",
            "--detach",
        ])
        .env("HF_HUB_CACHE", &hub)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        record["model"]
            .as_str()
            .is_some_and(|m| m.ends_with("tiny-Q4_K_M-00001-of-00002.gguf")),
        "{record}"
    );
    let port = u16::try_from(record["endpoint"]["port"].as_u64().unwrap()).unwrap();
    let (status, body) = http(port, "GET", "/v1/models", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(json_body(&body)["data"][0]["id"], "org/split-GGUF");
    let request = r#"{"prompt":"Once","n_predict":2}"#;
    let (status, body) = http(port, "POST", "/completion", Some(request));
    assert_eq!(status, 200, "{body}");
}

/// Writes a tiny LLaVA-style projector (`clip.projector_type = mlp`: one vision block, a
/// two-layer projection to the text model's `n_embd`) with small deterministic weights.
fn tiny_mmproj(path: &Path, n_embd_text: u64) {
    use lmcpp::toolchain::gguf::{GgufArray, GgufValue, GgufWriter};
    const E: u64 = 32; // vision width
    const FF: u64 = 64;
    const PATCH: u64 = 14;
    const IMAGE: u64 = 28;
    let n_pos = (IMAGE / PATCH) * (IMAGE / PATCH);
    let mut w = GgufWriter::new();
    w.set("general.architecture", "clip")
        .set("clip.projector_type", "mlp")
        .set("clip.has_vision_encoder", true)
        .set("clip.vision.image_size", IMAGE as u32)
        .set("clip.vision.patch_size", PATCH as u32)
        .set("clip.vision.embedding_length", E as u32)
        .set("clip.vision.feed_forward_length", FF as u32)
        .set("clip.vision.block_count", 1u32)
        .set("clip.vision.attention.head_count", 2u32)
        .set("clip.vision.attention.layer_norm_epsilon", 1e-5f32)
        .set("clip.vision.projection_dim", n_embd_text as u32)
        .set(
            "clip.vision.image_mean",
            GgufValue::Array(GgufArray::F32(vec![0.5; 3])),
        )
        .set(
            "clip.vision.image_std",
            GgufValue::Array(GgufArray::F32(vec![0.5; 3])),
        );
    let mut seed = 1u32;
    let mut values = |n: u64| -> Vec<f32> {
        (0..n)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (f64::from(seed >> 8) / f64::from(1u32 << 24) - 0.5) as f32 * 0.02
            })
            .collect()
    };
    let mut add = |name: &str, dims: &[u64]| {
        let n = dims.iter().product();
        w.add_f32_tensor(name, dims, &values(n)).unwrap();
    };
    add("v.patch_embd.weight", &[PATCH, PATCH, 3, E]);
    add("v.position_embd.weight", &[E, n_pos]);
    for t in ["attn_q", "attn_k", "attn_v", "attn_out"] {
        add(&format!("v.blk.0.{t}.weight"), &[E, E]);
        add(&format!("v.blk.0.{t}.bias"), &[E]);
    }
    for t in ["ln1", "ln2"] {
        add(&format!("v.blk.0.{t}.weight"), &[E]);
        add(&format!("v.blk.0.{t}.bias"), &[E]);
    }
    add("v.blk.0.ffn_up.weight", &[E, FF]);
    add("v.blk.0.ffn_up.bias", &[FF]);
    add("v.blk.0.ffn_down.weight", &[FF, E]);
    add("v.blk.0.ffn_down.bias", &[E]);
    add("mm.0.weight", &[E, n_embd_text]);
    add("mm.0.bias", &[n_embd_text]);
    add("mm.2.weight", &[n_embd_text, n_embd_text]);
    add("mm.2.bias", &[n_embd_text]);
    w.write_file(path).unwrap();
}

#[test]
fn a_multimodal_model_is_served_with_the_projector_pulled_with_it() {
    let env = Env::new();
    let hub = env.dir.path().join("hub");
    let dir = hub.join("models--org--vision-GGUF");
    for sub in ["blobs", "refs", &format!("snapshots/{COMMIT}")] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    std::fs::write(dir.join("refs/main"), COMMIT).unwrap();
    let n_embd = lmcpp::toolchain::gguf::read_gguf(&env.paths.demo_model)
        .unwrap()
        .summary()
        .embedding_length
        .unwrap();
    let proj = env.dir.path().join("mmproj.gguf");
    tiny_mmproj(&proj, n_embd);
    for (i, (src, name)) in [
        (env.paths.demo_model.as_path(), "vision-Q4_K_M.gguf"),
        (proj.as_path(), "mmproj-vision-f16.gguf"),
    ]
    .into_iter()
    .enumerate()
    {
        let digest = format!("{:x}", i + 3).repeat(64);
        std::fs::copy(src, dir.join("blobs").join(&digest)).unwrap();
        super::hub_link(
            &format!("../../blobs/{digest}"),
            &dir.join("snapshots").join(COMMIT).join(name),
        );
    }
    let (record, _) = serve_model(&env, &["--model", "org/vision-GGUF"]);
    let args: Vec<String> = serde_json::from_value(record["args"].clone()).unwrap();
    assert!(
        args.iter().any(|a| a.ends_with("mmproj-vision-f16.gguf")),
        "{args:?}"
    );
    let port = u16::try_from(record["endpoint"]["port"].as_u64().unwrap()).unwrap();
    let (status, body) = http(port, "GET", "/props", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(json_body(&body)["modalities"]["vision"], true, "{body}");
    env.ok(&["stop", "--all"]);

    // Without the projector the same model is text only.
    let (record, _) = serve_model(&env, &["--model", "org/vision-GGUF", "--no-mmproj"]);
    let port = u16::try_from(record["endpoint"]["port"].as_u64().unwrap()).unwrap();
    let (_, body) = http(port, "GET", "/props", None);
    assert_eq!(json_body(&body)["modalities"]["vision"], false, "{body}");
}

fn serve_model(env: &Env, extra: &[&str]) -> (serde_json::Value, String) {
    let mut args = vec!["--json", "serve", "--http", "--detach"];
    args.extend_from_slice(extra);
    let out = env.cmd(&args).env("HF_HUB_OFFLINE", "1").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    (serde_json::from_slice(&out.stdout).unwrap(), stderr)
}

/// `lmcpp run` starts its one-shot server with the web UI off, as `serve` does unless
/// `--webui`: seen in the argv the real server is started with, through a wrapper that
/// notes it and then runs the real binary (a shell script: Unix only).
#[cfg(unix)]
#[test]
fn run_starts_its_server_with_the_web_ui_off() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let noted = env.dir.path().join("argv.txt");
    let wrapper = env.dir.path().join("llama-server");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
            noted.display(),
            env.paths.llama_server.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lmcpp"))
        .arg("--home")
        .arg(env.dir.path().join("home"))
        .arg("--runtime-dir")
        .arg(env.dir.path().join("run"))
        .arg("--llama-server")
        .arg(&wrapper)
        .args(["--quiet", "run", "--model", env.model(), "-n", "4", "Hello"])
        .env_remove("LMCPP_HOME")
        .env("HF_HUB_CACHE", env.dir.path().join("hub"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let noted = std::fs::read_to_string(&noted).unwrap();
    let launch: Vec<&str> = noted
        .lines()
        .find(|l| l.split_whitespace().any(|a| a == "--host"))
        .unwrap_or_else(|| panic!("no launch among the noted calls: {noted}"))
        .split_whitespace()
        .collect();
    // The switch as this binary spells it (an older llama.cpp knows only `--no-webui`).
    let off = crate::supports()
        .spelling(&["--no-ui", "--no-webui"])
        .expect("the binary has a switch that turns the web UI off");
    assert!(launch.contains(&off), "{off} not in {launch:?}");
}
