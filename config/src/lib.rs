//! The typed model of what operators and etcd tell weft: flannel's network config (`<prefix>/config`),
//! flannel's subnet lease JSON and key names, MAC addresses and IPv4 prefixes. Parsing validates and
//! every error names the field that is wrong.

pub mod lease;
pub mod mac;
pub mod net;
pub mod network;
pub mod node;
pub mod state;

pub use lease::{Lease, LeaseError, SubnetKey};
pub use mac::{MacAddr, MacParseError};
pub use net::{Ipv4Net, NetParseError};
pub use network::{NetworkConfig, NetworkConfigError, DEFAULT_VXLAN_PORT};
