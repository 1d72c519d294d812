//! A shared library opened with `dlopen`, so that vramguard builds and runs without the NVIDIA
//! driver: NVML is looked for at run time, never linked.
use std::ffi::{c_void, CStr, CString};
use std::ptr::NonNull;

use super::error::NvmlUnavailable;

/// An open `dlopen` handle; `dlclose`d on drop.
#[derive(Debug)]
pub(crate) struct Library {
    handle: NonNull<c_void>,
    name: String,
}

// SAFETY: a dlopen handle is a process-wide token; dlsym and dlclose may be called on it from any
// thread (glibc serialises them internally), and Library has no interior state of its own.
unsafe impl Send for Library {}
// SAFETY: as above; &Library only allows dlsym.
unsafe impl Sync for Library {}

impl Library {
    pub(crate) fn open(name: &str) -> Result<Library, NvmlUnavailable> {
        let unavailable = |reason: String| NvmlUnavailable::Library { library: name.to_owned(), reason };
        let c_name = CString::new(name).map_err(|_| unavailable("the name contains a NUL byte".into()))?;
        // SAFETY: c_name is a NUL-terminated string that outlives the call.
        let handle = unsafe { libc::dlopen(c_name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        match NonNull::new(handle) {
            Some(handle) => Ok(Library { handle, name: name.to_owned() }),
            None => Err(unavailable(last_dl_error())),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The function `symbol` as a function pointer of type `F`.
    ///
    /// # Safety
    /// `F` must be an `unsafe extern "C" fn` type matching the C declaration of `symbol`.
    pub(crate) unsafe fn function<F: Copy>(&self, symbol: &'static CStr) -> Result<F, NvmlUnavailable> {
        const { assert!(std::mem::size_of::<F>() == std::mem::size_of::<*mut c_void>(), "F must be a function pointer") };
        // SAFETY: the handle is open (closed only on drop) and symbol is NUL-terminated.
        let address = unsafe { libc::dlsym(self.handle.as_ptr(), symbol.as_ptr()) };
        if address.is_null() {
            return Err(NvmlUnavailable::MissingSymbol {
                library: self.name.clone(),
                symbol: symbol.to_str().unwrap_or("a symbol"),
            });
        }
        // SAFETY: address is a non-null function address from dlsym, F is a function pointer of
        // the same size (checked at compile time) and the caller guarantees it has the right signature.
        Ok(unsafe { std::mem::transmute_copy::<*mut c_void, F>(&address) })
    }
}

impl Drop for Library {
    fn drop(&mut self) {
        // SAFETY: the handle came from a successful dlopen and is closed exactly once, here; no
        // function pointer taken from it outlives the owner (Nvml drops it last).
        unsafe { libc::dlclose(self.handle.as_ptr()) };
    }
}

/// `dlerror`'s message for this thread's last failure.
fn last_dl_error() -> String {
    // SAFETY: dlerror takes no arguments; it returns NULL or a NUL-terminated string that stays
    // valid until the next dl* call on this thread, and it is copied out at once.
    let message = unsafe { libc::dlerror() };
    if message.is_null() {
        return "dlopen failed without a message".into();
    }
    // SAFETY: non-null and NUL-terminated, see above.
    unsafe { CStr::from_ptr(message) }.to_string_lossy().into_owned()
}
