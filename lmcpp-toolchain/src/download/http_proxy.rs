//! HttpProxies and trust roots for remote URLs: `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and
//! `NO_PROXY` (and their lower-case forms) as curl reads them, and the system's CA bundle
//! next to the built-in webpki roots.
//!
//! Only `http://` proxies are supported (the common corporate kind): plain-http URLs go to
//! the proxy in absolute form, `https` URLs through a `CONNECT` tunnel, so TLS still ends
//! at the real host. Loopback destinations (`localhost`, `127.0.0.0/8`, `::1`) are always
//! reached directly. A proxy URL may carry `user:password@`, sent as `Proxy-Authorization:
//! Basic`.

use std::future::Future;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower_service::Service;

use crate::error::Result;
use lmcpp_types::percent::decode_lossy as percent_decode;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Where requests go: directly, or through an HTTP proxy. Build with
/// [`HttpProxies::from_env`] (what [`Downloader::new`](super::Downloader::new) uses),
/// [`HttpProxies::none`] or [`HttpProxies::new`].
#[derive(Clone, Default)]
pub struct HttpProxies {
    http: Option<Proxy>,
    https: Option<Proxy>,
    no_proxy: Vec<String>,
}

impl std::fmt::Debug for HttpProxies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Proxy credentials are secrets; show only where the proxies are.
        let show = |p: &Option<Proxy>| p.as_ref().map(|p| format!("{}:{}", p.host, p.port));
        f.debug_struct("HttpProxies")
            .field("http", &show(&self.http))
            .field("https", &show(&self.https))
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

/// One HTTP proxy.
#[derive(Clone)]
pub(super) struct Proxy {
    host: String,
    port: u16,
    /// `Basic …` when the proxy URL had credentials.
    authorization: Option<String>,
}

impl HttpProxies {
    /// No proxy at all.
    pub fn none() -> Self {
        Self::default()
    }

    /// The proxies the environment names (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`,
    /// `NO_PROXY`, upper or lower case; only `http_proxy` inside a CGI program). A proxy
    /// URL that is not `http://` is ignored with a warning in the log.
    pub fn from_env() -> Self {
        let var = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| std::env::var(n).ok().filter(|v| !v.trim().is_empty()))
        };
        let all = var(&["ALL_PROXY", "all_proxy"]);
        let parse = |v: Option<String>| {
            v.and_then(|v| match Proxy::parse(&v) {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::warn!("ignoring proxy setting: {e}");
                    None
                }
            })
        };
        Self {
            https: parse(var(&["HTTPS_PROXY", "https_proxy"]).or(all.clone())),
            // In a CGI program `HTTP_PROXY` may come from a request header ("httpoxy"), so
            // there only the lower-case form counts, as in curl.
            http: parse(
                if std::env::var_os("REQUEST_METHOD").is_some() {
                    var(&["http_proxy"])
                } else {
                    var(&["HTTP_PROXY", "http_proxy"])
                }
                .or(all),
            ),
            no_proxy: split_no_proxy(var(&["NO_PROXY", "no_proxy"]).as_deref()),
        }
    }

    /// Explicit proxies: for `http` and `https` URLs (`http://[user:pass@]host[:port]`),
    /// and a `NO_PROXY`-style list of hosts, domains and CIDR ranges reached directly.
    pub fn new(http: Option<&str>, https: Option<&str>, no_proxy: Option<&str>) -> Result<Self> {
        Ok(Self {
            http: http.map(Proxy::parse).transpose()?,
            https: https.map(Proxy::parse).transpose()?,
            no_proxy: split_no_proxy(no_proxy),
        })
    }

    /// The proxy for `uri`, or `None` to connect directly.
    pub(super) fn for_uri(&self, uri: &Uri) -> Option<&Proxy> {
        let proxy = match uri.scheme_str() {
            Some("https") => self.https.as_ref(),
            Some("http") => self.http.as_ref(),
            _ => None,
        }?;
        let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
        if is_loopback(host) || self.no_proxy.iter().any(|rule| bypasses(rule, host)) {
            return None;
        }
        Some(proxy)
    }

    /// `Proxy-Authorization` to send with a plain-http request to `uri`, when it goes
    /// through a proxy that has credentials.
    pub(super) fn authorization_for(&self, uri: &Uri) -> Option<&str> {
        if uri.scheme_str() != Some("http") {
            return None;
        }
        self.for_uri(uri)?.authorization.as_deref()
    }
}

