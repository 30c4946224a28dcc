//! The tables workers forward with: plain immutable data built on the control side and published as a
//! whole [`Snapshot`]. Workers take the newest snapshot between bursts through [`SnapshotCell`] (lock-free,
//! no allocation: a counter read per loop, an `arc-swap` load when it moved); an old snapshot is freed on
//! the control side once the last worker has moved past it (reference counting, so no `unsafe` outside
//! the DPDK layer).
//!
//! Everything a worker would otherwise compute per packet is precomputed here: the SubnetLen mask, the
//! path to each remote node (the 64-byte VXLAN template with its IPv4 checksum over the constant fields,
//! the 42-byte udp-backend template, or the two MACs of a host-gw / DirectRouting hop), and the
//! allow-list of PublicIPs for decap.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use hashbrown::HashMap;
use weft_config::{BackendType, Ipv4Net, MacAddr};

use crate::dpdk::PortId;
use crate::wire::Vni;

pub use crate::wire::encap::{
    at, udp_at, EncapTemplate, Tunnel, UdpTemplate, OUTER_LEN, OUTER_TTL, TEMPLATE_LEN, UDP_OVERHEAD, UDP_TEMPLATE_LEN,
};

/// What this node is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub network: Ipv4Net,
    pub subnet: Ipv4Net,
    pub subnet_len: u8,
    pub public_ip: Ipv4Addr,
    pub uplink_mac: MacAddr,
    pub vtep_mac: MacAddr,
    pub vni: Vni,
    pub vxlan_port: u16,
    /// How the cluster crosses hosts (the network config's Backend.Type).
    pub backend: BackendType,
    /// VXLAN: peers on our L2 get plain routed frames (flannel's DirectRouting).
    pub direct_routing: bool,
    /// The udp backend's port (ours and every peer's).
    pub udp_port: u16,
    /// Underlay (uplink) MTU: IPv4 packets of the outer frame up to this size.
    pub underlay_mtu: u16,
    /// Pods whose destinations lie outside this prefix are sent through `underlay_gateway`.
    pub underlay_net: Ipv4Net,
    pub underlay_gateway: Option<Ipv4Addr>,
}

impl Node {
    /// The pods' gateway address: the first host of our subnet (what flannel gives cni0).
    pub fn gateway_ip(&self) -> Ipv4Addr {
        self.subnet.first_host()
    }

    /// The MAC pods see for their gateway. weft answers ARP for the subnet with it.
    pub fn gateway_mac(&self) -> MacAddr {
        self.vtep_mac
    }

    /// Largest inner IPv4 packet that fits: the underlay MTU minus what the backend adds (VXLAN 50, udp
    /// 28, host-gw 0), as flanneld computes the MTU it writes to the subnet file.
    pub fn pod_mtu(&self) -> u16 {
        self.underlay_mtu.saturating_sub(self.backend.overhead())
    }

    /// Extra routing hops a packet takes on a node of this backend besides the kernel's: flanneld's udp
    /// relay decrements the TTL itself (`decrement_ttl` in its proxy, on both ends), the others do not.
    #[inline(always)]
    pub fn relay_hops(&self) -> u8 {
        (self.backend == BackendType::Udp) as u8
    }

    /// Whether plain IPv4 from the underlay to our subnet is expected: host-gw peers and DirectRouting
    /// peers route it to us.
    #[inline(always)]
    pub fn takes_routed(&self) -> bool {
        self.backend == BackendType::HostGw || self.direct_routing
    }

    /// The underlay next hop for a remote PublicIP.
    pub fn next_hop(&self, remote: Ipv4Addr) -> Ipv4Addr {
        match self.underlay_gateway {
            Some(gw) if !self.underlay_net.contains(remote) => gw,
            _ => remote,
        }
    }
}

/// A remote node: one type from etcd (or the static config) to the tables.
pub use weft_config::Peer;

/// A pod attached to this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodEntry {
    pub name: String,
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    pub port: PortId,
}

/// How frames reach one remote node, built once per snapshot.
#[derive(Debug, Clone)]
pub struct RemoteVtep {
    pub peer: Peer,
    /// The underlay neighbour frames go to: the peer itself on our L2, else the underlay gateway.
    pub next_hop: Ipv4Addr,
    pub path: PeerPath,
}

/// The way to one remote node.
#[derive(Debug, Clone, Copy)]
pub enum PeerPath {
    /// The next hop's MAC is not known yet: frames are dropped (counted) until the slow path resolves it.
    Unresolved,
    /// VXLAN: the outer headers and the inner Ethernet header.
    Vxlan(EncapTemplate),
    /// host-gw, or VXLAN DirectRouting to a peer on our L2: the frame is routed (TTL - 1) to the peer's
    /// uplink with these destination and source MACs, nothing added.
    Direct([u8; 12]),
    /// flanneld's udp backend: outer IPv4 and UDP.
    Udp(UdpTemplate),
    /// A host-gw lease whose PublicIP is not on our L2: refused, as the kernel refuses flanneld's route
    /// through a gateway that is not on link ("network is unreachable"); frames are dropped
    /// (`peer_off_link`).
    OffLink,
}

impl PeerPath {
    /// The MAC frames to the peer go to on the underlay (its own, or the gateway's), once known.
    pub fn next_hop_mac(&self) -> Option<MacAddr> {
        let b: &[u8] = match self {
            PeerPath::Vxlan(t) => &t.bytes,
            PeerPath::Direct(m) => m,
            PeerPath::Udp(t) => &t.bytes,
            PeerPath::Unresolved | PeerPath::OffLink => return None,
        };
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&b[..6]);
        Some(MacAddr(mac))
    }

    /// Whether the path is complete (a MAC resolved, or refused for good).
    pub fn is_resolved(&self) -> bool {
        !matches!(self, PeerPath::Unresolved | PeerPath::OffLink)
    }

    /// The mode's name for people: vxlan, direct, udp, unresolved, off-link.
    pub fn name(&self) -> &'static str {
        match self {
            PeerPath::Unresolved => "unresolved",
            PeerPath::Vxlan(_) => "vxlan",
            PeerPath::Direct(_) => "direct",
            PeerPath::Udp(_) => "udp",
            PeerPath::OffLink => "off-link",
        }
    }
}

/// The tunnel to one peer through a next hop whose MAC is known.
pub fn tunnel(node: &Node, peer: &Peer, next_hop_mac: MacAddr) -> Tunnel {
    Tunnel {
        src_mac: node.uplink_mac,
        next_hop_mac,
        src_ip: node.public_ip,
        dst_ip: peer.public_ip,
        dst_port: node.vxlan_port,
        vni: node.vni,
        inner_src_mac: node.vtep_mac,
        inner_dst_mac: peer.vtep_mac,
    }
}

/// The Ethernet addresses of a routed hop: to `dst`, from `src`.
fn direct_hop(dst: MacAddr, src: MacAddr) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[..6].copy_from_slice(&dst.0);
    b[6..].copy_from_slice(&src.0);
    b
}

/// A hasher for the tables' `u32` keys (IPv4 addresses and subnet keys): one multiply and a shift. The
/// keys come from the control plane (leases), never from packets, so flooding one bucket is not a
/// packet-borne attack; packets only look up.
#[derive(Debug, Default, Clone, Copy)]
pub struct U32Hasher(u64);

impl std::hash::Hasher for U32Hasher {
    #[inline(always)]
    fn finish(&self) -> u64 {
        self.0
    }

    #[inline(always)]
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ *b as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    #[inline(always)]
    fn write_u32(&mut self, i: u32) {
        let h = (i as u64 ^ self.0).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = h ^ (h >> 29);
    }
}

/// A map keyed by `u32` with [`U32Hasher`].
pub type U32Map<V> = HashMap<u32, V, std::hash::BuildHasherDefault<U32Hasher>>;

