//! The VXLAN encapsulation weft writes in front of a pod's IPv4 packet, with one owner for its layout,
//! its builder and its per-packet patch (as VPP keeps `vxlan_packet.h`, `vxlan_rewrite` and `encap.c`
//! together): outer Ethernet / IPv4 / UDP / VXLAN (RFC 7348), then the inner Ethernet header that
//! replaces the pod's.
//!
//! ```text
//!  0             14                34         42          50               64
//!  | outer Ether | outer IPv4 (20) | UDP (8)  | VXLAN (8) | inner Ether (14) | inner IPv4 ...
//! ```
//!
//! The template is built once per remote VTEP when the tables are built; encap is then a copy, two
//! length fields, the identification, an incremental checksum (RFC 1624) and the flow-hash source port.

use std::net::Ipv4Addr;

use crate::{
    checksum, ethernet, ipv4, udp, vxlan, EtherType, EthernetFrame, EthernetRepr, Ipv4Packet, Ipv4Repr, MacAddr,
    UdpPacket, UdpRepr, Vni, VxlanRepr,
};

/// Outer Ethernet + IPv4 + UDP + VXLAN: 50 bytes.
pub const OUTER_LEN: usize = ethernet::HEADER_LEN + ipv4::HEADER_LEN + udp::HEADER_LEN + vxlan::HEADER_LEN;
/// The template: the outer headers plus the inner Ethernet header.
pub const TEMPLATE_LEN: usize = OUTER_LEN + ethernet::HEADER_LEN;

/// Offsets inside an encapsulated frame, derived from the header lengths and the views' field tables.
pub mod at {
    use super::*;
    pub const IP: usize = ethernet::HEADER_LEN;
    pub const IP_TOTAL_LEN: usize = IP + ipv4::field::TOTAL_LEN.start;
    pub const IP_IDENT: usize = IP + ipv4::field::IDENT.start;
    pub const IP_CHECKSUM: usize = IP + ipv4::field::CHECKSUM.start;
    pub const UDP: usize = IP + ipv4::HEADER_LEN;
    pub const UDP_SRC: usize = UDP + udp::field::SRC_PORT.start;
    pub const UDP_LEN: usize = UDP + udp::field::LENGTH.start;
    pub const VXLAN: usize = UDP + udp::HEADER_LEN;
    pub const INNER_ETH: usize = VXLAN + vxlan::HEADER_LEN;
}

/// The outer IPv4 TTL (the kernel's default for VXLAN: the route's hop limit, 64).
pub const OUTER_TTL: u8 = 64;

/// A tunnel from this node to one remote VTEP, as plain values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tunnel {
    /// Our uplink's MAC and the underlay next hop's.
    pub src_mac: MacAddr,
    pub next_hop_mac: MacAddr,
    /// Our PublicIP and the peer's.
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
    pub dst_port: u16,
    pub vni: Vni,
    /// Our VtepMAC and the peer's (the inner Ethernet header).
    pub inner_src_mac: MacAddr,
    pub inner_dst_mac: MacAddr,
}

/// The 64 bytes written in front of an inner IPv4 packet, with the outer IPv4 checksum computed with
/// total length and identification zero, so encap only adds those two in (RFC 1624).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncapTemplate {
    pub bytes: [u8; TEMPLATE_LEN],
    pub ip_checksum_base: u16,
}