impl Proxy {
    fn parse(url: &str) -> Result<Self> {
        let bad = |reason: &str| {
            crate::download::error::Error::InvalidUrl {
                url: redact(url),
                reason: format!("proxy: {reason}"),
            }
            .into()
        };
        let url = url.trim();
        let rest = match url.split_once("://") {
            Some(("http", rest)) => rest,
            Some((scheme, _)) => {
                return Err(bad(&format!(
                    "only http:// proxies are supported, not {scheme}://"
                )));
            }
            None => url,
        };
        let authority = rest.split('/').next().unwrap_or("");
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (host, port) = split_host_port(hostport).ok_or_else(|| bad("no host"))?;
        let authorization = userinfo.map(|u| {
            let decoded = percent_decode(u);
            format!("Basic {}", base64(decoded.as_bytes()))
        });
        Ok(Self {
            host,
            // curl's default proxy port.
            port: port.unwrap_or(1080),
            authorization,
        })
    }
}

/// `host[:port]` or `[v6][:port]`.
fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
        return Some((host.to_owned(), port));
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()),
        None => (s, None),
    };
    (!host.is_empty()).then(|| (host.to_owned(), port))
}

fn split_no_proxy(v: Option<&str>) -> Vec<String> {
    v.unwrap_or("")
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.to_ascii_lowercase().ends_with(".localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether one `NO_PROXY` entry sends `host` directly: `*`, an exact host or IP, a domain
/// (with or without a leading dot) covering its subdomains, or an IP range in CIDR form.
fn bypasses(rule: &str, host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    if rule == "*" {
        return true;
    }
    if let Some((net, bits)) = rule.split_once('/') {
        return match (
            net.parse::<IpAddr>(),
            bits.parse::<u32>(),
            host.parse::<IpAddr>(),
        ) {
            (Ok(net), Ok(bits), Ok(ip)) => in_cidr(ip, net, bits),
            _ => false,
        };
    }
    if let Ok(ip) = rule.parse::<IpAddr>() {
        return host.parse::<IpAddr>().is_ok_and(|h| h == ip);
    }
    // A port in the rule does not narrow it (as in curl).
    let rule = split_host_port(rule).map_or_else(|| rule.to_owned(), |(h, _)| h);
    let domain = rule.trim_start_matches('.');
    host == domain || host.ends_with(&format!(".{domain}"))
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u32) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
        (None, Some(at)) => format!("***{}", &url[at..]),
        _ => url.to_owned(),
    }
}

fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A TCP connection, directly or to a proxy, that tells hyper when requests must be sent
/// in absolute form (plain http through a proxy).
pub(super) struct ProxyStream {
    io: TokioIo<TcpStream>,
    proxied: bool,
}

impl Connection for ProxyStream {
    fn connected(&self) -> Connected {
        self.io.connected().proxy(self.proxied)
    }
}

impl hyper::rt::Read for ProxyStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for ProxyStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The TCP connector under TLS: direct, or to the proxy that [`HttpProxies`] names.
#[derive(Clone)]
pub(super) struct ProxyConnector {
    http: HttpConnector,
    proxies: Arc<HttpProxies>,
    /// Longest wait for the proxy's answer to `CONNECT`.
    handshake_timeout: Duration,
}

impl ProxyConnector {
    pub(super) fn new(
        http: HttpConnector,
        proxies: Arc<HttpProxies>,
        handshake_timeout: Duration,
    ) -> Self {
        Self {
            http,
            proxies,
            handshake_timeout,
        }
    }
}

