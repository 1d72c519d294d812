//! Sequences of tracker operations through the C ABI, each checked against a model of the tracker.
//!
//! One plain module, compiled into both the cargo-fuzz target (fuzz/fuzz_targets/tracker_ops.rs)
//! and the replay test (tests/fuzz_regressions.rs) with `#[path]`, so a reproducer replays through
//! exactly the logic that found it. Inputs are decoded by hand from bytes (no `arbitrary`): the
//! test then needs nothing the main crate does not already depend on.
//!
//! Any disagreement between the C ABI and the model is a panic: that is what the fuzzer finds.
//! Fake addresses are only ever recorded, never dereferenced: a call the model predicts would
//! reach memory (a copy, a free) is made only on memory that really backs it.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{c_char, c_void, CStr};
use std::fmt;
use std::ptr::{null, null_mut};
use std::sync::OnceLock;

use vramguard::sys::{self, vg_status, vg_tracker};

/// Bounds one input's run time: libFuzzer's default -max_len (4096) decodes to fewer anyway.
const MAX_OPS: usize = 512;
const MAX_TRACKERS: usize = 4;
/// Largest host buffer a copy gets, and the largest vg_alloc attempted where there is a GPU.
const HOST_MAX: u64 = 1 << 16;
const MAX_BYTES: u64 = sys::VG_MAX_ALLOCATION_BYTES;
const MAX_DESC: usize = sys::VG_MAX_DESCRIPTION_BYTES as usize;
const PURPOSES: usize = sys::VG_PURPOSE_COUNT as usize;
const KINDS: i32 = sys::VG_KIND_COUNT as i32;
const ADOPTED: i32 = sys::VG_KIND_ADOPTED as i32;
/// Written into out-parameters first: a failing call must leave them as they were.
const UNTOUCHED: u64 = 0xA5A5_A5A5_A5A5_A5A5;

/// Fake device addresses. Some share a shard (the tracker hashes the bits above 8), some are
/// unaligned, two sit at the very top of the address space.
const POOL: [u64; 16] = [
    0x7e00_0000_0000,
    0x7e00_0000_1000,
    0x7e00_0000_2000,
    0x7e00_0000_3000,
    0x7e00_0000_0001,
    0x7e00_0000_0080,
    0x7e00_0000_00ff,
    0x7e01_0000_0000,
    0x1,
    0x100,
    0x1000,
    0x8000_0000_0000_0000,
    u64::MAX - 0xfff,
    u64::MAX,
    0x7fff_ffff_f000,
    0xdead_beef,
];

// ---------------------------------------------------------------------------------------------
// Decoding: a byte reader that yields zeros once the input runs out.

struct Reader<'a> {
    data: &'a [u8],
}

impl Reader<'_> {
    fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn u64(&mut self) -> u64 {
        (self.u32() as u64) | ((self.u32() as u64) << 32)
    }
    fn flag(&mut self) -> bool {
        self.u8() & 1 == 1
    }
    /// Mostly false: out-parameters are NULL now and then, not half the time.
    fn rare(&mut self) -> bool {
        self.u8() % 16 == 0
    }
}

/// Which pointer an operation names.
#[derive(Clone, Copy, Debug)]
pub enum Ptr {
    Pool(u8),
    /// Inside a pool address: never the tracked address itself.
    Interior(u8, u8),
    /// The n-th live record of the target tracker (resolved when run; a pool address if none).
    Live(u8),
    Null,
    NearMax(u8),
    Raw(u64),
}

#[derive(Clone, Copy, Debug)]
pub enum Amount {
    Abs(u64),
    /// The target allocation's size minus this (resolved when run; 0 for an unknown pointer).
    FromEnd(u16),
}

/// A snapshot's or a report's capacity, relative to what the call will need where that helps.
#[derive(Clone, Copy, Debug)]
pub enum Cap {
    Exact,
    Less(u8),
    More(u8),
    Fixed(u16),
    /// `out` is NULL with this capacity.
    NullOut(u64),
}

#[derive(Clone, Debug)]
pub struct Desc(Option<Vec<u8>>);

#[derive(Clone, Debug)]
pub enum Op {
    Create {
        device: i32,
    },
    Destroy {
        t: u8,
    },
    Record {
        t: u8,
        ptr: Ptr,
        bytes: u64,
        purpose: i32,
        kind: i32,
        desc: Desc,
        want_id: bool,
    },
    Adopt {
        t: u8,
        ptr: Ptr,
        bytes: u64,
        purpose: i32,
        desc: Desc,
        want_id: bool,
    },
    Deallocate {
        t: u8,
        ptr: Ptr,
    },
    Free {
        t: u8,
        ptr: Ptr,
    },
    Alloc {
        t: u8,
        bytes: u64,
        purpose: i32,
        kind: i32,
        desc: Desc,
        null_out: bool,
    },
    Usage {
        t: u8,
        null_out: bool,
    },
    Total {
        t: u8,
        null_out: bool,
    },
    PurposeBytes {
        t: u8,
        purpose: i32,
        null_out: bool,
    },
    Count {
        t: u8,
        null_out: bool,
    },
    Snapshot {
        t: u8,
        cap: Cap,
        null_count: bool,
    },
    Report {
        t: u8,
        cap: Cap,
        null_needed: bool,
    },
    Verify {
        t: u8,
        mask: u32,
        cap: u8,
        null_out: bool,
        null_violations: bool,
    },
    CopyToDevice {
        t: u8,
        ptr: Ptr,
        offset: Amount,
        len: Amount,
        null_host: bool,
    },
    CopyToHost {
        t: u8,
        ptr: Ptr,
        offset: Amount,
        len: Amount,
        null_host: bool,
    },
    TrackerDevice {
        t: u8,
        null_out: bool,
    },
    StatusName {
        status: i32,
    },
    LastError,
    ChecksumDevice {
        t: u8,
        ptr: Ptr,
        offset: Amount,
        len: Amount,
        null_out: bool,
    },
    /// Host bytes: deterministic, and a changed byte (at flip, xor'ed) changes the checksum.
    ChecksumHost {
        data: Vec<u8>,
        flip: u16,
        xor: u8,
        null_out: bool,
    },
    /// NULL, or a range that wraps: refused without a byte read (other wild ranges are not tried).
    ChecksumHostWild {
        ptr: Ptr,
        bytes: u64,
    },
}

fn decode_ptr(r: &mut Reader) -> Ptr {
    match r.u8() {
        0..=159 => Ptr::Pool(r.u8()),
        160..=183 => Ptr::Live(r.u8()),
        184..=199 => Ptr::Interior(r.u8(), r.u8()),
        200..=215 => Ptr::Null,
        216..=231 => Ptr::NearMax(r.u8()),
        _ => Ptr::Raw(r.u64()),
    }
}

