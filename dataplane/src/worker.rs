//! A poll-mode worker: owns one uplink RX queue, the RX queues of its share of the pod ports and one TX
//! queue on every port; forwards with the packet paths in [`crate::packet`]. Between bursts it takes the
//! newest table snapshot and its control messages (port attach/detach, frames to send, stop). Nothing in
//! the loop allocates, locks, logs or makes a syscall, except the bounded sleep when idle (off with
//! `busy_poll`).

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam::channel::{Receiver, Sender};
use crossbeam::utils::CachePadded;
use weft_config::MacAddr;

use crate::dpdk::{tsc, Burst, Mempool, PortId, RxQueue, TxQueue, VhostRx, VhostTx};
use crate::packet::{
    pod_fast, pod_full, process_host_cached, process_pod_cached, process_uplink_cached, uplink_fast, uplink_full,
    DropReason, Verdict,
};
use crate::tables::{Cached, PathCache, Snapshot, SnapshotCell};
use crate::trace::{Trace, TraceRecord};

/// Ethdev port ids: DPDK's RTE_MAX_ETHPORTS in Debian's build. Logical port ids from here up are vhost
/// devices driven through DPDK's vhost library (see [`crate::dpdk::VhostSocket`]).
pub const ETH_PORTS: usize = 32;

/// How many port slots the workers keep for `max_vhost` vhost devices besides the ethdevs.
pub fn port_slots(max_vhost: usize) -> usize {
    ETH_PORTS + max_vhost
}

/// A worker's counters: written by that worker only (plain load+store, no locked instructions), read
/// with relaxed loads by the status and metrics side. One entry per port slot (sized from the
/// configuration at start; nothing grows later).
#[derive(Debug)]
pub struct WorkerCounters {
    pub rx_packets: Box<[AtomicU64]>,
    pub rx_bytes: Box<[AtomicU64]>,
    pub tx_packets: Box<[AtomicU64]>,
    pub tx_bytes: Box<[AtomicU64]>,
    pub drops: [AtomicU64; DropReason::COUNT],
    /// Loop iterations: a heartbeat for health checks.
    pub loops: AtomicU64,
    /// Generation of the last snapshot used.
    pub generation: AtomicU64,
    pub neighbours_learned: AtomicU64,
    /// TSC cycles of loops that found packets (busy) and of loops that found none, sleeps included
    /// (idle): OVS's processing and idle cycles. Together they are the worker's whole time.
    pub busy_cycles: AtomicU64,
    pub idle_cycles: AtomicU64,
    /// Loops that found packets: packets received / busy loops is VPP's vectors per call.
    pub busy_loops: AtomicU64,
    /// Frames sent to each peer, by the peer's subnet's index in the network (see [`peer_slots`], [`PeerNumbering`]);
    /// empty when the network has too many subnets to count each. The worker counts them in its route
    /// cache and adds them here at least every [`PEER_LOOPS`] loops, at once when it goes idle.
    pub peer_tx: Box<[AtomicU64]>,
}

/// How many subnets of `subnet_len` the `network` holds, when per-peer counters can afford one slot
/// each (at most 2^20: 8 MiB a worker); else 0, and peers are not counted one by one.
pub fn peer_slots(network: weft_config::Ipv4Net, subnet_len: u8) -> usize {
    let bits = u32::from(subnet_len.saturating_sub(network.prefix_len()));
    if bits > 20 {
        0
    } else {
        1 << bits
    }
}

/// How peers' subnets number the per-peer counters: a subnet's index in the network. Worked out once
/// (the worker numbers every frame it sends to a peer).
#[derive(Debug, Clone, Copy)]
pub struct PeerNumbering {
    base: u32,
    shift: u32,
}

impl PeerNumbering {
    pub fn new(network: weft_config::Ipv4Net, subnet_len: u8) -> PeerNumbering {
        PeerNumbering { base: network.addr_u32(), shift: 32 - u32::from(subnet_len.clamp(1, 32)) }
    }

    /// The per-peer counter of a peer's `subnet` (its address).
    #[inline(always)]
    pub fn slot(self, subnet: u32) -> usize {
        (subnet.wrapping_sub(self.base) >> self.shift) as usize
    }
}

impl Default for WorkerCounters {
    /// Slots for the ethdevs only.
    fn default() -> Self {
        WorkerCounters::new(ETH_PORTS)
    }
}

