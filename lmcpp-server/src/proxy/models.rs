//! The models' lifecycle behind the proxy: one start however many requests wait for it,
//! requests counted in flight, stops after the keep-alive, eviction to fit the memory
//! budget, the watch on each running server, and what each server said about its model.
//!
//! All decisions are made under one lock over every model's state, so a budget check and
//! the evictions it implies are one step; nothing is awaited while it is held. Starting
//! and stopping servers happen in tasks, outside it. Each transition is announced as a
//! [`ModelEvent`](super::ModelEvent) where it happens: under the lock when the lock
//! decides it, else by the task that saw it (a server stopped once it has exited).

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant, SystemTime},
};

use futures_util::future::BoxFuture;
use http::HeaderValue;
use tokio::sync::{Notify, oneshot, watch};

use super::kv;
use super::{
    entry::{self, ServerEntry},
    events::{Emitter, ModelEvent, ModelEventKind, StopReason},
    spec::{self, Launch, LaunchError, ModelSpec},
    view::{ModelState, ModelView},
};
use crate::{
    client::Client, endpoint::Endpoint, pool::Pool, server::Server, supervised::EXIT_TAIL_LINES,
};

/// How long the proxy waits for one model server to stop before it gives up waiting
/// (the server's own stop is bounded by its grace period plus 5 s).
const STOP_WAIT: Duration = Duration::from_secs(60);

/// How long a server that just became ready is kept from eviction while the requests
/// that waited for it have not used it yet.
const FRESH_GRACE: Duration = Duration::from_secs(5);

/// How soon the keep-alive task looks again at a busy model whose keep-alive is shorter.
const BUSY_RECHECK: Duration = Duration::from_millis(100);

/// How long the requests waiting for a start wait for the new server's own `/v1/models`
/// entry before they are released; the question goes on in the background after that.
/// From llama-server it takes 0.4-0.55 ms (debug build, both tested versions), the
/// connection included, which the first request then reuses; so this bound only matters
/// for a server that does not answer.
const ENTRY_WAIT: Duration = Duration::from_millis(100);

/// A running model server as the lifecycle sees it; [`Server`] is the real one.
pub(crate) trait Instance: Send + Sync + 'static {
    fn endpoint(&self) -> &Endpoint;
    fn api_key(&self) -> Option<&str>;
    fn pid(&self) -> Option<u32>;
    fn server_id(&self) -> Option<&str>;
    /// Resolves when the process exits, with its status as text and as one number
    /// ([`spec::exit_code`]).
    fn exited(&self) -> BoxFuture<'_, (String, Option<i32>)>;
    fn log_tail(&self) -> Vec<String>;
    fn stop(self: Box<Self>) -> BoxFuture<'static, ()>;
    /// How many connections the server can take at once, if it has a fixed number of
    /// HTTP threads ([`Server::max_connections`]); the model's pool holds no more.
    fn max_connections(&self) -> Option<usize> {
        None
    }
    /// Its command line, the binary first, as the router lists it.
    fn argv(&self) -> Vec<String> {
        Vec::new()
    }
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

    fn exited(&self) -> BoxFuture<'_, (String, Option<i32>)> {
        Box::pin(async move {
            let status = Server::exited(self).await;
            (status.to_string(), spec::exit_code(&status))
        })
    }

    fn log_tail(&self) -> Vec<String> {
        Server::log_tail(self, EXIT_TAIL_LINES).unwrap_or_default()
    }

    fn max_connections(&self) -> Option<usize> {
        Server::max_connections(self)
    }

    fn argv(&self) -> Vec<String> {
        let record = Server::record(self);
        std::iter::once(record.exe.display().to_string())
            .chain(record.args.iter().cloned())
            .collect()
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
    /// Readies what the start needs and returns the model's memory estimate when it is
    /// known now ([`Launch::prepare`]).
    fn prepare(&self) -> BoxFuture<'static, Result<Option<u64>, LaunchError>> {
        Box::pin(async { Ok(None) })
    }

    fn start(&self) -> BoxFuture<'static, Result<Box<dyn Instance>, LaunchError>>;
}

/// A [`Launch`] as a [`Start`].
struct Launcher(Arc<dyn Launch>);

impl Start for Launcher {
    fn prepare(&self) -> BoxFuture<'static, Result<Option<u64>, LaunchError>> {
        self.0.prepare()
    }

    fn start(&self) -> BoxFuture<'static, Result<Box<dyn Instance>, LaunchError>> {
        let fut = self.0.launch();
        Box::pin(async move { Ok(Box::new(fut.await?) as Box<dyn Instance>) })
    }
}

/// A model's configuration: how it starts (`starter`, `slot_cache`, identified by
/// `fingerprint` or `launch`), fixed for its slot, and how the proxy treats it, which a
/// reload may change in place (the slot's `Arc<Conf>` is replaced).
pub(crate) struct Conf {
    pub(crate) alias: String,
    estimate: u64,
    keep_alive: Option<Duration>,
    pinned: bool,
    llama_version: Option<String>,
    max_queue: Option<usize>,
    slot_cache: Option<PathBuf>,
    starter: Arc<dyn Start>,
    fingerprint: Option<String>,
    /// The spec's launch, compared by identity when there is no fingerprint.
    launch: Option<Arc<dyn Launch>>,
}

impl Conf {
    pub(crate) fn from_spec(spec: ModelSpec) -> Self {
        let launch = Arc::clone(&spec.launch);
        let mut conf = Self::new(spec, Arc::new(Launcher(Arc::clone(&launch))));
        conf.launch = Some(launch);
        conf
    }

    pub(crate) fn new(spec: ModelSpec, starter: Arc<dyn Start>) -> Self {
        Self {
            alias: spec.alias,
            estimate: spec.estimate_bytes,
            keep_alive: spec.keep_alive,
            pinned: spec.pinned,
            llama_version: spec.llama_version,
            max_queue: spec.max_queue,
            slot_cache: spec.slot_cache,
            starter,
            fingerprint: spec.fingerprint,
            launch: None,
        }
    }

