//! One connection, request after request, until the client closes or idles past its deadline,
//! sends something refused, or the server stops.
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};

use tiny_http::{HTTPVersion, Method};

use super::limits::{BoundedReader, Limits, Next};
use super::reply::Reply;
use super::routes;
use crate::health::HealthSource;

/// Serves `stream` on the calling worker thread.
pub(crate) fn serve(stream: TcpStream, source: &dyn HealthSource, limits: Limits, stopping: &AtomicBool) {
    let _ = stream.set_nodelay(true);
    // A client that does not read its response cannot hold the worker either.
    let _ = stream.set_write_timeout(Some(limits.request_timeout));
    let Ok(read_half) = stream.try_clone() else { return };
    let mut reader = BoundedReader::new(read_half, limits);
    while !stopping.load(Ordering::SeqCst) {
        match reader.next_request() {
            Next::Closed => return,
            Next::Rejected(rejection) => {
                tracing::debug!(
                    actor = crate::events::ACTOR_WORKER, action = "http_reject", target = %peer(&stream),
                    status = rejection.status, human = rejection.reason,
                );
                let _ = Reply::rejected(rejection).write(&stream, HTTPVersion(1, 1), false);
                reader.linger();
                return;
            }
            Next::Request(request) => {
                let reply = routes::respond(&request.method, request.path(), source);
                let head_only = request.method == Method::Head;
                let written = reply.write(&stream, request.version.clone(), head_only);
                if written.is_err() || !request.keep_alive() {
                    return;
                }
            }
        }
    }
}

fn peer(stream: &TcpStream) -> String {
    stream.peer_addr().map(|a| a.to_string()).unwrap_or_else(|_| "unknown peer".into())
}
