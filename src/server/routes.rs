//! The four routes. Each reads the cached report (`HealthSource::report`) and nothing else:
//! no CUDA, no waiting for a check, so a probe answers even while a check is running.
use std::panic::{self, AssertUnwindSafe};

use serde::Serialize;
use tiny_http::Method;

use super::metrics::{encode_metrics, METRICS_CONTENT_TYPE};
use super::reply::Reply;
use crate::health::{HealthSource, HealthStatus};

/// Methods the routes answer; the `Allow` of a 405.
const ALLOW: &str = "GET, HEAD";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Health,
    Live,
    Ready,
    Metrics,
}

impl Route {
    fn find(path: &str) -> Option<Route> {
        match path {
            "/health" => Some(Route::Health),
            "/health/live" => Some(Route::Live),
            "/health/ready" => Some(Route::Ready),
            "/metrics" => Some(Route::Metrics),
            _ => None,
        }
    }
}

/// The reply to `method path`. A panic in the source or a handler becomes a 500 here, so it
/// never reaches the worker thread.
pub(crate) fn respond(method: &Method, path: &str, source: &dyn HealthSource) -> Reply {
    let Some(route) = Route::find(path) else {
        return Reply::error(404, "not found; try /health, /health/live, /health/ready or /metrics");
    };
    if !matches!(method, Method::Get | Method::Head) {
        return Reply { allow: Some(ALLOW), ..Reply::error(405, "method not allowed") };
    }
    panic::catch_unwind(AssertUnwindSafe(|| handle(route, source))).unwrap_or_else(|_| {
        tracing::error!(actor = crate::events::ACTOR_WORKER, action = "http_request", target = path, error_kind = "panic", human = "A health handler panicked; answered 500");
        Reply::error(500, "internal error")
    })
}

fn handle(route: Route, source: &dyn HealthSource) -> Reply {
    match route {
        // The process answers: that is all liveness means. The report is not even read.
        Route::Live => Reply::json(200, &serde_json::json!({ "status": "alive" })),
        Route::Health => {
            let report = source.report();
            Reply::json(if report.status == HealthStatus::Healthy { 200 } else { 503 }, &report)
        }
        Route::Ready => {
            let report = source.report();
            let ready = report.ready();
            let body = Readiness { ready, status: report.status, resident: report.resident, violations: report.violations.len() };
            Reply::json(if ready { 200 } else { 503 }, &body)
        }
        Route::Metrics => match encode_metrics(&source.report()) {
            Ok(text) => Reply { status: 200, content_type: METRICS_CONTENT_TYPE, body: text.into_bytes(), allow: None },
            Err(e) => Reply::error(500, &e.to_string()),
        },
    }
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