    /// Whether `other` starts the same server: equal fingerprints, or without them the
    /// same launch; and the same KV cache directory.
    fn same_start(&self, other: &Self) -> bool {
        let same = match (
            &self.fingerprint,
            &other.fingerprint,
            &self.launch,
            &other.launch,
        ) {
            (Some(a), Some(b), _, _) => a == b,
            (None, None, Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        same && self.slot_cache == other.slot_cache
    }

    /// Whether `other` treats the model the same (the settings a reload changes in
    /// place).
    fn same_settings(&self, other: &Self) -> bool {
        (self.estimate, self.keep_alive, self.pinned, self.max_queue)
            == (
                other.estimate,
                other.keep_alive,
                other.pinned,
                other.max_queue,
            )
            && self.llama_version == other.llama_version
    }
}

/// A server whose start was abandoned, to be stopped, and why.
type Abandoned = (Box<dyn Instance>, StopReason);

/// The outcome of one start, as its waiters see it.
type Outcome = Option<Result<(), AcquireError>>;

enum Phase {
    Stopped,
    /// [`Start::prepare`] runs; the model does not count against the budget yet.
    Preparing(watch::Receiver<Outcome>),
    /// Its server starts; it counts against the budget.
    Loading(watch::Receiver<Outcome>),
    Ready(Arc<Running>),
    /// Its server is being stopped, and counts against the budget until it has exited.
    /// `promised`: a start waits for exactly this memory, so no other start may count
    /// on it.
    Stopping {
        done: watch::Receiver<bool>,
        promised: bool,
    },
    Failed(Arc<LaunchError>),
}

struct Slot {
    /// Its configuration (replaced in place by a reload that changes only settings).
    conf: Arc<Conf>,
    /// Set when a reload removed or replaced it (why, as its server's stop will say): it
    /// takes no new request, its requests waiting move to its successor (or are told it
    /// was removed), and its server stops once idle. A retired slot stays in the table,
    /// so indices never move, and counts against the budget while its server runs.
    retired: Option<StopReason>,
    phase: Phase,
    /// The memory estimate: the configured one, replaced by what the last
    /// [`Start::prepare`] returned.
    estimate: u64,
    in_flight: usize,
    last_used: Option<Instant>,
    /// Bumped by every start, so a late result of an abandoned start is recognised.
    generation: u64,
    /// A server that just became ready is kept from eviction until a request has used
    /// it (or this passes), so the requests that waited for it get it.
    fresh_until: Option<Instant>,
    /// What the last server that answered said about its model, and the generation of
    /// that server; kept after it stops (a model's metadata does not change).
    entry: Option<(u64, Arc<ServerEntry>)>,
    /// The command line of its last server (empty before the first start).
    argv: Arc<[String]>,
    /// The requests waiting for it (its start, room for it, or their turn), by arrival
    /// number, with when each arrived; the first is the oldest.
    waiting: BTreeMap<u64, Instant>,
    /// Set while another model waits for this one's memory and has been passed over
    /// for the bound: requests that arrived after it wait until this model has been
    /// stopped and started again, so it drains.
    drain_after: Option<Instant>,
    /// While its start waits for room: what holds the memory, as a request that gives
    /// up waiting is told.
    blocked: Option<AcquireError>,
    counters: Counters,
    /// Set for the slot of a replaced model until its first start, which removes what
    /// the old configuration left in the KV cache directory (another model's cache, or
    /// one of other arguments) instead of restoring it.
    stale_kv_cache: bool,
}

impl Slot {
    fn new(conf: Conf) -> Self {
        Self {
            estimate: conf.estimate,
            conf: Arc::new(conf),
            retired: None,
            phase: Phase::Stopped,
            in_flight: 0,
            last_used: None,
            generation: 0,
            fresh_until: None,
            entry: None,
            argv: Arc::new([]),
            waiting: BTreeMap::new(),
            drain_after: None,
            blocked: None,
            counters: Counters::default(),
            stale_kv_cache: false,
        }
    }

    /// Whether a request waiting for this model would be let through once it is ready:
    /// any, unless it drains, then one that came before it began to.
    fn takes_a_waiter(&self) -> bool {
        let oldest = self.waiting.values().next();
        match self.drain_after {
            None => oldest.is_some(),
            Some(t) => oldest.is_some_and(|a| *a <= t),
        }
    }
}

/// What the proxy counts per model for its metrics.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counters {
    /// Requests let through to its server.
    pub(crate) requests: u64,
    /// Requests that had to wait, and their total wait.
    pub(crate) waits: u64,
    pub(crate) wait_total: Duration,
    /// Starts that became ready, and the total time from start to ready.
    pub(crate) loads: u64,
    pub(crate) load_total: Duration,
    /// Starts that failed.
    pub(crate) load_failures: u64,
    /// Times it was stopped to make room for another model.
    pub(crate) evictions: u64,
    /// Requests refused because its queue was full.
    pub(crate) rejected: u64,
}

/// A ready model server, shared by the requests using it.
pub(crate) struct Running {
    pub(crate) pool: Pool,
    /// `Authorization` for the model server's own key.
    pub(crate) auth: Option<HeaderValue>,
    pid: Option<u32>,
    server_id: Option<String>,
    generation: u64,
    /// Asks the task that owns the server to stop it (and why); it answers when it has.
    stop: Mutex<Option<StopSender>>,
    /// A client of the server for the proxy's own calls (its KV cache).
    control: Client,
}

/// How a stop is asked of the task that owns a server: why, and where to answer.
type StopSender = oneshot::Sender<(StopReason, oneshot::Sender<()>)>;

impl Running {
    /// Asks for the stop without waiting for it.
    fn request_stop(&self, reason: StopReason) -> Option<oneshot::Receiver<()>> {
        let tx = lock(&self.stop).take()?;
        let (ack_tx, ack_rx) = oneshot::channel();
        tx.send((reason, ack_tx)).ok()?;
        Some(ack_rx)
    }

    /// Stops the server and waits (bounded) until it has exited.
    async fn stop(&self, reason: StopReason) {
        if let Some(ack) = self.request_stop(reason) {
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
    /// A reload removed the model while the request waited for it.
    Removed,
    /// Its queue holds `max` requests already.
    QueueFull {
        max: usize,
        /// A guess at when to try again: its last load time, at least a second.
        retry_after: Duration,
    },
}

struct Table {
    /// Every slot ever configured, retired ones included; indices never move.
    slots: Vec<Slot>,
    /// The slots of the models configured now, in configuration order.
    order: Vec<usize>,
    /// Bytes the running and loading models' estimates may add up to.
    budget: u64,
    shutting_down: bool,
    /// The arrival number of the next waiting request.
    next_arrival: u64,
    /// Starts waiting for room: while there are any, a request that leaves a model
    /// idle says so on `tick`.
    room_waiters: usize,
}

/// Every model's configuration and state.
pub(crate) struct Models {
    table: Mutex<Table>,
    /// Wakes the keep-alive task when a model becomes ready or dies (a request ending
    /// only moves an expiry later, which the task finds when it looks).
    changed: Notify,
    /// Set when the proxy stops, so that waiting requests get their 503 at once.
    stopping: watch::Sender<bool>,
    /// Where every transition is announced.
    events: Emitter,
    /// How long a request may wait for memory held by busy models while they keep
    /// taking newer requests; then they take no newer ones until it has had its turn.
    pass_over: Duration,
    /// Bumped when a model is ready, stops, fails, goes idle while a start waits for
    /// room, or a waiting request leaves: what waiting starts and requests look again on.
    tick: watch::Sender<u64>,
    /// Bumped by every reload: waiting requests look again whether their model was
    /// removed or replaced.
    reloads: watch::Sender<u64>,
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
        slot.last_used = Some(Instant::now());
        let retired_idle = slot.in_flight == 0 && slot.retired.is_some();
        if slot.in_flight == 0 && table.room_waiters > 0 {
            self.models.bump();
        }
        if retired_idle {
            // Its last request is done: the keep-alive task stops its server.
            self.models.changed.notify_one();
        }
        // No wake-up of the keep-alive task: it already plans to look at this model no
        // later than a keep-alive from now (see `Models::expire`), and a wake-up per
        // request costs throughput.
    }
}

/// A request waiting for its model, counted in the model's queue until dropped (also
/// when its client goes away, which drops the request).
struct Queued {
    models: Arc<Models>,
    index: usize,
    arrival: u64,
    since: Instant,
}

impl Drop for Queued {
    fn drop(&mut self) {
        let mut table = lock(&self.models.table);
        table.slots[self.index].waiting.remove(&self.arrival);
        if table.room_waiters > 0 {
            self.models.bump();
        }
    }
}

/// What one look for room for a start found.
enum Room {
    /// Room is made: the stops to wait for.
    Free(Vec<watch::Receiver<bool>>),
    /// The memory is held by models that will free it: wait (and why, for requests
    /// that give up).
    Wait(AcquireError),
    /// The start ends here, without a server (the event is sent).
    End(AcquireError),
}

/// What a waiting request waits for.
enum Wait {
    /// Its model to drain (another model's turn), then to be started again.
    Turn(watch::Receiver<u64>),
    /// A start (its outcome).
    Start(watch::Receiver<Outcome>),
    /// The model's previous server to exit.
    Stop(watch::Receiver<bool>),
}

impl Models {
    pub(crate) fn new(confs: Vec<Conf>, budget: u64, pass_over: Duration) -> Self {
        let slots: Vec<Slot> = confs.into_iter().map(Slot::new).collect();
        Self {
            table: Mutex::new(Table {
                order: (0..slots.len()).collect(),
                slots,
                budget,
                shutting_down: false,
                next_arrival: 0,
                room_waiters: 0,
            }),
            changed: Notify::new(),
            stopping: watch::channel(false).0,
            events: Emitter::new(),
            pass_over,
            tick: watch::channel(0).0,
            reloads: watch::channel(0).0,
        }
    }

