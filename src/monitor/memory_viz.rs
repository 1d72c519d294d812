//! Post-mortems other tools open (O2): the trackers' live allocations as an allocation snapshot
//! in the format of PyTorch's `torch.cuda.memory._snapshot()`, which PyTorch's memory visualiser
//! opens (`python -m torch.cuda._memory_viz stats|trace|trace_plot|segment_plot FILE`, or the
//! page at pytorch.org/memory_viz).
//!
//! vramguard does not sub-allocate, so each live allocation is one segment holding one active
//! block of its whole size. Each block's one stack frame is its annotation: the frame's `name` is
//! the allocation's description, its `filename` the purpose and kind (`ModelWeights Device`),
//! its `line` the record's id — what the visualiser prints beside every block. The device
//! traces list an `alloc` event per live allocation at the time it was recorded, oldest first,
//! so that the timeline shows when each arrived (frees are not recorded by the tracker, so a
//! trace never shows them).
use serde::Serialize;

use crate::error::{Error, Result};
use crate::tracker::{Allocation, Tracker};

#[derive(Serialize)]
struct Snapshot {
    segments: Vec<Segment>,
    device_traces: Vec<Vec<TraceEntry>>,
}

#[derive(Serialize)]
struct Segment {
    device: i64,
    address: u64,
    total_size: u64,
    allocated_size: u64,
    active_size: u64,
    requested_size: u64,
    stream: u64,
    segment_type: &'static str,
    blocks: Vec<Block>,
}

#[derive(Serialize)]
struct Block {
    address: u64,
    size: u64,
    requested_size: u64,
    state: &'static str,
    frames: Vec<Frame>,
}

#[derive(Serialize, Clone)]
struct Frame {
    filename: String,
    line: u64,
    name: String,
}

#[derive(Serialize)]
struct TraceEntry {
    action: &'static str,
    addr: u64,
    size: u64,
    stream: u64,
    time_us: u64,
    frames: Vec<Frame>,
}

fn annotation(a: &Allocation) -> Frame {
    Frame { filename: format!("{} {}", a.purpose, a.kind), line: a.id, name: a.description.clone() }
}

/// The snapshot of `trackers`' live allocations, pickled (protocol 3, as Python's `pickle.load`
/// reads). VRAM-E012 if it cannot be encoded.
pub(super) fn snapshot(trackers: &[Tracker]) -> Result<Vec<u8>> {
    let mut segments = Vec::new();
    let devices = trackers.iter().map(|t| t.device() as usize + 1).max().unwrap_or(0);
    let mut device_traces: Vec<Vec<TraceEntry>> = (0..devices).map(|_| Vec::new()).collect();
    for tracker in trackers {
        let mut allocations = tracker.snapshot()?;
        allocations.sort_by_key(|a| (a.recorded_at, a.id));
        for a in &allocations {
            let frames = vec![annotation(a)];
            let address = a.address as u64;
            segments.push(Segment {
                device: i64::from(a.device),
                address,
                total_size: a.bytes,
                allocated_size: a.bytes,
                active_size: a.bytes,
                requested_size: a.bytes,
                stream: 0,
                segment_type: "large",
                blocks: vec![Block {
                    address,
                    size: a.bytes,
                    requested_size: a.bytes,
                    state: "active_allocated",
                    frames: frames.clone(),
                }],
            });
            let time_us = a.recorded_at.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64);
            device_traces[tracker.device() as usize].push(TraceEntry {
                action: "alloc",
                addr: address,
                size: a.bytes,
                stream: 0,
                time_us,
                frames,
            });
        }
    }
    serde_pickle::to_vec(&Snapshot { segments, device_traces }, serde_pickle::SerOptions::new())
        .map_err(|e| Error::Internal(format!("cannot encode the memory snapshot: {e}")))
}
