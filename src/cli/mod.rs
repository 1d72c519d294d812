//! The operator commands behind the `vramguard` binary.
pub mod check;
pub mod load;
pub mod plan;
pub mod serve;
mod units;

pub use units::{parse_bytes, parse_duration};
