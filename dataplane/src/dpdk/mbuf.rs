use std::mem::MaybeUninit;
use std::ptr::NonNull;

/// Packets per RX/TX burst, as in DPDK's own examples.
pub const BURST_SIZE: usize = 32;

/// An owned DPDK packet buffer (single segment as far as weft's accessors go). Freed to its pool on drop.
///
/// `repr(transparent)` over the pointer so an array of `Mbuf` is the `struct rte_mbuf *[]` that
/// rx/tx burst take, and moving one is moving a pointer.
#[repr(transparent)]
#[derive(Debug)]
pub struct Mbuf(NonNull<dpdk_sys::rte_mbuf>);

// SAFETY: an Mbuf is uniquely owned; handing it to another thread hands over the only reference, and
// freeing from any thread is allowed (mempool put is MP safe).
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// Take ownership of a raw mbuf.
    ///
    /// # Safety
    /// `raw` must be a valid mbuf that nothing else references or will free.
    #[inline(always)]
    pub(crate) unsafe fn from_raw(raw: NonNull<dpdk_sys::rte_mbuf>) -> Mbuf {
        Mbuf(raw)
    }

    #[inline(always)]
    fn raw(&self) -> &dpdk_sys::rte_mbuf {
        // SAFETY: self.0 is a valid mbuf we own (constructor contract); shared borrow of self.
        unsafe { self.0.as_ref() }
    }

    /// Bytes in this (first) segment.
    #[inline(always)]
    pub fn data_len(&self) -> usize {
        self.raw().data_len as usize
    }

    /// Bytes in the whole packet (all segments).
    #[inline(always)]
    pub fn pkt_len(&self) -> usize {
        self.raw().pkt_len as usize
    }

    /// Number of segments; weft's packet paths handle single-segment packets.
    #[inline(always)]
    pub fn segments(&self) -> u16 {
        self.raw().nb_segs
    }

    /// The port the packet arrived on (as DPDK's PMD set it).
    #[inline(always)]
    pub fn in_port(&self) -> u16 {
        self.raw().port
    }

    /// The packet's first segment.
    #[inline(always)]
    pub fn data(&self) -> &[u8] {
        let m = self.raw();
        // SAFETY: buf_addr + data_off .. + data_len lies inside the mbuf's data buffer by DPDK's mbuf
        // invariants, and we own the mbuf, so no one writes it while this borrow lives.
        unsafe { std::slice::from_raw_parts((m.buf_addr as *const u8).add(m.data_off as usize), m.data_len as usize) }
    }

    /// The packet's first segment, writable.
    #[inline(always)]
    pub fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in data(); &mut self gives exclusive access. The mbuf is not shared (refcnt 1 for
        // mbufs that came from rx or alloc; weft never clones mbufs).
        unsafe {
            let m = self.0.as_mut();
            std::slice::from_raw_parts_mut((m.buf_addr as *mut u8).add(m.data_off as usize), m.data_len as usize)
        }
    }

    /// Bytes free in front of the data.
    #[inline(always)]
    pub fn headroom(&self) -> usize {
        self.raw().data_off as usize
    }

    /// Bytes free after the data in this segment.
    #[inline]
    pub fn tailroom(&self) -> usize {
        // SAFETY: valid owned mbuf.
        unsafe { dpdk_sys::weft_pktmbuf_tailroom(self.0.as_ptr()) as usize }
    }

    /// Grow the packet at the front by `len` bytes, to be written through [`Self::data_mut`]; `None` (and
    /// nothing changed) without the headroom. (No slice of the new bytes: making one cost the encap
    /// path a test of the buffer's address for null, as the `Option`'s niche, on every packet.)
    #[inline(always)]
    pub fn prepend(&mut self, len: usize) -> Option<()> {
        // Done in Rust rather than through the shim: this is on the encap path for every packet.
        let len16 = u16::try_from(len).ok()?;
        // SAFETY: we own the mbuf exclusively; we only move data_off back within the headroom (checked)
        // and grow the lengths by the same amount, which is what rte_pktmbuf_prepend does.
        unsafe {
            let m = self.0.as_mut();
            if len16 > m.data_off {
                return None;
            }
            m.data_off -= len16;
            m.data_len += len16;
            m.pkt_len += len as u32;
        }
        Some(())
    }

    /// Remove `len` bytes from the front; `None` (and nothing changed) when the segment is shorter.
    #[inline(always)]
    pub fn adj(&mut self, len: usize) -> Option<()> {
        let len16 = u16::try_from(len).ok()?;
        // SAFETY: exclusive ownership; we advance data_off within data_len (checked), as rte_pktmbuf_adj.
        unsafe {
            let m = self.0.as_mut();
            if len16 > m.data_len {
                return None;
            }
            m.data_off += len16;
            m.data_len -= len16;
            m.pkt_len -= len as u32;
        }
        Some(())
    }

    /// Grow the packet at the end by `len` bytes; `None` without the tailroom.
    #[inline]
    pub fn append(&mut self, len: usize) -> Option<&mut [u8]> {
        let len16 = u16::try_from(len).ok()?;
        // SAFETY: exclusive ownership; rte_pktmbuf_append checks the tailroom and returns NULL without it.
        let p = unsafe { dpdk_sys::weft_pktmbuf_append(self.0.as_ptr(), len16) };
        if p.is_null() {
            return None;
        }
        // SAFETY: DPDK returned a pointer to `len` fresh bytes inside our mbuf.
        Some(unsafe { std::slice::from_raw_parts_mut(p as *mut u8, len) })
    }

    /// Remove `len` bytes from the end; `None` when the packet is shorter.
    #[inline]
    pub fn trim(&mut self, len: usize) -> Option<()> {
        let len16 = u16::try_from(len).ok()?;
        // SAFETY: exclusive ownership; rte_pktmbuf_trim checks the length and returns -1 otherwise.
        let rc = unsafe { dpdk_sys::weft_pktmbuf_trim(self.0.as_ptr(), len16) };
        (rc == 0).then_some(())
    }

    /// Set the packet to exactly `bytes` (single segment), for building frames on the slow path.
    pub fn set_data(&mut self, bytes: &[u8]) -> Option<()> {
        let cur = self.data_len();
        if bytes.len() > cur {
            self.append(bytes.len() - cur)?;
        } else {
            self.trim(cur - bytes.len())?;
        }
        self.data_mut().copy_from_slice(bytes);
        Some(())
    }
}

