//! Safetensors files opened and validated (src/weights.rs), with no GPU and no device memory:
//! - every bad-input class, each with its code (VRAM-E020 for a malformed file, VRAM-E017 for one
//!   that cannot be read) and a message naming the file and the offending tensor, escaped;
//! - valid files of every dtype, written by the reference writer (the `safetensors` crate, which
//!   the Python package calls: header padded with spaces to a multiple of 8), zero-size tensors,
//!   `__metadata__`, unpadded and unsorted headers, a sparse 64 GiB file opened without reading it;
//! - several files as one slot: shared names refused, the layout aligned and non-overlapping;
//! - properties: random valid headers are accepted with exactly the tensors written; random
//!   mutations of valid files never panic and are accepted or refused with E020/E017;
//! - the fuzz target's seeds and reproducers (tests/fuzz_regressions/weights_header/), replayed
//!   through the fuzz target's own checks (fuzz/src/weights_header.rs).
//!
//! Files are written into a directory of their own under the system's temporary directory and
//! removed afterwards.
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use vramguard::weights::{Dtype, TensorInfo, WeightLimits, WeightsFile, WeightsSet, SLOT_ALIGNMENT};
use vramguard::Error;

#[path = "../fuzz/src/weights_header.rs"]
mod weights_header;

const E020: &str = "VRAM-E020";
const E017: &str = "VRAM-E017";

/// A directory of its own under the system's temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
        let name = format!("vramguard-weights-{tag}-{}-{n}-{nanos}", std::process::id());
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir(&path).expect("create a temporary directory");
        TempDir(path)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, bytes).expect("write a test file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One header entry, written as given: tests write what no writer would.
fn entry(name: &str, dtype: &str, shape: &[u64], offsets: [u64; 2]) -> String {
    let name = serde_json::to_string(name).unwrap();
    format!("{name}:{{\"dtype\":\"{dtype}\",\"shape\":{shape:?},\"data_offsets\":[{},{}]}}", offsets[0], offsets[1])
}

fn object(entries: &[String]) -> String {
    format!("{{{}}}", entries.join(","))
}

/// A file: the 8-byte length, the header, `data_len` zero bytes of data.
fn file(header: &str, data_len: usize) -> Vec<u8> {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.resize(bytes.len() + data_len, 0);
    bytes
}

/// Checks a refusal: its code, the file named, the tensor named (escaped, in quotes), nothing
/// unprintable, and for E020 the JSON details. Returns the message.
fn assert_refusal(error: &Error, path: &Path, code: &str, tensor: Option<&str>) -> String {
    let text = error.to_string();
    assert_eq!(error.code(), code, "{text}");
    assert!(text.contains(path.to_str().unwrap()), "the file is not named: {text}");
    assert!(!text.chars().any(char::is_control), "unescaped text: {text:?}");
    if let Some(tensor) = tensor {
        assert!(text.contains(&format!("tensor \"{tensor}\"")), "tensor {tensor:?} is not named: {text}");
    }
    if code == E020 {
        let details = &error.to_json()["details"];
        assert_eq!(details["file"], path.to_str().unwrap());
        assert_eq!(details["tensor"], tensor.map_or(serde_json::Value::Null, |t| t.into()), "{text}");
        assert!(error.is_recoverable());
    }
    text
}

/// Writes `bytes`, opens them with `limits`: they must be refused with `code`, naming `tensor`.
fn refused_with(bytes: &[u8], limits: &WeightLimits, code: &str, tensor: Option<&str>) -> String {
    let dir = TempDir::new("bad");
    let path = dir.write("model.safetensors", bytes);
    let error = WeightsFile::open(&path, limits).expect_err("a bad file must be refused");
    assert_refusal(&error, &path, code, tensor)
}

fn refused(bytes: &[u8], tensor: Option<&str>) -> String {
    refused_with(bytes, &WeightLimits::default(), E020, tensor)
}

// ---- files that cannot be read: VRAM-E017 ----

#[test]
fn a_missing_file_is_an_io_error_naming_it() {
    let dir = TempDir::new("missing");
    let path = dir.0.join("absent.safetensors");
    let error = WeightsFile::open(&path, &WeightLimits::default()).unwrap_err();
    assert!(assert_refusal(&error, &path, E017, None).contains("cannot open"));
}

#[test]
fn a_directory_or_a_device_is_not_a_weights_file() {
    let dir = TempDir::new("dir");
    let error = WeightsFile::open(&dir.0, &WeightLimits::default()).unwrap_err();
    assert!(assert_refusal(&error, &dir.0, E017, None).contains("not a regular file"));
    let null = Path::new("/dev/null");
    let error = WeightsFile::open(null, &WeightLimits::default()).unwrap_err();
    assert_refusal(&error, null, E017, None);
}

#[test]
fn a_fifo_is_refused_without_waiting_for_a_writer() {
    let dir = TempDir::new("fifo");
    let path = dir.0.join("pipe.safetensors");
    match std::process::Command::new("mkfifo").arg(&path).status() {
        Ok(status) if status.success() => {}
        _ => return eprintln!("mkfifo is not available: skipped"),
    }
    // Without O_NONBLOCK this open would wait forever for a writer.
    let error = WeightsFile::open(&path, &WeightLimits::default()).unwrap_err();
    assert_refusal(&error, &path, E017, None);
}

// ---- malformed files: VRAM-E020, one test per check ----

#[test]
fn a_file_shorter_than_the_length_prefix_is_refused() {
    for bytes in [&b""[..], &[2, 0, 0][..], &[0; 7][..]] {
        assert!(refused(bytes, None).contains("shorter than the 8-byte header length"));
    }
}

#[test]
fn a_header_over_the_limit_is_refused_before_it_is_read() {
    let header = object(&[entry("w", "F32", &[2], [0, 8])]);
    let limits = WeightLimits { max_header_bytes: header.len() as u64 - 1, ..Default::default() };
    let text = refused_with(&file(&header, 8), &limits, E020, None);
    assert!(text.contains("WeightLimits::max_header_bytes"), "{text}");
    // A length field of 2^64 - 1 in a 16-byte file: refused without allocating for it.
    let mut bytes = u64::MAX.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}      ");
    assert!(refused(&bytes, None).contains("max_header_bytes"));
}

