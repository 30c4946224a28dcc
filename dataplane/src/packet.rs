//! weft's packet paths (DESIGN.md §3) as functions of one frame and one snapshot, returning a
//! [`Verdict`]. They rewrite the frame in place (decap, encap, proxy ARP, ICMP fragmentation-needed) and
//! never allocate, lock, log or block; the worker acts on the verdict. They work on any [`PacketBuf`], so
//! the same code runs on mbufs in the workers and on byte fixtures in the tests.

use std::net::Ipv4Addr;

use weft_config::MacAddr;

use crate::dpdk::{Mbuf, PortId};
use crate::tables::{
    Cached, EncapMatch, EncapTemplate, HostPort, Node, PackedRoute, PathCache, PeerPath, Snapshot, UdpTemplate,
    VxlanMatch, OUTER_LEN, UDP_OVERHEAD,
};
use crate::wire::{
    arp, ethernet, get_u16, get_u64, icmpv4, ipv4, udp, vxlan, ArpPacket, ArpRepr, EtherType, EthernetFrame,
    EthernetRepr, Icmpv4Packet, Icmpv4Repr, Ipv4Packet, Ipv4Repr, UdpPacket, VxlanPacket,
};
pub use crate::wire::{PacketBuf, VecBuf};
use weft_config::BackendType;

impl PacketBuf for Mbuf {
    #[inline(always)]
    fn data(&self) -> &[u8] {
        Mbuf::data(self)
    }
    #[inline(always)]
    fn data_mut(&mut self) -> &mut [u8] {
        Mbuf::data_mut(self)
    }
    #[inline(always)]
    fn prepend(&mut self, n: usize) -> Option<()> {
        Mbuf::prepend(self, n)
    }
    #[inline(always)]
    fn adj(&mut self, n: usize) -> Option<()> {
        Mbuf::adj(self, n)
    }
    #[inline(always)]
    fn trim(&mut self, n: usize) -> Option<()> {
        Mbuf::trim(self, n)
    }
}

macro_rules! drop_reasons {
    ($($variant:ident => $label:literal, $doc:literal;)*) => {
        /// Why a frame was dropped. Indexes the per-worker drop counters; labels are stable metric values.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum DropReason { $(#[doc = $doc] $variant,)* }

        impl DropReason {
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];
            pub const COUNT: usize = Self::ALL.len();
            /// The stable label (Prometheus `reason`).
            pub fn label(self) -> &'static str {
                match self { $(DropReason::$variant => $label,)* }
            }
            /// What the reason means, in a sentence.
            pub fn meaning(self) -> &'static str {
                match self { $(DropReason::$variant => $doc,)* }
            }
        }
    };
}

drop_reasons! {
    Truncated => "truncated", "Shorter than its headers say.";
    Vlan => "vlan_tagged", "802.1Q tagged; weft's ports are untagged.";
    OtherEthertype => "other_ethertype", "Neither IPv4 nor ARP (IPv6, LLDP, ...).";
    BadIpHeader => "bad_ip_header", "IPv4 version, IHL or length fields wrong.";
    IpChecksum => "ip_checksum", "IPv4 header checksum wrong.";
    Fragment => "fragment", "Outer IPv4 fragment (weft does not reassemble).";
    NotForUs => "not_for_us", "Uplink frame not addressed to our MAC and PublicIP.";
    NotVxlan => "not_vxlan", "Not UDP to our VXLAN port.";
    NotUdpEncap => "not_flannel_udp", "udp backend: not UDP to our udp-backend port.";
    PeerOffLink => "peer_off_link", "host-gw: the peer's PublicIP is not on our L2 (refused, as flanneld's route is).";
    VxlanFlags => "vxlan_flags", "VXLAN I flag clear or reserved bits set.";
    WrongVni => "wrong_vni", "VXLAN network identifier not ours.";
    UnknownVtep => "unknown_vtep", "VXLAN or udp-backend datagram from a PublicIP that holds no lease.";
    InnerNotIpv4 => "inner_not_ipv4", "Encapsulated frame is not IPv4.";
    InnerDstMac => "inner_dst_mac", "Encapsulated frame not addressed to our VtepMAC.";
    NoPod => "no_pod", "Destination in our subnet but no pod has it.";
    TtlExpired => "ttl_expired", "TTL would reach zero.";
    NoRoute => "no_route", "Destination in the cluster network but no node leases it.";
    NotOverlay => "not_overlay", "Destination outside the cluster network (no exception path).";
    NeighbourUnresolved => "neighbour_unresolved", "Underlay next hop's MAC not resolved yet.";
    TooBig => "too_big", "Over the pod MTU and not DF (weft does not fragment).";
    SpoofedSource => "spoofed_source", "Pod frame with a source IP or MAC that is not the pod's.";
    ArpIgnored => "arp_ignored", "ARP that needs no answer from us.";
    NoHeadroom => "no_headroom", "No room in front of the frame for the outer headers.";
    TxFull => "tx_full", "The port did not take the frame.";
    PortGone => "port_gone", "The frame's output port is not attached (pod deleted).";
    Multiseg => "multiseg", "Multi-segment mbuf (weft handles single-segment frames).";
    BadArp => "bad_arp", "ARP that is not IPv4 over Ethernet.";
}

/// What to do with a frame after processing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Decapsulated or switched: send to this pod port.
    ToPod(PortId),
    /// For the host's kernel (its own addresses, `cni0` pods, outside the cluster): send to the host
    /// port.
    ToHost(PortId),
    /// Encapsulated: send on the uplink.
    ToUplink,
    /// Rewritten into an answer (ARP reply, ICMP fragmentation-needed): send back out the port it came in.
    Reply,
    /// An ARP reply for us: hand the neighbour to the slow path; the frame is done.
    Learn {
        ip: Ipv4Addr,
        mac: MacAddr,
    },
    Drop(DropReason),
}

