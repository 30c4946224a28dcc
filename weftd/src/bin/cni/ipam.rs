//! IPAM by delegation, as CNI's main plugins do: the plugin named by `ipam.type` is found in CNI_PATH
//! and run with the same verb and conf. Without an `ipam` section the conf gets flannel's: host-local
//! over the node's FLANNEL_SUBNET (from the subnet file) with a default route, in the store the `cni0`
//! pods use (`ipamStore`, default `/var/lib/cni/networks/cbr0`: host-local's `dataDir` and network name),
//! so weft's pods and the bridge's never get the same address.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use weft_config::subnet_file::SubnetFile;
use weft_config::Ipv4Net;

use crate::conf::{Env, NetConf};
use crate::{code, CniError};

/// What the IPAM plugin handed out.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    /// `dst` or `dst via gw`, as weftd's API takes them.
    pub routes: Vec<String>,
    pub dns: Option<Value>,
}

impl Lease {
    /// The first IPv4 address of a CNI result (any version from 0.3.0) and its routes and DNS.
    pub fn from_result(r: &Value) -> Result<Lease, CniError> {
        let bad = |why: &str| CniError::new(code::IPAM, format!("the IPAM result {why}"), r.to_string());
        let ips = r["ips"].as_array().ok_or_else(|| bad("has no ips"))?;
        let (ip, prefix_len) = ips
            .iter()
            .filter_map(|i| i["address"].as_str())
            .find_map(|a| {
                let (ip, len) = a.split_once('/')?;
                Some((ip.parse::<Ipv4Addr>().ok()?, len.parse::<u8>().ok().filter(|l| *l <= 32)?))
            })
            .ok_or_else(|| bad("has no IPv4 address (weft's pods are IPv4, as flannel's)"))?;
        let gateway = ips.iter().find(|i| i["address"].as_str().is_some_and(|a| a.starts_with(&format!("{ip}/"))));
        let gateway = gateway.and_then(|i| i["gateway"].as_str()).and_then(|g| g.parse().ok());
        let mut routes = Vec::new();
        for rt in r["routes"].as_array().into_iter().flatten() {
            let Some(dst) = rt["dst"].as_str().filter(|d| d.parse::<Ipv4Net>().is_ok()) else {
                continue; // IPv6 routes (a dual-stack IPAM) are not weft's
            };
            match rt["gw"].as_str() {
                Some(gw) => routes.push(format!("{dst} via {gw}")),
                None => routes.push(dst.to_owned()),
            }
        }
        let dns = r.get("dns").filter(|d| d.as_object().is_some_and(|o| !o.is_empty())).cloned();
        Ok(Lease { ip, prefix_len, gateway, routes, dns })
    }
}

/// The conf the IPAM plugin gets: the plugin's own when it has an `ipam` section, else flannel's.
pub fn delegate_conf(conf: &NetConf, command: &str) -> Result<Value, CniError> {
    if conf.raw.get("ipam").is_some_and(Value::is_object) {
        return Ok(conf.raw.clone());
    }
    let subnet = match SubnetFile::read_previous(&conf.subnet_file) {
        Some(f) => f.subnet,
        // DEL must not fail because the node forgot its subnet: host-local releases by container id, so
        // the previous result's network does.
        None if command == "DEL" => conf
            .prev_result
            .as_ref()
            .and_then(|r| Lease::from_result(r).ok())
            .and_then(|l| Ipv4Net::new(l.ip, l.prefix_len))
            .or_else(|| Ipv4Net::new(Ipv4Addr::new(10, 0, 0, 0), 8))
            .ok_or_else(|| CniError::new(code::INVALID_CONFIG, "no range for host-local's DEL", ""))?,
        None => {
            return Err(CniError::new(
                code::INVALID_CONFIG,
                format!("no FLANNEL_SUBNET in {} and no ipam section", conf.subnet_file.display()),
                "is weftd running with this subnetFile? or give the conf an ipam section",
            ))
        }
    };
    let store = &conf.ipam_store;
    let (data_dir, name) = match (store.parent(), store.file_name()) {
        (Some(d), Some(n)) if !d.as_os_str().is_empty() => (d.to_path_buf(), n.to_string_lossy().into_owned()),
        _ => {
            return Err(CniError::new(
                code::INVALID_CONFIG,
                format!("ipamStore {} is not DIR/NAME", store.display()),
                "",
            ))
        }
    };
    let mut out = conf.raw.clone();
    out["name"] = json!(name);
    out["ipam"] = json!({
        "type": "host-local",
        "dataDir": data_dir,
        "ranges": [[{"subnet": subnet.to_string()}]],
        "routes": [{"dst": "0.0.0.0/0"}],
    });
    Ok(out)
}

fn find_plugin(env: &Env, name: &str) -> Option<PathBuf> {
    if name.is_empty() || name.contains('/') {
        return None;
    }
    env.path.iter().map(|d| d.join(name)).find(|p| Path::new(p).is_file())
}

