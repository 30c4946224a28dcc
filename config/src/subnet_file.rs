//! flannel's subnet file (default `/run/flannel/subnet.env`), read by the CNI plugin and by the next
//! start of the node:
//!
//! ```text
//! FLANNEL_NETWORK=10.244.0.0/16
//! FLANNEL_SUBNET=10.244.1.1/24
//! FLANNEL_MTU=1450
//! FLANNEL_IPMASQ=false
//! ```
//! FLANNEL_SUBNET is the first host address with the subnet's prefix length; FLANNEL_MTU is the
//! underlay MTU minus what the backend adds: 50 bytes for VXLAN, 28 for udp, nothing for host-gw.

use std::net::Ipv4Addr;
use std::path::Path;

use crate::Ipv4Net;

use crate::BackendType;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetFile {
    pub network: Ipv4Net,
    pub subnet: Ipv4Net,
    pub mtu: u16,
    pub ipmasq: bool,
}

impl SubnetFile {
    /// The file for a node of `backend` with `subnet` on an underlay of `underlay_mtu`.
    pub fn new(network: Ipv4Net, subnet: Ipv4Net, underlay_mtu: u16, backend: BackendType, ipmasq: bool) -> SubnetFile {
        SubnetFile { network, subnet, mtu: underlay_mtu.saturating_sub(backend.overhead()), ipmasq }
    }

    pub fn render(&self) -> String {
        format!(
            "FLANNEL_NETWORK={}\nFLANNEL_SUBNET={}/{}\nFLANNEL_MTU={}\nFLANNEL_IPMASQ={}\n",
            self.network,
            self.subnet.first_host(),
            self.subnet.prefix_len(),
            self.mtu,
            self.ipmasq
        )
    }

    /// Parse a subnet file; `None` when FLANNEL_NETWORK or FLANNEL_SUBNET is missing or malformed.
    pub fn parse(text: &str) -> Option<SubnetFile> {
        let mut network = None;
        let mut subnet = None;
        let mut mtu = 0;
        let mut ipmasq = false;
        for line in text.lines() {
            let Some((k, v)) = line.split_once('=') else { continue };
            match k.trim() {
                "FLANNEL_NETWORK" => network = v.trim().parse().ok(),
                "FLANNEL_SUBNET" => subnet = v.trim().parse::<Ipv4Net>().ok(),
                "FLANNEL_MTU" => mtu = v.trim().parse().unwrap_or(0),
                "FLANNEL_IPMASQ" => ipmasq = v.trim() == "true",
                _ => {}
            }
        }
        Some(SubnetFile { network: network?, subnet: subnet?, mtu, ipmasq })
    }

    /// Write the file atomically: a temporary file in the same directory, fsync, rename.
    pub fn write_atomic(&self, path: &Path) -> std::io::Result<()> {
        crate::state::write_atomic(path, self.render().as_bytes())
    }

    /// Read the previous subnet from `path`, if any.
    pub fn read_previous(path: &Path) -> Option<SubnetFile> {
        std::fs::read_to_string(path).ok().as_deref().and_then(SubnetFile::parse)
    }

    /// The node's gateway address (first host of the subnet).
    pub fn gateway(&self) -> Ipv4Addr {
        self.subnet.first_host()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_like_flanneld() {
        let (net, sub) = ("10.244.0.0/16".parse().unwrap(), "10.244.1.0/24".parse().unwrap());
        let f = SubnetFile::new(net, sub, 1500, BackendType::Vxlan, false);
        assert_eq!(
            f.render(),
            "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n"
        );
        // flanneld's udp backend: MTU = underlay - 28; host-gw: the underlay's own.
        assert_eq!(SubnetFile::new(net, sub, 1500, BackendType::Udp, false).mtu, 1472);
        assert_eq!(SubnetFile::new(net, sub, 1500, BackendType::HostGw, false).mtu, 1500);
    }

    #[test]
    fn roundtrip_through_a_file() {
        let dir = std::env::temp_dir().join(format!("weft-subnet-file-{}", std::process::id()));
        let path = dir.join("subnet.env");
        let f = SubnetFile::new(
            "10.244.0.0/16".parse().unwrap(),
            "10.244.7.0/24".parse().unwrap(),
            9000,
            BackendType::Vxlan,
            true,
        );
        f.write_atomic(&path).unwrap();
        let back = SubnetFile::read_previous(&path).unwrap();
        assert_eq!(back, f);
        assert_eq!(back.subnet.to_string(), "10.244.7.0/24");
        assert_eq!(back.mtu, 8950);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn parse_rejects_incomplete() {
        assert!(SubnetFile::parse("FLANNEL_NETWORK=10.244.0.0/16\n").is_none());
        assert!(SubnetFile::parse("FLANNEL_SUBNET=garbage\nFLANNEL_NETWORK=10.244.0.0/16").is_none());
        assert!(SubnetFile::read_previous(Path::new("/nonexistent/weft/subnet.env")).is_none());
    }
}
