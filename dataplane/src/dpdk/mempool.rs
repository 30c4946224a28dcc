use std::ffi::CString;
use std::ptr::NonNull;

use super::{last_error, DpdkError, Mbuf};

/// A DPDK packet mbuf pool. Thread-safe (DPDK mempools are multi-producer/multi-consumer).
#[derive(Debug)]
pub struct Mempool {
    raw: NonNull<dpdk_sys::rte_mempool>,
    name: String,
}

// SAFETY: rte_mempool operations are MP/MC safe; the pointer is only freed on drop, once.
unsafe impl Send for Mempool {}
// SAFETY: as above; every method takes &self and DPDK synchronises internally.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// A pool of `count` mbufs with a per-lcore cache of `cache` and the default 2 KiB data room.
    pub fn new(name: &str, count: u32, cache: u32) -> Result<Mempool, DpdkError> {
        Self::with_data_room(name, count, cache, dpdk_sys::RTE_MBUF_DEFAULT_BUF_SIZE as u16)
    }

    /// As [`Mempool::new`] with a chosen data room (headroom included).
    pub fn with_data_room(name: &str, count: u32, cache: u32, data_room: u16) -> Result<Mempool, DpdkError> {
        Self::on_socket(name, count, cache, data_room, None)
    }

    /// As [`Mempool::with_data_room`], in the hugepages of NUMA `socket` (a NIC's: see
    /// [`super::Port::socket_id`]); `None` takes memory wherever DPDK finds it.
    pub fn on_socket(
        name: &str,
        count: u32,
        cache: u32,
        data_room: u16,
        socket: Option<u32>,
    ) -> Result<Mempool, DpdkError> {
        let cname = CString::new(name).map_err(|_| DpdkError::NulInArgument(name.into()))?;
        // SOCKET_ID_ANY is -1.
        let socket = socket.map_or(-1, |s| s as i32);
        // SAFETY: cname is a valid C string; EAL must be initialised, which DPDK checks itself (it
        // returns NULL with rte_errno set otherwise).
        let raw = unsafe { dpdk_sys::rte_pktmbuf_pool_create(cname.as_ptr(), count, cache, 0, data_room, socket) };
        match NonNull::new(raw) {
            Some(raw) => Ok(Mempool { raw, name: name.into() }),
            None => Err(DpdkError::Mempool { name: name.into(), reason: last_error() }),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Mbufs free in the pool (including per-lcore caches).
    pub fn available(&self) -> u32 {
        // SAFETY: raw is a live mempool.
        unsafe { dpdk_sys::rte_mempool_avail_count(self.raw.as_ptr()) }
    }

    /// Mbufs currently allocated from the pool.
    pub fn in_use(&self) -> u32 {
        // SAFETY: raw is a live mempool.
        unsafe { dpdk_sys::rte_mempool_in_use_count(self.raw.as_ptr()) }
    }

    /// One mbuf, empty, or `None` when the pool is exhausted.
    #[inline]
    pub fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: raw is a live mempool; the returned mbuf (if any) is owned by the caller.
        let m = unsafe { dpdk_sys::weft_pktmbuf_alloc(self.raw.as_ptr()) };
        // SAFETY: m is a freshly allocated mbuf that nothing else references.
        NonNull::new(m).map(|m| unsafe { Mbuf::from_raw(m) })
    }

    pub(crate) fn as_ptr(&self) -> *mut dpdk_sys::rte_mempool {
        self.raw.as_ptr()
    }
}

impl Drop for Mempool {
    /// Frees the pool, unless some of its mbufs are still out: an `Mbuf` does not hold its pool, and a
    /// port's TX ring keeps the mbufs it was given until it cleans up (a pool that only ever fed TX is
    /// held by no port), so freeing then would have those mbufs freed into freed memory later. Such a
    /// pool is left allocated (its memory and its name) for the rest of the process.
    fn drop(&mut self) {
        if self.in_use() > 0 {
            return;
        }
        // SAFETY: raw is a live mempool and we are its only owner, and none of its mbufs is out (a port
        // receiving into it holds it through an Arc, see Port::configure), so nothing refers to it.
        unsafe { dpdk_sys::rte_mempool_free(self.raw.as_ptr()) }
    }
}
