//! The one downloader for archives and models: resumable, verified, atomically published.
//!
//! A download streams into `<dest>.part` while a blocking writer hashes the same bytes
//! (SHA-256, one pass). What the part was fetched from and for (URL, ETag, digest) is kept
//! in `<dest>.part.meta`, so a later attempt continues it with `Range: bytes=N-` whenever
//! something vouches for the spliced file: the expected digest (from the caller, a
//! `--sha256`, or the hub's `X-Linked-Etag`) or a strong ETag sent as `If-Range`. When the
//! body is complete the content is checked (GGUF magic for models; a whole-file GGUF parse
//! when neither a digest nor a `Content-Length` can vouch for it), the digest compared,
//! the file fsynced and renamed onto `dest`. Concurrent fetches of one `dest` (threads or
//! processes) serialise on `<dest>.lock` and the later ones find the result.
//!
//! Request headers given by the caller (e.g. `Authorization`) are never logged, never put
//! into errors, and are dropped on redirects that leave the original host; redirects from
//! `https` to `http` are refused.
//!
//! Remote URLs go through the proxies of `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` (loopback
//! always directly), and TLS trusts the webpki roots plus the system's CA bundle.
//!
//! Parts: `http` sends requests under the redirect policy, `proxy` picks proxies and trust
//! roots, `resume` decides what may be continued, `sink` writes and hashes, `local`
//! copies `file://` sources, `url` names files after URLs.

pub(crate) mod error;
mod http;
mod http_proxy;
mod local;
mod resume;
mod sink;
mod spec;
mod url;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ::http::header::{ACCEPT_RANGES, CONTENT_RANGE, HeaderMap, HeaderName, RANGE};
use ::http::{Method, StatusCode};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use self::http::{
    HttpsClient, SendOptions, Sent, content_length, error_chain, header_etag, retry_after,
};
pub use self::http_proxy::HttpProxies;
use self::http_proxy::ProxyConnector;
use self::local::{copy_local, local_source};
use self::resume::Resume;
pub(crate) use self::resume::suffixed;
pub use self::sink::sha256_file;
use self::sink::{Sink, Written, file_head};
pub use self::spec::{Content, DownloadSpec, Downloaded};
pub use self::url::{safe_file_name, url_file_name};
use crate::cache::sync_dir;
use crate::digest::Sha256;
use crate::error::{IoContext, Result};

use crate::gguf::GGUF_MAGIC;
use crate::lock::lock_exclusive;
use crate::progress::{ProgressEvent, SharedProgress};
pub use error::Error;
use lmcpp_types::Classify;

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

type Connector = hyper_rustls::HttpsConnector<ProxyConnector>;

/// An HTTP(S) downloader with one pooled client. Cheap to clone.
#[derive(Clone)]
pub struct Downloader {
    client: HttpsClient,
    opts: Arc<DownloadOptions>,
    proxies: Arc<HttpProxies>,
}

impl std::fmt::Debug for Downloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Downloader")
            .field("opts", &self.opts)
            .field("proxies", &self.proxies)
            .finish()
    }
}

/// Outcome of one attempt that is worth retrying.
enum Attempt {
    Done(Downloaded),
    /// The partial file was discarded; start over at once without spending a retry.
    Restart,
    Retry {
        error: crate::Error,
        after: Option<Duration>,
    },
}

/// One response being turned into the destination file.
struct Transfer<'a> {
    spec: &'a DownloadSpec,
    expected: Option<&'a str>,
    resume: Resume,
    final_url: String,
    etag: Option<String>,
    /// Where the body starts in the file (the resumed offset, or 0).
    start: u64,
    /// The whole file's size, when the server declared the body's length.
    total: Option<u64>,
}

/// The body as it arrived.
struct Received {
    written: Written,
    /// Bytes received over the network.
    transferred: u64,
    /// Why the body ended early (a connection error or the idle timeout).
    error: Option<String>,
    /// The first bytes, when they already showed that a GGUF download is something else.
    not_gguf: Option<Vec<u8>>,
}

/// Frames travel to the writer in batches of about this size.
const BATCH: usize = 256 << 10;

/// Progress is reported about this often (in bytes).
const REPORT_STEP: u64 = 256 << 10;