    /// Takes `confs` as the models from now on (`budget` their memory budget), matched to
    /// the running ones by alias: a model whose start is unchanged keeps its slot (and
    /// server) with the new settings; a changed one gets a new slot and the old one is
    /// retired (its server stops once idle), as is a model no longer configured. The
    /// caller has checked the aliases and the budget.
    pub(crate) fn reload(self: &Arc<Self>, confs: Vec<Conf>, budget: u64) -> ReloadReport {
        let mut table = lock(&self.table);
        table.budget = budget;
        let before = std::mem::take(&mut table.order);
        let mut report = ReloadReport::default();
        let mut order = Vec::with_capacity(confs.len());
        // The slots before the reload that a model of the new configuration took over.
        let mut matched = Vec::new();
        for conf in confs {
            let alias = conf.alias.clone();
            let old = before
                .iter()
                .copied()
                .find(|&i| table.slots[i].conf.alias == alias);
            matched.extend(old);
            let kind = match old {
                Some(i) if table.slots[i].conf.same_start(&conf) => {
                    let slot = &mut table.slots[i];
                    let same = slot.conf.same_settings(&conf);
                    if matches!(slot.phase, Phase::Stopped | Phase::Failed(_)) {
                        slot.estimate = conf.estimate;
                    }
                    slot.conf = Arc::new(conf);
                    order.push(i);
                    if same {
                        report.unchanged.push(alias);
                        continue;
                    }
                    report.updated.push(alias.clone());
                    ModelEventKind::Updated
                }
                Some(i) => {
                    let counters = table.slots[i].counters;
                    self.retire(&mut table, i, StopReason::Replaced);
                    let mut slot = Slot::new(conf);
                    // One model to its clients: its counters go on, and a KV cache the
                    // old configuration saved is not restored into the new one.
                    slot.counters = counters;
                    slot.stale_kv_cache = true;
                    table.slots.push(slot);
                    order.push(table.slots.len() - 1);
                    report.replaced.push(alias.clone());
                    ModelEventKind::Replaced
                }
                None => {
                    table.slots.push(Slot::new(conf));
                    order.push(table.slots.len() - 1);
                    report.added.push(alias.clone());
                    ModelEventKind::Added
                }
            };
            self.events.emit(&alias, None, None, kind);
        }
        for i in before.into_iter().filter(|i| !matched.contains(i)) {
            let alias = table.slots[i].conf.alias.clone();
            self.retire(&mut table, i, StopReason::Removed);
            self.events
                .emit(&alias, None, None, ModelEventKind::Removed);
            report.removed.push(alias);
        }
        table.order = order;
        self.events.emit("*", None, None, ModelEventKind::Reloaded);
        drop(table);
        self.reloads.send_modify(|r| *r = r.wrapping_add(1));
        self.bump();
        self.changed.notify_one();
        report
    }

    /// Marks slot `index` retired for `reason`: a start in progress is abandoned when it
    /// ends (its server stopped), and an idle server stops now; a busy one stops when
    /// its last request ends (the keep-alive task sees to it).
    fn retire(self: &Arc<Self>, table: &mut Table, index: usize, reason: StopReason) {
        let slot = &mut table.slots[index];
        slot.retired = Some(reason.clone());
        slot.drain_after = None;
        // A removed model's saved KV cache (kept while it was stopped) has no next start
        // to restore it into.
        if let (StopReason::Removed, Phase::Stopped | Phase::Failed(_), Some(dir)) =
            (&reason, &slot.phase, slot.conf.slot_cache.clone())
        {
            tokio::spawn(async move { kv::clear(&dir).await });
        }
        if matches!(slot.phase, Phase::Ready(_)) && slot.in_flight == 0 {
            self.begin_stop(table, index, false, reason);
        }
    }

    /// Wakes whatever waits on `tick`.
    fn bump(&self) {
        self.tick.send_modify(|t| *t = t.wrapping_add(1));
    }

    /// Turns true when the proxy stops.
    pub(crate) fn stopping(&self) -> watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// A receiver of every event from now on.
    pub(crate) fn events(&self) -> tokio::sync::broadcast::Receiver<ModelEvent> {
        self.events.subscribe()
    }

    /// Announces an event about model `index` with no server concerned.
    fn emit(&self, table: &Table, index: usize, kind: ModelEventKind) {
        self.events
            .emit(&table.slots[index].conf.alias, None, None, kind);
    }

    /// The configuration of slot `index`.
    fn conf(&self, index: usize) -> Arc<Conf> {
        Arc::clone(&lock(&self.table).slots[index].conf)
    }

    /// The aliases of the models configured now, in configuration order.
    pub(crate) fn aliases(&self) -> Vec<String> {
        let table = lock(&self.table);
        table
            .order
            .iter()
            .map(|&i| table.slots[i].conf.alias.clone())
            .collect()
    }

    /// The slot of `alias` among the models configured now.
    pub(crate) fn find(&self, alias: &str) -> Option<usize> {
        find_in(&lock(&self.table), alias)
    }

    /// The slot and alias of the only model configured, when there is one.
    pub(crate) fn only(&self) -> Option<(usize, String)> {
        let table = lock(&self.table);
        match table.order[..] {
            [only] => Some((only, table.slots[only].conf.alias.clone())),
            _ => None,
        }
    }

