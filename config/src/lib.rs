//! The typed model of what operators and etcd tell weft: flannel's network config (`<prefix>/config`),
//! flannel's subnet lease JSON and key names, MAC addresses and IPv4 prefixes. Parsing validates and
//! every error names the field that is wrong.

pub mod lease;
pub mod network;
pub mod node;
pub mod peer;
pub mod state;
pub mod subnet_file;

pub use lease::{Lease, LeaseError, SubnetKey};
pub use network::{BackendType, NetworkConfig, NetworkConfigError, DEFAULT_UDP_PORT, DEFAULT_VXLAN_PORT};
pub use peer::Peer;
pub use weft_wire::mac;
pub use weft_wire::net;
pub use weft_wire::{Ipv4Net, MacAddr, MacParseError, NetParseError, Vni};
