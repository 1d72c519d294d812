//! BDD scenarios (being written).
fn main() {}