    /// A ready server for model `index`, started if needed (one start for all who ask
    /// meanwhile), waiting for it at most `load_timeout`. While it waits, the request is
    /// in the model's queue (refused when that holds `max_queue` already).
    pub(crate) async fn acquire(
        self: &Arc<Self>,
        index: usize,
        load_timeout: Duration,
    ) -> Result<InFlight, AcquireError> {
        let arrived = Instant::now();
        let deadline = tokio::time::Instant::now() + load_timeout;
        let mut stopping = self.stopping.subscribe();
        let mut reloads = self.reloads.subscribe();
        let mut index = index;
        let mut queued: Option<Queued> = None;
        loop {
            let wait = {
                let mut table = lock(&self.table);
                if table.shutting_down {
                    return Err(AcquireError::ShuttingDown);
                }
                if table.slots[index].retired.is_some() {
                    // A reload removed or replaced the model: the request goes to what
                    // now has its alias (into that one's queue), or is told it is gone.
                    let alias = table.slots[index].conf.alias.clone();
                    let Some(now) = find_in(&table, &alias) else {
                        return Err(AcquireError::Removed);
                    };
                    index = now;
                    drop(table);
                    // Leaves the old queue (its drop takes the lock).
                    queued = None;
                    continue;
                }
                let slot = &mut table.slots[index];
                match &slot.phase {
                    // A model that drains takes only the requests that came before it
                    // began to.
                    Phase::Ready(running) if slot.drain_after.is_none_or(|t| arrived <= t) => {
                        let running = Arc::clone(running);
                        slot.in_flight += 1;
                        slot.last_used = Some(Instant::now());
                        slot.fresh_until = None;
                        slot.counters.requests += 1;
                        if let Some(q) = &queued {
                            slot.counters.waits += 1;
                            slot.counters.wait_total += q.since.elapsed();
                        }
                        return Ok(InFlight {
                            models: Arc::clone(self),
                            index,
                            running,
                        });
                    }
                    _ if queued.is_none() => {
                        queued = Some(self.enqueue(&mut table, index, arrived)?);
                        continue;
                    }
                    Phase::Ready(_) => Wait::Turn(self.tick.subscribe()),
                    Phase::Preparing(outcome) | Phase::Loading(outcome) => {
                        Wait::Start(outcome.clone())
                    }
                    Phase::Stopping { done, .. } => Wait::Stop(done.clone()),
                    Phase::Stopped | Phase::Failed(_) => {
                        Wait::Start(self.begin_start(&mut table, index))
                    }
                }
            };
            let waited = async {
                match wait {
                    Wait::Start(mut outcome) => match outcome.wait_for(Option::is_some).await {
                        Ok(done) => match &*done {
                            Some(Err(e)) => Err(e.clone()),
                            _ => Ok(()),
                        },
                        // The task starting it is gone: only a runtime that is shutting
                        // down drops it.
                        Err(_) => Err(AcquireError::ShuttingDown),
                    },
                    Wait::Stop(mut done) => {
                        let _ = done.wait_for(|d| *d).await;
                        Ok(())
                    }
                    Wait::Turn(mut tick) => {
                        let _ = tick.changed().await;
                        Ok(())
                    }
                }
            };
            tokio::select! {
                waited = tokio::time::timeout_at(deadline, waited) => match waited {
                    Err(_) => return Err(self.timed_out(index, load_timeout)),
                    // A start a reload abandoned: the loop moves the request on.
                    Ok(Err(_)) if lock(&self.table).slots[index].retired.is_some() => {}
                    Ok(Err(e)) => return Err(e),
                    Ok(Ok(())) => {}
                },
                _ = stopping.wait_for(|s| *s) => return Err(AcquireError::ShuttingDown),
                _ = reloads.changed() => {}
            }
        }
    }

    /// Puts a request into model `index`'s queue, unless that is full.
    fn enqueue(
        self: &Arc<Self>,
        table: &mut Table,
        index: usize,
        since: Instant,
    ) -> Result<Queued, AcquireError> {
        let arrival = table.next_arrival;
        table.next_arrival += 1;
        let slot = &mut table.slots[index];
        if let Some(max) = slot.conf.max_queue
            && slot.waiting.len() >= max
        {
            slot.counters.rejected += 1;
            let last_load = slot
                .counters
                .load_total
                .checked_div(u32::try_from(slot.counters.loads).unwrap_or(u32::MAX))
                .unwrap_or_default();
            return Err(AcquireError::QueueFull {
                max,
                retry_after: last_load.max(Duration::from_secs(1)),
            });
        }
        slot.waiting.insert(arrival, since);
        Ok(Queued {
            models: Arc::clone(self),
            index,
            arrival,
            since,
        })
    }

    /// Why a request that waited `load_timeout` for model `index` got nothing: the
    /// models that hold the memory it waits for, or that it is still loading.
    fn timed_out(&self, index: usize, load_timeout: Duration) -> AcquireError {
        let table = lock(&self.table);
        table.slots[index]
            .blocked
            .clone()
            .unwrap_or(AcquireError::LoadTimeout(load_timeout))
    }

    /// Marks model `index` preparing and starts it in a task.
    fn begin_start(self: &Arc<Self>, table: &mut Table, index: usize) -> watch::Receiver<Outcome> {
        let (tx, rx) = watch::channel(None);
        let slot = &mut table.slots[index];
        slot.generation += 1;
        slot.phase = Phase::Preparing(rx.clone());
        let generation = slot.generation;
        self.emit(table, index, ModelEventKind::Starting);
        tokio::spawn(Arc::clone(self).run_start(index, generation, tx));
        rx
    }

    /// The memory model `index` needs, made free: idle unpinned ready models (least
    /// recently used first) and models already stopping that no other start waits for,
    /// as few as needed. Returns the stops to wait for, or why it cannot fit.
    fn make_room(
        self: &Arc<Self>,
        table: &mut Table,
        index: usize,
    ) -> Result<Vec<watch::Receiver<bool>>, AcquireError> {
        let need = table.slots[index].estimate;
        let mut used: u64 = 0;
        // (rank, last use, index): stopping ones first, they go anyway.
        let mut freeable = Vec::new();
        let mut holders = Vec::new();
        for (i, slot) in table.slots.iter().enumerate() {
            let conf = &slot.conf;
            let why = match &slot.phase {
                Phase::Stopped | Phase::Failed(_) | Phase::Preparing(_) => continue,
                _ if i == index => continue,
                Phase::Loading(_) => "loading",
                Phase::Stopping { promised: true, .. } => "stopping for another model",
                Phase::Stopping { .. } => {
                    freeable.push((0, None, i));
                    "stopping"
                }
                Phase::Ready(_) if slot.in_flight > 0 => "busy",
                // A model a reload retired goes when idle, whatever waits for it.
                Phase::Ready(_) if slot.retired.is_some() => {
                    freeable.push((0, slot.last_used, i));
                    "idle"
                }
                // Requests released by its start (or arriving meanwhile) that have not
                // reached it yet: stopping it now would serve none of them.
                Phase::Ready(_) if slot.takes_a_waiter() => "requests waiting",
                // A draining model's newer requests wait for it to stop: it is not kept
                // for them.
                Phase::Ready(_)
                    if slot.drain_after.is_none()
                        && slot.fresh_until.is_some_and(|t| t > Instant::now()) =>
                {
                    "just started"
                }
                Phase::Ready(_) if conf.pinned => "pinned",
                Phase::Ready(_) => {
                    freeable.push((1, slot.last_used, i));
                    "idle"
                }
            };
            used = used.saturating_add(slot.estimate);
            holders.push((conf.alias.clone(), slot.estimate, why));
        }
        let budget = table.budget;
        let fits = |used: u64| used.saturating_add(need) <= budget;
        freeable.sort();
        let mut chosen = Vec::new();
        for (_, _, i) in freeable {
            if fits(used) {
                break;
            }
            used -= table.slots[i].estimate;
            chosen.push(i);
        }
        if !fits(used) {
            holders.retain(|(_, _, why)| !matches!(*why, "idle" | "stopping"));
            return Err(AcquireError::NoRoom {
                estimate: need,
                budget,
                holders,
            });
        }
        let mut waits = Vec::new();
        let for_model = table.slots[index].conf.alias.clone();
        for i in chosen {
            if let Phase::Ready(_) = table.slots[i].phase {
                tracing::debug!(model = %table.slots[i].conf.alias, %for_model, "stopping an idle model to make room");
                table.slots[i].counters.evictions += 1;
            }
            let reason = match &table.slots[i].retired {
                Some(retired) => retired.clone(),
                None => StopReason::Evicted {
                    for_model: for_model.clone(),
                },
            };
            waits.extend(self.begin_stop(table, i, true, reason));
        }
        Ok(waits)
    }