impl WorkerCounters {
    /// Counters for `slots` port slots (at least the ethdevs').
    pub fn new(slots: usize) -> WorkerCounters {
        let slots = slots.max(ETH_PORTS);
        let zeros = || (0..slots).map(|_| AtomicU64::new(0)).collect::<Box<[AtomicU64]>>();
        WorkerCounters {
            rx_packets: zeros(),
            rx_bytes: zeros(),
            tx_packets: zeros(),
            tx_bytes: zeros(),
            drops: std::array::from_fn(|_| AtomicU64::new(0)),
            loops: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            neighbours_learned: AtomicU64::new(0),
            busy_cycles: AtomicU64::new(0),
            idle_cycles: AtomicU64::new(0),
            busy_loops: AtomicU64::new(0),
            peer_tx: Box::new([]),
        }
    }

    /// With `n` per-peer counters ([`peer_slots`]).
    pub fn with_peer_slots(mut self, n: usize) -> WorkerCounters {
        self.peer_tx = (0..n).map(|_| AtomicU64::new(0)).collect();
        self
    }

    /// How many port slots there are.
    pub fn slots(&self) -> usize {
        self.rx_packets.len()
    }

    /// The slot of a port; `None` for an id beyond the slots (such a port is refused when it is
    /// attached, never aliased onto another port's slot).
    pub fn index(&self, port: PortId) -> Option<usize> {
        (usize::from(port.0) < self.slots()).then_some(usize::from(port.0))
    }
}

/// Loops after which a worker adds what its route cache counted to the per-peer counters, at most:
/// 32 768 frames in full bursts, a millisecond or two at full rate (a worker that goes idle adds them
/// at once).
const PEER_LOOPS: u32 = 1024;

/// The port of a frame that goes nowhere (dropped, or a neighbour learned from it). No port has this id:
/// the workers' port slots are far fewer (32 ethdevs and at most 1024 vhost devices).
const NO_PORT: u16 = u16::MAX;

/// Single-writer add: the owning worker is the only writer, so no read-modify-write instruction.
#[inline(always)]
fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// Messages from the control side, taken between bursts.
#[derive(Debug)]
pub enum WorkerCommand {
    /// Start using a port: its TX queue for this worker, and the RX queues this worker polls (empty when
    /// another worker polls it).
    Attach {
        port: PortId,
        tx: PortTx,
        rx: Vec<PortRx>,
        kind: PortKind,
    },
    /// Stop using a port; its buffered frames are freed; `done` is signalled when nothing of it is held.
    Detach {
        port: PortId,
        done: Sender<()>,
    },
    /// Send this frame on the uplink (slow-path ARP requests).
    SendOnUplink {
        frame: [u8; 60],
    },
    /// Stop polling for this long (a debugging aid: it is how the health check's stall detection is
    /// tested). Frames queue up in the NIC meanwhile.
    Pause(Duration),
    Stop,
}

/// What a port attached to the workers is, which decides the packet path its frames take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortKind {
    /// A pod (tap, vhost-user): [`crate::packet::process_pod`].
    Pod,
    /// The host port: [`crate::packet::process_host`].
    Host,
}

/// A queue a worker receives from: an ethdev's RX queue, or a vhost device's driver-TX vrings.
#[derive(Debug)]
pub enum PortRx {
    Eth(RxQueue),
    /// An ethdev RX queue whose every poll is a system call (net_tap: a `readv` of the tap, which
    /// returns EAGAIN when nothing came; weft keeps net_tap's per-frame signal off, see
    /// [`crate::dpdk::Eal::init`]). Polled every loop while frames come; after [`TAP_IDLE_POLLS`] empty
    /// polls in a row, on a timer that starts at [`TAP_IDLE_POLL_US`] and doubles with each empty poll
    /// up to the idle worker's longest sleep ([`Backoff::max_sleep`]), until a poll brings a frame.
    Tap(RxQueue),
    Vhost(VhostRx),
}