impl EncapTemplate {
    pub fn build(t: &Tunnel) -> EncapTemplate {
        let mut b = [0u8; TEMPLATE_LEN];
        EthernetRepr { dst: t.next_hop_mac, src: t.src_mac, vlan_tci: None, ethertype: EtherType::IPV4 }
            .emit(&mut EthernetFrame::new_unchecked(&mut b[..]));
        let mut ip = Ipv4Packet::new_unchecked(&mut b[at::IP..at::UDP]);
        Ipv4Repr {
            src: t.src_ip,
            dst: t.dst_ip,
            protocol: ipv4::protocol::UDP,
            payload_len: 0,
            ttl: OUTER_TTL,
            dscp_ecn: 0,
            ident: 0,
            // DF clear, as the kernel's VXLAN device sends by default (df unset).
            dont_frag: false,
        }
        .emit(&mut ip);
        // The one's-complement sum of the header with the per-packet fields (total length,
        // identification) zero: `write` adds them in.
        ip.set_total_len(0);
        ip.set_checksum(0);
        let base = !checksum::checksum(&b[at::IP..at::UDP]);
        b[at::IP_CHECKSUM..at::IP_CHECKSUM + 2].fill(0);
        // The UDP checksum stays zero: RFC 7348 says it SHOULD be sent as zero over IPv4 and receivers,
        // Linux included, accept it; a full checksum would read every byte of every packet. The source
        // port and length are per packet.
        UdpRepr { src_port: 0, dst_port: t.dst_port }.emit(&mut UdpPacket::new_unchecked(&mut b[at::UDP..]), 0);
        b[at::UDP_LEN..at::UDP_LEN + 2].fill(0);
        VxlanRepr { vni: t.vni }.emit(&mut vxlan::VxlanPacket::new_unchecked(&mut b[at::VXLAN..]));
        EthernetRepr { dst: t.inner_dst_mac, src: t.inner_src_mac, vlan_tci: None, ethertype: EtherType::IPV4 }
            .emit(&mut EthernetFrame::new_unchecked(&mut b[at::INNER_ETH..]));
        EncapTemplate { bytes: b, ip_checksum_base: base }
    }

    /// Write the template over the first `TEMPLATE_LEN` bytes of `frame` (the outer headers prepended to
    /// the pod's frame, whose Ethernet header the inner one replaces) and patch the per-packet fields.
    #[inline(always)]
    pub fn write(&self, frame: &mut [u8], ident: u16, src_port: u16) {
        let len = frame.len();
        frame[..TEMPLATE_LEN].copy_from_slice(&self.bytes);
        let ip_total = (len - at::IP) as u16;
        let udp_len = (len - at::UDP) as u16;
        frame[at::IP_TOTAL_LEN..at::IP_TOTAL_LEN + 2].copy_from_slice(&ip_total.to_be_bytes());
        frame[at::IP_IDENT..at::IP_IDENT + 2].copy_from_slice(&ident.to_be_bytes());
        let sum = self.ip_checksum_base as u32 + ip_total as u32 + ident as u32;
        let csum = !checksum::fold32(sum);
        frame[at::IP_CHECKSUM..at::IP_CHECKSUM + 2].copy_from_slice(&csum.to_be_bytes());
        frame[at::UDP_SRC..at::UDP_SRC + 2].copy_from_slice(&src_port.to_be_bytes());
        frame[at::UDP_LEN..at::UDP_LEN + 2].copy_from_slice(&udp_len.to_be_bytes());
    }
}

/// flanneld's udp backend: the inner IPv4 packet is the payload of a UDP datagram from our PublicIP
/// and port to the peer's PublicIP and the same port (its relay's socket is bound to the port it sends
/// to). No header of its own.
///
/// ```text
///  0             14                34        42
///  | outer Ether | outer IPv4 (20) | UDP (8) | inner IPv4 ...
/// ```
pub mod udp_at {
    use super::*;
    pub const IP: usize = ethernet::HEADER_LEN;
    pub const IP_TOTAL_LEN: usize = IP + ipv4::field::TOTAL_LEN.start;
    pub const IP_IDENT: usize = IP + ipv4::field::IDENT.start;
    pub const IP_CHECKSUM: usize = IP + ipv4::field::CHECKSUM.start;
    pub const UDP: usize = IP + ipv4::HEADER_LEN;
    pub const UDP_LEN: usize = UDP + udp::field::LENGTH.start;
    pub const UDP_CHECKSUM: usize = UDP + udp::field::CHECKSUM.start;
    pub const PAYLOAD: usize = UDP + udp::HEADER_LEN;
}

