//! The server: its own tokio runtime (two worker threads), the listening socket, the bound on
//! connections, and a graceful stop. One connection's life is in `connection.rs`; what a
//! request may be in `limits.rs`; the answers in `routes.rs`.
use std::collections::HashMap;
use std::convert::Infallible;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hyper::body::Body;
use hyper::server::conn::http1;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioTimer;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tower::util::BoxCloneSyncService;
use tower::ServiceBuilder;
use tower_http::timeout::TimeoutLayer;

use super::accept_failure::AcceptBackoff;
use super::config::ServerConfig;
use super::connection;
use super::limits::RequestLimitsLayer;
use super::routes::{self, ResponseBody};
use crate::error::{Error, Result};
use crate::health::HealthSource;

/// How long a stop lets requests in flight finish before it closes every connection.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Connections the kernel queues for `accept` (capped by `net.core.somaxconn`).
const LISTEN_BACKLOG: u32 = 1024;

/// The request pipeline, outermost first: [`RequestLimitsLayer`] (sizes and framing, before the
/// body is read), tower-http's [`TimeoutLayer`] (408 when the body has not arrived within
/// `request_timeout`), then the routes. Generic over the request body so that it can be
/// driven without a socket (`ServiceExt::oneshot`), as the unit tests below do.
pub(crate) fn app<B>(
    source: Arc<dyn HealthSource>,
    config: &ServerConfig,
) -> BoxCloneSyncService<Request<B>, Response<ResponseBody>, Infallible>
where
    B: Body + Send + 'static,
{
    let pipeline = ServiceBuilder::new()
        .layer(RequestLimitsLayer::new(config.max_request_bytes))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, config.request_timeout))
        .service_fn(move |request| routes::serve(source.clone(), request));
    BoxCloneSyncService::new(pipeline)
}

/// The HTTP endpoint: `/health`, `/health/live`, `/health/ready`, `/metrics`. Stops on
/// `shutdown` or drop.
pub struct HealthServer {
    addr: SocketAddr,
    runtime: Option<Runtime>,
    stop: watch::Sender<bool>,
    /// Signalled when the accept task has closed the listener and every connection.
    stopped: mpsc::Receiver<()>,
}

impl std::fmt::Debug for HealthServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthServer").field("addr", &self.addr).finish()
    }
}

/// What every connection task shares.
pub(crate) struct Shared {
    pub app: BoxCloneSyncService<Request<hyper::body::Incoming>, Response<ResponseBody>, Infallible>,
    pub http: http1::Builder,
    pub config: ServerConfig,
    pub open: Arc<OpenConnections>,
}

impl HealthServer {
    /// Binds `config.bind:config.port` and starts serving `source`'s report.
    /// Errors: VRAM-E017 naming the address when it cannot be bound (or the runtime cannot
    /// start); VRAM-E007 for a limit that cannot serve (see `ServerConfig`).
    pub fn start(config: ServerConfig, source: Arc<dyn HealthSource>) -> Result<HealthServer> {
        config.validate()?;
        let requested = SocketAddr::new(config.bind, config.port);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("vramguard-http")
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| Error::Io(format!("cannot start the HTTP runtime for {requested}: {e}")))?;
        let listening = {
            let _entered = runtime.enter();
            listen(requested).and_then(|listener| Ok((listener.local_addr()?, listener)))
        };
        let (addr, listener) = match listening {
            Ok(listening) => listening,
            Err(e) => {
                // Dropping a runtime blocks, which panics where the caller is itself async.
                runtime.shutdown_background();
                return Err(Error::Io(format!("cannot listen on {requested}: {e}")));
            }
        };

        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            // From when hyper starts waiting for a head: a silent, idle or dripping client is
            // cut off at the timeout.
            .header_read_timeout(config.request_timeout)
            // A client may send its requests and shut its side down while it waits for the
            // answers; a head cut short by that is answered 400 (`connection.rs`).
            .half_close(true)
            .max_buf_size(read_buffer_limit(config.max_request_bytes));
        let shared = Arc::new(Shared {
            app: app(source, &config),
            http,
            open: Arc::new(OpenConnections::new(config.max_connections)),
            config,
        });
        let (stop, stopping) = watch::channel(false);
        let (done, stopped) = mpsc::channel();
        runtime.spawn(async move {
            accept(listener, shared, stopping).await;
            let _ = done.send(());
        });
        tracing::info!(
            actor = crate::events::ACTOR_WORKER, action = "http_listen", target = %addr,
            human = %format!("Serving http://{addr}/health, /health/live, /health/ready and /metrics"),
        );
        Ok(HealthServer { addr, runtime: Some(runtime), stop, stopped })
    }

    /// The bound address (the actual port when `port` was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets requests in flight finish (for up to two seconds), closes idle
    /// and slow connections, and stops the runtime's threads. The port is closed when this
    /// returns. Dropping the server does the same.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(runtime) = self.runtime.take() else { return };
        let _ = self.stop.send(true);
        // The accept task closes the listener, then every connection within the grace period.
        let _ = self.stopped.recv_timeout(SHUTDOWN_GRACE + Duration::from_secs(5));
        if tokio::runtime::Handle::try_current().is_ok() {
            // Dropped inside another runtime, where this thread must not block.
            runtime.shutdown_background();
        } else {
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
        tracing::info!(actor = crate::events::ACTOR_WORKER, action = "http_stop", target = %self.addr, human = "HTTP endpoint stopped");
    }
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A listening socket with a backlog deep enough for a burst of connections.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    // As std does on Unix: a restarted server can bind while old connections are in TIME_WAIT.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// hyper's read buffer: room for a head a few times over the limit, so that the limits layer
/// sees an oversized head whole and can say whether the request line (414) or the headers
/// (431) were too long. Past this hyper answers 431 itself.
fn read_buffer_limit(max_request_bytes: usize) -> usize {
    (4 * max_request_bytes).max(8 * 1024)
}

