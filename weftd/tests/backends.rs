//! flannel's three backends in the netns lab (root, hugepages), each against real peers: weft nodes in
//! etcd mode next to kernel nodes programmed from the same leases as flanneld programs them: host-gw
//! (routes via each PublicIP), udp (`flannel0` and the userspace relay on 8285), and VXLAN with
//! DirectRouting on one L2 segment and across a router. Ping and a checked TCP transfer both ways, the
//! TTL the far pod sees, the frames on the underlay, and peers joining and leaving through etcd.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dataplane::wire::{EthernetFrame, Ipv4Packet, UdpPacket};
use serde_json::Value;
use testkit::lab::{ping, ping_ttl, KernelBackend, KernelNode, Lab, WeftNode};

static ONE_LAB_AT_A_TIME: Mutex<()> = Mutex::new(());

fn new_lab() -> Lab {
    Lab::new(Path::new(env!("CARGO_BIN_EXE_weftd")), Path::new(env!("CARGO_BIN_EXE_weftctl")))
        .unwrap_or_else(|e| panic!("{e:#}"))
}

fn config(backend: &str) -> String {
    format!(r#"{{"Network":"10.244.0.0/16","SubnetMin":"10.244.10.0","Backend":{backend}}}"#)
}

/// A kernel node of `backend` whose flanneld stand-in writes its lease and follows the others'.
fn kernel(lab: &mut Lab, idx: u8, backend: KernelBackend, far: bool) -> KernelNode {
    let k = lab.kernel_node_with(idx, backend, far, &[]).unwrap_or_else(|e| panic!("{e:#}"));
    lab.kernel_flanneld(&k).unwrap_or_else(|e| panic!("{e:#}"));
    k
}

/// A weft node in etcd mode; its subnet is the one etcd gave it.
fn weft(lab: &mut Lab, idx: u8, extra: &[&str]) -> WeftNode {
    let n = lab.weft_node(idx).unwrap();
    lab.start_weftd_etcd(&n, extra).unwrap_or_else(|e| panic!("{e:#}"));
    let st = lab.weftctl(&n, &["status"]).unwrap();
    WeftNode { subnet: st["node"]["subnet"].as_str().unwrap().to_owned(), ..n }
}

fn status(lab: &Lab, n: &WeftNode) -> Value {
    lab.weftctl(n, &["status"]).unwrap_or_else(|e| panic!("{e:#}"))
}

/// The path weft holds to `subnet` ("direct", "vxlan", "udp", "off-link", ...), if it knows the subnet.
fn path_to(lab: &Lab, n: &WeftNode, subnet: &str) -> Option<String> {
    status(lab, n)["tables"]["paths"]
        .as_array()?
        .iter()
        .find(|p| p["subnet"] == subnet)
        .and_then(|p| p["path"].as_str().map(str::to_owned))
}

/// Wait until weft's path to `subnet` is `want` (None: the subnet is gone).
fn wait_path(lab: &Lab, n: &WeftNode, subnet: &str, want: Option<&str>) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while path_to(lab, n, subnet).as_deref() != want {
        assert!(Instant::now() < deadline, "path to {subnet} is not {want:?}: {}", status(lab, n)["tables"]);
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Pings until one is answered (the first wait for ARP and for the kernel peers' syncers), then 5
/// that must all be answered.
fn assert_ping(lab: &Lab, from: &str, to: Ipv4Addr, nodes: &[&WeftNode]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while ping(from, to, 1, None, false).1 == 0 {
        if Instant::now() > deadline {
            break;
        }
    }
    let (sent, got) = ping(from, to, 5, None, false);
    if got != sent || sent == 0 {
        let st: Vec<_> = nodes.iter().map(|n| status(lab, n).to_string()).collect();
        panic!("ping {from} -> {to}: {got}/{sent} answered\nstatus: {st:#?}");
    }
}

fn tcp_both_ways(lab: &mut Lab, a: (&str, Ipv4Addr), b: (&str, Ipv4Addr)) {
    lab.tcp_transfer(a.0, a.1, b.0).unwrap_or_else(|e| panic!("{e:#}"));
    lab.tcp_transfer(b.0, b.1, a.0).unwrap_or_else(|e| panic!("{e:#}"));
}

fn drops(lab: &Lab, n: &WeftNode, reason: &str) -> u64 {
    status(lab, n)["drops"][reason].as_u64().unwrap_or(0)
}

fn lease(lab: &Lab, subnet: &str) -> String {
    lab.etcdctl(&["get", "--print-value-only", &format!("/coreos.com/network/subnets/{}", subnet.replace('/', "-"))])
        .unwrap()
        .trim()
        .to_owned()
}

/// host-gw: a weft node and a kernel node route to each other's PublicIP; a kernel node on another L2
/// is refused by both, as the kernel refuses flanneld's route; a second weft node joins and leaves.
#[test]
fn host_gw_with_kernel_nodes() {
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = new_lab();
    lab.start_etcd(&config(r#"{"Type":"host-gw"}"#)).unwrap();
    let k3 = kernel(&mut lab, 3, KernelBackend::HostGw, false);
    let k5 = kernel(&mut lab, 5, KernelBackend::HostGw, true);
    let n1 = weft(&mut lab, 1, &["--underlay-gateway", "192.168.77.254"]);
    let st = status(&lab, &n1);
    assert_eq!((st["node"]["backend"].as_str(), st["node"]["pod_mtu"].as_u64()), (Some("host-gw"), Some(1500)));
    assert_eq!(lease(&lab, &n1.subnet), r#"{"PublicIP":"192.168.77.1","PublicIPv6":null,"BackendType":"host-gw"}"#);
    let subnet_file = std::fs::read_to_string(lab.dir.join(format!("{}-subnet.env", n1.ns))).unwrap();
    assert!(subnet_file.contains("FLANNEL_MTU=1500"), "{subnet_file}");
    wait_path(&lab, &n1, &k3.subnet, Some("direct"));
    wait_path(&lab, &n1, &k5.subnet, Some("off-link"));
    let p1 = lab.tap_pod(&n1, "pa").unwrap();

    assert_ping(&lab, &p1.0, k3.pod_ip, &[&n1]);
    assert_ping(&lab, &k3.pod_ns, p1.1, &[&n1]);
    // Each node routes once: 64 - 1 (the kernel node) - 1 (weft) on the way back.
    assert_eq!(ping_ttl(&p1.0, k3.pod_ip), Some(62));
    assert_eq!(ping_ttl(&k3.pod_ns, p1.1), Some(62));
    tcp_both_ways(&mut lab, (&p1.0, p1.1), (&k3.pod_ns, k3.pod_ip));

    // On the wire: the pod's packet as it is, TTL 63, between the two uplinks.
    let (pod, to) = (p1.0.clone(), k3.pod_ip);
    let frames = lab
        .capture_underlay("br0", &["icmp", "and", "host", &k3.pod_ip.to_string()], 2, || {
            assert_eq!(ping(&pod, to, 1, None, false), (1, 1))
        })
        .unwrap_or_else(|e| panic!("{e:#}"));
    let ip = Ipv4Packet::new_checked(EthernetFrame::new_checked(&frames[0][..]).unwrap().payload().to_vec()).unwrap();
    assert_eq!((ip.src(), ip.dst(), ip.ttl()), (p1.1, k3.pod_ip, 63));
    assert!(ip.verify_checksum());

    // The far node: flanneld's kernel route on k3 is refused ("network is unreachable"), and weft
    // refuses it the same way: nothing reaches it, and weft counts why.
    let routes = String::from_utf8_lossy(&testkit::lab::exec(&k3.ns, &["ip", "route"]).unwrap().stdout).into_owned();
    assert!(!routes.contains(&k5.subnet), "the kernel refused the off-link route: {routes}");
    assert_eq!(ping(&p1.0, k5.pod_ip, 2, None, false).1, 0);
    assert!(drops(&lab, &n1, "peer_off_link") >= 2, "{}", status(&lab, &n1)["drops"]);
    assert!(std::fs::read_to_string(&n1.log).unwrap().contains("refusing the route"));

    // A second weft node joins: weft to weft and kernel to it; then it leaves and its key goes.
    let n2 = weft(&mut lab, 2, &[]);
    let p2 = lab.tap_pod(&n2, "pb").unwrap();
    wait_path(&lab, &n1, &n2.subnet, Some("direct"));
    assert_ping(&lab, &p1.0, p2.1, &[&n1, &n2]);
    assert_ping(&lab, &k3.pod_ns, p2.1, &[&n2]);
    lab.stop_weftd(&n2.ns);
    lab.etcdctl(&["del", &format!("/coreos.com/network/subnets/{}", n2.subnet.replace('/', "-"))]).unwrap();
    wait_path(&lab, &n1, &n2.subnet, None);
    assert_ping(&lab, &p1.0, k3.pod_ip, &[&n1]);
}

/// udp: a weft node and a kernel node running flanneld's udp backend (flannel0 and the relay) carry
/// each other's pods; the datagrams on the wire are the relay's to the byte but for the per-packet
/// fields; a second relay node joins and leaves through etcd.
#[test]
fn udp_with_flanneld_relay_nodes() {
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = new_lab();
    lab.start_etcd(&config(r#"{"Type":"udp"}"#)).unwrap();
    let k3 = kernel(&mut lab, 3, KernelBackend::Udp, false);
    let n1 = weft(&mut lab, 1, &[]);
    let st = status(&lab, &n1);
    assert_eq!((st["node"]["backend"].as_str(), st["node"]["pod_mtu"].as_u64()), (Some("udp"), Some(1472)));
    assert_eq!(lease(&lab, &n1.subnet), r#"{"PublicIP":"192.168.77.1","PublicIPv6":null}"#);
    wait_path(&lab, &n1, &k3.subnet, Some("udp"));
    let p1 = lab.tap_pod(&n1, "pa").unwrap();
    assert_ping(&lab, &p1.0, k3.pod_ip, &[&n1]);
    assert_ping(&lab, &k3.pod_ns, p1.1, &[&n1]);
    // Two hops a node (the kernel's and the relay's): 64 - 2 - 2 back at the sender.
    assert_eq!(ping_ttl(&p1.0, k3.pod_ip), Some(60));
    assert_eq!(ping_ttl(&k3.pod_ns, p1.1), Some(60));
    tcp_both_ways(&mut lab, (&p1.0, p1.1), (&k3.pod_ns, k3.pod_ip));

    // weft's request and the relay's reply side by side.
    let (pod, to) = (p1.0.clone(), k3.pod_ip);
    let frames = lab
        .capture_underlay("br0", &["udp", "port", "8285"], 2, || assert_eq!(ping(&pod, to, 1, None, false), (1, 1)))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let fields = |f: &[u8]| {
        let ip = Ipv4Packet::new_checked(EthernetFrame::new_checked(f).unwrap().payload().to_vec()).unwrap();
        let u = UdpPacket::new_checked(ip.payload().to_vec()).unwrap();
        let inner = Ipv4Packet::new_checked(u.payload().to_vec()).unwrap();
        let csum_ok = u.verify_checksum(ip.src(), ip.dst());
        // The identification is per packet (a counter on each side), so it is not compared.
        (ip.header_len(), ip.dont_frag(), ip.ttl(), u.src_port(), u.dst_port(), csum_ok, inner.ttl())
    };
    let (weft_req, relay_reply) = (fields(&frames[0]), fields(&frames[1]));
    assert_eq!(weft_req, (20, true, 64, 8285, 8285, true, 62), "weft's datagram");
    assert_eq!(weft_req, relay_reply, "weft's datagram and the relay's differ");

    // A second relay node joins, is reached, and leaves.
    let k4 = kernel(&mut lab, 4, KernelBackend::Udp, false);
    wait_path(&lab, &n1, &k4.subnet, Some("udp"));
    assert_ping(&lab, &p1.0, k4.pod_ip, &[&n1]);
    assert_ping(&lab, &k4.pod_ns, p1.1, &[&n1]);
    lab.etcdctl(&["del", "/coreos.com/network/subnets/10.244.4.0-24"]).unwrap();
    wait_path(&lab, &n1, &k4.subnet, None);
    assert_eq!(ping(&p1.0, k4.pod_ip, 1, None, false).1, 0);
    assert!(drops(&lab, &n1, "no_route") >= 1);
    assert_ping(&lab, &p1.0, k3.pod_ip, &[&n1]);
}

/// VXLAN with DirectRouting: a kernel node on our L2 is routed to directly (plain IPv4 both ways, as
/// its flanneld routes to us), one behind the underlay router gets VXLAN through the gateway both ways.
#[test]
fn vxlan_direct_routing_near_and_far() {
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = new_lab();
    lab.start_etcd(&config(r#"{"Type":"vxlan","DirectRouting":true}"#)).unwrap();
    let dr = KernelBackend::Vxlan { direct_routing: true };
    let k3 = kernel(&mut lab, 3, dr, false);
    let k5 = kernel(&mut lab, 5, dr, true);
    let n1 = weft(&mut lab, 1, &["--underlay-gateway", "192.168.77.254"]);
    let st = status(&lab, &n1);
    assert_eq!(
        (st["node"]["backend"].as_str(), st["node"]["direct_routing"].as_bool(), st["node"]["pod_mtu"].as_u64()),
        (Some("vxlan"), Some(true), Some(1450))
    );
    wait_path(&lab, &n1, &k3.subnet, Some("direct"));
    wait_path(&lab, &n1, &k5.subnet, Some("vxlan"));
    let p1 = lab.tap_pod(&n1, "pa").unwrap();
    for k in [&k3, &k5] {
        assert_ping(&lab, &p1.0, k.pod_ip, &[&n1]);
        assert_ping(&lab, &k.pod_ns, p1.1, &[&n1]);
        tcp_both_ways(&mut lab, (&p1.0, p1.1), (&k.pod_ns, k.pod_ip));
    }
    // The near kernel node holds a direct route to us, the far one a route through flannel.1.
    let route = |k: &KernelNode| {
        String::from_utf8_lossy(&testkit::lab::exec(&k.ns, &["ip", "route", "show", &n1.subnet]).unwrap().stdout)
            .into_owned()
    };
    assert!(route(&k3).contains("via 192.168.77.1") && !route(&k3).contains("flannel.1"), "{}", route(&k3));
    assert!(route(&k5).contains("flannel.1"), "{}", route(&k5));
    // On the wire to the near node: plain IPv4, no VXLAN.
    let (pod, to) = (p1.0.clone(), k3.pod_ip);
    let frames = lab
        .capture_underlay("br0", &["host", &k3.pod_ip.to_string()], 2, || {
            assert_eq!(ping(&pod, to, 1, None, false), (1, 1))
        })
        .unwrap_or_else(|e| panic!("{e:#}"));
    for f in &frames {
        let ip = Ipv4Packet::new_checked(EthernetFrame::new_checked(&f[..]).unwrap().payload().to_vec()).unwrap();
        assert_eq!(ip.protocol(), 1, "ICMP straight on the underlay, not VXLAN");
    }
    assert_eq!(ping_ttl(&p1.0, k3.pod_ip), Some(62));
    assert_eq!(ping_ttl(&p1.0, k5.pod_ip), Some(62));
}
