use std::any::Any;
use std::ffi::{c_int, c_void};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

use super::strerror;

/// An EAL logical core id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LcoreId(pub u32);

impl fmt::Display for LcoreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "lcore {}", self.0)
    }
}

impl LcoreId {
    /// The lcore the calling thread runs on, or `None` for a thread EAL does not know.
    pub fn current() -> Option<LcoreId> {
        // SAFETY: reads a per-thread variable; no preconditions.
        let id = unsafe { dpdk_sys::weft_lcore_id() };
        (id < dpdk_sys::RTE_MAX_LCORE).then_some(LcoreId(id))
    }

    /// The CPU EAL records for this lcore (`-l` runs lcore n on CPU n, `--lcores a@b` runs lcore a on
    /// CPU b; for an lcore given a set of CPUs, `rte_lcore_to_cpu_id`'s choice), or `None` when EAL
    /// knows none.
    pub fn cpu(self) -> Option<u32> {
        // SAFETY: reads EAL's lcore table; an id out of range returns -1.
        let cpu = unsafe { dpdk_sys::rte_lcore_to_cpu_id(self.0 as c_int) };
        u32::try_from(cpu).ok()
    }

    /// The worker lcores EAL was given (`-l`), main lcore excluded, in order.
    pub fn workers() -> Vec<LcoreId> {
        let mut out = Vec::new();
        let mut i = u32::MAX; // -1: start before the first lcore
        loop {
            // SAFETY: rte_get_next_lcore iterates EAL's lcore table; skip_main=1, wrap=0.
            i = unsafe { dpdk_sys::rte_get_next_lcore(i, 1, 0) };
            if i >= dpdk_sys::RTE_MAX_LCORE {
                return out;
            }
            out.push(LcoreId(i));
        }
    }
}

/// Why work on an lcore did not produce a result.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("{lcore}: launch failed: {reason} (is it a worker lcore that is idle?)")]
    Launch { lcore: LcoreId, reason: String },
    #[error("{lcore}: the work panicked: {message}")]
    Panicked { lcore: LcoreId, message: String },
}

type Slot<R> = Arc<Mutex<Option<std::thread::Result<R>>>>;

struct Job<F, R> {
    work: Option<F>,
    slot: Slot<R>,
}

/// A running piece of work on a worker lcore; `join` waits for it.
pub struct LcoreHandle<R> {
    lcore: LcoreId,
    slot: Slot<R>,
}

impl<R> fmt::Debug for LcoreHandle<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LcoreHandle({})", self.lcore)
    }
}

extern "C" fn trampoline<F: FnOnce() -> R, R>(arg: *mut c_void) -> c_int {
    // SAFETY: arg is the Box<Job<F, R>> leaked by `launch` for exactly this call; we take it back once.
    let mut job = unsafe { Box::from_raw(arg as *mut Job<F, R>) };
    let Some(work) = job.work.take() else { return -1 };
    // A panic must not unwind into DPDK's C frames: catch it and hand it to join().
    let result = catch_unwind(AssertUnwindSafe(work));
    let failed = result.is_err();
    if let Ok(mut slot) = job.slot.lock() {
        *slot = Some(result);
    }
    if failed {
        -1
    } else {
        0
    }
}

fn panic_message(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

impl LcoreId {
    /// Run `work` on this worker lcore. Panics inside are caught and reported by [`LcoreHandle::join`].
    pub fn launch<F, R>(self, work: F) -> Result<LcoreHandle<R>, LaunchError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let slot: Slot<R> = Arc::new(Mutex::new(None));
        let job = Box::into_raw(Box::new(Job { work: Some(work), slot: slot.clone() }));
        // SAFETY: trampoline::<F, R> matches lcore_function_t; job is a valid leaked Box that the
        // trampoline reclaims. F and R are Send + 'static, so running on another thread is sound.
        let rc = unsafe { dpdk_sys::rte_eal_remote_launch(Some(trampoline::<F, R>), job as *mut c_void, self.0) };
        if rc != 0 {
            // SAFETY: the launch failed, so the trampoline will never run; reclaim the Box here.
            drop(unsafe { Box::from_raw(job) });
            return Err(LaunchError::Launch { lcore: self, reason: strerror(rc) });
        }
        Ok(LcoreHandle { lcore: self, slot })
    }
}

impl<R> LcoreHandle<R> {
    pub fn lcore(&self) -> LcoreId {
        self.lcore
    }

    /// Wait for the work to end and return its result, or how it failed.
    pub fn join(self) -> Result<R, LaunchError> {
        // SAFETY: waits for a worker lcore we launched on; no preconditions beyond EAL being up.
        unsafe { dpdk_sys::rte_eal_wait_lcore(self.lcore.0) };
        let taken = self.slot.lock().ok().and_then(|mut s| s.take());
        match taken {
            Some(Ok(r)) => Ok(r),
            Some(Err(p)) => Err(LaunchError::Panicked { lcore: self.lcore, message: panic_message(p.as_ref()) }),
            None => Err(LaunchError::Panicked { lcore: self.lcore, message: "work did not run".into() }),
        }
    }
}
