//! UDP headers (RFC 768).
//!
//! ```text
//! +----------------+----------------+----------------+----------------+
//! | source port    | dest port      | length         | checksum       |
//! +----------------+----------------+----------------+----------------+
//! ```
//! <https://www.rfc-editor.org/rfc/rfc768>

use std::net::Ipv4Addr;

use super::{checksum, get_u16, set_u16, Result, WireError};

pub mod field {
    use crate::Field;
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const LENGTH: Field = 4..6;
    pub const CHECKSUM: Field = 6..8;
}

pub const HEADER_LEN: usize = 8;

/// A view of a UDP datagram.
#[derive(Debug, Clone)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    /// Wrap after checking that the header fits and the length field lies within 8..=buffer length.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        let len = p.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let l = p.len() as usize;
        if l < HEADER_LEN {
            return Err(WireError::Malformed("UDP length below 8"));
        }
        if l > len {
            return Err(WireError::Truncated);
        }
        Ok(p)
    }

    #[inline(always)]
    pub fn src_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::SRC_PORT.start)
    }

    #[inline(always)]
    pub fn dst_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::DST_PORT.start)
    }

    #[inline(always)]
    pub fn len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH.start)
    }

    pub fn is_empty(&self) -> bool {
        self.len() as usize == HEADER_LEN
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.len() as usize]
    }

    /// Checksum over the IPv4 pseudo-header and the datagram is right (or absent: zero is allowed for
    /// UDP over IPv4). weft never drops a received VXLAN frame for this; see the fixtures README.
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        self.checksum() == 0
            || checksum::sum(&self.buffer.as_ref()[..self.len() as usize], pseudo_header(src, dst, self.len()))
                == 0xffff
    }
}

/// The partial sum of the IPv4 pseudo-header for UDP.
pub fn pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, udp_len: u16) -> u32 {
    let s = u32::from(src);
    let d = u32::from(dst);
    (s >> 16) + (s & 0xffff) + (d >> 16) + (d & 0xffff) + super::ipv4::protocol::UDP as u32 + udp_len as u32
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    pub fn set_src_port(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::SRC_PORT.start, v);
    }

    pub fn set_dst_port(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::DST_PORT.start, v);
    }

    pub fn set_len(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::LENGTH.start, v);
    }

    pub fn set_checksum(&mut self, v: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM.start, v);
    }

    /// Compute and store the checksum (0 is sent as 0xffff, as RFC 768 says).
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let l = self.len();
        let c = !checksum::sum(&self.buffer.as_ref()[..l as usize], pseudo_header(src, dst, l));
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let l = self.len() as usize;
        &mut self.buffer.as_mut()[HEADER_LEN..l]
    }
}

/// A UDP header as plain values (smoltcp's `Repr`); the length comes from the payload the caller
/// writes. [`UdpRepr::parse`] does not judge the checksum: senders with checksum offload leave a
/// partial sum (the kernel fixture has one), so whether to check is the caller's question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpRepr {
    pub src_port: u16,
    pub dst_port: u16,
}

impl UdpRepr {
    pub fn parse<T: AsRef<[u8]>>(p: &UdpPacket<T>) -> Result<UdpRepr> {
        Ok(UdpRepr { src_port: p.src_port(), dst_port: p.dst_port() })
    }

    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Write the header for `payload_len` bytes of payload with the checksum zero ("none" over IPv4);
    /// [`UdpPacket::fill_checksum`] computes one once the payload is in place.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut UdpPacket<T>, payload_len: usize) {
        p.set_src_port(self.src_port);
        p.set_dst_port(self.dst_port);
        p.set_len((HEADER_LEN + payload_len) as u16);
        p.set_checksum(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rustfmt::skip]
    const DGRAM: [u8; 12] = [
        0x93, 0x0c, 0x21, 0x18, // src 37644, dst 8472
        0x00, 0x0c, 0x00, 0x00, // length 12, checksum 0 (none)
        0xde, 0xad, 0xbe, 0xef, // payload
    ];

    #[test]
    fn parse_fields() {
        let p = UdpPacket::new_checked(&DGRAM[..]).unwrap();
        assert_eq!(p.src_port(), 37644);
        assert_eq!(p.dst_port(), 8472);
        assert_eq!(p.len(), 12);
        assert_eq!(p.payload(), &[0xde, 0xad, 0xbe, 0xef]);
        assert!(p.verify_checksum(Ipv4Addr::new(1, 2, 3, 4), Ipv4Addr::new(5, 6, 7, 8)));
    }

    #[test]
    fn parse_malformed() {
        assert_eq!(UdpPacket::new_checked(&DGRAM[..7]).unwrap_err(), WireError::Truncated);
        let mut long = DGRAM;
        long[5] = 13;
        assert_eq!(UdpPacket::new_checked(&long[..]).unwrap_err(), WireError::Truncated);
        let mut short = DGRAM;
        short[5] = 7;
        assert!(matches!(UdpPacket::new_checked(&short[..]), Err(WireError::Malformed(_))));
    }

    #[test]
    fn roundtrip_checksum() {
        let (s, d) = (Ipv4Addr::new(192, 168, 77, 1), Ipv4Addr::new(192, 168, 77, 2));
        let mut b = DGRAM;
        let mut p = UdpPacket::new_checked(&mut b[..]).unwrap();
        p.fill_checksum(s, d);
        assert_ne!(p.checksum(), 0);
        assert!(p.verify_checksum(s, d));
        p.payload_mut()[0] ^= 0xff;
        assert!(!p.verify_checksum(s, d));
    }

    #[test]
    fn repr_roundtrip() {
        let (src, dst) = (Ipv4Addr::new(192, 168, 77, 1), Ipv4Addr::new(192, 168, 77, 2));
        let mut b = [0xa5u8; 12];
        let repr = UdpRepr { src_port: 40000, dst_port: 8472 };
        repr.emit(&mut UdpPacket::new_unchecked(&mut b[..]), 4);
        assert_eq!(&b[..8], &[0x9c, 0x40, 0x21, 0x18, 0x00, 0x0c, 0x00, 0x00]);
        let p = UdpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(UdpRepr::parse(&p).unwrap(), repr);
        assert!(p.verify_checksum(src, dst), "zero means no checksum over IPv4");
    }
}
