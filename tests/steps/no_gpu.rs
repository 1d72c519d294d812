//! A worker on a host without the GPU it asks for: a coded error, never a CPU fallback. GPU 63
//! exists on no host, so these hold with or without a GPU.
use cucumber::{then, when};
use vramguard::{Device, Error};

use super::world::VramWorld;

/// VRAM-E001 where there is no driver or no GPU at all, VRAM-E010 where there are GPUs but not
/// that one.
pub fn expected_code() -> &'static str {
    match vramguard::device_count() {
        Err(Error::NoDevice(_)) => "VRAM-E001",
        Err(other) => panic!("counting GPUs failed otherwise: {other}"),
        Ok(_) => "VRAM-E010",
    }
}

#[when(expr = "the worker opens GPU {int}")]
fn open(world: &mut VramWorld, ordinal: u32) {
    world.error = Device::new(ordinal).err();
}

#[then("it fails with VRAM-E001 if the host has no usable GPU, else VRAM-E010")]
fn fails(world: &mut VramWorld) {
    let error = world.error.as_ref().expect("opening the GPU succeeded");
    assert_eq!(error.code(), expected_code(), "{error}");
}

#[then("the error message starts with its code and says what to do next")]
fn message(world: &mut VramWorld) {
    let error = world.error.as_ref().expect("opening the GPU succeeded");
    assert!(error.to_string().starts_with(&format!("[{}]", error.code())), "{error}");
    assert!(!error.remediation().is_empty());
    assert_eq!(error.to_json()["code"], error.code());
}
