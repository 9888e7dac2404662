//! An API key that the started server does not enforce fails the launch (fail closed).

use std::time::Duration;

use lmcpp_server::{Error, LaunchOptions, Server};

use crate::support::{launch_options, script};

/// A llama-server stand-in on the Unix socket given as `--host`: `/health` is 200, and
/// everything else is 200 too unless `$ENFORCE` is set, then 401 without the key.
fn python_server(dir: &std::path::Path, enforce: bool) -> std::path::PathBuf {
    let body = format!(
        r#"ENFORCE={enforce} exec python3 - "$@" <<'PY'
import os, sys, socketserver, http.server
args = sys.argv[1:]
host = args[args.index('--host') + 1]
enforce = os.environ.get('ENFORCE') == 'true'
key = os.environ.get('LLAMA_API_KEY', '')
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def do_GET(self):
        ok = self.path == '/health' or not enforce or self.headers.get('Authorization') == 'Bearer ' + key
        body = b'{{"status":"ok"}}' if ok else b'{{"error":{{"code":401,"message":"Invalid API Key","type":"authentication_error"}}}}'
        self.send_response(200 if ok else 401)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
class S(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    def get_request(self):
        req, _ = super().get_request()
        return req, ('local', 0)
S(host, H).serve_forever()
PY"#
    );
    script(dir, "server", &body)
}

fn options(dir: &std::path::Path, enforce: bool) -> LaunchOptions {
    let mut opts = launch_options(dir, python_server(dir, enforce));
    opts.ready_timeout = Duration::from_secs(30);
    opts.args.api_key = Some("s3cret".into());
    opts
}

#[tokio::test]
async fn a_server_that_ignores_the_key_is_stopped_and_the_launch_fails() {
    let dir = tempfile::tempdir().unwrap();
    let err = Server::launch(options(dir.path(), false))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::ApiKeyNotEnforced { status: 200, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_server_that_enforces_the_key_is_ready_and_the_client_sends_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::launch(options(dir.path(), true)).await.unwrap();
    let props: serde_json::Value = server.client().get("/props").await.unwrap();
    assert_eq!(props["status"], "ok");
    server.stop().await.unwrap();
}
