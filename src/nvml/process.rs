//! This process's line in NVML's process list, or why there is none. A figure is reported only
//! when NVML gives one for our PID; otherwise the answer is "unknown", never 0.
use super::ffi::{ProcessInfo, NVML_VALUE_NOT_AVAILABLE};

/// Device memory this process holds on one GPU, as the driver accounts it (H4): everything
/// the process holds there, tracked or not (context, libraries' pools, other allocators).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessVram {
    Known(u64),
    /// Why the driver's figure cannot be had.
    Unknown(String),
}

impl ProcessVram {
    pub fn bytes(&self) -> Option<u64> {
        match self {
            ProcessVram::Known(bytes) => Some(*bytes),
            ProcessVram::Unknown(_) => None,
        }
    }
}

/// Our entry in `list`. Entries of one PID in different MIG instances are added; a repeated
/// (pid, instance) entry counts once.
pub fn find_process(list: &[ProcessInfo], pid: u32) -> ProcessVram {
    let mut seen: Vec<(u32, u32)> = Vec::new();
    let mut total: u64 = 0;
    for entry in list.iter().filter(|entry| entry.pid == pid) {
        let instance = (entry.gpu_instance_id, entry.compute_instance_id);
        if seen.contains(&instance) {
            continue;
        }
        seen.push(instance);
        if entry.used_gpu_memory == NVML_VALUE_NOT_AVAILABLE {
            return ProcessVram::Unknown(format!(
                "NVML lists pid {pid} but without a memory figure (NVML_VALUE_NOT_AVAILABLE)"
            ));
        }
        total = total.saturating_add(entry.used_gpu_memory);
    }
    if seen.is_empty() {
        return ProcessVram::Unknown(not_listed(list, pid, in_own_pid_namespace()));
    }
    ProcessVram::Known(total)
}

/// Why our PID is missing: in a container the driver lists PIDs of another namespace.
pub fn not_listed(list: &[ProcessInfo], pid: u32, own_pid_namespace: Option<bool>) -> String {
    let mut pids: Vec<String> = list.iter().take(8).map(|entry| entry.pid.to_string()).collect();
    if list.len() > pids.len() {
        pids.push("...".into());
    }
    let listed = if pids.is_empty() { "no process".to_owned() } else { format!("pids [{}]", pids.join(", ")) };
    let why = match own_pid_namespace {
        Some(true) => "; this process runs in its own PID namespace (a container), where NVML's PIDs are not ours",
        Some(false) => "; this process has no CUDA context on the GPU yet, or the driver hides it",
        None => "",
    };
    format!("pid {pid} is not in NVML's compute-process list for this GPU (it lists {listed}){why}")
}

/// Whether this process runs outside the initial PID namespace (Linux), or None when that cannot
/// be read. The initial namespace's inode is fixed by the kernel (PROC_PID_INIT_INO).
pub fn in_own_pid_namespace() -> Option<bool> {
    const PROC_PID_INIT_INO: &str = "pid:[4026531836]";
    let link = std::fs::read_link("/proc/self/ns/pid").ok()?;
    Some(link.to_str()? != PROC_PID_INIT_INO)
}
