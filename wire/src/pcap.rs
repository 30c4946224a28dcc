//! A reader and writer for classic libpcap files (Ethernet link type), for fixtures, tests and the
//! bench's replay files. <https://wiki.wireshark.org/Development/LibpcapFileFormat>

use super::WireError;

const MAGIC_US: u32 = 0xa1b2_c3d4;
const MAGIC_NS: u32 = 0xa1b2_3c4d;
const GLOBAL_LEN: usize = 24;
const RECORD_LEN: usize = 16;
pub const LINKTYPE_ETHERNET: u32 = 1;

/// One captured frame.
#[derive(Debug, Clone, Copy)]
pub struct PcapRecord<'a> {
    pub ts_sec: u32,
    pub ts_frac: u32,
    pub orig_len: u32,
    pub data: &'a [u8],
}

/// Iterates over the records of a pcap file held in memory.
#[derive(Debug)]
pub struct PcapReader<'a> {
    rest: &'a [u8],
    swapped: bool,
    pub linktype: u32,
}

impl<'a> PcapReader<'a> {
    pub fn new(bytes: &'a [u8]) -> Result<Self, WireError> {
        if bytes.len() < GLOBAL_LEN {
            return Err(WireError::Truncated);
        }
        let magic = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let swapped = match magic {
            MAGIC_US | MAGIC_NS => false,
            m if m.swap_bytes() == MAGIC_US || m.swap_bytes() == MAGIC_NS => true,
            _ => return Err(WireError::Malformed("not a pcap file (bad magic)")),
        };
        let mut r = PcapReader { rest: &bytes[GLOBAL_LEN..], swapped, linktype: 0 };
        r.linktype = r.u32_at(bytes, 20);
        Ok(r)
    }

    fn u32_at(&self, b: &[u8], at: usize) -> u32 {
        let v = u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        if self.swapped {
            v.swap_bytes()
        } else {
            v
        }
    }
}

impl<'a> Iterator for PcapReader<'a> {
    type Item = Result<PcapRecord<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        if self.rest.len() < RECORD_LEN {
            self.rest = &[];
            return Some(Err(WireError::Truncated));
        }
        let h = self.rest;
        let incl = self.u32_at(h, 8) as usize;
        if h.len() < RECORD_LEN + incl {
            self.rest = &[];
            return Some(Err(WireError::Truncated));
        }
        let rec = PcapRecord {
            ts_sec: self.u32_at(h, 0),
            ts_frac: self.u32_at(h, 4),
            orig_len: self.u32_at(h, 12),
            data: &h[RECORD_LEN..RECORD_LEN + incl],
        };
        self.rest = &h[RECORD_LEN + incl..];
        Some(Ok(rec))
    }
}

/// Write `frames` as a little-endian, microsecond, Ethernet pcap file.
pub fn write_pcap<'a>(frames: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC_US.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
    for (i, f) in frames.into_iter().enumerate() {
        out.extend_from_slice(&(i as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_write_read() {
        let frames: [&[u8]; 2] = [&[1, 2, 3], &[4; 60]];
        let file = write_pcap(frames);
        let r = PcapReader::new(&file).unwrap();
        assert_eq!(r.linktype, LINKTYPE_ETHERNET);
        let got: Vec<_> = r.map(|x| x.unwrap().data.to_vec()).collect();
        assert_eq!(got, vec![vec![1, 2, 3], vec![4; 60]]);
    }

    #[test]
    fn parse_truncated_and_garbage() {
        let file = write_pcap([&[1u8, 2, 3][..]]);
        let mut r = PcapReader::new(&file[..file.len() - 1]).unwrap();
        assert_eq!(r.next().unwrap().unwrap_err(), WireError::Truncated);
        assert!(r.next().is_none());
        assert!(PcapReader::new(&[0u8; 24]).is_err());
        assert!(PcapReader::new(&[0u8; 3]).is_err());
    }

    #[test]
    fn parse_kernel_fixture() {
        let frames = crate::testdata::kernel_vxlan_ping();
        assert_eq!(frames.len(), 2);
    }
}