/// Outer Ethernet + IPv4 + UDP of the udp backend: 42 bytes, 28 of them in front of the pod's Ethernet
/// header (which the outer one replaces).
pub const UDP_TEMPLATE_LEN: usize = udp_at::PAYLOAD;
/// What the udp backend adds in front of the pod's frame: outer IPv4 + UDP.
pub const UDP_OVERHEAD: usize = ipv4::HEADER_LEN + udp::HEADER_LEN;

/// The headers a Linux UDP socket (flanneld's relay) puts on a datagram, as a template: DF set (path
/// MTU discovery is on for UDP sockets by default), TTL 64, and a full UDP checksum, which the kernel
/// computes for every UDP socket. The identification is per packet: kernels differ (6.1 sends an
/// unconnected socket's DF datagrams with id 0, the 6.18 kernel of the lab a running value), and RFC
/// 6864 lets a DF datagram carry any. The IPv4 checksum and the UDP checksum's constant part
/// (addresses, protocol, ports) are summed here; `write` adds the lengths, the identification and the
/// payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpTemplate {
    pub bytes: [u8; UDP_TEMPLATE_LEN],
    pub ip_checksum_base: u16,
    pub udp_checksum_base: u32,
}

impl UdpTemplate {
    /// From `src_ip:port` to `dst_ip:port` through the next hop `next_hop_mac`.
    pub fn build(
        src_mac: MacAddr,
        next_hop_mac: MacAddr,
        src_ip: Ipv4Addr,
        dst_ip: Ipv4Addr,
        port: u16,
    ) -> UdpTemplate {
        let mut b = [0u8; UDP_TEMPLATE_LEN];
        EthernetRepr { dst: next_hop_mac, src: src_mac, vlan_tci: None, ethertype: EtherType::IPV4 }
            .emit(&mut EthernetFrame::new_unchecked(&mut b[..]));
        let mut ip = Ipv4Packet::new_unchecked(&mut b[udp_at::IP..udp_at::UDP]);
        Ipv4Repr {
            src: src_ip,
            dst: dst_ip,
            protocol: ipv4::protocol::UDP,
            payload_len: 0,
            ttl: OUTER_TTL,
            dscp_ecn: 0,
            ident: 0,
            dont_frag: true,
        }
        .emit(&mut ip);
        ip.set_total_len(0);
        ip.set_checksum(0);
        let ip_checksum_base = !checksum::checksum(&b[udp_at::IP..udp_at::UDP]);
        UdpRepr { src_port: port, dst_port: port }.emit(&mut UdpPacket::new_unchecked(&mut b[udp_at::UDP..]), 0);
        b[udp_at::UDP_LEN..udp_at::UDP_LEN + 2].fill(0);
        b[udp_at::UDP_CHECKSUM..udp_at::UDP_CHECKSUM + 2].fill(0);
        // Pseudo-header without its length, plus the UDP header without length and checksum.
        let udp_checksum_base = udp::pseudo_header(src_ip, dst_ip, 0) + 2 * port as u32;
        UdpTemplate { bytes: b, ip_checksum_base, udp_checksum_base }
    }

