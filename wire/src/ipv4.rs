//! IPv4 headers (RFC 791), options and fragments recognised.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version|  IHL  |    DSCP/ECN   |          Total Length         |
//! |         Identification        |Flags|      Fragment Offset    |
//! |  Time to Live |    Protocol   |         Header Checksum       |
//! |                       Source Address                          |
//! |                    Destination Address                        |
//! |                    Options (IHL > 5)                          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//! <https://www.rfc-editor.org/rfc/rfc791#section-3.1>

use std::net::Ipv4Addr;

use super::checksum;
use super::{get_ipv4, get_u16, set_u16, Result, WireError};

pub mod field {
    use crate::Field;
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const TOTAL_LEN: Field = 2..4;
    pub const IDENT: Field = 4..6;
    pub const FLAGS_FRAG: Field = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Field = 10..12;
    pub const SRC: Field = 12..16;
    pub const DST: Field = 16..20;
}

pub const HEADER_LEN: usize = 20;

/// IP protocol numbers weft acts on.
pub mod protocol {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
}

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const FRAG_OFFSET_MASK: u16 = 0x1fff;

/// A view of an IPv4 packet.
#[derive(Debug, Clone)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// Wrap after checking version 4, IHL >= 5, and that the header and the total length fit the
    /// buffer (which may be longer: Ethernet pads short frames).
    #[inline(always)]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        let len = p.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if p.version() != 4 {
            return Err(WireError::Malformed("IPv4 version is not 4"));
        }
        let hl = p.header_len();
        if hl < HEADER_LEN {
            return Err(WireError::Malformed("IPv4 IHL below 5"));
        }
        if hl > len {
            return Err(WireError::Truncated);
        }
        let total = p.total_len() as usize;
        if total < hl {
            return Err(WireError::Malformed("IPv4 total length shorter than its header"));
        }
        if total > len {
            return Err(WireError::Truncated);
        }
        Ok(p)
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline(always)]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL × 4).
    #[inline(always)]
    pub fn header_len(&self) -> usize {
        ((self.buffer.as_ref()[field::VER_IHL] & 0x0f) as usize) * 4
    }

    #[inline]
    pub fn has_options(&self) -> bool {
        self.header_len() > HEADER_LEN
    }

    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    #[inline(always)]
    pub fn total_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::TOTAL_LEN.start)
    }

    pub fn ident(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::IDENT.start)
    }

    #[inline]
    pub fn dont_frag(&self) -> bool {
        get_u16(self.buffer.as_ref(), field::FLAGS_FRAG.start) & FLAG_DF != 0
    }

    #[inline]
    pub fn more_frags(&self) -> bool {
        get_u16(self.buffer.as_ref(), field::FLAGS_FRAG.start) & FLAG_MF != 0
    }

    /// Fragment offset in bytes.
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (get_u16(self.buffer.as_ref(), field::FLAGS_FRAG.start) & FRAG_OFFSET_MASK) * 8
    }

    /// Part of a fragmented datagram (MF set or a non-zero offset).
    #[inline(always)]
    pub fn is_fragment(&self) -> bool {
        get_u16(self.buffer.as_ref(), field::FLAGS_FRAG.start) & (FLAG_MF | FRAG_OFFSET_MASK) != 0
    }

    #[inline(always)]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    #[inline(always)]
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    #[inline(always)]
    pub fn src(&self) -> Ipv4Addr {
        get_ipv4(self.buffer.as_ref(), field::SRC.start)
    }

    #[inline(always)]
    pub fn dst(&self) -> Ipv4Addr {
        get_ipv4(self.buffer.as_ref(), field::DST.start)
    }

    /// Source address as a host-order integer, for table keys.
    #[inline(always)]
    pub fn src_u32(&self) -> u32 {
        u32::from(self.src())
    }

    #[inline(always)]
    pub fn dst_u32(&self) -> u32 {
        u32::from(self.dst())
    }

    /// Header checksum correct (the one's-complement sum over the header is 0xffff).
    #[inline(always)]
    pub fn verify_checksum(&self) -> bool {
        let b = self.buffer.as_ref();
        let hl = self.header_len();
        match <&[u8; HEADER_LEN]>::try_from(&b[..hl]) {
            Ok(h) => checksum::valid20(h),
            Err(_) => checksum::sum(&b[..hl], 0) == 0xffff,
        }
    }

    /// The datagram's payload, up to total length (Ethernet padding excluded).
    #[inline(always)]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..self.total_len() as usize]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Version 4 and a header length in bytes (multiple of 4, 20..=60).
    pub fn set_version_and_header_len(&mut self, header_len: usize) {
        self.buffer.as_mut()[field::VER_IHL] = 0x40 | ((header_len / 4) as u8 & 0x0f);
    }

    pub fn set_dscp_ecn(&mut self, v: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = v;
    }

    pub fn set_total_len(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::TOTAL_LEN.start, v);
    }

    pub fn set_ident(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::IDENT.start, v);
    }

    /// Flags (DF) and fragment offset 0.
    pub fn set_dont_frag(&mut self, df: bool) {
        set_u16(self.buffer.as_mut(), field::FLAGS_FRAG.start, if df { FLAG_DF } else { 0 });
    }

    pub fn set_ttl(&mut self, v: u8) {
        self.buffer.as_mut()[field::TTL] = v;
    }

    pub fn set_protocol(&mut self, v: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = v;
    }

    pub fn set_checksum(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM.start, v);
    }

    pub fn set_src(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a.octets());
    }

    pub fn set_dst(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a.octets());
    }

    /// Compute and store the header checksum.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let hl = self.header_len();
        let c = checksum::checksum(&self.buffer.as_ref()[..hl]);
        self.set_checksum(c);
    }

    /// TTL − 1 with the checksum updated incrementally (RFC 1624), as a router does. The caller checks
    /// that the TTL is above 1 first.
    #[inline(always)]
    pub fn decrement_ttl(&mut self) {
        self.decrement_ttl_by(1)
    }

    /// Take `hops` off the TTL (flannel's udp mode routes twice per node: the kernel and the relay),
    /// patching the checksum incrementally.
    #[inline(always)]
    pub fn decrement_ttl_by(&mut self, hops: u8) {
        let b = self.buffer.as_mut();
        let ttl = b[field::TTL];
        let hc = get_u16(b, field::CHECKSUM.start);
        let new_hc = if ttl >= hops {
            checksum::update_ttl_down(hc, hops)
        } else {
            // Wraps (no packet path gets here: each drops a TTL of at most `hops` first).
            let old = get_u16(b, field::TTL);
            checksum::update16(hc, old, old.wrapping_sub(u16::from(hops) << 8))
        };
        b[field::TTL] = ttl.wrapping_sub(hops);
        set_u16(b, field::CHECKSUM.start, new_hc);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (h, t) = (self.header_len(), self.total_len() as usize);
        &mut self.buffer.as_mut()[h..t]
    }
}

