//! Model weights on disk: opening a safetensors file and proving it is well formed before one byte
//! of it goes anywhere near a model slot.
//!
//! # The format
//!
//! A safetensors file is three parts, back to back:
//!
//! ```text
//! [ 8 bytes: N, little-endian u64 ][ N bytes: JSON header ][ data section: the tensors' bytes ]
//! ```
//!
//! The header is one JSON object. Each key is a tensor's name and maps to
//! `{"dtype": "F32", "shape": [2, 3], "data_offsets": [start, end]}`, where `start..end` is the
//! tensor's byte range *within the data section* (which begins at byte `8 + N` of the file). One
//! key is special: `__metadata__`, a free-form object of strings (the writer's notes: format,
//! framework version, ...). The reference writer (the `safetensors` crate, which the Python
//! package also calls) orders tensors by decreasing dtype size so that every tensor starts aligned
//! to its element size, and pads the header with spaces to a multiple of 8 bytes, so that the data
//! section starts 8-aligned in the file too.
//!
//! # What is checked, and why before anything else
//!
//! A weights file is input: it may be truncated by a failed download, produced by a buggy
//! converter, or crafted. Everything a later upload will trust is checked here, once, with
//! bounded work, and [`WeightsFile::open`] returns only files that pass:
//!
//! - **Bounded reads.** Only the 8-byte length and the header are read — never the data section,
//!   and the file is never mapped. The header length is checked against
//!   [`WeightLimits::max_header_bytes`] (100 MB by default, the reference reader's limit) and
//!   against the file's length *before* a buffer is allocated for it, so a 16-byte file claiming
//!   an exabyte header costs nothing. The number of tensors, the length of each name and the rank
//!   of each shape are bounded too ([`WeightLimits`]), while the header is parsed: a header can
//!   never make the parser hold much more memory than its own size.
//! - **Exact coverage.** The tensors, sorted by offset, tile the data section with no gap and no
//!   overlap, starting at 0, and the file ends exactly where the last tensor ends:
//!   `file length = 8 + N + end of the last tensor`. A truncated file, trailing bytes, a tensor
//!   read twice or bytes read by no tensor are all refused.
//! - **Sizes that add up.** Each tensor's byte length is `product(shape) × dtype size`, computed
//!   with checked arithmetic (a shape whose product overflows is refused, never wrapped); sub-byte
//!   dtypes (`F4`, `F6_*`) must fill whole bytes.
//! - **Alignment.** Each tensor with bytes starts at a data-section offset that is a multiple of
//!   its element size in bytes (1 for the sub-byte and 1-byte dtypes, 8 for `C64`), as the
//!   reference writer lays them out. A tensor of zero bytes is exempt: nothing is ever read at its
//!   offset.
//! - **Names and dtypes.** No name appears twice (JSON allows repeated keys; the reference reader
//!   keeps the last silently — here it is refused); every dtype is one the format defines
//!   ([`Dtype`], the `safetensors` crate's list); `__metadata__`, if present, maps strings to
//!   strings (or is `null`), and is kept.
//! - **The reference reader agrees.** The header is UTF-8 throughout, and fields of a tensor's
//!   entry that are not used are still parsed (strings decoded, numbers in range) before they are
//!   dropped, as the reference reader does: whatever is accepted here, it accepts too, with the
//!   same tensors (the fuzz target checks exactly that).
//!
//! Zero-size tensors (a shape with a 0 in it) are valid, as in the reference reader: they have
//! 0 bytes, `start == end`, and take no room in a slot. A header with no tensors at all (`{}`) is
//! a valid, empty file. A header may be padded with JSON whitespace (the reference writer's
//! spaces) or not padded at all; both are accepted.
//!
//! # Errors
//!
//! A file that fails a check is [`Error::InvalidWeights`] (`VRAM-E020`), naming the file, the first
//! offending tensor (where there is one) and what is wrong. Tensor names come from the file, so
//! they are never printed raw: they are escaped (quotes, control characters, invisible
//! formatting characters) and cut to 64 characters. A file that cannot be read — missing, not a
//! regular file, no permission, shorter than its size said while being read — is [`Error::Io`]
//! (`VRAM-E017`), naming the file.
//!
//! # Several files, one slot
//!
//! Large models ship as several files. [`WeightsSet::open_all`] opens each and refuses a tensor
//! name that appears in two of them; [`WeightsSet::layout`] places every tensor in one contiguous
//! allocation, each at an offset aligned like `cudaMalloc`'s ([`SLOT_ALIGNMENT`], 256 bytes), which
//! is what a model slot of [`WeightsSet::layout`]'s total size will hold. Uploading the bytes into
//! a slot is not done here.
//!
//! ```no_run
//! use vramguard::weights::{WeightLimits, WeightsSet, SLOT_ALIGNMENT};
//!
//! # fn main() -> vramguard::Result<()> {
//! let set = WeightsSet::open_all(&["model-00001.safetensors", "model-00002.safetensors"], &WeightLimits::default())?;
//! let layout = set.layout(SLOT_ALIGNMENT)?;
//! println!("{} tensors, {} bytes of data, a slot of {} bytes", set.tensor_count(), set.total_bytes(), layout.total_bytes);
//! # Ok(()) }
//! ```
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::ops::Range;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// The element types the format defines (the `safetensors` crate's list), with their sizes.
pub use safetensors::Dtype;

