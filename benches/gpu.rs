//! vramguard's Rust-side GPU benchmark: tracked `DeviceBuffer` allocation against raw CUDA, the
//! pool fast path, `/health` under load, and `vramguard check` without a GPU. Prints one table.
//! Built like the test executables (scripts/gpu-suite.sh) and run on the GPU host.
use std::ffi::c_void;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vramguard::health::{HealthConfig, HealthMonitor};
use vramguard::server::{HealthServer, ServerConfig};
use vramguard::{AllocationKind, Budget, BudgetedAllocator, Device, Purpose, Tracker};

// The CUDA runtime is linked statically into the crate: the raw baseline calls it directly.
extern "C" {
    fn cudaMalloc(ptr: *mut *mut c_void, size: usize) -> i32;
    fn cudaFree(ptr: *mut c_void) -> i32;
    fn cudaMallocAsync(ptr: *mut *mut c_void, size: usize, stream: *mut c_void) -> i32;
    fn cudaFreeAsync(ptr: *mut c_void, stream: *mut c_void) -> i32;
    fn cudaDeviceGetDefaultMemPool(pool: *mut *mut c_void, device: i32) -> i32;
    fn cudaMemPoolSetAttribute(pool: *mut c_void, attribute: i32, value: *mut c_void) -> i32;
    fn cudaDeviceSynchronize() -> i32;
}
const RELEASE_THRESHOLD: i32 = 4; // cudaMemPoolAttrReleaseThreshold

struct Row {
    measurement: String,
    ours: String,
    baseline: String,
    ratio: String,
    target: String,
    met: bool,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

fn micros(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e6
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 => format!("{} MiB", b >> 20),
        b => format!("{b} B"),
    }
}

fn raw_pair(bytes: u64) -> (f64, f64) {
    let mut ptr = std::ptr::null_mut();
    let start = Instant::now();
    // SAFETY: a valid out-pointer; the memory is freed at once.
    assert_eq!(unsafe { cudaMalloc(&mut ptr, bytes as usize) }, 0);
    let alloc = micros(start);
    let start = Instant::now();
    unsafe { cudaFree(ptr) };
    (alloc, micros(start))
}

fn device_allocation(rows: &mut Vec<Row>, tracker: &Tracker) {
    let allocator = BudgetedAllocator::new(tracker.clone(), Budget::new(4 << 30).unwrap());
    for (bytes, iterations) in [(256u64, 2000), (1 << 20, 2000), (64 << 20, 200), (1 << 30, 30)] {
        let (mut raw, mut tracked, mut budgeted, mut alloc, mut free) = (vec![], vec![], vec![], vec![], vec![]);
        for _ in 0..iterations {
            let (a, f) = raw_pair(bytes);
            raw.push(a + f);
            let start = Instant::now();
            let buffer = tracker.allocate(bytes, Purpose::ModelWeights, "bench").unwrap();
            let a = micros(start);
            let start = Instant::now();
            drop(buffer);
            let f = micros(start);
            tracked.push(a + f);
            alloc.push(a);
            free.push(f);
            let start = Instant::now();
            drop(allocator.allocate(bytes, Purpose::ModelWeights, "bench").unwrap());
            budgeted.push(micros(start));
        }
        let (raw, tracked, budgeted) = (median(raw), median(tracked), median(budgeted));
        let (alloc, free) = (median(alloc), median(free));
        rows.push(Row {
            measurement: format!("Device alloc+free {}: tracked / with budget", human(bytes)),
            ours: format!("{tracked:.1} us / {budgeted:.1} us (alloc {alloc:.1}, free {free:.1})"),
            baseline: format!("{raw:.1} us cudaMalloc+cudaFree"),
            ratio: format!("{:.3}x / {:.3}x", tracked / raw, budgeted / raw),
            target: "<= 1.05x; alloc < 1 ms, free < 0.5 ms".into(),
            met: tracked / raw <= 1.05 && budgeted / raw <= 1.05 && alloc < 1000.0 && free < 500.0,
        });
    }
}

fn pool_allocation(rows: &mut Vec<Row>, tracker: &Tracker) {
    // The baseline: the device's default pool with an unlimited release threshold.
    let mut pool = std::ptr::null_mut();
    let mut keep_all = u64::MAX;
    unsafe {
        cudaDeviceGetDefaultMemPool(&mut pool, tracker.device() as i32);
        cudaMemPoolSetAttribute(pool, RELEASE_THRESHOLD, &mut keep_all as *mut u64 as *mut c_void);
    }
    for bytes in [256u64, 1 << 20] {
        let (mut raw, mut tracked) = (vec![], vec![]);
        for i in 0..22_000 {
            let mut ptr = std::ptr::null_mut();
            let start = Instant::now();
            unsafe {
                cudaMallocAsync(&mut ptr, bytes as usize, std::ptr::null_mut());
                cudaFreeAsync(ptr, std::ptr::null_mut());
            }
            let r = micros(start);
            let start = Instant::now();
            drop(tracker.allocate_kind(bytes, Purpose::KVCache, AllocationKind::Pool, "").unwrap());
            let t = micros(start);
            if i >= 2000 {
                raw.push(r);
                tracked.push(t);
            }
        }
        unsafe { cudaDeviceSynchronize() };
        let (raw, tracked) = (median(raw), median(tracked));
        rows.push(Row {
            measurement: format!("Pool alloc+free {} (cudaMallocAsync)", human(bytes)),
            ours: format!("{tracked:.2} us"),
            baseline: format!("{raw:.2} us cudaMallocAsync+cudaFreeAsync"),
            ratio: format!("{:.2}x", tracked / raw),
            target: "<= 1.5x and <= 2 us".into(),
            met: tracked / raw <= 1.5 && tracked <= 2.0,
        });
    }
}

