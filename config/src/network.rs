//! flannel's network configuration, the JSON at `<prefix>/config` (flannel `pkg/subnet/config.go`):
//!
//! ```json
//! {"Network":"10.244.0.0/16","SubnetLen":24,"Backend":{"Type":"vxlan","VNI":1,"Port":8472}}
//! ```
//! Keys match case-insensitively, as Go's encoding/json does. Defaults and checks are flannel's:
//! SubnetLen 24 for a /22 or shorter network, else prefix + 2; SubnetMin = network + one subnet;
//! SubnetMax = the last subnet; both inside the network and on a SubnetLen boundary. The backend is one of
//! the three flannel modes weft speaks: `vxlan` (VNI default 1, UDP port default 8472, the Linux
//! default; `DirectRouting`), `host-gw`, and `udp` (port default 8285).

use std::net::Ipv4Addr;

use serde_json::{Map, Value};

use crate::net::{mask, Ipv4Net};
use crate::Vni;

/// The UDP port the Linux kernel (and so flannel) uses for VXLAN unless told otherwise.
pub const DEFAULT_VXLAN_PORT: u16 = 8472;
/// The UDP port of flannel's udp backend unless told otherwise (`pkg/backend/udp` `defaultPort`).
pub const DEFAULT_UDP_PORT: u16 = 8285;

/// How a flannel cluster crosses hosts (`Backend.Type`). The network config decides it for every node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendType {
    /// VXLAN through `flannel.1` (and, with `DirectRouting`, plain routes to peers on our L2).
    Vxlan,
    /// Plain routes to each peer's PublicIP, which must be on our L2.
    HostGw,
    /// flanneld's userspace relay: the inner IPv4 packet as a UDP payload.
    Udp,
}

impl BackendType {
    /// The name as flannel writes it in the network config.
    pub fn name(self) -> &'static str {
        match self {
            BackendType::Vxlan => "vxlan",
            BackendType::HostGw => "host-gw",
            BackendType::Udp => "udp",
        }
    }

    /// The `BackendType` a node of this backend writes in its lease. flanneld's udp backend writes none
    /// (its `LeaseAttrs` leave the field empty and `omitempty` drops it).
    pub fn lease_type(self) -> &'static str {
        match self {
            BackendType::Udp => "",
            other => other.name(),
        }
    }

    /// Bytes the backend adds in front of a pod's IPv4 packet on the underlay (flannel's MTU is the
    /// underlay MTU minus this): VXLAN 50 (outer Ethernet, IPv4, UDP, VXLAN), udp 28 (IPv4, UDP),
    /// host-gw nothing.
    pub fn overhead(self) -> u16 {
        match self {
            BackendType::Vxlan => 50,
            BackendType::HostGw => 0,
            BackendType::Udp => 28,
        }
    }

    /// The UDP port the backend listens on unless `Backend.Port` says otherwise; host-gw has none.
    pub fn default_port(self) -> u16 {
        match self {
            BackendType::Vxlan => DEFAULT_VXLAN_PORT,
            BackendType::HostGw => 0,
            BackendType::Udp => DEFAULT_UDP_PORT,
        }
    }
}

impl std::fmt::Display for BackendType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for BackendType {
    type Err = String;
    /// Case-insensitive, as flanneld looks backends up (`strings.ToLower`).
    fn from_str(s: &str) -> Result<BackendType, String> {
        match s.to_ascii_lowercase().as_str() {
            "vxlan" => Ok(BackendType::Vxlan),
            "host-gw" => Ok(BackendType::HostGw),
            "udp" => Ok(BackendType::Udp),
            _ => Err(format!("{s:?} is not a backend weft speaks: use \"vxlan\", \"host-gw\" or \"udp\"")),
        }
    }
}

/// A validated flannel network config with flannel's defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    pub network: Ipv4Net,
    pub subnet_len: u8,
    pub subnet_min: Ipv4Addr,
    pub subnet_max: Ipv4Addr,
    pub backend: BackendType,
    /// VXLAN only: peers on our L2 are routed to directly, host-gw style.
    pub direct_routing: bool,
    /// VXLAN only (1 otherwise).
    pub vni: Vni,
    /// The backend's UDP port: VXLAN's (8472) or udp's (8285); 0 for host-gw.
    pub port: u16,
}

