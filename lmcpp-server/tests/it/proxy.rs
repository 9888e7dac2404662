//! The proxy through its public API only, as the CLI uses it: a `Launch` given as a
//! closure, a start that fails for every waiter at once, the typed errors clients get,
//! and the registry record.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures_util::future::BoxFuture;
use lmcpp_server::{
    Error, Launch, LaunchError, ModelSpec, ModelState, ProcessKind, Proxy, ProxyOptions, Registry,
    Server,
};
use lmcpp_types::native::tokenize::TokenizeRequest;
use tokio::sync::Semaphore;

/// A launcher that waits at `gate`, counts its calls, and fails like a server that
/// exited during start-up.
fn failing(
    calls: Arc<AtomicUsize>,
    gate: Arc<Semaphore>,
) -> impl Fn() -> BoxFuture<'static, Result<Server, LaunchError>> + Send + Sync + 'static {
    move || {
        calls.fetch_add(1, Ordering::SeqCst);
        let gate = Arc::clone(&gate);
        Box::pin(async move {
            let _permit = gate.acquire().await.unwrap();
            let mut e = LaunchError::new("llama-server exited during start-up (exit status: 1)");
            e.log_tail = vec!["gguf_init: invalid magic".into()];
            Err(e)
        })
    }
}

#[tokio::test]
async fn a_failing_start_is_one_start_and_a_typed_error_for_every_waiter() {
    let dir = tempfile::tempdir().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(0));
    let launch: Arc<dyn Launch> = Arc::new(failing(Arc::clone(&calls), Arc::clone(&gate)));
    let mut opts = ProxyOptions::new(1 << 30);
    opts.runtime_dir = Some(dir.path().to_owned());
    opts.load_timeout = Duration::from_secs(30);
    let mut spec = ModelSpec::new("broken", launch);
    spec.estimate_bytes = 1 << 20;
    let proxy = Proxy::start(opts, vec![spec]).await.unwrap();

    let record = Registry::new(dir.path()).get(proxy.id()).unwrap();
    assert_eq!(
        (record.kind, record.pid, record.args.clone()),
        (
            ProcessKind::Proxy,
            std::process::id(),
            vec!["broken".to_owned()]
        )
    );
    assert_eq!(ProcessKind::Proxy.to_string(), "proxy");

    let client = proxy.client();
    let waiters: Vec<_> = (0..16)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                let req: TokenizeRequest = serde_json::from_str(r#"{"content":"x"}"#).unwrap();
                client.tokenize(&req).await
            })
        })
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while proxy.models()[0].state != ModelState::Loading {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the start never began"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    gate.add_permits(64);
    for waiter in waiters {
        match waiter.await.unwrap() {
            Err(Error::Api {
                status: 502, error, ..
            }) => {
                assert!(
                    error.message.contains("`broken` could not be started"),
                    "{}",
                    error.message
                );
                assert_eq!(error.extra["log_tail"][0], "gguf_init: invalid magic");
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let view = &proxy.models()[0];
    assert_eq!(
        (view.state, view.estimate_bytes, view.pid),
        (ModelState::Failed, 1 << 20, None)
    );
    let listed = client.models().await.unwrap();
    assert_eq!(listed.data[0].extra["status"]["failed"], true);
    proxy.stop().await.unwrap();
    assert!(
        Registry::new(dir.path())
            .read(&record.id)
            .unwrap()
            .is_none()
    );
}

#[test]
fn the_proxy_handle_crosses_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Proxy>();
    send_sync::<ModelSpec>();
    send_sync::<LaunchError>();
}

/// A model the CLI has not downloaded yet: configured without an estimate, its
/// `prepare` fetches it and learns the real one.
struct NotYetDownloaded {
    prepares: Arc<AtomicUsize>,
    launches: Arc<AtomicUsize>,
}

impl Launch for NotYetDownloaded {
    fn launch(&self) -> BoxFuture<'static, Result<Server, LaunchError>> {
        self.launches.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Err(LaunchError::new("not in this test")) })
    }

    fn prepare(&self) -> BoxFuture<'static, Result<Option<u64>, LaunchError>> {
        self.prepares.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Ok(Some(3 << 30)) })
    }
}

#[tokio::test]
async fn a_launch_prepares_its_model_and_its_estimate_is_checked_before_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let (prepares, launches) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let launch: Arc<dyn Launch> = Arc::new(NotYetDownloaded {
        prepares: Arc::clone(&prepares),
        launches: Arc::clone(&launches),
    });
    let mut opts = ProxyOptions::new(2 << 30);
    opts.runtime_dir = Some(dir.path().to_owned());
    let proxy = Proxy::start(opts, vec![ModelSpec::new("later", launch)])
        .await
        .unwrap();
    assert_eq!(proxy.models()[0].estimate_bytes, 0);
    let req: TokenizeRequest = serde_json::from_str(r#"{"content":"x"}"#).unwrap();
    match proxy.client().tokenize(&req).await {
        Err(Error::Api {
            status: 503, error, ..
        }) => assert_eq!(error.extra["estimate_bytes"], 3u64 << 30),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        (
            prepares.load(Ordering::SeqCst),
            launches.load(Ordering::SeqCst),
            proxy.models()[0].estimate_bytes,
            proxy.models()[0].state
        ),
        (1, 0, 3 << 30, ModelState::Stopped)
    );
    proxy.stop().await.unwrap();
}
