//! Safetensors headers through `vramguard::weights::validate_header_bytes`, the function that
//! `WeightsFile::open` runs on every header it reads.
//!
//! One plain module, compiled into both the cargo-fuzz target (fuzz/fuzz_targets/weights_header.rs)
//! and the weights tests (tests/weights.rs) with `#[path]`, so a reproducer replays through exactly
//! the checks that found it. No files are written: the validator takes the header's bytes and the
//! file's length.
//!
//! An input is `[u32 LE: data section length][header bytes]`: the file it stands for is
//! `8 + header + data` bytes long. Whatever the validator answers, it must not panic, and:
//! - a refusal names at most one tensor, escaped and cut, and is printable on one line;
//! - an acceptance describes a file that really is well formed: the tensors tile the data section
//!   from its start to the end of the file, in order, each of its shape's size, aligned, with
//!   unique names within the limits; and the reference reader (the `safetensors` crate) accepts
//!   the same file and reports the same tensors and metadata (checked for data sections up to
//!   1 MiB, which it needs in memory).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use vramguard::weights::{validate_header_bytes, Header, HeaderError, WeightLimits, LENGTH_PREFIX_BYTES};

/// A tensor as both readers describe it: dtype, shape, data-section offsets.
type Described = (String, Vec<u64>, (u64, u64));

/// Data sections up to this size are also read by the reference reader.
const DIFFERENTIAL_MAX: u64 = 1 << 20;

/// Splits an input into the data section's length and the header's bytes.
pub fn decode(data: &[u8]) -> (u64, &[u8]) {
    let mut len = [0u8; 4];
    let split = data.len().min(4);
    len[..split].copy_from_slice(&data[..split]);
    (u32::from_le_bytes(len) as u64, &data[split..])
}

/// One fuzz input: decode, validate, check the answer.
pub fn run(data: &[u8]) {
    let (data_len, header) = decode(data);
    // The answer itself is checked inside; either answer is fine.
    let _ = check(LENGTH_PREFIX_BYTES + header.len() as u64 + data_len, header);
}

/// Validates `header` as the header of a file of `file_len` bytes and checks the answer.
pub fn check(file_len: u64, header: &[u8]) -> Result<Header, HeaderError> {
    let limits = WeightLimits::default();
    let answer = validate_header_bytes(file_len, header, &limits);
    match &answer {
        Ok(parsed) => check_accepted(file_len, header, parsed, &limits),
        Err(refusal) => check_refused(refusal),
    }
    answer
}

fn check_refused(refusal: &HeaderError) {
    let text = refusal.to_string();
    assert!(!refusal.reason.is_empty());
    assert!(!text.chars().any(char::is_control), "refusal with a control character: {text:?}");
    if let Some(tensor) = &refusal.tensor {
        // 64 characters, each escaped to at most 10 (\u{10ffff}), then "...(N bytes)".
        assert!(tensor.chars().count() <= 64 * 10 + 32, "tensor name shown uncut: {} chars", tensor.len());
    }
}

fn check_accepted(file_len: u64, header: &[u8], parsed: &Header, limits: &WeightLimits) {
    let data_offset = LENGTH_PREFIX_BYTES + header.len() as u64;
    assert_eq!(parsed.header_len(), header.len() as u64);
    assert_eq!(parsed.data_offset(), data_offset);
    assert_eq!(data_offset + parsed.data_len(), file_len, "the data section must end the file");
    let mut end = data_offset;
    let mut names = BTreeSet::new();
    for tensor in parsed.tensors() {
        assert_eq!(tensor.range.start, end, "{:?} leaves a gap or overlaps", tensor.name);
        assert!(tensor.range.end >= tensor.range.start);
        end = tensor.range.end;
        let elements: u64 = tensor.shape.iter().product();
        assert_eq!(elements * tensor.dtype.bitsize() as u64, tensor.bytes() * 8, "{:?}'s size", tensor.name);
        let align = (tensor.dtype.bitsize() as u64 / 8).max(1);
        assert!(tensor.bytes() == 0 || (tensor.range.start - data_offset) % align == 0, "{:?} misaligned", tensor.name);
        assert!(tensor.name.len() <= limits.max_name_bytes && tensor.shape.len() <= limits.max_dims);
        assert!(names.insert(tensor.name.as_str()), "{:?} twice", tensor.name);
    }
    assert_eq!(end, file_len);
    assert!(parsed.tensors().len() <= limits.max_tensors);

    if parsed.data_len() <= DIFFERENTIAL_MAX {
        let mut file = Vec::with_capacity(file_len as usize);
        file.extend_from_slice(&(header.len() as u64).to_le_bytes());
        file.extend_from_slice(header);
        file.resize(file_len as usize, 0);
        let (n, reference) = safetensors::SafeTensors::read_metadata(&file)
            .unwrap_or_else(|e| panic!("accepted here, refused by the reference reader: {e}"));
        assert_eq!(n as u64, parsed.header_len());
        let theirs: BTreeMap<String, Described> = reference
            .tensors()
            .into_iter()
            .map(|(name, info)| {
                let shape = info.shape.iter().map(|&d| d as u64).collect();
                let offsets = (info.data_offsets.0 as u64, info.data_offsets.1 as u64);
                (name, (info.dtype.to_string(), shape, offsets))
            })
            .collect();
        let ours: BTreeMap<String, Described> = parsed
            .tensors()
            .iter()
            .map(|t| {
                let offsets = (t.range.start - data_offset, t.range.end - data_offset);
                (t.name.clone(), (t.dtype.to_string(), t.shape.clone(), offsets))
            })
            .collect();
        assert_eq!(ours, theirs, "the reference reader sees other tensors");
        let their_metadata: BTreeMap<String, String> =
            reference.metadata().iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect();
        assert_eq!(parsed.metadata(), &their_metadata, "the reference reader sees other metadata");
    }
}
