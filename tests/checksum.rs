//! I1 without a GPU: the Rust port of the checksum equals the core's C++ reference
//! (`vg_checksum_host`) bit for bit, and Display prints 32 hex digits.
use proptest::prelude::*;
use vramguard::sys;
use vramguard::{host_checksum, Checksum};

/// The core's reference, through the C ABI.
fn reference(data: &[u8]) -> Checksum {
    let mut out = sys::vg_checksum::default();
    // SAFETY: data is a valid slice; out is a valid out-pointer.
    let status = unsafe { sys::vg_checksum_host(data.as_ptr().cast(), data.len() as u64, &mut out) };
    assert_eq!(status, sys::VG_OK);
    Checksum { lo: out.lo, hi: out.hi }
}

/// Deterministic pseudo-random bytes (splitmix64).
fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(n);
    out
}

#[test]
fn port_equals_reference_for_every_length_up_to_100() {
    for n in 0..=100 {
        let data = bytes(n, n as u64 + 1);
        assert_eq!(host_checksum(&data), reference(&data), "{n} bytes");
    }
}

#[test]
fn port_equals_reference_for_one_mebibyte_and_odd_sizes() {
    for n in [1 << 20, (1 << 20) + 7, 4093, 65_537] {
        let data = bytes(n, 99);
        assert_eq!(host_checksum(&data), reference(&data), "{n} bytes");
        // Slices at every offset into a word: the port and the reference see the same bytes.
        for offset in 1..16 {
            assert_eq!(host_checksum(&data[offset..]), reference(&data[offset..]), "{n} bytes at +{offset}");
        }
    }
}

#[test]
fn empty_input() {
    assert_eq!(host_checksum(&[]), reference(&[]));
    let mut out = sys::vg_checksum::default();
    // SAFETY: bytes 0 with a null pointer is allowed; out is valid.
    assert_eq!(unsafe { sys::vg_checksum_host(std::ptr::null(), 0, &mut out) }, sys::VG_OK);
    assert_eq!(Checksum { lo: out.lo, hi: out.hi }, host_checksum(&[]));
    // SAFETY: a null pointer with bytes > 0 is rejected before it is read.
    assert_eq!(unsafe { sys::vg_checksum_host(std::ptr::null(), 1, &mut out) }, sys::VG_ERR_NULL_ARGUMENT);
}

#[test]
fn length_is_folded_in_and_single_bytes_matter() {
    let zeros = [0u8; 48];
    let sums: std::collections::HashSet<Checksum> = (0..=zeros.len()).map(|n| host_checksum(&zeros[..n])).collect();
    assert_eq!(sums.len(), zeros.len() + 1, "zero runs of different lengths collide");
    let mut data = bytes(77, 5);
    let original = host_checksum(&data);
    for i in 0..data.len() {
        for bit in 0..8 {
            data[i] ^= 1 << bit;
            assert_ne!(host_checksum(&data), original, "byte {i} bit {bit}");
            data[i] ^= 1 << bit;
        }
    }
}

#[test]
fn display_is_32_hex_digits_hi_first() {
    let c = Checksum { lo: 0x0123_4567_89ab_cdef, hi: 0xfedc_ba98_7654_3210 };
    assert_eq!(c.to_string(), "fedcba98765432100123456789abcdef");
    let small = Checksum { lo: 1, hi: 0 };
    assert_eq!(small.to_string(), "00000000000000000000000000000001");
    let text = host_checksum(b"vramguard").to_string();
    assert_eq!(text.len(), 32);
    assert!(text.chars().all(|ch| ch.is_ascii_hexdigit() && !ch.is_ascii_uppercase()), "{text}");
    assert_eq!(serde_json::to_string(&c).unwrap(), format!("{{\"lo\":{},\"hi\":{}}}", c.lo, c.hi));
}

proptest! {
    #[test]
    fn port_equals_reference_on_random_inputs(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        prop_assert_eq!(host_checksum(&data), reference(&data));
    }
}