use crate::error::{Error, Result};

/// Bytes of the header-length prefix at the start of every safetensors file.
pub const LENGTH_PREFIX_BYTES: u64 = 8;

/// The alignment of each tensor in a slot's one allocation: `cudaMalloc` returns 256-byte aligned
/// memory, so tensors placed at multiples of 256 are as aligned as separate allocations would be.
pub const SLOT_ALIGNMENT: u64 = 256;

/// The header key that holds the writer's string-to-string notes rather than a tensor.
pub const METADATA_KEY: &str = "__metadata__";

/// Characters of a tensor name shown in a message before it is cut.
const SHOWN_NAME_CHARS: usize = 64;
/// Characters of a parser's message shown (it may quote the header).
const SHOWN_REASON_CHARS: usize = 240;

/// How much of a header is believed. Every bound is checked while reading or parsing, before the
/// memory it would cost is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeightLimits {
    /// The largest header, in bytes (100 MB by default: the reference reader's limit).
    pub max_header_bytes: u64,
    /// The most tensors one file may hold (100,000 by default).
    pub max_tensors: usize,
    /// The longest tensor name, in bytes (1,024 by default).
    pub max_name_bytes: usize,
    /// The most dimensions one tensor may have (64 by default).
    pub max_dims: usize,
}

impl Default for WeightLimits {
    fn default() -> Self {
        WeightLimits { max_header_bytes: 100_000_000, max_tensors: 100_000, max_name_bytes: 1024, max_dims: 64 }
    }
}

/// One tensor of a validated file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// The name, as the header spells it (untrusted text: print it with [`shown_name`]).
    pub name: String,
    /// The element type, e.g. `F16`.
    pub dtype: Dtype,
    /// The dimensions; `[]` is a scalar (one element), a 0 anywhere makes a tensor of 0 bytes.
    pub shape: Vec<u64>,
    /// The tensor's bytes as a range of *file* offsets (data section offset already added).
    pub range: Range<u64>,
}

impl TensorInfo {
    /// The tensor's size in bytes.
    pub fn bytes(&self) -> u64 {
        self.range.end - self.range.start
    }
}

/// What identifies the file that was validated, to tell later whether it changed under us: the
/// device and inode (the same file, not one renamed over it), its length and modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileIdentity {
    /// The ID of the device (file system) holding the file.
    pub dev: u64,
    /// The file's inode number.
    pub inode: u64,
    /// The file's length in bytes.
    pub len: u64,
    /// The file's last modification time.
    pub mtime: SystemTime,
}