impl Service<Uri> for ProxyConnector {
    type Response = ProxyStream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<ProxyStream, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let proxy = self.proxies.for_uri(&dst).cloned();
        let mut http = self.http.clone();
        let timeout = self.handshake_timeout;
        Box::pin(async move {
            let Some(proxy) = proxy else {
                let io = http.call(dst).await?;
                return Ok(ProxyStream { io, proxied: false });
            };
            let at: Uri = format!("http://{}:{}", bracket(&proxy.host), proxy.port).parse()?;
            let io = http.call(at).await.map_err(|e| {
                format!("cannot connect to proxy {}:{}: {e}", proxy.host, proxy.port)
            })?;
            if dst.scheme_str() != Some("https") {
                return Ok(ProxyStream { io, proxied: true });
            }
            let tcp = tokio::time::timeout(timeout, tunnel(io.into_inner(), &dst, &proxy))
                .await
                .map_err(|_| {
                    format!("proxy {}:{} did not answer CONNECT", proxy.host, proxy.port)
                })??;
            Ok(ProxyStream {
                io: TokioIo::new(tcp),
                proxied: false,
            })
        })
    }
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// Asks the proxy for a tunnel to `dst` and reads its answer (at most 16 KiB of headers).
async fn tunnel(mut tcp: TcpStream, dst: &Uri, proxy: &Proxy) -> Result<TcpStream, BoxError> {
    let host = dst.host().ok_or("url without host")?;
    let port = dst.port_u16().unwrap_or(443);
    let target = format!(
        "{}:{port}",
        bracket(host.trim_start_matches('[').trim_end_matches(']'))
    );
    let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(auth) = &proxy.authorization {
        req.push_str(&format!("Proxy-Authorization: {auth}\r\n"));
    }
    req.push_str("\r\n");
    tcp.write_all(req.as_bytes()).await?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        if buf.len() > 16 * 1024 {
            return Err("proxy answered CONNECT with oversized headers".into());
        }
        let n = tcp.read(&mut chunk).await?;
        if n == 0 {
            return Err("proxy closed the connection during CONNECT".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let status_line = buf.split(|b| *b == b'\n').next().unwrap_or_default();
    let status = String::from_utf8_lossy(status_line);
    let code = status.split_whitespace().nth(1).unwrap_or("");
    if !code.starts_with('2') {
        return Err(format!(
            "proxy {}:{} refused the tunnel to {target}: {}",
            proxy.host,
            proxy.port,
            status.trim()
        )
        .into());
    }
    Ok(tcp)
}

/// Where Linux and BSD distributions keep the system's CA bundle; `SSL_CERT_FILE` first.
fn system_bundles() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    v.extend(
        [
            "/etc/ssl/certs/ca-certificates.crt",
            "/etc/pki/tls/certs/ca-bundle.crt",
            "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
            "/etc/ssl/ca-bundle.pem",
            "/etc/ssl/cert.pem",
        ]
        .map(PathBuf::from),
    );
    v
}

/// The built-in webpki roots plus every certificate of the first readable system bundle
/// (so a corporate or private CA installed on the machine is trusted too).
pub(super) fn root_store() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(added) = system_bundles()
        .iter()
        .find_map(|p| add_pem_bundle(&mut roots, p))
    {
        tracing::debug!(added, "system CA certificates added to the trust roots");
    }
    roots
}