/// Sizes: 0, 1, the maximum and just past it, u64::MAX, arbitrary, and mostly small ones.
fn decode_bytes(r: &mut Reader) -> u64 {
    match r.u8() % 10 {
        0 => 0,
        1 => 1,
        2 => MAX_BYTES - r.u16() as u64,
        3 => MAX_BYTES + 1 + r.u16() as u64,
        4 => u64::MAX - r.u8() as u64,
        5 => r.u64(),
        _ => 1 + r.u16() as u64,
    }
}

fn decode_amount(r: &mut Reader) -> Amount {
    match r.u8() % 6 {
        0 => Amount::Abs(0),
        1 => Amount::Abs(r.u16() as u64),
        2 => Amount::Abs(u64::MAX - r.u8() as u64),
        3 => Amount::Abs(r.u64()),
        _ => Amount::FromEnd(r.u8() as u16 % 4),
    }
}

/// An enumeration value: mostly valid, otherwise the edges of an int32_t.
fn decode_enum(r: &mut Reader, count: i32) -> i32 {
    let b = r.u8();
    if b < 224 {
        return b as i32 % count;
    }
    match b % 8 {
        0 => -1,
        1 => count,
        2 => count + 1,
        3 => i32::MAX,
        4 => i32::MIN,
        5 => 256,
        _ => r.u32() as i32,
    }
}

/// Arbitrary bytes (embedded NULs included) of lengths around the 255-byte limit, or NULL.
fn decode_desc(r: &mut Reader) -> Desc {
    let tag = r.u8();
    let len = match tag % 8 {
        0 => return Desc(None),
        1 => r.u8() as usize % 32,
        2 => MAX_DESC,
        3 => MAX_DESC + 1,
        4 => MAX_DESC - 1 + r.u8() as usize % 4,
        5 => r.u16() as usize % 1024,
        6 => 4096 + r.u8() as usize,
        _ => r.u8() as usize % 8,
    };
    let head = r.u8() as usize % 8;
    let mut bytes: Vec<u8> = (0..head.min(len)).map(|_| r.u8()).collect();
    let fill = r.u8();
    bytes.resize(len, fill);
    Desc(Some(bytes))
}

fn decode_cap(r: &mut Reader) -> Cap {
    match r.u8() % 8 {
        0..=2 => Cap::Exact,
        3 => Cap::Less(r.u8() % 4 + 1),
        4 => Cap::More(r.u8() % 4 + 1),
        5 => Cap::Fixed(r.u16() % 4096),
        6 => Cap::NullOut(match r.u8() % 3 {
            0 => 0,
            1 => u64::MAX,
            _ => r.u16() as u64,
        }),
        _ => Cap::Fixed(0),
    }
}

fn decode_device(r: &mut Reader) -> i32 {
    match r.u8() % 8 {
        0..=2 => 0,
        3 => 1,
        4 => -1,
        5 => i32::MIN,
        6 => i32::MAX,
        _ => r.u32() as i32,
    }
}

fn decode_mask(r: &mut Reader) -> u32 {
    match r.u8() % 4 {
        0 => sys::VG_PURPOSE_MASK_ALL,
        1 => r.u8() as u32 % 15 + 1,
        2 => 0,
        _ => r.u32(),
    }
}

pub fn decode(data: &[u8]) -> Vec<Op> {
    let mut r = Reader { data };
    let mut ops = Vec::new();
    while !r.data.is_empty() && ops.len() < MAX_OPS {
        let tag = r.u8();
        let op = match tag % 32 {
            0 => Op::Create { device: decode_device(&mut r) },
            1 => Op::Destroy { t: r.u8() },
            2..=6 | 30 | 31 => Op::Record {
                t: r.u8(),
                ptr: decode_ptr(&mut r),
                bytes: decode_bytes(&mut r),
                purpose: decode_enum(&mut r, PURPOSES as i32),
                kind: decode_enum(&mut r, KINDS),
                desc: decode_desc(&mut r),
                want_id: !r.rare(),
            },
            7 | 8 => Op::Adopt {
                t: r.u8(),
                ptr: decode_ptr(&mut r),
                bytes: decode_bytes(&mut r),
                purpose: decode_enum(&mut r, PURPOSES as i32),
                desc: decode_desc(&mut r),
                want_id: !r.rare(),
            },
            9..=11 => Op::Deallocate { t: r.u8(), ptr: decode_ptr(&mut r) },
            12 => Op::Free { t: r.u8(), ptr: decode_ptr(&mut r) },
            13 => Op::Alloc {
                t: r.u8(),
                bytes: decode_bytes(&mut r),
                purpose: decode_enum(&mut r, PURPOSES as i32),
                kind: decode_enum(&mut r, KINDS),
                desc: decode_desc(&mut r),
                null_out: r.rare(),
            },
            14 => Op::Usage { t: r.u8(), null_out: r.rare() },
            15 => Op::Total { t: r.u8(), null_out: r.rare() },
            16 => Op::PurposeBytes { t: r.u8(), purpose: decode_enum(&mut r, PURPOSES as i32), null_out: r.rare() },
            17 => Op::Count { t: r.u8(), null_out: r.rare() },
            18 | 19 => Op::Snapshot { t: r.u8(), cap: decode_cap(&mut r), null_count: r.rare() },
            20 => Op::Report { t: r.u8(), cap: decode_cap(&mut r), null_needed: r.rare() },
            21 => Op::Verify {
                t: r.u8(),
                mask: decode_mask(&mut r),
                cap: r.u8() % 6,
                null_out: r.rare(),
                null_violations: r.rare(),
            },
            22 | 23 => {
                let (t, ptr, offset, len, null_host) =
                    (r.u8(), decode_ptr(&mut r), decode_amount(&mut r), decode_amount(&mut r), r.rare());
                if tag % 32 == 22 {
                    Op::CopyToDevice { t, ptr, offset, len, null_host }
                } else {
                    Op::CopyToHost { t, ptr, offset, len, null_host }
                }
            }
            24 => Op::TrackerDevice { t: r.u8(), null_out: r.rare() },
            25 => Op::StatusName { status: decode_enum(&mut r, 16) },
            26 => Op::LastError,
            27 => Op::ChecksumDevice {
                t: r.u8(),
                ptr: decode_ptr(&mut r),
                offset: decode_amount(&mut r),
                len: decode_amount(&mut r),
                null_out: r.rare(),
            },
            28 => Op::ChecksumHost {
                data: decode_desc(&mut r).0.unwrap_or_default(),
                flip: r.u16(),
                xor: r.u8(),
                null_out: r.rare(),
            },
            _ => Op::ChecksumHostWild { ptr: decode_ptr(&mut r), bytes: decode_bytes(&mut r) },
        };
        ops.push(op);
    }
    ops
}

// ---------------------------------------------------------------------------------------------
// The model.