/// Run the IPAM plugin for `command`; its result (ADD) or null.
pub fn exec(conf: &NetConf, env: &Env, command: &str) -> Result<Value, CniError> {
    let delegate = delegate_conf(conf, command)?;
    let ty = delegate["ipam"]["type"].as_str().unwrap_or_default().to_owned();
    let plugin = find_plugin(env, &ty).ok_or_else(|| {
        let dirs: Vec<String> = env.path.iter().map(|p| p.display().to_string()).collect();
        CniError::new(code::INVALID_CONFIG, format!("IPAM plugin {ty:?} not found in CNI_PATH {}", dirs.join(":")), "")
    })?;
    let io = |e: std::io::Error| CniError::new(code::IO, format!("running {}: {e}", plugin.display()), "");
    let mut child = Command::new(&plugin)
        .env("CNI_COMMAND", command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(io)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(delegate.to_string().as_bytes()).map_err(io)?;
    }
    let out = child.wait_with_output().map_err(io)?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // Pass the IPAM plugin's own error on, under its code.
        let err: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let msg = err["msg"].as_str().map_or_else(|| text.trim().to_owned(), str::to_owned);
        let c = err["code"].as_u64().and_then(|c| u32::try_from(c).ok()).unwrap_or(code::IPAM);
        return Err(CniError::new(
            c,
            format!("IPAM {ty} {command}: {msg}"),
            err["details"].as_str().unwrap_or_default(),
        ));
    }
    if command != "ADD" || text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text)
        .map_err(|e| CniError::new(code::IPAM, format!("IPAM {ty}'s result is not JSON: {e}"), text.into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_from_results_of_each_version() {
        let v1 = json!({"cniVersion": "1.0.0",
            "ips": [{"address": "fd00::5/64"}, {"address": "10.244.1.5/24", "gateway": "10.244.1.1"}],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}, {"dst": "10.96.0.0/12", "gw": "10.244.1.254"}],
            "dns": {}});
        let l = Lease::from_result(&v1).unwrap();
        assert_eq!(
            (l.ip, l.prefix_len, l.gateway),
            (Ipv4Addr::new(10, 244, 1, 5), 24, Some(Ipv4Addr::new(10, 244, 1, 1)))
        );
        assert_eq!(l.routes, ["0.0.0.0/0", "10.96.0.0/12 via 10.244.1.254"]);
        assert_eq!(l.dns, None, "an empty dns object is no DNS");
        let v031 = json!({"cniVersion": "0.3.1", "ips": [{"version": "4", "address": "10.244.1.9/24"}]});
        assert_eq!(Lease::from_result(&v031).unwrap().gateway, None);
        for bad in [
            json!({}),
            json!({"ips": []}),
            json!({"ips": [{"address": "fd00::1/64"}]}),
            json!({"ips": [{"address": "10.0.0.1/40"}]}),
        ] {
            assert_eq!(Lease::from_result(&bad).unwrap_err().code, code::IPAM, "{bad}");
        }
    }

    fn conf(text: &str) -> NetConf {
        NetConf::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn without_an_ipam_section_host_local_shares_the_cni0_store_over_flannels_subnet() {
        let dir = std::env::temp_dir().join(format!("weft-cni-ipam-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sf = dir.join("subnet.env");
        std::fs::write(&sf, "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.7.1/24\nFLANNEL_MTU=1450\n").unwrap();
        let c = conf(&format!(r#"{{"cniVersion":"1.0.0","name":"weft","subnetFile":"{}"}}"#, sf.display()));
        let d = delegate_conf(&c, "ADD").unwrap();
        assert_eq!(d["name"], "cbr0");
        assert_eq!(
            d["ipam"],
            json!({"type": "host-local", "dataDir": "/var/lib/cni/networks",
                   "ranges": [[{"subnet": "10.244.7.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]})
        );
        // A conf with its own ipam is passed on as it is.
        let own = conf(r#"{"cniVersion":"1.0.0","name":"weft","ipam":{"type":"static"}}"#);
        assert_eq!(delegate_conf(&own, "ADD").unwrap(), own.raw);
        // No subnet file: ADD says which file, DEL still releases (host-local frees by container id).
        std::fs::remove_file(&sf).unwrap();
        let e = delegate_conf(&c, "ADD").unwrap_err();
        assert!(e.code == code::INVALID_CONFIG && e.msg.contains("subnet.env"), "{e:?}");
        assert_eq!(delegate_conf(&c, "DEL").unwrap()["ipam"]["ranges"][0][0]["subnet"], "10.0.0.0/8");
        let with_prev = conf(&format!(
            r#"{{"cniVersion":"1.0.0","name":"weft","subnetFile":"{}","prevResult":{{"ips":[{{"address":"10.244.7.3/24"}}]}}}}"#,
            sf.display()
        ));
        assert_eq!(delegate_conf(&with_prev, "DEL").unwrap()["ipam"]["ranges"][0][0]["subnet"], "10.244.7.0/24");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