/// What is wrong with a network config, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkConfigError {
    #[error("network config is not valid JSON: {0}")]
    Json(String),
    #[error("network config: {field}: {why}")]
    Field { field: &'static str, why: String },
}

fn field_err(field: &'static str, why: impl Into<String>) -> NetworkConfigError {
    NetworkConfigError::Field { field, why: why.into() }
}

/// Look `key` up the way Go's encoding/json does: an exact match first, else a case-insensitive one.
pub(crate) fn get_ci<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).or_else(|| obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))
}

fn opt_u64(obj: &Map<String, Value>, field: &'static str) -> Result<Option<u64>, NetworkConfigError> {
    match get_ci(obj, field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            n.as_u64().map(Some).ok_or_else(|| field_err(field, format!("must be a non-negative integer, got {n}")))
        }
        Some(v) => Err(field_err(field, format!("must be a number, got {v}"))),
    }
}

fn opt_str<'a>(obj: &'a Map<String, Value>, field: &'static str) -> Result<Option<&'a str>, NetworkConfigError> {
    match get_ci(obj, field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(field_err(field, format!("must be a string, got {v}"))),
    }
}

fn opt_bool(obj: &Map<String, Value>, field: &'static str) -> Result<Option<bool>, NetworkConfigError> {
    match get_ci(obj, field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(field_err(field, format!("must be true or false, got {v}"))),
    }
}

fn opt_ipv4(obj: &Map<String, Value>, field: &'static str) -> Result<Option<Ipv4Addr>, NetworkConfigError> {
    opt_str(obj, field)?
        .map(|s| s.parse::<Ipv4Addr>().map_err(|_| field_err(field, format!("{s:?} is not an IPv4 address"))))
        .transpose()
}

impl NetworkConfig {
    /// Parse and validate the JSON value of `<prefix>/config`.
    pub fn from_json(text: &str) -> Result<NetworkConfig, NetworkConfigError> {
        let v: Value = serde_json::from_str(text).map_err(|e| NetworkConfigError::Json(e.to_string()))?;
        let Value::Object(obj) = v else {
            return Err(NetworkConfigError::Json("the config must be a JSON object".into()));
        };
        if opt_bool(&obj, "EnableIPv6")? == Some(true) {
            return Err(field_err("EnableIPv6", "weft carries IPv4 only; set EnableIPv6 to false or remove it"));
        }
        if opt_bool(&obj, "EnableIPv4")? == Some(false) {
            return Err(field_err("EnableIPv4", "weft carries IPv4 only; EnableIPv4 must be true (the default)"));
        }
        let network: Ipv4Net = opt_str(&obj, "Network")?
            .ok_or_else(|| field_err("Network", "missing; set it to the cluster's pod CIDR, e.g. \"10.244.0.0/16\""))?
            .parse()
            .map_err(|e| field_err("Network", format!("{e}")))?;

        let subnet_len = match opt_u64(&obj, "SubnetLen")? {
            Some(0) | None => {
                if network.prefix_len() > 28 {
                    return Err(field_err("Network", "too small: the minimum useful network prefix is /28"));
                } else if network.prefix_len() <= 22 {
                    24
                } else {
                    network.prefix_len() + 2
                }
            }
            Some(l) if l > 30 => return Err(field_err("SubnetLen", format!("{l} is too long: it must be at most 30"))),
            Some(l) if (l as u8) < network.prefix_len() + 2 => {
                return Err(field_err(
                    "SubnetLen",
                    format!("{l} is too short for Network {network}: the network must hold at least four subnets (SubnetLen >= {})", network.prefix_len() + 2),
                ))
            }
            Some(l) => l as u8,
        };
        let subnet_size = 1u32 << (32 - subnet_len as u32);
        let subnet_mask = mask(subnet_len);

        let subnet_min = match opt_ipv4(&obj, "SubnetMin")? {
            None => Ipv4Addr::from(network.addr_u32() + subnet_size),
            Some(a) if !network.contains(a) => {
                return Err(field_err("SubnetMin", format!("{a} is not inside Network {network}")))
            }
            Some(a) => a,
        };
        let subnet_max = match opt_ipv4(&obj, "SubnetMax")? {
            None => Ipv4Addr::from(network.next_addr().wrapping_sub(subnet_size)),
            Some(a) if !network.contains(a) => {
                return Err(field_err("SubnetMax", format!("{a} is not inside Network {network}")))
            }
            Some(a) => a,
        };
        if u32::from(subnet_min) & subnet_mask != u32::from(subnet_min) {
            return Err(field_err("SubnetMin", format!("{subnet_min} is not on a /{subnet_len} boundary")));
        }
        if u32::from(subnet_max) & subnet_mask != u32::from(subnet_max) {
            return Err(field_err("SubnetMax", format!("{subnet_max} is not on a /{subnet_len} boundary")));
        }
        if u32::from(subnet_min) > u32::from(subnet_max) {
            return Err(field_err("SubnetMin", format!("{subnet_min} is above SubnetMax {subnet_max}")));
        }

        let b = parse_backend(get_ci(&obj, "Backend"))?;
        Ok(NetworkConfig {
            network,
            subnet_len,
            subnet_min,
            subnet_max,
            backend: b.backend,
            direct_routing: b.direct_routing,
            vni: b.vni,
            port: b.port,
        })
    }

