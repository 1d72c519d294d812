//! W1 + I1 on a real device: safetensors files loaded into model slots are, byte for byte, the
//! files' tensors at their offsets (several dtypes, shapes, files, and sizes spanning many
//! staging chunks); weights that differ on the device from what they must be (here: from a
//! checksum they do not have; corruption in staging itself is the C++ suite's, which alone can
//! provoke it), a file changed after validation, a load that does not fit are refused with their
//! codes and leave nothing behind; a load over the
//! budget evicts by plan; the loaded checksum is the integrity reference; `vramguard serve` with a
//! workload of files and `vramguard load` work end to end.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use libtest_mimic::{Failed, Trial};
use vramguard::health::HealthConfig;
use vramguard::loader::{LoaderConfig, Verification};
use vramguard::server::ServerConfig;
use vramguard::service::{Service, ServiceConfig, Workload};
use vramguard::slots::{DeviceBacking, ModelSlotManager, SlotConfig, WeightsLoadOptions};
use vramguard::weights::{Dtype, WeightLimits, WeightsSet};
use vramguard::{host_checksum, AllocationKind, Device, Purpose, Tracker};

use crate::ensure;
use crate::gpu_gate::{gpu, vramguard_binary};
use crate::http_client;
use crate::model_files::{bf16_layers, temp_dir, write_model, TensorSpec};

const MIB: u64 = 1 << 20;

pub fn trials() -> Vec<Trial> {
    vec![
        gpu(
            "weights::loaded_slots_hold_the_files_tensors_byte_for_byte",
            loaded_slots_hold_the_files_tensors_byte_for_byte,
        ),
        gpu(
            "weights::weights_that_differ_on_the_device_are_refused_and_nothing_leaks",
            weights_that_differ_on_the_device_are_refused_and_nothing_leaks,
        ),
        gpu("weights::a_file_changed_after_validation_is_refused", a_file_changed_after_validation_is_refused),
        gpu("weights::a_load_over_the_budget_evicts_by_plan", a_load_over_the_budget_evicts_by_plan),
        gpu("weights::a_load_that_cannot_fit_fails_at_once_and_evicts_nothing", a_load_that_cannot_fit_fails_at_once),
        gpu("weights::the_loaded_checksum_is_the_integrity_reference", the_loaded_checksum_is_the_integrity_reference),
        gpu("weights::serve_with_a_workload_of_files_reports_them_resident", serve_with_a_workload_of_files),
        gpu("weights::vramguard_load_prints_what_it_loaded", vramguard_load_prints_what_it_loaded),
        gpu("weights::loaders_leave_no_device_memory_behind", loaders_leave_no_device_memory_behind),
    ]
}

fn manager(tracker: &Tracker, budget: u64, loader: LoaderConfig) -> ModelSlotManager<String> {
    ModelSlotManager::with_config(SlotConfig {
        budget_bytes: budget,
        backing: Some(DeviceBacking { tracker: tracker.clone(), kind: AllocationKind::Device }),
        loader,
        unload_min_residency: Duration::ZERO,
        ..SlotConfig::default()
    })
}

/// Small staging (4 readers × 2 × 1 MiB) so that even small files cross many chunks.
fn small_staging() -> LoaderConfig {
    LoaderConfig { staging_bytes: 8 * MIB, readers: 4, ..LoaderConfig::default() }
}

/// Where the layout puts each tensor: (file, tensor, offset).
fn offsets_of(set: &WeightsSet) -> Result<Vec<(usize, usize, u64)>, Failed> {
    Ok(set.layout(256)?.tensors.iter().map(|p| (p.file, p.tensor, p.offset)).collect())
}

/// The slot's bytes as the files say they must be: each tensor at its offset, zeros between.
fn expected_image(set: &WeightsSet, image_bytes: u64, offsets: &[(usize, usize, u64)]) -> Result<Vec<u8>, Failed> {
    let mut image = vec![0u8; image_bytes as usize];
    for &(f, t, offset) in offsets {
        let file = &set.files()[f];
        let data = std::fs::read(file.path())?;
        let range = &file.tensors()[t].range;
        image[offset as usize..(offset + range.end - range.start) as usize]
            .copy_from_slice(&data[range.start as usize..range.end as usize]);
    }
    Ok(image)
}