/// One immutable view of every table.
#[derive(Debug)]
pub struct Snapshot {
    pub generation: u64,
    pub node: Node,
    /// The SubnetLen mask, computed once per snapshot (not per lookup).
    pub subnet_mask: u32,
    /// The Network's mask, computed once per snapshot: the route cache's miss path tests it on every
    /// frame a pod sends to the host, a Service or outside the cluster.
    pub network_mask: u32,
    /// What a SubnetLen-masked address is multiplied by for its route cache slot
    /// ([`PathCache::route_slot`]).
    pub route_mul: u32,
    /// SubnetLen-masked address -> index into `vteps`.
    pub subnets: U32Map<u32>,
    pub vteps: Vec<RemoteVtep>,
    /// Remote PublicIPs we accept VXLAN from (decap allow-list).
    pub known_vteps: U32Map<()>,
    /// Pod address -> pod.
    pub pods: PodTable,
    /// Next hops the slow path must resolve (no MAC known yet).
    pub unresolved: Vec<Ipv4Addr>,
    /// Peers refused because host-gw cannot reach them (PublicIP not on our L2).
    pub off_link: Vec<Peer>,
    /// Where frames for the host, for kernel pods and for outside the cluster go; without it they are
    /// dropped (`no_pod`, `not_overlay`).
    pub host: Option<HostPort>,
    /// The VXLAN backend's first 64 bytes of a frame to decapsulate, as one masked compare.
    pub vxlan_match: Option<VxlanMatch>,
    /// The VXLAN backend's checks of a pod's packet to a remote subnet, as plain numbers.
    pub encap_match: Option<EncapMatch>,
    /// The last eight bytes of the Ethernet header of a frame weft hands a pod or the host: the pods'
    /// gateway MAC and the IPv4 EtherType, as one little-endian word (wire order in memory).
    pub gateway_eth: u64,
}

/// What a VXLAN node's encapsulation checks of a pod's IPv4 packet compare against, computed once per
/// snapshot where the full path works it out per packet (from the backend): the pod MTU. That the
/// packet is for a remote pod is the route lookup's answer (only remote subnets have routes), not a
/// compare with the cluster network and our subnet of its own: that was 8 instructions a frame
/// ahead of the lookup, which the worker's pod loop, short of registers, also paid for in spills. With
/// it a plain packet of a pod to a remote subnet is checked in a few compares on one 34-byte view of
/// its headers; anything else takes the full path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncapMatch {
    pub pod_mtu: u16,
}

impl EncapMatch {
    /// The checks of a VXLAN node; None for the other backends.
    pub fn for_node(node: &Node) -> Option<EncapMatch> {
        (node.backend == BackendType::Vxlan).then(|| EncapMatch { pod_mtu: node.pod_mtu() })
    }
}

/// What the first 64 bytes of a VXLAN frame for this node hold (outer Ethernet 14, IPv4 without options
/// 20, UDP 8, VXLAN 8, inner Ethernet 14), as eight 64-bit words and a mask of the bytes that matter: our
/// MAC, IPv4, IHL 5, not a fragment, UDP, our PublicIP, our VXLAN port, the I flag alone, our VNI, our
/// VtepMAC, inner IPv4. A frame that matches has passed every header check of decapsulation but the
/// lengths, the checksum and the sender's lease, in eight loads instead of a dozen branches (VPP's
/// vxlan-input checks a tunnel key the same way); one that does not takes the full path, which says
/// why it is dropped, if it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanMatch {
    want: [u64; 8],
    mask: [u64; 8],
}

impl VxlanMatch {
    /// The match for a VXLAN node; None for the other backends.
    pub fn for_node(node: &Node) -> Option<VxlanMatch> {
        if node.backend != BackendType::Vxlan {
            return None;
        }
        let (mut want, mut mask) = ([0u8; 64], [0u8; 64]);
        let mut set = |at: usize, bytes: &[u8], m: &[u8]| {
            want[at..at + bytes.len()].copy_from_slice(bytes);
            mask[at..at + m.len()].copy_from_slice(m);
        };
        set(0, &node.uplink_mac.0, &[0xff; 6]);
        set(12, &[0x08, 0x00], &[0xff; 2]);
        set(14, &[0x45], &[0xff]);
        set(20, &[0, 0], &[0x3f, 0xff]); // MF and the fragment offset
        set(23, &[17], &[0xff]);
        set(30, &node.public_ip.octets(), &[0xff; 4]);
        set(36, &node.vxlan_port.to_be_bytes(), &[0xff; 2]);
        let vni = node.vni.get().to_be_bytes();
        set(42, &[0x08, 0, 0, 0, vni[1], vni[2], vni[3], 0], &[0xff; 8]);
        set(50, &node.vtep_mac.0, &[0xff; 6]);
        set(62, &[0x08, 0x00], &[0xff; 2]);
        let words = |b: &[u8; 64]| {
            let mut w = [0u64; 8];
            for (i, c) in b.chunks_exact(8).enumerate() {
                w[i] = u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            }
            w
        };
        Some(VxlanMatch { want: words(&want), mask: words(&mask) })
    }

    /// Whether the frame's first 64 bytes are as [`Self::for_node`] wants them.
    #[inline(always)]
    pub fn matches(&self, h: &[u8; 64]) -> bool {
        let mut diff = 0u64;
        for i in 0..8 {
            let c = &h[i * 8..i * 8 + 8];
            let w = u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            diff |= (w ^ self.want[i]) & self.mask[i];
        }
        diff == 0
    }
}

impl Snapshot {
    /// The remote VTEP serving `dst`, if any.
    #[inline(always)]
    pub fn lookup_vtep(&self, dst: u32) -> Option<&RemoteVtep> {
        self.subnets.get(&(dst & self.subnet_mask)).and_then(|i| self.vteps.get(*i as usize))
    }

    /// This snapshot with a worker's caches, emptied first if they were filled from another snapshot.
    #[inline(always)]
    pub fn cached<'a>(&'a self, cache: &'a mut PathCache) -> Cached<'a> {
        cache.sync(self.generation);
        Cached { snap: self, cache }
    }
}

/// A snapshot and a worker's [`PathCache`] that belongs to it, made by [`Snapshot::cached`]: lookups
/// through the caches answer as the snapshot's tables without checking, each time, that the cache is
/// the snapshot's (a worker checks once per snapshot it takes, not once per frame).
#[derive(Debug)]
pub struct Cached<'a> {
    pub snap: &'a Snapshot,
    cache: &'a mut PathCache,
}

impl<'a> Cached<'a> {
    /// For the worker, which syncs its cache ([`PathCache::sync`]) each time it takes a snapshot.
    #[inline(always)]
    pub(crate) fn synced(snap: &'a Snapshot, cache: &'a mut PathCache) -> Cached<'a> {
        debug_assert_eq!(cache.generation, snap.generation, "a worker syncs its cache when it takes a snapshot");
        Cached { snap, cache }
    }

    /// The same for a shorter while, to hand to a callee and go on with after it returns.
    #[inline(always)]
    pub fn reborrow(&mut self) -> Cached<'_> {
        Cached { snap: self.snap, cache: self.cache }
    }

    /// As [`Snapshot::lookup_vtep`], through the cache of the routes used.
    #[inline(always)]
    pub fn lookup_vtep(&mut self, dst: u32) -> Option<&'a RemoteVtep> {
        let (s, cache) = (self.snap, &mut *self.cache);
        let key = dst & s.subnet_mask;
        let slot = PathCache::route_slot(key, s.route_mul);
        let e = cache.routes[slot];
        // A hit is the key and an index of the snapshot's VTEPs: an empty slot's index never is one.
        if e >> 32 == u64::from(key) {
            if let Some(v) = s.vteps.get(e as u32 as usize) {
                cache.last_slot = slot as u8;
                return Some(v);
            }
        }
        // Only a remote pod's address has a route (the snapshot holds none to our own subnet or
        // outside the network). The encap fast path asks before anything else: a pod's frames to
        // the host or a Service (outside the network) or to a pod of ours miss here, without a probe.
        if key & s.network_mask != s.node.network.addr_u32() || key == s.node.subnet.addr_u32() {
            return None;
        }
        let i = *s.subnets.get(&key)?;
        if cache.sent[slot] != 0 {
            cache.evict(slot);
        }
        (cache.routes[slot], cache.last_slot) = (u64::from(key) << 32 | u64::from(i), slot as u8);
        s.vteps.get(i as usize)
    }

    /// Whether VXLAN from `src` comes from a node that holds a lease, through the cache of the VTEPs
    /// seen.
    #[inline(always)]
    pub fn known_vtep(&mut self, src: u32) -> bool {
        let slot = PathCache::vtep_slot(src);
        if self.cache.vteps[slot] == src {
            return true;
        }
        let known = self.snap.known_vteps.contains_key(&src);
        if known {
            self.cache.vteps[slot] = src;
        }
        known
    }
}