#[derive(Clone, Debug)]
struct Live {
    bytes: u64,
    purpose: usize,
    kind: i32,
    owned: bool,
    desc: Vec<u8>,
    /// Learnt from out_id, or from the next snapshot when out_id was NULL.
    id: Option<u64>,
    /// Set by Tracker::insert: snapshots list records in this order (oldest first).
    sequence: u64,
}

struct Tracker {
    raw: *mut vg_tracker,
    device: i32,
    live: BTreeMap<u64, Live>,
    /// Every id this tracker has handed out: ids are never reused.
    ids: BTreeSet<u64>,
    peak_total: u64,
    peak_purpose: [u64; PURPOSES],
    lifetime: u64,
    unknown_deallocations: u64,
    next_sequence: u64,
}

impl Tracker {
    fn total(&self) -> u64 {
        self.live.values().map(|l| l.bytes).sum()
    }
    fn purpose_bytes(&self, p: usize) -> u64 {
        self.live.values().filter(|l| l.purpose == p).map(|l| l.bytes).sum()
    }
    fn nth_live(&self, n: u8) -> Option<u64> {
        (!self.live.is_empty()).then(|| *self.live.keys().nth(n as usize % self.live.len()).unwrap())
    }
    fn insert(&mut self, ptr: u64, mut live: Live) {
        let p = live.purpose;
        live.sequence = self.next_sequence;
        self.next_sequence += 1;
        self.live.insert(ptr, live);
        self.lifetime += 1;
        self.peak_total = self.peak_total.max(self.total());
        self.peak_purpose[p] = self.peak_purpose[p].max(self.purpose_bytes(p));
    }
    fn expected_usage(&self) -> sys::vg_usage {
        let mut u = sys::vg_usage {
            total_bytes: self.total(),
            allocation_count: self.live.len() as u64,
            peak_total_bytes: self.peak_total,
            lifetime_allocations: self.lifetime,
            unknown_deallocations: self.unknown_deallocations,
            ..Default::default()
        };
        for p in 0..PURPOSES {
            u.purpose_bytes[p] = self.purpose_bytes(p);
            u.purpose_count[p] = self.live.values().filter(|l| l.purpose == p).count() as u64;
            u.peak_purpose_bytes[p] = self.peak_purpose[p];
        }
        u
    }
}

/// Visible GPUs, asked once: without one every call that needs the device is VG_ERR_NO_DEVICE.
fn gpu_count() -> i32 {
    static COUNT: OnceLock<i32> = OnceLock::new();
    *COUNT.get_or_init(|| {
        let mut n = 0;
        if unsafe { sys::vg_device_count(&mut n) } == sys::VG_OK {
            n
        } else {
            0
        }
    })
}

/// The status a call gets once its arguments are valid and it needs the device: Some(failure)
/// where that is certain, None where the device is usable.
fn device_failure(device: i32) -> Option<vg_status> {
    if gpu_count() == 0 {
        Some(sys::VG_ERR_NO_DEVICE)
    } else if device >= gpu_count() {
        Some(sys::VG_ERR_INVALID_DEVICE)
    } else {
        None
    }
}

const NAMES: [&str; 20] = [
    "VG_OK",
    "VG_ERR_NULL_ARGUMENT",
    "VG_ERR_INVALID_SIZE",
    "VG_ERR_INVALID_ENUM",
    "VG_ERR_DESCRIPTION_TOO_LONG",
    "VG_ERR_UNKNOWN_POINTER",
    "VG_ERR_ALREADY_TRACKED",
    "VG_ERR_OWNERSHIP",
    "VG_ERR_BUFFER_TOO_SMALL",
    "VG_ERR_OUT_OF_RANGE",
    "VG_ERR_INVALID_DEVICE",
    "VG_ERR_NO_DEVICE",
    "VG_ERR_OUT_OF_MEMORY",
    "VG_ERR_CUDA",
    "VG_ERR_INTERNAL",
    "VG_ERR_TIMEOUT",
    "VG_ERR_CUDA_STICKY",
    "VG_ERR_IO",
    "VG_ERR_FILE_CHANGED",
    "VG_ERR_WEIGHTS_CORRUPTED",
];

fn name(status: vg_status) -> &'static str {
    NAMES.get(status as usize).copied().unwrap_or("<not a vg_status>")
}

fn c_str<'a>(p: *const c_char) -> &'a [u8] {
    assert!(!p.is_null(), "a vg_* string function returned NULL");
    unsafe { CStr::from_ptr(p) }.to_bytes()
}

fn valid_purpose(p: i32) -> bool {
    (0..PURPOSES as i32).contains(&p)
}

fn valid_kind(k: i32) -> bool {
    (0..KINDS).contains(&k)
}

/// The buffer handed to C (always NUL-terminated, owned here) and what the C side will read of
/// it: the bytes before the first NUL.
fn c_desc(desc: &Desc) -> (Option<Vec<u8>>, Vec<u8>) {
    match &desc.0 {
        None => (None, Vec::new()),
        Some(bytes) => {
            let seen = bytes.iter().position(|&b| b == 0).map_or(&bytes[..], |n| &bytes[..n]).to_vec();
            let mut buffer = bytes.clone();
            buffer.push(0);
            (Some(buffer), seen)
        }
    }
}

fn desc_ptr(buffer: &Option<Vec<u8>>) -> *const c_char {
    buffer.as_ref().map_or(null(), |b| b.as_ptr() as *const c_char)
}

/// Where the failing step is, for every assertion message.
struct Step<'a> {
    index: usize,
    op: &'a Op,
}

impl fmt::Display for Step<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.index {
            usize::MAX => write!(f, "setup {:?}", self.op),
            index => write!(f, "op #{index} {:?}", self.op),
        }
    }
}

fn expect(step: &Step, got: vg_status, want: vg_status) {
    assert!(got == want, "{step}: returned {} ({got}), the model expects {} ({want})", name(got), name(want));
    if got != sys::VG_OK {
        assert!(!c_str(unsafe { sys::vg_last_error() }).is_empty(), "{step}: {} with no vg_last_error", name(got));
    }
}

/// Runs one input: decodes it, then every op against the C ABI and the model.
pub fn run(data: &[u8]) {
    let ops = decode(data);
    let mut session = Session { trackers: Vec::new() };
    session.create(&Step { index: usize::MAX, op: &Op::Create { device: 0 } }, 0);
    for (index, op) in ops.iter().enumerate() {
        let step = Step { index, op };
        session.apply(&step);
        session.after(&step);
    }
    session.after(&Step { index: ops.len(), op: &Op::LastError });
    for t in std::mem::take(&mut session.trackers) {
        assert_eq!(unsafe { sys::vg_tracker_destroy(t.raw) }, sys::VG_OK, "destroy at the end");
    }
}

struct Session {
    trackers: Vec<Tracker>,
}

