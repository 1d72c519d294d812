//! The four routes. Each reads the cached report (`HealthSource::report`) and nothing else:
//! no CUDA, no waiting for a check, so a probe answers even while a check is running.
//!
//! Routing is an exact match on the path, which hyper hands over as sent: no dot segment is
//! resolved and nothing is percent-decoded, so `/health/../metrics`, `//health` and
//! `/%68ealth` are all 404. The query and fragment are ignored; an absolute-form target
//! (`http://host/health`) is routed by its path.
use std::convert::Infallible;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Bytes};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;

use super::limits::Refusal;
use super::metrics::{encode_metrics_as, MetricsFormat};
use crate::health::{FitPlan, HealthSource, HealthStatus};
use crate::purpose::Purpose;

/// Every response's body: complete in memory, so hyper sends it with a Content-Length.
pub(crate) type ResponseBody = Full<Bytes>;

/// Methods the routes answer; the `Allow` of a 405.
const ALLOW: &str = "GET, HEAD";

const JSON: &str = "application/json";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Health,
    Live,
    Ready,
    Metrics,
    Plan,
}

impl Route {
    fn find(path: &str) -> Option<Route> {
        match path {
            "/health" => Some(Route::Health),
            "/health/live" => Some(Route::Live),
            "/health/ready" => Some(Route::Ready),
            "/metrics" => Some(Route::Metrics),
            "/plan" => Some(Route::Plan),
            _ => None,
        }
    }
}

/// The innermost service: reads and drops the request's body (the limits layer has already
/// checked its declared length), so that the connection can carry the next request, then
/// answers. A body cut short by the client is a 400.
pub(crate) async fn serve<B>(
    source: Arc<dyn HealthSource>,
    request: Request<B>,
) -> Result<Response<ResponseBody>, Infallible>
where
    B: Body,
{
    let (head, body) = request.into_parts();
    if discard(body).await.is_err() {
        return Ok(Refusal::new(StatusCode::BAD_REQUEST, "request body cut short").response());
    }
    let accept = head.headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let request = Asked { path: head.uri.path(), query: head.uri.query(), accept };
    Ok(respond(&head.method, &request, source.as_ref()))
}

/// Reads `body` to its end, keeping nothing.
async fn discard<B: Body>(body: B) -> Result<(), B::Error> {
    let mut body = std::pin::pin!(body);
    while let Some(frame) = body.frame().await {
        frame?;
    }
    Ok(())
}

/// The answer to `method path`. HEAD gets GET's answer; hyper sends its headers (with the
/// Content-Length) and leaves the body out. A panic in the source or a handler becomes a 500
/// here, except on `/health/live`: only `report.live == false` (R3) makes the process dead,
/// and a source that cannot produce a report is an error of the other routes, not a reason
/// for Kubernetes to restart the worker. The request's `Accept` chooses the format of
/// `/metrics`; its query is read by `/plan` only.
pub(crate) fn respond(method: &Method, request: &Asked<'_>, source: &dyn HealthSource) -> Response<ResponseBody> {
    let path = request.path;
    let Some(route) = Route::find(path) else {
        return error(StatusCode::NOT_FOUND, "not found; try /health, /health/live, /health/ready, /metrics or /plan");
    };
    if method != Method::GET && method != Method::HEAD {
        let mut response = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        response.headers_mut().insert(header::ALLOW, HeaderValue::from_static(ALLOW));
        return response;
    }
    panic::catch_unwind(AssertUnwindSafe(|| handle(route, request, source))).unwrap_or_else(|_| {
        tracing::error!(
            actor = crate::events::ACTOR_WORKER,
            action = "http_request",
            target = path,
            error_kind = "panic",
            human = "A health handler panicked"
        );
        match route {
            Route::Live => json(StatusCode::OK, &serde_json::json!({ "status": "alive" })),
            _ => error(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
        }
    })
}

/// What of a request the routes read.
pub(crate) struct Asked<'a> {
    pub(crate) path: &'a str,
    pub(crate) query: Option<&'a str>,
    pub(crate) accept: Option<&'a str>,
}

