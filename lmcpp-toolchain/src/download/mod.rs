//! The one downloader for archives and models: resumable, verified, atomically published.
//!
//! A download streams into `<dest>.part` while a blocking writer hashes the same bytes
//! (SHA-256, one pass). The part's ETag and URL are kept in `<dest>.part.meta`, so a later
//! attempt can resume with `Range: bytes=N-` and `If-Range: <etag>`; a server that answers
//! `200` instead of `206` restarts the file. When the body is complete the digest is
//! checked, the file fsynced and renamed onto `dest`. Concurrent fetches of one `dest`
//! (threads or processes) serialise on `<dest>.lock` and the later ones find the result.
//!
//! Request headers given by the caller (e.g. `Authorization`) are never logged, never put
//! into errors, and are dropped on redirects that leave the original host.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, ETAG, HeaderMap, HeaderName, HeaderValue,
    IF_RANGE, LOCATION, RANGE, RETRY_AFTER, USER_AGENT,
};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cache::sync_dir;
use crate::error::{Error, IoContext, Result, join_error};
use crate::lock::lock_exclusive;
use crate::progress::{ProgressEvent, SharedProgress};

/// Tunables of a [`Downloader`].
#[derive(Debug, Clone)]
pub struct DownloadOptions {
    /// Timeout for establishing one TCP (+TLS) connection.
    pub connect_timeout: Duration,
    /// Longest silence allowed while waiting for response headers or the next body chunk.
    /// There is deliberately no total timeout: big files on slow links must be able to finish.
    pub idle_timeout: Duration,
    /// Redirects followed per request.
    pub max_redirects: usize,
    /// Retries after the first attempt for connection errors, 5xx, 429 and cut-short bodies.
    pub retries: u32,
    /// First backoff pause; doubled per retry.
    pub initial_backoff: Duration,
    /// Upper bound for a backoff pause and for an honoured `Retry-After`.
    pub max_backoff: Duration,
    /// How long to wait for another thread or process downloading the same destination.
    pub lock_timeout: Duration,
    /// `User-Agent` header.
    pub user_agent: String,
    /// Fsync the file before publishing it (on by default, so a published file survives a
    /// crash; turn off only for scratch downloads).
    pub fsync: bool,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_redirects: 10,
            retries: 4,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            lock_timeout: Duration::from_secs(4 * 3600),
            user_agent: concat!("lmcpp/", env!("CARGO_PKG_VERSION")).to_owned(),
            fsync: true,
        }
    }
}

/// What to download.
#[derive(Clone, Default)]
pub struct DownloadSpec {
    /// `http(s)://` or `file://` URL, or a plain local path.
    pub url: String,
    /// Final location of the file.
    pub dest: PathBuf,
    /// Expected SHA-256 (hex, any case). A mismatch deletes the partial file and fails.
    pub expected_sha256: Option<String>,
    /// Extra request headers, e.g. `("Authorization", "Bearer …")`. Never logged.
    pub headers: Vec<(String, String)>,
}

impl std::fmt::Debug for DownloadSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header values may be secrets; show only their names.
        f.debug_struct("DownloadSpec")
            .field("url", &self.url)
            .field("dest", &self.dest)
            .field("expected_sha256", &self.expected_sha256)
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl DownloadSpec {
    /// A spec with no checksum and no extra headers.
    pub fn new(url: impl Into<String>, dest: impl Into<PathBuf>) -> Self {
        Self {
            url: url.into(),
            dest: dest.into(),
            ..Self::default()
        }
    }

    /// Sets the expected SHA-256.
    pub fn sha256(mut self, hex: impl Into<String>) -> Self {
        self.expected_sha256 = Some(hex.into());
        self
    }

    /// Adds a request header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// A finished download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    /// The published file (`spec.dest`).
    pub path: PathBuf,
    /// SHA-256 of the whole file, lower-case hex.
    pub sha256: String,
    /// File size in bytes.
    pub size: u64,
    /// Bytes received over the network by this call (0 when `dest` was already valid).
    pub bytes_transferred: u64,
    /// The ETag of the final response, when there was one.
    pub etag: Option<String>,
    /// The URL after redirects.
    pub final_url: String,
}

