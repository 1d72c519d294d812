//! The HTTP endpoint (being written).
