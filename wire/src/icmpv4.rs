//! ICMPv4 (RFC 792): echo, and destination unreachable including fragmentation-needed (RFC 1191).
//!
//! ```text
//! +--------+--------+----------------+
//! | type   | code   | checksum       |
//! +--------+--------+----------------+
//! | echo: identifier | sequence      |   unreachable: unused | next-hop MTU
//! +------------------+---------------+
//! | data / original IP header + 8 bytes
//! ```
//! <https://www.rfc-editor.org/rfc/rfc792>, <https://www.rfc-editor.org/rfc/rfc1191#section-4>

use super::{checksum, get_u16, set_u16, Result, WireError};

pub mod field {
    use crate::Field;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Field = 2..4;
    pub const ECHO_IDENT: Field = 4..6;
    pub const ECHO_SEQ: Field = 6..8;
    pub const UNUSED: Field = 4..6;
    pub const NEXT_HOP_MTU: Field = 6..8;
}

pub const HEADER_LEN: usize = 8;
pub const TYPE_ECHO_REPLY: u8 = 0;
pub const TYPE_DEST_UNREACHABLE: u8 = 3;
pub const TYPE_ECHO_REQUEST: u8 = 8;
pub const TYPE_TIME_EXCEEDED: u8 = 11;
pub const CODE_FRAG_NEEDED: u8 = 4;

/// A view of an ICMPv4 message.
#[derive(Debug, Clone)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Icmpv4Packet { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(Self::new_unchecked(buffer))
    }

    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    pub fn echo_ident(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ECHO_IDENT.start)
    }

    pub fn echo_seq(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ECHO_SEQ.start)
    }

    /// The next-hop MTU of a fragmentation-needed message.
    pub fn next_hop_mtu(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::NEXT_HOP_MTU.start)
    }

    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// Checksum over the whole message is right.
    pub fn verify_checksum(&self) -> bool {
        checksum::sum(self.buffer.as_ref(), 0) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    pub fn set_msg_type(&mut self, t: u8) {
        self.buffer.as_mut()[field::TYPE] = t;
    }

    pub fn set_code(&mut self, c: u8) {
        self.buffer.as_mut()[field::CODE] = c;
    }

    pub fn set_echo(&mut self, ident: u16, seq: u16) {
        set_u16(self.buffer.as_mut(), field::ECHO_IDENT.start, ident);
        set_u16(self.buffer.as_mut(), field::ECHO_SEQ.start, seq);
    }

    /// Unused field zero and the next-hop MTU, for destination unreachable / fragmentation needed.
    pub fn set_next_hop_mtu(&mut self, mtu: u16) {
        set_u16(self.buffer.as_mut(), field::UNUSED.start, 0);
        set_u16(self.buffer.as_mut(), field::NEXT_HOP_MTU.start, mtu);
    }

    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }

    /// Compute and store the checksum over the whole buffer.
    pub fn fill_checksum(&mut self) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM.start, 0);
        let c = checksum::checksum(self.buffer.as_ref());
        set_u16(self.buffer.as_mut(), field::CHECKSUM.start, c);
    }
}

/// The ICMPv4 messages weft reads and writes, as plain values (smoltcp's `Repr`). The data (an echo's
/// payload, or the quoted datagram of an error) is the buffer after the 8-byte header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icmpv4Repr {
    EchoRequest {
        ident: u16,
        seq: u16,
    },
    EchoReply {
        ident: u16,
        seq: u16,
    },
    /// Destination unreachable, fragmentation needed and DF set (RFC 1191), with the next-hop MTU.
    FragNeeded {
        mtu: u16,
    },
    /// Destination unreachable with another code (net, host, protocol, port ...).
    DstUnreachable {
        code: u8,
    },
    TimeExceeded {
        code: u8,
    },
}

