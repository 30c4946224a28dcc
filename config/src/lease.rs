//! flannel's subnet leases: the key `<prefix>/subnets/10.244.1.0-24` and its JSON value
//! (flannel `pkg/subnet` `LeaseAttrs`, vxlan backend data `{"VNI":1,"VtepMAC":"…"}`):
//!
//! ```json
//! {"PublicIP":"192.168.100.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}
//! ```

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde_json::Value;

use crate::network::get_ci;
use crate::{Ipv4Net, MacAddr, Vni};

/// A subnet as flannel names it in an etcd key: `10.244.1.0-24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubnetKey(pub Ipv4Net);

impl fmt::Display for SubnetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.0.addr(), self.0.prefix_len())
    }
}

impl FromStr for SubnetKey {
    type Err = LeaseError;
    /// The last path element of a key; the network address must have its host bits clear.
    fn from_str(s: &str) -> Result<SubnetKey, LeaseError> {
        let bad = || LeaseError::Key(s.to_owned());
        let (a, l) = s.rsplit_once('-').ok_or_else(bad)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
        if l.is_empty() || l.len() > 2 || !l.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let net = Ipv4Net::new(addr, l.parse().map_err(|_| bad())?).ok_or_else(bad)?;
        if net.addr() != addr {
            return Err(bad());
        }
        Ok(SubnetKey(net))
    }
}

/// Problems with a lease key or value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    #[error("subnet key {0:?} is not of the form 10.244.1.0-24")]
    Key(String),
    #[error("lease value is not valid JSON: {0}")]
    Json(String),
    #[error("lease value: {field}: {why}")]
    Field { field: &'static str, why: String },
}

/// A lease value as flannel writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub public_ip: Ipv4Addr,
    /// "vxlan", "host-gw", ... (empty when absent).
    pub backend_type: String,
    /// The backend's own data, kept as JSON.
    pub backend_data: Value,
}

/// The VXLAN part of a lease: what a peer needs to send to that node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanLeaseData {
    pub vni: Vni,
    pub vtep_mac: MacAddr,
}

impl Lease {
    /// A vxlan lease with flannel's exact fields.
    pub fn vxlan(public_ip: Ipv4Addr, vni: Vni, vtep_mac: MacAddr) -> Lease {
        Lease {
            public_ip,
            backend_type: "vxlan".into(),
            backend_data: serde_json::json!({"VNI": vni.get(), "VtepMAC": vtep_mac.to_string()}),
        }
    }

    /// A host-gw lease as flanneld's hostgw backend writes it: no BackendData.
    pub fn host_gw(public_ip: Ipv4Addr) -> Lease {
        Lease { public_ip, backend_type: "host-gw".into(), backend_data: Value::Null }
    }

    /// A udp lease as flanneld's udp backend writes it: neither BackendType nor BackendData.
    pub fn udp(public_ip: Ipv4Addr) -> Lease {
        Lease { public_ip, backend_type: String::new(), backend_data: Value::Null }
    }

    /// The lease a node of `backend` writes (`vni` and `vtep_mac` matter for vxlan only).
    pub fn of(backend: crate::BackendType, public_ip: Ipv4Addr, vni: Vni, vtep_mac: MacAddr) -> Lease {
        match backend {
            crate::BackendType::Vxlan => Lease::vxlan(public_ip, vni, vtep_mac),
            crate::BackendType::HostGw => Lease::host_gw(public_ip),
            crate::BackendType::Udp => Lease::udp(public_ip),
        }
    }

