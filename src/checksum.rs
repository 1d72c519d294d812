//! I1: integrity checksums of device buffers, computed on the GPU at memory bandwidth, and
//! [`host_checksum`], the same function of bytes in host memory (a pure-Rust port of the core's
//! reference; both give the same value bit for bit).
//!
//! The checksum is a 128-bit non-cryptographic hash: it detects corruption, not a forger. For `n`
//! bytes, padded with zeros to `W = ceil(n / 16)` words of 16 bytes, word `k` read as two
//! little-endian `u64` halves `a_k`, `b_k`:
//!
//! ```text
//! lane0 = Σ fmix64(a_k ^ (KEY_BASE0 + k·KEY_STEP0))   (mod 2^64)
//! lane1 = Σ fmix64(b_k ^ (KEY_BASE1 + k·KEY_STEP1))   (mod 2^64)
//! s0 = lane0 + fmix64(n ^ LENGTH0),  s1 = lane1 + fmix64(n ^ LENGTH1)
//! h0 = fmix64(s0 ^ FINAL),  h1 = fmix64(s1 ^ h0)
//! lo = fmix64(h0 + h1),  hi = h1
//! ```
//!
//! `fmix64` is MurmurHash3's finalizer, a bijection: a change to one word changes exactly one term
//! of a lane sum, so any single changed byte always changes the checksum. The sums do not depend
//! on the order of the terms, which is what lets the kernel split the words among threads in any
//! way and still be deterministic.
use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::buffer::DeviceBuffer;
use crate::error::{check, Result};
use crate::sys;

// The definition's constants: cuda/src/checksum_hash.hpp holds the same ones.
const KEY_BASE0: u64 = 0x243F_6A88_85A3_08D3;
const KEY_BASE1: u64 = 0x1319_8A2E_0370_7344;
const KEY_STEP0: u64 = 0x9E37_79B9_7F4A_7C15;
const KEY_STEP1: u64 = 0xD6E8_FEB8_6659_FD93;
const LENGTH0: u64 = 0xA409_3822_299F_31D0;
const LENGTH1: u64 = 0x082E_FA98_EC4E_6C89;
const FINAL: u64 = 0x4528_21E6_38D0_1377;
const WORD: usize = 16;
/// How long [`DeviceBuffer::checksum`] waits for the GPU (the core's default).
pub const DEFAULT_CHECKSUM_DEADLINE: Duration = Duration::from_millis(sys::VG_CHECKSUM_DEFAULT_TIMEOUT_MS as u64);

/// A 128-bit checksum of a byte range. `Display` prints 32 lowercase hex digits, `hi` first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Checksum {
    /// The low 64 bits.
    pub lo: u64,
    /// The high 64 bits (printed first).
    pub hi: u64,
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}{:016x}", self.hi, self.lo)
    }
}

impl From<sys::vg_checksum> for Checksum {
    fn from(raw: sys::vg_checksum) -> Checksum {
        Checksum { lo: raw.lo, hi: raw.hi }
    }
}

fn fmix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    x ^= x >> 33;
    x = x.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    x ^= x >> 33;
    x
}

fn term0(a: u64, k: u64) -> u64 {
    fmix64(a ^ KEY_BASE0.wrapping_add(k.wrapping_mul(KEY_STEP0)))
}

fn term1(b: u64, k: u64) -> u64 {
    fmix64(b ^ KEY_BASE1.wrapping_add(k.wrapping_mul(KEY_STEP1)))
}

/// The checksum of `data`, computed on the CPU. Equal to [`DeviceBuffer::checksum`] of a buffer
/// holding the same bytes.
pub fn host_checksum(data: &[u8]) -> Checksum {
    let mut lane0 = 0u64;
    let mut lane1 = 0u64;
    let mut words = data.chunks_exact(WORD);
    let mut k = 0u64;
    for word in &mut words {
        let a = u64::from_le_bytes(word[..8].try_into().expect("8 bytes"));
        let b = u64::from_le_bytes(word[8..].try_into().expect("8 bytes"));
        lane0 = lane0.wrapping_add(term0(a, k));
        lane1 = lane1.wrapping_add(term1(b, k));
        k += 1;
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        let mut padded = [0u8; WORD];
        padded[..tail.len()].copy_from_slice(tail);
        let a = u64::from_le_bytes(padded[..8].try_into().expect("8 bytes"));
        let b = u64::from_le_bytes(padded[8..].try_into().expect("8 bytes"));
        lane0 = lane0.wrapping_add(term0(a, k));
        lane1 = lane1.wrapping_add(term1(b, k));
    }
    finalize(lane0, lane1, data.len() as u64)
}

fn finalize(lane0: u64, lane1: u64, bytes: u64) -> Checksum {
    let s0 = lane0.wrapping_add(fmix64(bytes ^ LENGTH0));
    let s1 = lane1.wrapping_add(fmix64(bytes ^ LENGTH1));
    let h0 = fmix64(s0 ^ FINAL);
    let h1 = fmix64(s1 ^ h0);
    Checksum { lo: fmix64(h0.wrapping_add(h1)), hi: h1 }
}

impl DeviceBuffer {
    /// The checksum of the whole buffer, computed on its GPU in one pass at memory bandwidth
    /// (waits for the kernel). Equal to [`host_checksum`] of the buffer's bytes.
    pub fn checksum(&self) -> Result<Checksum> {
        self.checksum_range(0, self.len())
    }

    /// The checksum of `bytes` bytes at byte `offset` in the buffer: equal to [`host_checksum`]
    /// of that slice, whatever the offset's alignment. A range past the end is
    /// [`Error::OutOfRange`](crate::Error::OutOfRange) (VRAM-E008); `bytes == 0` is
    /// [`Error::InvalidSize`](crate::Error::InvalidSize) (VRAM-E003).
    pub fn checksum_range(&self, offset: u64, bytes: u64) -> Result<Checksum> {
        self.checksum_range_within(offset, bytes, DEFAULT_CHECKSUM_DEADLINE)
    }

    /// [`checksum_range`](Self::checksum_range), waiting for the GPU at most `deadline`
    /// (rounded up to whole milliseconds): past it, [`Error::Timeout`](crate::Error::Timeout)
    /// (VRAM-E019) and the kernel is left to finish on its own — a busy or hung device never
    /// holds the caller. The kernel runs on vramguard's own non-blocking stream: what was written
    /// into the range by kernels or asynchronous copies must be synchronised first
    /// ([`copy_from_host`](Self::copy_from_host) returns complete).
    pub fn checksum_range_within(&self, offset: u64, bytes: u64, deadline: Duration) -> Result<Checksum> {
        let timeout_ms = u64::try_from(deadline.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX).max(1);
        let mut out = sys::vg_checksum::default();
        // SAFETY: live tracker; as_ptr() is this tracker's allocation, alive while `self` is; the
        // core checks offset + bytes against it; out is a valid out-pointer.
        check(unsafe {
            sys::vg_checksum_device_within(self.tracker_raw(), self.as_ptr(), offset, bytes, timeout_ms, &mut out)
        })?;
        Ok(out.into())
    }
}
