//! The HTTP endpoint (S2–S4) over real loopback sockets, CPU only: routes and status codes,
//! the JSON and OpenMetrics bodies, and what a hostile or idle client can and cannot do.
//! The reports here are built by hand: they are the input under test.
#[path = "support/http_client.rs"]
mod http_client;
#[path = "support/reports.rs"]
mod reports;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

use http_client::{closed_by_server, connect, get, get_with, parse_one, parse_response, request, send_raw, Connection};
use reports::{config, device, healthy, serve, serve_with, unhealthy, Fixed};
use vramguard::health::{DeviceReport, HealthReport, HealthSource, HealthStatus};
use vramguard::server::{HealthServer, MetricsFormat, ServerConfig, METRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE};
use vramguard::Error;

// ---------------------------------------------------------------------------------------------
// Fixtures

struct Panicking;

impl HealthSource for Panicking {
    fn report(&self) -> HealthReport {
        panic!("the source is broken");
    }
}

// ---------------------------------------------------------------------------------------------
// Routes

#[test]
fn healthy_is_200_with_the_whole_report_as_json() {
    let server = serve(healthy());
    let response = get(server.local_addr(), "/health");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("Content-Type"), Some("application/json"));
    let body = response.json();
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["resident"], true);
    assert_eq!(body["vram_bytes_used"], 3_500_000);
    assert_eq!(body["last_check_secs"], 1.5);
    assert_eq!(body["violations"], serde_json::json!([]));
    assert_eq!(body["by_purpose"]["KVCache"], 400_000);
    assert_eq!(body["budget"]["pressure"], "medium");
    assert_eq!(body["budget"]["limit_bytes"], 8_000_000);
    assert_eq!(body["slots"][0]["name"], "E1");
    assert_eq!(body["device"]["total_bytes"], 80_000_000_000u64);
    assert!(body["device"]["process_bytes"].is_null(), "unknown process VRAM is null, not 0");
    assert!(body["device"]["untracked_bytes"].is_null());
    assert!(body["last_error"].is_null());
    assert_eq!(body["counters"]["checks_passed"], 41);
    // The body is exactly the report's serialization.
    assert_eq!(body, serde_json::to_value(healthy()).unwrap());
}

#[test]
fn unhealthy_is_503_naming_the_violation_and_not_ready() {
    let server = serve(unhealthy());
    let health = get(server.local_addr(), "/health");
    assert_eq!(health.status, 503);
    let body = health.json();
    assert_eq!(body["status"], "unhealthy");
    assert_eq!(body["resident"], false);
    assert_eq!(body["violations"][0]["description"], "layer 3 weights");
    assert_eq!(body["violations"][0]["reason"], "not device memory (memory type Managed)");

    let ready = get(server.local_addr(), "/health/ready");
    assert_eq!(ready.status, 503);
    assert_eq!(
        ready.json(),
        serde_json::json!({ "ready": false, "status": "unhealthy", "resident": false, "violations": 1 })
    );
}

#[test]
fn starting_is_503_everywhere_but_live() {
    let server = serve(HealthReport::starting(device()));
    let health = get(server.local_addr(), "/health");
    assert_eq!(health.status, 503);
    assert_eq!(health.json()["status"], "starting");
    assert!(health.json()["last_check_secs"].is_null());
    assert_eq!(get(server.local_addr(), "/health/ready").status, 503);
    assert_eq!(get(server.local_addr(), "/health/live").status, 200);
}

#[test]
fn ready_needs_healthy_and_resident() {
    let server = serve(healthy());
    let ready = get(server.local_addr(), "/health/ready");
    assert_eq!(ready.status, 200);
    assert_eq!(
        ready.json(),
        serde_json::json!({ "ready": true, "status": "healthy", "resident": true, "violations": 0 })
    );

    let not_resident = serve(HealthReport { resident: false, ..healthy() });
    assert_eq!(get(not_resident.local_addr(), "/health/ready").status, 503);
}