    /// The value flannel writes, field for field and in flannel's order; an empty BackendType and a
    /// missing BackendData are left out, as Go's `omitempty` leaves them.
    pub fn to_json(&self) -> String {
        // Built by hand so the key order and `"PublicIPv6":null` are exactly flanneld's.
        let data = match &self.backend_data {
            Value::Object(o) => {
                let mut parts = Vec::new();
                for key in ["VNI", "VtepMAC"] {
                    if let Some(v) = o.get(key) {
                        parts.push(format!("{}:{}", Value::from(key), v));
                    }
                }
                for (k, v) in o.iter().filter(|(k, _)| *k != "VNI" && *k != "VtepMAC") {
                    parts.push(format!("{}:{}", Value::from(k.as_str()), v));
                }
                format!("{{{}}}", parts.join(","))
            }
            other => other.to_string(),
        };
        let mut out = format!("{{\"PublicIP\":\"{}\",\"PublicIPv6\":null", self.public_ip);
        if !self.backend_type.is_empty() {
            out.push_str(&format!(",\"BackendType\":{}", Value::from(self.backend_type.as_str())));
        }
        if !self.backend_data.is_null() {
            out.push_str(&format!(",\"BackendData\":{data}"));
        }
        out.push('}');
        out
    }

    /// Parse a lease value; keys case-insensitive as in Go.
    pub fn from_json(text: &str) -> Result<Lease, LeaseError> {
        let v: Value = serde_json::from_str(text).map_err(|e| LeaseError::Json(e.to_string()))?;
        let Value::Object(obj) = v else {
            return Err(LeaseError::Json("a lease must be a JSON object".into()));
        };
        let public_ip = match get_ci(&obj, "PublicIP") {
            Some(Value::String(s)) => s
                .parse()
                .map_err(|_| LeaseError::Field { field: "PublicIP", why: format!("{s:?} is not an IPv4 address") })?,
            Some(v) => return Err(LeaseError::Field { field: "PublicIP", why: format!("must be a string, got {v}") }),
            None => return Err(LeaseError::Field { field: "PublicIP", why: "missing".into() }),
        };
        let backend_type = match get_ci(&obj, "BackendType") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(v) => {
                return Err(LeaseError::Field { field: "BackendType", why: format!("must be a string, got {v}") })
            }
        };
        let backend_data = get_ci(&obj, "BackendData").cloned().unwrap_or(Value::Null);
        Ok(Lease { public_ip, backend_type, backend_data })
    }

    pub fn is_vxlan(&self) -> bool {
        self.backend_type == "vxlan"
    }

    /// VNI and VtepMAC of a vxlan lease.
    pub fn vxlan_data(&self) -> Result<VxlanLeaseData, LeaseError> {
        if !self.is_vxlan() {
            return Err(LeaseError::Field {
                field: "BackendType",
                why: format!("{:?} is not vxlan", self.backend_type),
            });
        }
        let Value::Object(o) = &self.backend_data else {
            return Err(LeaseError::Field { field: "BackendData", why: "missing or not an object".into() });
        };
        let vni = match get_ci(o, "VNI") {
            Some(Value::Number(n)) => {
                n.as_u64().and_then(|v| u32::try_from(v).ok()).and_then(Vni::new).ok_or_else(|| LeaseError::Field {
                    field: "BackendData.VNI",
                    why: format!("{n} is not a 24-bit VNI"),
                })?
            }
            // flannel's VNI defaults to 1 when the backend config leaves it unset.
            None | Some(Value::Null) => Vni::ONE,
            Some(v) => {
                return Err(LeaseError::Field { field: "BackendData.VNI", why: format!("must be a number, got {v}") })
            }
        };
        let vtep_mac = match get_ci(o, "VtepMAC") {
            Some(Value::String(s)) => {
                s.parse().map_err(|e| LeaseError::Field { field: "BackendData.VtepMAC", why: format!("{s:?}: {e}") })?
            }
            _ => return Err(LeaseError::Field { field: "BackendData.VtepMAC", why: "missing or not a string".into() }),
        };
        Ok(VxlanLeaseData { vni, vtep_mac })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLANNEL: &str = r#"{"PublicIP":"192.168.100.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}"#;

    #[test]
    fn emit_matches_flanneld_byte_for_byte() {
        let l = Lease::vxlan(Ipv4Addr::new(192, 168, 100, 1), Vni::ONE, "c6:d2:32:6f:8f:44".parse().unwrap());
        assert_eq!(l.to_json(), FLANNEL);
    }

    /// flanneld's host-gw and udp leases (`LeaseAttrs` with `omitempty` on BackendType and BackendData).
    #[test]
    fn emit_host_gw_and_udp_leases_as_flanneld() {
        let ip = Ipv4Addr::new(192, 168, 100, 1);
        let hg = r#"{"PublicIP":"192.168.100.1","PublicIPv6":null,"BackendType":"host-gw"}"#;
        let udp = r#"{"PublicIP":"192.168.100.1","PublicIPv6":null}"#;
        assert_eq!(Lease::host_gw(ip).to_json(), hg);
        assert_eq!(Lease::udp(ip).to_json(), udp);
        assert_eq!(Lease::from_json(hg).unwrap(), Lease::host_gw(ip));
        assert_eq!(Lease::from_json(udp).unwrap(), Lease::udp(ip));
        let mac = "c6:d2:32:6f:8f:44".parse().unwrap();
        assert_eq!(Lease::of(crate::BackendType::Vxlan, ip, Vni::ONE, mac).to_json(), FLANNEL);
        assert_eq!(Lease::of(crate::BackendType::Udp, ip, Vni::ONE, mac).to_json(), udp);
    }

    #[test]
    fn roundtrip_lease() {
        let l = Lease::from_json(FLANNEL).unwrap();
        assert_eq!(l.public_ip, Ipv4Addr::new(192, 168, 100, 1));
        let d = l.vxlan_data().unwrap();
        assert_eq!((d.vni.get(), d.vtep_mac.to_string().as_str()), (1, "c6:d2:32:6f:8f:44"));
        assert_eq!(l.to_json(), FLANNEL);
    }

    #[test]
    fn parse_lower_case_keys_and_other_backends() {
        let l = Lease::from_json(
            r#"{"publicip":"10.0.0.2","backendtype":"vxlan","backenddata":{"vni":7,"vtepmac":"02:00:00:00:00:07"}}"#,
        )
        .unwrap();
        assert_eq!(l.vxlan_data().unwrap().vni.get(), 7);
        let hg = Lease::from_json(r#"{"PublicIP":"10.0.0.3","BackendType":"host-gw"}"#).unwrap();
        assert!(!hg.is_vxlan());
        assert!(hg.vxlan_data().is_err());
    }

    #[test]
    fn parse_garbage_names_the_field() {
        for (text, field) in [
            ("not json", "JSON"),
            ("[1]", "object"),
            (r#"{"BackendType":"vxlan"}"#, "PublicIP"),
            (r#"{"PublicIP":"10.0.0.300"}"#, "PublicIP"),
            (r#"{"PublicIP":7}"#, "PublicIP"),
        ] {
            let e = Lease::from_json(text).unwrap_err().to_string();
            assert!(e.contains(field), "{text}: {e}");
        }
        let no_mac =
            Lease::from_json(r#"{"PublicIP":"10.0.0.2","BackendType":"vxlan","BackendData":{"VNI":1}}"#).unwrap();
        assert!(no_mac.vxlan_data().unwrap_err().to_string().contains("VtepMAC"));
        let big_vni = Lease::from_json(r#"{"PublicIP":"10.0.0.2","BackendType":"vxlan","BackendData":{"VNI":16777216,"VtepMAC":"02:00:00:00:00:01"}}"#).unwrap();
        assert!(big_vni.vxlan_data().unwrap_err().to_string().contains("VNI"));
    }

    #[test]
    fn subnet_key_roundtrip_and_garbage() {
        let k: SubnetKey = "10.244.1.0-24".parse().unwrap();
        assert_eq!(k.0.to_string(), "10.244.1.0/24");
        assert_eq!(k.to_string(), "10.244.1.0-24");
        for bad in ["10.244.1.0/24", "10.244.1.5-24", "10.244.1.0-33", "10.244.1.0-", "x-24", "10.244.1.0-2a"] {
            assert!(bad.parse::<SubnetKey>().is_err(), "{bad}");
        }
    }
}
