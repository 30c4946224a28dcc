use std::ffi::{c_char, c_int, CStr, CString};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::{last_error, DpdkError};

static INITIALISED: AtomicBool = AtomicBool::new(false);

/// The EAL [`Eal::clean_up_at_exit`] keeps until the process exits.
static AT_EXIT: Mutex<Option<Eal>> = Mutex::new(None);

/// Run by libc's `exit`: drop the EAL kept for it (its cleanup is [`Eal`]'s `Drop`).
extern "C" fn drop_eal_at_exit() {
    let eal = AT_EXIT.lock().unwrap_or_else(|e| e.into_inner()).take();
    drop(eal);
}

/// The initialised DPDK Environment Abstraction Layer. One per process; on drop `rte_eal_cleanup` runs
/// and what EAL would leave behind goes: its hugepage files and its runtime directory.
#[derive(Debug)]
pub struct Eal {
    capture: bool,
    /// The prefix of the hugepage files EAL leaves behind (None when it makes none: `--in-memory`,
    /// `--huge-unlink`, `--no-huge`).
    hugepage_files: Option<String>,
    /// EAL's runtime directory (`/var/run/dpdk/<file prefix>` for root), which `rte_eal_cleanup` leaves.
    runtime_dir: Option<PathBuf>,
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
        quiet_tap_rx_trigger()?;
        // SAFETY: argv holds argc valid NUL-terminated strings that outlive the process; EAL has not been
        // initialised in this process (checked above).
        let rc = unsafe { dpdk_sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        if rc < 0 {
            let reason = last_error();
            let args = args.iter().map(|a| a.as_ref()).collect::<Vec<_>>().join(" ");
            return Err(DpdkError::EalInit { reason, args });
        }
        let args: Vec<&str> = args.iter().map(|a| a.as_ref()).collect();
        // SAFETY: EAL is initialised; the result is NULL or a NUL-terminated string in EAL's static
        // storage, copied out here.
        let runtime_dir = unsafe {
            let p = dpdk_sys::rte_eal_get_runtime_dir();
            (!p.is_null()).then(|| PathBuf::from(CStr::from_ptr(p).to_string_lossy().into_owned()))
        };
        Ok(Eal { capture: false, hugepage_files: hugepage_file_prefix(&args), runtime_dir })
    }

    /// Keep EAL for the rest of the process and clean it up when the process exits, as dropping it
    /// would: `rte_eal_cleanup`, the hugepage files and the runtime directory. For an EAL shared
    /// through a `static`, which is never dropped: a test binary's, whose tests share one EAL because
    /// DPDK allows one per process.
    pub fn clean_up_at_exit(self) -> Result<(), DpdkError> {
        *AT_EXIT.lock().unwrap_or_else(|e| e.into_inner()) = Some(self);
        // SAFETY: registers an `extern "C"` function without arguments, which libc calls once from `exit`.
        let rc = unsafe { libc::atexit(drop_eal_at_exit) };
        if rc != 0 {
            return Err(DpdkError::Call { call: "atexit", reason: format!("returned {rc}") });
        }
        Ok(())
    }

    /// Let `dpdk-dumpcap` and `dpdk-pdump` capture this process's ports: they ask over EAL's
    /// multi-process channel, and ports then hand copies of their bursts to the tool's ring through
    /// ethdev RX/TX callbacks, which exist only while a capture runs. Needs shared files (not
    /// `--in-memory`). Undone when the Eal is dropped.
    pub fn enable_capture(&mut self) -> Result<(), DpdkError> {
        // SAFETY: EAL is initialised (we hold an Eal); rte_pdump_init registers an IPC handler and a
        // memzone, and is undone in Drop before rte_eal_cleanup.
        let rc = unsafe { dpdk_sys::rte_pdump_init() };
        if rc < 0 {
            return Err(DpdkError::Call { call: "rte_pdump_init", reason: last_error() });
        }
        self.capture = true;
        Ok(())
    }

    /// Number of lcores EAL was given (main included).
    pub fn lcore_count(&self) -> u32 {
        // SAFETY: EAL is initialised (we hold an Eal).
        unsafe { dpdk_sys::rte_lcore_count() }
    }
}

