//! The models' lifecycle behind the proxy: one start however many requests wait for it,
//! requests counted in flight, stops after the keep-alive, eviction to fit the memory
//! budget, and the watch on each running server.
//!
//! All decisions are made under one lock over every model's state, so a budget check and
//! the evictions it implies are one step; nothing is awaited while it is held. Starting
//! and stopping servers happen in tasks, outside it.

use std::{
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant, SystemTime},
};

use futures_util::future::BoxFuture;
use http::HeaderValue;
use tokio::sync::{Notify, oneshot, watch};

use super::{
    ModelState, ModelView,
    spec::{Launch, LaunchError, ModelSpec},
};
use crate::{endpoint::Endpoint, pool::Pool, server::Server, supervised::EXIT_TAIL_LINES};

/// How long the proxy waits for one model server to stop before it gives up waiting
/// (the server's own stop is bounded by its grace period plus 5 s).
const STOP_WAIT: Duration = Duration::from_secs(60);

/// How long a server that just became ready is kept from eviction while the requests
/// that waited for it have not used it yet.
const FRESH_GRACE: Duration = Duration::from_secs(5);

/// How soon the keep-alive task looks again at a busy model whose keep-alive is shorter.
const BUSY_RECHECK: Duration = Duration::from_millis(100);

/// A running model server as the lifecycle sees it; [`Server`] is the real one.
pub(crate) trait Instance: Send + Sync + 'static {
    fn endpoint(&self) -> &Endpoint;
    fn api_key(&self) -> Option<&str>;
    fn pid(&self) -> Option<u32>;
    fn server_id(&self) -> Option<&str>;
    /// Resolves when the process exits, with its status as text.
    fn exited(&self) -> BoxFuture<'_, String>;
    fn log_tail(&self) -> Vec<String>;
    fn stop(self: Box<Self>) -> BoxFuture<'static, ()>;
}

impl Instance for Server {
    fn endpoint(&self) -> &Endpoint {
        Server::endpoint(self)
    }

    fn api_key(&self) -> Option<&str> {
        Server::api_key(self)
    }

    fn pid(&self) -> Option<u32> {
        Some(Server::pid(self))
    }

    fn server_id(&self) -> Option<&str> {
        Some(Server::id(self))
    }

    fn exited(&self) -> BoxFuture<'_, String> {
        Box::pin(async move { Server::exited(self).await.to_string() })
    }

    fn log_tail(&self) -> Vec<String> {
        Server::log_tail(self, EXIT_TAIL_LINES).unwrap_or_default()
    }

    fn stop(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            if let Err(e) = Server::stop(*self).await {
                tracing::warn!(error = %e, "stopping a model server failed");
            }
        })
    }
}

/// Starts one model's server; [`Launch`] is the real one.
pub(crate) trait Start: Send + Sync + 'static {
    fn start(&self) -> BoxFuture<'static, Result<Box<dyn Instance>, LaunchError>>;
}

/// A [`Launch`] as a [`Start`].
struct Launcher(Arc<dyn Launch>);

impl Start for Launcher {
    fn start(&self) -> BoxFuture<'static, Result<Box<dyn Instance>, LaunchError>> {
        let fut = self.0.launch();
        Box::pin(async move { Ok(Box::new(fut.await?) as Box<dyn Instance>) })
    }
}

/// What never changes about a model.
pub(crate) struct Conf {
    pub(crate) alias: String,
    estimate: u64,
    keep_alive: Option<Duration>,
    pinned: bool,
    llama_version: Option<String>,
    starter: Arc<dyn Start>,
}

impl Conf {
    pub(crate) fn from_spec(spec: ModelSpec) -> Self {
        Self::new(spec.clone(), Arc::new(Launcher(spec.launch)))
    }

    pub(crate) fn new(spec: ModelSpec, starter: Arc<dyn Start>) -> Self {
        Self {
            alias: spec.alias,
            estimate: spec.estimate_bytes,
            keep_alive: spec.keep_alive,
            pinned: spec.pinned,
            llama_version: spec.llama_version,
            starter,
        }
    }
}

/// The outcome of one start, as its waiters see it.
type Outcome = Option<Result<(), Arc<LaunchError>>>;

