//! The operator kit (`deploy/`) checked as an operator will use it: `/metrics` passes Prometheus'
//! own linter, the alerting rules pass `promtool check rules` and their `promtool test rules` unit
//! tests, every metric the rules and the dashboard use is one the server exports, the dashboard is
//! valid JSON with unique panel ids, and the Kubernetes example parses and probes the paths and the
//! port the server serves. Needs `promtool` (scripts/setup.sh installs Debian's `prometheus`).
#[path = "support/http_client.rs"]
mod http_client;
#[path = "support/reports.rs"]
mod reports;

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde::Deserialize;

use vramguard::server::ServerConfig;

fn deploy(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy").join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(deploy(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `promtool args...` with `stdin`; a missing promtool is a failure that says how to get it.
fn promtool(args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(deploy("prometheus"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("promtool: {e}; run ./scripts/setup.sh (it installs Debian's prometheus package)"));
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// `/metrics` of a server whose report has every family, as a scraper asking `accept` gets it.
fn served_metrics(accept: Option<&str>) -> String {
    let server = reports::serve(reports::every_family());
    let headers: Vec<(&str, &str)> = accept.map(|a| vec![("Accept", a)]).unwrap_or_default();
    let response = http_client::get_with(server.local_addr(), "/metrics", &headers);
    assert_eq!(response.status, 200);
    response.text()
}

/// The sample names of an exposition.
fn sample_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect()
}

/// Every `vramguard_*` name in `text`.
fn metric_names_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("vramguard_") {
        let name: String =
            rest[at..].chars().take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_').collect();
        rest = &rest[at + name.len()..];
        names.insert(name);
    }
    names
}

/// The family names the metrics module can write: the first argument of each `gauge(&mut e, ..)`,
/// `counter(&mut e, ..)` and `encode_descriptor(..)` in its source.
fn families_in_the_source() -> BTreeSet<String> {
    let source = read("../src/server/metrics.rs");
    let mut names = BTreeSet::new();
    for call in ["gauge(&mut e, ", "counter(&mut e, ", "encode_descriptor("] {
        let mut rest = source.as_str();
        while let Some(at) = rest.find(call) {
            rest = rest[at + call.len()..].trim_start();
            if let Some(literal) = rest.strip_prefix('"') {
                names.insert(literal[..literal.find('"').unwrap()].to_string());
            }
        }
    }
    names
}

/// The report promtool checks has every family the server can write, also those added later: a
/// family missing from `every_family()` is a family promtool never saw.
#[test]
fn the_promtool_report_exposes_every_family_the_source_can_write() {
    let exposition = served_metrics(Some("application/openmetrics-text"));
    let families: BTreeSet<String> = exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE vramguard_")?.split(' ').next())
        .map(str::to_string)
        .collect();
    let written = families_in_the_source();
    assert!(written.len() >= 30, "the scan found too few families: {written:?}");
    let missing: Vec<&String> = written
        .iter()
        .filter(|name| {
            !families.iter().any(|f| f == *name || f.strip_prefix(name.as_str()).is_some_and(|u| u.starts_with('_')))
        })
        .collect();
    assert!(missing.is_empty(), "families the source writes but every_family() lacks: {missing:?}\n{exposition}");
}

#[test]
fn metrics_in_the_text_format_pass_promtool_with_no_finding() {
    let exposition = served_metrics(None);
    let output = promtool(&["check", "metrics"], &exposition);
    assert!(output.status.success() && text(&output).trim().is_empty(), "{}\n{exposition}", text(&output));
}

/// promtool parses only the 0.0.4 format; on OpenMetrics it can differ only where the formats
/// do: a counter's HELP names the family without `_total`, so promtool finds its `_total` sample
/// without help text. Nothing else may be found.
#[test]
fn metrics_in_openmetrics_differ_for_promtool_only_in_the_counters_naming() {
    let exposition = served_metrics(Some("application/openmetrics-text"));
    assert!(exposition.ends_with("# EOF\n"), "{exposition}");
    let output = promtool(&["check", "metrics"], &exposition);
    let findings: BTreeSet<String> = text(&output).lines().map(str::to_string).collect();
    let counters: BTreeSet<String> = exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .map(|family| format!("{family}_total no help text"))
        .collect();
    assert_eq!(counters.len(), 6, "{exposition}");
    assert_eq!(findings, counters, "{exposition}");
}

#[test]
fn alerting_rules_pass_promtool_and_their_unit_tests() {
    let check = promtool(&["check", "rules", "vramguard-alerts.yml"], "");
    assert!(check.status.success() && text(&check).contains("SUCCESS: 9 rules found"), "{}", text(&check));
    let tests = promtool(&["test", "rules", "vramguard-alerts.test.yml"], "");
    assert!(tests.status.success() && text(&tests).contains("SUCCESS"), "{}", text(&tests));
}

#[test]
fn every_metric_the_rules_and_the_dashboard_use_is_exported() {
    let exported = sample_names(&served_metrics(None));
    for file in
        ["prometheus/vramguard-alerts.yml", "prometheus/vramguard-alerts.test.yml", "grafana/vramguard-dashboard.json"]
    {
        let used = metric_names_in(&read(file));
        assert!(!used.is_empty(), "{file} uses no metric");
        let missing: Vec<_> = used.difference(&exported).collect();
        assert!(
            missing.is_empty(),
            "{file} uses metrics the server does not export: {missing:?}\nexported: {exported:?}"
        );
    }
}

/// Panels and the panels of rows, depth first.
fn panels(value: &serde_json::Value) -> Vec<&serde_json::Value> {
    let mut out = Vec::new();
    for panel in value["panels"].as_array().into_iter().flatten() {
        out.push(panel);
        out.extend(panels(panel));
    }
    out
}

#[test]
fn the_dashboard_is_valid_json_with_unique_panel_ids_and_a_query_per_panel() {
    let dashboard: serde_json::Value = serde_json::from_str(&read("grafana/vramguard-dashboard.json")).expect("JSON");
    let all = panels(&dashboard);
    assert!(all.len() >= 10, "{} panels", all.len());
    let mut ids = HashSet::new();
    for panel in &all {
        let id = panel["id"].as_u64().unwrap_or_else(|| panic!("panel without an id: {panel}"));
        assert!(ids.insert(id), "panel id {id} twice");
        assert!(panel["title"].as_str().is_some_and(|t| !t.is_empty()), "{panel}");
        if panel["type"] != "row" {
            let targets = panel["targets"].as_array().unwrap_or_else(|| panic!("no targets: {panel}"));
            assert!(targets.iter().all(|t| t["expr"].as_str().is_some_and(|e| e.contains("vramguard_"))), "{panel}");
        }
    }
}

#[test]
fn the_kubernetes_example_parses_and_probes_what_the_server_serves() {
    let text = read("kubernetes/vramguard-worker.yaml");
    let documents: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|document| serde_yaml::Value::deserialize(document).expect("YAML"))
        .collect();
    let kind = |k: &str| documents.iter().find(|d| d["kind"] == k).unwrap_or_else(|| panic!("no {k}"));
    let port = ServerConfig::default().port;
    let pod = &kind("Deployment")["spec"]["template"];
    let container = &pod["spec"]["containers"][0];
    let args: Vec<&str> = container["args"].as_sequence().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    let after = |flag: &str| args.iter().position(|a| *a == flag).map(|i| args[i + 1]);
    assert_eq!(args[0], "serve");
    assert_eq!(after("--port"), Some(port.to_string().as_str()));
    assert_eq!(after("--bind"), Some("0.0.0.0"), "a probe from the kubelet needs a non-loopback bind");
    assert_eq!(container["ports"][0]["containerPort"].as_u64(), Some(u64::from(port)));
    assert_eq!(pod["metadata"]["annotations"]["prometheus.io/port"].as_str(), Some(port.to_string().as_str()));
    // The probes ask paths the server answers, on its port.
    let server = reports::serve(reports::healthy());
    for (probe, path) in
        [("livenessProbe", "/health/live"), ("readinessProbe", "/health/ready"), ("startupProbe", "/health/live")]
    {
        let get = &container[probe]["httpGet"];
        assert_eq!((get["path"].as_str(), get["port"].as_u64()), (Some(path), Some(u64::from(port))), "{probe}");
        assert_eq!(http_client::get(server.local_addr(), path).status, 200, "{path}");
    }
    let metrics_path = pod["metadata"]["annotations"]["prometheus.io/path"].as_str().unwrap();
    assert_eq!(kind("ServiceMonitor")["spec"]["endpoints"][0]["path"].as_str(), Some(metrics_path));
    assert_eq!(http_client::get(server.local_addr(), metrics_path).status, 200);
    // The Service is named after the scrape job the alerting rules expect.
    assert_eq!(kind("Service")["metadata"]["name"].as_str(), Some("vramguard"));
    assert!(read("prometheus/vramguard-alerts.yml").contains("up{job=\"vramguard\"}"));
}