/// Entries of a worker's route cache: 256, so that a slot's number is a byte
/// ([`PathCache::last_slot`]).
pub const PATH_CACHE_SLOTS: usize = 256;
const _: () = assert!(PATH_CACHE_SLOTS == 1 << u8::BITS, "a route slot's number is a byte");
/// Routes with uncounted frames that misses may replace between two [`PathCache::drain_sent`]: a
/// worker drains after every burst, and a frame's lookups miss at most once (the full path looks up
/// again what the fast path just cached), so a burst replaces at most `BURST_SIZE`; twice that.
const EVICTED_SLOTS: usize = 2 * crate::dpdk::BURST_SIZE;
/// Entries of a worker's VTEP cache (a power of two). Twice the routes': an entry is half the size.
pub const VTEP_CACHE_SLOTS: usize = 512;

/// A worker's caches in front of the tables (STYLE.md: decap checks a last-hit cache before the table),
/// direct-mapped so that frames of several peers interleaved in a burst still hit: the routes it used
/// (SubnetLen-masked destination -> peer) and the VTEPs it accepted. 5.5 KiB, so they stay in L1 next to
/// the burst. They belong to one snapshot generation and are emptied when the worker takes a newer one.
///
/// The route cache also counts, for a worker, the frames it sent to each route's peer
/// ([`Self::count_sent`]), which the worker adds to its per-peer counters now and then
/// ([`Self::drain_sent`]): one add to a slot the lookup has just named, where finding the peer's
/// counter for every frame (its subnet's number, a bounds check, the counter's line) was 12
/// instructions an encapsulated frame under callgrind.
#[derive(Debug, Clone)]
pub struct PathCache {
    generation: u64,
    /// `key << 32 | index`; [`Self::EMPTY_ROUTE`] = empty.
    routes: [u64; PATH_CACHE_SLOTS],
    /// PublicIPs. An empty slot holds an address that hashes to another slot ([`Self::EMPTY_VTEP`]),
    /// so no lookup ever matches one.
    vteps: [u32; VTEP_CACHE_SLOTS],
    /// Frames sent to the route in each slot and not yet drained (a worker drains at least every
    /// 1024 loops, far below u32::MAX). A miss that replaces a route with uncounted frames moves them
    /// to `evicted` first.
    sent: [u32; PATH_CACHE_SLOTS],
    /// `key << 32 | frames` of the replaced routes, the first `evicted_len`.
    evicted: [u64; EVICTED_SLOTS],
    evicted_len: u8,
    /// The slot of the last route looked up (one store a lookup): its entry in `routes` is that
    /// route, until the next lookup.
    last_slot: u8,
}

impl Default for PathCache {
    fn default() -> Self {
        PathCache {
            generation: 0,
            routes: [Self::EMPTY_ROUTE; PATH_CACHE_SLOTS],
            vteps: Self::EMPTY_VTEPS,
            sent: [0; PATH_CACHE_SLOTS],
            evicted: [0; EVICTED_SLOTS],
            evicted_len: 0,
            last_slot: 0,
        }
    }
}

impl PathCache {
    /// The subnet (SubnetLen-masked destination) of the last route looked up: after a verdict that
    /// sends a frame to a peer, that peer's.
    #[inline(always)]
    pub fn last_route(&self) -> Option<u32> {
        let e = self.routes[usize::from(self.last_slot)];
        (e != Self::EMPTY_ROUTE).then_some((e >> 32) as u32)
    }

    /// Count a frame sent to the last route looked up.
    #[inline(always)]
    pub fn count_sent(&mut self) {
        let n = &mut self.sent[usize::from(self.last_slot)];
        *n = n.wrapping_add(1);
    }

    /// Whether replaced routes wait in [`Self::drain_sent`].
    #[inline(always)]
    pub fn has_evicted(&self) -> bool {
        self.evicted_len != 0
    }

    /// Hand `f` the frames counted since the last drain, as (the route's subnet, frames): those of
    /// the routes a miss replaced, and with `all` those of every route still cached. A worker drains
    /// the replaced ones after every burst (there is room for two bursts of them), and all of them
    /// when it goes idle, now and then while busy, before it takes a new snapshot and when it stops.
    pub fn drain_sent(&mut self, all: bool, mut f: impl FnMut(u32, u64)) {
        for &e in &self.evicted[..usize::from(self.evicted_len)] {
            f((e >> 32) as u32, e & 0xffff_ffff);
        }
        self.evicted_len = 0;
        if all {
            for (n, &e) in self.sent.iter_mut().zip(self.routes.iter()) {
                if *n != 0 {
                    f((e >> 32) as u32, u64::from(*n));
                    *n = 0;
                }
            }
        }
    }

    /// Move the uncounted frames of the route in `slot`, which a miss is about to replace, to
    /// `evicted`.
    #[cold]
    #[inline(never)]
    fn evict(&mut self, slot: usize) {
        let n = std::mem::take(&mut self.sent[slot]);
        let i = usize::from(self.evicted_len);
        debug_assert!(i < EVICTED_SLOTS, "a worker drains the replaced routes after every burst");
        if let Some(e) = self.evicted.get_mut(i) {
            *e = self.routes[slot] & !0xffff_ffff | u64::from(n);
            self.evicted_len += 1;
        }
    }

    /// A route's slot: the subnet number's low byte plus its next byte (for 256 slots), taken as the
    /// top byte of one product of the SubnetLen-masked `key` and the snapshot's [`Self::route_multiplier`].
    /// Numbers that differ only in their low byte never share a slot, so where the network has at most
    /// `PATH_CACHE_SLOTS` subnets (flannel's default, 10.244.0.0/16 in /24s) no two peers ever do; nor
    /// do numbers that differ only in the next byte (10.R.5.0/24 for every R). (Fibonacci hashing of
    /// the address, as for VTEPs, put the first 200 subnets of 10.244.0.0/16 in 134 slots: a /24's low
    /// byte is 0, which leaves the multiplier's top byte out.)
    #[inline(always)]
    fn route_slot(key: u32, mul: u32) -> usize {
        (key.wrapping_mul(mul) >> (32 - PATH_CACHE_SLOTS.trailing_zeros())) as usize
    }

    /// The multiplier of [`Self::route_slot`] for subnets of `subnet_len`. With the number `n` starting
    /// at bit `s = 32 - subnet_len`, `key * (2^(24-s) + 2^(16-s))` is `n * 2^24 + n * 2^16`: its top byte
    /// is `n`'s low byte plus its second byte, and nothing carries into it (below bit 24 there is only
    /// `n`'s low byte, at bits 16-23). Subnets wider than /16 keep the low byte alone; wider than /8
    /// (no flannel network has them) are hashed as VTEPs are.
    fn route_multiplier(subnet_len: u8) -> u32 {
        const BITS: u32 = PATH_CACHE_SLOTS.trailing_zeros();
        let s = 32 - u32::from(subnet_len.min(32));
        let top = 32 - BITS;
        match s {
            _ if s + BITS <= top => (1 << (top - s)) + (1 << (top - BITS - s)),
            _ if s <= top => 1 << (top - s),
            _ => 0x9e37_79b1,
        }
    }

