//! Bad input at every public entry point of the Rust API (issue "Behaviour specs and hardening",
//! part 2). Each invalid value is answered by its documented code (`Error::code()`, VRAM-E0NN;
//! see the README's error table), leaves the state it would have changed exactly as it was, and
//! never panics. Callbacks that panic are contained and counted, and the product keeps working.
//!
//! No GPU is needed, and every test passes the same on a GPU host: device-only inputs are tried
//! where they are validated before the device is touched, and the one device every host lacks
//! is ordinal 63 (VRAM-E001 without a driver, VRAM-E010 with one). Trying an argument error on
//! device 63 also proves its order: a VRAM-E003 there means the device was never asked.
//!
//! One file per area, under `tests/bad_input/`.

#[path = "bad_input/tracker.rs"]
mod tracker;

#[path = "bad_input/budget.rs"]
mod budget;

#[path = "bad_input/slots.rs"]
mod slots;

#[path = "bad_input/reservation.rs"]
mod reservation;

#[path = "bad_input/monitor.rs"]
mod monitor;

#[path = "bad_input/health.rs"]
mod health;

#[path = "bad_input/workload.rs"]
mod workload;

#[path = "bad_input/cli.rs"]
mod cli;

#[path = "bad_input/server.rs"]
mod server;

#[path = "bad_input/service.rs"]
mod service;

#[path = "bad_input/callbacks.rs"]
mod callbacks;

/// No host has this many GPUs: VRAM-E001 without a driver, VRAM-E010 with one.
pub const UNUSABLE_DEVICE: u32 = 63;

/// The code of the error `result` must be; panics (failing the test) on `Ok`.
pub fn code<T>(result: vramguard::Result<T>) -> &'static str {
    match result {
        Ok(_) => panic!("expected an error, got Ok"),
        Err(error) => error.code(),
    }
}

/// The error of a call on device 63: no driver (E001) or no such device (E010), nothing else.
pub fn is_unusable_device(code: &str) -> bool {
    code == "VRAM-E001" || code == "VRAM-E010"
}