impl FileIdentity {
    /// The modification time as nanoseconds since the Unix epoch (negative before it), as
    /// `st_mtim` says it.
    pub fn mtime_ns(&self) -> i64 {
        match self.mtime.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(after) => i64::try_from(after.as_nanos()).unwrap_or(i64::MAX),
            Err(before) => -i64::try_from(before.duration().as_nanos()).unwrap_or(i64::MAX),
        }
    }

    fn of(metadata: &std::fs::Metadata) -> FileIdentity {
        FileIdentity {
            dev: metadata.dev(),
            inode: metadata.ino(),
            len: metadata.len(),
            mtime: metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        }
    }
}

/// A validated header: what [`validate_header_bytes`] returns and [`WeightsFile`] holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    header_len: u64,
    data_len: u64,
    tensors: Vec<TensorInfo>,
    metadata: BTreeMap<String, String>,
}

impl Header {
    /// The header's length in bytes (N), padding included.
    pub fn header_len(&self) -> u64 {
        self.header_len
    }

    /// Where the data section starts in the file: `8 + N`.
    pub fn data_offset(&self) -> u64 {
        LENGTH_PREFIX_BYTES + self.header_len
    }

    /// The data section's length: the end of the last tensor, the sum of all tensors' bytes.
    pub fn data_len(&self) -> u64 {
        self.data_len
    }

    /// The tensors in file order (by offset; zero-size tensors at the same offset by name).
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The `__metadata__` entries (empty when the header has none).
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }
}

/// Why a header was refused: the first offending tensor, already escaped and cut for printing
/// (`None` when the problem is the file's, not one tensor's), and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderError {
    /// The first offending tensor's name, escaped and cut; `None` when the file is at fault.
    pub tensor: Option<String>,
    /// What is wrong.
    pub reason: String,
}

impl HeaderError {
    fn file(reason: String) -> HeaderError {
        HeaderError { tensor: None, reason }
    }

    fn tensor(name: &str, reason: String) -> HeaderError {
        HeaderError { tensor: Some(shown_name(name)), reason }
    }

