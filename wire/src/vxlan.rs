//! VXLAN headers (RFC 7348).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |R|R|R|R|I|R|R|R|            Reserved                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                VXLAN Network Identifier (VNI) |   Reserved    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//! <https://www.rfc-editor.org/rfc/rfc7348#section-5>
//!
//! On receipt weft is as strict as the Linux kernel's `vxlan_rcv` (without GBP/GPE): the I flag must be
//! set and every other flag and reserved bit clear, so VXLAN-GPE frames (flags 0x0c) are refused.

use std::fmt;

use super::{Result, WireError};

pub mod field {
    use crate::Field;
    pub const FLAGS: usize = 0;
    pub const RESERVED1: Field = 1..4;
    pub const VNI: Field = 4..7;
    pub const RESERVED2: usize = 7;
}

pub const HEADER_LEN: usize = 8;
/// The I flag: the VNI is valid.
pub const FLAG_I: u8 = 0x08;

/// A 24-bit VXLAN network identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Vni(u32);

impl Vni {
    pub const MAX: u32 = (1 << 24) - 1;
    /// flannel's default.
    pub const ONE: Vni = Vni(1);

    pub fn new(v: u32) -> Option<Vni> {
        (v <= Self::MAX).then_some(Vni(v))
    }

    #[inline]
    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Vni {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A view of a VXLAN header and the inner frame after it.
#[derive(Debug, Clone)]
pub struct VxlanPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VxlanPacket<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        VxlanPacket { buffer }
    }

    /// Wrap after checking the 8-byte header fits. Flag validity is a separate question: [`Self::check_flags`].
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(Self::new_unchecked(buffer))
    }

    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// The I flag set, all other flag and reserved bits clear (the kernel's rule).
    #[inline(always)]
    pub fn check_flags(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b[field::FLAGS] & FLAG_I == 0 {
            return Err(WireError::Malformed("VXLAN I flag clear"));
        }
        if b[field::FLAGS] != FLAG_I || b[1] | b[2] | b[3] | b[field::RESERVED2] != 0 {
            return Err(WireError::Malformed("VXLAN reserved bits set"));
        }
        Ok(())
    }

    #[inline(always)]
    pub fn vni(&self) -> Vni {
        let b = self.buffer.as_ref();
        Vni(u32::from_be_bytes([0, b[4], b[5], b[6]]))
    }

    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VxlanPacket<T> {
    /// Write a valid header: I flag, `vni`, reserved bits zero.
    pub fn emit(&mut self, vni: Vni) {
        let v = vni.0.to_be_bytes();
        self.buffer.as_mut()[..HEADER_LEN].copy_from_slice(&[FLAG_I, 0, 0, 0, v[1], v[2], v[3], 0]);
    }
}

/// A VXLAN header as plain values (smoltcp's `Repr`): only the VNI varies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanRepr {
    pub vni: Vni,
}

impl VxlanRepr {
    /// The VNI of a header whose flags pass [`VxlanPacket::check_flags`].
    pub fn parse<T: AsRef<[u8]>>(p: &VxlanPacket<T>) -> Result<VxlanRepr> {
        p.check_flags()?;
        Ok(VxlanRepr { vni: p.vni() })
    }

    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut VxlanPacket<T>) {
        p.emit(self.vni);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rustfmt::skip]
    const VNI1: [u8; 8] = [
        0x08, 0x00, 0x00, 0x00, // I flag, reserved
        0x00, 0x00, 0x01, 0x00, // VNI 1, reserved
    ];

    #[test]
    fn parse_vni() {
        let p = VxlanPacket::new_checked(&VNI1[..]).unwrap();
        assert_eq!(p.vni(), Vni::new(1).unwrap());
        assert!(p.check_flags().is_ok());
        let big = [0x08, 0, 0, 0, 0xff, 0xff, 0xff, 0];
        assert_eq!(VxlanPacket::new_checked(&big[..]).unwrap().vni().get(), Vni::MAX);
    }

    #[test]
    fn parse_bad_flags() {
        let clear = [0x00, 0, 0, 0, 0, 0, 1, 0];
        assert!(VxlanPacket::new_checked(&clear[..]).unwrap().check_flags().is_err());
        // VXLAN-GPE style as scapy/TRex build it by default: flags 0x0c, next protocol 3.
        let gpe = [0x0c, 0, 0, 0x03, 0, 0, 1, 0];
        assert!(VxlanPacket::new_checked(&gpe[..]).unwrap().check_flags().is_err());
        let reserved = [0x08, 0, 0, 0, 0, 0, 1, 0x01];
        assert!(VxlanPacket::new_checked(&reserved[..]).unwrap().check_flags().is_err());
        assert_eq!(VxlanPacket::new_checked(&VNI1[..7]).unwrap_err(), WireError::Truncated);
    }

    #[test]
    fn emit_into_poisoned_buffer() {
        let mut b = [0xa5u8; 8];
        VxlanPacket::new_unchecked(&mut b[..]).emit(Vni::new(1).unwrap());
        assert_eq!(b, VNI1);
        assert!(Vni::new(1 << 24).is_none());
    }

    #[test]
    fn repr_roundtrip() {
        let repr = VxlanRepr::parse(&VxlanPacket::new_checked(&VNI1[..]).unwrap()).unwrap();
        assert_eq!(repr.vni, Vni::ONE);
        let mut b = [0xa5u8; 8];
        repr.emit(&mut VxlanPacket::new_unchecked(&mut b[..]));
        assert_eq!(b, VNI1);
        let gpe = [0x0c, 0, 0, 0x03, 0, 0, 1, 0];
        assert!(VxlanRepr::parse(&VxlanPacket::new_checked(&gpe[..]).unwrap()).is_err());
    }
}
