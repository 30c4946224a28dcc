//! The packet buffer the packet paths work on: a frame with headroom in front (an mbuf in weftd, a
//! [`VecBuf`] in tests, fuzzing and tools).

/// A frame with headroom: what the packet paths need from an mbuf.
pub trait PacketBuf {
    fn data(&self) -> &[u8];
    fn data_mut(&mut self) -> &mut [u8];
    /// Grow the frame at the front by `n` bytes (written through [`Self::data_mut`]); None, and
    /// nothing changed, without the headroom.
    fn prepend(&mut self, n: usize) -> Option<()>;
    fn adj(&mut self, n: usize) -> Option<()>;
    fn trim(&mut self, n: usize) -> Option<()>;
}

/// A frame in an ordinary buffer with 128 bytes of headroom (as an mbuf has), for tests, fuzzing and
/// tools that run the packet paths without DPDK. Spare room is poisoned with 0xa5.
#[derive(Debug, Clone)]
pub struct VecBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl VecBuf {
    pub const HEADROOM: usize = 128;

    pub fn new(frame: &[u8]) -> VecBuf {
        let h = Self::HEADROOM;
        let mut buf = vec![0xa5; h + frame.len() + 64];
        buf[h..h + frame.len()].copy_from_slice(frame);
        VecBuf { buf, start: h, end: h + frame.len() }
    }
}

impl PacketBuf for VecBuf {
    #[inline(always)]
    fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }
    #[inline(always)]
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.end]
    }
    #[inline(always)]
    fn prepend(&mut self, n: usize) -> Option<()> {
        self.start = self.start.checked_sub(n)?;
        Some(())
    }
    #[inline(always)]
    fn adj(&mut self, n: usize) -> Option<()> {
        (n <= self.end - self.start).then(|| self.start += n)
    }
    #[inline(always)]
    fn trim(&mut self, n: usize) -> Option<()> {
        (n <= self.end - self.start).then(|| self.end -= n)
    }
}