impl Session {
    /// A selector picks a live tracker, or NULL (1 in 16, or when there is none).
    fn pick(&self, t: u8) -> Option<usize> {
        (t % 16 != 15 && !self.trackers.is_empty()).then(|| t as usize % self.trackers.len())
    }

    fn raw(&self, i: Option<usize>) -> *mut vg_tracker {
        i.map_or(null_mut(), |i| self.trackers[i].raw)
    }

    fn resolve(&self, i: Option<usize>, ptr: Ptr) -> u64 {
        match ptr {
            Ptr::Pool(n) => POOL[n as usize % POOL.len()],
            Ptr::Interior(n, off) => POOL[n as usize % POOL.len()].wrapping_add(1 + off as u64),
            Ptr::Live(n) => i.and_then(|i| self.trackers[i].nth_live(n)).unwrap_or(POOL[n as usize % POOL.len()]),
            Ptr::Null => 0,
            Ptr::NearMax(n) => u64::MAX - n as u64,
            Ptr::Raw(v) => v,
        }
    }

    fn create(&mut self, step: &Step, device: i32) {
        let mut raw: *mut vg_tracker = UNTOUCHED as usize as *mut vg_tracker;
        let status = unsafe { sys::vg_tracker_create(device, &mut raw) };
        if device < 0 {
            expect(step, status, sys::VG_ERR_INVALID_DEVICE);
            assert_eq!(raw as usize as u64, UNTOUCHED, "{step}: a failed create wrote its out-parameter");
            return;
        }
        expect(step, status, sys::VG_OK);
        assert!(!raw.is_null(), "{step}: create returned OK and a NULL tracker");
        if self.trackers.len() == MAX_TRACKERS {
            let old = self.trackers.remove(0);
            assert_eq!(unsafe { sys::vg_tracker_destroy(old.raw) }, sys::VG_OK, "{step}: destroy the oldest");
        }
        self.trackers.push(Tracker {
            raw,
            device,
            live: BTreeMap::new(),
            ids: BTreeSet::new(),
            peak_total: 0,
            peak_purpose: [0; PURPOSES],
            lifetime: 0,
            unknown_deallocations: 0,
            next_sequence: 0,
        });
    }

    fn apply(&mut self, step: &Step) {
        match *step.op {
            Op::Create { device } => self.create(step, device),
            Op::Destroy { t } => {
                let i = self.pick(t);
                let status = unsafe { sys::vg_tracker_destroy(self.raw(i)) };
                match i {
                    None => expect(step, status, sys::VG_ERR_NULL_ARGUMENT),
                    Some(i) => {
                        expect(step, status, sys::VG_OK);
                        self.trackers.remove(i);
                    }
                }
            }
            Op::Record { t, ptr, bytes, purpose, kind, ref desc, want_id } => {
                self.insert(step, t, ptr, bytes, purpose, Some(kind), desc, want_id)
            }
            Op::Adopt { t, ptr, bytes, purpose, ref desc, want_id } => {
                self.insert(step, t, ptr, bytes, purpose, None, desc, want_id)
            }
            Op::Deallocate { t, ptr } | Op::Free { t, ptr } => self.remove(step, t, ptr),
            Op::Alloc { t, bytes, purpose, kind, ref desc, null_out } => {
                self.alloc(step, t, bytes, purpose, kind, desc, null_out)
            }
            Op::Usage { t, null_out } => {
                let i = self.pick(t);
                let mut usage = sys::vg_usage { total_bytes: UNTOUCHED, ..Default::default() };
                let out = if null_out { null_mut() } else { &mut usage as *mut _ };
                let status = unsafe { sys::vg_usage_get(self.raw(i), out) };
                match i {
                    Some(i) if !null_out => {
                        expect(step, status, sys::VG_OK);
                        assert_eq!(usage, self.trackers[i].expected_usage(), "{step}: usage");
                    }
                    _ => expect(step, status, sys::VG_ERR_NULL_ARGUMENT),
                }
            }
            Op::Total { t, null_out } => {
                self.counter(step, t, null_out, |raw, out| unsafe { sys::vg_total_bytes(raw, out) }, Tracker::total)
            }
            Op::Count { t, null_out } => self.counter(
                step,
                t,
                null_out,
                |raw, out| unsafe { sys::vg_allocation_count(raw, out) },
                |t| t.live.len() as u64,
            ),
            Op::PurposeBytes { t, purpose, null_out } => {
                let i = self.pick(t);
                let mut n = UNTOUCHED;
                let out = if null_out { null_mut() } else { &mut n as *mut u64 };
                let status = unsafe { sys::vg_purpose_bytes(self.raw(i), purpose, out) };
                match i {
                    Some(_) if null_out => expect(step, status, sys::VG_ERR_NULL_ARGUMENT),
                    Some(_) if !valid_purpose(purpose) => expect(step, status, sys::VG_ERR_INVALID_ENUM),
                    Some(i) => {
                        expect(step, status, sys::VG_OK);
                        assert_eq!(n, self.trackers[i].purpose_bytes(purpose as usize), "{step}: purpose bytes");
                    }
                    None => expect(step, status, sys::VG_ERR_NULL_ARGUMENT),
                }
                if status != sys::VG_OK {
                    assert_eq!(n, UNTOUCHED, "{step}: a failed call wrote its out-parameter");
                }
            }
            Op::Snapshot { t, cap, null_count } => self.snapshot(step, t, cap, null_count),
            Op::Report { t, cap, null_needed } => self.report(step, t, cap, null_needed),
            Op::Verify { t, mask, cap, null_out, null_violations } => {
                self.verify(step, t, mask, cap as u64, null_out, null_violations)
            }
            Op::CopyToDevice { t, ptr, offset, len, null_host } => {
                self.copy(step, t, ptr, offset, len, null_host, true)
            }
            Op::CopyToHost { t, ptr, offset, len, null_host } => self.copy(step, t, ptr, offset, len, null_host, false),
            Op::TrackerDevice { t, null_out } => {
                let i = self.pick(t);
                let mut device = i32::MIN + 7;
                let out = if null_out { null_mut() } else { &mut device as *mut i32 };
                let status = unsafe { sys::vg_tracker_device(self.raw(i), out) };
                match i {
                    Some(i) if !null_out => {
                        expect(step, status, sys::VG_OK);
                        assert_eq!(device, self.trackers[i].device, "{step}: tracker device");
                    }
                    _ => expect(step, status, sys::VG_ERR_NULL_ARGUMENT),
                }
            }
            Op::StatusName { status } => {
                let got = c_str(unsafe { sys::vg_status_name(status) });
                let want =
                    usize::try_from(status).ok().and_then(|s| NAMES.get(s)).copied().unwrap_or("VG_STATUS_UNKNOWN");
                assert_eq!(got, want.as_bytes(), "{step}: vg_status_name");
            }
            Op::LastError => {
                let message = c_str(unsafe { sys::vg_last_error() });
                assert!(message.len() < 1 << 16, "{step}: last error of {} bytes", message.len());
            }
            Op::ChecksumDevice { t, ptr, offset, len, null_out } => {
                self.checksum_device(step, t, ptr, offset, len, null_out)
            }
            Op::ChecksumHost { ref data, flip, xor, null_out } => checksum_host(step, data, flip, xor, null_out),
            Op::ChecksumHostWild { ptr, bytes } => {
                let address = self.resolve(None, ptr);
                let want = if address == 0 {
                    if bytes == 0 {
                        sys::VG_OK
                    } else {
                        sys::VG_ERR_NULL_ARGUMENT
                    }
                } else if bytes > 0 && address.checked_add(bytes).is_none() {
                    sys::VG_ERR_INVALID_SIZE
                } else {
                    return; // a real range: it would be read
                };
                let mut out = untouched_checksum();
                let status = unsafe { sys::vg_checksum_host(address as usize as *const c_void, bytes, &mut out) };
                expect(step, status, want);
                if want == sys::VG_OK {
                    assert!(
                        out == host_sum(step, &[]),
                        "{step}: checksum of NULL, 0 bytes differs from that of nothing"
                    );
                } else {
                    assert!(out == untouched_checksum(), "{step}: a failed checksum wrote its out-parameter");
                }
            }
        }
    }

