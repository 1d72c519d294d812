//! NVML's array-sizing protocol: call, and on NVML_ERROR_INSUFFICIENT_SIZE the count says how
//! many entries there are; grow and call again. Processes start between calls, so it retries a
//! few times with headroom rather than trusting one answer.
use super::ffi::{NvmlReturn, NVML_ERROR_INSUFFICIENT_SIZE, NVML_SUCCESS};

/// Calls before giving up on a list that keeps growing.
const ATTEMPTS: usize = 5;
/// Extra entries on each growth, for processes that start between two calls.
const HEADROOM: usize = 8;
/// No GPU runs more processes than this; a larger count is treated as the driver's error.
const MAX_ENTRIES: usize = 1 << 16;

/// Runs `call(count, buffer)` until it fits. `call` gets the buffer's length in `count` and must
/// pass a null array when `buffer` is empty; on success `count` is the number of entries written.
/// Returns the entries, or the NVML code of the failure.
pub fn collect_sized<T: Copy + Default>(
    mut call: impl FnMut(&mut u32, &mut [T]) -> NvmlReturn,
) -> Result<Vec<T>, NvmlReturn> {
    let mut buffer: Vec<T> = Vec::new();
    for _ in 0..ATTEMPTS {
        let mut count = buffer.len() as u32;
        match call(&mut count, &mut buffer) {
            NVML_SUCCESS => {
                buffer.truncate(count as usize);
                return Ok(buffer);
            }
            NVML_ERROR_INSUFFICIENT_SIZE => {
                let needed = (count as usize).max(buffer.len() + 1) + HEADROOM;
                if needed > MAX_ENTRIES {
                    return Err(NVML_ERROR_INSUFFICIENT_SIZE);
                }
                buffer = vec![T::default(); needed];
            }
            code => return Err(code),
        }
    }
    Err(NVML_ERROR_INSUFFICIENT_SIZE)
}
