//! The host port in the netns lab (root, hugepages): a weft node whose host has `cni0` with a kernel
//! pod, a network outside the cluster, and a kernel flannel node as its peer. Through weft0 the pods
//! reach the host, Services and the world, the host probes the pods, and kernel pods ride weft.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use testkit::lab::{exec, http_get as get, ping, AsPeer, Lab, WeftNode};

/// An HTTP server that answers every GET with the client address it saw.
const WHO_AM_I: &str = r#"
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(s):
        b = s.client_address[0].encode()
        s.send_response(200); s.send_header("Content-Length", str(len(b))); s.end_headers(); s.wfile.write(b)
    def log_message(s, *a): pass
http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), H).serve_forever()
"#;

/// Labs are named by the process id: one at a time.
static ONE_LAB_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn new_lab() -> Lab {
    Lab::new(Path::new(env!("CARGO_BIN_EXE_weftd")), Path::new(env!("CARGO_BIN_EXE_weftctl")))
        .unwrap_or_else(|e| panic!("{e:#}"))
}

/// Start the who-am-I server in `ns` on `ip`:8080 and wait until it listens (Python may take seconds to
/// start on a loaded machine: that is not the network's fault, so it is waited for apart).
fn serve(lab: &mut Lab, ns: &str, ip: Ipv4Addr) {
    let log = lab.dir.join(format!("http-{ip}.log"));
    lab.spawn(ns, &["/usr/bin/python3", "-c", WHO_AM_I, &ip.to_string(), "8080"], &log).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !sh(ns, "ss -Htln").contains(&format!("{ip}:8080")) {
        assert!(
            Instant::now() < deadline,
            "the HTTP server in {ns} did not listen: {:?}",
            std::fs::read_to_string(&log)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// GET through the network, a few tries (the first may wait for ARP).
fn get_soon(ns: &str, url: &str) -> (u16, String) {
    let mut r = (0, String::new());
    for _ in 0..3 {
        r = get(ns, url);
        if r.0 == 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    r
}

fn sh(ns: &str, cmd: &str) -> String {
    let out = exec(ns, &["sh", "-ec", cmd]).unwrap_or_else(|e| panic!("{ns}: {cmd}: {e:#}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What to look at when a ping through the host port fails: weft's counters and the host's view.
fn diagnose(lab: &Lab, n: &WeftNode) -> String {
    let status = lab.weftctl(n, &["status"]).map(|v| format!("{v:#}")).unwrap_or_default();
    let cmd = "ip -s link show weft0; ip neigh; ip route; sysctl net.ipv4.ip_forward net.ipv4.conf.all.rp_filter \
               net.ipv4.conf.weft0.rp_filter; nstat -az | grep -Ei 'InAddrErrors|InNoRoutes|ForwDatagrams|InDiscards|RpFilter'; \
               iptables -t nat -S; iptables -t mangle -S; true";
    let host = std::process::Command::new("ip")
        .args(["netns", "exec", &n.ns, "sh", "-c", cmd])
        .output()
        .map(|o| format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
        .unwrap_or_default();
    if let Some(s) = std::env::var("WEFT_LAB_PAUSE").ok().and_then(|s| s.parse().ok()) {
        eprintln!("lab kept for {s} s: {}", n.ns);
        std::thread::sleep(Duration::from_secs(s));
    }
    format!("weftd status: {status}\nhost: {host}")
}

fn assert_pings(lab: &Lab, n: &WeftNode, from: &str, to: Ipv4Addr, what: &str) {
    let _ = ping(from, to, 2, None, false); // neighbours settle
    let (sent, got) = ping(from, to, 4, None, false);
    assert!(sent > 0 && got == sent, "{what}: ping {from} -> {to}: {got}/{sent}\n{}", diagnose(lab, n));
}

#[test]
fn host_port_joins_pods_the_host_services_and_the_world() {
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = new_lab();
    let n1 = lab.weft_node(1).unwrap();
    let k2 = lab.kernel_node(2, &[n1.peer()]).unwrap();
    // A kernel pod made by the real CNI plugins before weftd runs: host-local gives it the first address.
    let (kpod, kpod_ip) = lab.cni0_pod(&n1, "kp").unwrap();
    assert_eq!(kpod_ip, Ipv4Addr::new(10, 244, 1, 2));
    let outside = lab.outside(&n1).unwrap();
    lab.start_weftd(&n1, &[k2.peer()], &["--ip-masq"]).unwrap();
    let (wpod, wpod_ip) = lab.tap_pod(&n1, "wp").unwrap();
    // One store: weft's pod did not get the kernel pod's address, and host-local's next pod gets neither.
    assert_eq!(wpod_ip, Ipv4Addr::new(10, 244, 1, 3), "weft skipped host-local's address");
    let held = std::fs::read_to_string(lab.ipam_store(&n1).join("10.244.1.3")).unwrap();
    assert_eq!(held, "weft-wp\r\nweft", "weft's reservation in host-local's format");
    let (kpod2, kpod2_ip) = lab.cni0_pod(&n1, "kq").unwrap();
    assert_eq!(kpod2_ip, Ipv4Addr::new(10, 244, 1, 4), "host-local skipped weft's address");
    assert_pings(&lab, &n1, &kpod2, wpod_ip, "second cni0 pod to the weft pod");

    // The host port as flannel.1 is: <subnet>.0/32, the pod MTU, a route for the cluster network.
    let link = sh(&n1.ns, "ip -o link show weft0; ip -4 -o addr show weft0; ip route show 10.244.0.0/16");
    assert!(link.contains("mtu 1450") && link.contains("10.244.1.0/32"), "{link}");
    assert!(link.contains("10.244.0.0/16 dev weft0"), "{link}");
    let status = lab.weftctl(&n1, &["status"]).unwrap();
    let ports = status["ports"].as_array().unwrap();
    assert!(ports.iter().any(|p| p["name"] == "weft0" && p["kind"] == "host"), "{status:#}");

    // Pods and the host, both ways, on one node: weft pod <-> cni0 pod, host -> both.
    assert_pings(&lab, &n1, &wpod, kpod_ip, "weft pod to cni0 pod");
    assert_pings(&lab, &n1, &kpod, wpod_ip, "cni0 pod to weft pod");
    // Across nodes: the cni0 pod and the kernel node's pod ride weft's tunnel.
    assert_pings(&lab, &n1, &kpod, k2.pod_ip, "cni0 pod to a kernel node's pod");
    assert_pings(&lab, &n1, &k2.pod_ns, kpod_ip, "kernel node's pod to the cni0 pod");
    // The tap pod's frames reach weft once, through its own port: the host's kernel does not answer the
    // pod's ARP for its gateway (10.244.1.1 is cni0's address here) on the veth end weft holds, so it
    // never takes the pod's frames and routes them back to weft through weft0.
    let forwarded = || {
        let snmp = sh(&n1.ns, "cat /proc/net/snmp");
        let mut ip = snmp.lines().filter(|l| l.starts_with("Ip:"));
        let (names, values) = (ip.next().unwrap_or_default(), ip.next().unwrap_or_default());
        let at = names.split_whitespace().position(|n| n == "ForwDatagrams").unwrap();
        values.split_whitespace().nth(at).unwrap().parse::<u64>().unwrap()
    };
    let before = forwarded();
    assert_pings(&lab, &n1, &wpod, k2.pod_ip, "weft pod to a kernel node's pod");
    assert_eq!(forwarded() - before, 0, "the host routed the tap pod's frames\n{}", diagnose(&lab, &n1));
    let gw = sh(&wpod, "ip neigh show 10.244.1.1");
    let vtep = status["node"]["vtep_mac"].as_str().unwrap();
    assert!(gw.contains(vtep), "the pod's gateway is weft's {vtep}: {gw}");
    // A kernel flannel node's pod reaches the weft node's overlay address.
    assert_pings(
        &lab,
        &n1,
        &k2.pod_ns,
        Ipv4Addr::new(10, 244, 1, 0),
        "kernel node's pod to the weft node's 10.244.1.0",
    );

    // Probes: the host connects to HTTP servers in a weft pod and in a cni0 pod.
    for (ns, ip) in [(&wpod, wpod_ip), (&kpod, kpod_ip)] {
        serve(&mut lab, ns, ip);
        let (code, body) = get_soon(&n1.ns, &format!("http://{ip}:8080/"));
        assert_eq!(code, 200, "probe from the host to {ip}: {body}\n{}", diagnose(&lab, &n1));
        // The host's own address: cni0's toward the subnet (as on a flannel node), weft0's otherwise.
        assert!(["10.244.1.1", "10.244.1.0"].contains(&body.as_str()), "probe from {body}");
    }

    // Egress, masqueraded: the outside sees the node's address, and has no route to pods.
    serve(&mut lab, &outside, Ipv4Addr::new(198, 51, 100, 2));
    for ns in [&wpod, &kpod] {
        let (code, body) = get_soon(ns, "http://198.51.100.2:8080/");
        assert_eq!((code, body.as_str()), (200, "198.51.100.1"), "egress from {ns} masqueraded");
    }

    // A Service as kube-proxy writes it: ClusterIP 10.96.0.10:80 -> the kernel node's pod :8080.
    serve(&mut lab, &k2.pod_ns, k2.pod_ip);
    sh(
        &n1.ns,
        &format!(
            "iptables -t nat -N KUBE-SERVICES
             iptables -t nat -A PREROUTING -m comment --comment 'kubernetes service portals' -j KUBE-SERVICES
             iptables -t nat -A OUTPUT -m comment --comment 'kubernetes service portals' -j KUBE-SERVICES
             iptables -t nat -N KUBE-SVC-TEST
             iptables -t nat -N KUBE-SEP-TEST
             iptables -t nat -A KUBE-SERVICES -d 10.96.0.10/32 -p tcp --dport 80 -j KUBE-SVC-TEST
             iptables -t nat -A KUBE-SVC-TEST -j KUBE-SEP-TEST
             iptables -t nat -A KUBE-SEP-TEST -p tcp -j DNAT --to-destination {}:8080",
            k2.pod_ip
        ),
    );
    for ns in [&kpod, &wpod, &n1.ns] {
        let (code, body) = get_soon(ns, "http://10.96.0.10/");
        assert_eq!(code, 200, "Service from {ns}: {body}");
    }

    // flanneld's masquerade rules are in place, and come back when flushed.
    let rules = sh(&n1.ns, "iptables -t nat -S FLANNEL-POSTRTG; iptables -t nat -S POSTROUTING");
    assert!(rules.contains("-j MASQUERADE --random-fully") && rules.contains("-j FLANNEL-POSTRTG"), "{rules}");
    sh(&n1.ns, "iptables -t nat -F FLANNEL-POSTRTG");
    let deadline = Instant::now() + Duration::from_secs(12);
    while !sh(&n1.ns, "iptables -t nat -S FLANNEL-POSTRTG").contains("MASQUERADE") {
        assert!(Instant::now() < deadline, "the flushed masquerade rules did not come back");
        std::thread::sleep(Duration::from_millis(500));
    }

    // Metrics: the host port's backend, and its packets by direction.
    let (code, metrics) = get(&n1.ns, "http://127.0.0.1:9109/metrics");
    assert_eq!(code, 200);
    // virtio-user where the kernel has vhost-net, else the veth pair (this machine has no vhost-net).
    let backend = if std::path::Path::new("/dev/vhost-net").exists() { "virtio_user" } else { "veth" };
    assert!(metrics.contains(&format!("weft_host_port_info{{iface=\"weft0\",backend=\"{backend}\"}} 1")), "{metrics}");

    // A restart brings the host port, its address and route, and the rules back; a clean stop takes
    // them away.
    let tap_link = sh(&wpod, "ip -o link show wt-wp");
    let (_, killed) = lab.stop_weftd(&n1.ns);
    assert!(!killed, "weftd stopped on SIGTERM");
    let after = sh(&n1.ns, "ip -o link show weft0 2>&1 || true; iptables -t nat -S 2>&1; iptables -t mangle -S 2>&1");
    assert!(
        !after.contains("weft0:") && !after.contains("FLANNEL-POSTRTG") && !after.contains("WEFT-HOSTPORT"),
        "left behind after a clean stop: {after}"
    );
    lab.start_weftd(&n1, &[k2.peer()], &["--ip-masq"]).unwrap();
    let back = sh(&n1.ns, "ip -4 -o addr show weft0; ip route show 10.244.0.0/16; iptables -t nat -S FLANNEL-POSTRTG");
    assert!(back.contains("10.244.1.0/32") && back.contains("dev weft0") && back.contains("MASQUERADE"), "{back}");
    assert_pings(&lab, &n1, &kpod, k2.pod_ip, "cni0 pod to a kernel node's pod after the restart");
    assert_pings(&lab, &n1, &wpod, kpod_ip, "the restored weft pod to the cni0 pod");
    // The tap pod kept its interface: the restarted weftd adopted its veth pair (same ifindex and peer).
    let index = |l: &str| l.split(':').take(2).collect::<Vec<_>>().join(":");
    assert_eq!(index(&sh(&wpod, "ip -o link show wt-wp")), index(&tap_link), "the tap pod's interface was made again");
    // SIGKILL: a veth host port outlives weftd (no process holds it); the next weftd replaces it.
    lab.kill_weftd(&n1.ns);
    lab.start_weftd(&n1, &[k2.peer()], &["--ip-masq"]).unwrap();
    assert_pings(&lab, &n1, &kpod, k2.pod_ip, "cni0 pod to a kernel node's pod after SIGKILL and a restart");
}

/// Run weftd in `ns` with a null uplink and `extra` flags until it exits, as a start that fails does
/// (`timeout` kills a hung one after 60 s: exit status 124); its exit status and stderr.
fn start_to_fail(lab: &Lab, ns: &str, extra: &[&str]) -> (Option<i32>, String) {
    let dir = lab.dir.join(ns);
    let out = std::process::Command::new("timeout")
        .args(["60", "ip", "netns", "exec", ns, env!("CARGO_BIN_EXE_weftd")])
        .args(["--network", "10.244.0.0/16", "--subnet", "10.244.1.0/24", "--public-ip", "192.168.77.1"])
        .args(["--uplink", "net_null0", "--ipam-store", "", "--file-prefix", ns])
        .args(extra)
        .arg("--api-socket")
        .arg(dir.join("api.sock"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A host port name that another interface holds fails at start, naming the setting and the fix, and
/// weftd exits (it used to hang: the workers were running when the error returned, and EAL's cleanup
/// waits for every lcore).
#[test]
fn a_taken_host_iface_fails_at_start_and_weftd_exits() {
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = new_lab();
    let ns = lab.ns_name("taken");
    lab.add_ns(&ns).unwrap();
    sh(&ns, "ip link add weft0 type bridge");
    let t0 = Instant::now();
    let (code, err) = start_to_fail(&lab, &ns, &["--metrics-addr", "127.0.0.1:9199"]);
    assert_eq!(code, Some(1), "exit status (124: timeout killed a hung weftd): {err}");
    assert!(err.contains("host_iface") && err.contains("weft0 exists") && err.contains("--host-iface"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(30), "took {:?}", t0.elapsed());
}

/// A listener that cannot bind (the metrics port, which another process holds) fails at start and
/// leaves no iptables rules behind: the listeners are bound before the rules go in.
#[test]
fn a_taken_metrics_port_fails_at_start_and_leaves_no_rules() {
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = new_lab();
    let ns = lab.ns_name("port");
    lab.add_ns(&ns).unwrap();
    let hold = "import socket,time\ns=socket.socket()\ns.bind(('127.0.0.1',9199))\ns.listen()\ntime.sleep(120)";
    lab.spawn(&ns, &["/usr/bin/python3", "-c", hold], &lab.dir.join("hold.log")).unwrap();
    let t0 = Instant::now();
    while !sh(&ns, "ss -Hltn sport = :9199").contains("9199") {
        assert!(t0.elapsed() < Duration::from_secs(20), "python did not listen on 9199");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, err) = start_to_fail(&lab, &ns, &["--ip-masq", "--metrics-addr", "127.0.0.1:9199"]);
    assert_eq!(code, Some(1), "exit status (124: timeout killed a hung weftd): {err}");
    assert!(err.contains("metrics_addr 127.0.0.1:9199") && err.contains("cannot listen"), "{err}");
    let rules = sh(&ns, "iptables -t nat -S 2>&1; iptables -t mangle -S 2>&1");
    assert!(!rules.contains("FLANNEL") && !rules.contains("MASQUERADE"), "left behind by a failed start: {rules}");
    assert!(!lab.dir.join(&ns).join("api.sock").exists(), "the API socket was left behind");
}