use DropReason as R;

/// Source port for the outer UDP header from the inner flow, in 32768..61000 as Linux's
/// `udp_flow_src_port` maps its flow hash into the local port range, so one flow keeps one port (and one
/// RSS queue / ECMP path) and different flows spread.
#[inline(always)]
pub fn flow_src_port(ip: &[u8]) -> u16 {
    // Addresses and protocol, plus ports for unfragmented TCP/UDP.
    let src = u32::from_be_bytes([ip[12], ip[13], ip[14], ip[15]]);
    let dst = u32::from_be_bytes([ip[16], ip[17], ip[18], ip[19]]);
    let hl = ((ip[0] & 0x0f) as usize) * 4;
    let ports = flow_ports([ip[6], ip[7]], ip[9], ip.get(hl..));
    flow_hash_port(src, dst, ip[9], ports)
}

/// The ports [`flow_src_port`] hashes: the first four bytes of the transport header (`l4`, from the
/// end of the IPv4 header on) of an unfragmented TCP or UDP packet that has them, else 0.
/// `flags_frag` is the IPv4 header's flags and fragment offset word, as its two bytes: unfragmented
/// where MF and the offset, all of it but the first byte's top two bits, are 0 (tested as the bytes lie,
/// one test of the word in memory rather than a swap and a mask).
#[inline(always)]
fn flow_ports(flags_frag: [u8; 2], proto: u8, l4: Option<&[u8]>) -> u32 {
    match l4 {
        Some(&[a, b, c, d, ..])
            if u16::from_le_bytes(flags_frag) & 0xff3f == 0
                && (proto == ipv4::protocol::TCP || proto == ipv4::protocol::UDP) =>
        {
            u32::from_be_bytes([a, b, c, d])
        }
        _ => 0,
    }
}