enum Phase {
    Stopped,
    Loading(watch::Receiver<Outcome>),
    Ready(Arc<Running>),
    Failed(Arc<LaunchError>),
}

struct Slot {
    phase: Phase,
    in_flight: usize,
    last_used: Option<(Instant, SystemTime)>,
    /// Bumped by every start, so a late result of an abandoned start is recognised.
    generation: u64,
    /// A server that just became ready is kept from eviction until a request has used
    /// it (or this passes), so the requests that waited for it get it.
    fresh_until: Option<Instant>,
}

/// A ready model server, shared by the requests using it.
pub(crate) struct Running {
    pub(crate) pool: Pool,
    /// `Authorization` for the model server's own key.
    pub(crate) auth: Option<HeaderValue>,
    pid: Option<u32>,
    server_id: Option<String>,
    generation: u64,
    /// Asks the task that owns the server to stop it; it answers when it has.
    stop: Mutex<Option<oneshot::Sender<oneshot::Sender<()>>>>,
}

impl Running {
    /// Asks for the stop without waiting for it.
    fn request_stop(&self) -> Option<oneshot::Receiver<()>> {
        let tx = lock(&self.stop).take()?;
        let (ack_tx, ack_rx) = oneshot::channel();
        tx.send(ack_tx).ok()?;
        Some(ack_rx)
    }

    /// Stops the server and waits (bounded) until it has exited.
    async fn stop(&self) {
        if let Some(ack) = self.request_stop() {
            let _ = tokio::time::timeout(STOP_WAIT, ack).await;
        }
    }
}

/// Why a request got no model server.
#[derive(Debug, Clone)]
pub(crate) enum AcquireError {
    /// The start failed (this one or the one it waited on).
    Start(Arc<LaunchError>),
    /// The model did not become ready within the load timeout.
    LoadTimeout(Duration),
    /// Starting it would exceed the budget, and not enough idle unpinned models can be
    /// stopped.
    NoRoom {
        estimate: u64,
        budget: u64,
        /// What holds the memory: alias, estimate, and why it cannot be stopped.
        holders: Vec<(String, u64, &'static str)>,
    },
    /// The proxy is stopping.
    ShuttingDown,
}

struct Table {
    slots: Vec<Slot>,
    shutting_down: bool,
}

/// Every model's configuration and state.
pub(crate) struct Models {
    confs: Vec<Conf>,
    table: Mutex<Table>,
    budget: u64,
    /// Wakes the keep-alive task when a model becomes ready or dies (a request ending
    /// only moves an expiry later, which the task finds when it looks).
    changed: Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update of the table is a few field writes that cannot panic half-way.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A request in flight on a model server: counted until dropped, which for a response
/// body is when its last byte was sent or the client went away.
pub(crate) struct InFlight {
    models: Arc<Models>,
    index: usize,
    pub(crate) running: Arc<Running>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut table = lock(&self.models.table);
        let slot = &mut table.slots[self.index];
        slot.in_flight = slot.in_flight.saturating_sub(1);
        slot.last_used = Some((Instant::now(), SystemTime::now()));
        // No wake-up of the keep-alive task: it already plans to look at this model no
        // later than a keep-alive from now (see `Models::expire`), and a wake-up per
        // request costs throughput.
    }
}

impl Models {
    pub(crate) fn new(confs: Vec<Conf>, budget: u64) -> Self {
        let slots = confs
            .iter()
            .map(|_| Slot {
                phase: Phase::Stopped,
                in_flight: 0,
                last_used: None,
                generation: 0,
                fresh_until: None,
            })
            .collect();
        Self {
            confs,
            table: Mutex::new(Table {
                slots,
                shutting_down: false,
            }),
            budget,
            changed: Notify::new(),
        }
    }

    pub(crate) fn confs(&self) -> &[Conf] {
        &self.confs
    }

    /// The index of `alias`.
    pub(crate) fn find(&self, alias: &str) -> Option<usize> {
        self.confs.iter().position(|c| c.alias == alias)
    }