#[test]
fn live_is_200_whatever_the_verdict() {
    let stale = HealthReport { status: HealthStatus::Stale, ..healthy() };
    for report in [healthy(), unhealthy(), stale, HealthReport::starting(device())] {
        let server = serve(report);
        let live = get(server.local_addr(), "/health/live");
        assert_eq!(live.status, 200);
        assert_eq!(live.json(), serde_json::json!({ "status": "alive" }));
    }
    // Not even a broken source stops liveness: only a report that says so does.
    let server = HealthServer::start(config(), Arc::new(Panicking)).unwrap();
    assert_eq!(get(server.local_addr(), "/health/live").status, 200);
}

#[test]
fn live_is_503_with_the_error_once_the_report_says_dead() {
    let error = serde_json::json!({ "code": "VRAM-E018", "message": "VRAM-E018: illegal address" });
    let dead =
        HealthReport { live: false, status: HealthStatus::Unhealthy, last_error: Some(error.clone()), ..healthy() };
    let server = serve(dead);
    let live = get(server.local_addr(), "/health/live");
    assert_eq!(live.status, 503);
    assert_eq!(live.json(), serde_json::json!({ "status": "dead", "last_error": error }));
    assert_eq!(get(server.local_addr(), "/health").status, 503);
}

#[test]
fn stale_is_503_on_health_and_ready_and_a_status_in_metrics() {
    let server = serve(HealthReport { status: HealthStatus::Stale, ..healthy() });
    let health = get(server.local_addr(), "/health");
    assert_eq!((health.status, health.json()["status"].as_str()), (503, Some("stale")));
    let ready = get(server.local_addr(), "/health/ready");
    assert_eq!((ready.status, ready.json()["ready"].as_bool()), (503, Some(false)));
    let samples = scrape(&server);
    assert_eq!(value(&samples, "vramguard_health_status", &[("status", "stale")]), Some(1.0));
    assert_eq!(value(&samples, "vramguard_health_status", &[("status", "healthy")]), Some(0.0));
    assert_eq!(value(&samples, "vramguard_healthy", &[]), Some(0.0));
}

#[test]
fn the_report_is_read_on_each_request() {
    let source = Arc::new(Fixed(Mutex::new(HealthReport::starting(device()))));
    let server = HealthServer::start(config(), source.clone()).unwrap();
    assert_eq!(get(server.local_addr(), "/health").status, 503);
    *source.0.lock().unwrap() = healthy();
    assert_eq!(get(server.local_addr(), "/health").status, 200);
}

#[test]
fn unknown_paths_are_404_and_query_strings_are_ignored() {
    let server = serve(healthy());
    for path in ["/", "/healthz", "/health/", "/metrics/x", "/HEALTH"] {
        let response = get(server.local_addr(), path);
        assert_eq!(response.status, 404, "{path}");
        assert_eq!(response.header("Content-Type"), Some("application/json"));
    }
    assert_eq!(get(server.local_addr(), "/health?verbose=1").status, 200);
    assert_eq!(get(server.local_addr(), "/metrics?name[]=x").status, 200);
}

#[test]
fn other_methods_are_405_with_allow() {
    let server = serve(healthy());
    for path in ["/health", "/health/live", "/health/ready", "/metrics"] {
        for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
            let response = request(server.local_addr(), method, path);
            assert_eq!(response.status, 405, "{method} {path}");
            let allow = response.header("Allow").unwrap_or_else(|| panic!("{method} {path}: no Allow"));
            assert!(allow.split(',').any(|m| m.trim() == "GET"), "Allow: {allow}");
        }
    }
}

