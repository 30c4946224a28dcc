//! The network conf on stdin, the CNI_* environment, and the result printed for ADD.

use std::path::PathBuf;

use serde_json::Value;

use crate::{code, CniError, SUPPORTED};

/// `cniVersion` of a conf, if the bytes are a JSON object that has one.
pub fn version_of(stdin: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(stdin).ok()?;
    v["cniVersion"].as_str().map(str::to_owned)
}

/// The plugin's conf. Besides CNI's keys: `kind` ("veth", default: a kernel pod routed through the host
/// port; "tap": a kernel pod on a weft port of its own; "vhost": a DPDK or VM pod), `apiSocket` (weftd's API),
/// `subnetFile` (flannel's, for the default IPAM), `ipamStore` (the default IPAM's store, shared with
/// the `cni0` pods), `vhostClient` (vhost pods own their socket).
#[derive(Debug, Clone)]
pub struct NetConf {
    pub cni_version: String,
    pub kind: String,
    pub api_socket: String,
    pub subnet_file: PathBuf,
    pub ipam_store: PathBuf,
    pub vhost_client: bool,
    /// The conf as given: passed on to the IPAM plugin (with the default `ipam` filled in).
    pub raw: Value,
    pub dns: Option<Value>,
    pub prev_result: Option<Value>,
}

fn invalid(msg: impl Into<String>) -> CniError {
    CniError::new(code::INVALID_CONFIG, msg, "see config/cni/ in weft's sources for an example conflist")
}

impl NetConf {
    pub fn parse(stdin: &[u8]) -> Result<NetConf, CniError> {
        let raw: Value = serde_json::from_slice(stdin)
            .map_err(|e| CniError::new(code::DECODE, "the network conf on stdin is not JSON", e.to_string()))?;
        if !raw.is_object() {
            return Err(CniError::new(code::DECODE, "the network conf on stdin is not a JSON object", ""));
        }
        let s = |k: &str| raw[k].as_str().map(str::to_owned);
        let cni_version = s("cniVersion").ok_or_else(|| invalid("cniVersion is missing"))?;
        if !SUPPORTED.contains(&cni_version.as_str()) {
            return Err(CniError::new(
                code::INCOMPATIBLE_VERSION,
                format!("cniVersion {cni_version} is not supported"),
                format!("supported: {}", SUPPORTED.join(", ")),
            ));
        }
        if s("name").unwrap_or_default().is_empty() {
            return Err(invalid("name (the network's) is missing"));
        }
        let kind = s("kind").unwrap_or_else(|| "veth".to_owned());
        if !["veth", "tap", "vhost"].contains(&kind.as_str()) {
            return Err(invalid(format!(
                "kind {kind:?}: use \"veth\" or \"tap\" (a kernel pod) or \"vhost\" (a DPDK or VM pod)"
            )));
        }
        let bool_of = |k: &str| match &raw[k] {
            Value::Null => Ok(false),
            Value::Bool(b) => Ok(*b),
            other => Err(invalid(format!("{k} must be true or false, not {other}"))),
        };
        if !matches!(raw["ipam"], Value::Null | Value::Object(_)) {
            return Err(invalid("ipam must be an object with a \"type\""));
        }
        Ok(NetConf {
            cni_version,
            kind,
            api_socket: s("apiSocket").unwrap_or_else(|| "/run/weft/weftd.sock".to_owned()),
            subnet_file: s("subnetFile").unwrap_or_else(|| "/run/flannel/subnet.env".to_owned()).into(),
            ipam_store: s("ipamStore").unwrap_or_else(|| "/var/lib/cni/networks/cbr0".to_owned()).into(),
            vhost_client: bool_of("vhostClient")?,
            dns: raw.get("dns").filter(|d| d.is_object()).cloned(),
            prev_result: raw.get("prevResult").filter(|d| d.is_object()).cloned(),
            raw,
        })
    }
}

/// The CNI_* variables of one invocation.
#[derive(Debug, Clone)]
pub struct Env {
    pub container_id: String,
    pub netns: Option<String>,
    pub ifname: String,
    /// Where plugins are (CNI_PATH), for the IPAM plugin.
    pub path: Vec<PathBuf>,
}

impl Env {
    pub fn from_process(command: &str) -> Result<Env, CniError> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let need = |k: &str| {
            var(k).ok_or_else(|| {
                CniError::new(code::INVALID_ENV, format!("{k} is not set"), format!("{command} needs it"))
            })
        };
        let container_id = need("CNI_CONTAINERID")?;
        let ifname = need("CNI_IFNAME")?;
        let path = need("CNI_PATH")?.split(':').filter(|p| !p.is_empty()).map(PathBuf::from).collect();
        Ok(Env { container_id, netns: var("CNI_NETNS"), ifname, path })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conf_needs_a_known_version_a_name_and_a_kind_it_knows() {
        let ok = NetConf::parse(br#"{"cniVersion":"1.0.0","name":"weft","type":"weft"}"#).unwrap();
        assert_eq!((ok.kind.as_str(), ok.api_socket.as_str()), ("veth", "/run/weft/weftd.sock"));
        assert_eq!(ok.ipam_store, PathBuf::from("/var/lib/cni/networks/cbr0"));
        let code_of = |s: &str| NetConf::parse(s.as_bytes()).unwrap_err().code;
        assert_eq!(code_of("not json"), code::DECODE);
        assert_eq!(code_of("[1]"), code::DECODE);
        assert_eq!(code_of(r#"{"cniVersion":"9.9.9","name":"w"}"#), code::INCOMPATIBLE_VERSION);
        assert_eq!(code_of(r#"{"name":"w"}"#), code::INVALID_CONFIG);
        assert_eq!(code_of(r#"{"cniVersion":"1.0.0"}"#), code::INVALID_CONFIG);
        assert_eq!(code_of(r#"{"cniVersion":"1.0.0","name":"w","kind":"macvlan"}"#), code::INVALID_CONFIG);
        assert_eq!(code_of(r#"{"cniVersion":"1.0.0","name":"w","vhostClient":"yes"}"#), code::INVALID_CONFIG);
        assert_eq!(code_of(r#"{"cniVersion":"1.0.0","name":"w","ipam":"host-local"}"#), code::INVALID_CONFIG);
    }

    /// The conflists shipped in config/cni/ give the plugin a conf it takes, with the shared store.
    #[test]
    fn shipped_conflists_parse() {
        for (text, kind) in [
            (include_str!("../../../../config/cni/10-weft.conflist"), "veth"),
            (include_str!("../../../../config/cni/20-weft-vhost.conflist"), "vhost"),
        ] {
            let list: Value = serde_json::from_str(text).unwrap();
            let mut plugin = list["plugins"][0].clone();
            // What a runtime does: the list's version and name go into each plugin's conf.
            plugin["cniVersion"] = list["cniVersion"].clone();
            plugin["name"] = list["name"].clone();
            let c = NetConf::parse(plugin.to_string().as_bytes()).unwrap();
            assert_eq!((c.kind.as_str(), c.ipam_store.to_str()), (kind, Some("/var/lib/cni/networks/cbr0")));
        }
    }
}
