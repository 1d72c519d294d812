//! O1, O2: the GPU monitor (being written).