/// The answer to [`Downloader::probe`].
#[derive(Debug, Clone)]
pub struct Probe {
    /// Status of the first hop (e.g. 302 for a Hugging Face resolve URL).
    pub first_status: u16,
    /// Headers of the first hop (`X-Linked-Etag`, `X-Linked-Size`, `X-Repo-Commit`, ...).
    pub first_headers: HeaderMap,
    /// The URL after redirects.
    pub final_url: String,
    /// Status of the final hop.
    pub status: u16,
    /// Headers of the final hop.
    pub headers: HeaderMap,
    /// ETag of the final hop, quotes and weak prefix removed.
    pub etag: Option<String>,
    /// Size of the resource, from `Content-Length` (HEAD) or `Content-Range` (ranged GET).
    pub size: Option<u64>,
    /// Whether the server advertises byte ranges.
    pub accept_ranges: bool,
}

impl Probe {
    /// A header of the first hop as a string, e.g. `probe.first_header("x-linked-etag")`.
    pub fn first_header(&self, name: &str) -> Option<&str> {
        self.first_headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sidecar describing a `.part` file, so a resume is validated against the same resource.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
struct PartMeta {
    url: String,
    etag: Option<String>,
}

type HttpsClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// An HTTP(S) downloader with one pooled client. Cheap to clone.
#[derive(Clone)]
pub struct Downloader {
    client: HttpsClient,
    opts: Arc<DownloadOptions>,
}

impl std::fmt::Debug for Downloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Downloader")
            .field("opts", &self.opts)
            .finish()
    }
}

/// Outcome of one attempt that is worth retrying.
enum Attempt {
    Done(Downloaded),
    /// The partial file was discarded; start over at once without spending a retry.
    Restart,
    Retry {
        error: Error,
        after: Option<Duration>,
    },
}

