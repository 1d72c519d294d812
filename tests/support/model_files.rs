//! Safetensors files for tests and benchmarks: written in the reference layout (tensors back to
//! back in the order given, the header padded with spaces to 8 bytes), the data streamed in blocks
//! from a seeded generator so that a file of gigabytes never sits in memory.
#![allow(dead_code)]
use std::io::Write;
use std::path::{Path, PathBuf};

use vramguard::weights::Dtype;

/// One tensor to write.
#[derive(Debug, Clone)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<u64>,
}

impl TensorSpec {
    pub fn new(name: &str, dtype: Dtype, shape: &[u64]) -> TensorSpec {
        TensorSpec { name: name.to_string(), dtype, shape: shape.to_vec() }
    }

    pub fn bytes(&self) -> u64 {
        self.shape.iter().product::<u64>() * self.dtype.bitsize() as u64 / 8
    }
}

/// A fresh directory under the system's temporary directory, unique to this process and label.
pub fn temp_dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vramguard-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}

/// SplitMix64: fast, seeded, good enough to make every byte of every tensor different.
struct Bytes(u64);

impl Bytes {
    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
        }
    }
}

/// Writes `tensors` to `path` with random data from `seed`; returns the file's length. As the
/// reference writer does, tensors are laid out by decreasing element size (stable), so that each
/// starts aligned to its dtype.
pub fn write_model(path: &Path, tensors: &[TensorSpec], seed: u64) -> std::io::Result<u64> {
    let mut ordered: Vec<&TensorSpec> = tensors.iter().collect();
    ordered.sort_by_key(|t| std::cmp::Reverse(t.dtype.bitsize()));
    let mut header = serde_json::Map::new();
    let mut offset = 0u64;
    for tensor in ordered {
        let end = offset + tensor.bytes();
        header.insert(
            tensor.name.clone(),
            serde_json::json!({"dtype": format!("{:?}", tensor.dtype), "shape": tensor.shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut header = serde_json::to_vec(&serde_json::Value::Object(header))?;
    while header.len() % 8 != 0 {
        header.push(b' ');
    }
    let mut file = std::io::BufWriter::with_capacity(8 << 20, std::fs::File::create(path)?);
    file.write_all(&(header.len() as u64).to_le_bytes())?;
    file.write_all(&header)?;
    let mut bytes = Bytes(seed);
    let mut block = vec![0u8; 8 << 20];
    let mut left = offset;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        bytes.fill(&mut block[..n]);
        file.write_all(&block[..n])?;
        left -= n as u64;
    }
    file.flush()?;
    Ok(8 + header.len() as u64 + offset)
}

/// `count` bf16 matrices of `rows × cols`: the shape of a transformer's weights.
pub fn bf16_layers(count: usize, rows: u64, cols: u64) -> Vec<TensorSpec> {
    (0..count).map(|i| TensorSpec::new(&format!("model.layers.{i}.weight"), Dtype::BF16, &[rows, cols])).collect()
}

/// The first load of weights in a fresh context costs it 8 MiB of the driver's memory once
/// (measured on the H200: the weights trials run alone lost exactly that; later loaders and loads
/// cost nothing, tests/gpu/weights.rs). Suites that compare the driver's free memory before and
/// after load a tiny file once before they take their baseline.
pub fn warm_up_weights_loading(tracker: &vramguard::Tracker) {
    use vramguard::slots::{DeviceBacking, ModelSlotManager, SlotConfig};
    let dir = temp_dir("warm-up");
    let path = dir.join("warm-up.safetensors");
    if write_model(&path, &[TensorSpec::new("w", Dtype::U8, &[4096])], 0).is_ok() {
        let backing = DeviceBacking { tracker: tracker.clone(), kind: vramguard::AllocationKind::Device };
        let slots = ModelSlotManager::with_config(SlotConfig { backing: Some(backing), ..SlotConfig::default() });
        let _ = slots.load_weights("warm-up".to_string(), &[&path]);
    }
    let _ = std::fs::remove_dir_all(dir);
    // The bandwidth witness's kernel, loaded as a health check's first witness loads it.
    drop(vramguard::witness::ReadWitness::new(tracker.device()));
}