    /// A ready server for model `index`, started if needed (one start for all who ask
    /// meanwhile), waiting for it at most `load_timeout`.
    pub(crate) async fn acquire(
        self: &Arc<Self>,
        index: usize,
        load_timeout: Duration,
    ) -> Result<InFlight, AcquireError> {
        let deadline = tokio::time::Instant::now() + load_timeout;
        loop {
            let mut outcome = {
                let mut table = lock(&self.table);
                if table.shutting_down {
                    return Err(AcquireError::ShuttingDown);
                }
                let slot = &mut table.slots[index];
                match &slot.phase {
                    Phase::Ready(running) => {
                        let running = Arc::clone(running);
                        slot.in_flight += 1;
                        slot.last_used = Some((Instant::now(), SystemTime::now()));
                        slot.fresh_until = None;
                        return Ok(InFlight {
                            models: Arc::clone(self),
                            index,
                            running,
                        });
                    }
                    Phase::Loading(outcome) => outcome.clone(),
                    Phase::Stopped | Phase::Failed(_) => self.begin_start(&mut table, index)?,
                }
            };
            let waited = tokio::time::timeout_at(deadline, outcome.wait_for(Option::is_some)).await;
            match waited {
                Err(_) => return Err(AcquireError::LoadTimeout(load_timeout)),
                // The task starting it is gone: only a runtime that is shutting down
                // drops it.
                Ok(Err(_)) => return Err(AcquireError::ShuttingDown),
                Ok(Ok(done)) => {
                    if let Some(Err(e)) = &*done {
                        return Err(AcquireError::Start(Arc::clone(e)));
                    }
                }
            }
        }
    }

    /// Makes room for model `index`, marks it loading and starts it in a task.
    fn begin_start(
        self: &Arc<Self>,
        table: &mut Table,
        index: usize,
    ) -> Result<watch::Receiver<Outcome>, AcquireError> {
        let victims = self.make_room(table, index)?;
        let (tx, rx) = watch::channel(None);
        let slot = &mut table.slots[index];
        slot.generation += 1;
        slot.phase = Phase::Loading(rx.clone());
        let generation = slot.generation;
        tokio::spawn(Arc::clone(self).run_start(index, generation, victims, tx));
        Ok(rx)
    }

    /// The idle unpinned ready models (least recently used first) to stop so that model
    /// `index` fits the budget, taken out of the table; or why it cannot fit.
    fn make_room(
        &self,
        table: &mut Table,
        index: usize,
    ) -> Result<Vec<Arc<Running>>, AcquireError> {
        let need = self.confs[index].estimate;
        let mut used: u64 = 0;
        let mut idle = Vec::new();
        let mut holders = Vec::new();
        for (i, (slot, conf)) in table.slots.iter().zip(&self.confs).enumerate() {
            let why = match &slot.phase {
                Phase::Stopped | Phase::Failed(_) => continue,
                _ if i == index => continue,
                Phase::Loading(_) => "loading",
                Phase::Ready(_) if slot.in_flight > 0 => "busy",
                Phase::Ready(_) if slot.fresh_until.is_some_and(|t| t > Instant::now()) => {
                    "just started"
                }
                Phase::Ready(_) if conf.pinned => "pinned",
                Phase::Ready(_) => {
                    idle.push((slot.last_used.map(|(at, _)| at), i));
                    "idle"
                }
            };
            used = used.saturating_add(conf.estimate);
            holders.push((conf.alias.clone(), conf.estimate, why));
        }
        let fits = |used: u64| used.saturating_add(need) <= self.budget;
        if fits(used) {
            return Ok(Vec::new());
        }
        idle.sort();
        let mut chosen = Vec::new();
        for (_, i) in idle {
            if fits(used) {
                break;
            }
            used -= self.confs[i].estimate;
            chosen.push(i);
        }
        if !fits(used) {
            holders.retain(|(_, _, why)| *why != "idle");
            return Err(AcquireError::NoRoom {
                estimate: need,
                budget: self.budget,
                holders,
            });
        }
        let mut victims = Vec::new();
        for i in chosen {
            let slot = &mut table.slots[i];
            if let Phase::Ready(running) = std::mem::replace(&mut slot.phase, Phase::Stopped) {
                tracing::debug!(model = %self.confs[i].alias, for_model = %self.confs[index].alias, "stopping an idle model to make room");
                victims.push(running);
            }
        }
        Ok(victims)
    }