/// The accept task: one task per connection until the stop, then a graceful close. A failed
/// accept waits and may close a connection as `accept_failure.rs` decides.
async fn accept(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    let mut backoff = AcceptBackoff::new();
    loop {
        tokio::select! {
            biased;
            () = stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    backoff.accepted();
                    let admitted = shared.open.admit(has_sent(&stream));
                    connections.spawn(connection::serve(stream, shared.clone(), admitted, stop.clone()));
                }
                // A client that left before it was accepted: nothing is short, the next may follow at once.
                Err(e) if e.kind() == ErrorKind::ConnectionAborted => {}
                Err(e) => {
                    let delay = backoff.failed(&e, &shared.open);
                    tokio::select! {
                        biased;
                        () = stopped(&mut stop) => break,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            },
            Some(_) = connections.join_next() => {}
        }
    }
    drop(listener);
    // Every connection has seen the stop: idle ones close at once, requests in flight finish.
    let finished =
        tokio::time::timeout(SHUTDOWN_GRACE, async { while connections.join_next().await.is_some() {} }).await;
    if finished.is_err() {
        connections.shutdown().await;
    }
}

/// Whether the client of a just accepted connection has already sent a byte. A probe sends its
/// request at once: knowing it before the connection's task first runs (which, with a burst of
/// connections, can come after many more accepts) keeps the bound from taking it for silent.
fn has_sent(stream: &TcpStream) -> bool {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        let mut byte = 0u8;
        // SAFETY: `byte` is a valid one-byte buffer and the descriptor is the socket `stream`
        // owns, open for the whole call; MSG_PEEK leaves the byte for hyper, MSG_DONTWAIT never blocks.
        unsafe {
            libc::recv(stream.as_raw_fd(), std::ptr::from_mut(&mut byte).cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT)
                > 0
        }
    }
    #[cfg(not(unix))]
    {
        let _ = stream;
        false
    }
}

/// Resolves once the server is stopping (at once if it already is).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which only a stopping server does.
    let _ = stop.wait_for(|&stopping| stopping).await;
}

/// The connections being served, and the bound on them: admitting one past `max` closes the
/// first of, in this order, the oldest connection that has not sent a byte, the oldest that
/// has not completed a request head, the one whose last request is the oldest. A probe, which
/// sends its request at once, outlives the silent and the slow, and a scraper that keeps
/// asking keeps its connection.
pub(crate) struct OpenConnections {
    max: usize,
    epoch: Instant,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Handle>>,
}

/// `last_active` of a connection that has not sent a byte yet: evicted first.
const SILENT: u64 = 0;
/// `last_active` of one that has sent bytes but no complete request head yet.
const STARTED: u64 = 1;

/// What the bound needs of one connection.
struct Handle {
    /// Its place in the eviction order, lowest first: [`SILENT`], [`STARTED`], or when its
    /// last request arrived ([`OpenConnections::now`]).
    last_active: Arc<AtomicU64>,
    evict: Arc<Notify>,
}

/// A connection's place among the open ones; gives it back when dropped.
pub(crate) struct Admitted {
    id: u64,
    open: Arc<OpenConnections>,
    last_active: Arc<AtomicU64>,
    pub evict: Arc<Notify>,
}

impl OpenConnections {
    fn new(max: usize) -> OpenConnections {
        OpenConnections { max, epoch: Instant::now(), next_id: AtomicU64::new(0), open: Mutex::new(HashMap::new()) }
    }