fn loaded_slots_hold_the_files_tensors_byte_for_byte() -> Result<(), Failed> {
    let dir = temp_dir("weights-bytes");
    let tracker = Device::new(0)?.tracker()?;
    // Shapes and dtypes of real checkpoints, sizes that are no multiple of anything, two files.
    let first = vec![
        TensorSpec::new("embed.weight", Dtype::F32, &[1000, 333]),
        TensorSpec::new("norm.weight", Dtype::F32, &[333]),
        TensorSpec::new("layer.0.q", Dtype::BF16, &[777, 1024]),
        TensorSpec::new("layer.0.bias", Dtype::F16, &[13]),
        TensorSpec::new("scalar", Dtype::F64, &[]),
        TensorSpec::new("empty", Dtype::F32, &[0, 4]),
        TensorSpec::new("mask", Dtype::U8, &[5, 3]),
        TensorSpec::new("ids", Dtype::I64, &[3]),
    ];
    let second = vec![
        TensorSpec::new("layer.1.q", Dtype::BF16, &[4096, 1031]),
        TensorSpec::new("layer.1.k", Dtype::I8, &[4097]),
        TensorSpec::new("fp8", Dtype::F8_E4M3, &[1023, 7]),
    ];
    let paths = [dir.join("model-00001-of-00002.safetensors"), dir.join("model-00002-of-00002.safetensors")];
    write_model(&paths[0], &first, 1)?;
    write_model(&paths[1], &second, 2)?;
    for (label, loader) in [("small staging", small_staging()), ("default staging", LoaderConfig::default())] {
        let slots = manager(&tracker, u64::MAX, loader);
        let loaded = slots.load_weights("model".to_string(), &paths)?;
        let weights = &loaded.weights;
        ensure!(weights.report.verified, "{label}: not verified");
        ensure!(weights.tensors.len() == first.len() + second.len(), "{label}: {} tensors", weights.tensors.len());
        let set = WeightsSet::open_all(&paths, &WeightLimits::default())?;
        ensure!(
            weights.report.bytes == set.total_bytes(),
            "{label}: {} bytes of {}",
            weights.report.bytes,
            set.total_bytes()
        );
        let layout = set.layout(256)?;
        let offsets: Vec<_> = layout.tensors.iter().map(|p| (p.file, p.tensor, p.offset)).collect();
        let expected = expected_image(&set, layout.total_bytes, &offsets)?;
        let slot = slots.use_slot(&"model".to_string())?;
        let buffer = slot.buffer().ok_or("no buffer")?;
        ensure!(
            buffer.len() == layout.total_bytes,
            "{label}: slot of {} bytes, layout {}",
            buffer.len(),
            layout.total_bytes
        );
        let image = buffer.to_vec()?;
        ensure!(image == expected, "{label}: the slot's bytes differ from the files' tensors");
        ensure!(weights.report.checksum == host_checksum(&expected), "{label}: checksum is not the image's");
        ensure!(slot.integrity_reference() == Some(weights.report.checksum), "{label}: reference not set");
        // The tensor table: device addresses inside the slot, names and shapes from the files.
        let q = weights.tensor("layer.1.q").ok_or("layer.1.q missing")?;
        ensure!(q.dtype == Dtype::BF16 && q.shape == vec![4096, 1031] && q.offset % 256 == 0, "{q:?}");
        ensure!(q.device_ptr == buffer.as_ptr() as u64 + q.offset, "{q:?}");
        drop(slot);
        slots.deallocate_slot(&"model".to_string());
    }
    ensure!(tracker.total_bytes() == 0, "{} bytes still tracked", tracker.total_bytes());
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

fn one_file(dir: &Path, name: &str, layers: usize, seed: u64) -> Result<PathBuf, Failed> {
    let path = dir.join(name);
    write_model(&path, &bf16_layers(layers, 1024, 1024), seed)?; // 2 MiB per layer
    Ok(path)
}

fn weights_that_differ_on_the_device_are_refused_and_nothing_leaks() -> Result<(), Failed> {
    let dir = temp_dir("weights-corrupt");
    let tracker = Device::new(0)?.tracker()?;
    let path = one_file(&dir, "m.safetensors", 8, 3)?;
    let slots = manager(&tracker, u64::MAX, small_staging());
    let set = WeightsSet::open_all(&[&path], &WeightLimits::default())?;
    let image = expected_image(&set, set.layout(256)?.total_bytes, &offsets_of(&set)?)?;
    let mut wrong = host_checksum(&image);
    wrong.lo ^= 1; // what the device's bytes would sum to with one bit changed
    let options = WeightsLoadOptions { verification: Verification::Expected(wrong), evict: true };
    let error = slots.load_weights_set("m".to_string(), &set, options).err().ok_or("a mismatching load succeeded")?;
    ensure!(error.code() == "VRAM-E021", "{error}");
    ensure!(!slots.has_slot(&"m".to_string()) && slots.allocated() == 0, "the slot stayed");
    ensure!(tracker.total_bytes() == 0, "{} bytes still tracked", tracker.total_bytes());
    // And the same manager loads the file intact afterwards.
    slots.load_weights("m".to_string(), &[&path])?;
    ensure!(slots.has_slot(&"m".to_string()), "no slot after a clean load");
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

fn a_file_changed_after_validation_is_refused() -> Result<(), Failed> {
    let dir = temp_dir("weights-changed");
    let tracker = Device::new(0)?.tracker()?;
    let path = one_file(&dir, "m.safetensors", 4, 4)?;
    let slots = manager(&tracker, u64::MAX, small_staging());
    let set = WeightsSet::open_all(&[&path], &WeightLimits::default())?;
    // Rewritten in place with the same size: only the modification time and the bytes differ.
    std::thread::sleep(Duration::from_millis(20));
    write_model(&path, &bf16_layers(4, 1024, 1024), 5)?;
    let error = slots.load_weights_set("m".to_string(), &set, WeightsLoadOptions::default()).err().ok_or("loaded")?;
    ensure!(error.code() == "VRAM-E022", "{error}");
    ensure!(!slots.has_slot(&"m".to_string()) && tracker.total_bytes() == 0, "the slot stayed");
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

fn a_load_over_the_budget_evicts_by_plan() -> Result<(), Failed> {
    let dir = temp_dir("weights-evict");
    let tracker = Device::new(0)?.tracker()?;
    let paths: Vec<PathBuf> =
        (0..3).map(|i| one_file(&dir, &format!("m{i}.safetensors"), 10, i)).collect::<Result<_, _>>()?;
    let slots = manager(&tracker, 50 * MIB, small_staging()); // two 20 MiB models fit, three do not
    slots.load_weights("a".to_string(), &[&paths[0]])?;
    slots.load_weights("b".to_string(), &[&paths[1]])?;
    slots.touch(&"a".to_string()); // b is now the least recently used
    let loaded = slots.load_weights("c".to_string(), &[&paths[2]])?;
    ensure!(loaded.outcome.evicted == vec!["b".to_string()], "evicted {:?}", loaded.outcome.evicted);
    ensure!(slots.has_slot(&"a".to_string()) && slots.has_slot(&"c".to_string()), "a or c missing");
    ensure!(tracker.bytes_for(Purpose::ModelWeights) == slots.allocated(), "tracker and budget disagree");
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

fn a_load_that_cannot_fit_fails_at_once() -> Result<(), Failed> {
    let dir = temp_dir("weights-nofit");
    let tracker = Device::new(0)?.tracker()?;
    let small = one_file(&dir, "small.safetensors", 10, 6)?; // 20 MiB
    let large = one_file(&dir, "large.safetensors", 20, 7)?; // 40 MiB
    let slots = manager(&tracker, 50 * MIB, small_staging());
    slots.load_weights("pinned".to_string(), &[&small])?;
    slots.pin(&"pinned".to_string(), true)?;
    let before = tracker.total_bytes();
    let error = slots.load_weights("large".to_string(), &[&large]).err().ok_or("loaded past the budget")?;
    ensure!(error.code() == "VRAM-E002", "{error}");
    ensure!(slots.has_slot(&"pinned".to_string()) && slots.stats().evictions == 0, "something was evicted");
    ensure!(tracker.total_bytes() == before && !slots.has_slot(&"large".to_string()), "the load left memory");
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

fn the_loaded_checksum_is_the_integrity_reference() -> Result<(), Failed> {
    let dir = temp_dir("weights-integrity");
    let tracker = Device::new(0)?.tracker()?;
    let path = one_file(&dir, "m.safetensors", 4, 8)?;
    let slots = manager(&tracker, u64::MAX, small_staging());
    slots.load_weights("m".to_string(), &[&path])?;
    ensure!(slots.verify_integrity().is_empty(), "a fresh load is a violation");
    let slot = slots.use_slot(&"m".to_string())?;
    slot.copy_from_host(12345, &[0x5A])?; // one byte changed behind the loader's back
    drop(slot);
    let violations = slots.verify_integrity();
    ensure!(violations.len() == 1 && violations[0].key == "m", "{violations:?}");
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

fn serve_with_a_workload_of_files() -> Result<(), Failed> {
    let dir = temp_dir("weights-serve");
    let paths = [one_file(&dir, "a-1.safetensors", 3, 9)?, one_file(&dir, "a-2.safetensors", 2, 10)?];
    std::fs::rename(&paths[1], dir.join("renamed.safetensors"))?; // the workload names it relative
    let toml = "[[slot]]\nname = \"encoder\"\nfiles = [\"a-1.safetensors\", \"renamed.safetensors\"]\npinned = true\n";
    let workload_path = dir.join("workload.toml");
    std::fs::write(&workload_path, toml)?;
    // Two tensor names collide across the files (both start at layer 0): refused before the device.
    let collision = Workload::load(&workload_path).err().ok_or("colliding files accepted")?;
    ensure!(collision.code() == "VRAM-E020", "{collision}");
    write_model(&dir.join("renamed.safetensors"), &[TensorSpec::new("head.weight", Dtype::BF16, &[1024, 1024])], 11)?;
    let workload = Workload::load(&workload_path)?;
    let config = ServiceConfig {
        health: HealthConfig { interval: Duration::from_millis(200), ..HealthConfig::default() },
        server: ServerConfig { port: 0, ..ServerConfig::default() },
        workload,
        ..ServiceConfig::default()
    };
    let service = Service::start(config)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let health = loop {
        let response = http_client::get(service.local_addr(), "/health");
        if response.status == 200 || std::time::Instant::now() > deadline {
            break response;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    ensure!(health.status == 200, "{}", health.text());
    let json = health.json();
    ensure!(json["resident"] == true, "{json}");
    let slot = &json["slots"][0];
    ensure!(slot["name"] == "encoder" && slot["pinned"] == true, "{json}");
    let weights = &slot["weights"];
    ensure!(weights["tensors"] == 4 && weights["verified"] == true, "{weights}");
    ensure!(weights["files"].as_array().map(Vec::len) == Some(2), "{weights}");
    ensure!(weights["load_gb_per_s"].as_f64().unwrap_or(0.0) > 0.0, "{weights}");
    ensure!(weights["bytes"] == 4 * 2 * MIB, "{weights}");
    service.shutdown();
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

fn vramguard_load_prints_what_it_loaded() -> Result<(), Failed> {
    let dir = temp_dir("weights-cli");
    let path = one_file(&dir, "m.safetensors", 16, 12)?;
    let output = Command::new(vramguard_binary()).args(["load", "--json"]).arg(&path).output()?;
    ensure!(output.status.success(), "exit {:?}: {}", output.status, String::from_utf8_lossy(&output.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    ensure!(summary["tensors"] == 16 && summary["bytes"] == 32 * MIB && summary["verified"] == true, "{summary}");
    ensure!(summary["gb_per_s"].as_f64().unwrap_or(0.0) > 0.0, "{summary}");
    let text = Command::new(vramguard_binary()).arg("load").arg(&path).output()?;
    let stdout = String::from_utf8_lossy(&text.stdout);
    ensure!(text.status.success() && stdout.starts_with("loaded 16 tensors, 33554432 bytes"), "{stdout}");
    // A bad file: its own code, exit 1, before any device work.
    std::fs::write(dir.join("bad.safetensors"), b"\x10\0\0\0\0\0\0\0{\"a\": 1}")?;
    let bad = Command::new(vramguard_binary()).arg("load").arg(dir.join("bad.safetensors")).output()?;
    let stderr = String::from_utf8_lossy(&bad.stderr);
    ensure!(bad.status.code() == Some(1) && stderr.contains("VRAM-E020"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

/// A loader's first load costs the context some memory once (the driver's first asynchronous
/// memset and copies from new threads); every later loader, load and drop leaves the driver's
/// free memory where it was.
fn loaders_leave_no_device_memory_behind() -> Result<(), Failed> {
    let dir = temp_dir("weights-leak");
    let device = Device::new(0)?;
    let tracker = device.tracker()?;
    let path = one_file(&dir, "m.safetensors", 8, 13)?;
    let cycle = || -> Result<(), Failed> {
        let slots = manager(&tracker, u64::MAX, LoaderConfig::default());
        slots.load_weights("m".to_string(), &[&path])?;
        Ok(())
    };
    let free = || device.memory_info().map(|m| m.free_bytes);
    let start = free()?;
    cycle()?;
    let after_first = free()?;
    for _ in 0..3 {
        cycle()?;
    }
    let after_more = free()?;
    println!(
        "  [ vramguard ] loader cycles: first cost {} bytes of the context, three more {} bytes",
        start as i64 - after_first as i64,
        after_first as i64 - after_more as i64
    );
    ensure!(after_first.saturating_sub(after_more) <= 2 << 20, "loaders leak: {after_first} then {after_more}");
    ensure!(tracker.total_bytes() == 0, "{} bytes still tracked", tracker.total_bytes());
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
