//! Packet trace, in the manner of VPP's `trace add` / `show trace`: armed for the next N packets, each
//! worker records what it received (the first bytes of the frame), the verdict, the table entry it hit
//! and what it sent (the first bytes of the rewritten frame). Off, it costs a worker one relaxed load
//! and one branch per loop; armed, bursts go through a separate traced path that copies into records
//! preallocated in a lock-free queue (no allocation, lock or syscall on the worker).

use std::sync::atomic::{AtomicI64, Ordering};

use crossbeam::queue::ArrayQueue;

use crate::dpdk::PortId;
use crate::packet::Verdict;

/// Bytes of each frame a record keeps: the outer headers of a VXLAN frame (50) and the inner
/// Ethernet, IPv4 and transport headers behind them, with room for IP options.
pub const TRACE_BYTES: usize = 160;

/// Records a trace holds at most (a larger N is cut to this).
pub const TRACE_MAX: usize = 1024;

/// One packet as a worker handled it.
#[derive(Debug, Clone, Copy)]
pub struct TraceRecord {
    pub worker: u16,
    pub in_port: PortId,
    /// TSC when the worker took the packet.
    pub tsc: u64,
    /// The frame's whole length as received.
    pub len: u32,
    pub before: [u8; TRACE_BYTES],
    pub before_len: u16,
    pub verdict: Verdict,
    /// For a frame sent to a peer: the peer's subnet (the SubnetLen-masked destination) it matched.
    pub peer_subnet: Option<u32>,
    /// The frame as sent (empty when dropped or handed to the slow path).
    pub after: [u8; TRACE_BYTES],
    pub after_len: u16,
    /// The frame's whole length as sent.
    pub after_total: u32,
}

impl TraceRecord {
    pub fn before(&self) -> &[u8] {
        &self.before[..usize::from(self.before_len)]
    }

    pub fn after(&self) -> &[u8] {
        &self.after[..usize::from(self.after_len)]
    }
}

/// The trace every worker of a weftd shares.
#[derive(Debug)]
pub struct Trace {
    /// Packets still to trace; the workers claim them one by one while it is positive.
    remaining: AtomicI64,
    records: ArrayQueue<TraceRecord>,
}

impl Default for Trace {
    fn default() -> Self {
        Trace::new()
    }
}

impl Trace {
    pub fn new() -> Trace {
        Trace { remaining: AtomicI64::new(0), records: ArrayQueue::new(TRACE_MAX) }
    }

    /// Trace the next `n` packets (at most [`TRACE_MAX`]); records of an earlier trace are dropped.
    pub fn arm(&self, n: usize) {
        self.remaining.store(0, Ordering::SeqCst);
        while self.records.pop().is_some() {}
        self.remaining.store(n.min(TRACE_MAX) as i64, Ordering::SeqCst);
    }

    /// Stop tracing; what was recorded stays for [`Trace::take`].
    pub fn disarm(&self) {
        self.remaining.store(0, Ordering::SeqCst);
    }

    /// Whether the workers should take the traced path: the one check per loop when off.
    #[inline(always)]
    pub fn armed(&self) -> bool {
        self.remaining.load(Ordering::Relaxed) > 0
    }

    /// Claim one packet of the trace (several workers trace at once; together they take at most N).
    pub(crate) fn claim(&self) -> bool {
        self.remaining.fetch_sub(1, Ordering::Relaxed) > 0
    }

    pub(crate) fn record(&self, r: TraceRecord) {
        let _ = self.records.push(r);
    }

    /// How many records are waiting.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The records so far, oldest first (they leave the trace).
    pub fn take(&self) -> Vec<TraceRecord> {
        std::iter::from_fn(|| self.records.pop()).collect()
    }
}

/// Up to [`TRACE_BYTES`] of `frame` and how many.
pub(crate) fn head(frame: &[u8]) -> ([u8; TRACE_BYTES], u16) {
    let mut out = [0u8; TRACE_BYTES];
    let n = frame.len().min(TRACE_BYTES);
    out[..n].copy_from_slice(&frame[..n]);
    (out, n as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trace_takes_at_most_n_packets_and_starts_empty_when_rearmed() {
        let t = Trace::new();
        assert!(!t.armed() && !t.claim());
        t.arm(2);
        assert!(t.armed());
        assert!(t.claim() && t.claim() && !t.claim());
        assert!(!t.armed());
        let (before, before_len) = head(&[1, 2, 3]);
        let r = TraceRecord {
            worker: 0,
            in_port: PortId(0),
            tsc: 0,
            len: 3,
            before,
            before_len,
            verdict: Verdict::ToUplink,
            peer_subnet: None,
            after: [0; TRACE_BYTES],
            after_len: 0,
            after_total: 0,
        };
        t.record(r);
        assert_eq!(t.len(), 1);
        assert_eq!(t.take()[0].before(), &[1, 2, 3]);
        t.record(r);
        t.arm(TRACE_MAX + 5);
        assert!(t.is_empty(), "arming drops the last trace's records");
        assert_eq!(t.remaining.load(Ordering::Relaxed), TRACE_MAX as i64);
    }
}