    /// Stops the victims, starts the server, and publishes the outcome to the waiters.
    async fn run_start(
        self: Arc<Self>,
        index: usize,
        generation: u64,
        victims: Vec<Arc<Running>>,
        tx: watch::Sender<Outcome>,
    ) {
        // Their memory must be free before the new server loads.
        for victim in victims {
            victim.stop().await;
        }
        let conf = &self.confs[index];
        tracing::debug!(model = %conf.alias, "starting model server");
        let result = conf.starter.start().await;
        let outcome = match self.publish(index, generation, result) {
            Ok(outcome) => outcome,
            Err(abandoned) => {
                abandoned.stop().await;
                Err(Arc::new(LaunchError::new("the proxy is stopping")))
            }
        };
        self.changed.notify_one();
        let _ = tx.send(Some(outcome));
    }

    /// Records the result of a start: the model is ready (and its server watched) or
    /// failed. A server whose start was abandoned meanwhile (the proxy is stopping) is
    /// handed back to be stopped.
    fn publish(
        self: &Arc<Self>,
        index: usize,
        generation: u64,
        result: Result<Box<dyn Instance>, LaunchError>,
    ) -> Result<Result<(), Arc<LaunchError>>, Box<dyn Instance>> {
        let mut table = lock(&self.table);
        let current = !table.shutting_down && table.slots[index].generation == generation;
        match result {
            Ok(instance) if current => {
                let running = Arc::new(self.running(instance.as_ref(), generation));
                let (stop_tx, stop_rx) = oneshot::channel();
                *lock(&running.stop) = Some(stop_tx);
                let slot = &mut table.slots[index];
                slot.phase = Phase::Ready(running);
                slot.last_used = Some((Instant::now(), SystemTime::now()));
                slot.fresh_until = Some(Instant::now() + FRESH_GRACE);
                tokio::spawn(Arc::clone(self).supervise(index, generation, instance, stop_rx));
                Ok(Ok(()))
            }
            Ok(instance) => Err(instance),
            Err(e) => {
                let e = Arc::new(e);
                if current {
                    table.slots[index].phase = Phase::Failed(Arc::clone(&e));
                }
                Ok(Err(e))
            }
        }
    }

    fn running(&self, instance: &dyn Instance, generation: u64) -> Running {
        let auth = instance
            .api_key()
            .and_then(|key| HeaderValue::from_str(&format!("Bearer {key}")).ok())
            .map(|mut v| {
                v.set_sensitive(true);
                v
            });
        Running {
            pool: Pool::new(instance.endpoint(), crate::DEFAULT_CONNECT_TIMEOUT),
            auth,
            pid: instance.pid(),
            server_id: instance.server_id().map(str::to_owned),
            generation,
            stop: Mutex::new(None),
        }
    }

    /// Owns a running server: stops it when asked (or when nobody can ask any more), and
    /// marks the model failed when the server exits on its own.
    async fn supervise(
        self: Arc<Self>,
        index: usize,
        generation: u64,
        instance: Box<dyn Instance>,
        stop: oneshot::Receiver<oneshot::Sender<()>>,
    ) {
        let asked = tokio::select! {
            status = instance.exited() => Err(status),
            ack = stop => Ok(ack.ok()),
        };
        match asked {
            Ok(ack) => {
                instance.stop().await;
                if let Some(ack) = ack {
                    let _ = ack.send(());
                }
            }
            Err(status) => {
                let alias = &self.confs[index].alias;
                let error = LaunchError {
                    message: format!(
                        "the server of model `{alias}` exited ({status}); the next request starts it again"
                    ),
                    log_tail: instance.log_tail(),
                    user_error: false,
                };
                tracing::warn!(model = %alias, %status, "model server exited");
                {
                    let mut table = lock(&self.table);
                    let slot = &mut table.slots[index];
                    if matches!(&slot.phase, Phase::Ready(r) if r.generation == generation) {
                        slot.phase = Phase::Failed(Arc::new(error));
                    }
                }
                self.changed.notify_one();
                // Reaps the process and removes its record.
                instance.stop().await;
            }
        }
    }