/// One GET on a kept-alive connection; returns the status.
fn get(stream: &mut BufReader<TcpStream>, path: &str) -> u16 {
    // One write per request: split writes meet Nagle and delayed ACKs (40 ms stalls).
    let request = format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n");
    stream.get_mut().write_all(request.as_bytes()).unwrap();
    let mut line = String::new();
    stream.read_line(&mut line).unwrap();
    let status = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut length = 0;
    loop {
        line.clear();
        stream.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body).unwrap();
    status
}

fn health_under_load(rows: &mut Vec<Row>, tracker: &Tracker) {
    let config = HealthConfig { interval: Duration::from_millis(100), ..HealthConfig::default() };
    let monitor = Arc::new(HealthMonitor::new(tracker.clone(), config).unwrap());
    let _checks = monitor.start().unwrap();
    let server = HealthServer::start(ServerConfig { port: 0, ..ServerConfig::default() }, monitor.clone()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let churn: Vec<_> = (0..4)
        .map(|_| {
            let (tracker, stop) = (tracker.clone(), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    drop(
                        tracker
                            .allocate_kind(4096, Purpose::IntermediateBuffers, AllocationKind::Pool, "churn")
                            .unwrap(),
                    );
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let clients = 4;
    let per_client = 5000;
    let start = Instant::now();
    let latencies: Vec<f64> = (0..clients)
        .map(|_| {
            let addr = server.local_addr();
            std::thread::spawn(move || {
                let connection = TcpStream::connect(addr).unwrap();
                connection.set_nodelay(true).unwrap();
                let mut stream = BufReader::new(connection);
                (0..per_client)
                    .map(|_| {
                        let t = Instant::now();
                        assert_eq!(get(&mut stream, "/health"), 200);
                        micros(t)
                    })
                    .collect::<Vec<f64>>()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let throughput = (clients * per_client) as f64 / start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    churn.into_iter().for_each(|h| h.join().unwrap());
    let (p50, p99) = (median(latencies.clone()), percentile(latencies, 0.99));
    rows.push(Row {
        measurement: "GET /health, 4 keep-alive clients, 4 threads churning allocations".into(),
        ours: format!("median {p50:.0} us, p99 {p99:.0} us, {throughput:.0} req/s"),
        baseline: "-".into(),
        ratio: "-".into(),
        target: "p99 < 1 ms".into(),
        met: p99 < 1000.0,
    });
}

fn check_without_gpu(rows: &mut Vec<Row>) {
    let binary = std::env::var_os("VRAMGUARD_BIN").map(std::path::PathBuf::from).unwrap_or_else(|| {
        let mut path = std::env::current_exe().unwrap();
        path.set_file_name("vramguard");
        path
    });
    let mut times = vec![];
    for _ in 0..20 {
        let start = Instant::now();
        let status =
            std::process::Command::new(&binary).arg("check").env("CUDA_VISIBLE_DEVICES", "").output().unwrap().status;
        times.push(start.elapsed().as_secs_f64() * 1e3);
        assert_eq!(status.code(), Some(101));
    }
    let ms = median(times);
    rows.push(Row {
        measurement: "`vramguard check` with no GPU visible: exit 101".into(),
        ours: format!("{ms:.1} ms"),
        baseline: "-".into(),
        ratio: "-".into(),
        target: "< 100 ms".into(),
        met: ms < 100.0,
    });
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs bench targets without it.
    if !std::env::args().any(|a| a == "--bench") {
        println!("gpu benchmark: not run (pass --bench: `cargo bench --bench gpu` on a GPU host)");
        return;
    }
    let device = Device::new(0).unwrap_or_else(|e| {
        eprintln!("gpu bench: {e}");
        std::process::exit(101);
    });
    let info = device.info().unwrap();
    println!("GPU0: {}, {:.1} GiB", info.name, info.memory.total_bytes as f64 / (1u64 << 30) as f64);
    let tracker = device.tracker().unwrap();
    let mut rows = Vec::new();
    device_allocation(&mut rows, &tracker);
    pool_allocation(&mut rows, &tracker);
    health_under_load(&mut rows, &tracker);
    check_without_gpu(&mut rows);
    println!("\n### vramguard GPU benchmark (Rust API)\n\n| measurement | vramguard | baseline | ratio | target | met |\n|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            r.measurement,
            r.ours,
            r.baseline,
            r.ratio,
            r.target,
            if r.met { "yes" } else { "**no**" }
        );
    }
}