    /// Milliseconds since `epoch`, above [`STARTED`]: the `last_active` of a request now.
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 2) + STARTED + 1
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Handle>> {
        // Nothing panics while this lock is held; should it, the map is still usable.
        self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a new connection, closing the first in the eviction order when at the bound.
    /// `sent`: the client has already sent something.
    fn admit(self: &Arc<Self>, sent: bool) -> Admitted {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let last_active = Arc::new(AtomicU64::new(if sent { STARTED } else { SILENT }));
        let evict = Arc::new(Notify::new());
        let mut open = self.lock();
        while open.len() >= self.max {
            Self::evict_from(&mut open);
        }
        open.insert(id, Handle { last_active: last_active.clone(), evict: evict.clone() });
        Admitted { id, open: self.clone(), last_active, evict }
    }

    /// Connections open now.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Closes the first connection in the eviction order that has not completed a request
    /// head (silent or mid-head); false, closing nothing, when every open one has been served.
    pub(crate) fn evict_unserved(&self) -> bool {
        Self::evict_first(&mut self.lock(), |last_active| last_active <= STARTED)
    }

    fn evict_from(open: &mut HashMap<u64, Handle>) {
        Self::evict_first(open, |_| true);
    }

    /// Closes the first connection in the eviction order among those whose `last_active` is
    /// `eligible`; among equals, the oldest (ids grow with time). False when none is. O(open):
    /// a scan of at most `max` entries, only when the server is full or out of descriptors.
    fn evict_first(open: &mut HashMap<u64, Handle>, eligible: impl Fn(u64) -> bool) -> bool {
        let Some(id) = open
            .iter()
            .map(|(id, handle)| (handle.last_active.load(Ordering::Relaxed), *id))
            .filter(|&(last_active, _)| eligible(last_active))
            .min()
            .map(|(_, id)| id)
        else {
            return false;
        };
        let Some(handle) = open.remove(&id) else { return false };
        // Stores a permit if the task is not waiting yet: the eviction is never lost.
        handle.evict.notify_one();
        true
    }
}

