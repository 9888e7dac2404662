//! The generated demo model in the real `llama-server`: it is pulled through the model
//! store, loads, tokenizes like the vocab's reference tokenizer, completes deterministically
//! at temperature 0, chats with its template, and embeds with mean pooling.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lmcpp_toolchain::demo::{DemoOptions, write_demo_model};
use lmcpp_toolchain::gguf::read_gguf;
use lmcpp_toolchain::models::{ModelStore, ModelStoreOptions, PullOptions};
use lmcpp_toolchain::prepared::PreparedPaths;
use serde_json::{Value, json};

/// The test prerequisites written by `cargo xtask prepare`.
fn paths() -> PreparedPaths {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    PreparedPaths::load(root).unwrap_or_else(|e| panic!("{e}"))
}

/// The token ids llama.cpp's own tokenizer test expects for `text`, from the
/// `<vocab>.inp` / `<vocab>.out` pair shipped next to the vocab file.
fn reference_tokens(p: &PreparedPaths, text: &str) -> Vec<u64> {
    let name = p
        .vocab_gguf
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let candidates = [
        p.vocab_gguf.parent().map(Path::to_path_buf),
        p.source_dir.as_ref().map(|d| d.join("models")),
    ];
    let dir = candidates
        .into_iter()
        .flatten()
        .find(|d| d.join(format!("{name}.inp")).is_file())
        .unwrap_or_else(|| {
            panic!("no {name}.inp/.out next to the vocab file or in source_dir/models; run `cargo xtask prepare`")
        });
    let inp = std::fs::read_to_string(dir.join(format!("{name}.inp"))).unwrap();
    let out = std::fs::read_to_string(dir.join(format!("{name}.out"))).unwrap();
    let inputs: Vec<&str> = inp.split("\n__ggml_vocab_test__\n").collect();
    let outputs: Vec<&str> = out.lines().collect();
    let i = inputs
        .iter()
        .position(|s| *s == text)
        .unwrap_or_else(|| panic!("{text:?} is not in {name}.inp"));
    outputs[i]
        .split_whitespace()
        .map(|t| t.parse().unwrap())
        .collect()
}