/// Turn off net_tap's RX trigger before any tap port exists (EAL probes `--vdev net_tap` during init).
///
/// net_tap sets O_ASYNC on each tap fd with a signal of its own, so the kernel queues a signal for every
/// frame it hands to weft, and the PMD's handler bumps a process-wide counter that lets an RX burst skip
/// its `readv` while nothing came. DPDK 22.11 takes the first real-time signal from SIGRTMIN+1 that has
/// no handler (older releases take SIGIO); real-time signals are queued, not merged, so that is one
/// signal per frame, delivered to whichever thread does not block it: weftd's main thread. In the
/// host-port benchmark (iperf3 through `weft0`) that thread spent a whole core of a two-core node
/// taking signals, the core the pods' TCP needed. net_tap leaves the trigger off ("No Rx trigger signal
/// available", or "Rx trigger disabled" for SIGIO) when every signal it would take has a handler, so
/// weft holds them all with a handler that does nothing. Then an RX burst on a tap that got nothing costs
/// one `readv` that returns EAGAIN, paid by the one worker that polls that tap, which polls a quiet tap
/// ever less often ([`crate::worker::PortRx::Tap`]). weftd uses no real-time signal itself.
fn quiet_tap_rx_trigger() -> Result<(), DpdkError> {
    let unused = Arc::new(AtomicBool::new(false));
    for sig in std::iter::once(signal_hook::consts::SIGIO).chain(libc::SIGRTMIN() + 1..libc::SIGRTMAX()) {
        // A flag nobody reads: the handler only has to exist.
        signal_hook::flag::register(sig, unused.clone())
            .map_err(|e| DpdkError::Call { call: "sigaction (net_tap's RX trigger signals)", reason: e.to_string() })?;
    }
    Ok(())
}

impl Drop for Eal {
    fn drop(&mut self) {
        // SAFETY: EAL was initialised by Eal::init and this is the only Eal; cleanup once at the end.
        unsafe {
            if self.capture {
                dpdk_sys::rte_pdump_uninit();
            }
            dpdk_sys::rte_eal_cleanup();
        }
        // EAL unmaps its memory but leaves the files, which keep their hugepages until the next start
        // with this prefix: give them back now.
        if let Some(prefix) = &self.hugepage_files {
            remove_hugepage_files(prefix);
        }
        // Its config, hugepage info and multi-process socket: only this process (EAL's primary for the
        // prefix, or init would have failed) uses them.
        if let Some(dir) = self.runtime_dir.as_deref().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The name prefix of the hugepage files EAL makes with `args` (`<prefix>map_<n>`), if it keeps any.
fn hugepage_file_prefix(args: &[&str]) -> Option<String> {
    if args.iter().any(|a| matches!(*a, "--in-memory" | "--no-huge") || a.starts_with("--huge-unlink")) {
        return None;
    }
    let mut prefix = "rte";
    for (i, a) in args.iter().enumerate() {
        if let Some(p) = a.strip_prefix("--file-prefix=") {
            prefix = p;
        } else if *a == "--file-prefix" {
            prefix = args.get(i + 1).copied().unwrap_or(prefix);
        }
    }
    Some(format!("{prefix}map_"))
}

/// Remove the files named `<prefix>*` from every hugetlbfs mount (from /proc/mounts).
fn remove_hugepage_files(prefix: &str) {
    let Ok(mounts) = std::fs::read_to_string("/proc/mounts") else { return };
    for dir in mounts.lines().filter_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(2) == Some(&"hugetlbfs")).then(|| f.get(1).copied()).flatten()
    }) {
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(prefix) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// The DPDK version weft runs against, e.g. `DPDK 22.11.11` (works before EAL init).
pub fn dpdk_version() -> String {
    // SAFETY: rte_version returns a pointer to a static NUL-terminated string.
    unsafe { CStr::from_ptr(dpdk_sys::rte_version()) }.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::hugepage_file_prefix;

    #[test]
    fn hugepage_files_are_named_after_the_file_prefix() {
        assert_eq!(hugepage_file_prefix(&["-l0", "--file-prefix=weftd"]).as_deref(), Some("weftdmap_"));
        assert_eq!(hugepage_file_prefix(&["--file-prefix", "n1"]).as_deref(), Some("n1map_"));
        assert_eq!(hugepage_file_prefix(&["-l0"]).as_deref(), Some("rtemap_"));
        assert_eq!(hugepage_file_prefix(&["--file-prefix=x", "--in-memory"]), None);
        assert_eq!(hugepage_file_prefix(&["--huge-unlink"]), None);
    }
}