    /// The error of this refusal in `file`.
    pub fn in_file(self, file: &Path) -> Error {
        Error::InvalidWeights { file: file.display().to_string(), tensor: self.tensor, reason: self.reason }
    }
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.tensor {
            Some(tensor) => write!(f, "tensor \"{tensor}\": {}", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

/// A name from a file, made safe to print: escaped like a Rust string literal's contents (quotes,
/// backslashes, control and invisible formatting characters) and cut to 64 characters, with the
/// full length in bytes noted when cut.
pub fn shown_name(name: &str) -> String {
    shown(name, SHOWN_NAME_CHARS)
}

fn shown(text: &str, max_chars: usize) -> String {
    let mut out = String::new();
    for (n, c) in text.chars().enumerate() {
        if n == max_chars {
            out.push_str(&format!("...({} bytes)", text.len()));
            break;
        }
        out.extend(c.escape_debug());
    }
    out
}

/// Validates a header: `header` is the N bytes after the 8-byte length, `file_len` the whole
/// file's length. Every check listed in the [module docs](self) happens here; [`WeightsFile::open`]
/// only reads the bytes and calls this. Needs no file, so a fuzzer can call it directly.
pub fn validate_header_bytes(
    file_len: u64,
    header: &[u8],
    limits: &WeightLimits,
) -> std::result::Result<Header, HeaderError> {
    let header_len = header.len() as u64;
    if header_len > limits.max_header_bytes {
        return Err(HeaderError::file(format!(
            "the header is {header_len} bytes, over the limit of {} (WeightLimits::max_header_bytes)",
            limits.max_header_bytes
        )));
    }
    let data_offset = LENGTH_PREFIX_BYTES + header_len;
    if data_offset > file_len {
        return Err(HeaderError::file(format!(
            "the header of {header_len} bytes runs past the end of the file ({file_len} bytes)"
        )));
    }
    let (entries, metadata) = parse(header, limits)?;

    // Each tensor on its own, in name order: dtype, offsets, size, alignment.
    let mut tensors = Vec::with_capacity(entries.len());
    for (name, raw) in entries {
        tensors.push(check_tensor(name, raw)?);
    }
    // Together, in offset order: they tile the data section from 0, no gap, no overlap.
    tensors.sort_by(|a, b| (a.range.start, a.range.end, &a.name).cmp(&(b.range.start, b.range.end, &b.name)));
    let mut end = 0u64;
    let mut previous: Option<&TensorInfo> = None;
    for tensor in &tensors {
        let Range { start, end: stop } = tensor.range;
        if start > end {
            let after = previous.map_or("the start of the data section".to_string(), |p| {
                format!("tensor \"{}\" (ends at {end})", shown_name(&p.name))
            });
            return Err(HeaderError::tensor(
                &tensor.name,
                format!("gap of {} bytes between {after} and this tensor (starts at {start})", start - end),
            ));
        }
        if start < end {
            let other = previous.map_or(String::new(), |p| shown_name(&p.name));
            return Err(HeaderError::tensor(
                &tensor.name,
                format!("bytes {start}..{stop} overlap tensor \"{other}\", which ends at {end}"),
            ));
        }
        end = stop;
        previous = Some(tensor);
    }
    let data_len = end;
    // The file ends exactly where the last tensor does.
    let expected = data_offset.checked_add(data_len);
    if expected != Some(file_len) {
        let last = previous.map(|t| t.name.as_str());
        let reason = match expected {
            Some(expected) if expected > file_len => format!(
                "the tensors end at data offset {data_len} (file byte {expected}), past the end of the file \
                 ({file_len} bytes): the file is truncated"
            ),
            Some(expected) if last.is_none() => {
                format!("{} bytes follow the header, which names no tensor", file_len - expected)
            }
            Some(expected) => format!(
                "{} bytes follow the end of the last tensor (file byte {expected}); the file is {file_len} bytes",
                file_len - expected
            ),
            None => format!("the tensors end at data offset {data_len}, past any file length"),
        };
        return Err(match last {
            Some(name) => HeaderError::tensor(name, reason),
            None => HeaderError::file(reason),
        });
    }
    for tensor in &mut tensors {
        // Cannot overflow: every end is at most data_len, and data_offset + data_len == file_len.
        tensor.range = data_offset + tensor.range.start..data_offset + tensor.range.end;
    }
    Ok(Header { header_len, data_len, tensors, metadata })
}

/// A tensor's entry as the header gives it, before any check.
struct RawTensor {
    dtype: String,
    shape: Vec<u64>,
    offsets: [u64; 2],
}

/// Checks one tensor alone; its range is still data-section relative.
fn check_tensor(name: String, raw: RawTensor) -> std::result::Result<TensorInfo, HeaderError> {
    let refuse = |reason: String| Err(HeaderError::tensor(&name, reason));
    let Ok(dtype) = Dtype::deserialize(de::value::StrDeserializer::<de::value::Error>::new(&raw.dtype)) else {
        return refuse(format!("unknown dtype \"{}\"", shown(&raw.dtype, SHOWN_NAME_CHARS)));
    };
    let [start, end] = raw.offsets;
    if end < start {
        return refuse(format!("data_offsets [{start}, {end}] end before they start"));
    }
    let bits = raw.shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d)).and_then(|n| n.checked_mul(bitsize(dtype)));
    let Some(bits) = bits else {
        return refuse(format!("shape {:?} of {dtype} overflows 64 bits", raw.shape));
    };
    if bits % 8 != 0 {
        return refuse(format!("shape {:?} of {dtype} is {bits} bits, not a whole number of bytes", raw.shape));
    }
    let bytes = bits / 8;
    if end - start != bytes {
        return refuse(format!(
            "data_offsets [{start}, {end}] hold {} bytes, but shape {:?} of {dtype} is {bytes} bytes",
            end - start,
            raw.shape
        ));
    }
    let align = element_bytes(dtype);
    if bytes > 0 && start % align != 0 {
        return refuse(format!("starts at data offset {start}, not a multiple of {dtype}'s {align}-byte size"));
    }
    Ok(TensorInfo { name, dtype, shape: raw.shape, range: start..end })
}

fn bitsize(dtype: Dtype) -> u64 {
    dtype.bitsize() as u64
}

/// The alignment a tensor's start needs: its element size in bytes, 1 for sub-byte dtypes.
fn element_bytes(dtype: Dtype) -> u64 {
    (bitsize(dtype) / 8).max(1)
}

type Entries = BTreeMap<String, RawTensor>;

/// Parses the JSON, enforcing the limits and refusing repeated names as it goes.
fn parse(
    header: &[u8],
    limits: &WeightLimits,
) -> std::result::Result<(Entries, BTreeMap<String, String>), HeaderError> {
    // The whole header, not only the strings that are kept: serde_json skips ignored values
    // without checking them, and the reference reader refuses any header that is not UTF-8.
    let header = std::str::from_utf8(header).map_err(|e| {
        HeaderError::file(format!("the header is not UTF-8: invalid byte at offset {}", e.valid_up_to()))
    })?;
    let mut problem = None;
    let mut deserializer = serde_json::Deserializer::from_str(header);
    let parsed = HeaderSeed { limits, problem: &mut problem }
        .deserialize(&mut deserializer)
        .and_then(|parsed| deserializer.end().map(|()| parsed));
    match parsed {
        Ok(parsed) => Ok(parsed),
        Err(error) => Err(problem.unwrap_or_else(|| {
            HeaderError::file(format!(
                "the header is not a JSON object: {}",
                shown(&error.to_string(), SHOWN_REASON_CHARS)
            ))
        })),
    }
}

/// Deserializes the top-level object. A refusal that concerns a tensor is left in `problem`
/// (serde's own errors cannot carry a tensor's name), and parsing stops at once.
struct HeaderSeed<'a> {
    limits: &'a WeightLimits,
    problem: &'a mut Option<HeaderError>,
}

