//! Frames for the forwarding benchmarks, built with weft's own wire views: VXLAN frames from remote
//! VTEPs to this node's pods (decap) and pod frames to remote subnets (encap), over many flows.

use std::net::Ipv4Addr;

use dataplane::tables::{tunnel, EncapTemplate, Node, Peer, TableInputs, UdpTemplate, OUTER_LEN, UDP_OVERHEAD};
use dataplane::wire::{ipv4, EthernetFrame, Ipv4Packet, UdpPacket, Vni};
use weft_config::BackendType;
use weft_config::{Ipv4Net, MacAddr};

pub const POD_PORT_MAC: MacAddr = MacAddr([0x02, 0xbe, 0, 0, 0, 0x01]);
pub const UPLINK_MAC: MacAddr = MacAddr([0x02, 0xbe, 0, 0, 0, 0xaa]);
pub const NEXT_HOP_MAC: MacAddr = MacAddr([0x02, 0xbe, 0, 0, 0, 0xbb]);

/// The benchmark node: 10.0.0.0/8 network with /26 subnets (room for 262k peers, so the 100k-peer tables
/// fit), our subnet 10.0.0.0/26.
pub fn node() -> Node {
    Node {
        network: "10.0.0.0/8".parse().unwrap_or_else(|_| unreachable!()),
        subnet: "10.0.0.0/26".parse().unwrap_or_else(|_| unreachable!()),
        subnet_len: SUBNET_LEN,
        public_ip: Ipv4Addr::new(172, 16, 0, 1),
        uplink_mac: UPLINK_MAC,
        vtep_mac: MacAddr([0x02, 0xbe, 0, 0, 0, 0xee]),
        vni: Vni::new(1).unwrap_or_else(|| unreachable!()),
        vxlan_port: 8472,
        backend: weft_config::BackendType::Vxlan,
        direct_routing: false,
        udp_port: 8285,
        // An underlay with room for full 1518-byte pod frames plus the 50-byte VXLAN overhead, as a
        // datacenter underlay with jumbo frames has; pod MTU 1550.
        underlay_mtu: 1600,
        underlay_net: "172.16.0.0/12".parse().unwrap_or_else(|_| unreachable!()),
        underlay_gateway: None,
    }
}

pub const SUBNET_LEN: u8 = 26;

/// Peer i: the (i+1)th /26 of 10.0.0.0/8, PublicIP 172.16.0.2 + i.
pub fn peer(i: u32) -> Peer {
    let n = i + 1;
    Peer {
        subnet: Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 | (n << (32 - SUBNET_LEN))), SUBNET_LEN)
            .unwrap_or_else(|| unreachable!()),
        public_ip: Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 16, 0, 2)) + i),
        vtep_mac: MacAddr([0x02, 0xcc, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8]),
    }
}

pub const PODS: u8 = 4;

/// Tables with `peers` remote VTEPs (all resolved) and PODS pods on `pod_port`.
pub fn inputs(peers: u32, pod_port: u16) -> TableInputs {
    let node = node();
    TableInputs {
        peers: (0..peers).map(peer).collect(),
        pods: (0..PODS)
            .map(|i| dataplane::tables::PodEntry {
                name: format!("p{i}"),
                ip: Ipv4Addr::new(10, 0, 0, 2 + i),
                mac: MacAddr([0x02, 0xbe, 0, 0, 1, i]),
                port: dataplane::dpdk::PortId(pod_port),
            })
            .collect(),
        neighbours: (0..peers).map(|i| (peer(i).public_ip, NEXT_HOP_MAC)).collect(),
        host: None,
        node,
    }
}

/// The backend a benchmark runs, as its command lines name it (`--backend vxlan|host-gw|udp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    Vxlan,
    HostGw,
    Udp,
}

impl Backend {
    pub fn config(self) -> BackendType {
        match self {
            Backend::Vxlan => BackendType::Vxlan,
            Backend::HostGw => BackendType::HostGw,
            Backend::Udp => BackendType::Udp,
        }
    }
}

/// The tables of a node of `backend` (the same node, peers and pods as [`inputs`]).
pub fn inputs_for(backend: BackendType, peers: u32, pod_port: u16) -> TableInputs {
    let mut t = inputs(peers, pod_port);
    t.node.backend = backend;
    t
}

/// What the peers send to our pods under `backend`: VXLAN frames ([`decap_frames`]); for host-gw the
/// inner packet routed by the peer (TTL 63) from its uplink to ours; for udp the inner packet in a
/// datagram from the peer's PublicIP:8285 to ours, as flanneld's relay sends it.
pub fn decap_frames_for(backend: BackendType, peers: u32, flows: u32, inner_len: usize) -> Vec<Vec<u8>> {
    if backend == BackendType::Vxlan {
        return decap_frames(peers, flows, inner_len);
    }
    let me = node();
    (0..flows)
        .map(|i| {
            let p = peer(i % peers.max(1));
            let pod = (i % PODS as u32) as u8;
            let src = Ipv4Addr::from(p.subnet.addr_u32() + 2);
            let mut inner = udp_frame(
                NEXT_HOP_MAC,
                me.uplink_mac,
                src,
                Ipv4Addr::new(10, 0, 0, 2 + pod),
                10_000 + i as u16,
                inner_len,
            );
            let mut ip = Ipv4Packet::new_unchecked(&mut inner[14..]);
            ip.set_ttl(63);
            ip.fill_checksum();
            if backend == BackendType::HostGw {
                return inner;
            }
            let t = UdpTemplate::build(NEXT_HOP_MAC, me.uplink_mac, p.public_ip, me.public_ip, me.udp_port);
            let mut f = vec![0u8; UDP_OVERHEAD];
            f.extend_from_slice(&inner);
            t.write(&mut f, 0);
            f
        })
        .collect()
}

