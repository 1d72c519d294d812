//! Step definitions, one module per area, over one world (`world::VramWorld`).
pub mod budget;
pub mod executor;
pub mod gate;
pub mod health;
pub mod leak;
pub mod memory;
pub mod no_gpu;
pub mod params;
pub mod residency;
pub mod slots;
pub mod tracking;
pub mod world;
