//! Ethernet II frames, with one 802.1Q tag recognised.
//!
//! ```text
//! +----------------+----------------+------------+ - - - - - - - - - - - - +---------+
//! | dst MAC (6)    | src MAC (6)    | type (2)   | [0x8100: TCI (2) type(2)] | payload |
//! +----------------+----------------+------------+ - - - - - - - - - - - - +---------+
//! ```
//! IEEE 802.3 / 802.1Q; <https://en.wikipedia.org/wiki/IEEE_802.1Q>.

use super::{get_u16, set_u16, Result, WireError};

pub use crate::mac::MacAddr;

/// EtherType values weft acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EtherType;

impl EtherType {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    pub const VLAN: u16 = 0x8100;
    pub const IPV6: u16 = 0x86dd;
}

pub mod field {
    use crate::Field;
    pub const DST: Field = 0..6;
    pub const SRC: Field = 6..12;
    pub const ETHERTYPE: Field = 12..14;
    pub const VLAN_TCI: Field = 14..16;
    pub const VLAN_ETHERTYPE: Field = 16..18;
}

/// Length of an untagged Ethernet header.
pub const HEADER_LEN: usize = 14;
/// Length of an Ethernet header with one 802.1Q tag.
pub const VLAN_HEADER_LEN: usize = 18;

/// A view of an Ethernet frame.
#[derive(Debug, Clone)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wrap without checks; accessors may panic on a short buffer.
    pub const fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    /// Wrap after checking that the header (and the 802.1Q tag, if the type says there is one) fits.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let f = Self::new_unchecked(buffer);
        let len = f.buffer.as_ref().len();
        if len < HEADER_LEN || (f.outer_ethertype() == EtherType::VLAN && len < VLAN_HEADER_LEN) {
            return Err(WireError::Truncated);
        }
        Ok(f)
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn dst(&self) -> MacAddr {
        let mut m = [0; 6];
        m.copy_from_slice(&self.buffer.as_ref()[field::DST]);
        MacAddr(m)
    }

    #[inline]
    pub fn src(&self) -> MacAddr {
        let mut m = [0; 6];
        m.copy_from_slice(&self.buffer.as_ref()[field::SRC]);
        MacAddr(m)
    }

    /// The type field right after the addresses (0x8100 for a tagged frame).
    #[inline(always)]
    pub fn outer_ethertype(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ETHERTYPE.start)
    }

    /// The 802.1Q tag control information, if the frame is tagged.
    #[inline]
    pub fn vlan_tci(&self) -> Option<u16> {
        (self.outer_ethertype() == EtherType::VLAN).then(|| get_u16(self.buffer.as_ref(), field::VLAN_TCI.start))
    }

    /// The VLAN id (12 bits) if tagged.
    pub fn vlan_id(&self) -> Option<u16> {
        self.vlan_tci().map(|t| t & 0x0fff)
    }

    /// The payload's EtherType, looking through one 802.1Q tag.
    #[inline]
    pub fn ethertype(&self) -> u16 {
        if self.outer_ethertype() == EtherType::VLAN {
            get_u16(self.buffer.as_ref(), field::VLAN_ETHERTYPE.start)
        } else {
            self.outer_ethertype()
        }
    }

    /// Header length: 14, or 18 with a tag.
    #[inline]
    pub fn header_len(&self) -> usize {
        if self.outer_ethertype() == EtherType::VLAN {
            VLAN_HEADER_LEN
        } else {
            HEADER_LEN
        }
    }

    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    #[inline]
    pub fn set_dst(&mut self, m: MacAddr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&m.0);
    }

    #[inline]
    pub fn set_src(&mut self, m: MacAddr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&m.0);
    }

    /// Set the (outer) type field of an untagged frame.
    #[inline]
    pub fn set_ethertype(&mut self, t: u16) {
        set_u16(self.buffer.as_mut(), field::ETHERTYPE.start, t);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let h = self.header_len();
        &mut self.buffer.as_mut()[h..]
    }
}

/// An Ethernet header as plain values (smoltcp's `Repr`): what [`EthernetRepr::parse`] reads from a
/// checked frame and [`EthernetRepr::emit`] writes back, byte for byte. `vlan_tci` is the 802.1Q tag
/// control information of a tagged frame; `ethertype` is always the payload's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetRepr {
    pub dst: MacAddr,
    pub src: MacAddr,
    pub vlan_tci: Option<u16>,
    pub ethertype: u16,
}

