//! Wire formats weft reads and writes: Ethernet (with 802.1Q), ARP, IPv4, UDP, VXLAN and ICMPv4, the
//! value types that travel with them (`MacAddr`, `Ipv4Net`, `Vni`), and the packet buffer the packet paths
//! work on. No DPDK: this crate is a crate so that the compiler keeps it that way, and its tests and
//! fuzzers run without libdpdk.
//!
//! Zero-copy views over byte buffers in the manner of smoltcp's `wire` module: `Packet<T: AsRef<[u8]>>`
//! with getters, setters where `T: AsMut<[u8]>`, a `field` table of offsets, and `new_checked` after which
//! no accessor panics. Fields are read through offsets, never by casting to packed structs. Each header
//! also has a `Repr` (`EthernetRepr`, `ArpRepr`, `Ipv4Repr`, `UdpRepr`, `Icmpv4Repr`, `VxlanRepr`): the
//! header as plain values, with `parse` from a checked view and `emit` into a view, so code that builds
//! or judges a whole header (the encap template, ARP and ICMP replies, tests) says what it means in
//! values and leaves the byte layout to one place. The fast path reads single fields through the views.
//!
//! Why not smoltcp itself: smoltcp 0.14 does not build with only its wire features (its socket layer's
//! `compile_error!` fires unless a socket feature is on, which drags in its interface code), and it
//! has no 802.1Q, VXLAN or RFC 1624 incremental checksum, which are most of what weft's fast path needs.
//! The views here are small, have no dependencies, and compile to plain loads and stores.
#![forbid(unsafe_code)]

pub mod arp;
pub mod buf;
pub mod checksum;
pub mod encap;
pub mod ethernet;
pub mod icmpv4;
pub mod ipv4;
pub mod mac;
pub mod net;
pub mod pcap;
pub mod udp;
pub mod vxlan;

pub use arp::{ArpPacket, ArpRepr};
pub use buf::{PacketBuf, VecBuf};
pub use ethernet::{EtherType, EthernetFrame, EthernetRepr, MacAddr};
pub use icmpv4::{Icmpv4Packet, Icmpv4Repr};
pub use ipv4::{Ipv4Packet, Ipv4Repr};
pub use mac::MacParseError;
pub use net::{Ipv4Net, NetParseError};
pub use udp::{UdpPacket, UdpRepr};
pub use vxlan::{Vni, VxlanPacket, VxlanRepr};

/// Why a buffer is not a valid header of the kind asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("buffer shorter than the header or its length fields")]
    Truncated,
    #[error("header field out of range: {0}")]
    Malformed(&'static str),
}

pub type Result<T> = core::result::Result<T, WireError>;

/// A byte range of a header.
pub type Field = core::ops::Range<usize>;

#[inline(always)]
pub fn get_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// The eight bytes from `at` on as one big-endian number (two adjacent 32-bit fields, such as an IPv4
/// header's source and destination addresses, in one load).
#[inline(always)]
pub fn get_u64(b: &[u8], at: usize) -> u64 {
    let mut w = [0; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(w)
}

#[inline(always)]
pub(crate) fn set_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline(always)]
pub(crate) fn get_ipv4(b: &[u8], at: usize) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

#[cfg(test)]
mod tests {
    #[test]
    fn get_u64_reads_eight_bytes_big_endian_from_an_offset() {
        let b = [0xff, 10, 244, 1, 2, 10, 244, 2, 3, 0xee];
        assert_eq!(super::get_u64(&b, 1), 0x0af4_0102_0af4_0203);
        assert_eq!(super::get_u64(&b, 2) >> 56, 244);
    }
}

#[cfg(test)]
pub(crate) mod testdata {
    /// The two frames of `shared/fixtures/kernel-vxlan-ping.pcap` (an ICMP echo request 10.244.1.2 ->
    /// 10.244.2.2 through two Linux kernel VXLAN nodes, and its reply), read from the file at test time.
    pub fn kernel_vxlan_ping() -> Vec<Vec<u8>> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/kernel-vxlan-ping.pcap");
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("fixture {path}: {e}"));
        super::pcap::PcapReader::new(&bytes)
            .unwrap_or_else(|e| panic!("fixture {path}: {e}"))
            .map(|r| r.map(|rec| rec.data.to_vec()))
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("fixture {path}: {e}"))
    }
}

/// The whole header stack of a frame the Linux kernel's VXLAN device put on the wire.
#[cfg(test)]
mod kernel_frame_tests {
    use std::net::Ipv4Addr;

    use super::*;

    const NODE1_VTEP: MacAddr = MacAddr([0x12, 0xfa, 0x72, 0xe4, 0x41, 0xd0]);
    const NODE2_VTEP: MacAddr = MacAddr([0xaa, 0xc4, 0xe1, 0x93, 0x50, 0xbd]);
    const NODE1_UPLINK: MacAddr = MacAddr([0x86, 0x0f, 0xfd, 0xd2, 0x34, 0x00]);
    const NODE2_UPLINK: MacAddr = MacAddr([0x9a, 0xbd, 0x31, 0x40, 0x5e, 0x58]);