#[test]
fn head_answers_like_get_without_a_body() {
    let server = serve(unhealthy());
    for path in ["/health", "/health/ready", "/metrics"] {
        let get = get(server.local_addr(), path);
        let raw = send_raw(
            server.local_addr(),
            format!("HEAD {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .unwrap();
        let head = parse_response(&raw, true).unwrap();
        assert_eq!(head.status, get.status, "{path}");
        assert_eq!(head.header("Content-Type"), get.header("Content-Type"));
        assert_eq!(head.header("Content-Length"), Some(get.body.len().to_string().as_str()));
        let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert_eq!(raw.len(), head_end, "{path}: HEAD sent a body");
    }
}

#[test]
fn a_panicking_source_gives_500_and_the_server_keeps_serving() {
    let server = HealthServer::start(config(), Arc::new(Panicking)).unwrap();
    for path in ["/health", "/health/ready", "/metrics", "/health"] {
        assert_eq!(get(server.local_addr(), path).status, 500, "{path}");
    }
    assert_eq!(get(server.local_addr(), "/health/live").status, 200);
}

#[test]
fn a_kept_alive_connection_serves_several_requests_even_pipelined() {
    let server = serve(healthy());
    let mut connection = Connection::open(server.local_addr()).unwrap();
    connection.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(connection.read_response(false).unwrap().status, 200);
    connection.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(connection.read_response(false).unwrap().status, 200);
    // Three at once, one with a small body to skip.
    connection
        .send(b"GET /health/ready HTTP/1.1\r\nHost: x\r\n\r\nPOST /health HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET /nope HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert_eq!(connection.read_response(false).unwrap().status, 200);
    assert_eq!(connection.read_response(false).unwrap().status, 405);
    assert_eq!(connection.read_response(false).unwrap().status, 404);
    assert!(closed_by_server(connection.stream()), "Connection: close was not honoured");
}

#[test]
fn http_1_0_is_answered_and_closed() {
    let server = serve(healthy());
    let raw = send_raw(server.local_addr(), b"GET /health HTTP/1.0\r\n\r\n").unwrap();
    let response = parse_response(&raw, false).unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.version, "HTTP/1.0");
}

#[test]
fn many_clients_at_once_are_all_served() {
    let server = serve(healthy());
    let addr = server.local_addr();
    let clients: Vec<_> = (0..16)
        .map(|i| {
            thread::spawn(move || {
                (0..10)
                    .map(|j| get(addr, ["/health", "/metrics", "/health/ready"][(i + j) % 3]).status)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for client in clients {
        assert!(client.join().unwrap().iter().all(|&s| s == 200));
    }
}

// ---------------------------------------------------------------------------------------------
// /metrics

/// One sample line.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ if text.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c)) => text.parse().ok(),
        _ => None,
    }
}

/// `{k="v",k2="v2"}` → map; None when malformed.
fn parse_labels(text: &str) -> Option<BTreeMap<String, String>> {
    let inner = text.strip_prefix('{')?.strip_suffix('}')?;
    let mut labels = BTreeMap::new();
    let mut rest = inner;
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"")?;
        if !valid_label_name(name) {
            return None;
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => value.push(match chars.next()?.1 {
                    'n' => '\n',
                    c @ ('\\' | '"') => c,
                    _ => return None,
                }),
                (_, c) => value.push(c),
            }
        };
        if labels.insert(name.to_owned(), value).is_some() {
            return None;
        }
        rest = &after[end + 1..];
        rest = match rest.strip_prefix(',') {
            Some(next) if !next.is_empty() => next,
            Some(_) => return None,
            None if rest.is_empty() => rest,
            None => return None,
        };
    }
    Some(labels)
}

/// Checks every line of an OpenMetrics text exposition and returns the samples.
fn parse_exposition(text: &str) -> Vec<Sample> {
    let lines: Vec<&str> = text.split('\n').collect();
    assert_eq!(lines.last(), Some(&""), "the exposition ends with a newline");
    let lines = &lines[..lines.len() - 1];
    assert_eq!(lines.last(), Some(&"# EOF"), "the exposition ends with # EOF");
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if *line == "# EOF" {
            assert_eq!(i, lines.len() - 1, "# EOF before the end");
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or_else(|| panic!("HELP without text: {line}"));
            assert!(valid_metric_name(name) && !help.is_empty(), "{line}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or_else(|| panic!("TYPE without type: {line}"));
            assert!(valid_metric_name(name), "{line}");
            assert!(
                ["gauge", "counter", "info", "stateset", "histogram", "summary", "unknown"].contains(&kind),
                "{line}"
            );
            assert!(types.insert(name.to_owned(), kind.to_owned()).is_none(), "family declared twice: {line}");
        } else if let Some(rest) = line.strip_prefix("# UNIT ") {
            let (name, unit) = rest.split_once(' ').unwrap_or_else(|| panic!("UNIT without unit: {line}"));
            assert!(name.ends_with(&format!("_{unit}")), "a unit's family name ends with it: {line}");
        } else {
            assert!(!line.starts_with('#'), "unknown comment line: {line}");
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("sample without value: {line}"));
            let value = parse_value(value).unwrap_or_else(|| panic!("not a float: {line}"));
            let (name, labels) = match series.find('{') {
                Some(brace) => {
                    (&series[..brace], parse_labels(&series[brace..]).unwrap_or_else(|| panic!("bad labels: {line}")))
                }
                None => (series, BTreeMap::new()),
            };
            assert!(valid_metric_name(name), "bad name: {line}");
            assert!(name.starts_with("vramguard_"), "prefix: {line}");
            let family = match name.strip_suffix("_total") {
                Some(base) if types.get(base).map(String::as_str) == Some("counter") => base,
                _ => name,
            };
            let kind = types.get(family).unwrap_or_else(|| panic!("sample without TYPE: {line}"));
            if kind == "counter" {
                assert!(name.ends_with("_total"), "counter samples end in _total: {line}");
            }
            samples.push(Sample { name: name.to_owned(), labels, value });
        }
    }
    samples
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let labels: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let found: Vec<_> = samples.iter().filter(|s| s.name == name && s.labels == labels).collect();
    assert!(found.len() <= 1, "{name} {labels:?} appears {} times", found.len());
    found.first().map(|s| s.value)
}