impl Downloader {
    /// Builds a downloader (rustls with the `ring` provider and the webpki root set).
    pub fn new(opts: DownloadOptions) -> Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Http {
                url: String::new(),
                message: format!("tls setup: {e}"),
            })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(opts.connect_timeout));
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        Ok(Self {
            client,
            opts: Arc::new(opts),
        })
    }

    /// The options this downloader was built with.
    pub fn options(&self) -> &DownloadOptions {
        &self.opts
    }

    /// Downloads `spec.url` to `spec.dest`, resuming a previous partial download.
    ///
    /// If `dest` already exists and matches `expected_sha256`, nothing is transferred.
    /// Without an expected digest an existing `dest` is replaced. Emits
    /// [`ProgressEvent::Bytes`] while transferring.
    pub async fn fetch(
        &self,
        spec: &DownloadSpec,
        progress: &SharedProgress,
    ) -> Result<Downloaded> {
        let expected = spec
            .expected_sha256
            .as_ref()
            .map(|s| s.trim().to_ascii_lowercase());
        if let Some(e) = &expected
            && (e.len() != 64 || !e.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(Error::InvalidRequest {
                reason: format!("expected sha256 {e:?} is not 64 hex characters"),
            });
        }
        let dest = &spec.dest;
        let dir = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).ctx("create directory", dir)?;
        let lock_path = suffixed(dest, ".lock");
        let _guard = lock_exclusive(&lock_path, self.opts.lock_timeout, progress).await?;

        if let Some(exp) = &expected
            && let Some(done) = existing_valid(dest, exp, &spec.url).await?
        {
            progress.event(ProgressEvent::Note {
                message: format!("{} already downloaded and verified", dest.display()),
            });
            return Ok(done);
        }

        if let Some(path) = local_source(&spec.url)? {
            return copy_local(&path, spec, expected.as_deref(), progress).await;
        }

        let mut retry = 0u32;
        let mut restarts = 0u32;
        loop {
            match self.attempt(spec, expected.as_deref(), progress).await? {
                Attempt::Done(d) => return Ok(d),
                Attempt::Restart if restarts < 2 => restarts += 1,
                Attempt::Restart => {
                    return Err(Error::Http {
                        url: spec.url.clone(),
                        message: "the server keeps rejecting the resumed range".into(),
                    });
                }
                Attempt::Retry { error, after } => {
                    if retry >= self.opts.retries {
                        return Err(error);
                    }
                    let backoff = self
                        .opts
                        .initial_backoff
                        .saturating_mul(1u32 << retry.min(16))
                        .min(self.opts.max_backoff);
                    let pause = after.map_or(backoff, |a| a.min(self.opts.max_backoff));
                    retry += 1;
                    tracing::debug!(url = %spec.url, retry, ?pause, "retrying download: {error}");
                    progress.event(ProgressEvent::Note {
                        message: format!(
                            "retrying {} in {:.1}s ({retry}/{}): {error}",
                            spec.url,
                            pause.as_secs_f64(),
                            self.opts.retries
                        ),
                    });
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    /// One request/response cycle: decides resume vs restart, streams the body, publishes.
    async fn attempt(
        &self,
        spec: &DownloadSpec,
        expected: Option<&str>,
        progress: &SharedProgress,
    ) -> Result<Attempt> {
        let dest = &spec.dest;
        let part = suffixed(dest, ".part");
        let meta_path = suffixed(dest, ".part.meta");

        // Resume only a part that belongs to this URL and has a strong validator.
        let meta = read_meta(&meta_path);
        let mut offset = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        let resumable = meta
            .as_ref()
            .is_some_and(|m| m.url == spec.url && m.etag.is_some());
        if offset > 0 && !resumable {
            offset = 0;
        }
        let mut extra = Vec::new();
        if offset > 0
            && let Some(etag) = meta.as_ref().and_then(|m| m.etag.clone())
        {
            extra.push((RANGE, format!("bytes={offset}-")));
            extra.push((IF_RANGE, format!("\"{etag}\"")));
        }

        let resp = match self
            .send(Method::GET, &spec.url, &spec.headers, &extra)
            .await
        {
            Ok(r) => r,
            Err(e) if e.is_transient() => {
                return Ok(Attempt::Retry {
                    error: e,
                    after: None,
                });
            }
            Err(e) => return Err(e),
        };
        let (first, final_url, resp) = resp;
        drop(first);
        let status = resp.status();
        let headers = resp.headers().clone();
        let etag = header_etag(&headers);

        if status == StatusCode::RANGE_NOT_SATISFIABLE && offset > 0 {
            // The part is as long as (or longer than) the resource, or the resource changed.
            discard_part(&part, &meta_path);
            return Ok(Attempt::Restart);
        }
        if !status.is_success() {
            let after = retry_after(&headers);
            let error = Error::HttpStatus {
                url: final_url,
                status: status.as_u16(),
            };
            return if error.is_transient() {
                Ok(Attempt::Retry { error, after })
            } else {
                Err(error)
            };
        }

        let resume = status == StatusCode::PARTIAL_CONTENT
            && offset > 0
            && content_range_start(&headers) == Some(offset)
            && etag.is_some()
            && etag == meta.as_ref().and_then(|m| m.etag.clone());
        let start = if resume { offset } else { 0 };
        if !resume && status == StatusCode::PARTIAL_CONTENT {
            // A range we did not ask for, or for a different representation: start over.
            discard_part(&part, &meta_path);
            return Ok(Attempt::Restart);
        }
        if offset > 0 && !resume {
            progress.event(ProgressEvent::Note {
                message: format!("server did not resume {}; restarting", spec.url),
            });
        }
        let body_len = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let total = body_len.map(|l| l + start);

        let new_meta = PartMeta {
            url: spec.url.clone(),
            etag: etag.clone(),
        };
        let meta_json = serde_json::to_vec(&new_meta).unwrap_or_default();
        std::fs::write(&meta_path, meta_json).ctx("write", &meta_path)?;

        // A blocking writer hashes and writes while this task receives the next chunk.
        // Frames travel in batches of about 256 KiB: one cross-thread wake-up per batch
        // instead of one per frame keeps the transfer close to a plain copy.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Bytes>>(8);
        let part_w = part.clone();
        let fsync = self.opts.fsync;
        let writer = tokio::task::spawn_blocking(move || -> Result<(Sha256, u64)> {
            let mut hasher = Sha256::new();
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true);
            if start > 0 {
                opts.read(true);
            } else {
                opts.truncate(true);
            }
            let mut file = opts.open(&part_w).ctx("open", &part_w)?;
            let mut written = 0u64;
            if start > 0 {
                // Hash exactly the bytes we resume after, then append.
                let mut buf = vec![0u8; 1 << 20];
                let mut left = start;
                while left > 0 {
                    let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
                    let n = file.read(&mut buf[..want]).ctx("read", &part_w)?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                    left -= n as u64;
                    written += n as u64;
                }
                file.set_len(written).ctx("truncate", &part_w)?;
            }
            // Chunks are written as they come (hyper hands over large frames); nothing is held
            // back in a user-space buffer, so a killed process loses at most one batch.
            let mut flushed = written;
            while let Some(batch) = rx.blocking_recv() {
                for chunk in batch {
                    hasher.update(&chunk);
                    file.write_all(&chunk).ctx("write", &part_w)?;
                    written += chunk.len() as u64;
                }
                if fsync && written - flushed >= WRITEBACK_STEP {
                    start_writeback(&file, flushed, written - flushed);
                    flushed = written;
                }
            }
            if fsync {
                file.sync_all().ctx("sync", &part_w)?;
            }
            Ok((hasher, written))
        });

        let mut body = resp.into_body();
        let mut received = start;
        let mut transferred = 0u64;
        let mut last_report = 0u64;
        progress.event(ProgressEvent::Bytes {
            done: received,
            total,
        });
        let mut stream_error = None;
        const BATCH: usize = 256 << 10;
        let mut batch: Vec<Bytes> = Vec::new();
        let mut batch_len = 0usize;
        let idle = self.opts.idle_timeout;
        let mut armed_at = tokio::time::Instant::now();
        let idle_timer = tokio::time::sleep(idle);
        tokio::pin!(idle_timer);
        loop {
            // One idle timer for the whole body, pushed back at most every quarter of the idle
            // timeout rather than re-armed per frame.
            let now = tokio::time::Instant::now();
            if now.duration_since(armed_at) > idle / 4 {
                armed_at = now;
                idle_timer.as_mut().reset(now + idle);
            }
            let next = tokio::select! {
                biased;
                f = body.frame() => Some(f),
                () = &mut idle_timer => None,
            };
            let frame = match next {
                None => {
                    stream_error = Some(format!("no data for {}s", idle.as_secs()));
                    break;
                }
                Some(None) => break,
                Some(Some(Err(e))) => {
                    stream_error = Some(error_chain(&e));
                    break;
                }
                Some(Some(Ok(f))) => f,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            received += data.len() as u64;
            transferred += data.len() as u64;
            batch_len += data.len();
            batch.push(data);
            if batch_len >= BATCH {
                batch_len = 0;
                if tx.send(std::mem::take(&mut batch)).await.is_err() {
                    break;
                }
            }
            if received - last_report >= 256 * 1024 {
                last_report = received;
                progress.event(ProgressEvent::Bytes {
                    done: received,
                    total,
                });
            }
        }
        if !batch.is_empty() {
            let _ = tx.send(batch).await;
        }
        drop(tx);
        let (hasher, written) = writer.await.map_err(join_error)??;
        progress.event(ProgressEvent::Bytes {
            done: written,
            total,
        });

        if let Some(message) = stream_error {
            return Ok(Attempt::Retry {
                error: Error::Http {
                    url: final_url,
                    message,
                },
                after: None,
            });
        }
        if let Some(t) = total
            && written != t
        {
            return Ok(Attempt::Retry {
                error: Error::Truncated {
                    url: final_url,
                    path: part,
                    received: written,
                    expected: t,
                },
                after: None,
            });
        }
        let found = hex::encode(hasher.finalize());
        if let Some(exp) = expected
            && exp != found
        {
            discard_part(&part, &meta_path);
            return Err(Error::ChecksumMismatch {
                url: spec.url.clone(),
                path: dest.clone(),
                expected: exp.to_owned(),
                found,
            });
        }
        std::fs::rename(&part, dest).ctx("rename into", dest)?;
        let _ = std::fs::remove_file(&meta_path);
        if let Some(dir) = dest.parent() {
            sync_dir(dir);
        }
        progress.event(ProgressEvent::Done);
        Ok(Attempt::Done(Downloaded {
            path: dest.clone(),
            sha256: found,
            size: written,
            bytes_transferred: transferred,
            etag,
            final_url,
        }))
    }

    /// Asks for the headers of `url` without downloading the body.
    ///
    /// Sends `HEAD` and follows redirects, keeping the first hop's headers (Hugging Face puts
    /// `X-Linked-Etag` and `X-Linked-Size` on the redirect of a resolve URL). A server that
    /// rejects `HEAD` (405/501) is asked with a one-byte ranged `GET` instead.
    pub async fn probe(&self, url: &str, headers: &[(String, String)]) -> Result<Probe> {
        let mut attempt = 0u32;
        loop {
            let r = self.probe_once(url, headers).await;
            match r {
                Err(e) if e.is_transient() && attempt < self.opts.retries => {
                    let pause = self
                        .opts
                        .initial_backoff
                        .saturating_mul(1u32 << attempt.min(16))
                        .min(self.opts.max_backoff);
                    attempt += 1;
                    tokio::time::sleep(pause).await;
                }
                other => return other,
            }
        }
    }

    async fn probe_once(&self, url: &str, headers: &[(String, String)]) -> Result<Probe> {
        let (first, final_url, resp) = self.send(Method::HEAD, url, headers, &[]).await?;
        let (first, final_url, resp, ranged) = if matches!(resp.status().as_u16(), 405 | 501) {
            let (f, u, r) = self
                .send(
                    Method::GET,
                    url,
                    headers,
                    &[(RANGE, "bytes=0-0".to_owned())],
                )
                .await?;
            (f, u, r, true)
        } else {
            (first, final_url, resp, false)
        };
        let status = resp.status();
        if !status.is_success() {
            return Err(Error::HttpStatus {
                url: final_url,
                status: status.as_u16(),
            });
        }
        let h = resp.headers().clone();
        let size = if ranged && status == StatusCode::PARTIAL_CONTENT {
            h.get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit('/').next())
                .and_then(|v| v.parse().ok())
        } else {
            h.get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
        };
        let accept_ranges = h
            .get(ACCEPT_RANGES)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("bytes"))
            || status == StatusCode::PARTIAL_CONTENT;
        let (first_status, first_headers) = first;
        Ok(Probe {
            first_status,
            first_headers,
            final_url,
            status: status.as_u16(),
            etag: header_etag(&h),
            size,
            accept_ranges,
            headers: h,
        })
    }

    /// Sends a request, following redirects. Returns the first hop's status and headers,
    /// the final URL and the final response (whose body has not been read).
    async fn send(
        &self,
        method: Method,
        url: &str,
        user_headers: &[(String, String)],
        extra: &[(HeaderName, String)],
    ) -> Result<((u16, HeaderMap), String, http::Response<Incoming>)> {
        let origin = parse_uri(url)?;
        let mut current = origin.clone();
        let mut first: Option<(u16, HeaderMap)> = None;
        for _ in 0..=self.opts.max_redirects {
            let same_origin =
                current.scheme() == origin.scheme() && current.authority() == origin.authority();
            let mut builder = Request::builder()
                .method(method.clone())
                .uri(current.clone())
                .header(USER_AGENT, &self.opts.user_agent);
            if same_origin {
                for (k, v) in user_headers {
                    let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
                        Error::InvalidRequest {
                            reason: format!("invalid header name {k:?}"),
                        }
                    })?;
                    let mut value =
                        HeaderValue::from_str(v).map_err(|_| Error::InvalidRequest {
                            reason: format!("invalid value for header {k:?}"),
                        })?;
                    value.set_sensitive(true);
                    builder = builder.header(name, value);
                }
            }
            for (k, v) in extra {
                builder = builder.header(k, v);
            }
            let req = builder
                .body(Empty::<Bytes>::new())
                .map_err(|e| Error::InvalidUrl {
                    url: current.to_string(),
                    reason: e.to_string(),
                })?;
            let resp = match tokio::time::timeout(self.opts.idle_timeout, self.client.request(req))
                .await
            {
                Err(_) => {
                    return Err(Error::Http {
                        url: current.to_string(),
                        message: format!(
                            "no response within {}s",
                            self.opts.idle_timeout.as_secs()
                        ),
                    });
                }
                Ok(Err(e)) => {
                    let message = error_chain(&e);
                    // A name that does not resolve will not resolve a second later; do not
                    // spend the retry budget on it (this is the offline case).
                    if message.contains("dns error") {
                        return Err(Error::Unreachable {
                            url: current.to_string(),
                            message,
                        });
                    }
                    return Err(Error::Http {
                        url: current.to_string(),
                        message,
                    });
                }
                Ok(Ok(r)) => r,
            };
            let status = resp.status();
            if first.is_none() {
                first = Some((status.as_u16(), resp.headers().clone()));
            }
            if status.is_redirection()
                && status != StatusCode::NOT_MODIFIED
                && let Some(loc) = resp.headers().get(LOCATION)
            {
                let loc = loc.to_str().map_err(|_| Error::InvalidUrl {
                    url: current.to_string(),
                    reason: "redirect location is not text".into(),
                })?;
                current = resolve_location(&current, loc)?;
                continue;
            }
            let first = first.unwrap_or((status.as_u16(), HeaderMap::new()));
            return Ok((first, current.to_string(), resp));
        }
        Err(Error::TooManyRedirects {
            url: url.to_owned(),
            limit: self.opts.max_redirects,
        })
    }
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn read_meta(path: &Path) -> Option<PartMeta> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn discard_part(part: &Path, meta: &Path) {
    let _ = std::fs::remove_file(part);
    let _ = std::fs::remove_file(meta);
}

