//! IPv4 prefixes, as flannel's `ip.IP4Net`.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network: address with host bits clear, and prefix length 0..=32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Net {
    addr: u32,
    prefix_len: u8,
}

/// Why a string is not an IPv4 prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not an IPv4 prefix like 10.244.0.0/16: {why}")]
pub struct NetParseError {
    pub input: String,
    pub why: &'static str,
}

pub fn mask(prefix_len: u8) -> u32 {
    if prefix_len == 0 {
        0
    } else {
        u32::MAX << (32 - prefix_len as u32)
    }
}

impl Ipv4Net {
    /// The network containing `addr` with this prefix length (host bits dropped, as Go's ParseCIDR does
    /// for the network it returns). `None` when the length exceeds 32.
    pub fn new(addr: Ipv4Addr, prefix_len: u8) -> Option<Ipv4Net> {
        (prefix_len <= 32).then(|| Ipv4Net { addr: u32::from(addr) & mask(prefix_len), prefix_len })
    }

    pub fn addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.addr)
    }

    pub fn addr_u32(&self) -> u32 {
        self.addr
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    pub fn mask(&self) -> u32 {
        mask(self.prefix_len)
    }

    /// Number of addresses in the network.
    pub fn size(&self) -> u64 {
        1u64 << (32 - self.prefix_len as u32)
    }

    pub fn contains(&self, a: Ipv4Addr) -> bool {
        u32::from(a) & self.mask() == self.addr
    }

    /// Whether `other` lies wholly inside this network.
    pub fn contains_net(&self, other: &Ipv4Net) -> bool {
        other.prefix_len >= self.prefix_len && self.contains(other.addr())
    }

    pub fn overlaps(&self, other: &Ipv4Net) -> bool {
        self.contains_net(other) || other.contains_net(self)
    }

    /// The first address after the network (wrapping at the top of the address space).
    pub fn next_addr(&self) -> u32 {
        self.addr.wrapping_add(self.size() as u32)
    }

    /// The first host address, which flannel gives the node's bridge / gateway (e.g. 10.244.1.1).
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.addr + 1)
    }

    /// The last address (broadcast).
    pub fn last_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.addr | !self.mask())
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr(), self.prefix_len)
    }
}

impl FromStr for Ipv4Net {
    type Err = NetParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why| NetParseError { input: s.to_owned(), why };
        let (a, l) = s.split_once('/').ok_or_else(|| err("missing /prefix-length"))?;
        let addr: Ipv4Addr = a.parse().map_err(|_| err("bad IPv4 address"))?;
        if l.is_empty() || l.len() > 2 || !l.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("bad prefix length"));
        }
        let len: u8 = l.parse().map_err(|_| err("bad prefix length"))?;
        Ipv4Net::new(addr, len).ok_or_else(|| err("prefix length above 32"))
    }
}

impl serde::Serialize for Ipv4Net {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display() {
        let n: Ipv4Net = "10.244.0.0/16".parse().unwrap();
        assert_eq!(n.to_string(), "10.244.0.0/16");
        assert_eq!(n.size(), 65536);
        assert!(n.contains(Ipv4Addr::new(10, 244, 255, 255)));
        assert!(!n.contains(Ipv4Addr::new(10, 245, 0, 0)));
        assert_eq!("10.244.1.7/24".parse::<Ipv4Net>().unwrap().to_string(), "10.244.1.0/24");
        let s: Ipv4Net = "10.244.1.0/24".parse().unwrap();
        assert_eq!(s.first_host(), Ipv4Addr::new(10, 244, 1, 1));
        assert_eq!(s.last_addr(), Ipv4Addr::new(10, 244, 1, 255));
        assert!(n.contains_net(&s) && !s.contains_net(&n) && s.overlaps(&n));
        assert_eq!("0.0.0.0/0".parse::<Ipv4Net>().unwrap().size(), 1 << 32);
    }

    #[test]
    fn parse_rejects_garbage() {
        for bad in ["10.244.0.0", "10.244.0.0/33", "10.244.0/16", "x/8", "10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/ 8"] {
            assert!(bad.parse::<Ipv4Net>().is_err(), "{bad}");
        }
    }
}
