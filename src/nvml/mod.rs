//! Process VRAM from NVML (being written).
