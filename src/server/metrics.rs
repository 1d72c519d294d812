//! `/metrics`: the cached report in the OpenMetrics text format, through prometheus-client, or
//! in the Prometheus text format 0.0.4 when that is what the scraper asks for (`Accept`,
//! [`MetricsFormat::negotiate`]).
//!
//! The two formats differ in one way that matters here: OpenMetrics names a counter's family
//! without its `_total` suffix (`# TYPE vramguard_evictions counter`, sample
//! `vramguard_evictions_total`), the 0.0.4 format names it with the suffix. A 0.0.4 parser
//! (promtool, older scrapers) reading OpenMetrics finds a `_total` sample with no HELP or TYPE;
//! so 0.0.4 is what a client that does not ask for OpenMetrics gets.
//!
//! A custom `Collector` writes `ConstGauge`s and `ConstCounter`s straight from one
//! `HealthReport`: the figures are snapshots the health monitor already computed, so live
//! `Gauge`/`Counter` atomics would only be copies to keep in sync, and one report per scrape
//! keeps every figure of a scrape from the same check. Figures that are unknown (no budget, no
//! NVML process figure, no check yet) are left out rather than reported as 0.
use std::collections::BTreeMap;
use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{text, DescriptorEncoder, EncodeGaugeValue, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::error::{Error, Result};
use crate::health::{HealthReport, HealthStatus, INTEGRITY_CHECK, INTEGRITY_VIOLATION, WITNESS_CHECK};
use crate::purpose::Purpose;
use crate::witness::WitnessVerdict;

/// The Content-Type of what `encode_metrics` produces (OpenMetrics).
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The Content-Type of the Prometheus text format 0.0.4.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Which exposition format `/metrics` answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsFormat {
    /// OpenMetrics 1.0 text (`application/openmetrics-text`).
    OpenMetrics,
    /// The Prometheus text format 0.0.4 (`text/plain; version=0.0.4`).
    Text,
}

impl MetricsFormat {
    /// The format an `Accept` header asks for: OpenMetrics when `application/openmetrics-text`
    /// is acceptable (q > 0) and preferred at least as much as `text/plain`, else the text format
    /// 0.0.4 — also without a header, for `*/*`, and for an `Accept` that names neither (the
    /// exposition has no other form; a scraper is better served than refused).
    pub fn negotiate(accept: Option<&str>) -> MetricsFormat {
        let Some(accept) = accept else { return MetricsFormat::Text };
        let (mut open_metrics, mut text) = (0.0f64, 0.0f64);
        for range in accept.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                .map_or(Some(1.0), |(_, v)| v.trim().parse::<f64>().ok().filter(|q| (0.0..=1.0).contains(q)))
                .unwrap_or(0.0);
            match media.as_str() {
                "application/openmetrics-text" => open_metrics = open_metrics.max(q),
                "text/plain" => text = text.max(q),
                _ => {}
            }
        }
        if open_metrics > 0.0 && open_metrics >= text {
            MetricsFormat::OpenMetrics
        } else {
            MetricsFormat::Text
        }
    }

    /// The response's Content-Type.
    pub fn content_type(self) -> &'static str {
        match self {
            MetricsFormat::OpenMetrics => METRICS_CONTENT_TYPE,
            MetricsFormat::Text => TEXT_CONTENT_TYPE,
        }
    }
}

/// The report in `format`: [`encode_metrics`] as it is, or rewritten to the text format 0.0.4
/// (counter families named with their `_total`, no `# UNIT` lines, no `# EOF`). VRAM-E012 if
/// the encoder fails.
pub fn encode_metrics_as(report: &HealthReport, format: MetricsFormat) -> Result<String> {
    let open_metrics = encode_metrics(report)?;
    Ok(match format {
        MetricsFormat::OpenMetrics => open_metrics,
        MetricsFormat::Text => to_text_format(&open_metrics),
    })
}