impl Downloader {
    /// Builds a downloader: rustls (the `ring` provider) trusting the webpki roots and the
    /// system's CA bundle, and the proxies of the environment ([`HttpProxies::from_env`]).
    pub fn new(opts: DownloadOptions) -> Result<Self> {
        Self::with_proxies(opts, HttpProxies::from_env())
    }

    /// Like [`Downloader::new`] with explicit proxies instead of the environment's.
    pub fn with_proxies(opts: DownloadOptions, proxies: HttpProxies) -> Result<Self> {
        let proxies = Arc::new(proxies);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector(&opts, proxies.clone())?);
        Ok(Self {
            client,
            opts: Arc::new(opts),
            proxies,
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
            .as_deref()
            .map(Sha256::parse)
            .transpose()?
            .map(String::from);
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
        self.fetch_remote(spec, expected.as_deref(), progress).await
    }

    /// The retry loop around [`Downloader::attempt`].
    async fn fetch_remote(
        &self,
        spec: &DownloadSpec,
        expected: Option<&str>,
        progress: &SharedProgress,
    ) -> Result<Downloaded> {
        let mut retry = 0u32;
        let mut restarts = 0u32;
        loop {
            match self.attempt(spec, expected, progress).await? {
                Attempt::Done(d) => return Ok(d),
                Attempt::Restart if restarts < 2 => restarts += 1,
                Attempt::Restart => {
                    return Err(Error::Http {
                        url: spec.url.clone(),
                        message: "the server keeps rejecting the resumed range".into(),
                    }
                    .into());
                }
                Attempt::Retry { error, after } => {
                    if retry >= self.opts.retries {
                        return Err(error);
                    }
                    let pause = after.map_or(self.backoff(retry), |a| a.min(self.opts.max_backoff));
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

    fn backoff(&self, retry: u32) -> Duration {
        self.opts
            .initial_backoff
            .saturating_mul(1u32 << retry.min(16))
            .min(self.opts.max_backoff)
    }

    fn send_options(&self) -> SendOptions<'_> {
        SendOptions {
            client: &self.client,
            proxies: &self.proxies,
            user_agent: &self.opts.user_agent,
            idle_timeout: self.opts.idle_timeout,
            max_redirects: self.opts.max_redirects,
        }
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(String, String)],
        extra: &[(HeaderName, String)],
    ) -> Result<Sent> {
        http::send(&self.send_options(), method, url, headers, extra).await
    }

    /// One request/response cycle: decides resume vs restart, streams the body, publishes.
    async fn attempt(
        &self,
        spec: &DownloadSpec,
        expected: Option<&str>,
        progress: &SharedProgress,
    ) -> Result<Attempt> {
        let resume = Resume::load(&spec.dest, &spec.url, expected);
        let sent = match self
            .send(
                Method::GET,
                &spec.url,
                &spec.headers,
                &resume.request_headers(),
            )
            .await
        {
            Ok(s) => s,
            Err(error) if error.is_transient() => return Ok(Attempt::Retry { error, after: None }),
            Err(e) => return Err(e),
        };
        let Sent {
            final_url,
            response,
            ..
        } = sent;
        let status = response.status();
        let headers = response.headers().clone();
        if status == StatusCode::RANGE_NOT_SATISFIABLE && resume.offset > 0 {
            // The part is as long as (or longer than) the resource, or the resource changed.
            return self.complete_part(spec, expected, resume, final_url).await;
        }
        if !status.is_success() {
            let error: crate::Error = Error::HttpStatus {
                url: final_url,
                status: status.as_u16(),
            }
            .into();
            return if error.is_transient() {
                Ok(Attempt::Retry {
                    error,
                    after: retry_after(&headers),
                })
            } else {
                Err(error)
            };
        }
        let Some(start) = resume.start_for(status, &headers) else {
            // A range we did not ask for, or of another representation: start over.
            resume.discard();
            return Ok(Attempt::Restart);
        };
        if resume.offset > 0 && start == 0 {
            progress.event(ProgressEvent::Note {
                message: format!("server did not resume {}; restarting", spec.url),
            });
        }
        let etag = header_etag(&headers);
        resume.write_meta(&spec.url, etag.clone(), expected)?;
        let transfer = Transfer {
            spec,
            expected,
            resume,
            final_url,
            etag,
            start,
            total: content_length(&headers).map(|l| l + start),
        };
        let received = self
            .receive(response.into_body(), &transfer, progress)
            .await?;
        conclude(transfer, received, progress).await
    }

    /// Streams the body into a [`Sink`], with one idle timer and batched hand-over.
    async fn receive(
        &self,
        mut body: Incoming,
        t: &Transfer<'_>,
        progress: &SharedProgress,
    ) -> Result<Received> {
        let sink = Sink::spawn(t.resume.part.clone(), t.start, self.opts.fsync);
        let check_magic = t.spec.content == Content::Gguf && t.start == 0;
        let mut head: Vec<u8> = Vec::with_capacity(4);
        let mut received = t.start;
        let mut last_report = 0u64;
        progress.event(ProgressEvent::Bytes {
            done: received,
            total: t.total,
        });
        let mut error = None;
        let mut not_gguf = None;
        let mut batch: Vec<Bytes> = Vec::new();
        let mut batch_len = 0usize;
        let idle = self.opts.idle_timeout;
        let mut armed_at = tokio::time::Instant::now();
        let idle_timer = tokio::time::sleep(idle);
        tokio::pin!(idle_timer);
        loop {
            // One idle timer for the whole body, pushed back at most every quarter of the
            // idle timeout rather than re-armed per frame.
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
                    error = Some(format!("no data for {}s", idle.as_secs()));
                    break;
                }
                Some(None) => break,
                Some(Some(Err(e))) => {
                    error = Some(error_chain(&e));
                    break;
                }
                Some(Some(Ok(f))) => f,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if check_magic && head.len() < 4 {
                head.extend(data.iter().take(4 - head.len()));
                if head.len() == 4 && head != GGUF_MAGIC {
                    // An error page or a login form: stop before transferring all of it.
                    not_gguf = Some(head.clone());
                    break;
                }
            }
            received += data.len() as u64;
            batch_len += data.len();
            batch.push(data);
            if batch_len >= BATCH {
                batch_len = 0;
                if !sink.send(std::mem::take(&mut batch)).await {
                    break;
                }
            }
            if received - last_report >= REPORT_STEP {
                last_report = received;
                progress.event(ProgressEvent::Bytes {
                    done: received,
                    total: t.total,
                });
            }
        }
        if !batch.is_empty() {
            sink.send(batch).await;
        }
        let written = sink.finish().await?;
        progress.event(ProgressEvent::Bytes {
            done: written.len,
            total: t.total,
        });
        Ok(Received {
            transferred: received - t.start,
            written,
            error,
            not_gguf,
        })
    }

    /// After a `416` for a resumed range: a part that is already the whole file (a run
    /// killed between its last byte and the rename) is published if its digest matches;
    /// anything else is discarded and fetched again.
    async fn complete_part(
        &self,
        spec: &DownloadSpec,
        expected: Option<&str>,
        resume: Resume,
        final_url: String,
    ) -> Result<Attempt> {
        if let Some(exp) = expected {
            let (found, len) = sha256_file(&resume.part).await?;
            let content_ok =
                spec.content != Content::Gguf || file_head(&resume.part)? == GGUF_MAGIC;
            if found == exp && content_ok {
                let written = Written { sha256: found, len };
                return publish(spec, &resume, written, 0, None, final_url);
            }
        }
        resume.discard();
        Ok(Attempt::Restart)
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
                    let pause = self.backoff(attempt);
                    attempt += 1;
                    tokio::time::sleep(pause).await;
                }
                other => return other,
            }
        }
    }

    async fn probe_once(&self, url: &str, headers: &[(String, String)]) -> Result<Probe> {
        let mut sent = self.send(Method::HEAD, url, headers, &[]).await?;
        let mut ranged = false;
        if matches!(sent.response.status().as_u16(), 405 | 501) {
            sent = self
                .send(
                    Method::GET,
                    url,
                    headers,
                    &[(RANGE, "bytes=0-0".to_owned())],
                )
                .await?;
            ranged = true;
        }
        let Sent {
            first: (first_status, first_headers),
            final_url,
            response,
        } = sent;
        let status = response.status();
        if !status.is_success() {
            return Err(Error::HttpStatus {
                url: final_url,
                status: status.as_u16(),
            }
            .into());
        }
        let h = response.headers().clone();
        let size = if ranged && status == StatusCode::PARTIAL_CONTENT {
            h.get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit('/').next())
                .and_then(|v| v.parse().ok())
        } else {
            content_length(&h)
        };
        let accept_ranges = h
            .get(ACCEPT_RANGES)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("bytes"))
            || status == StatusCode::PARTIAL_CONTENT;
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
}

