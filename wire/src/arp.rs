//! ARP for IPv4 over Ethernet (RFC 826).
//!
//! ```text
//! +--------+--------+----+----+--------+------------+--------+------------+--------+
//! | htype  | ptype  |hlen|plen| oper   | sha (6)    | spa (4)| tha (6)    | tpa (4)|
//! | 0x0001 | 0x0800 | 6  | 4  | 1 / 2  |            |        |            |        |
//! +--------+--------+----+----+--------+------------+--------+------------+--------+
//! ```
//! <https://www.rfc-editor.org/rfc/rfc826>

use std::net::Ipv4Addr;

use super::{get_ipv4, get_u16, set_u16, MacAddr, Result, WireError};

pub mod field {
    use crate::Field;
    pub const HTYPE: Field = 0..2;
    pub const PTYPE: Field = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Field = 6..8;
    pub const SHA: Field = 8..14;
    pub const SPA: Field = 14..18;
    pub const THA: Field = 18..24;
    pub const TPA: Field = 24..28;
}

pub const PACKET_LEN: usize = 28;
pub const OP_REQUEST: u16 = 1;
pub const OP_REPLY: u16 = 2;

/// A view of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        ArpPacket { buffer }
    }

    /// Wrap after checking the length and that it is ARP for IPv4 over Ethernet.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        let b = p.buffer.as_ref();
        if b.len() < PACKET_LEN {
            return Err(WireError::Truncated);
        }
        if get_u16(b, field::HTYPE.start) != 1
            || get_u16(b, field::PTYPE.start) != 0x0800
            || b[field::HLEN] != 6
            || b[field::PLEN] != 4
        {
            return Err(WireError::Malformed("ARP is not IPv4 over Ethernet"));
        }
        Ok(p)
    }

    pub fn operation(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::OPER.start)
    }

    fn mac(&self, f: super::Field) -> MacAddr {
        let mut m = [0; 6];
        m.copy_from_slice(&self.buffer.as_ref()[f]);
        MacAddr(m)
    }

    pub fn sender_mac(&self) -> MacAddr {
        self.mac(field::SHA)
    }

    pub fn sender_ip(&self) -> Ipv4Addr {
        get_ipv4(self.buffer.as_ref(), field::SPA.start)
    }

    pub fn target_mac(&self) -> MacAddr {
        self.mac(field::THA)
    }

    pub fn target_ip(&self) -> Ipv4Addr {
        get_ipv4(self.buffer.as_ref(), field::TPA.start)
    }
}

/// An ARP packet for IPv4 over Ethernet as plain values (smoltcp's `Repr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpRepr {
    pub operation: u16,
    pub sender_mac: MacAddr,
    pub sender_ip: Ipv4Addr,
    pub target_mac: MacAddr,
    pub target_ip: Ipv4Addr,
}

impl ArpRepr {
    /// A request for `target_ip` from `sender_mac`/`sender_ip` (target MAC unknown: zero).
    pub fn request(sender_mac: MacAddr, sender_ip: Ipv4Addr, target_ip: Ipv4Addr) -> ArpRepr {
        ArpRepr { operation: OP_REQUEST, sender_mac, sender_ip, target_mac: MacAddr::ZERO, target_ip }
    }

    /// The reply to `asker`: `who` is at `mac`.
    pub fn reply_to(asker: &ArpRepr, who: Ipv4Addr, mac: MacAddr) -> ArpRepr {
        ArpRepr {
            operation: OP_REPLY,
            sender_mac: mac,
            sender_ip: who,
            target_mac: asker.sender_mac,
            target_ip: asker.sender_ip,
        }
    }

    /// The values of a packet [`ArpPacket::new_checked`] accepted (any operation: the caller decides).
    pub fn parse<T: AsRef<[u8]>>(p: &ArpPacket<T>) -> Result<ArpRepr> {
        Ok(ArpRepr {
            operation: p.operation(),
            sender_mac: p.sender_mac(),
            sender_ip: p.sender_ip(),
            target_mac: p.target_mac(),
            target_ip: p.target_ip(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        PACKET_LEN
    }

    /// Write the whole packet, hardware and protocol types included.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut ArpPacket<T>) {
        let b = p.buffer.as_mut();
        set_u16(b, field::HTYPE.start, 1);
        set_u16(b, field::PTYPE.start, 0x0800);
        b[field::HLEN] = 6;
        b[field::PLEN] = 4;
        set_u16(b, field::OPER.start, self.operation);
        b[field::SHA].copy_from_slice(&self.sender_mac.0);
        b[field::SPA].copy_from_slice(&self.sender_ip.octets());
        b[field::THA].copy_from_slice(&self.target_mac.0);
        b[field::TPA].copy_from_slice(&self.target_ip.octets());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rustfmt::skip]
    const WHO_HAS: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, // Ethernet, IPv4
        0x06, 0x04, 0x00, 0x01, // hlen 6, plen 4, request
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // sha
        0x0a, 0xf4, 0x01, 0x02,             // spa 10.244.1.2
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // tha unknown
        0x0a, 0xf4, 0x01, 0x01,             // tpa 10.244.1.1 (the pod gateway)
    ];

    #[test]
    fn parse_request() {
        let p = ArpPacket::new_checked(&WHO_HAS[..]).unwrap();
        assert_eq!(p.operation(), OP_REQUEST);
        assert_eq!(p.sender_mac(), MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(p.sender_ip(), Ipv4Addr::new(10, 244, 1, 2));
        assert_eq!(p.target_ip(), Ipv4Addr::new(10, 244, 1, 1));
    }

    #[test]
    fn parse_malformed() {
        assert_eq!(ArpPacket::new_checked(&WHO_HAS[..27]).unwrap_err(), WireError::Truncated);
        let mut ipv6 = WHO_HAS;
        ipv6[2] = 0x86;
        ipv6[3] = 0xdd;
        assert!(matches!(ArpPacket::new_checked(&ipv6[..]), Err(WireError::Malformed(_))));
    }

    #[test]
    fn emit_into_poisoned_buffer() {
        let mut b = [0xa5u8; 28];
        ArpRepr::request(MacAddr([2, 0, 0, 0, 0, 1]), Ipv4Addr::new(10, 244, 1, 2), Ipv4Addr::new(10, 244, 1, 1))
            .emit(&mut ArpPacket::new_unchecked(&mut b[..]));
        assert_eq!(b, WHO_HAS);
    }

    #[test]
    fn repr_roundtrip_and_reply() {
        let req = ArpRepr::parse(&ArpPacket::new_checked(&WHO_HAS[..]).unwrap()).unwrap();
        let mut b = [0xa5u8; 28];
        req.emit(&mut ArpPacket::new_unchecked(&mut b[..]));
        assert_eq!(b, WHO_HAS);
        let gw = MacAddr([2, 0, 0, 0, 0, 0xee]);
        let reply = ArpRepr::reply_to(&req, req.target_ip, gw);
        reply.emit(&mut ArpPacket::new_unchecked(&mut b[..]));
        let back = ArpRepr::parse(&ArpPacket::new_checked(&b[..]).unwrap()).unwrap();
        assert_eq!(back, reply);
        assert_eq!((back.operation, back.sender_mac, back.sender_ip), (OP_REPLY, gw, Ipv4Addr::new(10, 244, 1, 1)));
        assert_eq!((back.target_mac, back.target_ip), (req.sender_mac, req.sender_ip));
    }
}