    /// The capture's headers, outermost first, as values.
    fn request_reprs() -> (EthernetRepr, Ipv4Repr, UdpRepr, VxlanRepr, EthernetRepr, Ipv4Repr, Icmpv4Repr) {
        let inner_ip = Ipv4Repr {
            src: Ipv4Addr::new(10, 244, 1, 2),
            dst: Ipv4Addr::new(10, 244, 2, 2),
            protocol: ipv4::protocol::ICMP,
            payload_len: 64,
            ttl: 63, // the sending node routed it once
            dscp_ecn: 0,
            ident: 47458,
            dont_frag: true,
        };
        (
            EthernetRepr { dst: NODE2_UPLINK, src: NODE1_UPLINK, vlan_tci: None, ethertype: EtherType::IPV4 },
            Ipv4Repr {
                src: Ipv4Addr::new(192, 168, 77, 1),
                dst: Ipv4Addr::new(192, 168, 77, 2),
                protocol: ipv4::protocol::UDP,
                payload_len: 8 + 8 + 14 + inner_ip.buffer_len(),
                ttl: 64,
                dscp_ecn: 0,
                ident: 59492,
                dont_frag: false,
            },
            UdpRepr { src_port: 37644, dst_port: 8472 },
            VxlanRepr { vni: Vni::ONE },
            EthernetRepr { dst: NODE2_VTEP, src: NODE1_VTEP, vlan_tci: None, ethertype: EtherType::IPV4 },
            inner_ip,
            Icmpv4Repr::EchoRequest { ident: 18323, seq: 1 },
        )
    }

    #[test]
    fn parse_kernel_vxlan_echo_request() {
        let frames = testdata::kernel_vxlan_ping();
        let f = &frames[0];
        let eth = EthernetFrame::new_checked(&f[..]).unwrap();
        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
        let udp = UdpPacket::new_checked(ip.payload()).unwrap();
        // Captured with TX checksum offload on a veth: the checksum field is only the partial
        // pseudo-header sum, which a receiver must not reject the frame for.
        assert!(!udp.verify_checksum(ip.src(), ip.dst()));
        let vx = VxlanPacket::new_checked(udp.payload()).unwrap();
        let inner = EthernetFrame::new_checked(vx.payload()).unwrap();
        let iip = Ipv4Packet::new_checked(inner.payload()).unwrap();
        let icmp = Icmpv4Packet::new_checked(iip.payload()).unwrap();
        let got = (
            EthernetRepr::parse(&eth).unwrap(),
            Ipv4Repr::parse(&ip).unwrap(),
            UdpRepr::parse(&udp).unwrap(),
            VxlanRepr::parse(&vx).unwrap(),
            EthernetRepr::parse(&inner).unwrap(),
            Ipv4Repr::parse(&iip).unwrap(),
            Icmpv4Repr::parse(&icmp).unwrap(),
        );
        assert_eq!(got, request_reprs());
    }

    #[test]
    fn parse_kernel_vxlan_echo_reply() {
        let frames = testdata::kernel_vxlan_ping();
        let eth = EthernetFrame::new_checked(&frames[1][..]).unwrap();
        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
        let udp = UdpPacket::new_checked(ip.payload()).unwrap();
        let vx = VxlanPacket::new_checked(udp.payload()).unwrap();
        let inner = EthernetFrame::new_checked(vx.payload()).unwrap();
        assert_eq!((inner.src(), inner.dst()), (NODE2_VTEP, NODE1_VTEP));
        let iip = Ipv4Packet::new_checked(inner.payload()).unwrap();
        let icmp = Icmpv4Packet::new_checked(iip.payload()).unwrap();
        assert_eq!(icmp.msg_type(), icmpv4::TYPE_ECHO_REPLY);
    }

    /// Build the kernel's frame from its values with the `Repr` emitters, into a poisoned buffer: every
    /// byte must match but the UDP checksum (the capture holds the offload's partial sum; we write a full
    /// one).
    #[test]
    fn emit_matches_kernel_frame() {
        let frames = testdata::kernel_vxlan_ping();
        let want = &frames[0];
        let (eth, ip, udp, vx, inner, iip, icmp) = request_reprs();
        let mut buf = vec![0xa5u8; want.len()];
        // The echo's data first (the ICMP checksum covers it), then each header outermost first.
        let data_at = 50 + 14 + 20 + 8;
        buf[data_at..].copy_from_slice(&want[data_at..]);
        eth.emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
        ip.emit(&mut Ipv4Packet::new_unchecked(&mut buf[14..]));
        udp.emit(&mut UdpPacket::new_unchecked(&mut buf[34..]), ip.payload_len - 8);
        vx.emit(&mut VxlanPacket::new_unchecked(&mut buf[42..]));
        inner.emit(&mut EthernetFrame::new_unchecked(&mut buf[50..]));
        iip.emit(&mut Ipv4Packet::new_unchecked(&mut buf[64..]));
        icmp.emit(&mut Icmpv4Packet::new_unchecked(&mut buf[84..]));
        UdpPacket::new_unchecked(&mut buf[34..]).fill_checksum(ip.src, ip.dst);
        assert_eq!(buf[..40], want[..40]);
        assert_eq!(buf[42..], want[42..]);
        let udp = UdpPacket::new_checked(&buf[34..]).unwrap();
        assert!(udp.verify_checksum(Ipv4Addr::new(192, 168, 77, 1), Ipv4Addr::new(192, 168, 77, 2)));
        // tcpdump's "bad udp cksum 0x1bd8 -> 0x79cc" names the complete value: ours is that one.
        assert_eq!(udp.checksum(), 0x79cc);
    }
}
