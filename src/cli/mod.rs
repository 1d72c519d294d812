//! The operator commands behind the `vramguard` binary.
pub mod check;