#[test]
fn a_header_past_the_end_of_the_file_is_refused() {
    let mut bytes = 1000u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    assert!(refused(&bytes, None).contains("past the end of the file (10 bytes)"));
}

#[test]
fn a_header_that_is_not_a_json_object_is_refused() {
    for header in ["", "not json", "[]", "{} trailing", "{\"__metadata__\":{}", "{}\0\0"] {
        let text = refused(&file(header, 0), None);
        assert!(text.contains("not a JSON object"), "{header:?}: {text}");
    }
}

#[test]
fn a_header_that_is_not_utf8_is_refused_even_where_ignored() {
    // In a name, and in a field the reader ignores (found by the fuzzer: serde_json skips an
    // ignored string without checking it, and the reference reader refuses the header).
    let in_name = format!("{{{}}}", entry("a\u{e9}", "U8", &[1], [0, 1]));
    let in_ignored = "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"note\":\"\u{e9}\"}}";
    for header in [in_name.as_str(), in_ignored] {
        let mut bytes = file(header, 1);
        let at = bytes.iter().position(|&b| b == 0xc3).unwrap();
        bytes[at] = 0xff;
        let text = refused(&bytes, None);
        assert!(text.contains(&format!("the header is not UTF-8: invalid byte at offset {}", at - 8)), "{text}");
    }
}

#[test]
fn an_ignored_field_is_still_parsed_like_the_reference_reader_does() {
    // A lone surrogate escape and a number out of f64's range: skipping them unchecked would
    // accept what the reference reader refuses.
    for note in ["\"\\ud800\"", "1e400", "[{\"k\":\"\\udfff\"}]"] {
        let header = format!("{{\"w\":{{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"note\":{note}}}}}");
        let text = refused(&file(&header, 1), Some("w"));
        assert!(text.contains("the entry is not"), "{note}: {text}");
    }
}

#[test]
fn an_entry_that_is_not_a_tensor_description_is_refused() {
    let cases = [
        ("{\"w\":1}", "the entry is not"),
        ("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", "missing field `data_offsets`"),
        ("{\"w\":{\"dtype\":\"F32\",\"shape\":\"1\",\"data_offsets\":[0,4]}}", "the entry is not"),
        ("{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", "the entry is not"),
        ("{\"w\":{\"dtype\":\"F32\",\"shape\":[-0],\"data_offsets\":[0,0]}}", "the entry is not"),
        ("{\"w\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", "the entry is not"),
        ("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", "the entry is not"),
        ("{\"w\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", "duplicate field"),
    ];
    for (header, reason) in cases {
        let text = refused(&file(header, 4), Some("w"));
        assert!(text.contains(reason), "{header}: {text}");
    }
}

#[test]
fn a_truncated_data_section_is_refused() {
    let header = object(&[entry("a", "F32", &[2], [0, 8]), entry("b", "F32", &[4], [8, 24])]);
    let text = refused(&file(&header, 20), Some("b"));
    assert!(text.contains("the file is truncated"), "{text}");
}