impl Admitted {
    /// The client has sent its first byte.
    pub(crate) fn started(&self) {
        let _ = self.last_active.compare_exchange(SILENT, STARTED, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// The connection just received a request: it goes to the back of the eviction order.
    pub(crate) fn touch(&self) {
        self.last_active.store(self.open.now(), Ordering::Relaxed);
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.open.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    //! The pipeline without sockets: limits and routes through `oneshot`.
    use std::collections::BTreeMap;

    use http_body_util::{BodyExt, Empty, Full};
    use hyper::body::Bytes;
    use hyper::{header, Method};

    use tower::ServiceExt;

    use super::*;
    use crate::health::{DeviceReport, HealthReport, HealthStatus};

    struct Fixed(HealthReport);

    impl HealthSource for Fixed {
        fn report(&self) -> HealthReport {
            self.0.clone()
        }
    }

    fn report(status: HealthStatus, live: bool) -> HealthReport {
        HealthReport {
            status,
            live,
            resident: status == HealthStatus::Healthy,
            by_purpose: BTreeMap::new(),
            ..HealthReport::starting(DeviceReport::default())
        }
    }

    async fn call<B>(source: HealthReport, request: Request<B>) -> (StatusCode, hyper::HeaderMap, serde_json::Value)
    where
        B: Body + Send + 'static,
    {
        let app =
            app::<B>(Arc::new(Fixed(source)), &ServerConfig { max_request_bytes: 512, ..ServerConfig::default() });
        let response = app.oneshot(request).await.unwrap();
        let (head, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (head.status, head.headers, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
    }

    fn get(uri: &str) -> Request<Empty<Bytes>> {
        Request::builder().uri(uri).body(Empty::new()).unwrap()
    }

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(future)
    }

    #[test]
    fn live_follows_report_live() {
        block_on(async {
            let (status, _, body) = call(report(HealthStatus::Unhealthy, true), get("/health/live")).await;
            assert_eq!((status, body), (StatusCode::OK, serde_json::json!({ "status": "alive" })));
            let mut dead = report(HealthStatus::Unhealthy, false);
            dead.last_error = Some(serde_json::json!({ "code": "VRAM-E018" }));
            let (status, _, body) = call(dead, get("/health/live")).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(body, serde_json::json!({ "status": "dead", "last_error": { "code": "VRAM-E018" } }));
        });
    }

    #[test]
    fn health_is_200_only_when_healthy() {
        block_on(async {
            for (status, code) in [
                (HealthStatus::Healthy, StatusCode::OK),
                (HealthStatus::Starting, StatusCode::SERVICE_UNAVAILABLE),
                (HealthStatus::Unhealthy, StatusCode::SERVICE_UNAVAILABLE),
                (HealthStatus::Stale, StatusCode::SERVICE_UNAVAILABLE),
            ] {
                let (answered, _, body) = call(report(status, true), get("/health")).await;
                assert_eq!(answered, code, "{status:?}");
                assert_eq!(body["status"], serde_json::to_value(status).unwrap());
                let ready =
                    if status == HealthStatus::Healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
                assert_eq!(call(report(status, true), get("/health/ready")).await.0, ready, "{status:?}");
            }
        });
    }

    #[test]
    fn routes_are_exact_and_other_methods_are_405() {
        block_on(async {
            let healthy = || report(HealthStatus::Healthy, true);
            for uri in ["/health/../health", "//health", "/%68ealth", "/health/"] {
                assert_eq!(call(healthy(), get(uri)).await.0, StatusCode::NOT_FOUND, "{uri}");
            }
            assert_eq!(call(healthy(), get("http://example/health?x=1")).await.0, StatusCode::OK);
            let post = Request::builder().method(Method::POST).uri("/health").body(Empty::<Bytes>::new()).unwrap();
            let (status, headers, _) = call(healthy(), post).await;
            assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
            assert_eq!(headers[header::ALLOW], "GET, HEAD");
        });
    }

    #[test]
    fn limits_refuse_before_the_routes_and_close() {
        block_on(async {
            let healthy = || report(HealthStatus::Healthy, true);
            let refused = |status: StatusCode, headers: &hyper::HeaderMap| {
                assert_eq!(headers[header::CONNECTION], "close", "{status}");
                status
            };
            let (status, headers, _) = call(healthy(), get(&format!("/health?{}", "q".repeat(600)))).await;
            assert_eq!(refused(status, &headers), StatusCode::URI_TOO_LONG);
            let big =
                Request::builder().uri("/health").header("x-big", "a".repeat(500)).body(Empty::<Bytes>::new()).unwrap();
            let (status, headers, _) = call(healthy(), big).await;
            assert_eq!(refused(status, &headers), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
            let chunked = Request::builder()
                .uri("/health")
                .header("transfer-encoding", "chunked")
                .body(Empty::<Bytes>::new())
                .unwrap();
            let (status, headers, _) = call(healthy(), chunked).await;
            assert_eq!(refused(status, &headers), StatusCode::LENGTH_REQUIRED);
            let body = Request::builder().uri("/health").body(Full::new(Bytes::from(vec![b'b'; 600]))).unwrap();
            let (status, headers, _) = call(healthy(), body).await;
            assert_eq!(refused(status, &headers), StatusCode::PAYLOAD_TOO_LARGE);
            let small = Request::builder().uri("/health").body(Full::new(Bytes::from_static(b"body"))).unwrap();
            assert_eq!(call(healthy(), small).await.0, StatusCode::OK, "a body within the limit is read and dropped");
        });
    }

    /// A server may be started, refused and dropped by async code: nothing here blocks on a
    /// runtime from inside another one.
    #[test]
    fn starts_fails_and_stops_inside_another_runtime() {
        block_on(async {
            let source = || Arc::new(Fixed(report(HealthStatus::Healthy, true)));
            let server = HealthServer::start(ServerConfig { port: 0, ..ServerConfig::default() }, source()).unwrap();
            let taken = ServerConfig { port: server.local_addr().port(), ..ServerConfig::default() };
            assert_eq!(HealthServer::start(taken, source()).unwrap_err().code(), "VRAM-E017");
            drop(server);
        });
    }

    /// Whether the connection has been told to close (without waiting for it).
    fn evicted(admitted: &Admitted) -> bool {
        block_on(async {
            tokio::select! {
                biased;
                _ = admitted.evict.notified() => true,
                _ = std::future::ready(()) => false,
            }
        })
    }

    #[test]
    fn the_bound_evicts_the_silent_then_the_slow_then_the_least_recently_served() {
        let open = Arc::new(OpenConnections::new(2));
        let first = open.admit(false);
        let second = open.admit(false);
        first.touch();
        second.started();
        let third = open.admit(false);
        assert!(evicted(&second), "a connection mid-head goes before one that was served");
        assert!(!evicted(&first) && !evicted(&third));
        assert_eq!(open.lock().len(), 2);
        // `third` has not sent a byte: it goes before `first`, which was served.
        let fourth = open.admit(false);
        assert!(evicted(&third) && !evicted(&first) && !evicted(&fourth));
        drop((first, second, third, fourth));
        assert!(open.lock().is_empty());
    }

    #[test]
    fn out_of_descriptors_only_connections_without_a_request_are_closed() {
        let open = Arc::new(OpenConnections::new(8));
        let served = open.admit(true);
        served.touch();
        let started = open.admit(true);
        let silent = open.admit(false);
        assert!(open.evict_unserved() && evicted(&silent), "the silent one first");
        assert!(open.evict_unserved() && evicted(&started), "then the one mid-head");
        assert!(!open.evict_unserved(), "never one that was served");
        assert!(!evicted(&served));
        assert_eq!(open.len(), 1);
        drop((served, started, silent));
    }
}