/// Where the stamp sits in a decap frame of `backend`.
pub fn stamp_at_decap(backend: BackendType) -> usize {
    match backend {
        BackendType::Vxlan => STAMP_AT_VXLAN,
        BackendType::HostGw => STAMP_AT_POD,
        BackendType::Udp => STAMP_AT_UDP,
    }
}

/// An Ethernet + IPv4 + UDP frame of `frame_len` bytes (>= 42).
fn udp_frame(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    frame_len: usize,
) -> Vec<u8> {
    let mut f = vec![0u8; frame_len.max(42)];
    {
        let mut e = EthernetFrame::new_unchecked(&mut f[..]);
        e.set_dst(dst_mac);
        e.set_src(src_mac);
        e.set_ethertype(0x0800);
    }
    let ip_len = f.len() - 14;
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
        ip.set_version_and_header_len(20);
        ip.set_total_len(ip_len as u16);
        ip.set_ident(0);
        ip.set_dont_frag(true);
        ip.set_ttl(64);
        ip.set_protocol(ipv4::protocol::UDP);
        ip.set_src(src);
        ip.set_dst(dst);
        ip.fill_checksum();
    }
    let mut u = UdpPacket::new_unchecked(&mut f[34..]);
    u.set_src_port(sport);
    u.set_dst_port(5001);
    u.set_len((ip_len - 20) as u16);
    u.set_checksum(0);
    f
}

/// Pod frames (`frame_len` bytes) from the pods to `flows` destinations spread over the peers' subnets.
pub fn encap_frames(peers: u32, flows: u32, frame_len: usize) -> Vec<Vec<u8>> {
    (0..flows)
        .map(|i| {
            let pod = (i % PODS as u32) as u8;
            let p = peer(i % peers.max(1));
            let dst = Ipv4Addr::from(p.subnet.addr_u32() + 2 + (i / peers.max(1)) % 60);
            udp_frame(
                MacAddr([0x02, 0xbe, 0, 0, 1, pod]),
                node().vtep_mac,
                Ipv4Addr::new(10, 0, 0, 2 + pod),
                dst,
                10_000 + i as u16,
                frame_len,
            )
        })
        .collect()
}

/// VXLAN frames from the peers to our pods, `flows` inner flows, inner frames of `inner_len` bytes.
pub fn decap_frames(peers: u32, flows: u32, inner_len: usize) -> Vec<Vec<u8>> {
    let me = node();
    (0..flows)
        .map(|i| {
            let p = peer(i % peers.max(1));
            let pod = (i % PODS as u32) as u8;
            let inner = udp_frame(
                p.vtep_mac,
                me.vtep_mac,
                Ipv4Addr::from(p.subnet.addr_u32() + 2),
                Ipv4Addr::new(10, 0, 0, 2 + pod),
                10_000 + i as u16,
                inner_len,
            );
            // The peer's view: it is the node, we are its peer.
            let them = Node {
                public_ip: p.public_ip,
                uplink_mac: NEXT_HOP_MAC,
                vtep_mac: p.vtep_mac,
                subnet: p.subnet,
                ..node()
            };
            let us = Peer { subnet: me.subnet, public_ip: me.public_ip, vtep_mac: me.vtep_mac };
            let t = EncapTemplate::build(&tunnel(&them, &us, me.uplink_mac));
            let mut f = vec![0u8; OUTER_LEN];
            f.extend_from_slice(&inner);
            // The peer's frame as it would write it: ident 0, a source port per flow.
            t.write(&mut f, 0, 32768 + (i % 28000) as u16);
            f
        })
        .collect()
}

/// The generator's stamp in the UDP payload of the frame a pod sees: magic, sequence number and the
/// sender's TSC, so the receiver measures loss, reordering and latency. UDP checksums are zero, so
/// writing it needs no checksum update.
pub const STAMP_MAGIC: [u8; 4] = *b"wft1";
pub const STAMP_LEN: usize = 20;
/// Where the stamp sits in a pod frame (Ethernet 14 + IPv4 20 + UDP 8) ...
pub const STAMP_AT_POD: usize = 42;
/// ... and in a VXLAN frame (the 50-byte outer headers in front).
pub const STAMP_AT_VXLAN: usize = OUTER_LEN + STAMP_AT_POD;
/// ... and in a udp-backend datagram (28 bytes of outer IPv4 and UDP in front). Writing the stamp there
/// leaves the outer UDP checksum stale; weft does not verify it (the inner packet has its own).
pub const STAMP_AT_UDP: usize = UDP_OVERHEAD + STAMP_AT_POD;
/// The smallest frame that carries a stamp.
pub const MIN_STAMPED_LEN: usize = STAMP_AT_POD + STAMP_LEN;