impl<'de> DeserializeSeed<'de> for HeaderSeed<'_> {
    type Value = (Entries, BTreeMap<String, String>);

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> std::result::Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for HeaderSeed<'_> {
    type Value = (Entries, BTreeMap<String, String>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a safetensors header (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Self::Value, A::Error> {
        let limits = self.limits;
        let mut refuse = |problem: HeaderError| {
            *self.problem = Some(problem);
            de::Error::custom("refused")
        };
        let mut entries = Entries::new();
        let mut metadata: Option<BTreeMap<String, String>> = None;
        while let Some(name) = map.next_key::<String>()? {
            if name == METADATA_KEY {
                if metadata.is_some() {
                    return Err(refuse(HeaderError::file(format!("\"{METADATA_KEY}\" appears twice"))));
                }
                let value = map.next_value::<Option<BTreeMap<String, String>>>().map_err(|e| {
                    refuse(HeaderError::file(format!(
                        "\"{METADATA_KEY}\" must map strings to strings: {}",
                        shown(&e.to_string(), SHOWN_REASON_CHARS)
                    )))
                })?;
                metadata = Some(value.unwrap_or_default());
                continue;
            }
            if name.len() > limits.max_name_bytes {
                return Err(refuse(HeaderError::tensor(
                    &name,
                    format!(
                        "the name is {} bytes, over the limit of {} (WeightLimits::max_name_bytes)",
                        name.len(),
                        limits.max_name_bytes
                    ),
                )));
            }
            if entries.contains_key(&name) {
                return Err(refuse(HeaderError::tensor(&name, "the name appears twice in the header".into())));
            }
            if entries.len() >= limits.max_tensors {
                return Err(refuse(HeaderError::tensor(
                    &name,
                    format!("more than {} tensors (WeightLimits::max_tensors)", limits.max_tensors),
                )));
            }
            let raw = map.next_value_seed(TensorSeed { max_dims: limits.max_dims }).map_err(|e| {
                refuse(HeaderError::tensor(
                    &name,
                    format!(
                        "the entry is not {{dtype, shape, data_offsets}}: {}",
                        shown(&e.to_string(), SHOWN_REASON_CHARS)
                    ),
                ))
            })?;
            entries.insert(name, raw);
        }
        Ok((entries, metadata.unwrap_or_default()))
    }
}

/// Deserializes one tensor's entry; unknown fields are parsed and ignored, as the reference reader
/// does.
struct TensorSeed {
    max_dims: usize,
}

impl<'de> DeserializeSeed<'de> for TensorSeed {
    type Value = RawTensor;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> std::result::Result<RawTensor, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TensorSeed {
    type Value = RawTensor;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object with dtype, shape and data_offsets")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<RawTensor, A::Error> {
        let (mut dtype, mut shape, mut offsets) = (None, None, None);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "dtype" if dtype.is_none() => dtype = Some(map.next_value::<String>()?),
                "shape" if shape.is_none() => shape = Some(map.next_value_seed(ShapeSeed { max_dims: self.max_dims })?),
                "data_offsets" if offsets.is_none() => offsets = Some(map.next_value::<[u64; 2]>()?),
                "dtype" | "shape" | "data_offsets" => {
                    return Err(de::Error::custom(format!("duplicate field `{key}`")))
                }
                _ => {
                    map.next_value::<Skipped>()?;
                }
            }
        }
        Ok(RawTensor {
            dtype: dtype.ok_or_else(|| de::Error::missing_field("dtype"))?,
            shape: shape.ok_or_else(|| de::Error::missing_field("shape"))?,
            offsets: offsets.ok_or_else(|| de::Error::missing_field("data_offsets"))?,
        })
    }
}

