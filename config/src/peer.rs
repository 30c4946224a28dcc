//! A remote node as the tables need it. One type from where it enters (an etcd lease, the static
//! config, a test) to the tables that encapsulate towards it; the filtering happens once, here.

use std::net::Ipv4Addr;

use crate::{BackendType, Ipv4Net, Lease, MacAddr, Vni};

/// A remote node: its subnet, its PublicIP (the outer destination, or the next hop for host-gw) and, for
/// VXLAN, its VtepMAC (the inner destination; zero for host-gw and udp leases, which carry none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    pub subnet: Ipv4Net,
    pub public_ip: Ipv4Addr,
    pub vtep_mac: MacAddr,
}

impl Peer {
    /// The lease of `subnet` as a peer of a network of `backend` (and `vni` for VXLAN), as flanneld's
    /// backends take leases: vxlan and host-gw only leases of their own BackendType (vxlan also only
    /// of our VNI, with backend data that parses); udp every lease, since its relay routes to any
    /// PublicIP and flanneld's udp backend filters nothing.
    pub fn from_lease(subnet: Ipv4Net, lease: &Lease, backend: BackendType, vni: Vni) -> Option<Peer> {
        let public_ip = lease.public_ip;
        match backend {
            BackendType::Vxlan => {
                let d = lease.vxlan_data().ok()?;
                (d.vni == vni).then_some(Peer { subnet, public_ip, vtep_mac: d.vtep_mac })
            }
            BackendType::HostGw => {
                (lease.backend_type == "host-gw").then_some(Peer { subnet, public_ip, vtep_mac: MacAddr::ZERO })
            }
            BackendType::Udp => Some(Peer { subnet, public_ip, vtep_mac: MacAddr::ZERO }),
        }
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
        let vx = BackendType::Vxlan;
        let l = Lease::vxlan(ip, one, mac);
        assert_eq!(Peer::from_lease(subnet, &l, vx, one), Some(Peer { subnet, public_ip: ip, vtep_mac: mac }));
        assert_eq!(Peer::from_lease(subnet, &l, vx, Vni::new(2).unwrap()), None, "another VNI");
        let hostgw = Lease::from_json(r#"{"PublicIP":"192.168.77.2","BackendType":"host-gw"}"#).unwrap();
        assert_eq!(Peer::from_lease(subnet, &hostgw, vx, one), None, "another backend");
    }

    #[test]
    fn host_gw_takes_host_gw_leases_and_udp_takes_all() {
        let subnet: Ipv4Net = "10.244.2.0/24".parse().unwrap();
        let ip = Ipv4Addr::new(192, 168, 77, 2);
        let one = Vni::ONE;
        let plain = Peer { subnet, public_ip: ip, vtep_mac: MacAddr::ZERO };
        let (hg, udp, vx) = (Lease::host_gw(ip), Lease::udp(ip), Lease::vxlan(ip, one, MacAddr([2, 0, 0, 0, 0, 2])));
        assert_eq!(Peer::from_lease(subnet, &hg, BackendType::HostGw, one), Some(plain));
        assert_eq!(
            Peer::from_lease(subnet, &udp, BackendType::HostGw, one),
            None,
            "flanneld: Ignoring non-host-gw subnet"
        );
        assert_eq!(Peer::from_lease(subnet, &vx, BackendType::HostGw, one), None);
        for l in [&hg, &udp, &vx] {
            assert_eq!(Peer::from_lease(subnet, l, BackendType::Udp, one), Some(plain));
        }
    }
}
