//! The server's threads: one accepts, `worker_threads` serve connections. Every thread is
//! joined on shutdown, and the listening socket is closed before `shutdown` returns.
use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::config::ServerConfig;
use super::connection;
use super::limits::Limits;
use crate::error::{Error, Result};
use crate::health::HealthSource;

/// Accepted connections waiting for a worker. Beyond this the server answers 503 at once
/// instead of queueing without bound.
const PENDING_CONNECTIONS: usize = 64;

/// The HTTP endpoint: `/health`, `/health/live`, `/health/ready`, `/metrics`. Stops on
/// `shutdown` or drop.
pub struct HealthServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for HealthServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthServer").field("addr", &self.addr).field("workers", &self.workers.len()).finish()
    }
}

/// What the threads share.
struct Shared {
    source: Arc<dyn HealthSource>,
    limits: Limits,
    stopping: AtomicBool,
    /// Connections being served, so that a stop can cut them off instead of waiting out
    /// their deadlines.
    open: Mutex<HashMap<u64, TcpStream>>,
    next_id: AtomicU64,
}

impl HealthServer {
    /// Binds `config.bind:config.port` and starts serving `source`'s report.
    /// Errors: VRAM-E017 naming the address when it cannot be bound; VRAM-E007 for a zero
    /// limit or no workers.
    pub fn start(config: ServerConfig, source: Arc<dyn HealthSource>) -> Result<HealthServer> {
        config.validate()?;
        let requested = SocketAddr::new(config.bind, config.port);
        let listener = TcpListener::bind(requested).map_err(|e| Error::Io(format!("cannot listen on {requested}: {e}")))?;
        let addr = listener.local_addr().map_err(|e| Error::Io(format!("cannot read the address of {requested}: {e}")))?;
        let shared = Arc::new(Shared {
            source,
            limits: Limits { max_request_bytes: config.max_request_bytes, request_timeout: config.request_timeout },
            stopping: AtomicBool::new(false),
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        });
        let (queue, queued) = mpsc::sync_channel(PENDING_CONNECTIONS);
        let queued = Arc::new(Mutex::new(queued));
        let mut server = HealthServer { addr, shared: shared.clone(), accept: None, workers: Vec::new() };
        for i in 0..config.worker_threads {
            let (queued, shared) = (queued.clone(), shared.clone());
            match thread::Builder::new().name(format!("vramguard-http-{i}")).spawn(move || work(&queued, &shared)) {
                Ok(handle) => server.workers.push(handle),
                Err(e) => {
                    drop(queue); // lets the workers already started finish; `server`'s drop joins them
                    return Err(Error::Io(format!("cannot start an HTTP worker for {addr}: {e}")));
                }
            }
        }
        let accepting = thread::Builder::new().name("vramguard-http-accept".into()).spawn(move || accept(listener, queue, &shared));
        server.accept = Some(accepting.map_err(|e| Error::Io(format!("cannot start the HTTP accept thread for {addr}: {e}")))?);
        tracing::info!(
            actor = crate::events::ACTOR_WORKER, action = "http_listen", target = %addr,
            human = %format!("Serving http://{addr}/health, /health/live, /health/ready and /metrics"),
        );
        Ok(server)
    }

    /// The bound address (the actual port when `port` was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, cuts off open connections and joins every thread. The port is closed
    /// when this returns. Dropping the server does the same.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(accepting) = self.accept.take() else {
            // Never fully started: the workers stop once the queue's sender is gone.
            self.workers.drain(..).for_each(|w| drop(w.join()));
            return;
        };
        self.shared.stopping.store(true, Ordering::SeqCst);
        // The accept thread blocks in accept(): a connection of our own wakes it to see the flag.
        let _ = TcpStream::connect_timeout(&wake_address(self.addr), Duration::from_secs(1));
        let _ = accepting.join(); // drops the listener and the queue's sender
        for stream in lock(&self.shared.open).values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        self.workers.drain(..).for_each(|w| drop(w.join()));
        tracing::info!(actor = crate::events::ACTOR_WORKER, action = "http_stop", target = %self.addr, human = "HTTP endpoint stopped");
    }
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The accept thread: hands connections to the workers until the stop flag is set.
fn accept(listener: TcpListener, queue: SyncSender<TcpStream>, shared: &Shared) {
    for incoming in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        match incoming {
            Ok(stream) => match queue.try_send(stream) {
                Ok(()) => {}
                Err(TrySendError::Full(stream)) => refuse_busy(stream),
                Err(TrySendError::Disconnected(_)) => return,
            },
            Err(e) => {
                tracing::warn!(actor = crate::events::ACTOR_WORKER, action = "http_accept", error_kind = "io", human = %format!("accept failed: {e}"));
                // e.g. out of file descriptors: do not spin.
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Every worker busy and the queue full: say so without blocking the accept thread.
fn refuse_busy(stream: TcpStream) {
    let _ = stream.set_nonblocking(true);
    let _ = (&stream).write_all(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
}

/// A worker thread: serves one queued connection at a time until the queue closes.
fn work(queued: &Mutex<Receiver<TcpStream>>, shared: &Shared) {
    loop {
        let next = lock(queued).recv();
        let Ok(stream) = next else { return };
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(handle) = stream.try_clone() {
            lock(&shared.open).insert(id, handle);
        }
        // Checked after registering: a stop either sees this connection or is seen here.
        if !shared.stopping.load(Ordering::SeqCst) {
            let serve = || connection::serve(stream, shared.source.as_ref(), shared.limits, &shared.stopping);
            if panic::catch_unwind(AssertUnwindSafe(serve)).is_err() {
                tracing::error!(actor = crate::events::ACTOR_WORKER, action = "http_request", error_kind = "panic", human = "A connection handler panicked; connection dropped");
            }
        }
        lock(&shared.open).remove(&id);
    }
}

/// Where to connect to reach our own listener (a wildcard bind is reached over loopback).
fn wake_address(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port()),
        _ => addr,
    }
}

/// A panic never happens while these locks are held; should one, the data is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
