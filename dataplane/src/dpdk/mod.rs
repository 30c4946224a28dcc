//! The safe DPDK layer: the only module of weft (besides `dpdk-sys`) that calls into DPDK. Every
//! `unsafe` block here states why it is sound; DPDK return codes become [`DpdkError`] at this
//! boundary and no `rte_*` type leaves it.
#![allow(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod eal;
mod lcore;
mod mbuf;
mod mempool;
mod port;
mod vhost;

pub use eal::{dpdk_version, Eal};
pub use lcore::{LaunchError, LcoreHandle, LcoreId};
pub use mbuf::{Burst, Mbuf, BURST_SIZE};
pub use mempool::Mempool;

/// DPDK's default mbuf data room (2 KiB of data and the headroom).
pub const DEFAULT_DATA_ROOM: u16 = dpdk_sys::RTE_MBUF_DEFAULT_BUF_SIZE as u16;
/// The room DPDK leaves in front of a received frame (where encapsulation prepends its headers).
pub const HEADROOM: u32 = dpdk_sys::RTE_PKTMBUF_HEADROOM;
pub use port::{LinkStatus, Port, PortConfig, PortId, PortStats, QueueId, RxQueue, TxQueue};
pub use vhost::{set_event_sink, VhostEvent, VhostRx, VhostSocket, VhostTx, VhostVid, VringMask};

use std::ffi::CStr;

/// A DPDK call that failed, with the operation, the object and DPDK's own words for the error.
#[derive(Debug, thiserror::Error)]
pub enum DpdkError {
    #[error("EAL init failed ({reason}); EAL arguments were: {args}")]
    EalInit { reason: String, args: String },
    #[error("EAL is already initialised in this process; DPDK allows one init per process")]
    EalAlreadyInitialized,
    #[error("creating mempool {name:?} failed: {reason}")]
    Mempool { name: String, reason: String },
    #[error("port {port}: {op} failed: {reason}")]
    Port { port: u16, op: &'static str, reason: String },
    #[error("no DPDK port named {0:?} (is its --vdev or PCI address in the EAL arguments?)")]
    NoSuchPort(String),
    #[error("hot-plugging device {devargs:?} failed: {reason}")]
    Probe { devargs: String, reason: String },
    #[error("vhost-user socket {path}: {op} failed: {reason}")]
    Vhost { path: String, op: &'static str, reason: String },
    #[error("{call} failed: {reason}")]
    Call { call: &'static str, reason: String },
    #[error("argument contains a NUL byte: {0:?}")]
    NulInArgument(String),
}

/// DPDK's text for an errno-style code (positive or negative).
pub(crate) fn strerror(code: i32) -> String {
    let code = code.abs();
    // SAFETY: rte_strerror returns a pointer to a static or thread-local NUL-terminated string that stays
    // valid until the next call on this thread; we copy it out immediately.
    let text = unsafe { CStr::from_ptr(dpdk_sys::rte_strerror(code)) };
    format!("{} (errno {code})", text.to_string_lossy())
}

/// The current thread's `rte_errno`, as text.
pub(crate) fn last_error() -> String {
    // SAFETY: weft_errno reads the calling thread's per-lcore errno variable; no preconditions.
    strerror(unsafe { dpdk_sys::weft_errno() })
}

/// Time-stamp counter, for TX flush deadlines and rates.
pub mod tsc {
    /// Current TSC value.
    #[inline(always)]
    pub fn now() -> u64 {
        // Inline on x86-64 (the shim is a call the compiler cannot see into); what rte_rdtsc reads.
        #[cfg(target_arch = "x86_64")]
        // SAFETY: rdtsc has no preconditions and is present on every x86-64 CPU.
        let t = unsafe { std::arch::x86_64::_rdtsc() };
        #[cfg(not(target_arch = "x86_64"))]
        // SAFETY: rte_rdtsc has no preconditions.
        let t = unsafe { dpdk_sys::weft_rdtsc() };
        t
    }

    /// TSC ticks per second (EAL must be initialised for a calibrated value).
    pub fn hz() -> u64 {
        // SAFETY: rte_get_tsc_hz reads a value calibrated during EAL init; no preconditions.
        unsafe { dpdk_sys::rte_get_tsc_hz() }
    }
}