impl Icmpv4Repr {
    /// The message in a checked buffer whose checksum (over the whole buffer) is right.
    pub fn parse<T: AsRef<[u8]>>(p: &Icmpv4Packet<T>) -> Result<Icmpv4Repr> {
        if !p.verify_checksum() {
            return Err(WireError::Malformed("ICMP checksum"));
        }
        Ok(match (p.msg_type(), p.code()) {
            (TYPE_ECHO_REQUEST, 0) => Icmpv4Repr::EchoRequest { ident: p.echo_ident(), seq: p.echo_seq() },
            (TYPE_ECHO_REPLY, 0) => Icmpv4Repr::EchoReply { ident: p.echo_ident(), seq: p.echo_seq() },
            (TYPE_DEST_UNREACHABLE, CODE_FRAG_NEEDED) => Icmpv4Repr::FragNeeded { mtu: p.next_hop_mtu() },
            (TYPE_DEST_UNREACHABLE, code) => Icmpv4Repr::DstUnreachable { code },
            (TYPE_TIME_EXCEEDED, code) => Icmpv4Repr::TimeExceeded { code },
            _ => return Err(WireError::Malformed("ICMP type weft does not handle")),
        })
    }

    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Write the header over a buffer whose data is already in place, and the checksum over all of it.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Icmpv4Packet<T>) {
        let (t, code, word) = match *self {
            Icmpv4Repr::EchoRequest { ident, seq } => (TYPE_ECHO_REQUEST, 0, (ident, seq)),
            Icmpv4Repr::EchoReply { ident, seq } => (TYPE_ECHO_REPLY, 0, (ident, seq)),
            Icmpv4Repr::FragNeeded { mtu } => (TYPE_DEST_UNREACHABLE, CODE_FRAG_NEEDED, (0, mtu)),
            Icmpv4Repr::DstUnreachable { code } => (TYPE_DEST_UNREACHABLE, code, (0, 0)),
            Icmpv4Repr::TimeExceeded { code } => (TYPE_TIME_EXCEEDED, code, (0, 0)),
        };
        p.set_msg_type(t);
        p.set_code(code);
        // The second word: identifier and sequence, or unused and next-hop MTU (zero when unused).
        p.set_echo(word.0, word.1);
        p.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rustfmt::skip]
    const FRAG_NEEDED: [u8; 36] = [
        0x03, 0x04, 0x00, 0x00, // unreachable, fragmentation needed, checksum (filled)
        0x00, 0x00, 0x05, 0xaa, // unused, next-hop MTU 1450
        // original IPv4 header
        0x45, 0x00, 0x05, 0xb7, 0x00, 0x01, 0x40, 0x00, 0x40, 0x01, 0x00, 0x00,
        0x0a, 0xf4, 0x01, 0x02, 0x0a, 0xf4, 0x02, 0x02,
        // first 8 bytes of its payload
        0x08, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01,
    ];

    #[test]
    fn roundtrip_frag_needed() {
        let mut b = [0xa5u8; 36];
        {
            let mut p = Icmpv4Packet::new_unchecked(&mut b[..]);
            p.set_msg_type(TYPE_DEST_UNREACHABLE);
            p.set_code(CODE_FRAG_NEEDED);
            p.set_next_hop_mtu(1450);
            p.data_mut().copy_from_slice(&FRAG_NEEDED[8..]);
            p.fill_checksum();
        }
        let p = Icmpv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.msg_type(), TYPE_DEST_UNREACHABLE);
        assert_eq!(p.code(), CODE_FRAG_NEEDED);
        assert_eq!(p.next_hop_mtu(), 1450);
        assert!(p.verify_checksum());
        assert_eq!(&b[4..], &FRAG_NEEDED[4..]);
    }

    #[test]
    fn parse_echo_and_truncated() {
        let mut b = [0x08, 0x00, 0x00, 0x00, 0x12, 0x34, 0x00, 0x07, 0xde, 0xad];
        Icmpv4Packet::new_unchecked(&mut b[..]).fill_checksum();
        let p = Icmpv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!((p.msg_type(), p.echo_ident(), p.echo_seq()), (TYPE_ECHO_REQUEST, 0x1234, 7));
        assert!(p.verify_checksum());
        assert_eq!(Icmpv4Packet::new_checked(&b[..7]).unwrap_err(), WireError::Truncated);
    }

    #[test]
    fn repr_roundtrip_every_kind() {
        let kinds = [
            Icmpv4Repr::EchoRequest { ident: 0x1234, seq: 7 },
            Icmpv4Repr::EchoReply { ident: 1, seq: 65535 },
            Icmpv4Repr::FragNeeded { mtu: 1450 },
            Icmpv4Repr::DstUnreachable { code: 3 },
            Icmpv4Repr::TimeExceeded { code: 0 },
        ];
        for k in kinds {
            let mut b = [0xa5u8; 36];
            b[8..].copy_from_slice(&FRAG_NEEDED[8..]);
            k.emit(&mut Icmpv4Packet::new_unchecked(&mut b[..]));
            assert_eq!(Icmpv4Repr::parse(&Icmpv4Packet::new_checked(&b[..]).unwrap()), Ok(k));
        }
        let mut b = [0xa5u8; 36];
        b[8..].copy_from_slice(&FRAG_NEEDED[8..]);
        Icmpv4Repr::FragNeeded { mtu: 1450 }.emit(&mut Icmpv4Packet::new_unchecked(&mut b[..]));
        assert_eq!(&b[4..], &FRAG_NEEDED[4..], "unused word zero, MTU, quoted datagram");
        b[3] ^= 1;
        assert!(Icmpv4Repr::parse(&Icmpv4Packet::new_checked(&b[..]).unwrap()).is_err());
    }
}