/// Kills the server however the test ends.
struct Server {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(binary: &Path, model: &Path, dir: &Path, extra: &[&str]) -> Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = dir.join("llama-server.log");
        let child = Command::new(binary)
            .arg("-m")
            .arg(model)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["-c", "512"])
            .args(extra)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.join("llama-server.err")).unwrap())
            .spawn()
            .unwrap();
        let mut s = Server { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = s.child.try_wait().unwrap() {
                panic!("llama-server exited with {status}:\n{}", s.log_tail());
            }
            if let Ok((200, _)) = s.try_request("GET", "/health", None) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "llama-server not ready in time:\n{}",
                s.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_tail(&self) -> String {
        let mut text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.push_str(&std::fs::read_to_string(self.log.with_extension("err")).unwrap_or_default());
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn try_request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> std::io::Result<(u16, Vec<u8>)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| std::io::Error::other("no header end"))?;
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other("no status"))?;
        let mut payload = raw[split + 4..].to_vec();
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            payload = dechunk(&payload);
        }
        Ok((status, payload))
    }

    fn post(&self, path: &str, body: Value) -> Value {
        let (status, bytes) = self.try_request("POST", path, Some(&body)).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert_eq!(status, 200, "POST {path}: {text}\n{}", self.log_tail());
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("POST {path}: {e}: {text}"))
    }

    fn get(&self, path: &str) -> Value {
        let (status, bytes) = self.try_request("GET", path, None).unwrap();
        assert_eq!(status, 200, "GET {path}");
        serde_json::from_slice(&bytes).unwrap()
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size =
            usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = eol + 2;
        out.extend_from_slice(&data[start..start + size]);
        data = &data[start + size + 2..];
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_model_pulled_through_the_store_serves_llama_server() {
    let p = paths();
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo.gguf");
    let written = write_demo_model(&p.vocab_gguf, &demo, &DemoOptions::default()).unwrap();
    let summary = read_gguf(&demo).unwrap().summary();
    assert_eq!(summary.architecture.as_deref(), Some("llama"));
    assert_eq!(summary.file_size, written.size);

    // Through the store, as users get models: a file:// URL, hashed while copied, then
    // served from its by-name path.
    let store =
        ModelStore::new(ModelStoreOptions::with_cache_root(dir.path().join("cache"))).unwrap();
    let url = format!("file://{}", demo.display());
    let pulled = store.pull_str(&url, &PullOptions::default()).await.unwrap();
    assert_eq!(pulled.size, written.size);
    assert_eq!(pulled.path.file_name().unwrap(), "demo.gguf");
    let server_dir = dir.path().join("server");
    std::fs::create_dir_all(&server_dir).unwrap();
    let path = pulled.path.clone();
    let binary = p.llama_server.clone();
    let server = tokio::task::spawn_blocking(move || {
        Server::start(
            &binary,
            &path,
            &server_dir,
            &["--embeddings", "--pooling", "mean"],
        )
    })
    .await
    .unwrap();

    tokio::task::spawn_blocking(move || {
        // Tokenization matches llama.cpp's reference for this vocab.
        let tokens = server.post("/tokenize", json!({ "content": "Hello world" }));
        let ids: Vec<u64> = tokens["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_u64().unwrap())
            .collect();
        assert_eq!(ids, reference_tokens(&p, "Hello world"));

        // Greedy completion is deterministic.
        let request = json!({
            "prompt": "Hello world",
            "n_predict": 8,
            "temperature": 0.0,
            "ignore_eos": true,
            "cache_prompt": false,
            "seed": 1,
        });
        let a = server.post("/completion", request.clone());
        let b = server.post("/completion", request);
        assert_eq!(a["tokens_predicted"], 8, "{a}");
        assert_eq!(a["content"], b["content"]);
        assert!(!a["content"].as_str().unwrap().is_empty());

        // The chat template makes chat completions work.
        let chat = server.post(
            "/v1/chat/completions",
            json!({
                "messages": [{ "role": "user", "content": "hi" }],
                "max_tokens": 4,
                "temperature": 0.0,
            }),
        );
        assert!(
            chat["choices"][0]["message"]["content"].is_string(),
            "{chat}"
        );
        let props = server.get("/props");
        assert!(
            props["chat_template"]
                .as_str()
                .unwrap()
                .contains("<|im_start|>"),
            "{props}"
        );

        // Mean pooling gives one 64-wide embedding.
        let emb = server.post("/v1/embeddings", json!({ "input": "hello" }));
        assert_eq!(
            emb["data"][0]["embedding"].as_array().unwrap().len(),
            64,
            "{emb}"
        );
    })
    .await
    .unwrap();
}

#[test]
fn demo_model_serves_reranking() {
    let p = paths();
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo.gguf");
    write_demo_model(&p.vocab_gguf, &demo, &DemoOptions::default()).unwrap();
    // Rank pooling on a model without a classifier head scores by the last token's
    // embedding: meaningless numbers, but a real `/reranking` round trip.
    let server = Server::start(&p.llama_server, &demo, dir.path(), &["--reranking"]);
    let r = server.post(
        "/reranking",
        json!({ "query": "what is a llama", "documents": ["a llama", "rust", "hello"] }),
    );
    let mut indexes: Vec<u64> = r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            assert!(x["relevance_score"].is_number(), "{x}");
            x["index"].as_u64().unwrap()
        })
        .collect();
    indexes.sort_unstable();
    assert_eq!(indexes, [0, 1, 2], "{r}");
}

/// Every vocab GGUF of the llama.cpp source tree parses, summarises, and rewrites to the
/// same bytes (they have no tensors, so metadata is all there is).
#[test]
fn every_vocab_in_the_source_tree_reads_and_round_trips() {
    let p = paths();
    let dir = p
        .source_dir
        .as_ref()
        .map(|d| d.join("models"))
        .filter(|d| d.is_dir())
        .or_else(|| p.vocab_gguf.parent().map(Path::to_path_buf))
        .unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("ggml-vocab-") && name.ends_with(".gguf")
        })
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no ggml-vocab-*.gguf in {}",
        dir.display()
    );
    for path in &files {
        let file = read_gguf(path).unwrap_or_else(|e| panic!("{e}"));
        let s = file.summary();
        assert!(s.tokenizer_model.is_some(), "{}", path.display());
        assert!(s.vocab_size.unwrap_or(0) > 0, "{}", path.display());

        let mut w = lmcpp_toolchain::gguf::GgufWriter::new();
        for (k, v) in file.metadata.iter() {
            w.set(k, v.clone());
        }
        let mut out = Vec::new();
        w.write_to(&mut out).unwrap();
        let original = std::fs::read(path).unwrap();
        assert!(file.tensors.is_empty(), "{}", path.display());
        // The writer always writes version 3; versions 2 and 3 differ only in that field.
        out[4..8].copy_from_slice(&file.version.to_le_bytes());
        assert!(out == original, "{} does not round-trip", path.display());
    }
}
