//! A remote node as the tables need it. One type from where it enters (an etcd lease, the static
//! config, a test) to the tables that encapsulate towards it; the filtering happens once, here.

use std::net::Ipv4Addr;

use crate::{Ipv4Net, Lease, MacAddr, Vni};

/// A remote VXLAN node: its subnet, its PublicIP (the outer destination) and its VtepMAC (the inner
/// destination).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    pub subnet: Ipv4Net,
    pub public_ip: Ipv4Addr,
    pub vtep_mac: MacAddr,
}

impl Peer {
    /// The lease of `subnet` as a peer of a VXLAN network with `vni`; `None` for another backend
    /// (host-gw, udp: not VXLAN peers, as flanneld has it), another VNI, or backend data that does not
    /// parse.
    pub fn from_lease(subnet: Ipv4Net, lease: &Lease, vni: Vni) -> Option<Peer> {
        if !lease.is_vxlan() {
            return None;
        }
        let d = lease.vxlan_data().ok()?;
        (d.vni == vni).then_some(Peer { subnet, public_ip: lease.public_ip, vtep_mac: d.vtep_mac })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_vxlan_leases_of_our_vni_are_peers() {
        let subnet: Ipv4Net = "10.244.2.0/24".parse().unwrap();
        let mac: MacAddr = "02:00:00:00:00:02".parse().unwrap();
        let ip = Ipv4Addr::new(192, 168, 77, 2);
        let one = Vni::new(1).unwrap();
        let l = Lease::vxlan(ip, one, mac);
        assert_eq!(Peer::from_lease(subnet, &l, one), Some(Peer { subnet, public_ip: ip, vtep_mac: mac }));
        assert_eq!(Peer::from_lease(subnet, &l, Vni::new(2).unwrap()), None, "another VNI");
        let hostgw = Lease::from_json(r#"{"PublicIP":"192.168.77.2","BackendType":"host-gw"}"#).unwrap();
        assert_eq!(Peer::from_lease(subnet, &hostgw, one), None, "another backend");
    }
}