/// A value the reader does not use, parsed as fully as the reference reader parses it — strings
/// decoded (a lone surrogate escape is refused), numbers in range — and dropped, holding nothing.
/// (serde's `IgnoredAny` skips without those checks, so the two readers would disagree.)
struct Skipped;

impl<'de> Deserialize<'de> for Skipped {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> std::result::Result<Skipped, D::Error> {
        deserializer.deserialize_any(Skipped)
    }
}

impl<'de> Visitor<'de> for Skipped {
    type Value = Skipped;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> std::result::Result<Skipped, E> {
        Ok(Skipped)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> std::result::Result<Skipped, E> {
        Ok(Skipped)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> std::result::Result<Skipped, E> {
        Ok(Skipped)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> std::result::Result<Skipped, E> {
        Ok(Skipped)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> std::result::Result<Skipped, E> {
        Ok(Skipped)
    }

    fn visit_unit<E: de::Error>(self) -> std::result::Result<Skipped, E> {
        Ok(Skipped)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Skipped, A::Error> {
        while seq.next_element::<Skipped>()?.is_some() {}
        Ok(Skipped)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Skipped, A::Error> {
        while map.next_entry::<Skipped, Skipped>()?.is_some() {}
        Ok(Skipped)
    }
}

/// Deserializes a shape, refusing more than `max_dims` dimensions before storing them.
struct ShapeSeed {
    max_dims: usize,
}

impl<'de> DeserializeSeed<'de> for ShapeSeed {
    type Value = Vec<u64>;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> std::result::Result<Vec<u64>, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ShapeSeed {
    type Value = Vec<u64>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of dimensions")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Vec<u64>, A::Error> {
        let mut shape = Vec::new();
        while let Some(dim) = seq.next_element::<u64>()? {
            if shape.len() == self.max_dims {
                return Err(de::Error::custom(format!(
                    "more than {} dimensions (WeightLimits::max_dims)",
                    self.max_dims
                )));
            }
            shape.push(dim);
        }
        Ok(shape)
    }
}

/// A safetensors file whose header passed every check, with the identity of the file it read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightsFile {
    path: PathBuf,
    file_len: u64,
    identity: FileIdentity,
    header: Header,
}

impl WeightsFile {
    /// Opens `path` and validates it: reads the 8-byte length and the header, never the data.
    /// `VRAM-E020` for a malformed file, `VRAM-E017` for one that cannot be read.
    pub fn open(path: impl AsRef<Path>, limits: &WeightLimits) -> Result<WeightsFile> {
        let path = path.as_ref();
        let io = |what: &str, e: std::io::Error| Error::Io(format!("cannot {what} weights file {path:?}: {e}"));
        // O_NONBLOCK: opening a FIFO by mistake must not wait for a writer. Regular files ignore it.
        let mut file =
            OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path).map_err(|e| io("open", e))?;
        let metadata = file.metadata().map_err(|e| io("stat", e))?;
        if !metadata.is_file() {
            return Err(Error::Io(format!("weights file {path:?} is not a regular file")));
        }
        let identity = FileIdentity::of(&metadata);
        let file_len = metadata.len();
        let invalid = |reason: String| HeaderError::file(reason).in_file(path);
        if file_len < LENGTH_PREFIX_BYTES {
            return Err(invalid(format!("the file is {file_len} bytes, shorter than the 8-byte header length")));
        }
        let mut prefix = [0u8; LENGTH_PREFIX_BYTES as usize];
        read_exact(&mut file, &mut prefix).map_err(|e| io("read", e))?;
        let header_len = u64::from_le_bytes(prefix);
        if header_len > limits.max_header_bytes {
            return Err(invalid(format!(
                "the header length field says {header_len} bytes, over the limit of {} (WeightLimits::max_header_bytes)",
                limits.max_header_bytes
            )));
        }
        if header_len > file_len - LENGTH_PREFIX_BYTES {
            return Err(invalid(format!(
                "the header length field says {header_len} bytes, past the end of the file ({file_len} bytes)"
            )));
        }
        let mut header = vec![0u8; header_len as usize];
        read_exact(&mut file, &mut header).map_err(|e| io("read", e))?;
        let header = validate_header_bytes(file_len, &header, limits).map_err(|e| e.in_file(path))?;
        Ok(WeightsFile { path: path.to_path_buf(), file_len, identity, header })
    }

    /// The path the file was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's length when it was opened.
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// The file's identity when it was opened.
    pub fn identity(&self) -> FileIdentity {
        self.identity
    }

    /// The validated header: lengths, tensors and metadata.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The tensors in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        self.header.tensors()
    }

    /// The `__metadata__` entries.
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        self.header.metadata()
    }

    /// The tensor called `name`, if the file has it.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.header.tensors.iter().find(|t| t.name == name)
    }

    /// Whether the path still names the file that was validated, unchanged (same device, inode,
    /// length and modification time). A file that is gone is changed.
    pub fn is_unchanged(&self) -> Result<bool> {
        match std::fs::metadata(&self.path) {
            Ok(metadata) => Ok(FileIdentity::of(&metadata) == self.identity),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::Io(format!("cannot stat weights file {:?}: {e}", self.path))),
        }
    }
}