/// OpenMetrics text as the 0.0.4 format. Only what this module writes needs handling: gauges and
/// counters, no exemplars, no `_created` samples.
fn to_text_format(open_metrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = open_metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(open_metrics.len());
    for line in open_metrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(name).then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// The report as an OpenMetrics text exposition (ends with `# EOF`). Metric names:
/// `vramguard_vram_used_bytes{purpose}`, `vramguard_vram_tracked_bytes`,
/// `vramguard_tracked_allocations`, `vramguard_budget_bytes`, `vramguard_budget_allocated_bytes`,
/// `vramguard_budget_available_bytes`, `vramguard_memory_pressure_level` (the four with a budget),
/// `vramguard_device_used_bytes`, `vramguard_device_total_bytes`,
/// `vramguard_device_info{ordinal,name,pci_bus_id}`, `vramguard_process_vram_known`,
/// `vramguard_process_vram_bytes`, `vramguard_untracked_vram_bytes`,
/// `vramguard_cuda_context_bytes`, `vramguard_pool_cache_bytes`, `vramguard_witness_control_bytes`,
/// `vramguard_untracked_remainder_bytes` (when known), `vramguard_leak_suspected{source}`,
/// `vramguard_resident`, `vramguard_healthy`, `vramguard_health_status{status}`,
/// `vramguard_residency_checks_total{result}`, `vramguard_residency_violations`,
/// `vramguard_integrity_violations`, `vramguard_not_judged_total{check}`,
/// `vramguard_bandwidth_violations`, `vramguard_witness_readings{verdict}`,
/// `vramguard_witness_host_ceiling_bytes_per_second`,
/// `vramguard_witness_slowest_read_bytes_per_second` (with the witness on),
/// `vramguard_last_check_timestamp_seconds`, `vramguard_last_check_duration_seconds` (after a
/// check), `vramguard_evictions_total`, `vramguard_ooms_total`,
/// `vramguard_eviction_reclaimed_bytes_total`, `vramguard_eviction_unreclaimed_bytes_total`,
/// `vramguard_loaded_slots`,
/// `vramguard_expected_slots`. Errors: VRAM-E012 if the encoder fails.
pub fn encode_metrics(report: &HealthReport) -> Result<String> {
    let mut registry = Registry::with_prefix("vramguard");
    registry.register_collector(Box::new(ReportCollector(report.clone())));
    let mut out = String::new();
    text::encode(&mut out, &registry).map_err(|_| Error::Internal("cannot encode the metrics".into()))?;
    Ok(out)
}

/// One report, written as metrics on each encode.
#[derive(Debug)]
struct ReportCollector(HealthReport);

impl Collector for ReportCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let r = &self.0;
        let bytes = Some(&Unit::Bytes);
        let seconds = Some(&Unit::Seconds);

        let mut family = e.encode_descriptor("vram_used", "Tracked VRAM by purpose.", bytes, MetricType::Gauge)?;
        for (purpose, value) in purpose_bytes(r) {
            ConstGauge::new(gauge_value(value)).encode(family.encode_family(&[("purpose", purpose.as_str())])?)?;
        }
        gauge(&mut e, "vram_tracked", "VRAM this worker tracks, all purposes.", bytes, r.vram_bytes_used)?;
        gauge(&mut e, "tracked_allocations", "Tracked allocations.", None, r.tracked_allocations)?;
        if let Some(budget) = &r.budget {
            gauge(&mut e, "budget", "Budget of the model slots.", bytes, budget.limit_bytes)?;
            gauge(&mut e, "budget_allocated", "Bytes charged to the slots' budget.", bytes, budget.allocated_bytes)?;
            gauge(&mut e, "budget_available", "Bytes left in the slots' budget.", bytes, budget.available_bytes)?;
            let help = "Memory pressure of the budget: 0 low, 1 medium, 2 high, 3 critical.";
            gauge(&mut e, "memory_pressure_level", help, None, u64::from(budget.pressure_level))?;
        }
        gauge(&mut e, "device_used", "Device-wide used VRAM (total - free).", bytes, r.device.used_bytes)?;
        gauge(&mut e, "device_total", "Device VRAM.", bytes, r.device.total_bytes)?;
        // Which GPU the figures are of: two workers on one host serve two GPUs of the same name.
        let help = "The GPU this worker serves, as labels (CUDA ordinal, product name, PCI bus id); always 1.";
        let mut family = e.encode_descriptor("device_info", help, None, MetricType::Gauge)?;
        let ordinal = r.device.ordinal.to_string();
        let (name, bus) = (label_value(&r.device.name), label_value(&r.device.pci_bus_id));
        let labels = [("ordinal", ordinal.as_str()), ("name", name.as_str()), ("pci_bus_id", bus.as_str())];
        ConstGauge::new(1i64).encode(family.encode_family(&labels)?)?;
        let help = "1 when NVML reported this process's VRAM, else 0 (the two figures below are then absent).";
        gauge(&mut e, "process_vram_known", help, None, u64::from(r.device.process_bytes.is_some()))?;
        if let Some(process) = r.device.process_bytes {
            gauge(&mut e, "process_vram", "This process's VRAM according to NVML.", bytes, process)?;
        }
        if let Some(untracked) = r.device.untracked_bytes {
            gauge(&mut e, "untracked_vram", "Process VRAM not tracked by vramguard.", bytes, untracked)?;
        }
        if let Some(ledger) = &r.ledger {
            let help = "The CUDA context's VRAM, measured when the device was opened (or at the first check).";
            gauge(&mut e, "cuda_context", help, bytes, ledger.cuda_context_bytes)?;
            let help = "vramguard's memory pool's cache of freed blocks (reserved - used).";
            gauge(&mut e, "pool_cache", help, bytes, ledger.pool_cache_bytes)?;
            let help = "The bandwidth witness's control buffer of device memory.";
            gauge(&mut e, "witness_control", help, bytes, ledger.witness_bytes)?;
            let help = "Untracked VRAM that neither the context nor vramguard's own memory explains.";
            gauge(&mut e, "untracked_remainder", help, bytes, ledger.remainder_bytes)?;
        }
        let help = "1 when the figure (the untracked remainder, or a purpose's tracked bytes) grew steadily over the leak trend's window.";
        let mut family = e.encode_descriptor("leak_suspected", help, None, MetricType::Gauge)?;
        let mut sources: Vec<String> = purpose_bytes(r).into_keys().collect();
        if r.ledger.is_some() {
            sources.push(crate::health::ledger::UNTRACKED.to_string());
        }
        for source in sources {
            let suspected = r.leak_suspected.iter().any(|s| purpose_label(&s.source) == source || s.source == source);
            ConstGauge::new(i64::from(suspected)).encode(family.encode_family(&[("source", source.as_str())])?)?;
        }
        gauge(
            &mut e,
            "resident",
            "1 when the last check found all checked memory on the device.",
            None,
            u64::from(r.resident),
        )?;
        gauge(&mut e, "healthy", "1 when the worker is healthy.", None, u64::from(r.status == HealthStatus::Healthy))?;
        let mut family =
            e.encode_descriptor("health_status", "1 for the current health status.", None, MetricType::Gauge)?;
        let statuses = [
            (HealthStatus::Starting, "starting"),
            (HealthStatus::Healthy, "healthy"),
            (HealthStatus::Unhealthy, "unhealthy"),
            (HealthStatus::Stale, "stale"),
        ];
        for (status, name) in statuses {
            ConstGauge::new(i64::from(r.status == status)).encode(family.encode_family(&[("status", name)])?)?;
        }
        let c = &r.counters;
        let help = "Residency checks by result: passed, violated (memory off the device), failed (could not run).";
        let mut family = e.encode_descriptor("residency_checks", help, None, MetricType::Counter)?;
        for (result, value) in
            [("passed", c.checks_passed), ("violated", c.checks_violated), ("failed", c.checks_failed)]
        {
            ConstCounter::new(value).encode(family.encode_family(&[("result", result)])?)?;
        }
        let integrity = r.violations.iter().filter(|v| v.error_kind == INTEGRITY_VIOLATION).count() as u64;
        let residency = r.violations.len() as u64 - integrity;
        gauge(&mut e, "residency_violations", "Allocations the last check found off the device.", None, residency)?;
        let help = "Model slots whose weights the last check found changed since they were loaded.";
        gauge(&mut e, "integrity_violations", help, None, integrity)?;
        let help = "Allocations and slots a check could judge neither way (a GPU too busy to tell, an error of their own), by check.";
        let mut family = e.encode_descriptor("not_judged", help, None, MetricType::Counter)?;
        for (check, value) in [(WITNESS_CHECK, c.witness_not_judged), (INTEGRITY_CHECK, c.integrity_not_judged)] {
            ConstCounter::new(value).encode(family.encode_family(&[("check", check)])?)?;
        }
        if let Some(witness) = &r.witness {
            let help =
                "Model weights the last check's bandwidth witness confirmed host-backed (within residency_violations).";
            let slow = witness.readings.iter().filter(|reading| reading.host_backed()).count() as u64;
            gauge(&mut e, "bandwidth_violations", help, None, slow)?;
            let help = "The last check's witness readings by verdict: resident, host_backed, not_judged.";
            let mut family = e.encode_descriptor("witness_readings", help, None, MetricType::Gauge)?;
            for (verdict, name) in [
                (WitnessVerdict::Resident, "resident"),
                (WitnessVerdict::HostBacked, "host_backed"),
                (WitnessVerdict::NotJudged, "not_judged"),
            ] {
                let count = witness.readings.iter().filter(|reading| reading.verdict == verdict).count() as u64;
                ConstGauge::new(gauge_value(count)).encode(family.encode_family(&[("verdict", name)])?)?;
            }
            let help = "Reads faster than this are device memory; slower ones are confirmed against the witness's control buffer.";
            gauge(&mut e, "witness_host_ceiling_bytes_per_second", help, None, witness.host_ceiling_gb_per_s * 1e9)?;
            let slowest = witness.readings.iter().map(|reading| reading.gb_per_s).filter(|v| *v > 0.0).reduce(f64::min);
            if let Some(slowest) = slowest {
                let help = "The slowest ModelWeights slice the witness read in the last check.";
                gauge(&mut e, "witness_slowest_read_bytes_per_second", help, None, slowest * 1e9)?;
            }
        }
        if let Some(at) = r.last_check_unix_secs.filter(|v| v.is_finite()) {
            gauge(&mut e, "last_check_timestamp", "Unix time of the last completed check.", seconds, at)?;
        }
        if let Some(took) = r.last_check_duration_secs.filter(|v| v.is_finite()) {
            gauge(&mut e, "last_check_duration", "Duration of the last completed check.", seconds, took)?;
        }
        counter(&mut e, "evictions", "Model slots evicted.", c.evictions)?;
        counter(&mut e, "ooms", "Out-of-memory errors seen.", c.ooms)?;
        let help = "Evicted or unloaded bytes the driver's free memory was seen to take back.";
        counter(&mut e, "eviction_reclaimed_bytes", help, c.eviction_reclaimed_bytes)?;
        let help = "Evicted or unloaded bytes the driver did not take back within the receipt's deadline.";
        counter(&mut e, "eviction_unreclaimed_bytes", help, c.eviction_unreclaimed_bytes)?;
        gauge(&mut e, "loaded_slots", "Model slots loaded.", None, r.slots.len() as u64)?;
        gauge(&mut e, "expected_slots", "Model slots the workload expects.", None, r.expected_slots as u64)?;
        Ok(())
    }
}