    /// vg_checksum_device, validated in the order the C ABI documents. Without a GPU it stops at
    /// VG_ERR_NO_DEVICE; with one, recorded (fake) addresses must be VG_ERR_CUDA before any kernel
    /// reads them, and vg_alloc'd memory must sum to what the host sums of the same bytes.
    #[allow(clippy::too_many_arguments)]
    fn checksum_device(&mut self, step: &Step, t: u8, ptr: Ptr, offset: Amount, len: Amount, null_out: bool) {
        let i = self.pick(t);
        let address = self.resolve(i, ptr);
        let live = i.and_then(|i| self.trackers[i].live.get(&address)).cloned();
        let size = live.as_ref().map_or(0, |l| l.bytes);
        let amount = |a: Amount| match a {
            Amount::Abs(v) => v,
            Amount::FromEnd(k) => size.saturating_sub(k as u64),
        };
        let (offset, len) = (amount(offset), amount(len));
        let want = match (i, &live) {
            (None, _) => sys::VG_ERR_NULL_ARGUMENT,
            _ if address == 0 || null_out => sys::VG_ERR_NULL_ARGUMENT,
            _ if len == 0 => sys::VG_ERR_INVALID_SIZE,
            (_, None) => sys::VG_ERR_UNKNOWN_POINTER,
            _ if offset > size || len > size - offset => sys::VG_ERR_OUT_OF_RANGE,
            (Some(i), Some(live)) => match device_failure(self.trackers[i].device) {
                Some(failure) => failure,
                None if live.owned => sys::VG_OK,
                None => sys::VG_ERR_CUDA,
            },
        };
        let mut out = untouched_checksum();
        let out_ptr = if null_out { null_mut() } else { &mut out as *mut _ };
        let raw = self.raw(i);
        let status = unsafe { sys::vg_checksum_device(raw, address as usize as *const c_void, offset, len, out_ptr) };
        expect(step, status, want);
        if status != sys::VG_OK {
            assert!(out == untouched_checksum(), "{step}: a failed checksum wrote its out-parameter");
            return;
        }
        if len <= HOST_MAX {
            let mut host = vec![0u8; len as usize];
            let copied = unsafe {
                sys::vg_copy_to_host(
                    raw,
                    host.as_mut_ptr() as *mut c_void,
                    address as usize as *const c_void,
                    offset,
                    len,
                )
            };
            expect(step, copied, sys::VG_OK);
            assert!(out == host_sum(step, &host), "{step}: device and host checksums of the same bytes differ");
        }
    }

    fn counter(
        &self,
        step: &Step,
        t: u8,
        null_out: bool,
        call: impl Fn(*mut vg_tracker, *mut u64) -> vg_status,
        model: impl Fn(&Tracker) -> u64,
    ) {
        let i = self.pick(t);
        let mut n = UNTOUCHED;
        let status = call(self.raw(i), if null_out { null_mut() } else { &mut n });
        match i {
            Some(i) if !null_out => {
                expect(step, status, sys::VG_OK);
                assert_eq!(n, model(&self.trackers[i]), "{step}: counter");
            }
            _ => {
                expect(step, status, sys::VG_ERR_NULL_ARGUMENT);
                assert_eq!(n, UNTOUCHED, "{step}: a failed call wrote its out-parameter");
            }
        }
    }

    /// vg_record (kind Some) and vg_adopt (kind None), in the order the C ABI validates.
    #[allow(clippy::too_many_arguments)]
    fn insert(
        &mut self,
        step: &Step,
        t: u8,
        ptr: Ptr,
        bytes: u64,
        purpose: i32,
        kind: Option<i32>,
        desc: &Desc,
        want_id: bool,
    ) {
        let i = self.pick(t);
        let address = self.resolve(i, ptr);
        let (buffer, seen) = c_desc(desc);
        let mut id = UNTOUCHED;
        let out_id = if want_id { &mut id as *mut u64 } else { null_mut() };
        let (raw, p, d) = (self.raw(i), address as usize as *const c_void, desc_ptr(&buffer));
        let status = unsafe {
            match kind {
                Some(kind) => sys::vg_record(raw, p, bytes, purpose, kind, d, out_id),
                None => sys::vg_adopt(raw, p, bytes, purpose, d, out_id),
            }
        };
        let want = match i {
            None => sys::VG_ERR_NULL_ARGUMENT,
            Some(_) if address == 0 => sys::VG_ERR_NULL_ARGUMENT,
            Some(_) if !valid_purpose(purpose) || !kind.map_or(true, valid_kind) => sys::VG_ERR_INVALID_ENUM,
            Some(_) if bytes == 0 || bytes > MAX_BYTES || address.checked_add(bytes).is_none() => {
                sys::VG_ERR_INVALID_SIZE
            }
            Some(_) if seen.len() > MAX_DESC => sys::VG_ERR_DESCRIPTION_TOO_LONG,
            Some(i) if self.trackers[i].live.contains_key(&address) => sys::VG_ERR_ALREADY_TRACKED,
            Some(i) if self.trackers[i].total().checked_add(bytes).is_none() => sys::VG_ERR_INVALID_SIZE,
            Some(_) => sys::VG_OK,
        };
        expect(step, status, want);
        if status != sys::VG_OK {
            assert_eq!(id, UNTOUCHED, "{step}: a failed record wrote out_id");
            return;
        }
        let tracker = &mut self.trackers[i.unwrap()];
        let id = want_id.then_some(id);
        if let Some(id) = id {
            assert!(tracker.ids.insert(id), "{step}: id {id} was handed out before");
        }
        let live = Live {
            bytes,
            purpose: purpose as usize,
            kind: kind.unwrap_or(ADOPTED),
            owned: false,
            desc: seen,
            id,
            sequence: 0,
        };
        tracker.insert(address, live);
    }