    /// Stops the server of a ready model in a task, for `reason` (announced once it has
    /// exited); the model counts against the budget until then. A model already stopping
    /// is marked `promised` if asked (and keeps its first reason). Returns what says when
    /// it has exited.
    fn begin_stop(
        self: &Arc<Self>,
        table: &mut Table,
        index: usize,
        promise: bool,
        reason: StopReason,
    ) -> Option<watch::Receiver<bool>> {
        let slot = &mut table.slots[index];
        match &mut slot.phase {
            Phase::Stopping { done, promised } => {
                *promised |= promise;
                Some(done.clone())
            }
            Phase::Ready(_) => {
                let (tx, done) = watch::channel(false);
                let stopping = Phase::Stopping {
                    done: done.clone(),
                    promised: promise,
                };
                let Phase::Ready(running) = std::mem::replace(&mut slot.phase, stopping) else {
                    return None;
                };
                // Drained: requests that waited for their turn start it again.
                slot.drain_after = None;
                self.bump();
                let models = Arc::clone(self);
                let conf = Arc::clone(&slot.conf);
                let keep = match reason {
                    StopReason::KeepAlive { .. }
                    | StopReason::Evicted { .. }
                    | StopReason::Unloaded => conf.slot_cache.clone(),
                    _ => None,
                };
                tokio::spawn(async move {
                    // Idle: nothing changes its slots while they are saved.
                    if let Some(dir) = keep {
                        kv::save(&running.control, &dir, &conf.alias).await;
                    }
                    running.stop(reason).await;
                    {
                        let mut table = lock(&models.table);
                        let slot = &mut table.slots[index];
                        if matches!(slot.phase, Phase::Stopping { .. }) {
                            slot.phase = Phase::Stopped;
                        }
                    }
                    let _ = tx.send(true);
                    models.changed.notify_one();
                    models.bump();
                });
                Some(done)
            }
            _ => None,
        }
    }