/// What Prometheus 2.x sends when it scrapes.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

fn scrape(server: &HealthServer) -> Vec<Sample> {
    let response = get_with(server.local_addr(), "/metrics", &[("Accept", PROMETHEUS_ACCEPT)]);
    assert_eq!(response.status, 200);
    assert_eq!(response.header("Content-Type"), Some(METRICS_CONTENT_TYPE));
    assert_eq!(METRICS_CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8");
    parse_exposition(&response.text())
}

#[test]
fn metrics_are_well_formed_and_equal_the_report() {
    let report = unhealthy();
    let server = serve(report.clone());
    let samples = scrape(&server);
    let v = |name: &str| value(&samples, name, &[]).unwrap_or_else(|| panic!("{name} missing"));
    let purpose = |p: &str| {
        value(&samples, "vramguard_vram_used_bytes", &[("purpose", p)]).unwrap_or_else(|| panic!("{p} missing"))
    };
    assert_eq!(purpose("model_weights"), 3_000_000.0);
    assert_eq!(purpose("kv_cache"), 400_000.0);
    assert_eq!(purpose("intermediate_buffers"), 100_000.0);
    assert_eq!(purpose("unknown"), 0.0, "every purpose has a series");
    assert_eq!(v("vramguard_vram_tracked_bytes"), report.vram_bytes_used as f64);
    assert_eq!(v("vramguard_tracked_allocations"), 7.0);
    assert_eq!(v("vramguard_budget_bytes"), 8_000_000.0);
    assert_eq!(v("vramguard_budget_allocated_bytes"), 3_000_000.0);
    assert_eq!(v("vramguard_budget_available_bytes"), 5_000_000.0);
    assert_eq!(v("vramguard_memory_pressure_level"), 1.0);
    assert_eq!(v("vramguard_device_used_bytes"), 5_000_000_000.0);
    assert_eq!(v("vramguard_device_total_bytes"), 80_000_000_000.0);
    let gpu = [("ordinal", "0"), ("name", "Test GPU"), ("pci_bus_id", "0000:19:00.0")];
    assert_eq!(value(&samples, "vramguard_device_info", &gpu), Some(1.0), "which GPU the figures are of");
    assert_eq!(v("vramguard_resident"), 0.0);
    assert_eq!(v("vramguard_healthy"), 0.0);
    assert_eq!(value(&samples, "vramguard_health_status", &[("status", "unhealthy")]), Some(1.0));
    assert_eq!(value(&samples, "vramguard_health_status", &[("status", "healthy")]), Some(0.0));
    let checks = |result: &str| value(&samples, "vramguard_residency_checks_total", &[("result", result)]);
    assert_eq!((checks("passed"), checks("violated"), checks("failed")), (Some(41.0), Some(2.0), Some(1.0)));
    assert_eq!(v("vramguard_residency_violations"), 1.0);
    assert_eq!(v("vramguard_last_check_timestamp_seconds"), 1_700_000_000.25);
    assert_eq!(v("vramguard_last_check_duration_seconds"), 0.004);
    assert_eq!(v("vramguard_evictions_total"), 3.0);
    assert_eq!(v("vramguard_ooms_total"), 4.0);
    assert_eq!(v("vramguard_loaded_slots"), 2.0);
    assert_eq!(v("vramguard_expected_slots"), 2.0);

    let healthy_server = serve(healthy());
    let samples = scrape(&healthy_server);
    assert_eq!(value(&samples, "vramguard_resident", &[]), Some(1.0));
    assert_eq!(value(&samples, "vramguard_healthy", &[]), Some(1.0));
    assert_eq!(value(&samples, "vramguard_residency_violations", &[]), Some(0.0));
}

#[test]
fn accept_chooses_the_exposition_format() {
    let cases = [
        (None, MetricsFormat::Text),
        (Some("*/*"), MetricsFormat::Text),
        (Some("text/plain"), MetricsFormat::Text),
        (Some("text/plain;version=0.0.4;q=0.9, application/openmetrics-text;q=0.5"), MetricsFormat::Text),
        (Some("application/json"), MetricsFormat::Text),
        (Some("application/openmetrics-text; q=0"), MetricsFormat::Text),
        (Some("application/openmetrics-text; q=nonsense"), MetricsFormat::Text),
        (Some(PROMETHEUS_ACCEPT), MetricsFormat::OpenMetrics),
        (Some("application/openmetrics-text"), MetricsFormat::OpenMetrics),
        (Some("Application/OpenMetrics-Text;version=1.0.0, text/plain;q=1"), MetricsFormat::OpenMetrics),
    ];
    for (accept, format) in cases {
        assert_eq!(MetricsFormat::negotiate(accept), format, "{accept:?}");
    }
}

#[test]
fn without_accept_metrics_are_the_text_format_with_counters_named_in_full() {
    let server = serve(unhealthy());
    let response = get(server.local_addr(), "/metrics");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("Content-Type"), Some(TEXT_CONTENT_TYPE));
    assert_eq!(response.header("Vary"), Some("accept"));
    let text = response.text();
    assert!(!text.contains("# EOF") && !text.contains("# UNIT "), "{text}");
    // Every sample's family has HELP and TYPE under the sample's own name (0.0.4's rule).
    for counter in ["vramguard_evictions_total", "vramguard_ooms_total", "vramguard_residency_checks_total"] {
        assert!(text.contains(&format!("# HELP {counter} ")), "{counter}: {text}");
        assert!(text.contains(&format!("# TYPE {counter} counter\n")), "{counter}: {text}");
    }
    assert!(text.contains("\nvramguard_evictions_total 3\n"), "{text}");
    assert!(text.contains("# TYPE vramguard_device_total_bytes gauge\n"), "{text}");
    // The same figures as the OpenMetrics form.
    let open_metrics = get_with(server.local_addr(), "/metrics", &[("Accept", "application/openmetrics-text")]);
    assert_eq!(open_metrics.header("Content-Type"), Some(METRICS_CONTENT_TYPE));
    let samples =
        |body: &str| -> Vec<String> { body.lines().filter(|l| !l.starts_with('#')).map(String::from).collect() };
    assert_eq!(samples(&text), samples(&open_metrics.text()));
}