/// [`flow_src_port`] of the flow's fields.
#[inline(always)]
fn flow_hash_port(src: u32, dst: u32, proto: u8, ports: u32) -> u16 {
    // Two multiplications in a row (the ports' runs beside the addresses'): enough to spread flows over
    // RSS queues and ECMP paths; a full 64-bit finaliser cost three more on every encapsulated packet.
    let h =
        ((src as u64) << 32 | dst as u64) ^ ((ports as u64) << 8 | proto as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    let h32 = (h >> 32) as u32 ^ h as u32;
    (32768 + ((h32 as u64 * (61000 - 32768)) >> 32)) as u16
}

/// Uplink RX: VXLAN (or the udp backend's datagrams) to us -> decapsulated frame for a pod; with host-gw
/// or DirectRouting, plain IPv4 routed to our subnet -> a pod; ARP for our PublicIP -> reply.
#[inline]
pub fn process_uplink<B: PacketBuf>(m: &mut B, s: &Snapshot) -> Verdict {
    process_uplink_cached(m, s.cached(&mut PathCache::default()))
}

/// As [`process_uplink`], with a worker's caches in front of the tables. The fast path is inlined into
/// the caller (the worker's loop: no call, no saved registers, the verdict in registers), the rest is
/// [`uplink_full`]. Under callgrind this took weft's own instructions of a decap packet from 252.9 to
/// 229.0 (10 peers); the pod's fast path stays a call ([`process_pod_cached`]).
#[inline(always)]
pub fn process_uplink_cached<B: PacketBuf>(m: &mut B, mut c: Cached<'_>) -> Verdict {
    if let Some(v) = uplink_fast(m, c.reborrow()) {
        return v;
    }
    uplink_full(m, c)
}

/// The uplink's fast path alone: the verdict, or None for a frame [`uplink_full`] takes. For a caller
/// that acts on the fast path's verdicts before they meet the full path's (the worker turns each into
/// its out port where it is made, so the verdict is never stored and matched again).
#[inline(always)]
pub fn uplink_fast<B: PacketBuf>(m: &mut B, c: Cached<'_>) -> Option<Verdict> {
    c.snap.vxlan_match.as_ref().and_then(|vm| vxlan_fast(m, vm, c))
}

/// The uplink's full path: every frame [`uplink_fast`] does not take.
#[inline(never)]
pub fn uplink_full<B: PacketBuf>(m: &mut B, mut c: Cached<'_>) -> Verdict {
    let s = c.snap;
    let node = &s.node;
    let d = m.data();
    match l3_of(d) {
        Ok(L3::Ipv4) => {}
        Ok(L3::Arp) => return uplink_arp(m, s),
        Err(r) => return Verdict::Drop(r),
    }
    if d[0..6] != node.uplink_mac.0 {
        return Verdict::Drop(R::NotForUs);
    }
    let ip = match ipv4(&d[ethernet::HEADER_LEN..]) {
        Ok(ip) => ip,
        Err(r) => return Verdict::Drop(r),
    };
    if ip.dst() != node.public_ip {
        // A peer that routes to us (host-gw, DirectRouting) sends our pods' packets as they are, to
        // our MAC, as it would to a kernel node's eth0.
        if node.takes_routed() && node.subnet.contains(ip.dst()) {
            if !ip.verify_checksum() {
                return Verdict::Drop(R::IpChecksum);
            }
            return deliver_apart(m, s, ethernet::HEADER_LEN, 0);
        }
        return Verdict::Drop(R::NotForUs);
    }
    if !ip.verify_checksum() {
        return Verdict::Drop(R::IpChecksum);
    }
    if ip.is_fragment() {
        return Verdict::Drop(R::Fragment);
    }
    let not_ours = match node.backend {
        BackendType::Vxlan => R::NotVxlan,
        BackendType::Udp => R::NotUdpEncap,
        // Nothing comes to a host-gw node's own address on this NIC but ARP.
        BackendType::HostGw => return Verdict::Drop(R::NotForUs),
    };
    if ip.protocol() != ipv4::protocol::UDP {
        return Verdict::Drop(not_ours);
    }
    // The outer UDP checksum is deliberately not verified: Linux sends it partial from offloading
    // veths, and RFC 7348 receivers accept zero; the inner packet carries its own checksums.
    let Ok(u) = UdpPacket::new_checked(ip.payload()) else { return Verdict::Drop(R::Truncated) };
    if node.backend == BackendType::Udp {
        if u.dst_port() != node.udp_port {
            return Verdict::Drop(R::NotUdpEncap);
        }
        if !c.known_vtep(ip.src_u32()) {
            return Verdict::Drop(R::UnknownVtep);
        }
        return deliver_apart(m, s, ethernet::HEADER_LEN + ip.header_len() + udp::HEADER_LEN, node.relay_hops());
    }
    if u.dst_port() != node.vxlan_port {
        return Verdict::Drop(R::NotVxlan);
    }
    let Ok(vx) = VxlanPacket::new_checked(u.payload()) else { return Verdict::Drop(R::Truncated) };
    if vx.check_flags().is_err() {
        return Verdict::Drop(R::VxlanFlags);
    }
    if vx.vni() != node.vni {
        return Verdict::Drop(R::WrongVni);
    }
    if !c.known_vtep(ip.src_u32()) {
        return Verdict::Drop(R::UnknownVtep);
    }
    let Ok(inner) = EthernetFrame::new_checked(vx.payload()) else { return Verdict::Drop(R::Truncated) };
    if inner.outer_ethertype() != EtherType::IPV4 {
        return Verdict::Drop(R::InnerNotIpv4);
    }
    if inner.dst() != node.vtep_mac {
        return Verdict::Drop(R::InnerDstMac);
    }
    let outer = ethernet::HEADER_LEN + ip.header_len() + udp::HEADER_LEN + vxlan::HEADER_LEN;
    deliver_apart(m, s, outer + ethernet::HEADER_LEN, 0)
}

/// VXLAN decapsulation of a frame whose headers match `vm` ([`VxlanMatch`]) and whose lengths, outer
/// checksum and sender are right: the verdict of the full path, or None to take it (a frame that
/// differs in any way, good or bad). What it checks besides the match is what the full path checks of
/// such a frame, so both give the same verdict.
#[inline(always)]
fn vxlan_fast<B: PacketBuf>(m: &mut B, vm: &VxlanMatch, mut c: Cached<'_>) -> Option<Verdict> {
    const INNER_IP: usize =
        ethernet::HEADER_LEN + ipv4::HEADER_LEN + udp::HEADER_LEN + vxlan::HEADER_LEN + ethernet::HEADER_LEN;
    // One view of the frame, read and then written: its length, checked here, is the one the writes'
    // bounds checks see (a second view loads it again from the mbuf, after stores the compiler cannot
    // tell apart from it, and checks again).
    let d = m.data_mut();
    let h: &[u8; INNER_IP] = d.get(..INNER_IP)?.try_into().ok()?;
    if !vm.matches(h) {
        return None;
    }
    // The outer packet fits the frame and holds a UDP datagram that holds VXLAN and an inner Ethernet
    // header (the full path's new_checked of each).
    let (total, udp_len) = (usize::from(get_u16(h, 16)), usize::from(get_u16(h, 38)));
    let udp_min = udp::HEADER_LEN + vxlan::HEADER_LEN + ethernet::HEADER_LEN;
    if total > d.len() - ethernet::HEADER_LEN || total < ipv4::HEADER_LEN + udp_min {
        return None;
    }
    if udp_len < udp_min || udp_len > total - ipv4::HEADER_LEN {
        return None;
    }
    let outer: &[u8; ipv4::HEADER_LEN] =
        h[ethernet::HEADER_LEN..ethernet::HEADER_LEN + ipv4::HEADER_LEN].try_into().ok()?;
    if !crate::wire::checksum::valid20(outer) {
        return None;
    }
    if !c.known_vtep(u32::from_be_bytes([h[26], h[27], h[28], h[29]])) {
        return None;
    }
    let ip: &[u8; ipv4::HEADER_LEN] = d.get(INNER_IP..INNER_IP + ipv4::HEADER_LEN)?.try_into().ok()?;
    let inner = inner20(ip, d.len() - INNER_IP)?;
    let rewritten = rewrite_for_pod(d, c.snap, INNER_IP, 0, inner);
    Some(cut(m, INNER_IP, rewritten))
}

/// [`deliver`] for the host-gw, DirectRouting and udp paths and for VXLAN frames off the one-compare
/// path (outer IPv4 options, a VxlanMatch-less snapshot), out of line: [`vxlan_fast`] keeps the one
/// inlined copy, so the other paths do not grow the function every VXLAN frame runs.
#[inline(never)]
fn deliver_apart<B: PacketBuf>(m: &mut B, s: &Snapshot, ip_at: usize, relay: u8) -> Verdict {
    deliver(m, s, ip_at, relay)
}

/// The IPv4 packet at `ip_at` of an uplink frame (decapsulated, or routed to us) is for our subnet:
/// to a weft pod, routed as the kernel routes from flannel.1 / eth0 (TTL - 1, and `relay` more for
/// flanneld's udp relay), or to the host for the rest of our subnet (a cni0 pod, the node's own
/// `<subnet>.0`), whose kernel routes it on and so changes its TTL itself. The frame becomes the
/// packet behind a fresh Ethernet header from the pods' gateway.
#[inline(always)]
fn deliver<B: PacketBuf>(m: &mut B, s: &Snapshot, ip_at: usize, relay: u8) -> Verdict {
    let d = m.data();
    let iip = match ipv4(&d[ip_at..]) {
        Ok(p) => p,
        Err(r) => return Verdict::Drop(r),
    };
    if ip_at != ethernet::HEADER_LEN && !iip.verify_checksum() {
        return Verdict::Drop(R::IpChecksum);
    }
    let inner = Inner { dst: iip.dst_u32(), ttl: iip.ttl(), total: usize::from(iip.total_len()) };
    deliver_parsed(m, s, ip_at, relay, inner)
}

/// What [`deliver_parsed`] needs of the IPv4 header at its `ip_at`, once that header is known to be
/// well formed (and its checksum right where it was not routed to us).
#[derive(Clone, Copy)]
struct Inner {
    dst: u32,
    ttl: u8,
    /// Total length.
    total: usize,
}

/// [`deliver`]'s parse for a decapsulated header without options (version 4, IHL 5, as nearly every
/// packet's) whose checksum is right and whose length fits the frame, from its 20 bytes: the generic
/// parse's version, length and header-length checks in three compares. None for any other header,
/// good or bad: [`deliver`] says what it is.
#[inline(always)]
fn inner20(ip: &[u8; ipv4::HEADER_LEN], room: usize) -> Option<Inner> {
    let total = usize::from(get_u16(ip, 2));
    if ip[0] != 0x45 || total < ipv4::HEADER_LEN || total > room || !crate::wire::checksum::valid20(ip) {
        return None;
    }
    let dst = u32::from_be_bytes([ip[16], ip[17], ip[18], ip[19]]);
    Some(Inner { dst, ttl: ip[ipv4::field::TTL], total })
}

/// Write the TTL less `hops` and its checksum into the IPv4 header at `ip_at` of `buf`, from the `ttl`
/// already read of it, where `ttl` is known to be at least `hops` (no wrap): one slice of the four
/// bytes, where Ipv4Packet::decrement_ttl_by reads both again through a new view and checks the TTL
/// once more. The checksum is updated as it lies in memory (no byte swap in or out). For the fast
/// paths, which have just read and checked that header.
#[inline(always)]
fn ttl_down(buf: &mut [u8], ip_at: usize, ttl: u8, hops: u8) {
    let w = &mut buf[ip_at + ipv4::field::TTL..ip_at + ipv4::field::CHECKSUM.end];
    w[0] = ttl - hops;
    let raw = u16::from_le_bytes([w[2], w[3]]);
    w[2..].copy_from_slice(&crate::wire::checksum::update_ttl_down_le(raw, hops).to_le_bytes());
}

/// [`deliver`] from the parsed header on.
#[inline(always)]
fn deliver_parsed<B: PacketBuf>(m: &mut B, s: &Snapshot, ip_at: usize, relay: u8, iip: Inner) -> Verdict {
    let rewritten = rewrite_for_pod(m.data_mut(), s, ip_at, relay, iip);
    cut(m, ip_at, rewritten)
}

/// [`deliver_parsed`]'s work on the frame's bytes `buf`: the verdict and the padding after the packet,
/// with the TTL and the Ethernet header in front of `ip_at` written; or the drop.
#[inline(always)]
fn rewrite_for_pod(
    buf: &mut [u8],
    s: &Snapshot,
    ip_at: usize,
    relay: u8,
    iip: Inner,
) -> Result<(Verdict, usize), Verdict> {
    let node = &s.node;
    if !node.subnet.contains(Ipv4Addr::from(iip.dst)) {
        return Err(Verdict::Drop(R::NoRoute));
    }
    let (out, mac, hops) = match s.pods.get_packed(iip.dst) {
        Some(pod) => (Verdict::ToPod(pod.port()), pod, relay + 1),
        None => match s.host {
            Some(h) => (Verdict::ToHost(h.port), PackedRoute::new(h.mac, h.port), relay),
            None => return Err(Verdict::Drop(R::NoPod)),
        },
    };
    if hops > 0 && iip.ttl <= hops {
        return Err(Verdict::Drop(R::TtlExpired));
    }
    let padding = buf.len() - (ip_at + iip.total);
    if hops > 0 {
        // The TTL less `hops` (above `hops`, checked) and its checksum, from the header already read.
        ttl_down(buf, ip_at, iip.ttl, hops);
    }
    // The Ethernet header in two stores of eight bytes: the destination MAC (and two bytes that the
    // second store overwrites), then the gateway MAC and the EtherType.
    let eth = &mut buf[ip_at - ethernet::HEADER_LEN..ip_at];
    eth[..8].copy_from_slice(&mac.mac_and_2().to_le_bytes());
    eth[6..].copy_from_slice(&s.gateway_eth.to_le_bytes());
    Ok((out, padding))
}

/// After [`rewrite_for_pod`]: its drop; or the frame cut to the Ethernet header in front of `ip_at` and
/// the packet without its padding, and its verdict (a drop if the frame is shorter, which it is not:
/// the callers read that far).
#[inline(always)]
fn cut<B: PacketBuf>(m: &mut B, ip_at: usize, rewritten: Result<(Verdict, usize), Verdict>) -> Verdict {
    let (out, padding) = match rewritten {
        Ok(r) => r,
        Err(drop) => return drop,
    };
    let eth_at = ip_at - ethernet::HEADER_LEN;
    if (eth_at > 0 && m.adj(eth_at).is_none()) || (padding > 0 && m.trim(padding).is_none()) {
        return Verdict::Drop(R::Truncated);
    }
    out
}

/// Hand a frame to the host: addressed to the host interface, from the pods' gateway. The TTL stays:
/// weft plays the bridge between a pod and the host (as cni0 does) or the tunnel device (as flannel.1
/// does), and the host's kernel decrements when it routes the packet on.
#[inline]
fn to_host<B: PacketBuf>(m: &mut B, node: &Node, h: HostPort) -> Verdict {
    readdress(m, node, h.mac);
    Verdict::ToHost(h.port)
}

/// Address the frame to `mac` from the pods' gateway (switched: nothing else changes).
#[inline(always)]
fn readdress<B: PacketBuf>(m: &mut B, node: &Node, mac: MacAddr) {
    let mut eth = EthernetFrame::new_unchecked(m.data_mut());
    eth.set_dst(mac);
    eth.set_src(node.gateway_mac());
}

/// What an untagged frame carries, as far as weft cares.
enum L3 {
    Ipv4,
    Arp,
}

/// IPv4 or ARP by EtherType, or the reason to drop: too short, 802.1Q tagged, another type.
#[inline(always)]
fn l3_of(d: &[u8]) -> Result<L3, DropReason> {
    if d.len() < ethernet::HEADER_LEN {
        return Err(R::Truncated);
    }
    match get_u16(d, 12) {
        EtherType::IPV4 => Ok(L3::Ipv4),
        EtherType::ARP => Ok(L3::Arp),
        EtherType::VLAN => Err(R::Vlan),
        _ => Err(R::OtherEthertype),
    }
}

/// An IPv4 view, or the reason to drop: too short for what its fields say, or fields out of range.
#[inline(always)]
fn ipv4(b: &[u8]) -> Result<Ipv4Packet<&[u8]>, DropReason> {
    Ipv4Packet::new_checked(b).map_err(|e| match e {
        crate::wire::WireError::Truncated => R::Truncated,
        crate::wire::WireError::Malformed(_) => R::BadIpHeader,
    })
}

fn arp_error(e: crate::wire::WireError) -> DropReason {
    match e {
        crate::wire::WireError::Truncated => R::Truncated,
        crate::wire::WireError::Malformed(_) => R::BadArp,
    }
}

#[cold]
fn uplink_arp<B: PacketBuf>(m: &mut B, s: &Snapshot) -> Verdict {
    let node = &s.node;
    let a = match ArpPacket::new_checked(&m.data()[ethernet::HEADER_LEN..]) {
        Ok(a) => a,
        Err(e) => return Verdict::Drop(arp_error(e)),
    };
    if a.target_ip() != node.public_ip {
        return Verdict::Drop(R::ArpIgnored);
    }
    match a.operation() {
        arp::OP_REPLY => Verdict::Learn { ip: a.sender_ip(), mac: a.sender_mac() },
        arp::OP_REQUEST => {
            let Ok(asked) = ArpRepr::parse(&a) else { return Verdict::Drop(R::BadArp) };
            arp_reply_in_place(m, &ArpRepr::reply_to(&asked, node.public_ip, node.uplink_mac));
            Verdict::Reply
        }
        _ => Verdict::Drop(R::ArpIgnored),
    }
}

/// Turn the ARP request in `m` into `reply`, addressed from its sender to its target.
fn arp_reply_in_place<B: PacketBuf>(m: &mut B, reply: &ArpRepr) {
    let buf = m.data_mut();
    EthernetRepr { dst: reply.target_mac, src: reply.sender_mac, vlan_tci: None, ethertype: EtherType::ARP }
        .emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
    reply.emit(&mut ArpPacket::new_unchecked(&mut buf[ethernet::HEADER_LEN..]));
}

/// Pod RX: to a pod on this node, encapsulated to a remote node, or answered (ARP, too big).
/// `ident` is the outer IPv4 identification to use if the frame is encapsulated.
#[inline]
pub fn process_pod<B: PacketBuf>(m: &mut B, s: &Snapshot, in_port: PortId, ident: u16) -> Verdict {
    process_pod_cached(m, in_port, ident, s.cached(&mut PathCache::default()))
}

/// As [`process_pod`], with a worker's caches in front of the tables: the fast path, inlined, every
/// other frame going on to [`pod_full`] out of line. The worker inlines it into a loop over the burst of
/// its own ([`crate::worker`]'s `forward_pod`): as a call per frame it saved and restored six registers
/// and returned its verdict through memory (17 instructions a packet under callgrind), and inlined into
/// the worker's main loop it cost 8 more than that call.
#[inline(always)]
pub fn process_pod_cached<B: PacketBuf>(m: &mut B, in_port: PortId, ident: u16, mut c: Cached<'_>) -> Verdict {
    if let Some(v) = pod_fast(m, in_port, ident, c.reborrow()) {
        return v;
    }
    pod_full(m, in_port, ident, c)
}

/// The pod's fast path alone, as [`uplink_fast`] is the uplink's: None for a frame [`pod_full`] takes.
#[inline(always)]
pub fn pod_fast<B: PacketBuf>(m: &mut B, in_port: PortId, ident: u16, c: Cached<'_>) -> Option<Verdict> {
    c.snap.encap_match.as_ref().and_then(|em| encap_fast(m, em, in_port, ident, c))
}

/// The pod's full path: every frame [`pod_fast`] does not take.
#[inline(never)]
pub fn pod_full<B: PacketBuf>(m: &mut B, in_port: PortId, ident: u16, c: Cached<'_>) -> Verdict {
    let s = c.snap;
    let node = &s.node;
    let d = m.data();
    match l3_of(d) {
        Ok(L3::Ipv4) => {}
        Ok(L3::Arp) => return pod_arp(m, s, in_port),
        Err(r) => return Verdict::Drop(r),
    }
    let ip = match ipv4(&d[ethernet::HEADER_LEN..]) {
        Ok(ip) => ip,
        Err(r) => return Verdict::Drop(r),
    };
    match s.pods.get(&ip.src_u32()) {
        Some(p) if p.port == in_port && d[6..12] == p.mac.0 => {}
        _ => return Verdict::Drop(R::SpoofedSource),
    }
    if !ip.verify_checksum() {
        return Verdict::Drop(R::IpChecksum);
    }
    let dst = ip.dst_u32();
    let total = ip.total_len() as usize;
    let padding = d.len() - ethernet::HEADER_LEN - total;
    if node.subnet.contains(ip.dst()) {
        // Same node: the kernel's cni0 bridge switches this without routing, so the TTL stays. An
        // address of our subnet that no weft pod has is the host's (its gateway address, a cni0 pod).
        let Some(pod) = s.pods.get(&dst) else {
            return match s.host {
                Some(h) => to_host(m, node, h),
                None => Verdict::Drop(R::NoPod),
            };
        };
        let (port, mac) = (pod.port, pod.mac);
        readdress(m, node, mac);
        return Verdict::ToPod(port);
    }
    if !node.network.contains(ip.dst()) {
        // The node itself, a Service, the world: the host's kernel routes it (and masquerades it).
        return match s.host {
            Some(h) => to_host(m, node, h),
            None => Verdict::Drop(R::NotOverlay),
        };
    }
    let (ttl, dont_frag) = (ip.ttl(), ip.dont_frag());
    // weft routes it into the tunnel as the kernel routes into flannel.1 / eth0 (TTL - 1); flanneld's
    // udp relay takes one more.
    let hops = 1 + node.relay_hops();
    to_remote(m, Remote { dst, total, padding, dont_frag, ident, ttl, hops }, c)
}

/// VXLAN encapsulation of a pod's plain IPv4 packet to a remote node's pod: the verdict of the full path,
/// or None to take it. Taken by a frame that is exactly its IPv4 packet (no padding), with a 20-byte
/// header whose checksum is right, from the pod that holds its source address and MAC on `in_port`, to
/// a remote subnet whose node's VXLAN path is resolved, with a TTL above 1 and a length within the pod
/// MTU. Everything else (ARP, the host, our own subnet, options, padding, too big, drops) takes the full
/// path, which says why; for the frames this takes, the full path checks the same and encapsulates the
/// same way.
#[inline(always)]
fn encap_fast<B: PacketBuf>(
    m: &mut B,
    em: &EncapMatch,
    in_port: PortId,
    ident: u16,
    mut c: Cached<'_>,
) -> Option<Verdict> {
    const IP_END: usize = ethernet::HEADER_LEN + ipv4::HEADER_LEN;
    let d = m.data();
    let h: &[u8; IP_END] = d.get(..IP_END)?.try_into().ok()?;
    // IPv4, version 4 and IHL 5; total length the rest of the frame and within the pod MTU.
    if get_u16(h, 12) != EtherType::IPV4 || h[14] != 0x45 {
        return None;
    }
    let total = usize::from(get_u16(h, 16));
    if total != d.len() - ethernet::HEADER_LEN || total > usize::from(em.pod_mtu) || h[22] <= 1 {
        return None;
    }
    let dst = u32::from_be_bytes([h[30], h[31], h[32], h[33]]);
    // The peer's route; only a remote pod's address has one (the snapshot holds no route to our own
    // subnet or outside the network), so this is also the test that `dst` is one.
    let vtep = c.lookup_vtep(dst)?;
    let src = u32::from_be_bytes([h[26], h[27], h[28], h[29]]);
    // The source MAC and the EtherType after it, one load.
    let mac_and_2: &[u8; 8] = h[6..14].try_into().ok()?;
    if !c.snap.pods.is_source(src, in_port, mac_and_2) {
        return None;
    }
    let ip: &[u8; ipv4::HEADER_LEN] = h[ethernet::HEADER_LEN..].try_into().ok()?;
    if !crate::wire::checksum::valid20(ip) {
        return None;
    }
    match &vtep.path {
        PeerPath::Vxlan(t) => {
            let Some(()) = m.prepend(OUTER_LEN) else { return Some(Verdict::Drop(R::NoHeadroom)) };
            let f = m.data_mut();
            // The inner header read again where it now lies for the flow hash and the TTL, rather than
            // kept from the checks above across the route lookup and the prepend: the worker's loop is
            // short of registers, and keeping them cost a store and a load each. The 20-byte header is
            // known, so is the ports' offset.
            const IN_IP: usize = OUTER_LEN + ethernet::HEADER_LEN;
            let ip = &f[IN_IP..IN_IP + ipv4::HEADER_LEN];
            let (proto, frag_at) = (ip[ipv4::field::PROTOCOL], ipv4::field::FLAGS_FRAG.start);
            let ports = flow_ports([ip[frag_at], ip[frag_at + 1]], proto, f.get(IN_IP + ipv4::HEADER_LEN..));
            // Source and destination, one load.
            let addrs = get_u64(ip, ipv4::field::SRC.start);
            let sport = flow_hash_port((addrs >> 32) as u32, addrs as u32, proto, ports);
            // The inner TTL - 1 (above 1, checked) and its checksum. Before the template: its bounds check
            // (the frame reaches the inner checksum) covers the template's.
            ttl_down(f, IN_IP, ip[ipv4::field::TTL], 1);
            t.write(f, ident, sport);
            Some(Verdict::ToUplink)
        }
        _ => None,
    }
}

/// A packet for a remote subnet, as its IPv4 header described it.
#[derive(Clone, Copy)]
struct Remote {
    dst: u32,
    total: usize,
    padding: usize,
    dont_frag: bool,
    /// Outer IPv4 identification.
    ident: u16,
    /// The packet's TTL, and the hops this node takes off it: 1 where weft routes it, 0 where the host's
    /// kernel already did, and one more through flanneld's udp relay.
    ttl: u8,
    hops: u8,
}

/// To the node that leases the destination: encapsulated, or routed straight to it (host-gw,
/// DirectRouting); or answered with fragmentation-needed when it does not fit the pod MTU and may not
/// be fragmented; or dropped.
#[inline(always)]
fn to_remote<B: PacketBuf>(m: &mut B, r: Remote, mut c: Cached<'_>) -> Verdict {
    let s = c.snap;
    if r.hops > 0 && r.ttl <= r.hops {
        return Verdict::Drop(R::TtlExpired);
    }
    let Some(vtep) = c.lookup_vtep(r.dst) else { return Verdict::Drop(R::NoRoute) };
    if r.total > s.node.pod_mtu() as usize {
        return if r.dont_frag { frag_needed_in_place(m, s) } else { Verdict::Drop(R::TooBig) };
    }
    let path = &vtep.path;
    if !path.is_resolved() {
        return Verdict::Drop(if matches!(path, PeerPath::OffLink) { R::PeerOffLink } else { R::NeighbourUnresolved });
    }
    if r.padding > 0 && m.trim(r.padding).is_none() {
        return Verdict::Drop(R::Truncated);
    }
    match path {
        PeerPath::Vxlan(t) => encap(m, t, r.ident, r.hops),
        PeerPath::Direct(macs) => route_out(m, macs, r.hops),
        PeerPath::Udp(t) => udp_encap(m, t, r.ident, r.hops),
        PeerPath::Unresolved | PeerPath::OffLink => Verdict::Drop(R::NeighbourUnresolved),
    }
}

/// Host port RX: what the host's kernel routed into weft0 (from its own stack or from cni0's pods) ->
/// encapsulated to the node that leases the destination, or to a weft pod; the host's ARP for the
/// cluster network -> answered.
#[inline]
pub fn process_host<B: PacketBuf>(m: &mut B, s: &Snapshot, ident: u16) -> Verdict {
    process_host_cached(m, ident, s.cached(&mut PathCache::default()))
}

/// As [`process_host`], with a worker's caches in front of the tables.
#[inline]
pub fn process_host_cached<B: PacketBuf>(m: &mut B, ident: u16, c: Cached<'_>) -> Verdict {
    let s = c.snap;
    let node = &s.node;
    let d = m.data();
    match l3_of(d) {
        Ok(L3::Ipv4) => {}
        Ok(L3::Arp) => return host_arp(m, s),
        Err(r) => return Verdict::Drop(r),
    }
    let ip = match ipv4(&d[ethernet::HEADER_LEN..]) {
        Ok(ip) => ip,
        Err(r) => return Verdict::Drop(r),
    };
    if !ip.verify_checksum() {
        return Verdict::Drop(R::IpChecksum);
    }
    let dst = ip.dst_u32();
    let total = ip.total_len() as usize;
    let padding = d.len() - ethernet::HEADER_LEN - total;
    if node.subnet.contains(ip.dst()) {
        // The host to a weft pod (a probe, a Service's backend): switched, as cni0 would.
        let Some(pod) = s.pods.get(&dst) else { return Verdict::Drop(R::NoPod) };
        let (port, mac) = (pod.port, pod.mac);
        readdress(m, node, mac);
        return Verdict::ToPod(port);
    }
    if !node.network.contains(ip.dst()) {
        return Verdict::Drop(R::NotOverlay);
    }
    // The kernel routed it into weft0 already (and decremented the TTL if it forwarded it), as it
    // routes into flannel.1, which encapsulates without touching the inner packet (flanneld's udp
    // relay does take one off).
    let (ttl, dont_frag) = (ip.ttl(), ip.dont_frag());
    let hops = node.relay_hops();
    to_remote(m, Remote { dst, total, padding, dont_frag, ident, ttl, hops }, c)
}

/// The host's ARP for an address it routes through weft0 (the cluster network): weft is the next hop.
/// Not for the host's own overlay address (`<subnet>.0`, duplicate address detection sees silence).
#[cold]
fn host_arp<B: PacketBuf>(m: &mut B, s: &Snapshot) -> Verdict {
    let node = &s.node;
    let a = match ArpPacket::new_checked(&m.data()[ethernet::HEADER_LEN..]) {
        Ok(a) => a,
        Err(e) => return Verdict::Drop(arp_error(e)),
    };
    let Ok(asked) = ArpRepr::parse(&a) else { return Verdict::Drop(R::BadArp) };
    let tpa = asked.target_ip;
    if asked.operation != arp::OP_REQUEST || !node.network.contains(tpa) || tpa == node.subnet.addr() {
        return Verdict::Drop(R::ArpIgnored);
    }
    arp_reply_in_place(m, &ArpRepr::reply_to(&asked, tpa, node.gateway_mac()));
    Verdict::Reply
}

/// Take `hops` off the TTL of the IPv4 packet behind the frame's Ethernet header; the packet is
/// returned for what else the caller reads of it (each view of an mbuf's data is a few loads and a
/// bounds check).
#[inline(always)]
fn route_hops<B: PacketBuf>(m: &mut B, hops: u8) -> &mut [u8] {
    let ip = &mut m.data_mut()[ethernet::HEADER_LEN..];
    if hops > 0 {
        Ipv4Packet::new_unchecked(&mut *ip).decrement_ttl_by(hops);
    }
    ip
}

/// Prepend the outer headers from the template and patch the per-packet fields. The inner IPv4 header
/// follows the pod's 14-byte Ethernet header, which the template's inner Ethernet header overwrites.
/// `hops`: 1 when weft routes the packet into the tunnel (from a pod, as the kernel routes into
/// flannel.1: TTL - 1); 0 when the host's kernel already did.
#[inline(always)]
fn encap<B: PacketBuf>(m: &mut B, t: &EncapTemplate, ident: u16, hops: u8) -> Verdict {
    let sport = flow_src_port(route_hops(m, hops));
    let Some(()) = m.prepend(OUTER_LEN) else { return Verdict::Drop(R::NoHeadroom) };
    t.write(m.data_mut(), ident, sport);
    Verdict::ToUplink
}

/// flanneld's udp encapsulation: outer IPv4 and UDP in front of the packet, whose Ethernet header the
/// outer one replaces. Out of line (its checksum loop would otherwise sit in every pod path).
#[inline(never)]
fn udp_encap<B: PacketBuf>(m: &mut B, t: &UdpTemplate, ident: u16, hops: u8) -> Verdict {
    route_hops(m, hops);
    let Some(()) = m.prepend(UDP_OVERHEAD) else { return Verdict::Drop(R::NoHeadroom) };
    t.write(m.data_mut(), ident);
    Verdict::ToUplink
}

/// host-gw (and DirectRouting): routed to the peer's uplink as it is, from ours.
#[inline(always)]
fn route_out<B: PacketBuf>(m: &mut B, macs: &[u8; 12], hops: u8) -> Verdict {
    route_hops(m, hops);
    m.data_mut()[..12].copy_from_slice(macs);
    Verdict::ToUplink
}

#[cold]
fn pod_arp<B: PacketBuf>(m: &mut B, s: &Snapshot, in_port: PortId) -> Verdict {
    let node = &s.node;
    let a = match ArpPacket::new_checked(&m.data()[ethernet::HEADER_LEN..]) {
        Ok(a) => a,
        Err(e) => return Verdict::Drop(arp_error(e)),
    };
    let Ok(asked) = ArpRepr::parse(&a) else { return Verdict::Drop(R::BadArp) };
    let (sha, spa, tpa) = (asked.sender_mac, asked.sender_ip, asked.target_ip);
    // Proxy ARP for the whole subnet: the gateway, and other pods (which weft switches at L3). Not for
    // the asker's own address (duplicate address detection must see silence), and only from a known pod.
    let known = matches!(s.pods.get(&u32::from(spa)), Some(p) if p.port == in_port && p.mac == sha);
    if asked.operation != arp::OP_REQUEST || !known || !node.subnet.contains(tpa) || tpa == spa {
        return Verdict::Drop(R::ArpIgnored);
    }
    arp_reply_in_place(m, &ArpRepr::reply_to(&asked, tpa, node.gateway_mac()));
    Verdict::Reply
}

/// Rewrite a too-big DF packet from a pod into ICMP destination unreachable / fragmentation needed with
/// the pod MTU, from the gateway back to the pod, as the kernel does for a packet over flannel.1's MTU.
#[cold]
fn frag_needed_in_place<B: PacketBuf>(m: &mut B, s: &Snapshot) -> Verdict {
    let node = &s.node;
    let (src_mac, pod_ip, hl) = {
        let d = m.data();
        let ip = Ipv4Packet::new_unchecked(&d[ethernet::HEADER_LEN..]);
        (MacAddr([d[6], d[7], d[8], d[9], d[10], d[11]]), ip.src(), ip.header_len())
    };
    // The ICMP data: the original header and the first 8 bytes of its payload.
    let quoted = hl + 8;
    let icmp_at = ethernet::HEADER_LEN + ipv4::HEADER_LEN;
    let data_at = icmp_at + icmpv4::HEADER_LEN;
    let new_len = data_at + quoted;
    let len = m.data().len();
    if len < ethernet::HEADER_LEN + quoted
        || m.trim(len.saturating_sub(new_len.max(ethernet::HEADER_LEN + quoted))).is_none()
    {
        return Verdict::Drop(R::Truncated);
    }
    let buf = m.data_mut();
    buf.copy_within(ethernet::HEADER_LEN..ethernet::HEADER_LEN + quoted, data_at);
    EthernetRepr { dst: src_mac, src: node.gateway_mac(), vlan_tci: None, ethertype: EtherType::IPV4 }
        .emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
    Icmpv4Repr::FragNeeded { mtu: node.pod_mtu() }.emit(&mut Icmpv4Packet::new_unchecked(&mut buf[icmp_at..new_len]));
    Ipv4Repr {
        src: node.gateway_ip(),
        dst: pod_ip,
        protocol: ipv4::protocol::ICMP,
        payload_len: new_len - icmp_at,
        ttl: 64,
        dscp_ecn: 0,
        ident: 0,
        dont_frag: false,
    }
    .emit(&mut Ipv4Packet::new_unchecked(&mut buf[ethernet::HEADER_LEN..]));
    let extra = buf.len() - new_len;
    if extra > 0 && m.trim(extra).is_none() {
        return Verdict::Drop(R::Truncated);
    }
    Verdict::Reply
}

/// A broadcast ARP request from our uplink asking for `target` (the slow path's neighbour resolution),
/// padded to the Ethernet minimum.
pub fn arp_request(uplink_mac: MacAddr, public_ip: Ipv4Addr, target: Ipv4Addr) -> [u8; 60] {
    let mut b = [0u8; 60];
    EthernetRepr { dst: MacAddr::BROADCAST, src: uplink_mac, vlan_tci: None, ethertype: EtherType::ARP }
        .emit(&mut EthernetFrame::new_unchecked(&mut b[..]));
    ArpRepr::request(uplink_mac, public_ip, target).emit(&mut ArpPacket::new_unchecked(&mut b[ethernet::HEADER_LEN..]));
    b
}

#[cfg(test)]
mod tests;