    /// Makes room for model `index` once prepared, waiting while the memory is held by
    /// models that will free it (busy, loading, just started, being stopped) and
    /// requests still wait for this one; past the pass-over bound those models drain.
    /// Returns the stops to wait for, or `None` when the start ended here (its outcome
    /// sent).
    async fn room_for(
        self: &Arc<Self>,
        index: usize,
        generation: u64,
        prepared: Result<Option<u64>, LaunchError>,
        tx: &watch::Sender<Outcome>,
    ) -> Option<Vec<watch::Receiver<bool>>> {
        let mut prepared = Some(prepared);
        let mut tick = self.tick.subscribe();
        let mut stopping = self.stopping.subscribe();
        let mut counted = false;
        let result = loop {
            let look_again = {
                let mut table = lock(&self.table);
                match self.try_room(&mut table, index, generation, prepared.take()) {
                    Room::Free(waits) => {
                        table.slots[index].phase = Phase::Loading(tx.subscribe());
                        break Some(waits);
                    }
                    Room::Wait(blocked) => {
                        if !counted {
                            table.room_waiters += 1;
                            counted = true;
                        }
                        table.slots[index].blocked = Some(blocked);
                        self.pass_over(&mut table, index)
                    }
                    Room::End(e) => {
                        drop(table);
                        let _ = tx.send(Some(Err(e)));
                        break None;
                    }
                }
            };
            // Woken by anything that may free memory; and at the pass-over bound or
            // when a just-started model stops being kept.
            let sleep = async {
                match look_again {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tick.changed() => {}
                () = sleep => {}
                _ = stopping.wait_for(|s| *s) => {}
            }
        };
        if counted {
            let mut table = lock(&self.table);
            table.room_waiters -= 1;
            table.slots[index].blocked = None;
        }
        result
    }

    /// One look for room for model `index` (its preparation's result on the first).
    fn try_room(
        self: &Arc<Self>,
        table: &mut Table,
        index: usize,
        generation: u64,
        prepared: Option<Result<Option<u64>, LaunchError>>,
    ) -> Room {
        if let Some(reason) = abandoned(table, index, generation) {
            // The proxy's stop or a reload abandoned the start (no other start can
            // begin meanwhile): it ends here, with no server.
            self.emit(table, index, ModelEventKind::Stopped { reason });
            return Room::End(AcquireError::ShuttingDown);
        }
        let room = match prepared {
            Some(Err(e)) => Err(AcquireError::Start(Arc::new(e))),
            Some(Ok(estimate)) => {
                let slot = &mut table.slots[index];
                slot.estimate = estimate.unwrap_or(slot.conf.estimate);
                self.make_room(table, index)
            }
            None => self.make_room(table, index),
        };
        match room {
            Ok(waits) => Room::Free(waits),
            Err(e @ AcquireError::NoRoom { .. })
                if self.may_fit_later(table, index) && !table.slots[index].waiting.is_empty() =>
            {
                Room::Wait(e)
            }
            Err(e) => {
                let slot = &mut table.slots[index];
                slot.phase = match &e {
                    AcquireError::Start(e) => Phase::Failed(Arc::clone(e)),
                    _ => Phase::Stopped,
                };
                if matches!(e, AcquireError::Start(_)) {
                    slot.counters.load_failures += 1;
                }
                self.emit(table, index, start_refused(&e));
                Room::End(e)
            }
        }
    }

    /// Whether model `index` could fit once every model that is not pinned has stopped.
    fn may_fit_later(&self, table: &Table, index: usize) -> bool {
        let pinned: u64 = table
            .slots
            .iter()
            .enumerate()
            .filter(|(i, slot)| {
                *i != index
                    && slot.conf.pinned
                    && slot.retired.is_none()
                    && matches!(slot.phase, Phase::Ready(_) | Phase::Loading(_))
            })
            .map(|(_, slot)| slot.estimate)
            .fold(0, u64::saturating_add);
        pinned.saturating_add(table.slots[index].estimate) <= table.budget
    }

    /// The pass-over bound for a start of model `index` that waits for room: once its
    /// oldest request has waited that long, every other model that holds memory and can
    /// be stopped drains (takes no request that came later). Returns when to look again
    /// without a wake-up: at the bound, or when a just-started model stops being kept.
    fn pass_over(&self, table: &mut Table, index: usize) -> Option<Instant> {
        let now = Instant::now();
        let oldest = table.slots[index].waiting.values().next().copied()?;
        let mark = oldest + self.pass_over;
        let mut next = (mark > now).then_some(mark);
        let for_model = table.slots[index].conf.alias.clone();
        for (i, slot) in table.slots.iter_mut().enumerate() {
            if i == index || slot.conf.pinned || slot.retired.is_some() {
                continue;
            }
            if !matches!(slot.phase, Phase::Ready(_) | Phase::Loading(_)) {
                continue;
            }
            if mark <= now && slot.drain_after.is_none_or(|t| t > mark) {
                tracing::debug!(model = %slot.conf.alias, %for_model, "draining: another model was passed over for the bound");
                slot.drain_after = Some(mark);
            }
            if let Some(fresh) = slot.fresh_until.filter(|t| *t > now) {
                next = Some(next.map_or(fresh, |n| n.min(fresh)));
            }
        }
        next
    }

    /// Prepares the model, makes room for it, starts its server, and publishes the
    /// outcome to the waiters.
    async fn run_start(self: Arc<Self>, index: usize, generation: u64, tx: watch::Sender<Outcome>) {
        let conf = self.conf(index);
        let prepared = conf.starter.prepare().await;
        let Some(waits) = self.room_for(index, generation, prepared, &tx).await else {
            return;
        };
        // Their memory must be free before the new server loads.
        for mut done in waits {
            let _ = tokio::time::timeout(STOP_WAIT, done.wait_for(|d| *d)).await;
        }
        tracing::debug!(model = %conf.alias, "starting model server");
        if let Some(dir) = &conf.slot_cache {
            // llama-server refuses a `--slot-save-path` that is not a directory yet.
            kv::ensure_dir(dir, &conf.alias).await;
            if std::mem::take(&mut lock(&self.table).slots[index].stale_kv_cache) {
                kv::clear(dir).await;
            }
        }
        let launched = Instant::now();
        let result = conf.starter.start().await;
        // Before it is published, so that no request reaches it first.
        if let (Ok(instance), Some(dir)) = (&result, &conf.slot_cache) {
            kv::restore(&control_client(instance.as_ref()), dir, &conf.alias).await;
        }
        let outcome = match self.publish(index, generation, result, launched.elapsed()) {
            Ok(Ok(running)) => {
                self.describe(index, running).await;
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err((abandoned, reason)) => {
                let (id, pid) = (abandoned.server_id().map(str::to_owned), abandoned.pid());
                abandoned.stop().await;
                let kind = ModelEventKind::Stopped { reason };
                self.events.emit(&conf.alias, id.as_deref(), pid, kind);
                Err(AcquireError::ShuttingDown)
            }
        };
        self.changed.notify_one();
        let _ = tx.send(Some(outcome));
    }

    /// Records the result of a start: the model is ready (and its server watched) or
    /// failed. A server whose start was abandoned meanwhile (the proxy is stopping, or a
    /// reload retired the model) is handed back to be stopped, with why.
    fn publish(
        self: &Arc<Self>,
        index: usize,
        generation: u64,
        result: Result<Box<dyn Instance>, LaunchError>,
        took: Duration,
    ) -> Result<Result<Arc<Running>, AcquireError>, Abandoned> {
        let mut table = lock(&self.table);
        let abandoned = abandoned(&table, index, generation);
        let current = abandoned.is_none();
        match result {
            Ok(instance) if current => {
                let running = Arc::new(self.running(instance.as_ref(), generation));
                let (stop_tx, stop_rx) = oneshot::channel();
                *lock(&running.stop) = Some(stop_tx);
                let slot = &mut table.slots[index];
                slot.phase = Phase::Ready(Arc::clone(&running));
                slot.last_used = Some(Instant::now());
                slot.fresh_until = Some(Instant::now() + FRESH_GRACE);
                slot.argv = instance.argv().into();
                slot.counters.loads += 1;
                slot.counters.load_total += took;
                self.bump();
                let conf = Arc::clone(&slot.conf);
                let (id, pid) = (instance.server_id(), instance.pid());
                self.events
                    .emit(&conf.alias, id, pid, ModelEventKind::Ready);
                let supervised =
                    Arc::clone(self).supervise(index, conf, generation, instance, stop_rx);
                tokio::spawn(supervised);
                Ok(Ok(running))
            }
            Ok(instance) => Err((instance, abandoned.unwrap_or(StopReason::ProxyStopping))),
            Err(e) => {
                let e = Arc::new(e);
                if current {
                    table.slots[index].phase = Phase::Failed(Arc::clone(&e));
                    table.slots[index].drain_after = None;
                }
                table.slots[index].counters.load_failures += 1;
                self.bump();
                let (message, exit_code) = (e.message.clone(), e.exit_code);
                self.emit(
                    &table,
                    index,
                    ModelEventKind::StartFailed { message, exit_code },
                );
                Ok(Err(AcquireError::Start(e)))
            }
        }
    }

    /// Asks a server that just became ready for its own `/v1/models` entry, in a task,
    /// and keeps it for the listing; the requests waiting for the start are released
    /// when it has answered or after [`ENTRY_WAIT`], whichever comes first.
    async fn describe(self: &Arc<Self>, index: usize, running: Arc<Running>) {
        let models = Arc::clone(self);
        let asked = tokio::spawn(async move {
            let Some(entry) = entry::fetch(&running.pool, running.auth.as_ref()).await else {
                tracing::debug!(model = %models.conf(index).alias, "the model server's /v1/models gave no entry");
                return;
            };
            let mut table = lock(&models.table);
            let slot = &mut table.slots[index];
            // A later server's entry is never replaced by an earlier one's.
            if slot
                .entry
                .as_ref()
                .is_none_or(|(g, _)| *g <= running.generation)
            {
                slot.entry = Some((running.generation, Arc::new(entry)));
            }
        });
        let _ = tokio::time::timeout(ENTRY_WAIT, asked).await;
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
            pool: Pool::new(
                instance.endpoint(),
                crate::DEFAULT_CONNECT_TIMEOUT,
                instance.max_connections(),
            ),
            auth,
            pid: instance.pid(),
            server_id: instance.server_id().map(str::to_owned),
            generation,
            stop: Mutex::new(None),
            control: control_client(instance),
        }
    }

    /// Owns a running server: stops it when asked (or when nobody can ask any more), and
    /// marks the model failed when the server exits on its own.
    async fn supervise(
        self: Arc<Self>,
        index: usize,
        conf: Arc<Conf>,
        generation: u64,
        instance: Box<dyn Instance>,
        stop: oneshot::Receiver<(StopReason, oneshot::Sender<()>)>,
    ) {
        let asked = tokio::select! {
            exited = instance.exited() => Err(exited),
            asked = stop => Ok(asked.ok()),
        };
        let alias = &conf.alias;
        match asked {
            Ok(asked) => {
                let (id, pid) = (instance.server_id().map(str::to_owned), instance.pid());
                instance.stop().await;
                // Nobody can ask any more only when the proxy is gone.
                let (reason, ack) =
                    asked.map_or((StopReason::ProxyStopping, None), |(r, a)| (r, Some(a)));
                // Announced before the stop is answered, so before the model can start
                // again.
                let kind = ModelEventKind::Stopped { reason };
                self.events.emit(alias, id.as_deref(), pid, kind);
                if let Some(ack) = ack {
                    let _ = ack.send(());
                }
            }
            Err((status, exit_code)) => {
                let error = LaunchError {
                    message: format!(
                        "the server of model `{alias}` exited ({status}); the next request starts it again"
                    ),
                    log_tail: instance.log_tail(),
                    user_error: false,
                    exit_code,
                };
                tracing::warn!(model = %alias, %status, "model server exited");
                {
                    let mut table = lock(&self.table);
                    let slot = &mut table.slots[index];
                    if matches!(&slot.phase, Phase::Ready(r) if r.generation == generation) {
                        slot.phase = Phase::Failed(Arc::new(error));
                        slot.drain_after = None;
                    }
                    self.bump();
                    let exit = status.clone();
                    let (id, pid) = (instance.server_id(), instance.pid());
                    self.events
                        .emit(alias, id, pid, ModelEventKind::Died { exit, exit_code });
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
            let (_, next) = self.expire(Instant::now());
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

    /// Begins to stop the idle models whose keep-alive ended by `now` (returning their
    /// indices), and says when to look again: at the earliest expiry of an idle model,
    /// and for a busy one a keep-alive from now (it cannot expire earlier, as it is used
    /// now).
    pub(crate) fn expire(self: &Arc<Self>, now: Instant) -> (Vec<usize>, Option<Instant>) {
        let mut table = lock(&self.table);
        let mut expired = Vec::new();
        let mut next: Option<Instant> = None;
        for i in 0..table.slots.len() {
            let slot = &table.slots[i];
            if let (Phase::Ready(_), Some(reason), 0) = (&slot.phase, &slot.retired, slot.in_flight)
            {
                // A reload retired it and its last request has ended.
                let reason = reason.clone();
                self.begin_stop(&mut table, i, false, reason);
                expired.push(i);
                continue;
            }
            let conf = Arc::clone(&slot.conf);
            let (Phase::Ready(_), Some(keep)) = (&slot.phase, conf.keep_alive) else {
                continue;
            };
            let busy = slot.in_flight > 0;
            let at = match (busy, slot.last_used) {
                (false, Some(used)) => used + keep,
                _ => now + keep.max(BUSY_RECHECK),
            };
            if !busy && at <= now {
                tracing::debug!(model = %conf.alias, "keep-alive ended; stopping model server");
                let keep_alive_ms = u64::try_from(keep.as_millis()).unwrap_or(u64::MAX);
                let reason = StopReason::KeepAlive { keep_alive_ms };
                self.begin_stop(&mut table, i, false, reason);
                expired.push(i);
            } else {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        (expired, next)
    }

    /// Every model as reported to users.
    pub(crate) fn views(&self) -> Vec<ModelView> {
        self.listed().into_iter().map(|l| l.view).collect()
    }

    /// Model `alias` as [`Models::listed`] reports it, if it is configured.
    pub(crate) fn listed_one(&self, alias: &str) -> Option<Listed> {
        self.listed().into_iter().find(|l| l.view.alias == alias)
    }

    /// Every model as reported to users, with what its server last said about it, its
    /// last command line, its queue and its counters.
    pub(crate) fn listed(&self) -> Vec<Listed> {
        let table = lock(&self.table);
        let (now, wall) = (Instant::now(), SystemTime::now());
        table
            .order
            .iter()
            .map(|&i| {
                let slot = &table.slots[i];
                let conf = &slot.conf;
                let (state, running, error, exit_code) = match &slot.phase {
                    // A server being stopped still counts against the budget, but takes
                    // no requests: to clients the model is stopped.
                    Phase::Stopped | Phase::Stopping { .. } => {
                        (ModelState::Stopped, None, None, None)
                    }
                    Phase::Preparing(_) | Phase::Loading(_) => {
                        (ModelState::Loading, None, None, None)
                    }
                    Phase::Ready(r) => (ModelState::Ready, Some(r), None, None),
                    Phase::Failed(e) => {
                        (ModelState::Failed, None, Some(e.to_string()), e.exit_code)
                    }
                };
                let view = ModelView {
                    alias: conf.alias.clone(),
                    state,
                    estimate_bytes: slot.estimate,
                    last_used: slot
                        .last_used
                        .and_then(|at| wall.checked_sub(now.saturating_duration_since(at))),
                    pid: running.and_then(|r| r.pid),
                    server_id: running.and_then(|r| r.server_id.clone()),
                    in_flight: slot.in_flight,
                    keep_alive_secs: conf.keep_alive.map(|d| d.as_secs()),
                    pinned: conf.pinned,
                    llama_version: conf.llama_version.clone(),
                    error,
                    exit_code,
                };
                Listed {
                    view,
                    entry: slot.entry.as_ref().map(|(_, e)| Arc::clone(e)),
                    argv: Arc::clone(&slot.argv),
                    queued: slot.waiting.len(),
                    counters: slot.counters,
                }
            })
            .collect()
    }

    /// Stops model `index` now if it runs and is idle, and waits until its server has
    /// exited; refused while requests are in flight or it is loading.
    pub(crate) async fn unload(self: &Arc<Self>, index: usize) -> Result<(), Unload> {
        let done = {
            let mut table = lock(&self.table);
            let slot = &table.slots[index];
            match &slot.phase {
                Phase::Ready(_) if slot.in_flight > 0 => return Err(Unload::Busy(slot.in_flight)),
                Phase::Preparing(_) | Phase::Loading(_) => return Err(Unload::Loading),
                _ => self.begin_stop(&mut table, index, false, StopReason::Unloaded),
            }
        };
        if let Some(mut done) = done {
            let _ = tokio::time::timeout(STOP_WAIT, done.wait_for(|d| *d)).await;
        }
        Ok(())
    }

    /// Refuses new requests (and answers those waiting for a model), and asks every
    /// running server to stop; the returned futures end when each has exited. A start in
    /// progress stops its server when it finishes. Spawns nothing, so that it works in a
    /// drop outside the runtime.
    pub(crate) fn shut_down(&self) -> Vec<BoxFuture<'static, ()>> {
        self.stopping.send_replace(true);
        let mut table = lock(&self.table);
        table.shutting_down = true;
        let mut stops: Vec<BoxFuture<'static, ()>> = Vec::new();
        for slot in &mut table.slots {
            match std::mem::replace(&mut slot.phase, Phase::Stopped) {
                Phase::Ready(running) => {
                    if let Some(ack) = running.request_stop(StopReason::ProxyStopping) {
                        stops.push(Box::pin(async move {
                            let _ = ack.await;
                        }));
                    }
                }
                Phase::Stopping { mut done, .. } => stops.push(Box::pin(async move {
                    let _ = done.wait_for(|d| *d).await;
                })),
                _ => {}
            }
        }
        stops
    }
}

/// Why a start of slot `index` (its `generation`) no longer counts, if it does not: the
/// proxy stops, or a reload retired the model.
fn abandoned(table: &Table, index: usize, generation: u64) -> Option<StopReason> {
    let slot = &table.slots[index];
    if table.shutting_down || slot.generation != generation {
        Some(StopReason::ProxyStopping)
    } else {
        slot.retired.clone()
    }
}

/// The slot of `alias` among the models configured now.
fn find_in(table: &Table, alias: &str) -> Option<usize> {
    table
        .order
        .iter()
        .copied()
        .find(|&i| table.slots[i].conf.alias == alias)
}

/// What [`Proxy::reload`](crate::Proxy::reload) did, by alias, each list in
/// configuration order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReloadReport {
    /// Models that were not configured before; each starts at its first request.
    pub added: Vec<String>,
    /// Models no longer configured: they take no new request, and a running server
    /// stops once its requests in flight have finished.
    pub removed: Vec<String>,
    /// Models whose start changed (model, binary, arguments): the running server
    /// finishes its requests and stops; the next request starts the new configuration.
    pub replaced: Vec<String>,
    /// Models whose settings changed (keep-alive, pinning, queue bound, estimate),
    /// applied at once to the running server.
    pub updated: Vec<String>,
    /// Models left as they were.
    pub unchanged: Vec<String>,
}

/// The event of a start refused before its server was launched.
fn start_refused(e: &AcquireError) -> ModelEventKind {
    match e {
        AcquireError::Start(e) => ModelEventKind::StartFailed {
            message: e.message.clone(),
            exit_code: e.exit_code,
        },
        AcquireError::NoRoom {
            estimate, budget, ..
        } => ModelEventKind::NoRoom {
            estimate_bytes: *estimate,
            budget_bytes: *budget,
        },
        AcquireError::LoadTimeout(_)
        | AcquireError::ShuttingDown
        | AcquireError::Removed
        | AcquireError::QueueFull { .. } => ModelEventKind::Stopped {
            reason: StopReason::ProxyStopping,
        },
    }
}

/// A client of a model server for the proxy's own calls, with the server's key.
fn control_client(instance: &dyn Instance) -> Client {
    let mut client = Client::builder(instance.endpoint().clone());
    if let Some(key) = instance.api_key() {
        client = client.api_key(key);
    }
    client.build()
}

/// One model as [`Models::listed`] reports it.
pub(crate) struct Listed {
    pub(crate) view: ModelView,
    /// What its last server said about it.
    pub(crate) entry: Option<Arc<ServerEntry>>,
    /// Its last server's command line.
    pub(crate) argv: Arc<[String]>,
    /// Requests waiting for it.
    pub(crate) queued: usize,
    pub(crate) counters: Counters,
}

/// Why `/models/unload` did nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unload {
    /// Requests are in flight (how many).
    Busy(usize),
    /// Its server is starting; the start is not cancelled.
    Loading,
}

/// Waits (bounded) for the stops [`Models::shut_down`] asked for.
pub(crate) async fn stopped(stops: Vec<BoxFuture<'static, ()>>) {
    let all = futures_util::future::join_all(stops);
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
        Idle {
            age: u64,
        },
        Busy,
        Pinned,
        Fresh,
        /// Its server is being stopped; `promised` to another start or not.
        Stopping {
            promised: bool,
        },
    }

    fn models(estimates_and_states: &[(u64, S)], budget: u64) -> Arc<Models> {
        let confs = estimates_and_states
            .iter()
            .enumerate()
            .map(|(i, (estimate, state))| Conf {
                alias: format!("m{i}"),
                estimate: *estimate,
                keep_alive: None,
                pinned: matches!(state, S::Pinned),
                llama_version: None,
                max_queue: None,
                slot_cache: None,
                starter: Arc::new(NeverStarts),
                fingerprint: None,
                launch: None,
            })
            .collect();
        let models = Arc::new(Models::new(confs, budget, Duration::from_secs(30)));
        let now = Instant::now();
        let mut table = lock(&models.table);
        for (slot, (_, state)) in table.slots.iter_mut().zip(estimates_and_states) {
            let running = || {
                Phase::Ready(Arc::new(Running {
                    pool: Pool::new(
                        &Endpoint::unix("/nonexistent.sock"),
                        Duration::from_secs(1),
                        None,
                    ),
                    auth: None,
                    pid: None,
                    server_id: None,
                    generation: 0,
                    stop: Mutex::new(None),
                    control: Client::new(Endpoint::unix("/nonexistent.sock")),
                }))
            };
            slot.last_used = Some(now);
            slot.phase = match *state {
                S::Stopped => Phase::Stopped,
                S::Loading => Phase::Loading(watch::channel(None).1),
                S::Idle { age } => {
                    slot.last_used = Some(now - Duration::from_secs(age));
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
                S::Stopping { promised } => Phase::Stopping {
                    done: watch::channel(false).1,
                    promised,
                },
            };
        }
        drop(table);
        models
    }

    /// Which models' memory a start of the last one waits for (stopping them if they
    /// run), or what holds the budget.
    fn room(states: &[(u64, S)], budget: u64) -> Result<Vec<String>, Vec<(String, &'static str)>> {
        let models = models(states, budget);
        let last = states.len() - 1;
        let mut table = lock(&models.table);
        match models.make_room(&mut table, last) {
            Ok(waits) => {
                let claimed: Vec<String> = table
                    .slots
                    .iter()
                    .zip(states)
                    .filter(|(slot, (_, s))| {
                        matches!(slot.phase, Phase::Stopping { promised: true, .. })
                            && !matches!(s, S::Stopping { promised: true })
                    })
                    .map(|(slot, _)| slot.conf.alias.clone())
                    .collect();
                assert_eq!(claimed.len(), waits.len());
                Ok(claimed)
            }
            Err(AcquireError::NoRoom { holders, .. }) => {
                Err(holders.into_iter().map(|(m, _, why)| (m, why)).collect())
            }
            Err(other) => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn eviction_table() {
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
        // A server being stopped still counts until it has exited: a start waits for
        // it (before stopping an idle model), and memory another start waits for is not
        // counted on twice.
        assert_eq!(
            room(
                &[
                    (40, Idle { age: 9 }),
                    (40, Stopping { promised: false }),
                    (40, Stopped)
                ],
                100
            ),
            Ok(vec!["m1".to_owned()])
        );
        assert_eq!(
            room(
                &[(60, Stopping { promised: true }), (40, Busy), (40, Stopped)],
                100
            ),
            Err(vec![
                ("m0".to_owned(), "stopping for another model"),
                ("m1".to_owned(), "busy"),
            ])
        );
    }

    /// A server with a fixed number of connections, as an older llama-server reports.
    struct Capped(Endpoint);

    impl Instance for Capped {
        fn endpoint(&self) -> &Endpoint {
            &self.0
        }
        fn api_key(&self) -> Option<&str> {
            None
        }
        fn pid(&self) -> Option<u32> {
            None
        }
        fn server_id(&self) -> Option<&str> {
            None
        }
        fn exited(&self) -> BoxFuture<'_, (String, Option<i32>)> {
            Box::pin(std::future::pending())
        }
        fn log_tail(&self) -> Vec<String> {
            Vec::new()
        }
        fn stop(self: Box<Self>) -> BoxFuture<'static, ()> {
            Box::pin(async {})
        }
        fn max_connections(&self) -> Option<usize> {
            Some(3)
        }
    }

    #[test]
    fn a_models_pool_holds_no_more_connections_than_its_server_takes() {
        let models = models(&[(1, S::Stopped)], 10);
        let capped = models.running(&Capped(Endpoint::unix("/nonexistent.sock")), 1);
        assert_eq!(capped.pool.free_slots(), Some(3));
    }
}
