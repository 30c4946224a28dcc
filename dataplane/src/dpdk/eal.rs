use std::ffi::{c_char, c_int, CStr, CString};
use std::sync::atomic::{AtomicBool, Ordering};

use super::{last_error, DpdkError};

static INITIALISED: AtomicBool = AtomicBool::new(false);

/// The initialised DPDK Environment Abstraction Layer. One per process; `rte_eal_cleanup` runs on drop.
#[derive(Debug)]
pub struct Eal {
    _private: (),
}

impl Eal {
    /// Initialise EAL with `args` as they would appear on a DPDK command line (without the program name).
    pub fn init<S: AsRef<str>>(args: &[S]) -> Result<Eal, DpdkError> {
        if INITIALISED.swap(true, Ordering::SeqCst) {
            return Err(DpdkError::EalAlreadyInitialized);
        }
        let mut owned = Vec::with_capacity(args.len() + 1);
        owned.push(CString::new("weft").map_err(|_| DpdkError::NulInArgument("weft".into()))?);
        for a in args {
            let a = a.as_ref();
            owned.push(CString::new(a).map_err(|_| DpdkError::NulInArgument(a.into()))?);
        }
        // EAL may keep pointers into argv (and permutes it), so the strings live for the whole process.
        let leaked: &'static mut [CString] = Vec::leak(owned);
        let argv: &'static mut Vec<*mut c_char> =
            Box::leak(Box::new(leaked.iter().map(|s| s.as_ptr() as *mut c_char).collect()));
        let argc = argv.len() as c_int;
        // SAFETY: argv holds argc valid NUL-terminated strings that outlive the process; EAL has not been
        // initialised in this process (checked above).
        let rc = unsafe { dpdk_sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        if rc < 0 {
            let reason = last_error();
            let args = args.iter().map(|a| a.as_ref()).collect::<Vec<_>>().join(" ");
            return Err(DpdkError::EalInit { reason, args });
        }
        Ok(Eal { _private: () })
    }

    /// Number of lcores EAL was given (main included).
    pub fn lcore_count(&self) -> u32 {
        // SAFETY: EAL is initialised (we hold an Eal).
        unsafe { dpdk_sys::rte_lcore_count() }
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        // SAFETY: EAL was initialised by Eal::init and this is the only Eal; cleanup once at the end.
        unsafe {
            dpdk_sys::rte_eal_cleanup();
        }
    }
}

/// The DPDK version weft runs against, e.g. `DPDK 22.11.11` (works before EAL init).
pub fn dpdk_version() -> String {
    // SAFETY: rte_version returns a pointer to a static NUL-terminated string.
    unsafe { CStr::from_ptr(dpdk_sys::rte_version()) }.to_string_lossy().into_owned()
}