/// `read_exact`, with a file that ends early said in words.
fn read_exact(file: &mut File, buf: &mut [u8]) -> std::io::Result<()> {
    file.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => std::io::Error::new(e.kind(), "the file is shorter than its size said"),
        _ => e,
    })
}

/// The files of one model slot, validated together: no tensor name in two of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightsSet {
    files: Vec<WeightsFile>,
    total_bytes: u64,
}

/// Where one tensor goes in a slot's allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlacedTensor {
    /// Index into [`WeightsSet::files`].
    pub file: usize,
    /// Index into that file's [`WeightsFile::tensors`].
    pub tensor: usize,
    /// Offset in the allocation, a multiple of the layout's alignment.
    pub offset: u64,
    /// The tensor's size in bytes.
    pub bytes: u64,
}

/// Every tensor of a [`WeightsSet`] placed in one contiguous allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotLayout {
    /// The alignment every offset is a multiple of (a power of two).
    pub alignment: u64,
    /// The allocation's size: where the last tensor ends.
    pub total_bytes: u64,
    /// Files in the order given, each file's tensors in file order (uploads read each file
    /// front to back).
    pub tensors: Vec<PlacedTensor>,
}

impl WeightsSet {
    /// Opens and validates every file (see [`WeightsFile::open`]), then refuses a tensor name
    /// found in two files (`VRAM-E020`, naming the later file and the earlier one). No files is
    /// `VRAM-E007`.
    pub fn open_all<P: AsRef<Path>>(paths: &[P], limits: &WeightLimits) -> Result<WeightsSet> {
        if paths.is_empty() {
            return Err(Error::InvalidArgument("a weights set needs at least one file".into()));
        }
        let files = paths.iter().map(|p| WeightsFile::open(p, limits)).collect::<Result<Vec<_>>>()?;
        let mut seen: HashMap<&str, &Path> = HashMap::new();
        let mut total_bytes = 0u64;
        for file in &files {
            for tensor in file.tensors() {
                if let Some(earlier) = seen.insert(&tensor.name, file.path()) {
                    return Err(HeaderError::tensor(
                        &tensor.name,
                        format!("the tensor is also in {earlier:?}; the files of one slot must not share names"),
                    )
                    .in_file(file.path()));
                }
            }
            total_bytes = total_bytes.checked_add(file.header.data_len()).ok_or_else(|| {
                HeaderError::file("the set's total bytes overflow 64 bits".into()).in_file(file.path())
            })?;
        }
        Ok(WeightsSet { files, total_bytes })
    }