/// Adds the certificates of a PEM bundle; `None` when it cannot be read or holds none.
fn add_pem_bundle(roots: &mut rustls::RootCertStore, path: &Path) -> Option<usize> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let bytes = std::fs::read(path).ok()?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .filter_map(|c| c.ok())
        .collect();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    (added > 0).then_some(added)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    #[test]
    fn proxies_are_chosen_per_scheme_and_bypassed_per_rule() {
        let p = HttpProxies::new(
            Some("http://proxy.corp:3128"),
            Some("proxy.corp:8443"),
            Some("internal.corp, .lan,10.0.0.0/8 ,fd00::/8, exact.example:8080"),
        )
        .unwrap();
        let at = |u: &str| p.for_uri(&uri(u)).map(|x| (x.host.clone(), x.port));
        let cases = [
            ("https://huggingface.co/x", Some(("proxy.corp", 8443))),
            ("http://mirror.example/x", Some(("proxy.corp", 3128))),
            ("https://internal.corp/x", None),
            ("https://a.b.internal.corp/x", None),
            ("https://notinternal.corp/x", Some(("proxy.corp", 8443))),
            ("http://box.lan/x", None),
            ("http://10.1.2.3/x", None),
            ("http://11.1.2.3/x", Some(("proxy.corp", 3128))),
            ("http://[fd00::1]/x", None),
            ("https://exact.example/x", None),
            // Loopback is never proxied.
            ("http://127.0.0.1:8080/x", None),
            ("http://localhost/x", None),
            ("http://[::1]/x", None),
        ];
        for (u, want) in cases {
            assert_eq!(at(u), want.map(|(h, p)| (h.to_owned(), p)), "{u}");
        }
        let all = HttpProxies::new(Some("http://p"), None, Some("*")).unwrap();
        assert!(all.for_uri(&uri("http://anything/x")).is_none());
        assert!(HttpProxies::none().for_uri(&uri("https://h/x")).is_none());
    }

    #[test]
    fn proxy_urls_parse_with_credentials_and_only_http() {
        let p = Proxy::parse("http://us%40er:p%3Ass@proxy:3128/").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("proxy", 3128));
        assert_eq!(
            p.authorization.as_deref(),
            Some(format!("Basic {}", base64(b"us@er:p:ss")).as_str())
        );
        assert_eq!(Proxy::parse("proxy").unwrap().port, 1080);
        let v6 = Proxy::parse("http://[fd00::2]:8080").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("fd00::2", 8080));
        let Err(err) = Proxy::parse("socks5://user:secret@p:1080") else {
            panic!("a socks proxy was accepted");
        };
        assert!(err.to_string().contains("only http://"), "{err}");
        assert!(!err.to_string().contains("secret"), "{err}");
        let shown = format!(
            "{:?}",
            HttpProxies::new(Some("http://u:secret@p:1"), None, None).unwrap()
        );
        assert!(!shown.contains("secret"), "{shown}");
    }

    #[test]
    fn base64_matches_the_rfc_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (i, o) in cases {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    /// A self-signed CA certificate (generated once with openssl for this test).
    const TEST_ROOT: &str = "-----BEGIN CERTIFICATE-----
MIIBijCCATGgAwIBAgIUX6ltr5LJBa8HoIQ7AuGiSH1QHKgwCgYIKoZIzj0EAwIw
GjEYMBYGA1UEAwwPbG1jcHAgdGVzdCByb290MCAXDTI2MTEzMDA5MjcxMFoYDzIx
MjYxMTA2MDkyNzEwWjAaMRgwFgYDVQQDDA9sbWNwcCB0ZXN0IHJvb3QwWTATBgcq
hkjOPQIBBggqhkjOPQMBBwNCAARNQ4b9jy7nHbQJ9PMH5DxSy1313/Or6uIZyWOk
Sp0AY6Y9wgcLRy29QDGZSe5hMSMYFi/TNXrBIrzIgpPDR9fvo1MwUTAdBgNVHQ4E
FgQUOBUpWZNfBbo5zHv9LpxyY5ka2LkwHwYDVR0jBBgwFoAUOBUpWZNfBbo5zHv9
LpxyY5ka2LkwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNHADBEAiBZ7Epn
NeiItICGkm9jTsLSMiYYPI4HhbAdmUhcGxV3SgIgc/Laamq3hHtKRkEO2Ht2uie5
yBmIlk9hyWZfYnIR9AM=
-----END CERTIFICATE-----
";

    #[test]
    fn a_system_bundle_adds_its_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("bundle.pem");
        let mut roots = rustls::RootCertStore::empty();
        std::fs::write(&pem, "not a certificate").unwrap();
        assert_eq!(add_pem_bundle(&mut roots, &pem), None);
        assert_eq!(
            add_pem_bundle(&mut roots, &dir.path().join("missing")),
            None
        );
        std::fs::write(&pem, format!("junk before\n{TEST_ROOT}junk after\n")).unwrap();
        assert_eq!(add_pem_bundle(&mut roots, &pem), Some(1));
        assert_eq!(roots.len(), 1);
        assert!(root_store().len() >= webpki_roots::TLS_SERVER_ROOTS.len());
    }
}
