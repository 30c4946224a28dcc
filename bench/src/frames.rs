//! Frames for the forwarding benchmarks, built with weft's own wire views: VXLAN frames from remote
//! VTEPs to this node's pods (decap) and pod frames to remote subnets (encap), over many flows.

use std::net::Ipv4Addr;

use dataplane::tables::{EncapTemplate, Node, Peer, TableInputs, OUTER_LEN, TEMPLATE_LEN};
use dataplane::wire::{ipv4, EthernetFrame, Ipv4Packet, UdpPacket, Vni};
use weft_config::{Ipv4Net, MacAddr};

pub const POD_PORT_MAC: MacAddr = MacAddr([0x02, 0xbe, 0, 0, 0, 0x01]);
pub const UPLINK_MAC: MacAddr = MacAddr([0x02, 0xbe, 0, 0, 0, 0xaa]);
pub const NEXT_HOP_MAC: MacAddr = MacAddr([0x02, 0xbe, 0, 0, 0, 0xbb]);

/// The benchmark node: 10.0.0.0/8 network with /24 subnets (room for 65k peers), our subnet 10.0.0.0/24.
pub fn node() -> Node {
    Node {
        network: "10.0.0.0/8".parse().unwrap_or_else(|_| unreachable!()),
        subnet: "10.0.0.0/24".parse().unwrap_or_else(|_| unreachable!()),
        subnet_len: 24,
        public_ip: Ipv4Addr::new(172, 16, 0, 1),
        uplink_mac: UPLINK_MAC,
        vtep_mac: MacAddr([0x02, 0xbe, 0, 0, 0, 0xee]),
        vni: Vni::new(1).unwrap_or_else(|| unreachable!()),
        vxlan_port: 8472,
        underlay_mtu: 1500,
        underlay_net: "172.16.0.0/12".parse().unwrap_or_else(|_| unreachable!()),
        underlay_gateway: None,
    }
}

/// Peer i: subnet 10.(i+1 >> 8).(i+1 & 255).0/24, PublicIP 172.16.x.y.
pub fn peer(i: u32) -> Peer {
    let n = i + 1;
    Peer {
        subnet: Ipv4Net::new(Ipv4Addr::new(10, (n >> 8) as u8, n as u8, 0), 24).unwrap_or_else(|| unreachable!()),
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
        node,
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
            let dst = Ipv4Addr::from(p.subnet.addr_u32() + 2 + (i / peers.max(1)) % 200);
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
            let t = EncapTemplate::build(&them, &us, me.uplink_mac);
            let mut f = Vec::with_capacity(OUTER_LEN + inner.len());
            f.extend_from_slice(&t.bytes);
            f.extend_from_slice(&inner[14..]);
            debug_assert_eq!(f.len(), OUTER_LEN + inner.len());
            let total = (f.len() - 14) as u16;
            let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
            ip.set_total_len(total);
            ip.fill_checksum();
            let mut u = UdpPacket::new_unchecked(&mut f[34..]);
            u.set_src_port(32768 + (i % 28000) as u16);
            u.set_len(total - 20);
            let _ = TEMPLATE_LEN;
            f
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use dataplane::dpdk::PortId;
    use dataplane::packet::{process_pod, process_uplink, VecBuf, Verdict};

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
}
