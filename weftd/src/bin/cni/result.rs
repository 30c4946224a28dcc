//! The CNI result of ADD: what the runtime learns of the pod's interface, address, routes and DNS.

use std::net::Ipv4Addr;

use serde_json::{json, Value};

use crate::conf::{Env, NetConf};
use crate::ipam::Lease;

/// ADD's result in the conf's version: the interface (in the sandbox, or its vhost-user socket), the
/// address, the routes and DNS.
pub fn result(conf: &NetConf, env: &Env, netns: &str, lease: &Lease, pod: &Value) -> Value {
    let mut iface = json!({"name": env.ifname, "mac": pod["mac"]});
    if conf.kind == "vhost" {
        iface["socketPath"] = pod["iface"].clone();
    } else {
        iface["sandbox"] = json!(netns);
    }
    let gateway: Option<Ipv4Addr> = lease.gateway.or_else(|| pod["gateway"].as_str().and_then(|g| g.parse().ok()));
    let mut ip = json!({"address": format!("{}/{}", lease.ip, lease.prefix_len), "interface": 0});
    if let Some(gw) = gateway {
        ip["gateway"] = json!(gw.to_string());
    }
    if conf.cni_version.starts_with("0.") {
        ip["version"] = json!("4");
    }
    let routes: Vec<Value> = lease
        .routes
        .iter()
        .map(|r| match r.split_once(" via ") {
            Some((dst, gw)) => json!({"dst": dst, "gw": gw}),
            None => json!({"dst": r}),
        })
        .collect();
    let mut out = json!({"cniVersion": conf.cni_version, "interfaces": [iface], "ips": [ip], "routes": routes});
    if let Some(dns) = conf.dns.clone().or_else(|| lease.dns.clone()) {
        out["dns"] = dns;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease() -> Lease {
        Lease {
            ip: Ipv4Addr::new(10, 244, 1, 5),
            prefix_len: 24,
            gateway: Some(Ipv4Addr::new(10, 244, 1, 1)),
            routes: vec!["0.0.0.0/0".into(), "10.96.0.0/12 via 10.244.1.254".into()],
            dns: Some(json!({"nameservers": ["10.96.0.10"]})),
        }
    }

    fn env() -> Env {
        Env { container_id: "c1".into(), netns: Some("/run/netns/x".into()), ifname: "eth0".into(), path: vec![] }
    }

    #[test]
    fn results_carry_the_interface_address_routes_and_dns_in_the_confs_version() {
        let pod = json!({"mac": "0a:58:0a:f4:01:05", "iface": "eth0", "gateway": "10.244.1.1"});
        let conf = NetConf::parse(br#"{"cniVersion":"1.0.0","name":"weft"}"#).unwrap();
        let r = result(&conf, &env(), "/run/netns/x", &lease(), &pod);
        assert_eq!(
            r,
            json!({
                "cniVersion": "1.0.0",
                "interfaces": [{"name": "eth0", "mac": "0a:58:0a:f4:01:05", "sandbox": "/run/netns/x"}],
                "ips": [{"address": "10.244.1.5/24", "gateway": "10.244.1.1", "interface": 0}],
                "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.96.0.0/12", "gw": "10.244.1.254"}],
                "dns": {"nameservers": ["10.96.0.10"]},
            })
        );
        // The conf's DNS wins over the IPAM plugin's; 0.x results say the IP version; vhost pods carry
        // their socket instead of a sandbox.
        let conf =
            NetConf::parse(br#"{"cniVersion":"0.4.0","name":"weft","kind":"vhost","dns":{"nameservers":["1.1.1.1"]}}"#)
                .unwrap();
        let pod = json!({"mac": "0a:58:0a:f4:01:05", "iface": "/run/weft-vhost/c1/eth0.sock"});
        let r = result(&conf, &env(), "/run/netns/x", &lease(), &pod);
        assert_eq!(
            r["interfaces"][0],
            json!({"name": "eth0", "mac": "0a:58:0a:f4:01:05", "socketPath": "/run/weft-vhost/c1/eth0.sock"})
        );
        assert_eq!(r["ips"][0]["version"], "4");
        assert_eq!(r["dns"], json!({"nameservers": ["1.1.1.1"]}));
    }
}