/// A u64 as a gauge: clamped to i64, which the text encoder writes (it refuses u64::MAX).
fn gauge_value(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

trait GaugeFigure {
    type Value: EncodeGaugeValue;
    fn value(self) -> Self::Value;
}

impl GaugeFigure for u64 {
    type Value = i64;
    fn value(self) -> i64 {
        gauge_value(self)
    }
}

impl GaugeFigure for f64 {
    type Value = f64;
    fn value(self) -> f64 {
        self
    }
}

fn gauge(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: impl GaugeFigure,
) -> fmt::Result {
    ConstGauge::new(value.value()).encode(e.encode_descriptor(name, help, unit, MetricType::Gauge)?)
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    ConstCounter::new(value).encode(e.encode_descriptor(name, help, None, MetricType::Counter)?)
}

/// Bytes per purpose label: every known purpose (0 when absent, so series do not vanish),
/// plus any other name in the report.
fn purpose_bytes(report: &HealthReport) -> BTreeMap<String, u64> {
    let mut out: BTreeMap<String, u64> = Purpose::ALL.iter().map(|p| (purpose_label(&p.to_string()), 0)).collect();
    for (name, bytes) in &report.by_purpose {
        *out.entry(purpose_label(name)).or_default() += bytes;
    }
    out
}

/// Free text as a label value: the encoder writes values as given, and the exposition formats
/// (0.0.4 and OpenMetrics alike) end a value at an unescaped `"`, so a description with a quote or
/// a line break would break the whole scrape.
fn label_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// `ModelWeights` / `KVCache` / `model_weights` → `model_weights` / `kv_cache` / `model_weights`;
/// anything outside `[a-z0-9_]` becomes `_`, so a label value never needs escaping.
pub(crate) fn purpose_label(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev = i.checked_sub(1).map(|j| chars[j]);
            let next = chars.get(i + 1);
            let boundary = prev.is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit())
                || (prev.is_some_and(|p| p.is_ascii_uppercase()) && next.is_some_and(|n| n.is_ascii_lowercase()));
            if boundary && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
            out.push(c);
        } else {
            out.push('_');
        }
    }
    if out.is_empty() {
        out.push_str("unknown");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::DeviceReport;

    #[test]
    fn purpose_labels_are_snake_case() {
        assert_eq!(purpose_label("ModelWeights"), "model_weights");
        assert_eq!(purpose_label("KVCache"), "kv_cache");
        assert_eq!(purpose_label("IntermediateBuffers"), "intermediate_buffers");
        assert_eq!(purpose_label("Unknown"), "unknown");
        assert_eq!(purpose_label("kv_cache"), "kv_cache");
        assert_eq!(purpose_label("a\"b\\c d"), "a_b_c_d");
        assert_eq!(purpose_label(""), "unknown");
    }

    /// A quote, backslash or line break in free text (a GPU's name, an allocation's description)
    /// is escaped, so the scrape stays parseable; the 0.0.4 form carries the same escapes.
    #[test]
    fn free_text_labels_are_escaped() {
        let device = DeviceReport {
            ordinal: 1,
            name: "GPU \"x\" \\ y".into(),
            pci_bus_id: "0000:19:00.0".into(),
            ..DeviceReport::default()
        };
        let report = HealthReport::starting(device);
        let open_metrics = encode_metrics(&report).unwrap();
        let info = r#"vramguard_device_info{ordinal="1",name="GPU \"x\" \\ y",pci_bus_id="0000:19:00.0"} 1"#;
        assert!(open_metrics.contains(&format!("{info}\n")), "{open_metrics}");
        let text = to_text_format(&open_metrics);
        assert!(text.contains(info), "{text}");
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("vramguard_"), "a line of the exposition broke: {line:?}");
        }
    }

    /// Many allocations, some of the same description, some with quotes: the witness's series
    /// are a fixed set whatever the allocations are called (no label carries free text).
    #[test]
    fn witness_series_do_not_grow_with_the_allocations() {
        let reading = |id: u64, description: &str, verdict, gb_per_s| crate::witness::WitnessReading {
            id,
            description: description.into(),
            kind: "Device".into(),
            bytes: 1 << 30,
            offset: 0,
            slice_bytes: 1 << 28,
            gb_per_s,
            control_gb_per_s: None,
            windows: 0,
            verdict,
            reason: None,
        };
        let mut report = HealthReport::starting(DeviceReport::default());
        let readings: Vec<_> = (0..50)
            .map(|id| reading(id, if id % 2 == 0 { "layer \"x\"" } else { "layer" }, WitnessVerdict::Resident, 2500.0))
            .chain([
                reading(50, "kv", WitnessVerdict::NotJudged, 60.0),
                reading(51, "w", WitnessVerdict::HostBacked, 45.0),
            ])
            .collect();
        report.witness = Some(crate::health::WitnessReport {
            device_gb_per_s: 3000.0,
            host_gb_per_s: 51.0,
            host_ceiling_gb_per_s: 102.0,
            smallest_judged_bytes: 1 << 20,
            too_small: 3,
            device_bytes: 64 << 20,
            full_pass_checks: 4,
            not_judging: None,
            readings,
        });
        let text = encode_metrics(&report).unwrap();
        let witness_lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("vramguard_witness") || l.starts_with("vramguard_bandwidth"))
            .collect();
        assert_eq!(
            witness_lines,
            [
                "vramguard_bandwidth_violations 1",
                "vramguard_witness_readings{verdict=\"resident\"} 50",
                "vramguard_witness_readings{verdict=\"host_backed\"} 1",
                "vramguard_witness_readings{verdict=\"not_judged\"} 1",
                "vramguard_witness_host_ceiling_bytes_per_second 102000000000.0",
                "vramguard_witness_slowest_read_bytes_per_second 45000000000.0",
            ],
            "{text}"
        );
    }

    #[test]
    fn starting_report_encodes_without_unknown_figures() {
        let text = encode_metrics(&HealthReport::starting(DeviceReport::default())).unwrap();
        assert!(text.ends_with("# EOF\n"));
        assert!(text.contains("vramguard_vram_used_bytes{purpose=\"kv_cache\"} 0\n"));
        assert!(text.contains("vramguard_process_vram_known 0\n"));
        assert!(text.contains("vramguard_residency_checks_total{result=\"failed\"} 0\n"));
        assert!(text.contains("vramguard_health_status{status=\"starting\"} 1\n"));
        assert!(text.contains("vramguard_health_status{status=\"stale\"} 0\n"));
        for absent in
            ["vramguard_process_vram_bytes", "vramguard_budget_bytes", "vramguard_last_check_timestamp_seconds"]
        {
            assert!(!text.contains(absent), "{absent} in\n{text}");
        }
    }
}