    /// A VTEP's slot: Fibonacci hashing of its address, so addresses apart only in their high bytes
    /// spread too, and addresses in a row spread evenly: up to 233 in a row never share a slot (the
    /// gaps between multiples of the golden ratio; 233 is a Fibonacci number), 256 in a row seldom (a
    /// pair 233 apart). So do up to 10 racks of 20 nodes numbered in a row (10.0.R.1-20); 2 racks of 100
    /// share 3 slots. Half as many slots, or a byte sum or fold of the address, put many of them on top
    /// of each other (256 slots: 184 for those 200 nodes), each collision a table probe per frame when
    /// their frames interleave.
    #[inline(always)]
    const fn vtep_slot(key: u32) -> usize {
        (key.wrapping_mul(0x9e37_79b1) >> (32 - VTEP_CACHE_SLOTS.trailing_zeros())) as usize
    }

    /// What an empty VTEP slot holds: 0.0.0.0, except in 0.0.0.0's own slot, which holds 0.0.0.1
    /// (whose slot is another): an address only ever sits in its own slot, so neither is answered
    /// from an empty slot.
    const EMPTY_VTEP: u32 = 0;
    /// An empty route slot, and no last route: its index, u32::MAX, is no snapshot's VTEP, so a lookup
    /// never takes it for a hit, whatever the key (no test for an empty slot on the hit path).
    const EMPTY_ROUTE: u64 = u64::MAX;
    const EMPTY_VTEPS: [u32; VTEP_CACHE_SLOTS] = {
        let mut v = [Self::EMPTY_VTEP; VTEP_CACHE_SLOTS];
        assert!(Self::vtep_slot(Self::EMPTY_VTEP) != Self::vtep_slot(Self::EMPTY_VTEP + 1));
        v[Self::vtep_slot(Self::EMPTY_VTEP)] = Self::EMPTY_VTEP + 1;
        v
    };

    /// Empty the caches if they were filled from another snapshot generation than `generation`.
    #[inline(always)]
    pub(crate) fn sync(&mut self, generation: u64) {
        if self.generation != generation {
            self.reset(generation);
        }
    }

    #[cold]
    fn reset(&mut self, generation: u64) {
        debug_assert!(
            self.evicted_len == 0 && self.sent.iter().all(|&n| n == 0),
            "a worker drains what it counted before it takes another snapshot"
        );
        *self = PathCache { generation, ..PathCache::default() };
    }
}

/// What the packet paths need of a pod: the port it is on and its MAC (the frames it sends must come
/// from them; the frames for it go to them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodRoute {
    pub mac: MacAddr,
    pub port: PortId,
}

/// A pod's port and MAC in one word, as [`PodTable`]'s array holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackedRoute(u64);

impl PackedRoute {
    #[inline(always)]
    pub fn new(mac: MacAddr, port: PortId) -> PackedRoute {
        PackedRoute(PodTable::pack(&mac.0, port))
    }

    #[inline(always)]
    pub fn port(self) -> PortId {
        PortId(((self.0 >> 48) as u16).wrapping_sub(1))
    }

    /// The MAC's six bytes in the low 48 bits (wire order in memory, little-endian) and two more bytes
    /// that are not the MAC: for a store of eight bytes whose last two another store overwrites.
    #[inline(always)]
    pub fn mac_and_2(self) -> u64 {
        self.0
    }
}

/// Pods by address: a direct-indexed array over the node's subnet (one slot per address, no hashing)
/// for subnets of /16 and longer, a hash map otherwise. Each slot holds the pod's [`PodRoute`] itself,
/// packed in one word ([`PodTable::pack`]), not an index into the entries: a lookup is one load after
/// the address, which decap (to the destination pod) and encap (from the source pod) make for every
/// packet, and the source check of a pod's frame is one compare of that word.
#[derive(Debug)]
pub struct PodTable {
    /// The subnet's network address: the array's first slot is its.
    base: u32,
    /// Per address of the subnet: the pod's packed route, 0 for none.
    slots: Vec<u64>,
    fallback: Option<U32Map<PodRoute>>,
    len: usize,
}

impl PodTable {
    pub fn build(subnet: Ipv4Net, pods: &[PodEntry]) -> PodTable {
        let host_bits = 32 - subnet.prefix_len() as u32;
        let host_mask = if host_bits == 32 { u32::MAX } else { (1u32 << host_bits) - 1 };
        let mut t = PodTable { base: subnet.addr_u32(), slots: Vec::new(), fallback: None, len: pods.len() };
        let route = |p: &PodEntry| PodRoute { mac: p.mac, port: p.port };
        if host_bits <= 16 {
            t.slots = vec![0; host_mask as usize + 1];
            for p in pods.iter().filter(|p| subnet.contains(p.ip)) {
                t.slots[(u32::from(p.ip) & host_mask) as usize] = Self::pack(&p.mac.0, p.port);
            }
        } else {
            t.fallback = Some(pods.iter().map(|p| (u32::from(p.ip), route(p))).collect());
        }
        t
    }

    /// A pod's route in one word: the MAC's six bytes in the low 48 bits (little-endian: in wire order
    /// in memory), the port + 1 in the top 16, so that no pod's word is 0, an empty slot's. (Port
    /// u16::MAX, the worker's "no port", wraps to 0 there: a pod on it, which cannot exist, would read
    /// as none.)
    #[inline(always)]
    fn pack(mac: &[u8; 6], port: PortId) -> u64 {
        let [m0, m1, m2, m3, m4, m5] = *mac;
        u64::from_le_bytes([m0, m1, m2, m3, m4, m5, 0, 0]) | Self::port_bits(port)
    }

    /// The top 16 bits of a packed route: the port + 1.
    #[inline(always)]
    fn port_bits(port: PortId) -> u64 {
        u64::from(port.0.wrapping_add(1)) << 48
    }

    #[inline(always)]
    fn unpack(w: u64) -> PodRoute {
        let [m0, m1, m2, m3, m4, m5, ..] = w.to_le_bytes();
        PodRoute { mac: MacAddr([m0, m1, m2, m3, m4, m5]), port: PackedRoute(w).port() }
    }

    /// As [`Self::get`], the route as the array packs it: for decap, which writes the pod's MAC as part
    /// of one word.
    #[inline(always)]
    pub fn get_packed(&self, ip: u32) -> Option<PackedRoute> {
        if let Some(w) = self.slot(ip) {
            return Some(PackedRoute(w.get()));
        }
        let p = self.fallback.as_ref()?.get(&ip)?;
        Some(PackedRoute::new(p.mac, p.port))
    }

    /// The packed route of `ip` in the array, if it has one there. Non-zero, so that the answer is the
    /// word itself, 0 for none, and a caller tests it once.
    #[inline(always)]
    fn slot(&self, ip: u32) -> Option<std::num::NonZeroU64> {
        self.word(ip).and_then(std::num::NonZeroU64::new)
    }

    /// The array's word for `ip`, empty (0) or not; None when the address is outside the array (or
    /// there is no array).
    #[inline(always)]
    fn word(&self, ip: u32) -> Option<u64> {
        // The array has a slot for every address of the subnet from its first (`base`, the network
        // address), or none: the offset from `base` is the index, and its one bounds check also says
        // whether `ip` is in the subnet (below `base` it wraps far past the end). Masking the address
        // twice instead, to compare it with the subnet and for the index, cost decap and encap 4 and 5
        // instructions a frame more under callgrind.
        self.slots.get(ip.wrapping_sub(self.base) as usize).copied()
    }

    /// The array first: a hit there, the lookup of every packet, does not look at the map (which only a
    /// table with no array has).
    #[inline(always)]
    pub fn get(&self, ip: &u32) -> Option<PodRoute> {
        if let Some(w) = self.slot(*ip) {
            return Some(Self::unpack(w.get()));
        }
        self.fallback.as_ref()?.get(ip).copied()
    }