/// Empty polls in a row after which a [`PortRx::Tap`] queue is polled on a timer, not every loop. A TCP
/// stream of a few hundred Mbit/s leaves fewer empty polls than this between its segments.
pub const TAP_IDLE_POLLS: u32 = 64;
/// The first interval between polls of an idle [`PortRx::Tap`] queue. A tap that stays quiet is polled
/// ever less often, so that a worker with idle tap pods loses little of its rate (an empty `readv` costs
/// about 400 ns here; four idle taps polled every loop cut decap from 23 to 10 Mpps); the price is the
/// wait of a first frame after a quiet spell, at most the idle worker's own longest sleep.
pub const TAP_IDLE_POLL_US: u64 = 10;

impl PortRx {
    #[inline(always)]
    fn rx_burst(&mut self, burst: &mut Burst) -> usize {
        match self {
            PortRx::Eth(q) | PortRx::Tap(q) => q.rx_burst(burst),
            PortRx::Vhost(q) => q.rx_burst(burst),
        }
    }

    pub fn port_id(&self) -> PortId {
        match self {
            PortRx::Eth(q) | PortRx::Tap(q) => q.port_id(),
            PortRx::Vhost(q) => q.port_id(),
        }
    }
}

/// A polled queue, the path of its frames, and when it is next due (0: every loop).
struct RxPort {
    queue: PortRx,
    kind: PortKind,
    /// Empty polls in a row.
    misses: u32,
    /// TSC before which it is not polled.
    due: u64,
    /// TSC ticks to the next poll while it stays empty.
    interval: u64,
}

/// A queue a worker sends on: an ethdev's TX queue, or a vhost device's driver-RX vring.
#[derive(Debug)]
pub enum PortTx {
    Eth(TxQueue),
    Vhost(VhostTx),
}

impl PortTx {
    /// Send what the port takes; the rest stays in `burst`.
    #[inline(always)]
    fn tx_burst(&mut self, burst: &mut Burst) -> usize {
        match self {
            PortTx::Eth(q) => q.tx_burst(burst),
            PortTx::Vhost(q) => q.tx_burst(burst),
        }
    }
}

/// Idle behaviour.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Never sleep (benchmarks, dedicated cores).
    pub busy_poll: bool,
    /// Longest sleep when idle.
    pub max_sleep: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { busy_poll: false, max_sleep: Duration::from_micros(500) }
    }
}

struct TxSlot {
    queue: PortTx,
    buf: Burst,
    /// TSC at which the oldest buffered frame must go out.
    deadline: u64,
    /// In the worker's dirty list (at most once: the list never outgrows the slots).
    listed: bool,
}

impl TxSlot {
    fn new(queue: PortTx) -> TxSlot {
        TxSlot { queue, buf: Burst::new(), deadline: 0, listed: false }
    }
}

/// Everything a worker owns.
pub struct Worker {
    pub id: usize,
    uplink: PortId,
    uplink_rx: RxQueue,
    /// The pod and host-port queues this worker polls, with the path their frames take.
    port_rx: Vec<RxPort>,
    /// One per port slot: this worker's TX queue on the port and its buffered frames.
    slots: Box<[Option<TxSlot>]>,
    /// The slots holding buffered frames (each at most once): what `flush` visits, so its cost follows
    /// the ports in use, not the slots configured.
    dirty: Vec<usize>,
    cell: Arc<SnapshotCell>,
    counters: Arc<CachePadded<WorkerCounters>>,
    commands: Receiver<WorkerCommand>,
    learned: Sender<(Ipv4Addr, MacAddr)>,
    pool: Arc<Mempool>,
    backoff: Backoff,
    drain_tsc: u64,
    /// The TSC when this loop began: the clock of the TX buffers' deadlines and of the busy and idle
    /// cycles, read once a loop (`rdtsc` takes some 30 cycles).
    now: u64,
    /// TSC ticks of the first and the longest interval between polls of an idle [`PortRx::Tap`] queue.
    tap_idle_tsc: (u64, u64),
    ident: u16,
    cache: PathCache,
    trace: Arc<Trace>,
    /// Numbers the per-peer counters.
    peers: PeerNumbering,
    /// Frames sent to peers are counted in the route cache ([`PathCache::count_sent`]): whether some
    /// may wait there, and the loops they have waited (reset when they are added to the per-peer
    /// counters, so it never runs past PEER_LOOPS).
    peers_pending: bool,
    peers_loops: u32,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").field("id", &self.id).finish()
    }
}