#[test]
fn bytes_after_the_last_tensor_are_refused() {
    let header = object(&[entry("a", "F32", &[2], [0, 8]), entry("b", "F32", &[4], [8, 24])]);
    let text = refused(&file(&header, 25), Some("b"));
    assert!(text.contains("1 bytes follow the end of the last tensor"), "{text}");
    // And with no tensors at all.
    assert!(refused(&file("{}", 3), None).contains("3 bytes follow"));
}

#[test]
fn overlapping_tensors_are_refused() {
    let header = object(&[entry("a", "F32", &[2], [0, 8]), entry("b", "F32", &[2], [4, 12])]);
    let text = refused(&file(&header, 12), Some("b"));
    assert!(text.contains("overlap tensor \"a\""), "{text}");
    // The same range twice.
    let header = object(&[entry("a", "F32", &[2], [0, 8]), entry("b", "F32", &[2], [0, 8])]);
    refused(&file(&header, 8), Some("b"));
}

#[test]
fn a_gap_between_or_before_tensors_is_refused() {
    let header = object(&[entry("a", "U8", &[2], [0, 2]), entry("b", "U8", &[2], [3, 5])]);
    let text = refused(&file(&header, 5), Some("b"));
    assert!(text.contains("gap of 1 bytes between tensor \"a\""), "{text}");
    let header = object(&[entry("a", "F32", &[1], [4, 8])]);
    let text = refused(&file(&header, 8), Some("a"));
    assert!(text.contains("the start of the data section"), "{text}");
}

#[test]
fn a_name_twice_in_one_header_is_refused() {
    let header = object(&[entry("a", "U8", &[1], [0, 1]), entry("a", "U8", &[1], [0, 1])]);
    let text = refused(&file(&header, 1), Some("a"));
    assert!(text.contains("appears twice"), "{text}");
}

#[test]
fn a_size_that_is_not_shape_times_dtype_is_refused() {
    let header = object(&[entry("w", "F32", &[2, 2], [0, 12])]);
    let text = refused(&file(&header, 12), Some("w"));
    assert!(text.contains("hold 12 bytes, but shape [2, 2] of F32 is 16 bytes"), "{text}");
}

#[test]
fn a_shape_whose_size_overflows_is_refused() {
    for shape in [&[1u64 << 32, 1 << 32][..], &[u64::MAX, 2][..], &[1 << 62, 1][..]] {
        let header = object(&[entry("w", "F64", shape, [0, 8])]);
        let text = refused(&file(&header, 8), Some("w"));
        assert!(text.contains("overflows 64 bits"), "{text}");
    }
}

#[test]
fn a_sub_byte_tensor_must_fill_whole_bytes() {
    let header = object(&[entry("q", "F4", &[3], [0, 2])]);
    let text = refused(&file(&header, 2), Some("q"));
    assert!(text.contains("12 bits, not a whole number of bytes"), "{text}");
}

#[test]
fn a_tensor_not_aligned_to_its_element_size_is_refused() {
    let header = object(&[entry("a", "U8", &[2], [0, 2]), entry("b", "F32", &[1], [2, 6])]);
    let text = refused(&file(&header, 6), Some("b"));
    assert!(text.contains("starts at data offset 2, not a multiple of F32's 4-byte size"), "{text}");
    let header = object(&[entry("a", "U8", &[4], [0, 4]), entry("c", "C64", &[1], [4, 12])]);
    refused(&file(&header, 12), Some("c"));
}

#[test]
fn an_unknown_dtype_is_refused() {
    for dtype in ["F128", "f32", "", "Q4_K"] {
        let header = object(&[entry("w", dtype, &[1], [0, 4])]);
        let text = refused(&file(&header, 4), Some("w"));
        assert!(text.contains(&format!("unknown dtype \"{dtype}\"")), "{text}");
    }
}

#[test]
fn offsets_that_end_before_they_start_are_refused() {
    let header = object(&[entry("w", "U8", &[0], [8, 0])]);
    let text = refused(&file(&header, 8), Some("w"));
    assert!(text.contains("end before they start"), "{text}");
}

#[test]
fn more_tensors_than_the_limit_are_refused() {
    let header =
        object(&[entry("a", "U8", &[1], [0, 1]), entry("b", "U8", &[1], [1, 2]), entry("c", "U8", &[1], [2, 3])]);
    let limits = WeightLimits { max_tensors: 2, ..Default::default() };
    let text = refused_with(&file(&header, 3), &limits, E020, Some("c"));
    assert!(text.contains("more than 2 tensors (WeightLimits::max_tensors)"), "{text}");
    let limits = WeightLimits { max_tensors: 3, ..Default::default() };
    let dir = TempDir::new("count");
    WeightsFile::open(dir.write("m.safetensors", &file(&header, 3)), &limits).unwrap();
}

