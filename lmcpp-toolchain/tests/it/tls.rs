//! HTTPS on loopback: the downloader trusts a CA from the system bundle (`SSL_CERT_FILE`),
//! not only the built-in roots, and refuses a redirect from https to plain http.
//!
//! The checks run in a child process of this test binary with `SSL_CERT_FILE` set, so the
//! environment of the other tests stays untouched. The HTTPS server is rustls over plain
//! threads, answering one canned response per connection.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lmcpp_toolchain::download::Error as DownloadError;
use lmcpp_toolchain::{DownloadSpec, Error, no_progress};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::download::{downloader, payload, sha};
use crate::server::{Route, TestServer};

const CHILD_ENV: &str = "LMCPP_IT_TLS_CHILD";

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/tls")
        .join(name)
}

/// Serves HTTPS on 127.0.0.1: `/f` is `body`, `/down` redirects to `downgrade_to`.
fn https_server(body: Vec<u8>, downgrade_to: String) -> String {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(data("localhost.pem"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(data("localhost.key")).unwrap();
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("https://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let (config, body, to) = (config.clone(), body.clone(), downgrade_to.clone());
            std::thread::spawn(move || {
                let conn = rustls::ServerConnection::new(config).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&head);
                let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
                let resp = if path == "/down" {
                    format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").into_bytes()
                } else if line.starts_with("HEAD ") {
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .into_bytes()
                } else {
                    let mut r = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    r.extend_from_slice(&body);
                    r
                };
                let _ = tls.write_all(&resp);
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
    base
}

/// The child's work: trust through `SSL_CERT_FILE`, and the downgrade refusal.
async fn child_checks() {
    let plain = TestServer::start().await;
    let body = payload(50_000);
    plain.route("/f", Route::file(body.clone()));
    let base = https_server(body.clone(), plain.url("/f"));
    let dir = tempfile::tempdir().unwrap();
    let dl = downloader(0);

    let d = dl
        .fetch(
            &DownloadSpec::new(format!("{base}/f"), dir.path().join("f")).sha256(sha(&body)),
            &no_progress(),
        )
        .await
        .unwrap();
    assert_eq!(d.size, body.len() as u64);

    let err = dl
        .fetch(
            &DownloadSpec::new(format!("{base}/down"), dir.path().join("g")),
            &no_progress(),
        )
        .await
        .unwrap_err();
    match &err {
        Error::Download(DownloadError::InsecureRedirect { from, to }) => {
            assert_eq!(from, &format!("{base}/down"));
            assert_eq!(to, &plain.url("/f"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(plain.hits("/f"), 0, "the plain-http target was contacted");
    assert!(!dir.path().join("g").exists());
}

#[tokio::test]
async fn https_trusts_the_system_bundle_and_refuses_a_downgrade() {
    if std::env::var_os(CHILD_ENV).is_some() {
        child_checks().await;
        return;
    }
    // Without the bundle the test CA is unknown: the same server is refused.
    let base = https_server(payload(10), "http://127.0.0.1:9/f".to_owned());
    let dir = tempfile::tempdir().unwrap();
    let err = downloader(0)
        .fetch(
            &DownloadSpec::new(format!("{base}/f"), dir.path().join("f")),
            &no_progress(),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().to_ascii_lowercase().contains("certificate"),
        "{err}"
    );

    let status = tokio::task::spawn_blocking(|| {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "tls::https_trusts_the_system_bundle_and_refuses_a_downgrade",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, "1")
            .env("SSL_CERT_FILE", data("root.pem"))
            .status()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(status.success(), "the checks in the child failed: {status}");
}