impl Worker {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: usize,
        uplink_rx: RxQueue,
        uplink_tx: TxQueue,
        cell: Arc<SnapshotCell>,
        counters: Arc<CachePadded<WorkerCounters>>,
        commands: Receiver<WorkerCommand>,
        learned: Sender<(Ipv4Addr, MacAddr)>,
        pool: Arc<Mempool>,
        backoff: Backoff,
    ) -> Worker {
        let uplink = uplink_rx.port_id();
        let n = counters.slots();
        let mut slots: Box<[Option<TxSlot>]> = (0..n).map(|_| None).collect();
        if let Some(s) = slots.get_mut(usize::from(uplink.0)) {
            *s = Some(TxSlot::new(PortTx::Eth(uplink_tx)));
        }
        // Flush a partly filled TX buffer after ~100 µs, as DPDK's l3fwd does.
        let drain_tsc = (tsc::hz() / 10_000).max(1);
        let node = cell.load().node.clone();
        Worker {
            id,
            uplink,
            uplink_rx,
            port_rx: Vec::new(),
            slots,
            // Room for every slot twice: a slot detached and attached again between two flushes may stand in it
            // once more until the next flush drops its stale entry.
            dirty: Vec::with_capacity(2 * n),
            cell,
            counters,
            commands,
            learned,
            pool,
            backoff,
            drain_tsc,
            now: 0,
            tap_idle_tsc: {
                let us = tsc::hz() / 1_000_000;
                let first = (us * TAP_IDLE_POLL_US).max(1);
                (first, (us * backoff.max_sleep.as_micros() as u64).max(first))
            },
            ident: (id as u16).wrapping_mul(0x3779),
            cache: PathCache::default(),
            trace: Arc::new(Trace::new()),
            peers: PeerNumbering::new(node.network, node.subnet_len),
            peers_pending: false,
            peers_loops: 0,
        }
    }

    /// Record packets into `trace` when it is armed (by default a worker has a trace of its own that
    /// nobody arms).
    pub fn with_trace(mut self, trace: Arc<Trace>) -> Worker {
        self.trace = trace;
        self
    }

    /// Poll until told to stop. Returns the number of loop iterations.
    pub fn run(mut self) -> u64 {
        let mut idle_loops: u32 = 0;
        let mut burst = Burst::new();
        self.now = tsc::now();
        // The snapshot this worker forwards with, and the cell's publish count when it was taken.
        let (mut seen, mut snap) = (self.cell.published(), self.cell.load_full());
        self.took(&snap);
        loop {
            if !self.commands.is_empty() && !self.take_commands() {
                break;
            }
            let mut got = 0usize;
            // The trace's one check when off: armed, this loop's bursts take the traced path.
            let traced = self.trace.armed();
            {
                let published = self.cell.published();
                if published != seen {
                    (seen, snap) = (published, self.cell.load_full());
                    self.took(&snap);
                }
                let n = self.uplink_rx.rx_burst(&mut burst);
                if n > 0 {
                    got += n;
                    self.count_rx(self.uplink, &burst);
                    if traced {
                        self.trace_burst(&mut burst, &snap, self.uplink, None);
                    }
                    self.forward_uplink(&mut burst, &snap);
                }
                for i in 0..self.port_rx.len() {
                    let rx = &mut self.port_rx[i];
                    if rx.due > self.now {
                        continue;
                    }
                    let n = rx.queue.rx_burst(&mut burst);
                    if n == 0 {
                        if let PortRx::Tap(_) = rx.queue {
                            rx.misses = rx.misses.saturating_add(1);
                            if rx.misses >= TAP_IDLE_POLLS {
                                rx.due = self.now + rx.interval;
                                rx.interval = (rx.interval * 2).min(self.tap_idle_tsc.1);
                            }
                        }
                        continue;
                    }
                    (rx.misses, rx.due, rx.interval) = (0, 0, self.tap_idle_tsc.0);
                    got += n;
                    let (port, kind) = (rx.queue.port_id(), rx.kind);
                    self.count_rx(port, &burst);
                    if traced {
                        self.trace_burst(&mut burst, &snap, port, Some(kind));
                    }
                    match kind {
                        PortKind::Pod => self.forward_pod(&mut burst, &snap, port),
                        PortKind::Host => self.forward::<false>(&mut burst, &snap, port, Some(kind)),
                    }
                    // Only pods' and the host's frames go to peers (the uplink's never go back out). The
                    // routes their lookups replaced, with frames counted, after every burst: the cache
                    // holds two bursts of them, not a loop's over many pods.
                    self.peers_pending = true;
                    if self.cache.has_evicted() {
                        self.count_peers(false);
                    }
                }
            }
            // All the frames counted per route when the worker goes idle and at least every PEER_LOOPS
            // loops. Loops, not the TSC: the same work on every run, under callgrind too.
            if self.peers_pending {
                self.peers_loops += 1;
                if got == 0 || self.peers_loops >= PEER_LOOPS {
                    self.count_peers(true);
                }
            }
            self.flush(got == 0);
            bump(&self.counters.loops, 1);
            // The whole loop, sleep included, is busy or idle time.
            let now = tsc::now();
            if got == 0 {
                bump(&self.counters.idle_cycles, now.wrapping_sub(self.now));
                self.now = now;
                idle_loops = idle_loops.saturating_add(1);
                if !self.backoff.busy_poll && idle_loops > 64 {
                    // Bounded back-off: 1 µs doubling up to max_sleep while nothing arrives.
                    let exp = (idle_loops - 64).min(16);
                    let sleep = Duration::from_micros(1u64 << exp).min(self.backoff.max_sleep);
                    std::thread::sleep(sleep);
                    // The sleep is idle time, not the start of the next loop's.
                    let woke = tsc::now();
                    bump(&self.counters.idle_cycles, woke.wrapping_sub(self.now));
                    self.now = woke;
                }
            } else {
                bump(&self.counters.busy_cycles, now.wrapping_sub(self.now));
                bump(&self.counters.busy_loops, 1);
                self.now = now;
                idle_loops = 0;
            }
        }
        self.shutdown();
        self.counters.loops.load(Ordering::Relaxed)
    }

    /// The worker forwards with `snap` from now on: its generation is reported, and the caches, which
    /// follow the snapshot, are emptied if another generation filled them (they are not checked at
    /// every lookup).
    #[cold]
    fn took(&mut self, snap: &Snapshot) {
        // What the routes of the last snapshot counted, before the cache lets go of them.
        self.count_peers(true);
        self.counters.generation.store(snap.generation, Ordering::Relaxed);
        self.cache.sync(snap.generation);
    }

    /// Forward the frames of `burst`, received on `port` (`kind` None: the uplink), in two passes as VPP
    /// works on a vector: first every frame through its packet path in place, its verdict reduced to the
    /// port it leaves on; then each run of frames leaving on one port moved to that port's buffer at
    /// once. Frames keep their order on every port. Per frame, the second pass is one compare; moving
    /// frames one at a time (take, match the verdict, find the slot, push) was about 20 instructions.
    /// A burst that leaves whole on one port, the usual one, is handed over after one compare of all
    /// its ports (7 instructions a decap frame fewer under callgrind than finding its one run).
    #[inline(always)]
    fn forward<const FAST: bool>(&mut self, burst: &mut Burst, snap: &Snapshot, port: PortId, kind: Option<PortKind>) {
        let mut outs = [NO_PORT; crate::dpdk::BURST_SIZE];
        let n = burst.len();
        // The outer IPv4 identification in a register for the burst, not loaded and stored per frame.
        let mut ident = self.ident;
        for (m, out) in burst.live_mut().iter_mut().zip(outs.iter_mut()) {
            *out = self.process_out::<FAST>(m, snap, port, kind, &mut ident);
        }
        self.ident = ident;
        // One compare of them all (it vectorizes), where finding the runs is a compare and a branch a frame.
        let first = outs[0];
        if outs[..n].iter().fold(0, |diff, &o| diff | (o ^ first)) == 0 {
            self.hand_over(first, burst, n);
            return;
        }
        let mut i = 0;
        while i < n {
            let out = outs[i];
            let mut j = i + 1;
            while j < n && outs[j] == out {
                j += 1;
            }
            self.hand_over(out, burst, j - i);
            i = j;
        }
    }

    /// [`Self::forward`] of the uplink's burst, out of line as [`Self::forward_pod`] is (5 instructions
    /// a decap frame fewer under callgrind than in the main loop).
    #[inline(never)]
    fn forward_uplink(&mut self, burst: &mut Burst, snap: &Snapshot) {
        // Whether the snapshot has the fast path's match, checked once for the burst: the compiler did
        // not take the check out of the loop itself (2 instructions a frame under callgrind, decap and
        // encap alike).
        if snap.vxlan_match.is_some() {
            self.forward::<true>(burst, snap, self.uplink, None);
        } else {
            self.forward::<false>(burst, snap, self.uplink, None);
        }
    }

    /// [`Self::forward`] of a pod's burst, out of line: the pod path inlined into a loop of its own,
    /// whose registers are its own, where a call per frame saved and restored six of them (12
    /// instructions an encap frame fewer under callgrind).
    #[inline(never)]
    fn forward_pod(&mut self, burst: &mut Burst, snap: &Snapshot, port: PortId) {
        if snap.encap_match.is_some() {
            self.forward::<true>(burst, snap, port, Some(PortKind::Pod));
        } else {
            self.forward::<false>(burst, snap, port, Some(PortKind::Pod));
        }
    }

    /// The packet path of a frame from `port`: the uplink's (`kind` None), a pod's or the host port's,
    /// with the worker's caches, which [`Self::run`] keeps synced with `snap`. Multi-segment frames are
    /// dropped (counted by [`Self::out_port`]).
    #[inline(always)]
    fn process(&mut self, m: &mut crate::dpdk::Mbuf, snap: &Snapshot, port: PortId, kind: Option<PortKind>) -> Verdict {
        if m.segments() > 1 {
            return Verdict::Drop(DropReason::Multiseg);
        }
        let c = Cached::synced(snap, &mut self.cache);
        let Some(kind) = kind else { return process_uplink_cached(m, c) };
        self.ident = self.ident.wrapping_add(1);
        match kind {
            PortKind::Pod => process_pod_cached(m, port, self.ident, c),
            PortKind::Host => process_host_cached(m, self.ident, c),
        }
    }

    /// [`Self::process`] and [`Self::out_port`] of a frame, with the fast paths' verdicts turned into out
    /// ports where they are made: the compiler then knows each one (an encapsulated frame goes to the
    /// uplink, a decapsulated one to its pod's port) and neither stores it nor matches it again, as it
    /// did with the fast and the full path's verdicts met in one variable.
    ///
    /// `FAST`: the snapshot has the fast path's match for this kind of port (its caller checked once
    /// for the burst); without it only the full path is taken, which is what the fast path would leave
    /// every frame to.
    #[inline(always)]
    fn process_out<const FAST: bool>(
        &mut self,
        m: &mut crate::dpdk::Mbuf,
        snap: &Snapshot,
        port: PortId,
        kind: Option<PortKind>,
        ident: &mut u16,
    ) -> u16 {
        if m.segments() > 1 {
            return self.out_port(Verdict::Drop(DropReason::Multiseg), port);
        }
        let mut c = Cached::synced(snap, &mut self.cache);
        let v = match kind {
            None => match if FAST { uplink_fast(m, c.reborrow()) } else { None } {
                Some(v) => return self.out_port(v, port),
                None => uplink_full(m, c),
            },
            Some(PortKind::Pod) => {
                *ident = ident.wrapping_add(1);
                match if FAST { pod_fast(m, port, *ident, c.reborrow()) } else { None } {
                    Some(v) => return self.out_port(v, port),
                    None => pod_full(m, port, *ident, c),
                }
            }
            Some(PortKind::Host) => {
                *ident = ident.wrapping_add(1);
                process_host_cached(m, *ident, c)
            }
        };
        self.out_port(v, port)
    }

    /// The traced path: the frames of `burst` the trace still wants, one by one, each recorded before
    /// and after its packet path (`kind` None: the uplink's). What the trace does not claim stays in
    /// `burst` for the normal path.
    #[cold]
    #[inline(never)]
    fn trace_burst(&mut self, burst: &mut Burst, snap: &Snapshot, port: PortId, kind: Option<PortKind>) {
        while !burst.is_empty() && self.trace.claim() {
            let Some(m) = burst.live_mut().first_mut() else { break };
            let (before, before_len) = crate::trace::head(m.data());
            let mut r = TraceRecord {
                worker: self.id as u16,
                in_port: port,
                tsc: tsc::now(),
                len: m.pkt_len() as u32,
                before,
                before_len,
                verdict: Verdict::Drop(DropReason::Multiseg),
                peer_subnet: None,
                after: [0; crate::trace::TRACE_BYTES],
                after_len: 0,
                after_total: 0,
            };
            r.verdict = self.process(m, snap, port, kind);
            if r.verdict == Verdict::ToUplink {
                r.peer_subnet = self.cache.last_route();
            }
            if matches!(r.verdict, Verdict::ToPod(_) | Verdict::ToHost(_) | Verdict::ToUplink | Verdict::Reply) {
                (r.after, r.after_len) = crate::trace::head(m.data());
                r.after_total = m.pkt_len() as u32;
            }
            self.trace.record(r);
            let out = self.out_port(r.verdict, port);
            self.hand_over(out, burst, 1);
        }
    }

    #[inline(always)]
    fn count_rx(&self, port: PortId, burst: &Burst) {
        // Every port a worker holds has a slot (others are refused at attach).
        let p = usize::from(port.0);
        if let (Some(n), Some(b)) = (self.counters.rx_packets.get(p), self.counters.rx_bytes.get(p)) {
            bump(n, burst.len() as u64);
            bump(b, burst.bytes());
        }
    }

    /// The port a frame with verdict `v` leaves on, [`NO_PORT`] when it goes nowhere (dropped, or a
    /// neighbour learned from it); counts drops, neighbours learned and frames to each peer.
    #[inline(always)]
    fn out_port(&mut self, v: Verdict, in_port: PortId) -> u16 {
        match v {
            Verdict::ToPod(p) | Verdict::ToHost(p) => p.0,
            Verdict::ToUplink => {
                // Every path to the uplink went through the route lookup, whose cache names the peer.
                self.cache.count_sent();
                self.uplink.0
            }
            Verdict::Reply => in_port.0,
            Verdict::Learn { ip, mac } => {
                if self.learned.try_send((ip, mac)).is_ok() {
                    bump(&self.counters.neighbours_learned, 1);
                }
                NO_PORT
            }
            Verdict::Drop(r) => {
                bump(&self.counters.drops[r as usize], 1);
                NO_PORT
            }
        }
    }

    /// Move the first `n` frames of `burst` to port `out`'s buffer, sending it each time it fills; with
    /// [`NO_PORT`], or a port not attached (counted as gone), free them.
    #[inline(always)]
    fn hand_over(&mut self, out: u16, burst: &mut Burst, n: usize) {
        if out == NO_PORT {
            burst.free_front(n);
            return;
        }
        let idx = usize::from(out);
        let Some(slot) = self.slots.get_mut(idx).and_then(Option::as_mut) else {
            bump(&self.counters.drops[DropReason::PortGone as usize], burst.free_front(n) as u64);
            return;
        };
        let mut left = n;
        while left > 0 {
            if slot.buf.is_empty() {
                slot.deadline = self.now + self.drain_tsc;
                if !slot.listed {
                    slot.listed = true;
                    self.dirty.push(idx);
                }
            }
            // A buffer is sent, and so emptied, whenever it fills: it always has room here.
            let moved = burst.move_front(left, &mut slot.buf);
            if slot.buf.len() == crate::dpdk::BURST_SIZE {
                Self::send(slot, &self.counters, idx);
            }
            if moved == 0 {
                // Not reached (see above); were it, the frames are freed, not spun on.
                bump(&self.counters.drops[DropReason::TxFull as usize], burst.free_front(left) as u64);
                return;
            }
            left -= moved;
        }
    }

    #[inline(always)]
    fn send(slot: &mut TxSlot, counters: &WorkerCounters, idx: usize) {
        let (Some(tx_packets), Some(tx_bytes)) = (counters.tx_packets.get(idx), counters.tx_bytes.get(idx)) else {
            return;
        };
        let mut bytes = slot.buf.bytes();
        let n = slot.buf.len();
        let sent = slot.queue.tx_burst(&mut slot.buf);
        if sent < n {
            // Subtract the bytes of what stays; it is freed and counted.
            bytes -= slot.buf.bytes();
            let freed = slot.buf.free_all();
            bump(&counters.drops[DropReason::TxFull as usize], freed as u64);
        }
        bump(tx_packets, sent as u64);
        bump(tx_bytes, bytes);
    }

    /// Send buffers past their deadline (or all, when the port went quiet); only the slots holding
    /// frames are visited.
    #[inline(always)]
    fn flush(&mut self, all: bool) {
        if self.dirty.is_empty() {
            return;
        }
        // The loop's start: a deadline is seen at most one loop late.
        let now = self.now;
        let (slots, counters) = (&mut self.slots, &self.counters);
        self.dirty.retain(|&idx| {
            let Some(slot) = slots.get_mut(idx).and_then(Option::as_mut) else { return false };
            if !slot.buf.is_empty() && (all || now >= slot.deadline) {
                Self::send(slot, counters, idx);
            }
            slot.listed = !slot.buf.is_empty();
            slot.listed
        });
    }

    /// Apply queued control messages; false on Stop.
    #[cold]
    fn take_commands(&mut self) -> bool {
        while let Ok(cmd) = self.commands.try_recv() {
            if !self.apply(cmd) {
                return false;
            }
        }
        true
    }

    /// One control message; false on Stop.
    #[cold]
    fn apply(&mut self, cmd: WorkerCommand) -> bool {
        match cmd {
            WorkerCommand::Attach { port, tx, rx, kind } => {
                let Some(idx) = self.counters.index(port) else { return true };
                // DPDK reuses the ids of closed ports: a new pod starts from zero, not from the last
                // one's counts (this worker is their only writer).
                for a in [
                    &self.counters.rx_packets,
                    &self.counters.rx_bytes,
                    &self.counters.tx_packets,
                    &self.counters.tx_bytes,
                ] {
                    a[idx].store(0, Ordering::Relaxed);
                }
                let mut slot = TxSlot::new(tx);
                if let Some(mut old) = self.slots[idx].take() {
                    let freed = old.buf.free_all();
                    bump(&self.counters.drops[DropReason::PortGone as usize], freed as u64);
                    slot.listed = old.listed; // its place in the dirty list, if it has one
                }
                self.slots[idx] = Some(slot);
                self.port_rx.retain(|r| r.queue.port_id() != port);
                let interval = self.tap_idle_tsc.0;
                self.port_rx.extend(rx.into_iter().map(|queue| RxPort { queue, kind, misses: 0, due: 0, interval }));
            }
            WorkerCommand::Detach { port, done } => {
                if let Some(mut slot) = self.counters.index(port).and_then(|idx| self.slots[idx].take()) {
                    let freed = slot.buf.free_all();
                    bump(&self.counters.drops[DropReason::PortGone as usize], freed as u64);
                }
                self.port_rx.retain(|r| r.queue.port_id() != port);
                let _ = done.send(());
            }
            WorkerCommand::SendOnUplink { frame } => {
                if let Some(mut m) = self.pool.alloc() {
                    let mut one = Burst::new();
                    if m.set_data(&frame).is_some() && one.push(m).is_ok() {
                        self.hand_over(self.uplink.0, &mut one, 1);
                    }
                }
            }
            WorkerCommand::Pause(d) => {
                // Not polling, but still listening for Stop, so a paused worker never holds up a
                // shutdown; other messages wait for the end of the pause, as they would behind a
                // busy worker.
                let until = std::time::Instant::now() + d.min(Duration::from_secs(60));
                let mut later = Vec::new();
                while let Some(left) = until.checked_duration_since(std::time::Instant::now()) {
                    match self.commands.recv_timeout(left) {
                        Ok(WorkerCommand::Stop) => return false,
                        Ok(c) => later.push(c),
                        Err(_) => break,
                    }
                }
                for c in later {
                    if !self.apply(c) {
                        return false;
                    }
                }
            }
            WorkerCommand::Stop => return false,
        }
        true
    }

    /// Add the frames the route cache counted to the per-peer counters: those of the routes it replaced,
    /// and with `all` every route's.
    #[cold]
    #[inline(never)]
    fn count_peers(&mut self, all: bool) {
        let (counters, peers) = (&self.counters, self.peers);
        self.cache.drain_sent(all, |subnet, n| {
            if let Some(c) = counters.peer_tx.get(peers.slot(subnet)) {
                bump(c, n);
            }
        });
        if all {
            (self.peers_pending, self.peers_loops) = (false, 0);
        }
    }

    /// Send what is buffered, count what was sent to each peer, then let go of every queue.
    fn shutdown(&mut self) {
        self.flush(true);
        self.count_peers(true);
        for slot in self.slots.iter_mut() {
            *slot = None;
        }
        self.port_rx.clear();
    }
}