/// An IPv4 header without options as plain values (smoltcp's `Repr`). Fragments have no `Repr`: weft
/// never builds one, and [`Ipv4Repr::parse`] refuses them. Options of a parsed header are not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    /// Bytes after the header (total length minus header length).
    pub payload_len: usize,
    pub ttl: u8,
    pub dscp_ecn: u8,
    pub ident: u16,
    pub dont_frag: bool,
}

impl Ipv4Repr {
    /// The values of a checked packet whose header checksum is right and which is not a fragment.
    pub fn parse<T: AsRef<[u8]>>(p: &Ipv4Packet<T>) -> Result<Ipv4Repr> {
        if !p.verify_checksum() {
            return Err(WireError::Malformed("IPv4 header checksum"));
        }
        if p.is_fragment() {
            return Err(WireError::Malformed("IPv4 fragment"));
        }
        Ok(Ipv4Repr {
            src: p.src(),
            dst: p.dst(),
            protocol: p.protocol(),
            payload_len: p.total_len() as usize - p.header_len(),
            ttl: p.ttl(),
            dscp_ecn: p.dscp_ecn(),
            ident: p.ident(),
            dont_frag: p.dont_frag(),
        })
    }

    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Write the 20-byte header with its checksum.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Ipv4Packet<T>) {
        p.set_version_and_header_len(HEADER_LEN);
        p.set_dscp_ecn(self.dscp_ecn);
        p.set_total_len(self.buffer_len() as u16);
        p.set_ident(self.ident);
        p.set_dont_frag(self.dont_frag);
        p.set_ttl(self.ttl);
        p.set_protocol(self.protocol);
        p.set_src(self.src);
        p.set_dst(self.dst);
        p.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rustfmt::skip]
    const ECHO: [u8; 28] = [
        0x45, 0x00, 0x00, 0x1c, // v4, IHL 5, TOS 0, total length 28
        0xbe, 0xef, 0x40, 0x00, // ident, DF
        0x40, 0x01, 0x00, 0x00, // TTL 64, ICMP, checksum (filled below)
        0x0a, 0xf4, 0x01, 0x02, // src 10.244.1.2
        0x0a, 0xf4, 0x02, 0x02, // dst 10.244.2.2
        0x08, 0x00, 0xf7, 0xff, // ICMP echo request, checksum
        0x00, 0x00, 0x00, 0x00, // id, seq
    ];

    fn echo() -> [u8; 28] {
        let mut b = ECHO;
        Ipv4Packet::new_unchecked(&mut b[..]).fill_checksum();
        b
    }

    #[test]
    fn parse_fields() {
        let b = echo();
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 28);
        assert!(p.dont_frag());
        assert!(!p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), protocol::ICMP);
        assert_eq!(p.src(), Ipv4Addr::new(10, 244, 1, 2));
        assert_eq!(p.dst(), Ipv4Addr::new(10, 244, 2, 2));
        assert!(p.verify_checksum());
        assert_eq!(p.payload().len(), 8);
    }

    #[test]
    fn parse_padded_frame_payload_stops_at_total_length() {
        let mut b = echo().to_vec();
        b.extend_from_slice(&[0; 18]); // Ethernet minimum-size padding
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.payload().len(), 8);
    }

    #[test]
    fn parse_malformed() {
        let b = echo();
        assert_eq!(Ipv4Packet::new_checked(&b[..19]).unwrap_err(), WireError::Truncated);
        let mut v6 = b;
        v6[0] = 0x65;
        assert!(matches!(Ipv4Packet::new_checked(&v6[..]), Err(WireError::Malformed(_))));
        let mut ihl4 = b;
        ihl4[0] = 0x44;
        assert!(matches!(Ipv4Packet::new_checked(&ihl4[..]), Err(WireError::Malformed(_))));
        let mut long = b;
        long[3] = 29; // total length beyond the buffer
        assert_eq!(Ipv4Packet::new_checked(&long[..]).unwrap_err(), WireError::Truncated);
        let mut short = b;
        short[3] = 19; // total length shorter than the header
        assert!(matches!(Ipv4Packet::new_checked(&short[..]), Err(WireError::Malformed(_))));
        let mut ihl15 = b;
        ihl15[0] = 0x4f; // 60-byte header in a 28-byte buffer
        assert_eq!(Ipv4Packet::new_checked(&ihl15[..]).unwrap_err(), WireError::Truncated);
        let mut bad_sum = b;
        bad_sum[11] ^= 1;
        assert!(!Ipv4Packet::new_checked(&bad_sum[..]).unwrap().verify_checksum());
    }

    #[test]
    fn parse_options_and_fragments() {
        #[rustfmt::skip]
        let mut b = [
            0x46, 0x00, 0x00, 0x20, // IHL 6: 4 bytes of options, total 32
            0x00, 0x01, 0x20, 0x02, // MF, offset 2 (16 bytes)
            0x40, 0x11, 0x00, 0x00,
            0x0a, 0x00, 0x00, 0x01,
            0x0a, 0x00, 0x00, 0x02,
            0x94, 0x04, 0x00, 0x00, // router alert option
            0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5, 0xa5,
        ];
        Ipv4Packet::new_unchecked(&mut b[..]).fill_checksum();
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert!(p.has_options());
        assert_eq!(p.options(), &[0x94, 0x04, 0x00, 0x00]);
        assert!(p.is_fragment());
        assert!(p.more_frags());
        assert_eq!(p.frag_offset(), 16);
        assert!(p.verify_checksum());
        assert_eq!(p.payload().len(), 8);
    }

    #[test]
    fn emit_into_poisoned_buffer() {
        let mut buf = [0xa5u8; 28];
        {
            let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
            p.set_version_and_header_len(20);
            p.set_dscp_ecn(0);
            p.set_total_len(28);
            p.set_ident(0xbeef);
            p.set_dont_frag(true);
            p.set_ttl(64);
            p.set_protocol(protocol::ICMP);
            p.set_src(Ipv4Addr::new(10, 244, 1, 2));
            p.set_dst(Ipv4Addr::new(10, 244, 2, 2));
            p.fill_checksum();
            p.payload_mut().copy_from_slice(&ECHO[20..]);
        }
        assert_eq!(buf, echo());
    }

    #[test]
    fn roundtrip_decrement_ttl_keeps_checksum_valid() {
        let mut b = echo();
        for expect in (0..64u8).rev() {
            let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
            p.decrement_ttl();
            assert_eq!(p.ttl(), expect);
            assert!(p.verify_checksum(), "ttl {expect}");
        }
    }

    #[test]
    fn repr_roundtrip() {
        let b = echo();
        let repr = Ipv4Repr::parse(&Ipv4Packet::new_checked(&b[..]).unwrap()).unwrap();
        assert_eq!((repr.payload_len, repr.ident, repr.dont_frag, repr.ttl), (8, 0xbeef, true, 64));
        let mut out = [0xa5u8; 28];
        repr.emit(&mut Ipv4Packet::new_unchecked(&mut out[..]));
        out[20..].copy_from_slice(&b[20..]);
        assert_eq!(out, b);
    }

    #[test]
    fn repr_refuses_bad_checksum_and_fragments() {
        let mut bad = echo();
        bad[10] ^= 1;
        let p = Ipv4Packet::new_checked(&bad[..]).unwrap();
        assert_eq!(Ipv4Repr::parse(&p).unwrap_err(), WireError::Malformed("IPv4 header checksum"));
        let mut frag = ECHO;
        frag[6] = 0x20; // MF
        Ipv4Packet::new_unchecked(&mut frag[..]).fill_checksum();
        let p = Ipv4Packet::new_checked(&frag[..]).unwrap();
        assert_eq!(Ipv4Repr::parse(&p).unwrap_err(), WireError::Malformed("IPv4 fragment"));
    }
}
