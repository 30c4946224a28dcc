//! MAC addresses, shared by the wire formats and the lease JSON (flannel's VtepMAC).

use std::fmt;

/// Why a string is not a MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MacParseError(pub &'static str);

/// A 48-bit MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// A unicast, locally administered address (as flannel generates for VtepMAC).
    pub fn is_local_unicast(&self) -> bool {
        self.0[0] & 0x03 == 0x02
    }

    /// Make random bytes into a unicast, locally administered address.
    pub fn local_from_bytes(mut b: [u8; 6]) -> MacAddr {
        b[0] = (b[0] & 0xfe) | 0x02;
        MacAddr(b)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5])
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::str::FromStr for MacAddr {
    type Err = MacParseError;
    /// `aa:bb:cc:dd:ee:ff` (also with `-`), as Go's net.ParseMAC takes flannel's VtepMAC.
    fn from_str(s: &str) -> Result<MacAddr, MacParseError> {
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for b in &mut out {
            let p = parts.next().ok_or(MacParseError("MAC address needs six bytes"))?;
            if p.len() != 2 {
                return Err(MacParseError("MAC address byte must be two hex digits"));
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| MacParseError("MAC address byte is not hex"))?;
        }
        if parts.next().is_some() {
            return Err(MacParseError("MAC address has more than six bytes"));
        }
        Ok(MacAddr(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parse_and_display_roundtrip() {
        let m: MacAddr = "c6:d2:32:6f:8f:44".parse().unwrap();
        assert_eq!(m.to_string(), "c6:d2:32:6f:8f:44");
        assert!(m.is_local_unicast());
        assert!("c6:d2:32:6f:8f".parse::<MacAddr>().is_err());
        assert!("c6:d2:32:6f:8f:44:00".parse::<MacAddr>().is_err());
        assert!("zz:d2:32:6f:8f:44".parse::<MacAddr>().is_err());
        assert!(MacAddr::local_from_bytes([0xff; 6]).is_local_unicast());
    }
}