#[test]
fn a_name_over_the_limit_is_refused_and_shown_cut() {
    let long = "x".repeat(2000);
    let header = object(&[entry(&long, "U8", &[1], [0, 1])]);
    let shown = format!("{}...(2000 bytes)", "x".repeat(64));
    let text = refused(&file(&header, 1), Some(&shown));
    assert!(text.contains("the name is 2000 bytes, over the limit of 1024"), "{text}");
    assert!(text.len() < 400, "{text}");
}

#[test]
fn more_dimensions_than_the_limit_are_refused() {
    let header = object(&[entry("w", "U8", &[1; 65], [0, 1])]);
    let text = refused(&file(&header, 1), Some("w"));
    assert!(text.contains("more than 64 dimensions (WeightLimits::max_dims)"), "{text}");
    let header = object(&[entry("w", "U8", &[1; 64], [0, 1])]);
    let dir = TempDir::new("dims");
    WeightsFile::open(dir.write("m.safetensors", &file(&header, 1)), &WeightLimits::default()).unwrap();
}

#[test]
fn metadata_must_map_strings_to_strings_once() {
    for metadata in ["{\"a\":1}", "[\"a\"]", "\"text\"", "{\"a\":{\"b\":\"c\"}}"] {
        let header = format!("{{\"__metadata__\":{metadata}}}");
        let text = refused(&file(&header, 0), None);
        assert!(text.contains("\"__metadata__\" must map strings to strings"), "{text}");
    }
    let text = refused(&file("{\"__metadata__\":{},\"__metadata__\":{}}", 0), None);
    assert!(text.contains("appears twice"), "{text}");
}

#[test]
fn tensor_names_are_printed_escaped() {
    let name = "evil\n\u{1b}[31m\"quoted\"\\\u{202e}\u{0}";
    let header = object(&[entry(name, "F32", &[2], [0, 4])]);
    let shown = "evil\\n\\u{1b}[31m\\\"quoted\\\"\\\\\\u{202e}\\0";
    let text = refused(&file(&header, 4), Some(shown));
    assert!(!text.contains('\u{202e}') && !text.contains('\u{1b}'), "{text:?}");
}

// ---- valid files ----