/// Write the stamp at `at`; false when the frame is too short.
#[inline]
pub fn write_stamp(frame: &mut [u8], at: usize, seq: u64, tsc: u64) -> bool {
    let Some(s) = frame.get_mut(at..at + STAMP_LEN) else { return false };
    s[..4].copy_from_slice(&STAMP_MAGIC);
    s[4..12].copy_from_slice(&seq.to_le_bytes());
    s[12..20].copy_from_slice(&tsc.to_le_bytes());
    true
}

/// Find the stamp of a frame that may be a pod frame or a VXLAN frame: (sequence, TSC).
#[inline]
pub fn read_stamp(frame: &[u8]) -> Option<(u64, u64)> {
    [STAMP_AT_POD, STAMP_AT_VXLAN, STAMP_AT_UDP].into_iter().find_map(|at| {
        let s = frame.get(at..at + STAMP_LEN)?;
        (s[..4] == STAMP_MAGIC).then(|| {
            let mut seq = [0u8; 8];
            let mut tsc = [0u8; 8];
            seq.copy_from_slice(&s[4..12]);
            tsc.copy_from_slice(&s[12..20]);
            (u64::from_le_bytes(seq), u64::from_le_bytes(tsc))
        })
    })
}

#[cfg(test)]
mod tests {
    use dataplane::dpdk::PortId;
    use dataplane::packet::{process_pod, process_uplink, PacketBuf, VecBuf, Verdict};

    use super::*;

    fn buf(f: &[u8]) -> VecBuf {
        VecBuf::new(f)
    }

    /// The generated traffic is what weft forwards: every frame passes, none is dropped.
    #[test]
    fn generated_frames_are_forwarded() {
        let s = inputs(10, 5).build(1);
        for f in decap_frames(10, 64, 64) {
            assert!(matches!(process_uplink(&mut buf(&f), &s), Verdict::ToPod(PortId(5))));
        }
        for f in encap_frames(10, 64, 64) {
            assert_eq!(process_pod(&mut buf(&f), &s, PortId(5), 1), Verdict::ToUplink);
        }
    }

    /// A stamp survives weft's decap (it moves from behind the outer headers to the pod frame) and encap.
    #[test]
    fn stamps_survive_decap_and_encap() {
        let s = inputs(10, 5).build(1);
        let mut d = decap_frames(10, 1, 64).remove(0);
        assert!(write_stamp(&mut d, STAMP_AT_VXLAN, 7, 99));
        let mut b = buf(&d);
        assert!(matches!(process_uplink(&mut b, &s), Verdict::ToPod(PortId(5))));
        assert_eq!(read_stamp(b.data()), Some((7, 99)));
        let mut e = encap_frames(10, 1, 64).remove(0);
        assert!(write_stamp(&mut e, STAMP_AT_POD, 8, 100));
        let mut b = buf(&e);
        assert_eq!(process_pod(&mut b, &s, PortId(5), 1), Verdict::ToUplink);
        assert_eq!(read_stamp(b.data()), Some((8, 100)));
        assert!(!write_stamp(&mut [0u8; 61], STAMP_AT_POD, 1, 1));
        assert_eq!(read_stamp(&[0u8; 200]), None);
    }

    /// The host-gw and udp frames go through weft's paths, stamps and all, both ways.
    #[test]
    fn host_gw_and_udp_frames_are_forwarded() {
        for backend in [BackendType::HostGw, BackendType::Udp] {
            let s = inputs_for(backend, 10, 5).build(1);
            for (i, mut d) in decap_frames_for(backend, 10, 8, 64).into_iter().enumerate() {
                assert!(write_stamp(&mut d, stamp_at_decap(backend), i as u64, 5));
                let mut b = buf(&d);
                assert!(matches!(process_uplink(&mut b, &s), Verdict::ToPod(PortId(5))), "{backend} {i}");
                assert_eq!(read_stamp(b.data()), Some((i as u64, 5)));
            }
            for mut e in encap_frames(10, 8, 64) {
                assert!(write_stamp(&mut e, STAMP_AT_POD, 3, 4));
                let mut b = buf(&e);
                assert_eq!(process_pod(&mut b, &s, PortId(5), 1), Verdict::ToUplink, "{backend}");
                assert_eq!(read_stamp(b.data()), Some((3, 4)));
            }
        }
    }

    /// 100k peers fit the benchmark network, each with its own subnet.
    #[test]
    fn large_tables_have_distinct_subnets() {
        let a = peer(0).subnet;
        let z = peer(99_999).subnet;
        assert_ne!(a, z);
        assert!(node().network.contains(z.addr()));
        assert!(!node().subnet.contains(a.addr()));
    }
}
