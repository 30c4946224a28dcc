//! End-to-end tests in the netns lab (root, hugepages): weft nodes and a kernel flannel node exchange
//! pod traffic. Each test builds its own lab and tears it down, also on failure; tests take turns.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

use std::path::Path;
use std::sync::Mutex;

use serde_json::Value;
use testkit::lab::{http_get, ping, AsPeer, KernelNode, Lab, TestpmdProcess, WeftNode};
use weft_config::Peer;

static ONE_LAB_AT_A_TIME: Mutex<()> = Mutex::new(());

fn new_lab() -> Lab {
    Lab::new(Path::new(env!("CARGO_BIN_EXE_weftd")), Path::new(env!("CARGO_BIN_EXE_weftctl")))
        .unwrap_or_else(|e| panic!("{e:#}"))
}

fn lease_of_weft(n: &WeftNode) -> Peer {
    n.peer()
}

fn lease_of_kernel(k: &KernelNode) -> Peer {
    k.peer()
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

/// Weft node 1 (started with `extra`) and kernel node 3, each knowing the other's lease.
fn weft_and_kernel(lab: &mut Lab, extra: &[&str]) -> (WeftNode, KernelNode) {
    let n1 = lab.weft_node(1).unwrap();
    let k3 = lab.kernel_node(3, &[lease_of_weft(&n1)]).unwrap();
    lab.start_weftd(&n1, &[lease_of_kernel(&k3)], extra).unwrap_or_else(|e| panic!("{e:#}"));
    (n1, k3)
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

/// A DPDK pod (`dpdk-testpmd --forward-mode=icmpecho` on `net_virtio_user`) behind a vhost-user port
/// answers a kernel pod's ping across the overlay.
#[test]
fn vhost_pod_answers_kernel_ping() {
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = new_lab();
    let (n1, k3) = weft_and_kernel(&mut lab, &[]);
    let info = lab.weftctl(&n1, &["pod", "add", "vh", "--kind", "vhost"]).unwrap();
    let (sock, mac, ip) =
        (info["iface"].as_str().unwrap(), info["mac"].as_str().unwrap(), info["ip"].as_str().unwrap());
    let log = lab.spawn_testpmd_pod(&n1.ns, sock, mac, false).unwrap();
    // Wait for the virtio-user pod to connect and the vhost port to come up.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let _ = ping(&k3.pod_ns, ip.parse().unwrap(), 2, None, false);
    let (sent, got) = ping(&k3.pod_ns, ip.parse().unwrap(), 5, None, false);
    assert_eq!((sent, got), (5, 5), "testpmd log:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
    let st = lab.weftctl(&n1, &["status"]).unwrap();
    let pod = st["ports"].as_array().unwrap().iter().find(|p| p["name"] == "vh").cloned().unwrap();
    assert!(pod["rx_packets"].as_u64().unwrap() >= 5 && pod["tx_packets"].as_u64().unwrap() >= 5, "{pod}");
    // Deleting the pod returns its mbufs and its address.
    lab.weftctl(&n1, &["pod", "del", "vh"]).unwrap();
    let again = lab.weftctl(&n1, &["pod", "add", "vh2", "--kind", "vhost"]).unwrap();
    assert_eq!(again["ip"].as_str(), Some(ip), "the address was freed");
}

/// `weftctl trace` shows what the workers did with a kernel node's ping to a tap pod (VPP's `show
/// trace`): the VXLAN frame in, the pod it went to, the encapsulated answer out and the peer it hit;
/// `weftctl peers` the peer with its next-hop MAC and the frames sent to it; `status` the workers'
/// busy and idle cycles.
#[test]
fn trace_peers_and_worker_cycles() {
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = new_lab();
    let (n1, k3) = weft_and_kernel(&mut lab, &[]);
    let (_, pod_ip) = lab.tap_pod(&n1, "pa").unwrap();
    assert_ping(&k3.pod_ns, pod_ip, &lab, &[&n1]);
    let pinger = {
        let ns = k3.pod_ns.clone();
        std::thread::spawn(move || ping(&ns, pod_ip, 15, None, false))
    };
    let t = lab.weftctl(&n1, &["trace", "6", "--seconds", "8"]).unwrap();
    let sent = pinger.join().unwrap();
    assert_eq!(t["traced"], 6, "{t:#}");
    eprintln!("weftctl trace 6: {t:#}");
    let packets = t["packets"].as_array().unwrap();
    let has = |v: &Value, what: &str| v.as_array().unwrap().iter().any(|l| l.as_str().unwrap().starts_with(what));
    let request_in = packets
        .iter()
        .find(|p| p["in"] == "uplink" && p["verdict"] == "to pod")
        .unwrap_or_else(|| panic!("no decapsulated request: {t:#}"));
    assert!(has(&request_in["received"], "vxlan vni 1") && has(&request_in["received"], "icmp echo request"), "{t:#}");
    assert_eq!(request_in["out"], "pa");
    assert!(packets.iter().all(|p| p["at_us"].as_f64().is_some_and(|t| (0.0..8e6).contains(&t))), "{t:#}");
    assert!(!has(&request_in["sent"], "vxlan") && has(&request_in["sent"], "icmp echo request"), "{t:#}");
    let reply_out = packets
        .iter()
        .find(|p| p["in"] == "pa" && p["verdict"] == "to peer")
        .unwrap_or_else(|| panic!("no encapsulated reply: {t:#}"));
    assert_eq!(reply_out["peer"]["subnet"], k3.subnet.as_str());
    assert_eq!(reply_out["peer"]["public_ip"], k3.public_ip.to_string());
    assert!(has(&reply_out["sent"], "vxlan vni 1") && has(&reply_out["sent"], "icmp echo reply"), "{t:#}");

    let peers = lab.weftctl(&n1, &["peers"]).unwrap();
    let p = &peers[0];
    let k3_mac = testkit::lab::exec(&k3.ns, &["cat", "/sys/class/net/eth0/address"]).unwrap();
    assert_eq!(p["subnet"], k3.subnet.as_str(), "{peers:#}");
    assert_eq!(p["vtep_mac"], k3.vtep_mac.as_str(), "{peers:#}");
    assert_eq!(p["next_hop_mac"], String::from_utf8_lossy(&k3_mac.stdout).trim(), "{peers:#}");
    // Every reply went to this peer: the warm-up's and the traced ping's.
    assert!(p["tx_packets"].as_u64().unwrap() >= u64::from(sent.1) + 5, "{peers:#} after {sent:?}");

    // Busy time is the loops that found packets, not the sleeps before them (up to 500 µs, 1.3 M cycles
    // at 2.6 GHz; counting them gave 875 k cycles a packet here). 400 pings 10 ms apart, each after the
    // worker went back to sleeping, so that a few milliseconds of the worker's core taken by the host
    // (a CI run once saw 131 k cycles a packet over the 49 packets above) are spread over many packets.
    let ip = pod_ip.to_string();
    let flood =
        testkit::lab::exec(&k3.pod_ns, &["ping", "-n", "-q", "-c", "400", "-i", "0.01", "-W", "2", &ip]).unwrap();
    assert!(flood.status.success(), "{}", String::from_utf8_lossy(&flood.stdout));
    let st = lab.weftctl(&n1, &["status"]).unwrap();
    let w = &st["workers"][0];
    assert!(w["busy_cycles"].as_u64().unwrap() > 0 && w["idle_cycles"].as_u64().unwrap() > 0, "{w}");
    assert!(w["busy_percent"].as_f64().unwrap() < 50.0, "a ping every 10 ms keeps a worker mostly idle: {w}");
    assert!(w["rx_packets"].as_u64().unwrap() >= 800, "{w}");
    let cpp = w["cycles_per_packet"].as_f64().unwrap();
    eprintln!("worker 0 after {} packets: {cpp:.0} busy cycles a packet", w["rx_packets"]);
    assert!(cpp > 0.0 && cpp < 300_000.0, "{w}");
}

/// A 9000-byte underlay carries 8950-byte pod packets (the pod MTU flannel's vxlan leaves): a kernel
/// flannel node's pod pings a DPDK pod behind vhost-user with them, not fragmented, and gets them back.
#[test]
fn jumbo_underlay_carries_8950_byte_pod_packets() {
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = new_lab();
    let n1 = lab.weft_node(1).unwrap();
    let k3 = lab.kernel_node(3, &[lease_of_weft(&n1)]).unwrap();
    // The underlay's bridge and veths, then the kernel node as flanneld configures it on such a link:
    // flannel.1 at 9000 - 50, and the pod side (cni0, the pod's veth) at the subnet file's MTU.
    let sh = |ns: &str, cmd: &str| testkit::lab::exec(ns, &["sh", "-ec", cmd]).unwrap();
    sh(&lab.underlay_ns, "ip link set n1 mtu 9000; ip link set k3 mtu 9000; ip link set br0 mtu 9000");
    sh(&k3.ns, "ip link set eth0 mtu 9000; ip link set flannel.1 mtu 8950; ip link set cni0 mtu 8950; ip link set veth0 mtu 8950");
    sh(&k3.pod_ns, "ip link set eth0 mtu 8950");
    lab.start_weftd(&n1, &[lease_of_kernel(&k3)], &["--underlay-mtu", "9000"]).unwrap();
    let st = lab.weftctl(&n1, &["status"]).unwrap();
    assert_eq!(st["node"]["pod_mtu"], 8950, "{st}");
    let info = lab.weftctl(&n1, &["pod", "add", "vh", "--kind", "vhost"]).unwrap();
    let (sock, mac, ip) =
        (info["iface"].as_str().unwrap(), info["mac"].as_str().unwrap(), info["ip"].as_str().unwrap());
    // testpmd's mbufs hold a whole jumbo frame, and its port takes them.
    let jumbo = TestpmdProcess { testpmd_args: &["--mbuf-size=9344", "--max-pkt-len=9018"], ..Default::default() };
    let log = lab.spawn_testpmd_pods(&n1.ns, "testpmd", &[(sock, mac)], false, &jumbo).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    let ip: std::net::Ipv4Addr = ip.parse().unwrap();
    let _ = ping(&k3.pod_ns, ip, 2, None, false);
    // 8922 bytes of ICMP payload: 8950-byte IP packets, 9000 bytes on the underlay, DF set.
    let (sent, got) = ping(&k3.pod_ns, ip, 5, Some(8922), true);
    let st = lab.weftctl(&n1, &["status"]).unwrap();
    assert_eq!(
        (sent, got),
        (5, 5),
        "status: {st}\ntestpmd log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let up = st["ports"].as_array().unwrap().iter().find(|p| p["name"] == "uplink").cloned().unwrap();
    assert!(up["rx_bytes"].as_u64().unwrap() >= 5 * 9000, "the frames crossed whole: {up}");
    // The host port (a veth pair whose ring frames fit the pod MTU) carries them too: the node's own
    // overlay address (<subnet>.0 on weft0) answers through it.
    let (sent, got) = ping(&k3.pod_ns, "10.244.1.0".parse().unwrap(), 5, Some(8922), true);
    let st = lab.weftctl(&n1, &["status"]).unwrap();
    assert_eq!((sent, got), (5, 5), "to the host port, status: {st}");
    // And a tap pod (its veth pair's ring frames fit the pod MTU too), at the pod MTU.
    let (tap_ns, tap_ip) = lab.tap_pod(&n1, "tj").unwrap();
    let mtu = testkit::lab::exec(&tap_ns, &["cat", "/sys/class/net/wt-tj/mtu"]).unwrap();
    assert_eq!(String::from_utf8_lossy(&mtu.stdout).trim(), "8950", "the tap pod's MTU");
    let _ = ping(&k3.pod_ns, tap_ip, 2, None, false);
    let (sent, got) = ping(&k3.pod_ns, tap_ip, 5, Some(8922), true);
    let st = lab.weftctl(&n1, &["status"]).unwrap();
    assert_eq!((sent, got), (5, 5), "to a tap pod, status: {st}");
    // (The underlay's own chatter may show up as not_for_us; nothing may be dropped for its size.)
    for reason in ["truncated", "too_big", "tx_full", "multiseg", "no_headroom", "fragment"] {
        assert!(st["drops"][reason].is_null(), "{reason}: {st}");
    }
}

fn tcp_transfer(lab: &mut Lab, server_ns: &str, server_ip: std::net::Ipv4Addr, client_ns: &str) {
    lab.tcp_transfer(server_ns, server_ip, client_ns).unwrap_or_else(|e| panic!("{e:#}"));
}

#[test]
fn tcp_transfer_both_ways_and_pod_mtu() {
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = cluster();
    let nodes = [&c.n1, &c.n2];
    assert_ping(&c.pod1.0, c.k3.pod_ip, &c.lab, &nodes);
    tcp_transfer(&mut c.lab, &c.k3.pod_ns.clone(), c.k3.pod_ip, &c.pod1.0.clone());
    tcp_transfer(&mut c.lab, &c.pod2.0.clone(), c.pod2.1, &c.k3.pod_ns.clone());
    tcp_transfer(&mut c.lab, &c.pod1.0.clone(), c.pod1.1, &c.pod2.0.clone());
    // Tap pods are veth pairs that weftd holds with af_packet, no tun descriptors (net_tap's, a system
    // call per frame).
    for n in nodes {
        let tun = c.lab.tun_fds(&n.ns).unwrap();
        assert_eq!(tun, 0, "{}: {tun} tun descriptors", n.ns);
    }
    // The kernel handles what weft writes to the host port and to tap pods off the worker's CPU (the
    // lab's weftd runs its worker on CPU 1): RPS on every CPU but that one.
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap();
    let others = weft_config::node::cpu_list(online.trim()).unwrap().into_iter().filter(|&c| c != 1 && c < 64);
    let expect = others.fold(0u64, |m, c| m | 1 << c);
    assert_ne!(expect, 0, "the lab needs a CPU besides the worker's: {online}");
    for (ns, iface) in [(c.n1.ns.as_str(), "weft0"), (c.n2.ns.as_str(), "weft0"), (c.pod1.0.as_str(), "wt-pa")] {
        assert_eq!(Lab::rps_cpus(ns, iface).unwrap(), expect, "RPS of {iface} in {ns}");
    }
    // The NAPI threads of the host ports and the tap pods (GRO for what weft writes to weft0 and wt-pa)
    // run there too.
    let script =
        "for p in /proc/[0-9]*; do grep -Eqs '^napi/(weft0|wt-pa)-' $p/comm && grep Cpus_allowed_list $p/status; done";
    let napi = String::from_utf8_lossy(&std::process::Command::new("sh").args(["-c", script]).output().unwrap().stdout)
        .into_owned();
    let lists: Vec<&str> = napi.lines().map(|l| l.rsplit('\t').next().unwrap_or("").trim()).collect();
    assert!(lists.len() >= 3, "a NAPI thread per host port and tap pod: {napi:?}");
    for l in &lists {
        let m = weft_config::node::cpu_list(l).unwrap().into_iter().fold(0u64, |m, c| m | 1 << c);
        assert_eq!(m, expect, "NAPI thread on {l}: {napi}");
    }
    let st = c.lab.weftctl(&c.n1, &["status"]).unwrap();
    let shown = st["node"]["kernel_cpus"].as_array().unwrap().iter().fold(0u64, |m, c| m | 1 << c.as_u64().unwrap());
    assert_eq!(shown, expect, "status names the RPS CPUs: {}", st["node"]);

    // Pod MTU is underlay MTU - 50 = 1450. Give the pod a larger interface MTU so its own kernel lets
    // big DF packets out, as a misconfigured pod would: 1450 bytes pass, 1451 get fragmentation-needed
    // from the gateway, as the kernel's flannel.1 would answer.
    testkit::lab::exec(&c.pod1.0, &["ip", "link", "set", "wt-pa", "mtu", "1500"]).unwrap();
    let (sent, got) = ping(&c.pod1.0, c.k3.pod_ip, 2, Some(1450 - 28), true);
    assert_eq!((sent, got), (2, 2), "DF ping at the pod MTU passes");
    let out = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &c.pod1.0,
            "ping",
            "-n",
            "-c",
            "1",
            "-W",
            "2",
            "-M",
            "do",
            "-s",
            "1423",
            &c.k3.pod_ip.to_string(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("Frag needed") && text.contains("mtu = 1450") && text.contains("10.244.1.1"), "{text}");
    let st = c.lab.weftctl(&c.n1, &["status"]).unwrap();
    assert!(st["drops"]["too_big"].is_null(), "DF packets are answered, not dropped: {st}");
}

/// weft's encapsulation next to the kernel's on the underlay: a ping from a weft pod to a kernel pod
/// (weft encapsulates the request, the kernel the reply), captured on the underlay bridge.
///
/// Equal: outer EtherType, IPv4 version/IHL/TOS, DF clear, TTL 64, protocol UDP, UDP destination 8472,
/// VXLAN flags 0x08 and VNI 1, inner EtherType, inner TTL 63 (routed once by the sender), inner MACs =
/// the VtepMACs of sender and receiver. May differ: the outer IPv4 identification (a counter on each
/// side), the UDP source port (each hashes the inner flow with its own hash into 32768-60999), and the
/// UDP checksum (the kernel computes one, weft sends zero as RFC 7348 recommends for IPv4).
#[test]
fn encap_on_the_wire_matches_the_kernel() {
    use dataplane::wire::{EthernetFrame, Ipv4Packet, UdpPacket, VxlanPacket};
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = cluster();
    assert_ping(&c.pod1.0, c.k3.pod_ip, &c.lab, &[&c.n1, &c.n2]);
    let (pod, k3_pod) = (c.pod1.0.clone(), c.k3.pod_ip);
    let filter = ["udp", "port", "8472", "and", "host", "192.168.77.3"];
    let frames = c
        .lab
        .capture_underlay("br0", &filter, 2, || assert_eq!(ping(&pod, k3_pod, 1, None, false), (1, 1)))
        .unwrap_or_else(|e| panic!("{e:#}"));
    struct Fields {
        tos: u8,
        df: bool,
        ttl: u8,
        proto: u8,
        dport: u16,
        sport: u16,
        flags: u8,
        vni: u32,
        inner_type: u16,
        inner_ttl: u8,
        src_vtep: String,
        dst_vtep: String,
        csum: u16,
    }
    let parse = |f: &[u8]| {
        let eth = EthernetFrame::new_checked(f).unwrap();
        assert_eq!(eth.ethertype(), 0x0800);
        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.header_len(), 20);
        let u = UdpPacket::new_checked(ip.payload()).unwrap();
        let vx = VxlanPacket::new_checked(u.payload()).unwrap();
        let inner = EthernetFrame::new_checked(vx.payload()).unwrap();
        let iip = Ipv4Packet::new_checked(inner.payload()).unwrap();
        Fields {
            tos: ip.dscp_ecn(),
            df: ip.dont_frag(),
            ttl: ip.ttl(),
            proto: ip.protocol(),
            dport: u.dst_port(),
            sport: u.src_port(),
            flags: vx.flags(),
            vni: vx.vni().get(),
            inner_type: inner.ethertype(),
            inner_ttl: iip.ttl(),
            src_vtep: inner.src().to_string(),
            dst_vtep: inner.dst().to_string(),
            csum: u.checksum(),
        }
    };
    let (weft, kernel) = (parse(&frames[0]), parse(&frames[1]));
    for (name, w, k) in [
        ("tos", weft.tos as u32, kernel.tos as u32),
        ("df", weft.df as u32, kernel.df as u32),
        ("ttl", weft.ttl as u32, kernel.ttl as u32),
        ("proto", weft.proto as u32, kernel.proto as u32),
        ("udp dport", weft.dport as u32, kernel.dport as u32),
        ("vxlan flags", weft.flags as u32, kernel.flags as u32),
        ("vni", weft.vni, kernel.vni),
        ("inner ethertype", weft.inner_type as u32, kernel.inner_type as u32),
        ("inner ttl", weft.inner_ttl as u32, kernel.inner_ttl as u32),
    ] {
        assert_eq!(w, k, "{name}: weft {w} kernel {k}");
    }
    assert_eq!((weft.ttl, weft.df, weft.dport, weft.flags, weft.vni, weft.inner_ttl), (64, false, 8472, 0x08, 1, 63));
    assert_eq!((weft.src_vtep.as_str(), weft.dst_vtep.as_str()), (c.n1.vtep_mac.as_str(), c.k3.vtep_mac.as_str()));
    assert_eq!((kernel.src_vtep.as_str(), kernel.dst_vtep.as_str()), (c.k3.vtep_mac.as_str(), c.n1.vtep_mac.as_str()));
    assert!((32768..61000).contains(&weft.sport) && (32768..61000).contains(&kernel.sport));
    assert_eq!(weft.csum, 0, "weft sends a zero UDP checksum");
}

const NETWORK_CONFIG: &str = r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":1,"Port":8472}}"#;

fn peers_of(lab: &Lab, n: &WeftNode) -> u64 {
    lab.weftctl(n, &["status"]).map(|s| s["tables"]["peers"].as_u64().unwrap_or(0)).unwrap_or(0)
}

/// weft nodes take their subnet, network config and peers from etcd; the kernel node writes its lease
/// there and programs its kernel from the leases, as flanneld does. Then a node leaves.
#[test]
fn etcd_cluster_learns_and_forgets_peers() {
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = new_lab();
    lab.start_etcd(NETWORK_CONFIG).unwrap();
    let n1 = lab.weft_node(1).unwrap();
    let n2 = lab.weft_node(2).unwrap();
    let k3 = lab.kernel_node(3, &[]).unwrap();
    lab.kernel_flanneld(&k3).unwrap();
    lab.start_weftd_etcd(&n1, &[]).unwrap();
    lab.start_weftd_etcd(&n2, &[]).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while peers_of(&lab, &n1) < 2 || peers_of(&lab, &n2) < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "peers not learned from etcd: {:?}\n{:?}",
            lab.weftctl(&n1, &["status"]).map(|s| s["tables"].clone()),
            lab.weftctl(&n2, &["status"]).map(|s| (s["tables"].clone(), s["etcd"].clone()))
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let keys = lab.etcdctl(&["get", "--prefix", "--keys-only", "/coreos.com/network/subnets/"]).unwrap();
    assert_eq!(keys.lines().filter(|l| !l.is_empty()).count(), 3, "{keys}");
    let pod1 = lab.tap_pod(&n1, "pa").unwrap();
    let pod2 = lab.tap_pod(&n2, "pb").unwrap();
    // Give the kernel node's flanneld a moment to program the weft nodes' leases.
    std::thread::sleep(std::time::Duration::from_millis(800));
    assert_ping(&pod1.0, pod2.1, &lab, &[&n1, &n2]);
    assert_ping(&pod1.0, k3.pod_ip, &lab, &[&n1, &n2]);
    assert_ping(&k3.pod_ns, pod2.1, &lab, &[&n1, &n2]);
    let st1 = lab.weftctl(&n1, &["status"]).unwrap();
    assert_eq!(st1["etcd"]["connected"], true, "{st1}");

    // n2 leaves: its weftd stops (its lease stays, as flanneld's does), then its key is deleted.
    let n2_subnet = lab.weftctl(&n2, &["status"]).unwrap()["node"]["subnet"].as_str().unwrap().replace('/', "-");
    lab.stop_weftd(&n2.ns);
    lab.etcdctl(&["del", &format!("/coreos.com/network/subnets/{n2_subnet}")]).unwrap();
    let t0 = std::time::Instant::now();
    while peers_of(&lab, &n1) != 1 {
        assert!(t0.elapsed() < std::time::Duration::from_secs(5), "n1 still has {} peers", peers_of(&lab, &n1));
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let took = t0.elapsed();
    eprintln!("n1 dropped the departed node's route {took:?} after its key was deleted");
    assert!(took < std::time::Duration::from_secs(1), "took {took:?}");
    let (_, got) = ping(&pod1.0, pod2.1, 2, None, false);
    assert_eq!(got, 0);
    let st = lab.weftctl(&n1, &["status"]).unwrap();
    assert!(st["drops"]["no_route"].as_u64().unwrap_or(0) >= 2, "counted as no route: {st}");
    assert_ping(&pod1.0, k3.pod_ip, &lab, &[&n1]);
}

/// etcd killed (SIGKILL) under traffic: forwarding to known peers loses nothing; after etcd comes back
/// a change made there arrives.
#[test]
fn etcd_killed_under_traffic_loses_nothing() {
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = new_lab();
    lab.start_etcd(NETWORK_CONFIG).unwrap();
    let n1 = lab.weft_node(1).unwrap();
    let n2 = lab.weft_node(2).unwrap();
    lab.start_weftd_etcd(&n1, &[]).unwrap();
    lab.start_weftd_etcd(&n2, &[]).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while peers_of(&lab, &n1) < 1 || peers_of(&lab, &n2) < 1 {
        assert!(std::time::Instant::now() < deadline, "peers not learned");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let pod1 = lab.tap_pod(&n1, "pa").unwrap();
    let pod2 = lab.tap_pod(&n2, "pb").unwrap();
    assert_ping(&pod1.0, pod2.1, &lab, &[&n1, &n2]);
    // Pings at 10 ms while etcd is dead for 3 s (WEFT_ETCD_OUTAGE_SECONDS=30 for the long run).
    let outage: u64 = std::env::var("WEFT_ETCD_OUTAGE_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let count = ((outage + 3) * 100).to_string();
    let (ns, dst) = (pod1.0.clone(), pod2.1.to_string());
    let pinger = std::thread::spawn(move || {
        std::process::Command::new("ip")
            .args(["netns", "exec", &ns, "ping", "-n", "-q", "-c", &count, "-i", "0.01", "-W", "1", &dst])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    });
    std::thread::sleep(std::time::Duration::from_secs(1));
    lab.kill_etcd();
    std::thread::sleep(std::time::Duration::from_secs(outage));
    let st = lab.weftctl(&n1, &["status"]).unwrap();
    assert_eq!(st["etcd"]["connected"], false, "etcd is down: {}", st["etcd"]);
    assert_eq!(st["tables"]["peers"], 1, "the last table stays");
    // The metrics and /readyz tell the truth: etcd is gone, the lease (24 h) is still ours.
    let (_, metrics) = http_get(&n1.ns, "http://127.0.0.1:9109/metrics");
    assert!(metrics.lines().any(|l| l == "weft_etcd_connected 0"), "weft_etcd_connected must be 0");
    assert_eq!(http_get(&n1.ns, "http://127.0.0.1:9109/readyz").0, 200, "still ready: the lease holds");
    lab.restart_etcd().unwrap();
    let out = pinger.join().unwrap();
    let line = out.lines().find(|l| l.contains("transmitted")).unwrap_or_default().to_owned();
    eprintln!("during the {outage} s etcd outage: {line}");
    let sent = (outage + 3) * 100;
    assert!(line.starts_with(&format!("{sent} packets transmitted, {sent} received")), "{out}");
    // Convergence: a lease written after the restart reaches n1.
    lab.etcdctl(&["put", "/coreos.com/network/subnets/10.244.250.0-24", r#"{"PublicIP":"192.168.77.250","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:00:00:00:00:fa"}}"#]).unwrap();
    let t0 = std::time::Instant::now();
    while peers_of(&lab, &n1) != 2 {
        assert!(t0.elapsed() < std::time::Duration::from_secs(15), "n1 did not converge after etcd came back");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    eprintln!("converged {:?} after the put", t0.elapsed());
    assert_eq!(lab.weftctl(&n1, &["status"]).unwrap()["etcd"]["connected"], true);

    // etcd's address cut off (its link down): connections hang instead of being refused.
    let (ns, dst) = (pod1.0.clone(), pod2.1.to_string());
    let pinger = std::thread::spawn(move || {
        std::process::Command::new("ip")
            .args(["netns", "exec", &ns, "ping", "-n", "-q", "-c", "500", "-i", "0.02", "-W", "1", &dst])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    });
    std::thread::sleep(std::time::Duration::from_secs(1));
    testkit::lab::exec(&lab.underlay_ns, &["ip", "link", "set", "mgmt0", "down"]).unwrap();
    let t0 = std::time::Instant::now();
    while lab.weftctl(&n1, &["status"]).unwrap()["etcd"]["connected"] != false {
        assert!(t0.elapsed() < std::time::Duration::from_secs(15), "a dead etcd link not noticed");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    eprintln!("etcd link down noticed after {:?}", t0.elapsed());
    std::thread::sleep(std::time::Duration::from_secs(3));
    testkit::lab::exec(&lab.underlay_ns, &["ip", "link", "set", "mgmt0", "up"]).unwrap();
    let out = pinger.join().unwrap();
    let line = out.lines().find(|l| l.contains("transmitted")).unwrap_or_default().to_owned();
    eprintln!("during the cut: {line}");
    assert!(line.starts_with("500 packets transmitted, 500 received"), "{out}");
    lab.etcdctl(&["del", "/coreos.com/network/subnets/10.244.250.0-24"]).unwrap();
    let t0 = std::time::Instant::now();
    while peers_of(&lab, &n1) != 1 {
        assert!(t0.elapsed() < std::time::Duration::from_secs(20), "n1 did not converge after the link came back");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    eprintln!("converged {:?} after the link came back", t0.elapsed());
}

fn prom_query(ns: &str, q: &str) -> f64 {
    let out = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "curl",
            "-s",
            "-m",
            "5",
            "--get",
            "--data-urlencode",
            &format!("query={q}"),
            "http://127.0.0.1:9090/api/v1/query",
        ])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["data"]["result"][0]["value"][1].as_str().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN)
}

/// A real Prometheus scrapes weftd: the counters it stores match what was sent; the exposition passes
/// promtool; /healthz names a stalled worker within 2 s; /readyz is ready.
#[test]
fn prometheus_scrapes_weftd() {
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = cluster();
    assert_ping(&c.k3.pod_ns, c.pod1.1, &c.lab, &[&c.n1, &c.n2]);
    let ns = c.n1.ns.clone();
    assert_eq!(http_get(&ns, "http://127.0.0.1:9109/readyz").0, 200);
    let (code, text) = http_get(&ns, "http://127.0.0.1:9109/metrics");
    assert_eq!(code, 200);
    for name in [
        "weft_port_packets_total",
        "weft_drops_total",
        "weft_worker_up",
        "weft_peers",
        "weft_build_info",
        "weft_mempool_mbufs_in_use",
        "weft_port_packets_per_second",
        "weft_port_hw_rx_missed_total{port=\"uplink\"}",
        "weft_port_hw_rx_nombuf_total{port=\"host\"}",
        "weft_port_xstats_total{port=\"uplink\",name=\"rx_good_packets\"}",
        "weft_ready 1",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
    let lint = c.lab.dir.join("metrics.txt");
    std::fs::write(&lint, &text).unwrap();
    let out = std::process::Command::new("sh")
        .args(["-c", &format!("promtool check metrics < {}", lint.display())])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/prometheus/weft-alerts.yml");
    assert!(std::process::Command::new("promtool").args(["check", "rules", rules]).output().unwrap().status.success());

    // Prometheus in n1's namespace, scraping every second.
    let conf = c.lab.dir.join("prometheus.yml");
    std::fs::write(&conf, "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: weft\n    static_configs:\n      - targets: ['127.0.0.1:9109']\n").unwrap();
    let data = c.lab.dir.join("prometheus-data");
    c.lab
        .spawn(
            &ns,
            &[
                "prometheus",
                &format!("--config.file={}", conf.display()),
                &format!("--storage.tsdb.path={}", data.display()),
                "--web.listen-address=127.0.0.1:9090",
            ],
            &c.lab.dir.join("prometheus.log"),
        )
        .unwrap();
    let t0 = std::time::Instant::now();
    while prom_query(&ns, "up{job=\"weft\"}") != 1.0 {
        assert!(t0.elapsed() < std::time::Duration::from_secs(30), "prometheus never scraped weftd");
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    // Pin the pod's gateway entry so the only frames weft sends to the pod are the ones we send.
    testkit::lab::exec(
        &c.pod1.0,
        &["ip", "neigh", "replace", "10.244.1.1", "lladdr", &c.n1.vtep_mac, "dev", "wt-pa", "nud", "permanent"],
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let q = "sum(weft_port_packets_total{port=\"pa\",direction=\"tx\"})";
    let before = prom_query(&ns, q);
    const N: u32 = 500;
    let send = format!("import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nfor i in range({N}):\n  s.sendto(b'x'*64,('{}',9))\n  time.sleep(0.001)", c.pod1.1);
    testkit::lab::exec(&c.k3.pod_ns, &["/usr/bin/python3", "-c", &send]).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    let after = prom_query(&ns, q);
    assert_eq!(after - before, N as f64, "Prometheus saw {before} -> {after} frames to the pod; sent {N}");
    let inc = prom_query(&ns, "sum(increase(weft_port_packets_total{port=\"pa\",direction=\"tx\"}[10s]))");
    assert!((N as f64 * 0.7..N as f64 * 1.5).contains(&inc), "increase over 10 s: {inc}");

    // A stalled worker turns /healthz to 503 within 2 s, naming it; then it recovers.
    assert_eq!(http_get(&ns, "http://127.0.0.1:9109/healthz").0, 200);
    c.lab.weftctl(&c.n1, &["debug", "pause-worker", "0", "--seconds", "5"]).unwrap();
    let t0 = std::time::Instant::now();
    let body = loop {
        let (code, body) = http_get(&ns, "http://127.0.0.1:9109/healthz");
        if code == 503 {
            break body;
        }
        assert!(t0.elapsed() < std::time::Duration::from_secs(4), "healthz still {code} after {:?}", t0.elapsed());
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    eprintln!("healthz 503 after {:?}: {body}", t0.elapsed());
    assert!(body.contains("worker 0 stalled"), "{body}");
    assert!(t0.elapsed() < std::time::Duration::from_secs(2), "stall seen after {:?}", t0.elapsed());
    std::thread::sleep(std::time::Duration::from_secs(4));
    assert_eq!(http_get(&ns, "http://127.0.0.1:9109/healthz").0, 200, "recovered");

    // A deleted pod's series leave the exposition (within the 10 s a series lives unwritten); the
    // others stay.
    c.lab.weftctl(&c.n1, &["pod", "del", "pa"]).unwrap();
    let t0 = std::time::Instant::now();
    loop {
        let (_, text) = http_get(&ns, "http://127.0.0.1:9109/metrics");
        if !text.contains("port=\"pa\"") {
            assert!(text.contains("weft_build_info") && text.contains("port=\"uplink\""), "{text}");
            break;
        }
        assert!(t0.elapsed() < std::time::Duration::from_secs(15), "pod pa's series still exported");
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    eprintln!("the deleted pod's series left /metrics after {:?}", t0.elapsed());
}

/// Two workers on one node (three lcores mapped onto this machine's two CPUs): the uplink's two
/// af_packet queue pairs fan out between them, each sends on its own TX queue of every port, and one
/// polls all RX queues of each pod. Traffic of many flows crosses both ways intact.
#[test]
fn two_workers_share_the_traffic() {
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = new_lab();
    let (n1, k3) = weft_and_kernel(&mut lab, &["--workers", "2", "--lcores", "0@0,1@1,2@1"]);
    let pod = lab.tap_pod(&n1, "pa").unwrap();
    assert_ping(&k3.pod_ns, pod.1, &lab, &[&n1]);
    // Several TCP connections (different flows hash to different queues).
    for _ in 0..3 {
        tcp_transfer(&mut lab, &k3.pod_ns.clone(), k3.pod_ip, &pod.0.clone());
    }
    let st = lab.weftctl(&n1, &["status"]).unwrap();
    let workers = st["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2, "{st}");
    for w in workers {
        assert!(
            w["loops"].as_u64().unwrap() > 0 && w["generation"].as_u64().unwrap() > 0,
            "every worker runs with a table: {w}"
        );
    }
    let busy = workers.iter().filter(|w| w["rx_packets"].as_u64().unwrap() > 100).count();
    eprintln!("per worker rx: {:?}", workers.iter().map(|w| w["rx_packets"].as_u64().unwrap()).collect::<Vec<_>>());
    assert!(busy >= 1, "{st}");
}

/// SIGTERM stops weftd gracefully (lease kept); SIGKILL too leaves a state it recovers from: both
/// restarts come back on the same subnet, and traffic flows again.
#[test]
fn restarts_keep_subnet_and_recover() {
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = new_lab();
    let (n1, k3) = lab.etcd_weft_and_kernel(NETWORK_CONFIG).unwrap();
    let subnet = n1.subnet.clone();
    for how in ["SIGTERM", "SIGKILL"] {
        if how == "SIGTERM" {
            lab.stop_weftd(&n1.ns);
            let log = std::fs::read_to_string(&n1.log).unwrap();
            assert!(log.contains("stopping") && log.contains("stopped"), "graceful stop: {log}");
        } else {
            lab.kill_weftd(&n1.ns);
        }
        let keys = lab.etcdctl(&["get", "--prefix", "--keys-only", "/coreos.com/network/subnets/"]).unwrap();
        assert!(keys.contains(&subnet.replace('/', "-")), "{how}: the lease stays in etcd: {keys}");
        lab.start_weftd_etcd(&n1, &[]).unwrap();
        let st = lab.weftctl(&n1, &["status"]).unwrap();
        assert_eq!(st["node"]["subnet"].as_str(), Some(subnet.as_str()), "{how}: same subnet after restart");
        assert_eq!(st["node"]["vtep_mac"].as_str(), Some(n1.vtep_mac.as_str()));
        let name = if how == "SIGTERM" { "pt" } else { "pk" };
        let pod = lab.tap_pod(&n1, name).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(600));
        assert_ping(&pod.0, k3.pod_ip, &lab, &[&n1]);
    }
}

/// Pod churn under traffic: tap and vhost pods added and deleted over and over (100 cycles here,
/// `WEFT_CHURN_CYCLES=1000` for the long run) while another pod pings through: mbufs in use return to
/// their baseline, the other pod loses nothing, and addresses are reused.
#[test]
fn pod_churn_leaks_nothing() {
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let cycles: usize = std::env::var("WEFT_CHURN_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    let mut lab = new_lab();
    let (n1, k3) = weft_and_kernel(&mut lab, &[]);
    let pod = lab.tap_pod(&n1, "stable").unwrap();
    assert_ping(&pod.0, k3.pod_ip, &lab, &[&n1]);
    let in_use = |lab: &Lab| lab.weftctl(&n1, &["status"]).unwrap()["mempool"]["in_use"].as_u64().unwrap();
    let pid = lab.pid_of(&n1.ns).unwrap();
    let rss_kib = || -> u64 { testkit::lab::rss_kib(pid).unwrap() };
    // Warm up once (first use of the API and pod paths allocates), then take the baselines.
    lab.weftctl(&n1, &["pod", "add", "warm", "--kind", "tap"]).unwrap();
    lab.weftctl(&n1, &["pod", "del", "warm"]).unwrap();
    let baseline = in_use(&lab);
    let rss0 = rss_kib();
    let (ns, dst) = (pod.0.clone(), k3.pod_ip.to_string());
    let count = (cycles * 4).max(200).to_string();
    let pinger = std::thread::spawn(move || {
        std::process::Command::new("ip")
            .args(["netns", "exec", &ns, "ping", "-n", "-q", "-c", &count, "-i", "0.02", "-W", "1", &dst])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    });
    let t0 = std::time::Instant::now();
    let mut ips = std::collections::HashSet::new();
    for i in 0..cycles {
        let kind = if i % 2 == 0 { "tap" } else { "vhost" };
        let name = format!("c{}", i % 7);
        let info =
            lab.weftctl(&n1, &["pod", "add", &name, "--kind", kind]).unwrap_or_else(|e| panic!("cycle {i}: {e:#}"));
        ips.insert(info["ip"].as_str().unwrap().to_owned());
        lab.weftctl(&n1, &["pod", "del", &name]).unwrap_or_else(|e| panic!("cycle {i}: {e:#}"));
    }
    eprintln!("{cycles} add/del cycles in {:?}", t0.elapsed());
    let out = pinger.join().unwrap();
    let line = out.lines().find(|l| l.contains("transmitted")).unwrap_or_default().to_owned();
    eprintln!("stable pod during the churn: {line}");
    assert!(line.contains(" 0% packet loss"), "{out}");
    assert_eq!(ips.len(), 1, "a deleted pod's address is free again: {ips:?}");
    let after = in_use(&lab);
    let rss1 = rss_kib();
    eprintln!("mbufs in use: {baseline} before, {after} after; weftd RSS {rss0} KiB before, {rss1} KiB after");
    assert!(after.abs_diff(baseline) <= 64, "mbufs in use {baseline} -> {after}");
    assert!(rss1 < rss0 + 8 * 1024, "weftd RSS grew from {rss0} to {rss1} KiB over {cycles} cycles");
    let pods = lab.weftctl(&n1, &["pod", "list"]).unwrap();
    assert_eq!(pods.as_array().unwrap().len(), 1, "{pods}");
}

/// Pods survive a weftd restart: they come back from the state directory with the same address and
/// MAC, and the tap interface is made again in the pod's namespace. A vhost-user pod whose socket the pod
/// owns (virtio-user `server=1`, weft the client) keeps running across the restart, and weft's restored
/// client reconnects to it: the pod answers pings before and after, after SIGTERM and after SIGKILL. A veth pod keeps its interface
/// while weftd is away and the new weftd adopts it.
#[test]
fn pods_come_back_after_a_restart() {
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = new_lab();
    let (n1, k3) = weft_and_kernel(&mut lab, &[]);
    let tap = lab.tap_pod(&n1, "pa").unwrap();
    let veth = lab.kernel_pod(&n1, "pv", "veth").unwrap();
    let info = lab.weftctl(&n1, &["pod", "add", "vh", "--kind", "vhost", "--vhost-client"]).unwrap();
    let (path, mac, ip) = (
        info["iface"].as_str().unwrap().to_owned(),
        info["mac"].as_str().unwrap().to_owned(),
        info["ip"].as_str().unwrap().to_owned(),
    );
    let log = lab.spawn_testpmd_pod(&n1.ns, &path, &mac, true).unwrap();
    let vh_ip: std::net::Ipv4Addr = ip.parse().unwrap();
    let wait_ping = |lab: &Lab, to: std::net::Ipv4Addr| {
        let t0 = std::time::Instant::now();
        while ping(&k3.pod_ns, to, 1, None, false).1 != 1 {
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(20),
                "{to} never answered; testpmd: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert_ping(&k3.pod_ns, to, lab, &[&n1]);
    };
    wait_ping(&lab, vh_ip);
    wait_ping(&lab, tap.1);
    wait_ping(&lab, veth.1);

    lab.stop_weftd(&n1.ns);
    lab.start_weftd(&n1, &[lease_of_kernel(&k3)], &[]).unwrap();
    let pods = lab.weftctl(&n1, &["pod", "list"]).unwrap();
    let find = |name: &str| {
        pods.as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} not restored: {pods}"))
    };
    assert_eq!(find("vh")["ip"].as_str(), Some(ip.as_str()));
    assert_eq!(find("vh")["mac"].as_str(), Some(mac.as_str()));
    assert_eq!(find("pa")["ip"].as_str(), Some(tap.1.to_string().as_str()));
    assert_eq!(find("vh")["vhost_client"], true);
    assert_eq!(find("pv")["ip"].as_str(), Some(veth.1.to_string().as_str()));
    wait_ping(&lab, tap.1);
    // The veth pod kept its interface while weftd was away; the new weftd adopts it.
    wait_ping(&lab, veth.1);
    // The DPDK pod kept running across the restart, its virtio-user server socket too: weft's restored
    // vhost-user client connects to it again and the pod answers through the new weftd.
    assert!(std::path::Path::new(&path).exists(), "the pod's socket {path} is gone");
    wait_ping(&lab, vh_ip);
    let pods = lab.weftctl(&n1, &["pod", "list"]).unwrap();
    assert_eq!(pods.as_array().unwrap().len(), 3, "{pods}");

    // The same after SIGKILL: nothing was shut down in order, the state directory brings both back.
    lab.kill_weftd(&n1.ns);
    lab.start_weftd(&n1, &[lease_of_kernel(&k3)], &[]).unwrap();
    wait_ping(&lab, tap.1);
    wait_ping(&lab, vh_ip);
    wait_ping(&lab, veth.1);
}

/// Issue #11.6 and #11.7: SIGTERM ends weftd within 5 s while a worker is paused and clients hold the
/// API and metrics open; a pod deleted while a worker was busy stays deleted after a restart; a corrupt
/// pods.json is moved aside and reported (not overwritten); a pod whose restore fails stays in the state
/// file, is reported, and comes back once it can.
#[test]
fn shutdown_and_pod_state_under_trouble() {
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = new_lab();
    let (n1, k3) = weft_and_kernel(&mut lab, &[]);
    let pod = lab.tap_pod(&n1, "pa").unwrap();
    assert_ping(&k3.pod_ns, pod.1, &lab, &[&n1]);

    // A delete while the worker is busy (paused) times out, but is durable at once.
    lab.weftctl(&n1, &["debug", "pause-worker", "0", "--seconds", "10"]).unwrap();
    let e = lab.weftctl(&n1, &["pod", "del", "pa"]).unwrap_err().to_string();
    assert!(e.contains("did not release"), "{e}");
    let saved = std::fs::read_to_string(lab.state_dir(&n1).join("pods.json")).unwrap();
    assert!(!saved.contains("\"pa\""), "the deleted pod is out of the state file: {saved}");
    // A second pause while one is under way is refused, not queued.
    let e = lab.weftctl(&n1, &["debug", "pause-worker", "0"]).unwrap_err().to_string();
    assert!(e.contains("under way"), "{e}");
    // Idle clients on the API socket and on the metrics port.
    let idle: Vec<_> = (0..10).map(|_| std::os::unix::net::UnixStream::connect(&n1.api_socket).unwrap()).collect();
    let holder = lab.ns_name("holder.log");
    lab.spawn(
        &n1.ns,
        &[
            "/usr/bin/python3",
            "-c",
            "import socket,time\nss=[socket.create_connection(('127.0.0.1',9109)) for _ in range(20)]\ntime.sleep(30)",
        ],
        &lab.dir.join(holder),
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (took, killed) = lab.stop_weftd(&n1.ns);
    eprintln!("SIGTERM with a paused worker and 30 idle clients: exited in {took:?}");
    assert!(!killed && took < std::time::Duration::from_secs(5), "SIGTERM took {took:?} (killed: {killed})");
    drop(idle);

    // Restart: the deleted pod does not come back.
    lab.start_weftd(&n1, &[lease_of_kernel(&k3)], &[]).unwrap();
    let pods = lab.weftctl(&n1, &["pod", "list"]).unwrap();
    assert_eq!(pods.as_array().unwrap().len(), 0, "{pods}");
    lab.stop_weftd(&n1.ns);

    // A corrupt state file: moved aside, reported on /readyz and in status, never overwritten.
    let state = lab.state_dir(&n1);
    std::fs::write(state.join("pods.json"), "{ not json").unwrap();
    lab.start_weftd(&n1, &[lease_of_kernel(&k3)], &[]).unwrap();
    let (code, body) = http_get(&n1.ns, "http://127.0.0.1:9109/readyz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("did not parse"), "{body}");
    let aside: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("pods.json.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1);
    let (_, metrics) = http_get(&n1.ns, "http://127.0.0.1:9109/metrics");
    assert!(metrics.contains("weft_state_file_problem 1"), "metric");
    lab.tap_pod(&n1, "pb").unwrap();
    assert_eq!(std::fs::read_to_string(aside[0].path()).unwrap(), "{ not json", "kept as it was");
    lab.stop_weftd(&n1.ns);

    // A pod whose restore fails (its namespace is not there yet) is kept, reported, and retried.
    let ghost = lab.ns_name("ghost");
    let text = std::fs::read_to_string(state.join("pods.json")).unwrap();
    let mut pods: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut g = pods[0].clone();
    g["name"] = "pg".into();
    g["ip"] = "10.244.1.77".into();
    g["netns"] = ghost.clone().into();
    g["mac"] = "02:00:00:00:77:77".into();
    pods.as_array_mut().unwrap().push(g);
    std::fs::write(state.join("pods.json"), pods.to_string()).unwrap();
    lab.start_weftd(&n1, &[lease_of_kernel(&k3)], &[]).unwrap();
    let (code, body) = http_get(&n1.ns, "http://127.0.0.1:9109/readyz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("pg"), "{body}");
    let st = lab.weftctl(&n1, &["status"]).unwrap();
    assert_eq!(st["state"]["pods_not_restored"][0], "pg", "{st}");
    assert!(std::fs::read_to_string(state.join("pods.json")).unwrap().contains("\"pg\""), "kept in the file");
    // A new pod cannot take its address meanwhile.
    let e = lab.weftctl(&n1, &["pod", "add", "pc", "--kind", "tap", "--ip", "10.244.1.77"]).unwrap_err();
    assert!(e.to_string().contains("already used"), "{e}");
    lab.add_ns(&ghost).unwrap();
    let t0 = std::time::Instant::now();
    while http_get(&n1.ns, "http://127.0.0.1:9109/readyz").0 != 200 {
        assert!(t0.elapsed() < std::time::Duration::from_secs(15), "pg never restored");
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    assert_ping(&k3.pod_ns, "10.244.1.77".parse().unwrap(), &lab, &[&n1]);
}