impl Drop for Mbuf {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: we own the mbuf and nothing else will free it.
        unsafe { dpdk_sys::weft_pktmbuf_free(self.0.as_ptr()) }
    }
}

/// Up to [`BURST_SIZE`] owned mbufs in a fixed array: what an RX burst fills, what a worker drains.
/// Dropping it frees whatever it still holds.
pub struct Burst {
    slots: [MaybeUninit<Mbuf>; BURST_SIZE],
    /// Slots `start..len` hold live mbufs.
    start: usize,
    len: usize,
}

impl std::fmt::Debug for Burst {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Burst").field("len", &self.len()).finish()
    }
}

impl Default for Burst {
    fn default() -> Self {
        Self::new()
    }
}

impl Burst {
    pub const fn new() -> Burst {
        Burst { slots: [const { MaybeUninit::uninit() }; BURST_SIZE], start: 0, len: 0 }
    }

    #[inline(always)]
    pub fn len(&self) -> usize {
        self.len - self.start
    }

    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.len == self.start
    }

    /// Add a packet; gives it back when the burst is full.
    #[inline(always)]
    pub fn push(&mut self, m: Mbuf) -> Result<(), Mbuf> {
        if self.len == BURST_SIZE {
            return Err(m);
        }
        self.slots[self.len].write(m);
        self.len += 1;
        Ok(())
    }

    /// Take the next packet in arrival order.
    #[inline(always)]
    pub fn pop_front(&mut self) -> Option<Mbuf> {
        if self.start == self.len {
            self.start = 0;
            self.len = 0;
            return None;
        }
        // SAFETY: slots start..len are initialised; we advance start so this one is never read again.
        let m = unsafe { self.slots[self.start].assume_init_read() };
        self.start += 1;
        Some(m)
    }

    /// Look at packet `i` (0 = front) without taking it, e.g. to prefetch.
    #[inline(always)]
    pub fn get(&self, i: usize) -> Option<&Mbuf> {
        let idx = self.start + i;
        // SAFETY: slots start..len are initialised.
        (idx < self.len).then(|| unsafe { self.slots[idx].assume_init_ref() })
    }

    /// Raw view for rx burst: pointer to the free tail and its capacity. Only for the port module.
    #[inline(always)]
    pub(crate) fn spare_raw(&mut self) -> (*mut *mut dpdk_sys::rte_mbuf, usize) {
        if self.start == self.len {
            self.start = 0;
            self.len = 0;
        }
        let ptr = self.slots[self.len..].as_mut_ptr() as *mut *mut dpdk_sys::rte_mbuf;
        (ptr, BURST_SIZE - self.len)
    }

    /// Record that rx burst wrote `n` mbufs into the spare tail.
    ///
    /// # Safety
    /// The `n` slots after the current end must have been written with valid, owned mbufs.
    #[inline(always)]
    pub(crate) unsafe fn commit(&mut self, n: usize) {
        self.len += n;
    }

    /// Raw view of the live packets for tx burst. Only for the port module.
    #[inline(always)]
    pub(crate) fn live_raw(&mut self) -> (*mut *mut dpdk_sys::rte_mbuf, usize) {
        let ptr = self.slots[self.start..].as_mut_ptr() as *mut *mut dpdk_sys::rte_mbuf;
        (ptr, self.len - self.start)
    }

    /// Record that the first `n` live packets were handed to DPDK (and are no longer ours).
    ///
    /// # Safety
    /// DPDK must have taken ownership of exactly those `n` mbufs.
    #[inline(always)]
    pub(crate) unsafe fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.len {
            self.start = 0;
            self.len = 0;
        }
    }

    /// Bytes in the packets held (for byte counters).
    #[inline(always)]
    pub fn bytes(&self) -> u64 {
        self.live().iter().map(|m| m.pkt_len() as u64).sum()
    }

    /// The packets held, front first. What `bytes` sums over: a walk of a slice, where a walk of
    /// `get(i)` checked every index (callgrind: 8.9 instructions a packet more in the encap loop,
    /// which counts bytes on RX and on TX).
    #[inline(always)]
    fn live(&self) -> &[Mbuf] {
        let live = &self.slots[self.start..self.len];
        // SAFETY: slots start..len are initialised (push writes slot len before counting it; pop_front
        // moves start past what it takes), and MaybeUninit<Mbuf> has Mbuf's layout.
        unsafe { &*(live as *const [MaybeUninit<Mbuf>] as *const [Mbuf]) }
    }

    /// The packets held, front first, to work on in place: a worker's first pass over a burst runs every
    /// frame through its packet path here, before any frame is moved.
    #[inline(always)]
    pub fn live_mut(&mut self) -> &mut [Mbuf] {
        let live = &mut self.slots[self.start..self.len];
        // SAFETY: as in `live`: slots start..len are initialised and MaybeUninit<Mbuf> has Mbuf's layout;
        // the borrow of `self` keeps push, pop and the raw views away while the slice lives.
        unsafe { &mut *(live as *mut [MaybeUninit<Mbuf>] as *mut [Mbuf]) }
    }

    /// Move up to `n` packets from the front of this burst to the end of `to`, in order, as many as `to`
    /// has room for; returns how many moved. A worker hands a run of frames bound for one port to that
    /// port's buffer with one copy of their pointers.
    #[inline(always)]
    pub fn move_front(&mut self, n: usize, to: &mut Burst) -> usize {
        if to.start == to.len {
            to.start = 0;
            to.len = 0;
        }
        let k = n.min(self.len - self.start).min(BURST_SIZE - to.len);
        // SAFETY: slots start..start+k of `self` are initialised and are not read again (start moves past
        // them); slots len..len+k of `to` are free (len + k <= BURST_SIZE) and counted as live only after
        // they are written; two `&mut` bursts never overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(self.slots.as_ptr().add(self.start), to.slots.as_mut_ptr().add(to.len), k);
            self.consume(k);
        }
        to.len += k;
        k
    }

    /// Free up to `n` packets from the front (at most every packet held); returns how many.
    #[inline]
    pub fn free_front(&mut self, n: usize) -> usize {
        let (ptr, live) = self.live_raw();
        let k = n.min(live);
        if k > 0 {
            // SAFETY: the first k live slots hold owned mbufs; after the bulk free we move past them.
            unsafe {
                dpdk_sys::rte_pktmbuf_free_bulk(ptr, k as u32);
                self.consume(k);
            }
        }
        k
    }

    /// Free every packet still held; returns how many.
    #[inline]
    pub fn free_all(&mut self) -> usize {
        self.free_front(self.len())
    }
}

impl Drop for Burst {
    fn drop(&mut self) {
        self.free_all();
    }
}
