//! What a request may be (S4), checked on the head hyper has parsed, before a byte of the body
//! is read: the size of the request line (414), of the head (431) and of the declared body
//! (413), an ASCII head (400), and no Transfer-Encoding (411). A refusal carries
//! `Connection: close`: once a request's framing is refused, nothing after it on the
//! connection can be trusted, so nothing after it is served.
//!
//! hyper refuses what it cannot parse itself (400: malformed lines, invalid or conflicting
//! Content-Length, a Transfer-Encoding whose last coding is not chunked; 431: a head that
//! overflows its read buffer or has over 100 headers) and closes the connection after.
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::body::Body;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri};
use tower::{Layer, Service};

use super::routes::{self, ResponseBody};

/// A request refused before any route saw it: the status and a short reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub status: StatusCode,
    pub reason: &'static str,
}

impl Refusal {
    pub(crate) const fn new(status: StatusCode, reason: &'static str) -> Refusal {
        Refusal { status, reason }
    }

    /// `{"error": reason}` with `Connection: close`.
    pub(crate) fn response(self) -> Response<ResponseBody> {
        let mut response = routes::error(self.status, self.reason);
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        response
    }
}

/// What tower-http's timeout answers when the body does not arrive in time; passed on as a
/// refusal like the others.
const TOO_SLOW: Refusal = Refusal::new(StatusCode::REQUEST_TIMEOUT, "request not received in time");

/// The layer in front of the routes (see the module docs).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestLimitsLayer {
    max_request_bytes: usize,
}

impl RequestLimitsLayer {
    pub(crate) fn new(max_request_bytes: usize) -> RequestLimitsLayer {
        RequestLimitsLayer { max_request_bytes }
    }
}

impl<S> Layer<S> for RequestLimitsLayer {
    type Service = RequestLimits<S>;

    fn layer(&self, inner: S) -> RequestLimits<S> {
        RequestLimits { inner, max_request_bytes: self.max_request_bytes }
    }
}

/// See [`RequestLimitsLayer`].
#[derive(Debug, Clone)]
pub(crate) struct RequestLimits<S> {
    inner: S,
    max_request_bytes: usize,
}

impl<S, B> Service<Request<B>> for RequestLimits<S>
where
    S: Service<Request<B>, Response = Response<ResponseBody>, Error = Infallible>,
    S::Future: Send + 'static,
    B: Body,
{
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if let Err(refusal) = check(&request, self.max_request_bytes) {
            tracing::debug!(
                actor = crate::events::ACTOR_WORKER, action = "http_reject", target = %request.uri(),
                status = refusal.status.as_u16(), human = refusal.reason,
            );
            return Box::pin(std::future::ready(Ok(refusal.response())));
        }
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            Ok(if response.status() == StatusCode::REQUEST_TIMEOUT { TOO_SLOW.response() } else { response })
        })
    }
}

/// The request line: `METHOD SP target SP HTTP/1.1 CRLF`.
fn request_line_bytes(request: &Request<impl Body>) -> usize {
    request.method().as_str().len() + 1 + target_bytes(request.uri()) + 1 + "HTTP/1.1\r\n".len()
}

/// The target as hyper parsed it (without a fragment, which a client should not send).
fn target_bytes(uri: &Uri) -> usize {
    let path_and_query = uri.path_and_query().map_or(0, |p| p.as_str().len());
    let scheme = uri.scheme_str().map_or(0, |s| s.len() + "://".len());
    scheme + uri.authority().map_or(0, |a| a.as_str().len()) + path_and_query
}

/// The head as sent in its usual form: the request line, `name: value CRLF` per header and
/// the empty line. (Spaces a client adds around a value are not counted; hyper's read buffer
/// bounds those.)
fn head_bytes(request: &Request<impl Body>) -> usize {
    let headers: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + ": ".len() + value.len() + "\r\n".len())
        .sum();
    request_line_bytes(request) + headers + "\r\n".len()
}

/// Whether `request` may reach the routes. Sizes are checked first, so that an oversized
/// request is told so whatever else is wrong with it.
fn check(request: &Request<impl Body>, max_request_bytes: usize) -> Result<(), Refusal> {
    if request_line_bytes(request) > max_request_bytes {
        return Err(Refusal::new(StatusCode::URI_TOO_LONG, "request line longer than the server accepts"));
    }
    let head = head_bytes(request);
    if head > max_request_bytes {
        return Err(Refusal::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request headers larger than the server accepts",
        ));
    }
    // httparse lets bytes over 0x7f through in the target and in header values (obs-text);
    // nothing the endpoint serves needs them.
    let target_ascii = request.uri().path_and_query().map_or(true, |p| p.as_str().is_ascii());
    if !target_ascii || request.headers().values().any(|v| !v.as_bytes().is_ascii()) {
        return Err(Refusal::new(StatusCode::BAD_REQUEST, "request head is not ASCII"));
    }
    // A body has no use here, and only a declared length can be checked before reading.
    if request.headers().contains_key(header::TRANSFER_ENCODING) {
        return Err(Refusal::new(StatusCode::LENGTH_REQUIRED, "send a Content-Length, not Transfer-Encoding"));
    }
    // hyper has validated the Content-Length; its body knows the length it declared.
    let hint = request.body().size_hint();
    let declared = hint.exact().unwrap_or(hint.lower());
    if declared > (max_request_bytes - head) as u64 {
        return Err(Refusal::new(StatusCode::PAYLOAD_TOO_LARGE, "request larger than the server accepts"));
    }
    Ok(())
}