fn handle(route: Route, request: &Asked<'_>, source: &dyn HealthSource) -> Response<ResponseBody> {
    if route == Route::Plan {
        // The arguments are judged before the report is read: a bad query is the caller's error.
        return match plan_arguments(request.query) {
            Ok((bytes, purpose)) => json(StatusCode::OK, &FitPlan::for_report(&source.report(), bytes, purpose)),
            Err(e) => json(StatusCode::BAD_REQUEST, &serde_json::json!({ "error": e.to_json() })),
        };
    }
    let report = source.report();
    match route {
        Route::Live if report.live => json(StatusCode::OK, &serde_json::json!({ "status": "alive" })),
        Route::Live => json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({ "status": "dead", "last_error": report.last_error }),
        ),
        Route::Health => json(
            if report.status == HealthStatus::Healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE },
            &report,
        ),
        Route::Ready => {
            let ready = report.ready();
            let body = Readiness {
                ready,
                status: report.status,
                resident: report.resident,
                violations: report.violations.len(),
            };
            json(if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, &body)
        }
        Route::Plan => unreachable!("answered above"),
        Route::Metrics => {
            let format = MetricsFormat::negotiate(request.accept);
            match encode_metrics_as(&report, format) {
                Ok(text) => {
                    let mut answer = response(StatusCode::OK, format.content_type(), text.into());
                    // Caches must not hand one scraper's format to another.
                    answer.headers_mut().insert(header::VARY, HeaderValue::from_static("accept"));
                    answer
                }
                Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
            }
        }
    }
}

/// `/plan`'s query: `bytes` (required: a count, or a size such as `2GiB`) and `purpose`
/// (ModelWeights by default; a purpose's name as `Purpose` spells it). Anything else, a missing or
/// repeated `bytes`, is VRAM-E007; a size of 0 or over 256 TiB VRAM-E003.
fn plan_arguments(query: Option<&str>) -> crate::error::Result<(u64, Purpose)> {
    use crate::error::Error;
    let (mut bytes, mut purpose) = (None, None);
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match key {
            "bytes" => &mut bytes,
            "purpose" => &mut purpose,
            _ => return Err(Error::InvalidArgument(format!("/plan takes bytes and purpose, not {key:?}"))),
        };
        if slot.replace(value).is_some() {
            return Err(Error::InvalidArgument(format!("/plan: {key} given twice")));
        }
    }
    let bytes = bytes.ok_or_else(|| Error::InvalidArgument("/plan needs bytes=N (e.g. /plan?bytes=2GiB)".into()))?;
    let bytes = crate::cli::parse_bytes(bytes).map_err(|e| Error::InvalidSize(format!("/plan: {e}")))?;
    crate::tracker::check_allocation(bytes, Purpose::ModelWeights, crate::purpose::AllocationKind::Device, "")?;
    let purpose = match purpose {
        None => Purpose::ModelWeights,
        Some(name) => name.parse::<Purpose>()?,
    };
    Ok((bytes, purpose))
}

/// `/health/ready`'s body: enough to see why a pod is out of rotation.
#[derive(Serialize)]
struct Readiness {
    ready: bool,
    status: HealthStatus,
    resident: bool,
    /// How many allocations the last check found off the device (`/health` names them).
    violations: usize,
}

/// `body` with `status` and the headers every answer carries.
pub(crate) fn response(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<ResponseBody> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::SERVER, HeaderValue::from_static("vramguard"));
    response
}

/// `value` as JSON; a 500 in the unlikely case it cannot be serialized.
pub(crate) fn json(status: StatusCode, value: &impl Serialize) -> Response<ResponseBody> {
    match serde_json::to_vec(value) {
        Ok(body) => response(status, JSON, body.into()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &format!("cannot serialize the response: {e}")),
    }
}

/// `{"error": reason}` with `status`.
pub(crate) fn error(status: StatusCode, reason: &str) -> Response<ResponseBody> {
    let body = serde_json::json!({ "error": reason }).to_string();
    response(status, JSON, body.into())
}