    /// Whether `ip` is the address of a pod on `port` with the MAC that is the first six of `mac_and_2`,
    /// eight bytes of a frame from its source MAC on (the two after the MAC do not count): the source
    /// check of a pod's frame, on the array one load of the frame's eight bytes and one compare with the
    /// slot. (Packing the six bytes one by one took 19 instructions in the worker's loop.)
    #[inline(always)]
    pub fn is_source(&self, ip: u32, port: PortId, mac_and_2: &[u8; 8]) -> bool {
        if let Some(w) = self.word(ip) {
            // No test for an empty slot: its 0 never equals a word with the port's bits in it (any port
            // but u16::MAX, the worker's "no port", which no frame comes in on).
            return w == u64::from_le_bytes(*mac_and_2) & 0xffff_ffff_ffff | Self::port_bits(port);
        }
        matches!(self.fallback.as_ref().and_then(|f| f.get(&ip)), Some(p) if p.port == port && p.mac.0 == mac_and_2[..6])
    }

    /// How many pods the table was built from.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The host port: the kernel interface (`weft0`) that is weft's way to the host's own stack, to
/// `cni0` and its kernel pods, and to everything outside the cluster network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostPort {
    pub port: PortId,
    /// The kernel interface's MAC: frames weft hands the host are addressed to it.
    pub mac: MacAddr,
}

/// The inputs a snapshot is built from; the control side keeps one and rebuilds on every change.
#[derive(Debug, Clone)]
pub struct TableInputs {
    pub node: Node,
    pub peers: Vec<Peer>,
    pub pods: Vec<PodEntry>,
    /// Underlay neighbours learned by ARP: IP -> MAC.
    pub neighbours: std::collections::HashMap<Ipv4Addr, MacAddr>,
    /// The host port, once it is attached to the workers.
    pub host: Option<HostPort>,
}

impl TableInputs {
    pub fn build(&self, generation: u64) -> Snapshot {
        let node = self.node.clone();
        let mut subnets = U32Map::with_capacity_and_hasher(self.peers.len(), Default::default());
        let mut vteps = Vec::with_capacity(self.peers.len());
        let mut known_vteps = U32Map::with_capacity_and_hasher(self.peers.len(), Default::default());
        let mut unresolved = Vec::new();
        let mut off_link = Vec::new();
        for p in &self.peers {
            // Our own lease, or one outside the network or of another size, is not a route.
            if p.subnet == node.subnet
                || !node.network.contains_net(&p.subnet)
                || p.subnet.prefix_len() != node.subnet_len
            {
                continue;
            }
            let on_link = node.underlay_net.contains(p.public_ip);
            let direct = node.backend == BackendType::HostGw || (node.direct_routing && on_link);
            let next_hop = if direct { p.public_ip } else { node.next_hop(p.public_ip) };
            let path = match (self.neighbours.get(&next_hop), node.backend) {
                _ if direct && !on_link => PeerPath::OffLink,
                (None, _) => PeerPath::Unresolved,
                (Some(mac), _) if direct => PeerPath::Direct(direct_hop(*mac, node.uplink_mac)),
                (Some(mac), BackendType::Udp) => {
                    PeerPath::Udp(UdpTemplate::build(node.uplink_mac, *mac, node.public_ip, p.public_ip, node.udp_port))
                }
                (Some(mac), _) => PeerPath::Vxlan(EncapTemplate::build(&tunnel(&node, p, *mac))),
            };
            match path {
                PeerPath::Unresolved if !unresolved.contains(&next_hop) => unresolved.push(next_hop),
                PeerPath::OffLink => off_link.push(*p),
                _ => {}
            }
            subnets.insert(p.subnet.addr_u32(), vteps.len() as u32);
            known_vteps.insert(u32::from(p.public_ip), ());
            vteps.push(RemoteVtep { peer: *p, next_hop, path });
        }
        let pods = PodTable::build(node.subnet, &self.pods);
        let subnet_mask = weft_config::net::mask(node.subnet_len);
        let vxlan_match = VxlanMatch::for_node(&node);
        let encap_match = EncapMatch::for_node(&node);
        let [g0, g1, g2, g3, g4, g5] = node.gateway_mac().0;
        let [t0, t1] = crate::wire::EtherType::IPV4.to_be_bytes();
        let gateway_eth = u64::from_le_bytes([g0, g1, g2, g3, g4, g5, t0, t1]);
        Snapshot {
            generation,
            subnet_mask,
            network_mask: node.network.mask(),
            route_mul: PathCache::route_multiplier(node.subnet_len),
            node,
            subnets,
            vteps,
            known_vteps,
            pods,
            unresolved,
            off_link,
            host: self.host,
            vxlan_match,
            encap_match,
            gateway_eth,
        }
    }
}

/// Where the newest snapshot is published.
///
/// A worker keeps the snapshot it forwards with and takes the newest one between bursts when
/// [`SnapshotCell::published`] has moved: one relaxed-cost load per loop instead of an `arc-swap` load
/// and guard (which showed at 2-4 % of a vhost-user worker in `perf`). Snapshots replaced here are kept
/// until no worker holds them, and freed by a later [`SnapshotCell::publish`] on the control side, so a
/// worker dropping its last reference never frees a table in the packet path.
#[derive(Debug)]
pub struct SnapshotCell {
    current: ArcSwap<Snapshot>,
    published: AtomicU64,
    retired: Mutex<Vec<Arc<Snapshot>>>,
}

/// A snapshot held for the duration of one burst.
pub type SnapshotGuard = arc_swap::Guard<Arc<Snapshot>>;

impl SnapshotCell {
    pub fn new(first: Snapshot) -> SnapshotCell {
        SnapshotCell {
            current: ArcSwap::from_pointee(first),
            published: AtomicU64::new(0),
            retired: Mutex::new(Vec::new()),
        }
    }

    /// The newest snapshot, for a short look (tests, start-up).
    #[inline(always)]
    pub fn load(&self) -> SnapshotGuard {
        self.current.load()
    }