    /// Every subnet a node may lease, SubnetMin..=SubnetMax, in order.
    pub fn subnets(&self) -> impl Iterator<Item = Ipv4Net> + '_ {
        let step = 1u64 << (32 - self.subnet_len as u32);
        let (lo, hi) = (u32::from(self.subnet_min) as u64, u32::from(self.subnet_max) as u64);
        (0..=(hi - lo) / step)
            .filter_map(move |i| Ipv4Net::new(Ipv4Addr::from((lo + i * step) as u32), self.subnet_len))
    }
}

/// The `Backend` object, checked.
struct ParsedBackend {
    backend: BackendType,
    direct_routing: bool,
    vni: Vni,
    port: u16,
}

/// flannel's `ParseBackendType` defaults a missing backend or type to "udp", and so does weft; the types
/// are vxlan, host-gw and udp (flannel's cloud, ipip, wireguard and ipsec backends are not spoken).
fn parse_backend(v: Option<&Value>) -> Result<ParsedBackend, NetworkConfigError> {
    let empty = Map::new();
    let obj = match v {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(o)) => o,
        Some(v) => return Err(field_err("Backend", format!("must be an object like {{\"Type\":\"vxlan\"}}, got {v}"))),
    };
    let ty = opt_str(obj, "Type")?.unwrap_or("udp");
    let backend: BackendType = ty.parse().map_err(|e: String| field_err("Backend.Type", e))?;
    if opt_bool(obj, "GBP")? == Some(true) {
        return Err(field_err("Backend.GBP", "VXLAN group policy is not supported by weft; set it to false"));
    }
    // flanneld reads DirectRouting in its vxlan backend only; elsewhere it is ignored.
    let direct_routing = opt_bool(obj, "DirectRouting")?.unwrap_or(false) && backend == BackendType::Vxlan;
    let vni = match opt_u64(obj, "VNI").map_err(|_| field_err("Backend.VNI", "must be an integer"))? {
        None | Some(0) => Vni::ONE,
        Some(v) => u32::try_from(v)
            .ok()
            .and_then(Vni::new)
            .ok_or_else(|| field_err("Backend.VNI", format!("{v} does not fit in 24 bits")))?,
    };
    let port = match opt_u64(obj, "Port").map_err(|_| field_err("Backend.Port", "must be an integer"))? {
        _ if backend == BackendType::HostGw => 0,
        None | Some(0) => backend.default_port(),
        Some(p) if p > 65535 => return Err(field_err("Backend.Port", format!("{p} is not a UDP port"))),
        Some(p) => p as u16,
    };
    Ok(ParsedBackend { backend, direct_routing, vni, port })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> NetworkConfig {
        NetworkConfig::from_json(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn err(s: &str) -> String {
        NetworkConfig::from_json(s).unwrap_err().to_string()
    }

    #[test]
    fn parse_flannel_default_config() {
        let c = parse(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}"#);
        assert_eq!(c.subnet_len, 24);
        assert_eq!(c.subnet_min, Ipv4Addr::new(10, 244, 1, 0));
        assert_eq!(c.subnet_max, Ipv4Addr::new(10, 244, 255, 0));
        assert_eq!((c.vni.get(), c.port), (1, 8472));
        assert_eq!(c.subnets().count(), 255);
    }

    #[test]
    fn parse_keys_case_insensitively() {
        let c = parse(r#"{"network":"10.244.0.0/16","subnetlen":26,"backend":{"type":"VXLAN","vni":42,"port":4789}}"#);
        assert_eq!((c.subnet_len, c.vni.get(), c.port), (26, 42, 4789));
    }

    #[test]
    fn parse_the_three_backends() {
        // flannel: no Backend, or no Type, is udp on port 8285.
        for text in [r#"{"Network":"10.244.0.0/16"}"#, r#"{"Network":"10.244.0.0/16","Backend":{}}"#] {
            let c = parse(text);
            assert_eq!((c.backend, c.port, c.direct_routing), (BackendType::Udp, 8285, false), "{text}");
        }
        let c = parse(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"UDP","Port":9000}}"#);
        assert_eq!((c.backend, c.port), (BackendType::Udp, 9000));
        let c = parse(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw","DirectRouting":true}}"#);
        assert_eq!((c.backend, c.port, c.direct_routing), (BackendType::HostGw, 0, false));
        let c = parse(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","DirectRouting":true}}"#);
        assert_eq!((c.backend, c.port, c.direct_routing), (BackendType::Vxlan, 8472, true));
        assert_eq!(
            [BackendType::Vxlan, BackendType::HostGw, BackendType::Udp].map(|b| (b.overhead(), b.lease_type())),
            [(50, "vxlan"), (0, "host-gw"), (28, "")]
        );
        assert!(err(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","DirectRouting":"yes"}}"#)
            .contains("DirectRouting"));
    }

    #[test]
    fn parse_small_network_defaults() {
        let c = parse(r#"{"Network":"10.0.0.0/24","Backend":{"Type":"vxlan"}}"#);
        assert_eq!(c.subnet_len, 26);
        assert_eq!(
            c.subnets().map(|n| n.to_string()).collect::<Vec<_>>(),
            ["10.0.0.64/26", "10.0.0.128/26", "10.0.0.192/26"]
        );
        assert!(err(r#"{"Network":"10.0.0.0/29","Backend":{"Type":"vxlan"}}"#).contains("/28"));
    }

    #[test]
    fn parse_min_max() {
        let c = parse(
            r#"{"Network":"10.244.0.0/16","SubnetMin":"10.244.10.0","SubnetMax":"10.244.12.0","Backend":{"Type":"vxlan"}}"#,
        );
        assert_eq!(c.subnets().count(), 3);
        assert!(err(r#"{"Network":"10.244.0.0/16","SubnetMin":"10.244.10.5","Backend":{"Type":"vxlan"}}"#)
            .contains("SubnetMin"));
        assert!(err(r#"{"Network":"10.244.0.0/16","SubnetMax":"10.245.0.0","Backend":{"Type":"vxlan"}}"#)
            .contains("SubnetMax"));
    }

    #[test]
    fn parse_errors_name_the_field() {
        assert!(err("{").contains("JSON"));
        assert!(err("[]").contains("object"));
        assert!(err(r#"{"Backend":{"Type":"vxlan"}}"#).contains("Network"));
        assert!(err(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"ipip"}}"#).contains("Backend.Type"));
        assert!(err(r#"{"Network":"10.244.0.0/16","Backend":"vxlan"}"#).contains("Backend"));
        assert!(err(r#"{"Network":"10.244.0.0/16","SubnetLen":31,"Backend":{"Type":"vxlan"}}"#).contains("SubnetLen"));
        assert!(
            err(r#"{"Network":"10.244.0.0/16","SubnetLen":17,"Backend":{"Type":"vxlan"}}"#).contains("four subnets")
        );
        assert!(err(r#"{"Network":"10.244.0.0/16","SubnetLen":"24","Backend":{"Type":"vxlan"}}"#).contains("SubnetLen"));
        assert!(err(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":16777216}}"#).contains("Backend.VNI"));
        assert!(err(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","Port":70000}}"#).contains("Backend.Port"));
        assert!(
            err(r#"{"Network":"10.244.0.0/16","EnableIPv6":true,"Backend":{"Type":"vxlan"}}"#).contains("EnableIPv6")
        );
        assert!(err(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","GBP":true}}"#).contains("Backend.GBP"));
    }
}