#[test]
fn process_vram_is_reported_only_when_known() {
    let unknown = serve(healthy());
    let samples = scrape(&unknown);
    assert_eq!(value(&samples, "vramguard_process_vram_known", &[]), Some(0.0));
    assert_eq!(value(&samples, "vramguard_process_vram_bytes", &[]), None);
    assert_eq!(value(&samples, "vramguard_untracked_vram_bytes", &[]), None);

    let mut report = healthy();
    report.device.process_bytes = Some(4_000_000);
    report.device.untracked_bytes = Some(500_000);
    let known = serve(report);
    let samples = scrape(&known);
    assert_eq!(value(&samples, "vramguard_process_vram_known", &[]), Some(1.0));
    assert_eq!(value(&samples, "vramguard_process_vram_bytes", &[]), Some(4_000_000.0));
    assert_eq!(value(&samples, "vramguard_untracked_vram_bytes", &[]), Some(500_000.0));
}

#[test]
fn unknown_figures_are_left_out_before_the_first_check() {
    let server = serve(HealthReport::starting(DeviceReport::default()));
    let samples = scrape(&server);
    for absent in [
        "vramguard_budget_bytes",
        "vramguard_memory_pressure_level",
        "vramguard_last_check_timestamp_seconds",
        "vramguard_last_check_duration_seconds",
    ] {
        assert_eq!(value(&samples, absent, &[]), None, "{absent}");
    }
    assert_eq!(value(&samples, "vramguard_healthy", &[]), Some(0.0));
    assert_eq!(value(&samples, "vramguard_health_status", &[("status", "starting")]), Some(1.0));
}