fn header_etag(h: &HeaderMap) -> Option<String> {
    let v = h.get(ETAG)?.to_str().ok()?.trim();
    // Weak validators cannot be used with If-Range; treat them as absent.
    if v.starts_with("W/") {
        return None;
    }
    let v = v.trim_matches('"');
    (!v.is_empty()).then(|| v.to_owned())
}

fn content_range_start(h: &HeaderMap) -> Option<u64> {
    let v = h.get(CONTENT_RANGE)?.to_str().ok()?;
    let rest = v.strip_prefix("bytes ")?;
    rest.split('-').next()?.trim().parse().ok()
}

fn retry_after(h: &HeaderMap) -> Option<Duration> {
    // Only the delta-seconds form; an HTTP date falls back to the normal backoff.
    let v = h.get(RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

fn parse_uri(url: &str) -> Result<Uri> {
    let uri: Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| Error::InvalidUrl {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.authority().is_some() => Ok(uri),
        _ => Err(Error::InvalidUrl {
            url: url.to_owned(),
            reason: "only http, https and file urls are supported".into(),
        }),
    }
}

fn resolve_location(base: &Uri, loc: &str) -> Result<Uri> {
    let bad = |reason: String| Error::InvalidUrl {
        url: loc.to_owned(),
        reason,
    };
    if loc.contains("://") {
        return parse_uri(loc);
    }
    let scheme = base.scheme_str().unwrap_or("http");
    let authority = base
        .authority()
        .map(|a| a.as_str())
        .ok_or_else(|| bad("redirect from a url without host".into()))?;
    let full = if let Some(rest) = loc.strip_prefix("//") {
        format!("{scheme}://{rest}")
    } else if loc.starts_with('/') {
        format!("{scheme}://{authority}{loc}")
    } else {
        let path = base.path();
        let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
        format!("{scheme}://{authority}{dir}{loc}")
    };
    parse_uri(&full)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// Maps `file://` URLs and plain paths to a local path; `None` for http(s).
fn local_source(url: &str) -> Result<Option<PathBuf>> {
    if let Some(rest) = url.strip_prefix("file://") {
        let path = rest.strip_prefix("localhost").unwrap_or(rest);
        if !path.starts_with('/') {
            return Err(Error::InvalidUrl {
                url: url.to_owned(),
                reason: "file urls must be absolute (file:///path)".into(),
            });
        }
        return Ok(Some(PathBuf::from(percent_decode(path))));
    }
    if url.contains("://") {
        return Ok(None);
    }
    Ok(Some(PathBuf::from(url)))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (
                (b[i + 1] as char).to_digit(16),
                b.get(i + 2).and_then(|c| (*c as char).to_digit(16)),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Returns a `Downloaded` for `dest` if it exists and has the expected digest.
async fn existing_valid(dest: &Path, expected: &str, url: &str) -> Result<Option<Downloaded>> {
    if !dest.is_file() {
        return Ok(None);
    }
    let (sha, size) = sha256_file(dest).await?;
    Ok((sha == expected).then(|| Downloaded {
        path: dest.to_path_buf(),
        sha256: sha,
        size,
        bytes_transferred: 0,
        etag: None,
        final_url: url.to_owned(),
    }))
}

/// SHA-256 (lower-case hex) and size of a file, computed off the async runtime.
pub async fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut f = std::fs::File::open(&path).ctx("open", &path)?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut n_total = 0u64;
        loop {
            let n = f.read(&mut buf).ctx("read", &path)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            n_total += n as u64;
        }
        Ok((hex::encode(h.finalize()), n_total))
    })
    .await
    .map_err(join_error)?
}

async fn copy_local(
    src: &Path,
    spec: &DownloadSpec,
    expected: Option<&str>,
    progress: &SharedProgress,
) -> Result<Downloaded> {
    let src = src.to_path_buf();
    let dest = spec.dest.clone();
    let part = suffixed(&dest, ".part");
    let url = spec.url.clone();
    let expected = expected.map(str::to_owned);
    let progress = progress.clone();
    tokio::task::spawn_blocking(move || {
        let mut input = std::fs::File::open(&src).ctx("open", &src)?;
        let total = input.metadata().ok().map(|m| m.len());
        let mut out = std::fs::File::create(&part).ctx("create", &part)?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut done = 0u64;
        loop {
            let n = input.read(&mut buf).ctx("read", &src)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            out.write_all(&buf[..n]).ctx("write", &part)?;
            done += n as u64;
            progress.event(ProgressEvent::Bytes { done, total });
        }
        out.sync_all().ctx("sync", &part)?;
        let found = hex::encode(h.finalize());
        if let Some(exp) = expected
            && exp != found
        {
            let _ = std::fs::remove_file(&part);
            return Err(Error::ChecksumMismatch {
                url,
                path: dest,
                expected: exp,
                found,
            });
        }
        std::fs::rename(&part, &dest).ctx("rename into", &dest)?;
        Ok(Downloaded {
            path: dest,
            sha256: found,
            size: done,
            bytes_transferred: 0,
            etag: None,
            final_url: url,
        })
    })
    .await
    .map_err(join_error)?
}

/// How much written data may wait in the page cache before writeback is started.
const WRITEBACK_STEP: u64 = 8 << 20;

/// Asks the kernel to start writing a range of `file` to disk without waiting for it, so
/// the disk works while the transfer goes on and the final `fsync` before the atomic
/// rename finds little left to flush. Advisory: durability still comes from that `fsync`.
#[cfg(target_os = "linux")]
fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: a valid open fd and a byte range; the call only schedules writeback and
    // touches none of our memory. Its result is advisory and ignored on purpose.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &std::fs::File, _offset: u64, _len: u64) {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn relative_redirects_resolve() {
        let base: Uri = "http://h:1/a/b/c?x=1".parse().unwrap();
        let cases = [
            ("/z", "http://h:1/z"),
            ("z", "http://h:1/a/b/z"),
            ("//o:2/p", "http://o:2/p"),
            ("https://q/r", "https://q/r"),
        ];
        for (loc, want) in cases {
            assert_eq!(
                resolve_location(&base, loc).unwrap().to_string(),
                want,
                "{loc}"
            );
        }
    }

    #[test]
    fn etags_are_unquoted_and_weak_ones_dropped() {
        let mut h = HeaderMap::new();
        h.insert(ETAG, HeaderValue::from_static("\"abc\""));
        assert_eq!(header_etag(&h).as_deref(), Some("abc"));
        h.insert(ETAG, HeaderValue::from_static("W/\"abc\""));
        assert_eq!(header_etag(&h), None);
    }

    #[test]
    fn local_sources() {
        assert_eq!(
            local_source("file:///tmp/a%20b").unwrap(),
            Some(PathBuf::from("/tmp/a b"))
        );
        assert_eq!(local_source("/x/y").unwrap(), Some(PathBuf::from("/x/y")));
        assert_eq!(local_source("https://h/x").unwrap(), None);
        assert!(local_source("file://rel").is_err());
    }

    #[test]
    fn content_range_and_retry_after() {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_RANGE, HeaderValue::from_static("bytes 100-199/200"));
        h.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(content_range_start(&h), Some(100));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
    }
}