impl EthernetRepr {
    pub fn parse<T: AsRef<[u8]>>(f: &EthernetFrame<T>) -> Result<EthernetRepr> {
        Ok(EthernetRepr { dst: f.dst(), src: f.src(), vlan_tci: f.vlan_tci(), ethertype: f.ethertype() })
    }

    /// 14, or 18 with a tag.
    #[inline]
    pub fn header_len(&self) -> usize {
        if self.vlan_tci.is_some() {
            VLAN_HEADER_LEN
        } else {
            HEADER_LEN
        }
    }

    /// Write the header into the first [`Self::header_len`] bytes of `f` (the caller sized it).
    #[inline(always)]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, f: &mut EthernetFrame<T>) {
        f.set_dst(self.dst);
        f.set_src(self.src);
        let b = f.buffer.as_mut();
        match self.vlan_tci {
            None => set_u16(b, field::ETHERTYPE.start, self.ethertype),
            Some(tci) => {
                set_u16(b, field::ETHERTYPE.start, EtherType::VLAN);
                set_u16(b, field::VLAN_TCI.start, tci);
                set_u16(b, field::VLAN_ETHERTYPE.start, self.ethertype);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rustfmt::skip]
    const UNTAGGED: [u8; 16] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // dst
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // src
        0x08, 0x00,                         // IPv4
        0x45, 0x00,                         // payload
    ];

    #[rustfmt::skip]
    const TAGGED: [u8; 20] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // dst broadcast
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // src
        0x81, 0x00,                         // 802.1Q
        0x20, 0x64,                         // PCP 1, VID 100
        0x08, 0x06,                         // ARP
        0x00, 0x01,                         // payload
    ];

    #[test]
    fn parse_untagged() {
        let f = EthernetFrame::new_checked(&UNTAGGED[..]).unwrap();
        assert_eq!(f.dst(), MacAddr([2, 0, 0, 0, 0, 2]));
        assert_eq!(f.src(), MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(f.ethertype(), EtherType::IPV4);
        assert_eq!(f.vlan_id(), None);
        assert_eq!(f.payload(), &[0x45, 0x00]);
    }

    #[test]
    fn parse_tagged() {
        let f = EthernetFrame::new_checked(&TAGGED[..]).unwrap();
        assert!(f.dst().is_broadcast());
        assert_eq!(f.outer_ethertype(), EtherType::VLAN);
        assert_eq!(f.vlan_id(), Some(100));
        assert_eq!(f.ethertype(), EtherType::ARP);
        assert_eq!(f.header_len(), 18);
        assert_eq!(f.payload(), &[0x00, 0x01]);
    }

    #[test]
    fn parse_truncated() {
        assert_eq!(EthernetFrame::new_checked(&UNTAGGED[..13]).unwrap_err(), WireError::Truncated);
        assert_eq!(EthernetFrame::new_checked(&TAGGED[..17]).unwrap_err(), WireError::Truncated);
        assert!(EthernetFrame::new_checked(&TAGGED[..18]).is_ok());
    }

    #[test]
    fn repr_roundtrip_untagged_and_tagged() {
        for frame in [&UNTAGGED[..], &TAGGED[..]] {
            let repr = EthernetRepr::parse(&EthernetFrame::new_checked(frame).unwrap()).unwrap();
            let mut buf = vec![0xa5u8; frame.len()];
            let h = repr.header_len();
            repr.emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
            buf[h..].copy_from_slice(&frame[h..]);
            assert_eq!(buf, frame);
        }
        let tagged = EthernetRepr::parse(&EthernetFrame::new_checked(&TAGGED[..]).unwrap()).unwrap();
        assert_eq!((tagged.vlan_tci, tagged.ethertype, tagged.header_len()), (Some(0x2064), EtherType::ARP, 18));
    }

    #[test]
    fn emit_into_poisoned_buffer() {
        let mut buf = [0xa5u8; 16];
        let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
        f.set_dst(MacAddr([2, 0, 0, 0, 0, 2]));
        f.set_src(MacAddr([2, 0, 0, 0, 0, 1]));
        f.set_ethertype(EtherType::IPV4);
        f.payload_mut().copy_from_slice(&[0x45, 0x00]);
        assert_eq!(buf, UNTAGGED);
    }
}