/// A tensor for the reference writer.
struct Blob {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl safetensors::View for &Blob {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

fn blob(dtype: Dtype, shape: &[usize], seed: u8) -> Blob {
    let bits = shape.iter().product::<usize>() * dtype.bitsize();
    assert_eq!(bits % 8, 0);
    let data = (0..bits / 8).map(|i| seed.wrapping_add(i as u8)).collect();
    Blob { dtype, shape: shape.to_vec(), data }
}

#[test]
fn reference_writer_files_of_every_dtype_and_shape_are_accepted() {
    let blobs = [
        ("f64.matrix", blob(Dtype::F64, &[2, 3], 1)),
        ("i64.vector", blob(Dtype::I64, &[3], 2)),
        ("u64.scalar", blob(Dtype::U64, &[], 3)),
        ("c64", blob(Dtype::C64, &[2], 4)),
        ("f32.cube", blob(Dtype::F32, &[2, 2, 2], 5)),
        ("i32", blob(Dtype::I32, &[5], 6)),
        ("u32", blob(Dtype::U32, &[1, 1, 1, 1], 7)),
        ("bf16", blob(Dtype::BF16, &[7], 8)),
        ("f16", blob(Dtype::F16, &[3, 1], 9)),
        ("i16", blob(Dtype::I16, &[1], 10)),
        ("u16", blob(Dtype::U16, &[9], 11)),
        ("f8", blob(Dtype::F8_E4M3, &[5], 12)),
        ("f8.e5m2", blob(Dtype::F8_E5M2, &[3], 13)),
        ("i8", blob(Dtype::I8, &[11], 14)),
        ("u8", blob(Dtype::U8, &[2, 7], 15)),
        ("bool", blob(Dtype::BOOL, &[3], 16)),
        ("f4", blob(Dtype::F4, &[2, 3], 17)),
        ("f6", blob(Dtype::F6_E2M3, &[4], 18)),
        ("empty.f32", blob(Dtype::F32, &[0], 19)),
        ("empty.i64", blob(Dtype::I64, &[3, 0, 2], 20)),
        ("name with \"quotes\" and \u{e9}", blob(Dtype::F16, &[1], 21)),
    ];
    let metadata = [("format", "pt"), ("note", "two\nlines")];
    let bytes = safetensors::serialize(
        blobs.iter().map(|(name, blob)| (*name, blob)),
        Some(metadata.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
    )
    .unwrap();
    let dir = TempDir::new("reference");
    let path = dir.write("model.safetensors", &bytes);
    let opened = WeightsFile::open(&path, &WeightLimits::default()).unwrap();

    // The reference layout: the header padded with spaces so the data starts 8-aligned.
    let header = opened.header();
    assert_eq!(header.header_len() % 8, 0);
    assert_eq!(header.data_offset() % 8, 0);
    let header_text = std::str::from_utf8(&bytes[8..header.data_offset() as usize]).unwrap();
    let json = header_text.trim_end_matches(' ');
    assert_eq!(header_text.len(), json.len().next_multiple_of(8), "padded with spaces, to a multiple of 8 only");
    assert_eq!(opened.file_len(), bytes.len() as u64);
    assert_eq!(header.data_offset() + header.data_len(), bytes.len() as u64);

    assert_eq!(opened.tensors().len(), blobs.len());
    for (name, blob) in &blobs {
        let tensor = opened.tensor(name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(tensor.dtype, blob.dtype, "{name}");
        assert_eq!(tensor.shape, blob.shape.iter().map(|&d| d as u64).collect::<Vec<_>>(), "{name}");
        // The range really is where the writer put this tensor's bytes.
        let range = tensor.range.start as usize..tensor.range.end as usize;
        assert_eq!(bytes[range], blob.data[..], "{name}");
    }
    let zero = opened.tensor("empty.i64").unwrap();
    assert_eq!(zero.bytes(), 0);
    let expected: Vec<(String, String)> = metadata.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    assert_eq!(opened.metadata().clone().into_iter().collect::<Vec<_>>(), expected);
    // In file order.
    assert!(opened.tensors().windows(2).all(|w| w[0].range.end == w[1].range.start));
}

#[test]
fn unpadded_unsorted_headers_with_unknown_fields_are_accepted() {
    let header = format!(
        "{{{},{},\"__metadata__\":{{\"k\":\"v\"}},{}}}",
        entry("late", "U8", &[3], [8, 11]),
        "\"early\":{\"shape\":[2],\"extra\":[1,{\"x\":null}],\"data_offsets\":[0,8],\"dtype\":\"F32\"}",
        entry("zero", "F64", &[0, 5], [11, 11]),
    );
    assert_ne!(header.len() % 8, 0);
    let dir = TempDir::new("unpadded");
    let opened = WeightsFile::open(dir.write("m.safetensors", &file(&header, 11)), &WeightLimits::default()).unwrap();
    let names: Vec<&str> = opened.tensors().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["early", "late", "zero"]);
    assert_eq!(opened.metadata()["k"], "v");
    assert_eq!(opened.header().data_offset(), 8 + header.len() as u64);
}

#[test]
fn an_empty_header_and_null_metadata_are_valid() {
    let dir = TempDir::new("empty");
    for header in ["{}", "{\"__metadata__\":null}", "{\"__metadata__\":{}}   ", " {} "] {
        let opened = WeightsFile::open(dir.write("m.safetensors", &file(header, 0)), &WeightLimits::default())
            .unwrap_or_else(|e| panic!("{header:?}: {e}"));
        assert!(opened.tensors().is_empty() && opened.metadata().is_empty());
        assert_eq!(opened.header().data_len(), 0);
    }
}

#[test]
fn only_the_header_is_read_never_the_data() {
    // A 64 GiB tensor in a sparse file: opening it reads 8 + N bytes, or this would take minutes.
    let dir = TempDir::new("sparse");
    let bytes: u64 = 64 << 30;
    let header = object(&[entry("huge", "U8", &[bytes], [0, bytes])]);
    let path = dir.write("huge.safetensors", &file(&header, 0));
    let handle = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    if handle.set_len(8 + header.len() as u64 + bytes).is_err() {
        return eprintln!("no sparse files in {}: skipped", dir.0.display());
    }
    let started = std::time::Instant::now();
    let opened = WeightsFile::open(&path, &WeightLimits::default()).unwrap();
    assert_eq!(opened.tensors()[0].bytes(), bytes);
    assert!(started.elapsed().as_secs() < 10);
}

#[test]
fn the_identity_tells_a_changed_file() {
    let dir = TempDir::new("identity");
    let header = object(&[entry("w", "F32", &[2], [0, 8])]);
    let path = dir.write("m.safetensors", &file(&header, 8));
    let opened = WeightsFile::open(&path, &WeightLimits::default()).unwrap();
    let identity = opened.identity();
    assert_eq!(identity.len, opened.file_len());
    assert!(identity.inode != 0);
    assert!(opened.is_unchanged().unwrap());
    // Replaced by another file under the same name: a new inode.
    let other = dir.write("other", &file(&header, 8));
    std::fs::rename(&other, &path).unwrap();
    assert!(!opened.is_unchanged().unwrap());
    std::fs::remove_file(&path).unwrap();
    assert!(!opened.is_unchanged().unwrap());
}

// ---- several files as one slot ----

#[test]
fn a_set_refuses_a_tensor_name_in_two_files() {
    let dir = TempDir::new("set-dup");
    let first = dir.write("a.safetensors", &file(&object(&[entry("shared", "F32", &[1], [0, 4])]), 4));
    let second = dir.write(
        "b.safetensors",
        &file(&object(&[entry("own", "F32", &[1], [0, 4]), entry("shared", "F32", &[1], [4, 8])]), 8),
    );
    let error = WeightsSet::open_all(&[&first, &second], &WeightLimits::default()).unwrap_err();
    let text = assert_refusal(&error, &second, E020, Some("shared"));
    assert!(text.contains(&format!("also in {:?}", first.to_str().unwrap())), "{text}");
    // The same file twice is the same names twice.
    let error = WeightsSet::open_all(&[&first, &first], &WeightLimits::default()).unwrap_err();
    assert_refusal(&error, &first, E020, Some("shared"));
}

#[test]
fn a_set_with_a_bad_or_missing_file_fails_on_that_file() {
    let dir = TempDir::new("set-bad");
    let good = dir.write("a.safetensors", &file(&object(&[entry("w", "F32", &[1], [0, 4])]), 4));
    let bad = dir.write("b.safetensors", &file(&object(&[entry("v", "F32", &[1], [0, 4])]), 5));
    let error = WeightsSet::open_all(&[&good, &bad], &WeightLimits::default()).unwrap_err();
    assert_refusal(&error, &bad, E020, Some("v"));
    let missing = dir.0.join("c.safetensors");
    let error = WeightsSet::open_all(&[&good, &missing], &WeightLimits::default()).unwrap_err();
    assert_refusal(&error, &missing, E017, None);
    let none: [&Path; 0] = [];
    assert_eq!(WeightsSet::open_all(&none, &WeightLimits::default()).unwrap_err().code(), "VRAM-E007");
}

#[test]
fn a_set_lays_out_every_tensor_aligned_in_one_allocation() {
    let dir = TempDir::new("set-layout");
    let first = object(&[
        entry("a.w", "F32", &[3], [0, 12]),
        entry("a.h", "F16", &[5], [12, 22]),
        entry("a.empty", "U8", &[0], [22, 22]),
    ]);
    let second = object(&[entry("b.w", "F64", &[2], [0, 16]), entry("b.i", "I8", &[300], [16, 316])]);
    let paths = [dir.write("1.safetensors", &file(&first, 22)), dir.write("2.safetensors", &file(&second, 316))];
    let set = WeightsSet::open_all(&paths, &WeightLimits::default()).unwrap();
    assert_eq!(set.total_bytes(), 12 + 10 + 16 + 300);
    assert_eq!(set.tensor_count(), 5);

    let layout = set.layout(SLOT_ALIGNMENT).unwrap();
    let placed: Vec<(&str, u64, u64)> = layout
        .tensors
        .iter()
        .map(|p| (set.files()[p.file].tensors()[p.tensor].name.as_str(), p.offset, p.bytes))
        .collect();
    // A zero-size tensor gets an aligned offset and takes no room.
    assert_eq!(placed, [("a.w", 0, 12), ("a.h", 256, 10), ("a.empty", 512, 0), ("b.w", 512, 16), ("b.i", 768, 300)]);
    assert_eq!(layout.total_bytes, 768 + 300);
    let mut end = 0;
    for p in &layout.tensors {
        assert_eq!(p.offset % SLOT_ALIGNMENT, 0);
        assert!(p.offset >= end, "overlap");
        end = p.offset + p.bytes;
    }
    assert_eq!(end, layout.total_bytes);

    // Packed: alignment 1 leaves no padding.
    assert_eq!(set.layout(1).unwrap().total_bytes, set.total_bytes());
    for alignment in [0, 3, 100, 257] {
        assert_eq!(set.layout(alignment).unwrap_err().code(), "VRAM-E007", "alignment {alignment}");
    }
}

// ---- properties ----

/// A tensor of a generated header: dtype, shape, name.
#[derive(Debug, Clone)]
struct Generated {
    dtype: Dtype,
    shape: Vec<u64>,
    name: String,
}

const DTYPES: [Dtype; 12] = [
    Dtype::F64,
    Dtype::C64,
    Dtype::I64,
    Dtype::F32,
    Dtype::U32,
    Dtype::BF16,
    Dtype::F16,
    Dtype::F8_E4M3,
    Dtype::U8,
    Dtype::BOOL,
    Dtype::F4,
    Dtype::F6_E3M2,
];

fn generated_tensor() -> impl Strategy<Value = Generated> {
    (0..DTYPES.len(), prop::collection::vec(0u64..6, 0..4), prop::collection::vec(any::<char>(), 0..6)).prop_map(
        |(d, mut shape, name)| {
            let dtype = DTYPES[d];
            if shape.iter().product::<u64>() * dtype.bitsize() as u64 % 8 != 0 {
                shape.push(8); // sub-byte dtypes: a whole number of bytes
            }
            Generated { dtype, shape, name: name.into_iter().collect() }
        },
    )
}

/// A valid file of `tensors` laid out like the reference writer (by decreasing element size),
/// the JSON entries in the order of `order`, `padding` spaces after the header; and the tensors
/// the validator must report, in file order.
fn valid_file(
    tensors: &[Generated],
    order: &[u32],
    padding: usize,
    metadata: &Option<Vec<(String, String)>>,
) -> (Vec<u8>, Vec<TensorInfo>) {
    let mut named: Vec<(String, &Generated)> =
        tensors.iter().enumerate().map(|(i, t)| (format!("{i}.{}", t.name), t)).collect();
    named.sort_by_key(|(name, t)| (std::cmp::Reverse(t.dtype.bitsize()), name.clone()));
    let mut laid_out = Vec::new();
    let mut end = 0u64;
    for (name, t) in &named {
        let bytes = t.shape.iter().product::<u64>() * t.dtype.bitsize() as u64 / 8;
        laid_out.push((name.clone(), t, [end, end + bytes]));
        end += bytes;
    }
    let mut entries: Vec<(u32, String)> = laid_out
        .iter()
        .enumerate()
        .map(|(i, (name, t, offsets))| (order[i % order.len()], entry(name, &t.dtype.to_string(), &t.shape, *offsets)))
        .collect();
    if let Some(metadata) = metadata {
        let map: serde_json::Map<String, serde_json::Value> =
            metadata.iter().map(|(k, v)| (k.clone(), v.clone().into())).collect();
        entries.push((order[0], format!("\"__metadata__\":{}", serde_json::Value::Object(map))));
    }
    entries.sort_by_key(|(key, _)| *key);
    let header = object(&entries.into_iter().map(|(_, e)| e).collect::<Vec<_>>()) + &" ".repeat(padding);
    let data_offset = 8 + header.len() as u64;
    let mut expected: Vec<TensorInfo> = laid_out
        .into_iter()
        .map(|(name, t, [s, e])| TensorInfo {
            name,
            dtype: t.dtype,
            shape: t.shape.clone(),
            range: data_offset + s..data_offset + e,
        })
        .collect();
    expected.sort_by(|a, b| (a.range.start, a.range.end, &a.name).cmp(&(b.range.start, b.range.end, &b.name)));
    (file(&header, end as usize), expected)
}

/// A valid file, the tensors it holds in file order, and its metadata.
type ValidFile = (Vec<u8>, Vec<TensorInfo>, Option<Vec<(String, String)>>);

fn valid_files() -> impl Strategy<Value = ValidFile> {
    (
        prop::collection::vec(generated_tensor(), 0..10),
        prop::collection::vec(any::<u32>(), 1..10),
        0usize..16,
        prop::option::of(prop::collection::vec((".{0,6}", ".{0,6}"), 0..3)),
    )
        .prop_map(|(tensors, order, padding, metadata)| {
            let (bytes, expected) = valid_file(&tensors, &order, padding, &metadata);
            (bytes, expected, metadata)
        })
}

/// A byte for a mutation: JSON's punctuation and digits half the time, any byte otherwise.
fn mutation_byte() -> impl Strategy<Value = u8> {
    prop_oneof![prop::sample::select(b"{}[]\":,0123489 -.eE\\u".to_vec()), any::<u8>()]
}

/// Overwrites, inserts, removes bytes or truncates.
fn mutate(bytes: &mut Vec<u8>, mutations: &[(prop::sample::Index, u8, u8)]) {
    for (at, op, byte) in mutations {
        let at = if bytes.is_empty() { 0 } else { at.index(bytes.len()) };
        match op {
            0 if !bytes.is_empty() => bytes[at] = *byte,
            1 => bytes.insert(at, *byte),
            2 if !bytes.is_empty() => {
                bytes.remove(at);
            }
            _ => bytes.truncate(at),
        }
    }
}

/// The header's bytes of a file, when its length field fits the file.
fn header_of(bytes: &[u8]) -> Option<&[u8]> {
    let n = u64::from_le_bytes(bytes.get(..8)?.try_into().unwrap());
    bytes.get(8..8usize.checked_add(usize::try_from(n).ok()?)?)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_valid_headers_are_accepted_with_exactly_their_tensors((bytes, expected, metadata) in valid_files()) {
        // Directly, through the fuzz target's checks (which include the reference reader)...
        let header = header_of(&bytes).unwrap();
        let parsed = weights_header::check(bytes.len() as u64, header).unwrap();
        prop_assert_eq!(parsed.tensors(), &expected[..]);
        let metadata: std::collections::BTreeMap<String, String> = metadata.into_iter().flatten().collect();
        prop_assert_eq!(parsed.metadata(), &metadata);
        // ...and from a file.
        let dir = TempDir::new("prop-valid");
        let opened = WeightsFile::open(dir.write("m.safetensors", &bytes), &WeightLimits::default()).unwrap();
        prop_assert_eq!(opened.header(), &parsed);
    }

    #[test]
    fn mutated_files_never_panic_and_are_accepted_or_refused_with_their_code(
        (bytes, _, _) in valid_files(),
        mutations in prop::collection::vec((any::<prop::sample::Index>(), 0u8..4, mutation_byte()), 1..4),
        whole_file in prop::bool::weighted(0.25),
    ) {
        // Mostly the header's JSON, with the length field kept right, so that the mutations reach
        // the parser and the checks behind it; sometimes anywhere, the length field included.
        let mut bytes = bytes;
        if whole_file {
            mutate(&mut bytes, &mutations);
        } else {
            let header_len = header_of(&bytes).unwrap().len();
            let mut header = bytes[8..8 + header_len].to_vec();
            let data = bytes.split_off(8 + header_len);
            mutate(&mut header, &mutations);
            bytes = (header.len() as u64).to_le_bytes().to_vec();
            bytes.extend_from_slice(&header);
            bytes.extend_from_slice(&data);
        }
        let direct = header_of(&bytes).map(|header| weights_header::check(bytes.len() as u64, header));
        let dir = TempDir::new("prop-mutated");
        let path = dir.write("m.safetensors", &bytes);
        match WeightsFile::open(&path, &WeightLimits::default()) {
            Ok(opened) => prop_assert_eq!(direct, Some(Ok(opened.header().clone()))),
            Err(error) => {
                prop_assert!(error.code() == E020 || error.code() == E017, "{}", error);
                prop_assert!(!error.to_string().chars().any(char::is_control));
                prop_assert!(error.to_string().contains(path.to_str().unwrap()));
                prop_assert!(!matches!(direct, Some(Ok(_))), "refused from a file, accepted directly: {}", error);
            }
        }
    }
}

// ---- the fuzz target's seeds and reproducers ----

/// Compiled in, so a test binary run away from its source tree (the GPU runner) still has them.
const SEEDS: [(&str, &[u8]); 8] = [
    ("seed-valid", include_bytes!("fuzz_regressions/weights_header/seed-valid")),
    ("seed-valid-unsorted-unpadded", include_bytes!("fuzz_regressions/weights_header/seed-valid-unsorted-unpadded")),
    ("seed-overlap", include_bytes!("fuzz_regressions/weights_header/seed-overlap")),
    ("seed-gap", include_bytes!("fuzz_regressions/weights_header/seed-gap")),
    ("seed-duplicate", include_bytes!("fuzz_regressions/weights_header/seed-duplicate")),
    ("seed-overflow", include_bytes!("fuzz_regressions/weights_header/seed-overflow")),
    ("seed-misaligned", include_bytes!("fuzz_regressions/weights_header/seed-misaligned")),
    ("seed-unknown-dtype", include_bytes!("fuzz_regressions/weights_header/seed-unknown-dtype")),
];

#[test]
fn fuzz_seeds_and_reproducers_pass_the_fuzz_checks() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions/weights_header");
    let mut inputs: Vec<(String, Vec<u8>)> = SEEDS.iter().map(|(n, d)| (n.to_string(), d.to_vec())).collect();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for path in entries.map(|e| e.unwrap().path()).filter(|p| p.is_file()) {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if !SEEDS.iter().any(|(seed, _)| *seed == name) {
                inputs.push((name, std::fs::read(&path).unwrap()));
            }
        }
    }
    for (name, data) in &inputs {
        let (data_len, header) = weights_header::decode(data);
        let answer = weights_header::check(8 + header.len() as u64 + data_len, header);
        if name.starts_with("seed-valid") {
            let parsed = answer.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(parsed.tensors().len() >= 5, "{name}");
        } else if name.starts_with("seed-") {
            let refusal = answer.expect_err(name);
            assert!(refusal.tensor.is_some(), "{name}: {refusal}");
        }
    }
}