    /// The validated files, in the order given.
    pub fn files(&self) -> &[WeightsFile] {
        &self.files
    }

    /// The tensors' bytes, all files together (without alignment padding).
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// Number of tensors, all files together.
    pub fn tensor_count(&self) -> usize {
        self.files.iter().map(|f| f.tensors().len()).sum()
    }

    /// Places every tensor in one allocation, each at the next multiple of `alignment` (a power of
    /// two; [`SLOT_ALIGNMENT`] for device memory). Zero-size tensors get an aligned offset and
    /// take no room. `VRAM-E007` for an alignment that is not a power of two.
    pub fn layout(&self, alignment: u64) -> Result<SlotLayout> {
        if !alignment.is_power_of_two() {
            return Err(Error::InvalidArgument(format!("layout alignment must be a power of two, not {alignment}")));
        }
        let mut tensors = Vec::with_capacity(self.tensor_count());
        let mut end = 0u64;
        for (f, file) in self.files.iter().enumerate() {
            for (t, tensor) in file.tensors().iter().enumerate() {
                let offset = end.checked_next_multiple_of(alignment);
                let placed = offset.and_then(|offset| offset.checked_add(tensor.bytes()).map(|e| (offset, e)));
                let Some((offset, tensor_end)) = placed else {
                    let reason = "the slot layout overflows 64 bits".to_string();
                    return Err(HeaderError::tensor(&tensor.name, reason).in_file(file.path()));
                };
                tensors.push(PlacedTensor { file: f, tensor: t, offset, bytes: tensor.bytes() });
                end = tensor_end;
            }
        }
        Ok(SlotLayout { alignment, total_bytes: end, tensors })
    }
}
