//! End-to-end tests in the netns lab (root, hugepages): weft nodes and a kernel flannel node exchange
//! pod traffic. Each test builds its own lab and tears it down, also on failure; tests take turns.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

use std::path::Path;
use std::sync::Mutex;

use dataplane::lab::{ping, KernelNode, Lab, PeerLease, WeftNode};

static ONE_LAB_AT_A_TIME: Mutex<()> = Mutex::new(());

fn new_lab() -> Lab {
    Lab::new(Path::new(env!("CARGO_BIN_EXE_weftd")), Path::new(env!("CARGO_BIN_EXE_weftctl")))
        .unwrap_or_else(|e| panic!("{e:#}"))
}

fn lease_of_weft(n: &WeftNode) -> PeerLease {
    PeerLease { subnet: n.subnet.clone(), public_ip: n.public_ip, vtep_mac: n.vtep_mac.clone() }
}

fn lease_of_kernel(k: &KernelNode) -> PeerLease {
    PeerLease { subnet: k.subnet.clone(), public_ip: k.public_ip, vtep_mac: k.vtep_mac.clone() }
}

/// Two weft nodes (1, 2) and a kernel node (3), each knowing the others' leases; a tap pod on each weft
/// node.
struct Cluster {
    lab: Lab,
    n1: WeftNode,
    n2: WeftNode,
    k3: KernelNode,
    pod1: (String, std::net::Ipv4Addr),
    pod2: (String, std::net::Ipv4Addr),
}

fn cluster() -> Cluster {
    let mut lab = new_lab();
    let n1 = lab.weft_node(1).unwrap();
    let n2 = lab.weft_node(2).unwrap();
    let k3 = lab.kernel_node(3, &[lease_of_weft(&n1), lease_of_weft(&n2)]).unwrap();
    lab.start_weftd(&n1, &[lease_of_weft(&n2), lease_of_kernel(&k3)], &[]).unwrap();
    lab.start_weftd(&n2, &[lease_of_weft(&n1), lease_of_kernel(&k3)], &[]).unwrap();
    let pod1 = lab.tap_pod(&n1, "pa").unwrap();
    let pod2 = lab.tap_pod(&n2, "pb").unwrap();
    Cluster { lab, n1, n2, k3, pod1, pod2 }
}

fn assert_ping(from: &str, to: std::net::Ipv4Addr, lab: &Lab, nodes: &[&WeftNode]) {
    // The first packets may wait for the underlay ARP; then nothing may be lost.
    let _ = ping(from, to, 3, None, false);
    let (sent, got) = ping(from, to, 5, None, false);
    if got != sent || sent == 0 {
        let status: Vec<_> =
            nodes.iter().map(|n| lab.weftctl(n, &["status"]).map(|v| v.to_string()).unwrap_or_default()).collect();
        panic!("ping {from} -> {to}: {got}/{sent} answered\nstatus: {status:#?}");
    }
}

#[test]
fn ping_matrix_weft_and_kernel_nodes() {
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let c = cluster();
    let nodes = [&c.n1, &c.n2];
    assert_ping(&c.pod1.0, c.pod2.1, &c.lab, &nodes);
    assert_ping(&c.pod2.0, c.pod1.1, &c.lab, &nodes);
    assert_ping(&c.pod1.0, c.k3.pod_ip, &c.lab, &nodes);
    assert_ping(&c.k3.pod_ns, c.pod1.1, &c.lab, &nodes);
    assert_ping(&c.k3.pod_ns, c.pod2.1, &c.lab, &nodes);
    // The pings crossed weft: node 1 saw its pod's frames and encapsulated/decapsulated them.
    let st = c.lab.weftctl(&c.n1, &["status"]).unwrap();
    eprintln!("node 1 status: {st:#}");
    let port = |name: &str| st["ports"].as_array().unwrap().iter().find(|p| p["name"] == name).cloned().unwrap();
    let (up, pod) = (port("uplink"), port("pa"));
    assert!(pod["rx_packets"].as_u64().unwrap() >= 16, "pod frames in: {pod}");
    assert!(pod["tx_packets"].as_u64().unwrap() >= 16, "decapsulated frames out to the pod: {pod}");
    assert!(up["tx_packets"].as_u64().unwrap() >= 16, "encapsulated frames out: {up}");
    assert!(st["tables"]["unresolved_next_hops"].as_array().unwrap().is_empty(), "{st}");
    assert_eq!(st["tables"]["peers"], 2);
}