    /// The newest snapshot as an owned Arc (control side, and a worker when [`Self::published`] moved).
    pub fn load_full(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// How many snapshots have been published since the first: a worker compares it with the count it
    /// last saw and calls [`Self::load_full`] only when it moved. A count read before a publish's store
    /// at worst makes the worker load the same snapshot once more on its next loop.
    #[inline(always)]
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Acquire)
    }

    pub fn publish(&self, s: Snapshot) {
        let old = self.current.swap(Arc::new(s));
        self.published.fetch_add(1, Ordering::Release);
        // After the swap no worker can take `old` any more (arc-swap settles its loads in flight before
        // `swap` returns), so a count of one means only this list still holds it.
        let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        retired.retain(|r| Arc::strong_count(r) > 1);
        retired.push(old);
    }

    /// Replaced snapshots that a worker still holds, or that wait for the next publish to be freed.
    pub fn retired(&self) -> usize {
        let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        retired.retain(|r| Arc::strong_count(r) > 1);
        retired.len()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn node1() -> Node {
        Node {
            network: "10.244.0.0/16".parse().unwrap(),
            subnet: "10.244.1.0/24".parse().unwrap(),
            subnet_len: 24,
            public_ip: Ipv4Addr::new(192, 168, 77, 1),
            uplink_mac: MacAddr([0x86, 0x0f, 0xfd, 0xd2, 0x34, 0x00]),
            vtep_mac: MacAddr([0x12, 0xfa, 0x72, 0xe4, 0x41, 0xd0]),
            vni: Vni::new(1).unwrap(),
            vxlan_port: 8472,
            backend: BackendType::Vxlan,
            direct_routing: false,
            udp_port: 8285,
            underlay_mtu: 1500,
            underlay_net: "192.168.77.0/24".parse().unwrap(),
            underlay_gateway: None,
        }
    }

    pub fn peer2() -> Peer {
        Peer {
            subnet: "10.244.2.0/24".parse().unwrap(),
            public_ip: Ipv4Addr::new(192, 168, 77, 2),
            vtep_mac: MacAddr([0xaa, 0xc4, 0xe1, 0x93, 0x50, 0xbd]),
        }
    }

    pub const NODE2_UPLINK: MacAddr = MacAddr([0x9a, 0xbd, 0x31, 0x40, 0x5e, 0x58]);

    pub fn inputs() -> TableInputs {
        TableInputs {
            node: node1(),
            peers: vec![peer2()],
            pods: vec![PodEntry {
                name: "pod-a".into(),
                ip: Ipv4Addr::new(10, 244, 1, 2),
                mac: MacAddr([0x02, 0, 0, 0, 1, 2]),
                port: PortId(1),
            }],
            neighbours: [(Ipv4Addr::new(192, 168, 77, 2), NODE2_UPLINK)].into_iter().collect(),
            host: None,
        }
    }

    #[test]
    fn build_routes_and_allow_list() {
        let s = inputs().build(1);
        let v = s.lookup_vtep(u32::from(Ipv4Addr::new(10, 244, 2, 77))).unwrap();
        assert_eq!(v.peer, peer2());
        assert!(matches!(v.path, PeerPath::Vxlan(_)));
        assert!(s.lookup_vtep(u32::from(Ipv4Addr::new(10, 244, 3, 1))).is_none());
        assert!(s.known_vteps.contains_key(&u32::from(Ipv4Addr::new(192, 168, 77, 2))));
        assert!(s.unresolved.is_empty());
    }

    #[test]
    fn build_skips_own_foreign_and_unresolved() {
        let mut i = inputs();
        i.peers.push(Peer { subnet: "10.244.1.0/24".parse().unwrap(), ..peer2() }); // our own
        i.peers.push(Peer { subnet: "10.99.0.0/24".parse().unwrap(), ..peer2() }); // outside the network
        i.peers.push(Peer {
            subnet: "10.244.3.0/24".parse().unwrap(),
            public_ip: Ipv4Addr::new(192, 168, 77, 3),
            vtep_mac: MacAddr([2, 0, 0, 0, 0, 3]),
        });
        let s = i.build(2);
        assert_eq!(s.vteps.len(), 2);
        let v3 = s.lookup_vtep(u32::from(Ipv4Addr::new(10, 244, 3, 9))).unwrap();
        assert!(matches!(v3.path, PeerPath::Unresolved));
        assert_eq!(s.unresolved, vec![Ipv4Addr::new(192, 168, 77, 3)]);
    }

    /// host-gw routes to peers on our L2 and refuses the rest; DirectRouting routes to peers on our L2
    /// and tunnels to the rest through the gateway; udp tunnels to everyone.
    #[test]
    fn build_paths_per_backend() {
        let far = Peer {
            subnet: "10.244.3.0/24".parse().unwrap(),
            public_ip: Ipv4Addr::new(172, 16, 0, 3),
            vtep_mac: MacAddr([2, 0, 0, 0, 0, 3]),
        };
        let gw = Ipv4Addr::new(192, 168, 77, 254);
        let gw_mac = MacAddr([2, 0, 0, 0, 0, 0xfe]);
        let paths = |backend, direct_routing| {
            let mut i = inputs();
            i.node.backend = backend;
            i.node.direct_routing = direct_routing;
            i.node.underlay_gateway = Some(gw);
            i.neighbours.insert(gw, gw_mac);
            i.peers.push(far);
            let s = i.build(1);
            let names: Vec<_> = s.vteps.iter().map(|v| (v.path.name(), v.next_hop)).collect();
            (names, s.off_link.clone())
        };
        let near = Ipv4Addr::new(192, 168, 77, 2);
        assert_eq!(paths(BackendType::HostGw, false), (vec![("direct", near), ("off-link", far.public_ip)], vec![far]));
        assert_eq!(paths(BackendType::Vxlan, true), (vec![("direct", near), ("vxlan", gw)], vec![]));
        assert_eq!(paths(BackendType::Vxlan, false), (vec![("vxlan", near), ("vxlan", gw)], vec![]));
        assert_eq!(paths(BackendType::Udp, false), (vec![("udp", near), ("udp", gw)], vec![]));
        let s = inputs().build(1);
        let mut n = s.node.clone();
        for (b, mtu) in [(BackendType::Vxlan, 1450), (BackendType::Udp, 1472), (BackendType::HostGw, 1500)] {
            n.backend = b;
            assert_eq!(n.pod_mtu(), mtu, "{b}");
        }
    }

    #[test]
    fn next_hop_through_gateway_off_link() {
        let mut n = node1();
        n.underlay_gateway = Some(Ipv4Addr::new(192, 168, 77, 254));
        assert_eq!(n.next_hop(Ipv4Addr::new(192, 168, 77, 2)), Ipv4Addr::new(192, 168, 77, 2));
        assert_eq!(n.next_hop(Ipv4Addr::new(172, 16, 0, 2)), Ipv4Addr::new(192, 168, 77, 254));
    }

    /// The template is the kernel frame's first 64 bytes but for the per-packet fields.
    #[test]
    fn emit_template_matches_kernel_headers() {
        let frames = testkit::fixtures::kernel_vxlan_ping();
        let k = &frames[0];
        let t = EncapTemplate::build(&tunnel(&node1(), &peer2(), NODE2_UPLINK));
        let per_packet = [
            at::IP_TOTAL_LEN,
            at::IP_TOTAL_LEN + 1,
            at::IP_IDENT,
            at::IP_IDENT + 1,
            at::IP_CHECKSUM,
            at::IP_CHECKSUM + 1,
            at::UDP_SRC,
            at::UDP_SRC + 1,
            at::UDP_LEN,
            at::UDP_LEN + 1,
            at::UDP + 6,
            at::UDP + 7,
        ];
        for (i, (got, want)) in t.bytes.iter().zip(&k[..TEMPLATE_LEN]).enumerate() {
            if !per_packet.contains(&i) {
                assert_eq!(got, want, "byte {i}");
            }
        }
    }

    #[test]
    fn pod_table_direct_and_fallback() {
        let pods = inputs().pods;
        let a = Some(PodRoute { mac: MacAddr([0x02, 0, 0, 0, 1, 2]), port: PortId(1) });
        let t = PodTable::build("10.244.1.0/24".parse().unwrap(), &pods);
        assert_eq!(t.get(&u32::from(Ipv4Addr::new(10, 244, 1, 2))), a);
        assert!(t.get(&u32::from(Ipv4Addr::new(10, 244, 1, 3))).is_none());
        assert!(t.get(&u32::from(Ipv4Addr::new(10, 244, 2, 2))).is_none(), "outside the subnet");
        let wide = PodTable::build("10.0.0.0/8".parse().unwrap(), &pods);
        assert_eq!(wide.get(&u32::from(Ipv4Addr::new(10, 244, 1, 2))), a);
        assert!(wide.get(&u32::from(Ipv4Addr::new(10, 244, 1, 3))).is_none());
        assert_eq!((t.len(), wide.len()), (1, 1));
        // The source check, on the array and on the map: the pod's port and MAC, nothing else.
        let ip = u32::from(Ipv4Addr::new(10, 244, 1, 2));
        // The MAC and an EtherType after it, which does not count.
        let mac = [0x02, 0, 0, 0, 1, 2, 0x08, 0x00];
        for table in [&t, &wide] {
            let mut other_type = mac;
            other_type[6..].copy_from_slice(&[0x86, 0xdd]);
            assert!(table.is_source(ip, PortId(1), &other_type), "the two bytes after the MAC do not count");
            assert!(table.is_source(ip, PortId(1), &mac));
            assert!(!table.is_source(ip, PortId(2), &mac), "another port");
            assert!(!table.is_source(ip, PortId(0), &mac), "another port");
            for i in 0..6 {
                let mut other = mac;
                other[i] ^= 0x10;
                assert!(!table.is_source(ip, PortId(1), &other), "MAC byte {i} differs");
            }
            assert!(!table.is_source(ip + 1, PortId(1), &mac), "no pod there");
            for port in [0, 1, u16::MAX - 1] {
                // An empty slot (0) is never a source, not even of a zero MAC: the port's bits differ.
                assert!(!table.is_source(ip + 1, PortId(port), &[0; 8]), "empty slot, port {port}, zero MAC");
            }
            // Packed for decap: the port, and the MAC in the first six bytes of the word.
            let p = table.get_packed(ip).unwrap();
            assert_eq!(p.port(), PortId(1));
            assert_eq!(p.mac_and_2().to_le_bytes()[..6], mac[..6]);
            assert!(table.get_packed(ip + 1).is_none());
        }
    }

    #[test]
    fn pod_array_answers_its_subnet_to_both_ends_and_nothing_past_them() {
        let at = |s: &str, port: u16| PodEntry {
            name: s.into(),
            ip: s.parse().unwrap(),
            mac: MacAddr([0x02, 0, 0, 0, 0, port as u8]),
            port: PortId(port),
        };
        // The subnet's first and last addresses, the ones just outside it, and the top of the address
        // space, where the address past the end wraps to 0.0.0.0.
        for (subnet, first, last, below, above) in [
            ("10.244.1.0/24", "10.244.1.0", "10.244.1.255", "10.244.0.255", "10.244.2.0"),
            ("10.244.0.0/16", "10.244.0.0", "10.244.255.255", "10.243.255.255", "10.245.0.0"),
            ("255.255.255.192/26", "255.255.255.192", "255.255.255.255", "255.255.255.191", "0.0.0.0"),
            ("0.0.0.0/24", "0.0.0.0", "0.0.0.255", "255.255.255.255", "0.0.1.0"),
        ] {
            let pods = [at(first, 1), at(last, 2), at(below, 3), at(above, 4)];
            let t = PodTable::build(subnet.parse().unwrap(), &pods);
            let ip = |s: &str| u32::from(s.parse::<Ipv4Addr>().unwrap());
            assert_eq!(t.get(&ip(first)).map(|p| p.port), Some(PortId(1)), "{subnet}: its first address");
            assert_eq!(t.get(&ip(last)).map(|p| p.port), Some(PortId(2)), "{subnet}: its last address");
            for out in [below, above] {
                assert!(t.get(&ip(out)).is_none(), "{subnet}: {out} is outside it");
                assert!(t.get_packed(ip(out)).is_none(), "{subnet}: {out} is outside it");
                assert!(!t.is_source(ip(out), PortId(3), &[0x02, 0, 0, 0, 0, 3, 0, 0]), "{subnet}: {out}");
                assert!(!t.is_source(ip(out), PortId(4), &[0x02, 0, 0, 0, 0, 4, 0, 0]), "{subnet}: {out}");
            }
            assert!(t.is_source(ip(last), PortId(2), &[0x02, 0, 0, 0, 0, 2, 0, 0]), "{subnet}");
        }
    }

    #[test]
    fn pod_slots_pack_every_port_and_mac_apart_from_empty() {
        for port in [0, 1, 0x1234, u16::MAX - 1] {
            for mac in [[0; 6], [0xff; 6], [0x02, 0xbe, 0, 0, 1, 3]] {
                let w = PodTable::pack(&mac, PortId(port));
                assert_ne!(w, 0, "port {port} mac {mac:?} packs to the empty slot");
                assert_eq!(PodTable::unpack(w), PodRoute { mac: MacAddr(mac), port: PortId(port) });
            }
        }
    }

    #[test]
    fn caches_follow_the_snapshot() {
        let mut cache = PathCache::default();
        let s1 = inputs().build(1);
        let dst = u32::from(Ipv4Addr::new(10, 244, 2, 9));
        assert!(s1.cached(&mut cache).lookup_vtep(dst).is_some());
        assert!(s1.cached(&mut cache).lookup_vtep(dst).is_some(), "hit");
        let vtep = u32::from(Ipv4Addr::new(192, 168, 77, 2));
        assert!(s1.cached(&mut cache).known_vtep(vtep));
        // The peer leaves: a newer snapshot must not answer from the cache.
        let mut i = inputs();
        i.peers.clear();
        let s2 = i.build(2);
        assert!(s2.cached(&mut cache).lookup_vtep(dst).is_none());
        assert!(!s2.cached(&mut cache).known_vtep(vtep));
    }

    /// [`inputs`] for a node of `subnet` in `network`, in subnets of `subnet`'s length, with a peer
    /// for each of `peers`: its subnet's address, and `n` for its PublicIP 192.168.0.n and VTEP MAC.
    fn inputs_with(network: &str, subnet: &str, peers: &[(u32, u8)]) -> TableInputs {
        let mut i = inputs();
        i.node.network = network.parse().unwrap();
        i.node.subnet = subnet.parse().unwrap();
        i.node.subnet_len = i.node.subnet.prefix_len();
        i.peers = peers
            .iter()
            .map(|&(subnet, n)| Peer {
                subnet: Ipv4Net::new(Ipv4Addr::from(subnet), i.node.subnet_len).unwrap(),
                public_ip: Ipv4Addr::new(192, 168, 0, n),
                vtep_mac: MacAddr([2, 0, 0, 0, 0, n]),
            })
            .collect();
        i
    }

    /// An empty route slot is never a hit: not for the key its top half holds (255.255.255.255, a /32
    /// peer's), nor for key 0 (0.0.0.0/32), whose first VTEP's entry would be 0. Each peer is found
    /// first through the table, then through the cache.
    #[test]
    fn route_cache_takes_no_empty_slot_for_a_hit() {
        let s = inputs_with("0.0.0.0/0", "10.244.1.1/32", &[(u32::MAX, 2), (0, 1)]).build(1);
        let mut cache = PathCache::default();
        for _ in 0..2 {
            for (dst, n) in [(u32::MAX, 2), (0, 1)] {
                let v = s.cached(&mut cache).lookup_vtep(dst).map(|v| v.peer.public_ip);
                assert_eq!(v, Some(Ipv4Addr::new(192, 168, 0, n)), "{}", Ipv4Addr::from(dst));
                assert_eq!(cache.last_route(), Some(dst));
            }
            assert!(s.cached(&mut cache).lookup_vtep(0x0a00_0001).is_none(), "no peer there");
        }
    }

    /// The frames counted against each cached route come out once each, under the route's subnet, also
    /// those of a route that a miss replaced in its slot before they were drained.
    #[test]
    fn route_cache_counts_sent_frames_once_across_replacements() {
        // Numbers 0x0105 and 0x0204: their two low bytes add up to the same slot.
        let (a, b) = (u32::from(Ipv4Addr::new(10, 1, 5, 0)), u32::from(Ipv4Addr::new(10, 2, 4, 0)));
        let s = inputs_with("10.0.0.0/8", "10.9.9.0/24", &[(a, 1), (b, 2)]).build(1);
        assert_eq!(PathCache::route_slot(a, s.route_mul), PathCache::route_slot(b, s.route_mul));
        let send = |cache: &mut PathCache, subnet: u32, frames: u32| {
            for _ in 0..frames {
                assert!(s.cached(cache).lookup_vtep(subnet | 7).is_some());
                cache.count_sent();
            }
        };
        let drain = |cache: &mut PathCache, all: bool| {
            let mut got = Vec::new();
            cache.drain_sent(all, |subnet, n| got.push((Ipv4Addr::from(subnet), n)));
            got
        };
        let (a4, b4) = (Ipv4Addr::from(a), Ipv4Addr::from(b));
        let mut cache = PathCache::default();
        assert!(!cache.has_evicted());
        send(&mut cache, a, 3);
        send(&mut cache, b, 2);
        send(&mut cache, a, 1);
        assert!(cache.has_evicted());
        assert_eq!(drain(&mut cache, false), [(a4, 3), (b4, 2)], "the replaced routes' frames");
        assert!(!cache.has_evicted());
        assert_eq!(drain(&mut cache, true), [(a4, 1)], "the cached route's");
        assert_eq!(drain(&mut cache, true), [], "each frame once");
        send(&mut cache, a, 4);
        assert_eq!(drain(&mut cache, false), [], "a hit replaces nothing");
        assert_eq!(drain(&mut cache, true), [(a4, 4)]);
    }

    /// In flannel's default layout (10.244.0.0/16 in /24s) every peer keeps its own route slot; so do
    /// the first 255 peers of a wide network in longer subnets (the benchmark's /8 in /26s), and
    /// subnets apart only in their higher byte (10.R.5.0/24).
    #[test]
    fn routes_of_one_block_never_share_a_slot() {
        let low = |n: u32| n;
        let high = |n: u32| n << 8 | 5;
        for (network, len, number) in
            [("10.244.0.0/16", 24u8, &low as &dyn Fn(u32) -> u32), ("10.0.0.0/8", 26, &low), ("10.0.0.0/8", 24, &high)]
        {
            let peers = 255u32;
            let mut i = inputs();
            i.node.network = network.parse().unwrap();
            i.node.subnet_len = len;
            i.node.subnet = Ipv4Net::new(i.node.network.addr(), len).unwrap();
            let first = i.node.network.addr_u32();
            let subnet = |n: u32| first | number(n) << (32 - len);
            i.peers = (1..=peers)
                .map(|n| Peer {
                    subnet: Ipv4Net::new(Ipv4Addr::from(subnet(n)), len).unwrap(),
                    public_ip: Ipv4Addr::from(0xc0a8_0000 | n),
                    vtep_mac: MacAddr([2, 0, 0, 0, (n >> 8) as u8, n as u8]),
                })
                .collect();
            let s = i.build(1);
            let mut cache = PathCache::default();
            for n in 1..=peers {
                assert!(s.cached(&mut cache).lookup_vtep(subnet(n) | 2).is_some());
            }
            let held = cache.routes.iter().filter(|&&e| e != PathCache::EMPTY_ROUTE).count();
            assert_eq!(held, peers as usize, "{network} in /{len}s: {peers} peers in {held} route slots");
        }
    }

    /// The route slot is the subnet number's low byte plus its second byte for every SubnetLen from
    /// /16 to /32, its low byte alone for /9 to /15 (the number: the address's top SubnetLen bits,
    /// network bits included).
    #[test]
    fn route_slot_adds_the_numbers_two_low_bytes() {
        for len in 9u8..=32 {
            let (mul, s) = (PathCache::route_multiplier(len), 32 - u32::from(len));
            let top = u32::MAX >> s;
            for n in (0..=top).step_by(1 + (top / 100_000) as usize).chain([top, 0x0af4_11ff & top]) {
                let want = if len >= 16 { n.wrapping_add(n >> 8) & 0xff } else { n & 0xff };
                assert_eq!(PathCache::route_slot(n << s, mul), want as usize, "/{len} number {n:#x}");
            }
        }
    }

    /// 2000 peers looked up interleaved, more than the cache has slots: every answer through the cache
    /// is the table's, hit or miss, and addresses of no peer are never answered.
    #[test]
    fn caches_answer_as_the_tables_under_collisions() {
        let mut i = inputs();
        i.node.network = "10.0.0.0/8".parse().unwrap();
        i.node.subnet = "10.0.1.0/24".parse().unwrap();
        i.peers = (2..2002u32)
            .map(|n| Peer {
                subnet: Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 | n << 8), 24).unwrap(),
                public_ip: Ipv4Addr::from(0xc0a8_0000 | n),
                vtep_mac: MacAddr([2, 0, 0, 0, (n >> 8) as u8, n as u8]),
            })
            .collect();
        let s = i.build(1);
        let mut cache = PathCache::default();
        for round in 0..3 {
            for n in (0..2100u32).map(|k| (k * 7919 + round) % 2100) {
                let dst = 0x0a00_0000 | n << 8 | 9;
                let got = s.cached(&mut cache).lookup_vtep(dst).map(|v| v.peer.subnet);
                assert_eq!(got, s.lookup_vtep(dst).map(|v| v.peer.subnet), "route of {}", Ipv4Addr::from(dst));
                assert_eq!(got.is_some(), (2..2002).contains(&n));
                let src = 0xc0a8_0000 | n;
                assert_eq!(s.cached(&mut cache).known_vtep(src), (2..2002).contains(&n), "{}", Ipv4Addr::from(src));
            }
        }
        assert!(!s.cached(&mut cache).known_vtep(0), "0.0.0.0 is no VTEP (and no empty slot's key)");
        let mut empty = PathCache::default();
        for ip in [0, 1, 2, 0xc0a8_0000, u32::MAX] {
            assert!(!s.cached(&mut empty).known_vtep(ip), "an empty cache holds no {}", Ipv4Addr::from(ip));
        }
    }

    /// Node addresses in a row keep their own VTEP slots wherever the row starts, as do the
    /// benchmark's 256 peers (PublicIPs 172.16.0.2 on) and racks of 20 nodes numbered in a row.
    #[test]
    fn vteps_in_a_row_never_share_a_slot() {
        // How many VTEP slots the PublicIPs of these peers hold once each has been accepted.
        let held = |ips: Vec<u32>| {
            let mut i = inputs();
            i.node.network = "10.0.0.0/8".parse().unwrap();
            i.node.subnet = "10.0.0.0/24".parse().unwrap();
            i.peers = (1..)
                .zip(&ips)
                .map(|(n, &ip)| Peer {
                    subnet: Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 | n << 8), 24).unwrap(),
                    public_ip: Ipv4Addr::from(ip),
                    vtep_mac: MacAddr([2, 0, 0, 0, (n >> 8) as u8, n as u8]),
                })
                .collect();
            let s = i.build(1);
            let mut cache = PathCache::default();
            for &ip in &ips {
                assert!(s.cached(&mut cache).known_vtep(ip), "{} is a peer's", Ipv4Addr::from(ip));
            }
            let held = cache.vteps.iter().zip(PathCache::EMPTY_VTEPS).filter(|(v, e)| *v != e).count();
            (ips.len(), held)
        };
        let mut start = 1u32;
        for _ in 0..200 {
            start = start.wrapping_mul(2_654_435_761).wrapping_add(0x0101_0101);
            let (n, got) = held((0..233).map(|i| start.wrapping_add(i)).collect());
            assert_eq!(got, n, "233 addresses from {}: {got} slots", Ipv4Addr::from(start));
        }
        let bench = u32::from(Ipv4Addr::new(172, 16, 0, 2));
        assert_eq!(held((0..256).map(|i| bench + i).collect()), (256, 256), "the benchmark's peers");
        let racks = |r: u32, n: u32| (0..r).flat_map(|r| (1..=n).map(move |n| 0x0a00_0000 | r << 8 | n)).collect();
        assert_eq!(held(racks(10, 20)), (200, 200), "10 racks of 20");
        assert_eq!(held(racks(2, 100)), (200, 197), "2 racks of 100: three pairs share");
    }

    #[test]
    fn publish_and_load() {
        let cell = SnapshotCell::new(inputs().build(1));
        let g = cell.load();
        cell.publish(inputs().build(2));
        assert_eq!(g.generation, 1, "a held snapshot does not change under the holder");
        assert_eq!(cell.load().generation, 2);
    }

    #[test]
    fn a_worker_takes_a_new_snapshot_when_the_count_moves_and_never_frees_one() {
        let cell = SnapshotCell::new(inputs().build(1));
        let (seen, held) = (cell.published(), cell.load_full());
        cell.publish(inputs().build(2));
        assert_ne!(cell.published(), seen, "a publish moves the count");
        assert_eq!((held.generation, cell.retired()), (1, 1), "generation 1 is held by the worker: it stays");
        drop(held); // the worker moves on: its drop frees nothing, the cell still holds generation 1
        let (seen, held) = (cell.published(), cell.load_full());
        assert_eq!((held.generation, cell.published()), (2, seen));
        let weak = std::sync::Arc::downgrade(&cell.load_full());
        cell.publish(inputs().build(3));
        drop(held);
        assert!(weak.upgrade().is_some(), "the worker's drop was not the last: the cell still holds generation 2");
        assert_eq!(cell.retired(), 0, "nobody holds 1 or 2 any more: the control side frees them");
        assert!(weak.upgrade().is_none());
    }
}