    /// vg_deallocate and vg_free: the second never frees here, since nothing is owned without a
    /// GPU, and with one only pointers vg_alloc returned are owned.
    fn remove(&mut self, step: &Step, t: u8, ptr: Ptr) {
        let i = self.pick(t);
        let address = self.resolve(i, ptr);
        let free = matches!(step.op, Op::Free { .. });
        let raw = self.raw(i);
        let status = unsafe {
            if free {
                sys::vg_free(raw, address as usize as *mut c_void)
            } else {
                sys::vg_deallocate(raw, address as usize as *const c_void)
            }
        };
        let Some(i) = i.filter(|_| address != 0) else {
            return expect(step, status, sys::VG_ERR_NULL_ARGUMENT);
        };
        let tracker = &mut self.trackers[i];
        match tracker.live.get(&address) {
            None => {
                expect(step, status, sys::VG_ERR_UNKNOWN_POINTER);
                tracker.unknown_deallocations += 1;
            }
            Some(live) if live.owned != free => expect(step, status, sys::VG_ERR_OWNERSHIP),
            Some(_) => {
                // A free the driver refused still forgets the record.
                if !(free && status == sys::VG_ERR_CUDA) {
                    expect(step, status, sys::VG_OK);
                }
                tracker.live.remove(&address);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn alloc(&mut self, step: &Step, t: u8, bytes: u64, purpose: i32, kind: i32, desc: &Desc, null_out: bool) {
        let i = self.pick(t);
        let (buffer, seen) = c_desc(desc);
        let want = match i {
            None => Some(sys::VG_ERR_NULL_ARGUMENT),
            Some(_) if null_out => Some(sys::VG_ERR_NULL_ARGUMENT),
            Some(_) if !valid_kind(kind) || !valid_purpose(purpose) => Some(sys::VG_ERR_INVALID_ENUM),
            Some(_) if bytes == 0 || bytes > MAX_BYTES => Some(sys::VG_ERR_INVALID_SIZE),
            Some(_) if seen.len() > MAX_DESC => Some(sys::VG_ERR_DESCRIPTION_TOO_LONG),
            Some(_) if kind == ADOPTED => Some(sys::VG_ERR_INVALID_ENUM),
            Some(i) => device_failure(self.trackers[i].device),
        };
        // Where the device is usable this really allocates: keep it small.
        if want.is_none() && bytes > HOST_MAX {
            return;
        }
        let mut out: *mut c_void = UNTOUCHED as usize as *mut c_void;
        let out_ptr = if null_out { null_mut() } else { &mut out as *mut _ };
        let status = unsafe { sys::vg_alloc(self.raw(i), bytes, purpose, kind, desc_ptr(&buffer), out_ptr) };
        if let Some(want) = want {
            expect(step, status, want);
        }
        if status != sys::VG_OK {
            assert_eq!(out as usize as u64, UNTOUCHED, "{step}: a failed vg_alloc wrote its out-parameter");
            let expected = [sys::VG_ERR_OUT_OF_MEMORY, sys::VG_ERR_CUDA, sys::VG_ERR_ALREADY_TRACKED];
            assert!(want.is_some() || expected.contains(&status), "{step}: vg_alloc returned {}", name(status));
            return;
        }
        let address = out as usize as u64;
        let tracker = &mut self.trackers[i.unwrap()];
        assert!(address != 0 && !tracker.live.contains_key(&address), "{step}: vg_alloc returned {address:#x}");
        let live = Live { bytes, purpose: purpose as usize, kind, owned: true, desc: seen, id: None, sequence: 0 };
        tracker.insert(address, live);
    }

    fn snapshot(&mut self, step: &Step, t: u8, cap: Cap, null_count: bool) {
        let i = self.pick(t);
        let n = i.map_or(0, |i| self.trackers[i].live.len() as u64);
        let (capacity, null_out) = match cap {
            Cap::Exact => (n, false),
            Cap::Less(k) => (n.saturating_sub(k as u64), false),
            Cap::More(k) => (n + k as u64, false),
            Cap::Fixed(k) => (k as u64 % 64, false),
            Cap::NullOut(k) => (k, true),
        };
        // One guard element past the capacity catches a write beyond it even without ASan.
        let guard = sentinel_allocation();
        let mut records = if null_out { Vec::new() } else { vec![guard; capacity as usize + 1] };
        let out = if null_out { null_mut() } else { records.as_mut_ptr() };
        let mut count = UNTOUCHED;
        let count_ptr = if null_count { null_mut() } else { &mut count as *mut u64 };
        let status = unsafe { sys::vg_snapshot(self.raw(i), out, capacity, count_ptr) };
        let want = match i {
            None => sys::VG_ERR_NULL_ARGUMENT,
            Some(_) if null_count => sys::VG_ERR_NULL_ARGUMENT,
            Some(_) if capacity < n => sys::VG_ERR_BUFFER_TOO_SMALL,
            Some(_) if n > 0 && null_out => sys::VG_ERR_NULL_ARGUMENT,
            Some(_) => sys::VG_OK,
        };
        expect(step, status, want);
        if !null_out {
            assert!(records[capacity as usize] == guard, "{step}: vg_snapshot wrote past its capacity");
        }
        if want == sys::VG_OK || want == sys::VG_ERR_BUFFER_TOO_SMALL {
            assert_eq!(count, n, "{step}: snapshot count");
        }
        if status != sys::VG_OK {
            assert!(records.iter().all(|r| *r == guard), "{step}: a failed vg_snapshot copied records");
            return;
        }
        records.truncate(n as usize);
        let i = i.unwrap();
        check_records(step, &mut self.trackers[i], &records);
    }

    fn report(&mut self, step: &Step, t: u8, cap: Cap, null_needed: bool) {
        let i = self.pick(t);
        // What the report needs, learnt first: the text is the product's to word.
        let mut needed = 0u64;
        let first = unsafe { sys::vg_report(self.raw(i), null_mut(), 0, &mut needed) };
        let Some(i) = i else {
            return expect(step, first, sys::VG_ERR_NULL_ARGUMENT);
        };
        expect(step, first, sys::VG_ERR_BUFFER_TOO_SMALL);
        assert!(needed > 1, "{step}: a report needs {needed} bytes");
        let (capacity, null_out) = match cap {
            Cap::Exact => (needed, false),
            Cap::Less(k) => (needed.saturating_sub(k as u64), false),
            Cap::More(k) => (needed + k as u64, false),
            Cap::Fixed(k) => (k as u64, false),
            Cap::NullOut(k) => (k, true),
        };
        const GUARD: u8 = 0xA5;
        let mut text = if null_out { Vec::new() } else { vec![GUARD; capacity as usize + 1] };
        let out = if null_out { null_mut() } else { text.as_mut_ptr() as *mut c_char };
        let mut again = UNTOUCHED;
        let needed_ptr = if null_needed { null_mut() } else { &mut again as *mut u64 };
        let status = unsafe { sys::vg_report(self.trackers[i].raw, out, capacity, needed_ptr) };
        let want = if null_needed {
            sys::VG_ERR_NULL_ARGUMENT
        } else if capacity < needed {
            sys::VG_ERR_BUFFER_TOO_SMALL
        } else if null_out {
            sys::VG_ERR_NULL_ARGUMENT
        } else {
            sys::VG_OK
        };
        expect(step, status, want);
        if !null_needed {
            assert_eq!(again, needed, "{step}: out_needed changed between two reports");
        }
        if !null_out {
            assert_eq!(text[capacity as usize], GUARD, "{step}: vg_report wrote past its capacity");
        }
        if status != sys::VG_OK {
            assert!(text.iter().all(|&b| b == GUARD), "{step}: a failed vg_report copied text");
            return;
        }
        let len = needed as usize - 1;
        assert_eq!(text[len], 0, "{step}: the report is not NUL-terminated at out_needed - 1");
        assert!(!text[..len].contains(&0), "{step}: a NUL inside the report");
        let report = String::from_utf8_lossy(&text[..len]);
        let tracker = &self.trackers[i];
        for line in [
            format!("(GPU{})", tracker.device),
            format!("({} bytes) in {} allocation(s)", tracker.total(), tracker.live.len()),
            format!("Allocations recorded since start: {}", tracker.lifetime),
            format!("Deallocations of untracked pointers: {}", tracker.unknown_deallocations),
        ] {
            assert!(report.contains(&line), "{step}: the report lacks {line:?}:\n{report}");
        }
    }

    fn verify(&mut self, step: &Step, t: u8, mask: u32, capacity: u64, null_out: bool, null_violations: bool) {
        let i = self.pick(t);
        let guard = sentinel_violation();
        let mut violations = if null_violations { Vec::new() } else { vec![guard; capacity as usize + 1] };
        let out = if null_violations { null_mut() } else { violations.as_mut_ptr() };
        let mut residency = sys::vg_residency { checked: UNTOUCHED, ..Default::default() };
        let untouched = residency;
        let residency_ptr = if null_out { null_mut() } else { &mut residency as *mut _ };
        let status = unsafe { sys::vg_verify(self.raw(i), mask, residency_ptr, out, capacity) };
        let want = match i {
            None => Some(sys::VG_ERR_NULL_ARGUMENT),
            Some(_) if null_out || (capacity > 0 && null_violations) => Some(sys::VG_ERR_NULL_ARGUMENT),
            Some(_) if mask == 0 || mask & !sys::VG_PURPOSE_MASK_ALL != 0 => Some(sys::VG_ERR_INVALID_ENUM),
            Some(i) => device_failure(self.trackers[i].device),
        };
        expect(step, status, want.unwrap_or(sys::VG_OK));
        if !null_violations {
            assert!(violations[capacity as usize] == guard, "{step}: vg_verify wrote past its capacity");
        }
        if status != sys::VG_OK {
            assert!(residency == untouched, "{step}: a failed vg_verify wrote its out-parameter");
            assert!(violations.iter().all(|v| *v == guard), "{step}: a failed vg_verify copied violations");
            return;
        }
        // Only where there is a GPU: the fake addresses are violations, vg_alloc'd device memory not.
        let tracker = &self.trackers[i.unwrap()];
        let in_mask = |l: &Live| mask & (1 << l.purpose) != 0;
        assert_eq!(residency.checked, tracker.live.values().filter(|l| in_mask(l)).count() as u64, "{step}: checked");
        assert_eq!(residency.tracked_bytes, tracker.total(), "{step}: tracked bytes");
        assert_eq!(residency.allocation_count, tracker.live.len() as u64, "{step}: allocation count");
        assert!(residency.violation_count <= residency.checked, "{step}: more violations than checked");
        assert_eq!(residency.resident == 1, residency.violation_count == 0, "{step}: resident flag");
        let copied = capacity.min(residency.violation_count) as usize;
        for v in &violations[..copied] {
            let live = tracker
                .live
                .get(&v.address)
                .unwrap_or_else(|| panic!("{step}: violation of untracked {:#x}", v.address));
            assert!(
                in_mask(live) && live.bytes == v.bytes && live.kind == v.kind,
                "{step}: violation {v:?} vs {live:?}"
            );
            let device_kind = [sys::VG_KIND_DEVICE as i32, sys::VG_KIND_POOL as i32].contains(&live.kind);
            assert!(!(live.owned && device_kind), "{step}: vg_alloc'd device memory is not resident: {v:?}");
        }
        assert!(violations[copied..].iter().all(|v| *v == guard), "{step}: vg_verify copied past violation_count");
    }

    #[allow(clippy::too_many_arguments)]
    fn copy(&mut self, step: &Step, t: u8, ptr: Ptr, offset: Amount, len: Amount, null_host: bool, to_device: bool) {
        let i = self.pick(t);
        let address = self.resolve(i, ptr);
        let live = i.and_then(|i| self.trackers[i].live.get(&address)).cloned();
        let size = live.as_ref().map_or(0, |l| l.bytes);
        let amount = |a: Amount| match a {
            Amount::Abs(v) => v,
            Amount::FromEnd(k) => size.saturating_sub(k as u64),
        };
        let (offset, len) = (amount(offset), amount(len));
        let want = match (i, &live) {
            (None, _) => Some(sys::VG_ERR_NULL_ARGUMENT),
            _ if address == 0 || null_host => Some(sys::VG_ERR_NULL_ARGUMENT),
            (_, None) => Some(sys::VG_ERR_UNKNOWN_POINTER),
            _ if offset > size || len > size - offset => Some(sys::VG_ERR_OUT_OF_RANGE),
            _ if len == 0 => Some(sys::VG_OK),
            (Some(i), Some(_)) => device_failure(self.trackers[i].device),
        };
        // Past the range checks a copy may run: the host buffer must then be as long as the copy,
        // and the device side vg_alloc'd memory unless the device is certain to refuse first.
        let in_range = live.is_some() && offset <= size && len <= size - offset && len > 0;
        let owned = live.as_ref().is_some_and(|l| l.owned);
        if in_range && (len > HOST_MAX || (want.is_none() && !owned)) {
            return;
        }
        let mut host = vec![0x5Au8; len.min(HOST_MAX) as usize];
        let host_ptr = if null_host { null_mut() } else { host.as_mut_ptr() as *mut c_void };
        let device_ptr = address as usize as *mut c_void;
        let status = unsafe {
            if to_device {
                sys::vg_copy_to_device(self.raw(i), device_ptr, offset, host_ptr, len)
            } else {
                sys::vg_copy_to_host(self.raw(i), host_ptr, device_ptr, offset, len)
            }
        };
        expect(step, status, want.unwrap_or(sys::VG_OK));
    }

    /// After every op: the tracker it named agrees with its model (every tracker, after a create
    /// or a destroy, and at the end: the others must not have changed).
    fn after(&mut self, step: &Step) {
        let named = match *step.op {
            Op::Create { .. } | Op::Destroy { .. } | Op::StatusName { .. } | Op::LastError => None,
            Op::Record { t, .. } | Op::Adopt { t, .. } | Op::Deallocate { t, .. } | Op::Free { t, .. } => Some(t),
            Op::Alloc { t, .. } | Op::Usage { t, .. } | Op::Total { t, .. } | Op::PurposeBytes { t, .. } => Some(t),
            Op::Count { t, .. } | Op::Snapshot { t, .. } | Op::Report { t, .. } | Op::Verify { t, .. } => Some(t),
            Op::CopyToDevice { t, .. } | Op::CopyToHost { t, .. } | Op::TrackerDevice { t, .. } => Some(t),
            Op::ChecksumDevice { t, .. } => Some(t),
            Op::ChecksumHost { .. } | Op::ChecksumHostWild { .. } => None,
        };
        match named {
            Some(t) => {
                if let Some(i) = self.pick(t) {
                    check_tracker(step, &mut self.trackers[i]);
                }
            }
            None => self.trackers.iter_mut().for_each(|tracker| check_tracker(step, tracker)),
        }
    }
}

fn untouched_checksum() -> sys::vg_checksum {
    sys::vg_checksum { lo: UNTOUCHED, hi: UNTOUCHED }
}

fn host_sum(step: &Step, data: &[u8]) -> sys::vg_checksum {
    let mut out = untouched_checksum();
    let status = unsafe { sys::vg_checksum_host(data.as_ptr() as *const c_void, data.len() as u64, &mut out) };
    expect(step, status, sys::VG_OK);
    out
}

/// The host checksum is a function of the bytes, and any one changed byte changes it.
fn checksum_host(step: &Step, data: &[u8], flip: u16, xor: u8, null_out: bool) {
    if null_out {
        let status = unsafe { sys::vg_checksum_host(data.as_ptr() as *const c_void, data.len() as u64, null_mut()) };
        return expect(step, status, sys::VG_ERR_NULL_ARGUMENT);
    }
    let sum = host_sum(step, data);
    assert!(sum == host_sum(step, data), "{step}: the same bytes summed twice differ");
    if !data.is_empty() && xor != 0 {
        let mut changed = data.to_vec();
        changed[flip as usize % data.len()] ^= xor;
        assert!(
            sum != host_sum(step, &changed),
            "{step}: changing byte {} left the checksum alike",
            flip as usize % data.len()
        );
    }
}

fn sentinel_allocation() -> sys::vg_allocation {
    sys::vg_allocation { id: UNTOUCHED, address: UNTOUCHED, bytes: UNTOUCHED, purpose: -7, ..Default::default() }
}

fn sentinel_violation() -> sys::vg_violation {
    sys::vg_violation { id: UNTOUCHED, address: UNTOUCHED, bytes: UNTOUCHED, reason: -7, ..Default::default() }
}

/// Every counter, then a snapshot: it lists exactly the live set.
fn check_tracker(step: &Step, tracker: &mut Tracker) {
    let raw = tracker.raw;
    let mut usage = sys::vg_usage::default();
    assert_eq!(unsafe { sys::vg_usage_get(raw, &mut usage) }, sys::VG_OK, "{step}: vg_usage_get");
    let want = tracker.expected_usage();
    assert!(usage == want, "{step}: usage\n  C ABI: {usage:?}\n  model: {want:?}");
    let mut n = 0u64;
    assert_eq!(unsafe { sys::vg_total_bytes(raw, &mut n) }, sys::VG_OK);
    assert_eq!(n, want.total_bytes, "{step}: vg_total_bytes");
    assert_eq!(unsafe { sys::vg_allocation_count(raw, &mut n) }, sys::VG_OK);
    assert_eq!(n, want.allocation_count, "{step}: vg_allocation_count");
    for p in 0..PURPOSES {
        assert_eq!(unsafe { sys::vg_purpose_bytes(raw, p as i32, &mut n) }, sys::VG_OK);
        assert_eq!(n, want.purpose_bytes[p], "{step}: vg_purpose_bytes({p})");
    }
    let mut device = -1;
    assert_eq!(unsafe { sys::vg_tracker_device(raw, &mut device) }, sys::VG_OK);
    assert_eq!(device, tracker.device, "{step}: vg_tracker_device");
    let live = tracker.live.len();
    let mut records = vec![sys::vg_allocation::default(); live];
    let out = if live == 0 { null_mut() } else { records.as_mut_ptr() };
    let status = unsafe { sys::vg_snapshot(raw, out, live as u64, &mut n) };
    expect(step, status, sys::VG_OK);
    assert_eq!(n, live as u64, "{step}: snapshot count");
    check_records(step, tracker, &records);
}

/// A snapshot's records against the model: the same set, field by field, oldest first by
/// (recorded_at, id), ids unique and stable.
fn check_records(step: &Step, tracker: &mut Tracker, records: &[sys::vg_allocation]) {
    assert_eq!(records.len(), tracker.live.len(), "{step}: snapshot length");
    let mut seen = BTreeSet::new();
    for r in records {
        assert!(seen.insert(r.address), "{step}: {:#x} listed twice", r.address);
        let Some(live) = tracker.live.get_mut(&r.address) else {
            panic!("{step}: snapshot lists {:#x}, which the model does not hold: {r:?}", r.address);
        };
        let description = c_str(r.description.as_ptr());
        assert!(
            r.bytes == live.bytes
                && r.purpose == live.purpose as i32
                && r.kind == live.kind
                && (r.owned == 1) == live.owned
                && r.device == tracker.device
                && description == &live.desc[..],
            "{step}: record {r:?} differs from the model's {live:?}"
        );
        match live.id {
            Some(id) => assert_eq!(r.id, id, "{step}: the id of {:#x} changed", r.address),
            None => {
                assert!(tracker.ids.insert(r.id), "{step}: id {} was handed out before", r.id);
                live.id = Some(r.id);
            }
        }
    }
    // Oldest first: the order the model recorded them in; wall-clock times never go backwards.
    let order: Vec<_> = records.iter().map(|r| (tracker.live[&r.address].sequence, r.recorded_at_unix_ns)).collect();
    assert!(
        order.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
        "{step}: snapshot not oldest first (model sequence, recorded_at): {order:?}"
    );
}