/// The TLS + TCP connector: rustls with the `ring` provider over direct or proxied TCP.
fn connector(opts: &DownloadOptions, proxies: Arc<HttpProxies>) -> Result<Connector> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Http {
            url: String::new(),
            message: format!("tls setup: {e}"),
        })?
        .with_root_certificates(http_proxy::root_store())
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(opts.connect_timeout));
    http.set_nodelay(true);
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(ProxyConnector::new(http, proxies, opts.idle_timeout)))
}

/// Checks what arrived, in order: a complete body, GGUF content, the digest, and (for a
/// GGUF that nothing else vouches for) the whole file's structure; then publishes.
async fn conclude(t: Transfer<'_>, r: Received, progress: &SharedProgress) -> Result<Attempt> {
    let url = t.spec.url.clone();
    if let Some(found) = r.not_gguf {
        t.resume.discard();
        return Err(Error::NotGguf { url, found }.into());
    }
    if let Some(message) = r.error {
        return Ok(Attempt::Retry {
            error: Error::Http {
                url: t.final_url,
                message,
            }
            .into(),
            after: None,
        });
    }
    if let Some(total) = t.total
        && r.written.len != total
    {
        return Ok(Attempt::Retry {
            error: Error::Truncated {
                url: t.final_url,
                path: t.resume.part.clone(),
                received: r.written.len,
                expected: total,
            }
            .into(),
            after: None,
        });
    }
    if t.spec.content == Content::Gguf {
        let head = file_head(&t.resume.part)?;
        if head != GGUF_MAGIC {
            t.resume.discard();
            return Err(Error::NotGguf { url, found: head }.into());
        }
    }
    match t.expected {
        Some(exp) if exp != r.written.sha256 => {
            t.resume.discard();
            if t.start > 0 {
                // The kept bytes and the new ones do not make the file: fetch it whole.
                progress.event(ProgressEvent::Note {
                    message: format!("resumed download of {url} did not verify; restarting"),
                });
                return Ok(Attempt::Restart);
            }
            return Err(Error::ChecksumMismatch {
                url,
                path: t.spec.dest.clone(),
                expected: exp.to_owned(),
                found: r.written.sha256,
            }
            .into());
        }
        None if t.total.is_none() && t.spec.content == Content::Gguf => {
            if let Err(e) = check_whole_gguf(&t.resume.part).await {
                t.resume.discard();
                return Ok(Attempt::Retry {
                    error: Error::Unverifiable {
                        url,
                        reason: format!(
                            "the server sent no length and the file is not a complete GGUF ({e})"
                        ),
                    }
                    .into(),
                    after: None,
                });
            }
        }
        _ => {}
    }
    let attempt = publish(
        t.spec,
        &t.resume,
        r.written,
        r.transferred,
        t.etag,
        t.final_url,
    )?;
    progress.event(ProgressEvent::Done);
    Ok(attempt)
}

/// Parses the whole file as GGUF: header, metadata and tensor infos, with every tensor's
/// data inside the file.
async fn check_whole_gguf(path: &Path) -> Result<()> {
    crate::gguf::read_gguf_async(path).await.map(drop)
}

/// Renames the verified part onto `dest` and makes the rename durable.
fn publish(
    spec: &DownloadSpec,
    resume: &Resume,
    written: Written,
    transferred: u64,
    etag: Option<String>,
    final_url: String,
) -> Result<Attempt> {
    let dest = &spec.dest;
    std::fs::rename(&resume.part, dest).ctx("rename into", dest)?;
    let _ = std::fs::remove_file(&resume.meta_path);
    if let Some(dir) = dest.parent() {
        sync_dir(dir);
    }
    Ok(Attempt::Done(Downloaded {
        path: dest.clone(),
        sha256: written.sha256,
        size: written.len,
        bytes_transferred: transferred,
        etag,
        final_url,
    }))
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