    /// Stops idle models whose keep-alive has passed, until `shutdown` fires.
    pub(crate) async fn keep_alive(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            let (expired, next) = self.expire(Instant::now());
            for running in expired {
                tokio::spawn(async move { running.stop().await });
            }
            let sleep = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = self.changed.notified() => {}
                () = sleep => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Takes the idle models whose keep-alive ended by `now` out of the table, and says
    /// when to look again: at the earliest expiry of an idle model, and for a busy one a
    /// keep-alive from now (it cannot expire earlier, as it is used now).
    pub(crate) fn expire(&self, now: Instant) -> (Vec<Arc<Running>>, Option<Instant>) {
        let mut table = lock(&self.table);
        let mut expired = Vec::new();
        let mut next: Option<Instant> = None;
        for (slot, conf) in table.slots.iter_mut().zip(&self.confs) {
            let (Phase::Ready(_), Some(keep)) = (&slot.phase, conf.keep_alive) else {
                continue;
            };
            let busy = slot.in_flight > 0;
            let at = match (busy, slot.last_used) {
                (false, Some((used, _))) => used + keep,
                _ => now + keep.max(BUSY_RECHECK),
            };
            if !busy && at <= now {
                if let Phase::Ready(running) = std::mem::replace(&mut slot.phase, Phase::Stopped) {
                    tracing::debug!(model = %conf.alias, "keep-alive ended; stopping model server");
                    expired.push(running);
                }
            } else {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        (expired, next)
    }

    /// Every model as reported to users.
    pub(crate) fn views(&self) -> Vec<ModelView> {
        let table = lock(&self.table);
        table
            .slots
            .iter()
            .zip(&self.confs)
            .map(|(slot, conf)| {
                let (state, running, error) = match &slot.phase {
                    Phase::Stopped => (ModelState::Stopped, None, None),
                    Phase::Loading(_) => (ModelState::Loading, None, None),
                    Phase::Ready(r) => (ModelState::Ready, Some(r), None),
                    Phase::Failed(e) => (ModelState::Failed, None, Some(e.to_string())),
                };
                ModelView {
                    alias: conf.alias.clone(),
                    state,
                    estimate_bytes: conf.estimate,
                    last_used: slot.last_used.map(|(_, at)| at),
                    pid: running.and_then(|r| r.pid),
                    server_id: running.and_then(|r| r.server_id.clone()),
                    in_flight: slot.in_flight,
                    keep_alive_secs: conf.keep_alive.map(|d| d.as_secs()),
                    pinned: conf.pinned,
                    llama_version: conf.llama_version.clone(),
                    error,
                }
            })
            .collect()
    }

    /// Stops model `index` now if it runs and is idle; `Err(in_flight)` when it is busy.
    pub(crate) async fn unload(&self, index: usize) -> Result<(), usize> {
        let running = {
            let mut table = lock(&self.table);
            let slot = &mut table.slots[index];
            match &slot.phase {
                Phase::Ready(_) if slot.in_flight > 0 => return Err(slot.in_flight),
                Phase::Ready(_) => match std::mem::replace(&mut slot.phase, Phase::Stopped) {
                    Phase::Ready(running) => running,
                    _ => return Ok(()),
                },
                _ => return Ok(()),
            }
        };
        running.stop().await;
        Ok(())
    }

    /// Refuses new requests and asks every running server to stop; the returned
    /// receivers answer when each has. A start in progress stops its server when it
    /// finishes.
    pub(crate) fn shut_down(&self) -> Vec<oneshot::Receiver<()>> {
        let mut table = lock(&self.table);
        table.shutting_down = true;
        let mut acks = Vec::new();
        for slot in &mut table.slots {
            if let Phase::Ready(running) = std::mem::replace(&mut slot.phase, Phase::Stopped) {
                acks.extend(running.request_stop());
            }
        }
        acks
    }
}

/// Waits (bounded) for the stops [`Models::shut_down`] asked for.
pub(crate) async fn stopped(acks: Vec<oneshot::Receiver<()>>) {
    let all = futures_util::future::join_all(acks);
    let _ = tokio::time::timeout(STOP_WAIT, all).await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    struct NeverStarts;

    impl Start for NeverStarts {
        fn start(&self) -> BoxFuture<'static, Result<Box<dyn Instance>, LaunchError>> {
            Box::pin(async { Err(LaunchError::new("not in this test")) })
        }
    }

    /// A model of `estimate` bytes in the given state; `age` orders last use (larger is
    /// longer ago).
    #[derive(Clone, Copy)]
    enum S {
        Stopped,
        Loading,
        Idle { age: u64 },
        Busy,
        Pinned,
        Fresh,
    }

    fn models(estimates_and_states: &[(u64, S)], budget: u64) -> Models {
        let confs = estimates_and_states
            .iter()
            .enumerate()
            .map(|(i, (estimate, state))| Conf {
                alias: format!("m{i}"),
                estimate: *estimate,
                keep_alive: None,
                pinned: matches!(state, S::Pinned),
                llama_version: None,
                starter: Arc::new(NeverStarts),
            })
            .collect();
        let models = Models::new(confs, budget);
        let now = Instant::now();
        let mut table = lock(&models.table);
        for (slot, (_, state)) in table.slots.iter_mut().zip(estimates_and_states) {
            let running = || {
                Phase::Ready(Arc::new(Running {
                    pool: Pool::new(&Endpoint::unix("/nonexistent.sock"), Duration::from_secs(1)),
                    auth: None,
                    pid: None,
                    server_id: None,
                    generation: 0,
                    stop: Mutex::new(None),
                }))
            };
            slot.last_used = Some((now, SystemTime::now()));
            slot.phase = match *state {
                S::Stopped => Phase::Stopped,
                S::Loading => Phase::Loading(watch::channel(None).1),
                S::Idle { age } => {
                    slot.last_used = Some((now - Duration::from_secs(age), SystemTime::now()));
                    running()
                }
                S::Busy => {
                    slot.in_flight = 1;
                    running()
                }
                S::Pinned => running(),
                S::Fresh => {
                    slot.fresh_until = Some(now + Duration::from_secs(60));
                    running()
                }
            };
        }
        drop(table);
        models
    }

    /// Which models a start of the last one stops, or what holds the budget.
    fn room(states: &[(u64, S)], budget: u64) -> Result<Vec<String>, Vec<(String, &'static str)>> {
        let models = models(states, budget);
        let last = states.len() - 1;
        let mut table = lock(&models.table);
        match models.make_room(&mut table, last) {
            Ok(victims) => {
                let stopped: Vec<String> = table
                    .slots
                    .iter()
                    .zip(&models.confs)
                    .zip(states)
                    .filter(|((slot, _), (_, s))| {
                        matches!(slot.phase, Phase::Stopped) && !matches!(s, S::Stopped)
                    })
                    .map(|((_, c), _)| c.alias.clone())
                    .collect();
                assert_eq!(stopped.len(), victims.len());
                Ok(stopped)
            }
            Err(AcquireError::NoRoom { holders, .. }) => {
                Err(holders.into_iter().map(|(m, _, why)| (m, why)).collect())
            }
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn eviction_table() {
        use S::*;
        // Fits: nothing stops.
        assert_eq!(
            room(&[(40, Idle { age: 1 }), (50, Stopped)], 100),
            Ok(vec![])
        );
        // The least recently used idle model goes first, and only as many as needed.
        assert_eq!(
            room(
                &[(40, Idle { age: 1 }), (40, Idle { age: 9 }), (40, Stopped)],
                100
            ),
            Ok(vec!["m1".to_owned()])
        );
        assert_eq!(
            room(
                &[(40, Idle { age: 1 }), (40, Idle { age: 9 }), (90, Stopped)],
                100
            ),
            Ok(vec!["m0".to_owned(), "m1".to_owned()])
        );
        // Busy, pinned, loading and just-started models are never stopped; when they
        // hold too much, nothing is stopped and the error names them.
        assert_eq!(
            room(
                &[
                    (30, Busy),
                    (30, Pinned),
                    (20, Loading),
                    (10, Fresh),
                    (5, Idle { age: 1 }),
                    (20, Stopped)
                ],
                100
            ),
            Err(vec![
                ("m0".to_owned(), "busy"),
                ("m1".to_owned(), "pinned"),
                ("m2".to_owned(), "loading"),
                ("m3".to_owned(), "just started"),
            ])
        );
        // The same models, but the idle one's room is enough.
        assert_eq!(
            room(
                &[
                    (30, Busy),
                    (30, Pinned),
                    (20, Loading),
                    (10, Fresh),
                    (5, Idle { age: 1 }),
                    (10, Stopped)
                ],
                100
            ),
            Ok(vec!["m4".to_owned()])
        );
    }
}