    /// Write the template over the first `UDP_TEMPLATE_LEN` bytes of `frame` (28 bytes prepended to the
    /// pod's frame) and patch the lengths and checksums. The UDP checksum reads the whole payload.
    #[inline(always)]
    pub fn write(&self, frame: &mut [u8], ident: u16) {
        let len = frame.len();
        frame[..UDP_TEMPLATE_LEN].copy_from_slice(&self.bytes);
        let ip_total = (len - udp_at::IP) as u16;
        let udp_len = (len - udp_at::UDP) as u16;
        frame[udp_at::IP_TOTAL_LEN..udp_at::IP_TOTAL_LEN + 2].copy_from_slice(&ip_total.to_be_bytes());
        frame[udp_at::IP_IDENT..udp_at::IP_IDENT + 2].copy_from_slice(&ident.to_be_bytes());
        let csum = !checksum::fold32(self.ip_checksum_base as u32 + ip_total as u32 + ident as u32);
        frame[udp_at::IP_CHECKSUM..udp_at::IP_CHECKSUM + 2].copy_from_slice(&csum.to_be_bytes());
        frame[udp_at::UDP_LEN..udp_at::UDP_LEN + 2].copy_from_slice(&udp_len.to_be_bytes());
        // The length counts twice: in the pseudo-header and in the UDP header.
        let sum = checksum::sum(&frame[udp_at::PAYLOAD..], self.udp_checksum_base + 2 * udp_len as u32);
        // A computed zero is sent as all ones (RFC 768): zero means "no checksum".
        let c = match !sum {
            0 => 0xffff,
            c => c,
        };
        frame[udp_at::UDP_CHECKSUM..udp_at::UDP_CHECKSUM + 2].copy_from_slice(&c.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_derived_from_the_headers() {
        assert_eq!((OUTER_LEN, TEMPLATE_LEN), (50, 64));
        assert_eq!((at::IP, at::UDP, at::VXLAN, at::INNER_ETH), (14, 34, 42, 50));
        assert_eq!((at::IP_TOTAL_LEN, at::IP_IDENT, at::IP_CHECKSUM, at::UDP_SRC, at::UDP_LEN), (16, 18, 24, 34, 38));
    }

    #[test]
    fn emit_then_parse_roundtrip() {
        let t = Tunnel {
            src_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            next_hop_mac: MacAddr([2, 0, 0, 0, 0, 2]),
            src_ip: Ipv4Addr::new(192, 168, 77, 1),
            dst_ip: Ipv4Addr::new(192, 168, 77, 2),
            dst_port: 8472,
            vni: Vni::new(1).unwrap(),
            inner_src_mac: MacAddr([2, 0, 0, 0, 0, 3]),
            inner_dst_mac: MacAddr([2, 0, 0, 0, 0, 4]),
        };
        let tpl = EncapTemplate::build(&t);
        let mut f = vec![0xa5u8; TEMPLATE_LEN + 20];
        tpl.write(&mut f, 7, 40000);
        let ip = Ipv4Packet::new_checked(&f[at::IP..]).unwrap();
        assert_eq!((ip.src(), ip.dst(), ip.ttl(), ip.total_len()), (t.src_ip, t.dst_ip, OUTER_TTL, 70));
        assert!(ip.verify_checksum(), "the incremental checksum is the full one");
        let udp = UdpPacket::new_checked(&f[at::UDP..]).unwrap();
        assert_eq!((udp.src_port(), udp.dst_port(), udp.len()), (40000, 8472, 50));
        let inner = EthernetFrame::new_checked(&f[at::INNER_ETH..]).unwrap();
        assert_eq!((inner.src(), inner.dst()), (t.inner_src_mac, t.inner_dst_mac));
    }

    #[test]
    fn udp_template_writes_what_a_linux_socket_sends() {
        let (a, b) = (Ipv4Addr::new(192, 168, 77, 1), Ipv4Addr::new(192, 168, 77, 2));
        let tpl = UdpTemplate::build(MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]), a, b, 8285);
        assert_eq!((UDP_TEMPLATE_LEN, UDP_OVERHEAD), (42, 28));
        for payload_len in [20usize, 21, 84, 1472] {
            let mut f = vec![0u8; UDP_TEMPLATE_LEN + payload_len];
            for (i, x) in f[UDP_TEMPLATE_LEN..].iter_mut().enumerate() {
                *x = (i * 7 + 3) as u8;
            }
            tpl.write(&mut f, (payload_len as u16).wrapping_mul(977));
            let ip = Ipv4Packet::new_checked(&f[udp_at::IP..]).unwrap();
            assert!(ip.verify_checksum(), "{payload_len}");
            assert!(ip.dont_frag() && ip.ttl() == 64 && ip.ident() == (payload_len as u16).wrapping_mul(977));
            assert_eq!(ip.total_len() as usize, 28 + payload_len);
            let u = UdpPacket::new_checked(ip.payload()).unwrap();
            assert_eq!((u.src_port(), u.dst_port(), u.len() as usize), (8285, 8285, 8 + payload_len));
            assert!(u.checksum() != 0 && u.verify_checksum(a, b), "{payload_len}: a full checksum");
        }
    }
}