// ---------------------------------------------------------------------------------------------
// Hostile and idle clients (S4)

#[test]
fn an_oversized_header_is_refused_while_others_are_served() {
    let server = serve(healthy());
    let addr = server.local_addr();
    // 16 KiB of header against the 8 KiB default: refused with 431.
    let big = format!("GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(16 * 1024));
    let refused = parse_response(&send_raw(addr, big.as_bytes()).unwrap(), false).expect("a refusal, not a reset");
    assert_eq!(refused.status, 431);

    // A client that never stops sending header bytes is cut off long before it is done,
    // and another client is served meanwhile.
    let (started, cut_off) = (mpsc::channel(), mpsc::channel());
    let flood = thread::spawn(move || {
        let mut stream = connect(addr).unwrap();
        stream.write_all(b"GET /health HTTP/1.1\r\nX-Flood: ").unwrap();
        started.0.send(()).unwrap();
        let chunk = vec![b'a'; 64 * 1024];
        let mut sent = 0usize;
        while sent < 256 << 20 {
            match stream.write(&chunk) {
                Ok(n) => sent += n,
                Err(_) => break,
            }
        }
        cut_off.0.send(sent).unwrap();
    });
    started.1.recv().unwrap();
    assert_eq!(get(addr, "/health").status, 200);
    let sent = cut_off.1.recv().unwrap();
    assert!(sent < 256 << 20, "the server read a 256 MiB header to the end");
    flood.join().unwrap();
    assert_eq!(get(addr, "/health").status, 200);
}

#[test]
fn an_oversized_body_is_refused_before_it_is_read() {
    let server = serve(healthy());
    // The body is announced but never sent: the answer cannot come from reading it.
    let mut stream = connect(server.local_addr()).unwrap();
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    assert_eq!(parse_response(&raw, false).expect("a response").status, 413);
    // A body that fits is read and skipped.
    let fits =
        send_raw(server.local_addr(), b"GET /health HTTP/1.1\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbody")
            .unwrap();
    assert_eq!(parse_response(&fits, false).unwrap().status, 200);
    // Chunked bodies are not taken: the size must be known before reading.
    let chunked = send_raw(
        server.local_addr(),
        b"GET /health HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbody\r\n0\r\n\r\n",
    )
    .unwrap();
    assert_eq!(parse_response(&chunked, false).unwrap().status, 411);
}

#[test]
fn an_overlong_request_line_is_414() {
    let server = serve(healthy());
    let line = format!("GET /{} HTTP/1.1\r\n\r\n", "x".repeat(20_000));
    let raw = send_raw(server.local_addr(), line.as_bytes()).unwrap();
    assert_eq!(parse_response(&raw, false).expect("a refusal").status, 414);
}

#[test]
fn the_limit_is_configurable() {
    let small = ServerConfig { max_request_bytes: 128, ..config() };
    let server = serve_with(small, healthy());
    assert_eq!(get(server.local_addr(), "/health").status, 200, "a short request fits in 128 bytes");
    let raw =
        send_raw(server.local_addr(), format!("GET /health HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(200)).as_bytes())
            .unwrap();
    assert_eq!(parse_response(&raw, false).unwrap().status, 431);
}

#[test]
fn garbage_is_400_or_closed_and_others_are_still_served() {
    let server = serve(healthy());
    let garbage: [&[u8]; 8] = [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", // a TLS ClientHello
        b"\x00\xff\xfe\x01\x02\r\n\r\n",
        b"hello world\r\n\r\n",
        b"GET /health\r\n\r\n",
        b"GET /health HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET /health HTTP/1.1\r\n folded: x\r\n\r\n",
        b"GET /health HTTP/9.9\r\n\r\n",
        b"GET /heal", // then the client gives up
    ];
    for bytes in garbage {
        let raw = send_raw(server.local_addr(), bytes).unwrap();
        if !raw.is_empty() {
            let response = parse_response(&raw, false).unwrap_or_else(|| panic!("{bytes:?}: not HTTP: {raw:?}"));
            assert!([400, 505].contains(&response.status), "{bytes:?}: {}", response.status);
        }
        assert_eq!(get(server.local_addr(), "/health").status, 200);
    }
}

#[test]
fn an_idle_client_is_dropped_and_does_not_block_others() {
    let quick = ServerConfig { request_timeout: Duration::from_millis(300), ..config() };
    let server = serve_with(quick, healthy());
    let mut idle = connect(server.local_addr()).unwrap();
    let mut half = connect(server.local_addr()).unwrap();
    half.write_all(b"GET /health HTTP/1.1\r\nHo").unwrap();
    assert_eq!(get(server.local_addr(), "/health").status, 200);
    // Silence is dropped without a word; half a request gets a 408.
    assert!(closed_by_server(&mut idle), "the idle client was not dropped");
    let mut raw = Vec::new();
    let _ = half.read_to_end(&mut raw);
    assert_eq!(parse_response(&raw, false).expect("a 408").status, 408);
}

#[test]
fn idle_clients_cannot_hold_the_only_connection_for_ever() {
    let one = ServerConfig { max_connections: 1, request_timeout: Duration::from_secs(600), ..config() };
    let server = serve_with(one, healthy());
    let _idle = (0..3).map(|_| connect(server.local_addr()).unwrap()).collect::<Vec<_>>();
    // Three silent clients, one connection allowed: the newest client is still served.
    assert_eq!(get(server.local_addr(), "/health").status, 200);
}

#[test]
fn past_the_bound_a_silent_connection_is_closed_and_a_new_client_served() {
    // Four connections allowed, held by silent clients that would wait ten minutes; more
    // arrive. Each newcomer closes the oldest silent one instead of queueing or being
    // refused, so the server never holds more than four and a probe always gets in.
    let four = ServerConfig { max_connections: 4, request_timeout: Duration::from_secs(600), ..config() };
    let server = serve_with(four, healthy());
    let mut clients: Vec<TcpStream> = (0..10).map(|_| connect(server.local_addr()).unwrap()).collect();
    assert_eq!(get(server.local_addr(), "/health/live").status, 200);
    for (i, client) in clients.iter_mut().enumerate().take(6) {
        assert!(closed_by_server(client), "client {i} of 10 is still open past the bound of 4");
    }
    // A kept-alive scraper that keeps asking is not the one evicted by newcomers.
    let mut scraper = Connection::open(server.local_addr()).unwrap();
    for _ in 0..3 {
        scraper.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(scraper.read_response(false).unwrap().status, 200);
        let _newcomer = connect(server.local_addr()).unwrap();
        assert_eq!(get(server.local_addr(), "/health").status, 200);
    }
    scraper.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(scraper.read_response(false).unwrap().status, 200, "the active scraper was evicted");
}

// ---------------------------------------------------------------------------------------------
// Lifecycle

#[test]
fn the_default_is_loopback_on_9400_with_bounded_requests() {
    let config = ServerConfig::default();
    assert_eq!(config.bind, IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(config.port, 9400);
    assert_eq!(config.max_request_bytes, 8 * 1024);
    assert_eq!(config.request_timeout, Duration::from_secs(5));
    assert_eq!(config.max_connections, 4096);
    let server = serve_with(ServerConfig { port: 0, ..config }, healthy());
    assert_eq!(server.local_addr().ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_ne!(server.local_addr().port(), 0);
}

#[test]
fn a_taken_port_is_an_io_error_naming_the_address() {
    let first = serve(healthy());
    let taken = ServerConfig { port: first.local_addr().port(), ..config() };
    let error = HealthServer::start(taken, Arc::new(Fixed(Mutex::new(healthy())))).unwrap_err();
    assert!(matches!(error, Error::Io(_)), "{error:?}");
    assert_eq!(error.code(), "VRAM-E017");
    assert!(error.to_string().contains(&first.local_addr().to_string()), "{error}");
}

#[test]
fn a_config_that_cannot_serve_is_refused() {
    let source = || Arc::new(Fixed(Mutex::new(healthy())));
    for bad in [
        ServerConfig { max_connections: 0, ..config() },
        ServerConfig { max_request_bytes: 10, ..config() },
        ServerConfig { max_request_bytes: usize::MAX, ..config() },
        ServerConfig { request_timeout: Duration::ZERO, ..config() },
        ServerConfig { request_timeout: Duration::MAX, ..config() },
    ] {
        let error = HealthServer::start(bad.clone(), source()).unwrap_err();
        assert!(matches!(error, Error::InvalidArgument(_)), "{bad:?}: {error:?}");
    }
}

#[test]
fn shutdown_joins_and_closes_the_port() {
    let server = serve(healthy());
    let addr = server.local_addr();
    assert_eq!(get(addr, "/health").status, 200);
    server.shutdown();
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(5)).is_err(), "{addr} still accepts after shutdown");
}

#[test]
fn shutdown_does_not_wait_for_idle_clients() {
    let patient = ServerConfig { request_timeout: Duration::from_secs(600), ..config() };
    let server = serve_with(patient, healthy());
    let addr = server.local_addr();
    let mut idle = connect(addr).unwrap();
    let mut kept = Connection::open(addr).unwrap();
    kept.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(kept.read_response(false).unwrap().status, 200);
    let (done, stopped) = mpsc::channel();
    let stopper = thread::spawn(move || {
        drop(server); // Drop stops like shutdown
        done.send(()).unwrap();
    });
    stopped.recv_timeout(Duration::from_secs(60)).expect("shutdown waited for idle clients");
    stopper.join().unwrap();
    assert!(closed_by_server(&mut idle));
    assert!(closed_by_server(kept.stream()));
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(5)).is_err());
}

#[test]
fn a_wildcard_bind_can_still_shut_down() {
    let any = ServerConfig { bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED), ..config() };
    let server = serve_with(any, healthy());
    let port = server.local_addr().port();
    let local = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    assert_eq!(get(local, "/health").status, 200);
    server.shutdown();
    assert!(TcpStream::connect_timeout(&local, Duration::from_secs(5)).is_err());
}

#[test]
fn responses_parse_with_the_test_client() {
    // The client's own check: pipelined responses split by Content-Length.
    let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
    let (first, used) = parse_one(raw, false).unwrap();
    assert_eq!((first.status, first.body.as_slice()), (200, &b"ok"[..]));
    let (second, _) = parse_one(&raw[used..], false).unwrap();
    assert_eq!(second.status, 404);
}
