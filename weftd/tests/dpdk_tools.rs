//! DPDK's own tools attach to a running weftd in the netns lab (root, hugepages) as secondary processes
//! through its --file-prefix: `dpdk-dumpcap` captures the uplink's VXLAN frames and a tap pod's plain
//! frames while a kernel flannel node's pod pings the weft pod; `dpdk-telemetry.py` and
//! `dpdk-proc-info` read the ports' counters.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

use dataplane::wire::{EthernetFrame, Ipv4Packet, UdpPacket};
use serde_json::Value;
use testkit::lab::{ping, AsPeer, Lab};

/// (source, destination, ICMP type) of an IPv4 ICMP packet.
fn icmp(ip: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr, u8)> {
    let p = Ipv4Packet::new_checked(ip).ok()?;
    (p.protocol() == 1).then(|| (p.src(), p.dst(), p.payload()[0]))
}

fn port_id(status: &Value, name: &str) -> u16 {
    let ports = status["ports"].as_array().unwrap();
    let p = ports.iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("no port {name}: {status}"));
    p["port_id"].as_u64().unwrap() as u16
}

#[test]
fn dumpcap_telemetry_and_proc_info_attach_to_weftd() {
    let mut lab = Lab::new(Path::new(env!("CARGO_BIN_EXE_weftd")), Path::new(env!("CARGO_BIN_EXE_weftctl")))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let n1 = lab.weft_node(1).unwrap();
    let k3 = lab.kernel_node(3, &[n1.peer()]).unwrap();
    lab.start_weftd(&n1, &[k3.peer()], &[]).unwrap_or_else(|e| panic!("{e:#}"));
    let (_, pod_ip) = lab.tap_pod(&n1, "pa").unwrap();
    // The first packets may wait for the underlay ARP; then the overlay works before any capture.
    let _ = ping(&k3.pod_ns, pod_ip, 2, None, false);
    assert_eq!(ping(&k3.pod_ns, pod_ip, 3, None, false).1, 3);
    let st = lab.weftctl(&n1, &["status"]).unwrap();
    let (uplink, pod) = (port_id(&st, "uplink"), port_id(&st, "pa"));
    let k3_pod = k3.pod_ip;

    // The uplink: the kernel node's VXLAN frames in, weft's out, each with the ping inside.
    let frames = lab
        .dumpcap(&n1, uplink, 8, || {
            ping(&k3.pod_ns, pod_ip, 4, None, false);
        })
        .unwrap_or_else(|e| panic!("{e:#}"));
    let mut seen = (0, 0);
    for f in &frames {
        let eth = EthernetFrame::new_checked(&f[..]).unwrap();
        let Ok(outer) = Ipv4Packet::new_checked(eth.payload()) else { continue };
        let Ok(udp) = UdpPacket::new_checked(outer.payload()) else { continue };
        if udp.dst_port() != 8472 {
            continue;
        }
        let inner = EthernetFrame::new_checked(&udp.payload()[8..]).unwrap();
        match icmp(inner.payload()) {
            Some((s, d, 8)) if s == k3_pod && d == pod_ip && outer.src() == k3.public_ip => seen.0 += 1,
            Some((s, d, 0)) if s == pod_ip && d == k3_pod && outer.src() == n1.public_ip => seen.1 += 1,
            _ => {}
        }
    }
    assert!(seen.0 >= 1 && seen.1 >= 1, "encapsulated requests in and replies out on the uplink: {seen:?}");

    // The pod's port: the same ping, decapsulated.
    let frames = lab
        .dumpcap(&n1, pod, 8, || {
            ping(&k3.pod_ns, pod_ip, 4, None, false);
        })
        .unwrap_or_else(|e| panic!("{e:#}"));
    let plain: Vec<_> =
        frames.iter().filter_map(|f| icmp(EthernetFrame::new_checked(&f[..]).ok()?.payload())).collect();
    assert!(plain.contains(&(k3_pod, pod_ip, 8)) && plain.contains(&(pod_ip, k3_pod, 0)), "{plain:?}");
    // weft still forwards once the capture is gone.
    assert_eq!(ping(&k3.pod_ns, pod_ip, 3, None, false).1, 3);

    // Telemetry: the ethdev list and the uplink's counters.
    let telemetry = |cmd: &str| -> Value {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("echo '{cmd}' | timeout 10 dpdk-telemetry.py -f {}", n1.ns))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let json = text.lines().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("{cmd}: {text}"));
        serde_json::from_str(json).unwrap()
    };
    let list = telemetry("/ethdev/list");
    assert!(list["/ethdev/list"].as_array().unwrap().contains(&Value::from(uplink)), "{list}");
    let stats = telemetry(&format!("/ethdev/stats,{uplink}"));
    assert!(stats["/ethdev/stats"]["ipackets"].as_u64().unwrap() >= 8, "{stats}");

    // proc-info: the same counters, as a secondary process prints them.
    let out = Command::new("timeout")
        .args(["20", "dpdk-proc-info", &format!("--file-prefix={}", n1.ns), "--", "--stats"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("NIC statistics for port {uplink}")) && text.contains("RX-packets"), "{text}");
}
