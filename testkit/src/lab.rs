//! The netns lab: nodes and pods as network namespaces on one machine, joined by an underlay bridge.
//! weft nodes run weftd with a `net_af_packet` uplink on a veth; a kernel flannel node is a namespace
//! with `flannel.1` (VNI 1, dstport 8472, nolearning), a `cni0` bridge and the neighbour, FDB and route
//! entries flanneld installs per peer. Used by the end-to-end tests and by `make demo`.
//!
//! Everything the lab creates is named with its own prefix and torn down on drop, also when a test
//! panics: the processes it started (by PID) and the namespaces it made (by exact name).

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use serde_json::Value;
use weft_config::{Lease, Peer, SubnetKey};

/// The lab's underlay: 192.168.77.0/24 inside the lab's own namespaces only.
pub const UNDERLAY_PREFIX: &str = "192.168.77";

/// Run a command to completion; an error (with its stderr and stdout) unless it exits 0.
pub fn run(cmd: &mut Command) -> anyhow::Result<Output> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(out)
}

/// `ip <args>`.
pub fn ip(args: &[&str]) -> anyhow::Result<Output> {
    run(Command::new("ip").args(args))
}

/// Run a command inside a namespace.
pub fn exec(ns: &str, args: &[&str]) -> anyhow::Result<Output> {
    run(Command::new("ip").args(["netns", "exec", ns]).args(args))
}

/// A weft node of the lab.
#[derive(Debug, Clone)]
pub struct WeftNode {
    pub ns: String,
    pub public_ip: Ipv4Addr,
    pub subnet: String,
    pub vtep_mac: String,
    pub api_socket: PathBuf,
    pub log: PathBuf,
}

/// A kernel flannel node of the lab, with one pod.
#[derive(Debug, Clone)]
pub struct KernelNode {
    pub ns: String,
    pub pod_ns: String,
    pub pod_ip: Ipv4Addr,
    pub public_ip: Ipv4Addr,
    pub subnet: String,
    pub vtep_mac: String,
    /// How flanneld on this node crosses hosts.
    pub backend: KernelBackend,
}

/// The flanneld backend a kernel node of the lab is programmed as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelBackend {
    /// `flannel.1`; with `direct_routing`, plain routes to peers whose PublicIP is on link.
    Vxlan { direct_routing: bool },
    /// Routes to each host-gw peer's PublicIP on eth0.
    HostGw,
    /// `flannel0` and the userspace relay on UDP 8285 (`flannel_udp_relay.py`).
    Udp,
}

impl KernelBackend {
    pub const VXLAN: KernelBackend = KernelBackend::Vxlan { direct_routing: false };

    /// The backend as weft's config names it.
    pub fn backend_type(self) -> weft_config::BackendType {
        match self {
            KernelBackend::Vxlan { .. } => weft_config::BackendType::Vxlan,
            KernelBackend::HostGw => weft_config::BackendType::HostGw,
            KernelBackend::Udp => weft_config::BackendType::Udp,
        }
    }

    /// The MTU flanneld gives the node's pods on a 1500-byte underlay.
    pub fn pod_mtu(self) -> u16 {
        1500 - self.backend_type().overhead()
    }
}

/// A TCP sink on port 5001 that answers with the byte count and SHA-256 of what it got.
const TCP_SERVER: &str = r#"
import socket, hashlib
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 5001)); s.listen(1); s.settimeout(30)
c, _ = s.accept(); c.settimeout(30); h = hashlib.sha256(); n = 0
while True:
    b = c.recv(65536)
    if not b: break
    h.update(b); n += len(b)
c.sendall(f"{n} {h.hexdigest()}".encode()); c.close()
"#;

/// 4 MiB of a known pattern to the sink; fails unless the sink's count and hash match.
const TCP_CLIENT: &str = r#"
import socket, hashlib, sys
n = 4 << 20
data = bytes((i * 7 + (i >> 11)) & 255 for i in range(n))
c = socket.create_connection((sys.argv[1], 5001), timeout=30)
c.sendall(data); c.shutdown(socket.SHUT_WR)
got = b""
while True:
    b = c.recv(256)
    if not b: break
    got += b
want = f"{n} {hashlib.sha256(data).hexdigest()}"
print(got.decode(), "want", want)
sys.exit(0 if got.decode() == want else 1)
"#;

/// flanneld's udp backend for the lab's kernel nodes (flanneld itself is not packaged).
const UDP_RELAY: &str = include_str!("flannel_udp_relay.py");

/// What a flannel node looks like to the others: its lease, as a peer.
pub trait AsPeer {
    fn peer(&self) -> Peer;
}

fn peer_of(subnet: &str, public_ip: Ipv4Addr, vtep_mac: &str) -> Peer {
    Peer {
        subnet: subnet.parse().unwrap_or_else(|e| panic!("lab subnet {subnet}: {e}")),
        public_ip,
        vtep_mac: vtep_mac.parse().unwrap_or_else(|e| panic!("lab VtepMAC {vtep_mac}: {e}")),
    }
}

impl AsPeer for KernelNode {
    fn peer(&self) -> Peer {
        peer_of(&self.subnet, self.public_ip, &self.vtep_mac)
    }
}

impl AsPeer for WeftNode {
    fn peer(&self) -> Peer {
        peer_of(&self.subnet, self.public_ip, &self.vtep_mac)
    }
}

#[derive(Debug)]
pub struct Lab {
    pub prefix: String,
    pub underlay_ns: String,
    pub dir: PathBuf,
    namespaces: Vec<String>,
    children: Vec<(String, Child)>,
    weftd: PathBuf,
    weftctl: PathBuf,
    /// With etcd: its client URL on the management network.
    pub etcd: Option<String>,
    stop_syncers: Arc<AtomicBool>,
    syncers: Vec<std::thread::JoinHandle<()>>,
}

/// The management network (etcd traffic), separate from the dataplane's underlay as on a real node
/// whose dataplane NIC belongs to DPDK.
pub const MGMT_PREFIX: &str = "10.88.0";
pub const ETCD_PREFIX: &str = "/coreos.com/network";

impl Lab {
    /// A new lab: checks root, creates the underlay namespace with bridge `br0`.
    pub fn new(weftd: &Path, weftctl: &Path) -> anyhow::Result<Lab> {
        crate::eal::check_dpdk_preconditions(256).map_err(|e| anyhow!("{e}"))?;
        let prefix = format!("wl{}", std::process::id() % 100_000);
        let dir = std::env::temp_dir().join(format!("weft-lab-{prefix}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        let mut lab = Lab {
            underlay_ns: format!("{prefix}-ul"),
            prefix,
            dir,
            namespaces: Vec::new(),
            children: Vec::new(),
            weftd: weftd.to_owned(),
            weftctl: weftctl.to_owned(),
            etcd: None,
            stop_syncers: Arc::new(AtomicBool::new(false)),
            syncers: Vec::new(),
        };
        let ul = lab.underlay_ns.clone();
        lab.add_ns(&ul)?;
        exec(&ul, &["ip", "link", "add", "br0", "type", "bridge"])?;
        exec(&ul, &["ip", "link", "set", "br0", "up"])?;
        // The underlay is a switch, not a host: its bridges skip iptables (br_netfilter's per-namespace
        // switches; absent without the module). The nodes' own bridges (cni0) keep them, as Kubernetes
        // wants. A frame a node sends crosses the switch inside the sender's own syscall, so on a
        // firewalled bridge every node would pay netfilter's cost for the switch.
        let _ = exec(
            &ul,
            &[
                "sh",
                "-c",
                "sysctl -qw net.bridge.bridge-nf-call-iptables=0 net.bridge.bridge-nf-call-arptables=0 2>/dev/null",
            ],
        );
        Ok(lab)
    }

    /// Create a namespace that the lab owns (and deletes), loopback up, IPv6 off (keeps the counters
    /// free of router solicitations).
    pub fn add_ns(&mut self, name: &str) -> anyhow::Result<()> {
        ip(&["netns", "add", name])?;
        self.namespaces.push(name.to_owned());
        exec(name, &["ip", "link", "set", "lo", "up"])?;
        exec(name, &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"])?;
        Ok(())
    }

    /// Delete a namespace the lab made, before the lab ends (a container gone).
    pub fn del_ns(&mut self, name: &str) -> anyhow::Result<()> {
        ip(&["netns", "del", name])?;
        self.namespaces.retain(|n| n != name);
        Ok(())
    }

    /// A veth from the underlay bridge to `eth0` in `ns`.
    fn wire_to_underlay(&self, ns: &str, port: &str) -> anyhow::Result<()> {
        self.wire_to_bridge(ns, port, "br0")
    }

    /// A veth from `bridge` of the underlay namespace to `eth0` in `ns`.
    fn wire_to_bridge(&self, ns: &str, port: &str, bridge: &str) -> anyhow::Result<()> {
        let ul = &self.underlay_ns;
        exec(ul, &["ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns])?;
        exec(ul, &["ip", "link", "set", port, "master", bridge, "up"])?;
        exec(ns, &["ip", "link", "set", "eth0", "up"])?;
        Ok(())
    }

    /// etcd on the management network (in the underlay namespace, 10.88.0.254:2379), with flannel's
    /// network config written.
    pub fn start_etcd(&mut self, network_config: &str) -> anyhow::Result<()> {
        let ul = self.underlay_ns.clone();
        exec(&ul, &["ip", "link", "add", "mgmt0", "type", "bridge"])?;
        exec(&ul, &["ip", "link", "set", "mgmt0", "up"])?;
        exec(&ul, &["ip", "addr", "add", &format!("{MGMT_PREFIX}.254/24"), "dev", "mgmt0"])?;
        let url = format!("http://{MGMT_PREFIX}.254:2379");
        self.etcd = Some(url);
        self.spawn_etcd()?;
        self.etcdctl(&["put", &format!("{ETCD_PREFIX}/config"), network_config])?;
        Ok(())
    }

    /// Start (or restart, on the same data) the lab's etcd and wait until it answers.
    fn spawn_etcd(&mut self) -> anyhow::Result<()> {
        let ul = self.underlay_ns.clone();
        let url = self.etcd.clone().ok_or_else(|| anyhow!("no etcd configured"))?;
        let peer = format!("http://{MGMT_PREFIX}.254:2380");
        let data = self.dir.join("etcd-data").display().to_string();
        let log = self.dir.join("etcd.log");
        let args = [
            "etcd",
            "--name",
            "lab",
            "--data-dir",
            &data,
            "--listen-client-urls",
            &url,
            "--advertise-client-urls",
            &url,
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
            "--initial-cluster",
            &format!("lab={peer}"),
        ];
        let f = fs::File::create(&log)?;
        let child = Command::new("ip")
            .args(["netns", "exec", &ul])
            .args(args)
            .stdin(Stdio::null())
            .stdout(f.try_clone()?)
            .stderr(f)
            .spawn()?;
        self.children.push(("etcd".into(), child));
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.etcdctl(&["endpoint", "health"]).is_err() {
            if Instant::now() > deadline {
                bail!("etcd did not start:\n{}", fs::read_to_string(&log).unwrap_or_default());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// SIGKILL the lab's etcd.
    pub fn kill_etcd(&mut self) {
        for (label, c) in self.children.iter_mut() {
            if label == "etcd" {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        self.children.retain(|(l, _)| l != "etcd");
    }

    /// Start the lab's etcd again on its data.
    pub fn restart_etcd(&mut self) -> anyhow::Result<()> {
        self.spawn_etcd()
    }

    /// etcdctl against the lab's etcd (run in the underlay namespace).
    pub fn etcdctl(&self, args: &[&str]) -> anyhow::Result<String> {
        let url = self.etcd.as_deref().ok_or_else(|| anyhow!("the lab has no etcd"))?;
        let out = run(Command::new("ip")
            .args(["netns", "exec", &self.underlay_ns, "etcdctl", "--dial-timeout=2s", &format!("--endpoints={url}")])
            .args(args)
            .env("ETCDCTL_API", "3"))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A management veth `mgmt` in `ns` at 10.88.0.<idx>, when the lab has etcd.
    fn wire_to_mgmt(&self, ns: &str, idx: u8) -> anyhow::Result<()> {
        if self.etcd.is_none() {
            return Ok(());
        }
        let ul = &self.underlay_ns;
        let port = format!("m{idx}");
        exec(ul, &["ip", "link", "add", &port, "type", "veth", "peer", "name", "mgmt", "netns", ns])?;
        exec(ul, &["ip", "link", "set", &port, "master", "mgmt0", "up"])?;
        exec(ns, &["ip", "addr", "add", &format!("{MGMT_PREFIX}.{idx}/24"), "dev", "mgmt"])?;
        exec(ns, &["ip", "link", "set", "mgmt", "up"])?;
        Ok(())
    }

    /// A weft node namespace `n<idx>` at 192.168.77.<idx> with subnet 10.244.<idx>.0/24 (weftd not started).
    pub fn weft_node(&mut self, idx: u8) -> anyhow::Result<WeftNode> {
        let ns = format!("{}-n{idx}", self.prefix);
        self.add_ns(&ns)?;
        self.wire_to_underlay(&ns, &format!("n{idx}"))?;
        self.wire_to_mgmt(&ns, idx)?;
        // The uplink belongs to weft: the kernel side has no address, so it neither answers ARP nor
        // sends port-unreachables for VXLAN. On a NIC bound to DPDK the kernel never sees a frame; on
        // this veth it would take each one net_af_packet copied through its IP input (conntrack, a
        // route lookup, `ip_error`), inside the sending node's syscall. The raw table drops them first,
        // IPv4 only; ARP and af_packet's copy are untouched. (weft-bench hostport, TCP weft/kernel:
        // 0.72-0.76 -> 0.91-0.93 tap to tap, 0.56-0.57 -> 0.67 cni0 to cni0.)
        exec(&ns, &["iptables", "-w", "5", "-t", "raw", "-A", "PREROUTING", "-i", "eth0", "-j", "DROP"])?;
        Ok(WeftNode {
            api_socket: self.dir.join(format!("n{idx}.sock")),
            log: self.dir.join(format!("n{idx}.log")),
            ns,
            public_ip: Ipv4Addr::new(192, 168, 77, idx),
            subnet: format!("10.244.{idx}.0/24"),
            vtep_mac: format!("02:77:00:00:00:{idx:02x}"),
        })
    }

    /// The CNI network's host-local store of a weft node (also given to its weftd as `--ipam-store`).
    pub fn ipam_store(&self, node: &WeftNode) -> PathBuf {
        self.dir.join(format!("{}-cni", node.ns)).join("cbr0")
    }

    /// A kernel pod `name` on the weft node's `cni0`, made the way the flannel CNI plugin makes one: its
    /// delegate configuration (bridge `cni0`, `isGateway`, `isDefaultGateway`, `hairpinMode`, host-local
    /// over the node's subnet with a route to the cluster network, the pod MTU, no `ipMasq` since the
    /// node masquerades) run with the real `bridge` and `host-local` plugins from /usr/lib/cni. Returns
    /// the pod's namespace and the address host-local gave it.
    pub fn cni0_pod(&mut self, node: &WeftNode, name: &str) -> anyhow::Result<(String, Ipv4Addr)> {
        let pod_ns = format!("{}-{name}", self.prefix);
        self.add_ns(&pod_ns)?;
        let store = self.ipam_store(node);
        let data_dir = store.parent().ok_or_else(|| anyhow!("ipam store {}", store.display()))?;
        let conf = serde_json::json!({
            "cniVersion": "0.3.1",
            "name": "cbr0",
            "type": "bridge",
            "bridge": "cni0",
            "isGateway": true,
            "isDefaultGateway": true,
            "hairpinMode": true,
            "ipMasq": false,
            "mtu": 1450,
            "ipam": {
                "type": "host-local",
                "dataDir": data_dir,
                "ranges": [[{"subnet": node.subnet}]],
                "routes": [{"dst": "10.244.0.0/16"}],
            },
        });
        let mut child = Command::new("ip")
            .args(["netns", "exec", &node.ns, "/usr/lib/cni/bridge"])
            .env("CNI_COMMAND", "ADD")
            .env("CNI_CONTAINERID", format!("lab-{name}"))
            .env("CNI_NETNS", format!("/run/netns/{pod_ns}"))
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", "/usr/lib/cni")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| anyhow!("running /usr/lib/cni/bridge (apt-get install containernetworking-plugins): {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            std::io::Write::write_all(&mut stdin, conf.to_string().as_bytes())?;
        }
        let out = child.wait_with_output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!("CNI bridge ADD for {name}: {text}{}", String::from_utf8_lossy(&out.stderr));
        }
        let result: Value = serde_json::from_str(&text)?;
        let addr =
            result["ips"][0]["address"].as_str().ok_or_else(|| anyhow!("no address in the CNI result {text}"))?;
        let ip = addr.split('/').next().unwrap_or_default().parse()?;
        Ok((pod_ns, ip))
    }

    /// A network outside the cluster on a weft node's host: `ext0` at 198.51.100.1/24 to a namespace
    /// at 198.51.100.2 that has no route to the pods (so only masqueraded traffic gets answers), and
    /// the host's default route through it, as a node's kernel NIC has.
    pub fn outside(&mut self, node: &WeftNode) -> anyhow::Result<String> {
        let ns = format!("{}-out", self.prefix);
        self.add_ns(&ns)?;
        exec(&node.ns, &["ip", "link", "add", "ext0", "type", "veth", "peer", "name", "eth0", "netns", &ns])?;
        exec(
            &node.ns,
            &[
                "sh",
                "-ec",
                "ip addr add 198.51.100.1/24 dev ext0; ip link set ext0 up; ip route add default via 198.51.100.2",
            ],
        )?;
        exec(&ns, &["sh", "-ec", "ip addr add 198.51.100.2/24 dev eth0; ip link set eth0 up"])?;
        Ok(ns)
    }

    /// A kernel flannel node `k<idx>` with one pod at 10.244.<idx>.2, programmed for `peers` the way
    /// flanneld programs the kernel from their leases.
    pub fn kernel_node(&mut self, idx: u8, peers: &[Peer]) -> anyhow::Result<KernelNode> {
        self.kernel_node_with(idx, KernelBackend::VXLAN, false, peers)
    }

    /// A kernel flannel node of `backend`. `far` puts it on a second L2 segment (192.168.78.0/24),
    /// routed to the first through the underlay namespace (192.168.77.254 / 192.168.78.254).
    pub fn kernel_node_with(
        &mut self,
        idx: u8,
        backend: KernelBackend,
        far: bool,
        peers: &[Peer],
    ) -> anyhow::Result<KernelNode> {
        let ns = format!("{}-k{idx}", self.prefix);
        let pod_ns = format!("{}-k{idx}p", self.prefix);
        self.add_ns(&ns)?;
        self.add_ns(&pod_ns)?;
        if far {
            self.far_segment()?;
        }
        self.wire_to_bridge(&ns, &format!("k{idx}"), if far { "br1" } else { "br0" })?;
        self.wire_to_mgmt(&ns, idx)?;
        let public_ip = Ipv4Addr::new(192, 168, if far { 78 } else { 77 }, idx);
        let vtep_mac = format!("02:77:00:00:01:{idx:02x}");
        let subnet = format!("10.244.{idx}.0/24");
        let mtu = backend.pod_mtu();
        let sh = |cmd: String| exec(&ns, &["sh", "-ec", &cmd]);
        sh(format!(
            "ip addr add {public_ip}/24 dev eth0
             ethtool -K eth0 tx off >/dev/null
             sysctl -qw net.ipv4.ip_forward=1"
        ))?;
        if far {
            sh("ip route add default via 192.168.78.254".into())?;
        }
        if let KernelBackend::Vxlan { .. } = backend {
            sh(format!(
                "ip link add flannel.1 address {vtep_mac} type vxlan id 1 local {public_ip} dev eth0 dstport 8472 nolearning
                 ip link set flannel.1 mtu 1450 up
                 ip addr add 10.244.{idx}.0/32 dev flannel.1"
            ))?;
        }
        sh(format!(
            "ip link add cni0 type bridge
             ip link set cni0 mtu {mtu} up
             ip addr add 10.244.{idx}.1/24 dev cni0
             ip link add veth0 mtu {mtu} type veth peer name eth0 netns {pod_ns}
             ip link set veth0 master cni0 up
             ethtool -K veth0 tx off >/dev/null"
        ))?;
        exec(
            &pod_ns,
            &[
                "sh",
                "-ec",
                &format!(
                    "ip addr add 10.244.{idx}.2/24 dev eth0
             ip link set eth0 mtu {mtu} up
             ethtool -K eth0 tx off >/dev/null
             ip route add default via 10.244.{idx}.1"
                ),
            ],
        )?;
        let k = KernelNode { ns, pod_ns, pod_ip: Ipv4Addr::new(10, 244, idx, 2), public_ip, subnet, vtep_mac, backend };
        if backend == KernelBackend::Udp {
            self.start_udp_relay(&k)?;
        }
        for p in peers {
            self.kernel_add_peer(&k, p)?;
        }
        Ok(k)
    }

    /// The second L2 segment: bridge `br1` in the underlay namespace, which routes between the two
    /// (192.168.77.254 on br0, 192.168.78.254 on br1), as a router between two racks does.
    pub fn far_segment(&mut self) -> anyhow::Result<()> {
        let ul = self.underlay_ns.clone();
        if exec(&ul, &["ip", "link", "show", "br1"]).is_ok() {
            return Ok(());
        }
        exec(
            &ul,
            &[
                "sh",
                "-ec",
                "ip link add br1 type bridge; ip link set br1 up
                 ip addr add 192.168.77.254/24 dev br0; ip addr add 192.168.78.254/24 dev br1
                 sysctl -qw net.ipv4.ip_forward=1",
            ],
        )?;
        Ok(())
    }

    /// flanneld's udp backend on kernel node `k`: the relay script, with the route file the lab's
    /// syncer keeps from etcd.
    fn start_udp_relay(&mut self, k: &KernelNode) -> anyhow::Result<()> {
        let script = self.dir.join("flannel_udp_relay.py");
        if !script.exists() {
            fs::write(&script, UDP_RELAY)?;
        }
        let routes = self.udp_routes_file(k);
        let log = self.dir.join(format!("{}-relay.log", k.ns));
        let (script, routes) = (script.display().to_string(), routes.display().to_string());
        let mtu = k.backend.pod_mtu().to_string();
        let ip = k.public_ip.to_string();
        self.spawn(
            &k.ns.clone(),
            &["python3", "-u", &script, "10.244.0.0/16", &k.subnet, &ip, "8285", &mtu, &routes],
            &log,
        )?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !fs::read_to_string(&log).unwrap_or_default().contains("flannel0 up") {
            if Instant::now() > deadline {
                bail!("the udp relay on {} did not come up: {}", k.ns, fs::read_to_string(&log).unwrap_or_default());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// A checked TCP transfer: 4 MiB from `client_ns` to a sink in `server_ns` at `server_ip`, whose
    /// byte count and SHA-256 must match what was sent.
    pub fn tcp_transfer(&mut self, server_ns: &str, server_ip: Ipv4Addr, client_ns: &str) -> anyhow::Result<()> {
        let log = self.dir.join(format!("tcp-{server_ns}-{}.log", self.children.len()));
        self.spawn(server_ns, &["/usr/bin/python3", "-c", TCP_SERVER], &log)?;
        std::thread::sleep(Duration::from_millis(700));
        let ip = server_ip.to_string();
        exec(client_ns, &["timeout", "60", "/usr/bin/python3", "-c", TCP_CLIENT, &ip]).with_context(|| {
            format!("4 MiB TCP {client_ns} -> {server_ns}\nserver: {}", fs::read_to_string(&log).unwrap_or_default())
        })?;
        Ok(())
    }

    /// Capture `count` frames matching the tcpdump `filter` on `iface` of the underlay namespace while
    /// `trigger` runs (tcpdump gets 20 s at most); the frames, or an error saying what tcpdump said.
    pub fn capture_underlay(
        &mut self,
        iface: &str,
        filter: &[&str],
        count: usize,
        trigger: impl FnOnce(),
    ) -> anyhow::Result<Vec<Vec<u8>>> {
        let (file, c) = (self.capture_file(), count.to_string());
        let f = file.display().to_string();
        let mut args = vec!["timeout", "20", "tcpdump", "-i", iface, "-U", "-c", &c, "-w", &f];
        args.extend_from_slice(filter);
        let ul = self.underlay_ns.clone();
        self.capture(&ul, &args, &file, count, trigger)
    }

    /// Capture `count` frames of DPDK port `port_id` of a weft node with `dpdk-dumpcap` (a DPDK
    /// secondary process attached through the node's --file-prefix) while `trigger` runs.
    pub fn dumpcap(
        &mut self,
        node: &WeftNode,
        port_id: u16,
        count: usize,
        trigger: impl FnOnce(),
    ) -> anyhow::Result<Vec<Vec<u8>>> {
        let (file, c, port) = (self.capture_file(), count.to_string(), port_id.to_string());
        let (f, prefix) = (file.display().to_string(), format!("--file-prefix={}", node.ns));
        let args = ["timeout", "30", "dpdk-dumpcap", &prefix, "-i", &port, "-P", "-c", &c, "-w", &f];
        self.capture(&node.ns.clone(), &args, &file, count, trigger)
    }

    fn capture_file(&self) -> PathBuf {
        self.dir.join(format!("capture-{}.pcap", self.children.len()))
    }

    /// Start the capture `args` writing the pcap `file` in `ns`, give it a second to attach, run
    /// `trigger`, and wait (10 s at most) until `file` holds `count` frames.
    fn capture(
        &mut self,
        ns: &str,
        args: &[&str],
        file: &Path,
        count: usize,
        trigger: impl FnOnce(),
    ) -> anyhow::Result<Vec<Vec<u8>>> {
        let log = file.with_extension("log");
        self.spawn(ns, args, &log)?;
        std::thread::sleep(Duration::from_secs(2));
        trigger();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let bytes = fs::read(file).unwrap_or_default();
            let frames: Vec<Vec<u8>> = weft_wire::pcap::PcapReader::new(&bytes)
                .map(|r| r.filter_map(|x| x.ok()).map(|x| x.data.to_vec()).collect())
                .unwrap_or_default();
            if frames.len() >= count {
                return Ok(frames);
            }
            if Instant::now() > deadline {
                bail!("captured {} of {count} frames: {}", frames.len(), fs::read_to_string(&log).unwrap_or_default());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn udp_routes_file(&self, k: &KernelNode) -> PathBuf {
        self.dir.join(format!("{}-udp-routes", k.ns))
    }

    /// What flanneld installs for a new lease (`handleSubnetEvents`): for vxlan ARP, FDB and route (or
    /// the direct route); for host-gw the route via the PublicIP; for udp a route in the relay.
    pub fn kernel_add_peer(&self, k: &KernelNode, p: &Peer) -> anyhow::Result<()> {
        if k.backend == KernelBackend::Udp {
            let path = self.udp_routes_file(k);
            let mut text = fs::read_to_string(&path).unwrap_or_default();
            text.push_str(&format!("{} {}\n", p.subnet, p.public_ip));
            fs::write(&path, text)?;
            return Ok(());
        }
        exec(&k.ns, &["sh", "-ec", &flannel_add_cmd(k.backend, p)])?;
        Ok(())
    }
}

/// flanneld's vxlan backend for a new lease: the neighbour entry for the peer's subnet address, the FDB
/// entry to its PublicIP, and the route through flannel.1; with DirectRouting and the PublicIP on link
/// (`ip.DirectRouting`: the route to it has no gateway), the route via the PublicIP instead. host-gw:
/// the route via the PublicIP on eth0, which the kernel refuses when the PublicIP is not on link.
fn flannel_add_cmd(backend: KernelBackend, p: &Peer) -> String {
    let gw = p.subnet.addr();
    let (ip, subnet) = (p.public_ip, p.subnet);
    match backend {
        KernelBackend::HostGw => format!("ip route replace {subnet} via {ip} dev eth0"),
        KernelBackend::Vxlan { direct_routing: true } => format!(
            "if ip route get {ip} | grep -q ' via '; then {}; else ip route replace {subnet} via {ip}; fi",
            flannel_add_cmd(KernelBackend::VXLAN, p).replace('\n', ";")
        ),
        _ => format!(
            "ip neigh replace {gw} lladdr {mac} dev flannel.1 nud permanent
         bridge fdb replace {mac} dev flannel.1 dst {ip} self permanent
         ip route replace {subnet} via {gw} dev flannel.1 onlink",
            mac = p.vtep_mac,
        ),
    }
}

/// What flanneld removes when a lease goes (for the udp backend the syncer rewrites the relay's routes).
fn flannel_del_cmd(p: &Peer) -> String {
    let gw = p.subnet.addr();
    format!(
        "ip route del {}; ip neigh del {gw} dev flannel.1; bridge fdb del {} dev flannel.1 dst {} self",
        p.subnet, p.vtep_mac, p.public_ip
    )
}

impl Lab {
    /// The kernel node as flanneld runs it: its lease written to etcd in flannel's JSON (on a 24 h etcd
    /// lease), and its kernel programmed from the leases it reads there, every 300 ms, until the lab
    /// ends: new vxlan peers get neighbour, FDB and route entries; vanished ones lose them.
    pub fn kernel_flanneld(&mut self, k: &KernelNode) -> anyhow::Result<()> {
        let mac: weft_config::MacAddr = k.vtep_mac.parse().map_err(|e| anyhow!("{e}"))?;
        let backend = k.backend.backend_type();
        let value = Lease::of(backend, k.public_ip, weft_config::Vni::ONE, mac).to_json();
        let routes_file = self.udp_routes_file(k);
        let grant = self.etcdctl(&["lease", "grant", "86400"])?;
        let id = grant.split_whitespace().nth(1).ok_or_else(|| anyhow!("lease grant said {grant}"))?.to_owned();
        let key = format!("{ETCD_PREFIX}/subnets/{}", k.subnet.replace('/', "-"));
        self.etcdctl(&["put", "--lease", &id, &key, &value])?;
        let (ul, url, k, stop) =
            (self.underlay_ns.clone(), self.etcd.clone().unwrap_or_default(), k.clone(), self.stop_syncers.clone());
        let syncer = std::thread::spawn(move || {
            let mut installed: std::collections::HashMap<String, Peer> = Default::default();
            while !stop.load(Ordering::Relaxed) {
                let prefix = format!("{ETCD_PREFIX}/subnets/");
                let out = Command::new("ip")
                    .args(["netns", "exec", &ul, "etcdctl", &format!("--endpoints={url}"), "get", "--prefix", &prefix])
                    .env("ETCDCTL_API", "3")
                    .output();
                if let Ok(out) = out.as_ref().map(|o| (o.status.success(), o)) {
                    if out.0 {
                        let text = String::from_utf8_lossy(&out.1.stdout).into_owned();
                        let lines: Vec<&str> = text.lines().collect();
                        let mut now: std::collections::HashMap<String, Peer> = Default::default();
                        for pair in lines.chunks(2) {
                            let [key, value] = pair else { continue };
                            let Some(sk) = key.rsplit('/').next().and_then(|n| n.parse::<SubnetKey>().ok()) else {
                                continue;
                            };
                            let Ok(l) = Lease::from_json(value) else { continue };
                            let Some(p) = Peer::from_lease(sk.0, &l, backend, weft_config::Vni::ONE) else { continue };
                            let subnet = sk.0.to_string();
                            if subnet != k.subnet {
                                now.insert(subnet, p);
                            }
                        }
                        if k.backend == KernelBackend::Udp {
                            if now != installed {
                                let text: String =
                                    now.values().map(|p| format!("{} {}\n", p.subnet, p.public_ip)).collect();
                                let tmp = routes_file.with_extension("tmp");
                                if fs::write(&tmp, text).is_ok() {
                                    let _ = fs::rename(&tmp, &routes_file);
                                }
                            }
                            installed = now;
                            std::thread::sleep(Duration::from_millis(300));
                            continue;
                        }
                        for (subnet, p) in &now {
                            if installed.get(subnet).map(|q| (q.public_ip, &q.vtep_mac))
                                != Some((p.public_ip, &p.vtep_mac))
                            {
                                let _ = exec(&k.ns, &["sh", "-c", &flannel_add_cmd(k.backend, p)]);
                            }
                        }
                        for (subnet, p) in &installed {
                            if !now.contains_key(subnet) {
                                let _ = exec(&k.ns, &["sh", "-c", &flannel_del_cmd(p)]);
                            }
                        }
                        installed = now;
                    }
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        });
        self.syncers.push(syncer);
        Ok(())
    }

    /// Start weftd for `node` in etcd mode: network, subnet and peers all come from etcd.
    pub fn start_weftd_etcd(&mut self, node: &WeftNode, extra: &[&str]) -> anyhow::Result<()> {
        let url = self.etcd.clone().ok_or_else(|| anyhow!("the lab has no etcd"))?;
        let subnet_file = self.dir.join(format!("{}-subnet.env", node.ns)).display().to_string();
        let mut args = vec!["--etcd-endpoints".to_string(), url, "--subnet-file".into(), subnet_file];
        args.extend(extra.iter().map(|s| s.to_string()));
        self.launch_weftd(node, args)
    }

    /// etcd with `network_config`, a kernel flannel node (3) registered there, and a weft node (1) in
    /// etcd mode; the weft node's `subnet` is the one etcd gave it.
    pub fn etcd_weft_and_kernel(&mut self, network_config: &str) -> anyhow::Result<(WeftNode, KernelNode)> {
        self.start_etcd(network_config)?;
        let n1 = self.weft_node(1)?;
        let k3 = self.kernel_node(3, &[])?;
        self.kernel_flanneld(&k3)?;
        self.start_weftd_etcd(&n1, &[])?;
        let status = self.weftctl(&n1, &["status"])?;
        let subnet = status["node"]["subnet"].as_str().ok_or_else(|| anyhow!("no subnet in {status}"))?.to_owned();
        Ok((WeftNode { subnet, ..n1 }, k3))
    }

    /// Start weftd for `node` with static `peers`; waits until its API answers.
    pub fn start_weftd(&mut self, node: &WeftNode, peers: &[Peer], extra: &[&str]) -> anyhow::Result<()> {
        let mut args: Vec<String> =
            vec!["--network".into(), "10.244.0.0/16".into(), "--subnet".into(), node.subnet.clone()];
        for p in peers {
            args.push("--peer".into());
            args.push(format!("{},{},{}", p.subnet, p.public_ip, p.vtep_mac));
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        self.launch_weftd(node, args)
    }

    fn launch_weftd(&mut self, node: &WeftNode, mode_args: Vec<String>) -> anyhow::Result<()> {
        let log = fs::File::create(&node.log)?;
        let mut args: Vec<String> = vec![
            "netns".into(),
            "exec".into(),
            node.ns.clone(),
            self.weftd.display().to_string(),
            "--public-ip".into(),
            node.public_ip.to_string(),
            "--uplink".into(),
            "net_af_packet0,iface=eth0".into(),
            "--vtep-mac".into(),
            node.vtep_mac.clone(),
            "--api-socket".into(),
            node.api_socket.display().to_string(),
            "--state-dir".into(),
            self.state_dir(node).display().to_string(),
            "--vhost-dir".into(),
            self.dir.join(format!("{}-vhost", node.ns)).display().to_string(),
            "--ipam-store".into(),
            self.ipam_store(node).display().to_string(),
            // The lab pauses workers to test the health check.
            "--debug-api".into(),
            "--mbufs".into(),
            "8191".into(),
            // One DPDK prefix per node, where DPDK's tools find it (weftd's default is one per host).
            "--file-prefix".into(),
            node.ns.clone(),
        ];
        args.extend(mode_args);
        let child = Command::new("ip").args(&args).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).spawn()?;
        self.children.push((weftd_label(&node.ns), child));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.weftctl(node, &["status"]).is_ok() {
                return Ok(());
            }
            if let Some((_, c)) = self.children.last_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    bail!("weftd in {} exited ({st}):\n{}", node.ns, fs::read_to_string(&node.log).unwrap_or_default());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "weftd in {} did not answer in 30 s:\n{}",
                    node.ns,
                    fs::read_to_string(&node.log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Run weftctl against a node; its JSON result.
    pub fn weftctl(&self, node: &WeftNode, args: &[&str]) -> anyhow::Result<Value> {
        let out = Command::new(&self.weftctl).arg("--api-socket").arg(&node.api_socket).args(args).output()?;
        if !out.status.success() {
            bail!("weftctl {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    /// A pod namespace on a weft node with a tap interface; returns its address.
    pub fn tap_pod(&mut self, node: &WeftNode, name: &str) -> anyhow::Result<(String, Ipv4Addr)> {
        self.kernel_pod(node, name, "tap")
    }

    /// A pod namespace on a weft node with an interface of `kind` (tap, veth); returns its address.
    pub fn kernel_pod(&mut self, node: &WeftNode, name: &str, kind: &str) -> anyhow::Result<(String, Ipv4Addr)> {
        let ns = format!("{}-{name}", self.prefix);
        self.add_ns(&ns)?;
        let info = self.weftctl(node, &["pod", "add", name, "--kind", kind, "--netns", &ns])?;
        let ip: Ipv4Addr = info["ip"].as_str().ok_or_else(|| anyhow!("no ip in {info}"))?.parse()?;
        Ok((ns, ip))
    }

    /// The PID of the weftd running in `ns` (`ip netns exec` execs it, so the child's PID is weftd's).
    pub fn pid_of(&self, ns: &str) -> Option<u32> {
        self.children.iter().find(|(n, _)| *n == weftd_label(ns)).map(|(_, c)| c.id())
    }

    /// How many `/dev/net/tun` descriptors weftd in `ns` holds (net_tap ports' queues).
    pub fn tun_fds(&self, ns: &str) -> anyhow::Result<usize> {
        let pid = self.pid_of(ns).ok_or_else(|| anyhow!("no weftd in {ns}"))?;
        let mut tun = 0;
        for fd in fs::read_dir(format!("/proc/{pid}/fd"))? {
            if fs::read_link(fd?.path()).is_ok_and(|l| l == Path::new("/dev/net/tun")) {
                tun += 1;
            }
        }
        Ok(tun)
    }

    /// The RPS CPUs of `iface`'s first receive queue in namespace `ns` (the kernel's hex mask, up to 64
    /// CPUs).
    pub fn rps_cpus(ns: &str, iface: &str) -> anyhow::Result<u64> {
        let out = exec(ns, &["cat", &format!("/sys/class/net/{iface}/queues/rx-0/rps_cpus")])?;
        let text = String::from_utf8_lossy(&out.stdout).trim().replace(',', "");
        let low = &text[text.len().saturating_sub(16)..];
        u64::from_str_radix(low, 16).map_err(|e| anyhow!("rps_cpus of {iface} in {ns}: {text:?}: {e}"))
    }

    /// SIGKILL one weftd by its PID.
    pub fn kill_weftd(&mut self, ns: &str) {
        let label = weftd_label(ns);
        for (n, c) in self.children.iter_mut() {
            if *n == label {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        self.children.retain(|(n, _)| *n != label);
    }

    /// Stop one weftd (SIGTERM, then SIGKILL after 5 s) by its PID: how long it took to exit, and
    /// whether it had to be killed.
    pub fn stop_weftd(&mut self, ns: &str) -> (Duration, bool) {
        let mut keep = Vec::new();
        let label = weftd_label(ns);
        let mut took = (Duration::ZERO, false);
        for (n, mut c) in std::mem::take(&mut self.children) {
            // Only weftd: a pod process in the same namespace (a DPDK pod owning its vhost-user socket)
            // lives on across a weftd restart, as it would on a real node.
            if n == label {
                took = terminate(&mut c);
            } else {
                keep.push((n, c));
            }
        }
        self.children = keep;
        took
    }

    /// weftd's state directory for a node.
    pub fn state_dir(&self, node: &WeftNode) -> PathBuf {
        self.dir.join(format!("{}-state", node.ns))
    }

    /// A namespace name of this lab's (deleted with it once made by [`Lab::add_ns`]).
    pub fn ns_name(&self, tag: &str) -> String {
        format!("{}-{tag}", self.prefix)
    }

    /// A DPDK pod: `dpdk-testpmd --forward-mode=icmpecho` on `net_virtio_user` at `socket` with the pod's
    /// MAC, in `ns`; `server` makes virtio-user own the socket (weft then connects as the client).
    /// Returns its log file.
    pub fn spawn_testpmd_pod(&mut self, ns: &str, socket: &str, mac: &str, server: bool) -> anyhow::Result<PathBuf> {
        self.spawn_testpmd_pods(ns, "testpmd", &[(socket, mac)], server, &TestpmdProcess::default())
    }

    /// Up to 32 DPDK pods in one `dpdk-testpmd --forward-mode=icmpecho` (DPDK's port limit): one
    /// `net_virtio_user` port per (socket, MAC), run as `process` says. Returns its log file.
    pub fn spawn_testpmd_pods(
        &mut self,
        ns: &str,
        tag: &str,
        pods: &[(&str, &str)],
        server: bool,
        process: &TestpmdProcess,
    ) -> anyhow::Result<PathBuf> {
        let TestpmdProcess { lcores, mem_mb, testpmd_args } = *process;
        let log = self.dir.join(format!("{tag}.log"));
        let vdevs: Vec<String> = pods
            .iter()
            .enumerate()
            .map(|(i, (socket, mac))| {
                format!("--vdev=net_virtio_user{i},path={socket},server={},mac={mac},queues=1", server as u8)
            })
            .collect();
        let prefix = format!("--file-prefix={}-{tag}", self.prefix);
        let (mem, mbufs) = (mem_mb.to_string(), format!("--total-num-mbufs={}", 4096 + 256 * pods.len()));
        // virtio-user needs --single-file-segments here, which --huge-unlink refuses; --in-memory leaves
        // no hugepage files either.
        let mut args = vec![
            "dpdk-testpmd",
            "--lcores",
            lcores,
            "--no-pci",
            "--single-file-segments",
            "--in-memory",
            "--no-telemetry",
            &prefix,
            "-m",
            &mem,
        ];
        args.extend(vdevs.iter().map(String::as_str));
        args.extend(["--", "--forward-mode=icmpecho", "--stats-period", "5", "--rxd=128", "--txd=128", &mbufs]);
        args.extend_from_slice(testpmd_args);
        self.spawn(ns, &args, &log)?;
        Ok(log)
    }

    /// Start a long-lived process in a namespace that the lab stops on drop.
    pub fn spawn(&mut self, ns: &str, args: &[&str], log: &Path) -> anyhow::Result<()> {
        let f = fs::File::create(log)?;
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .stdin(Stdio::null())
            .stdout(f.try_clone()?)
            .stderr(f)
            .spawn()?;
        self.children.push((ns.to_owned(), child));
        Ok(())
    }
}

/// How a testpmd of DPDK pods runs: its EAL `lcores` (e.g. `(0,1)@0` to keep several such processes on
/// one CPU), `mem_mb` of memory, and further `testpmd_args`.
#[derive(Debug, Clone, Copy)]
pub struct TestpmdProcess<'a> {
    pub lcores: &'a str,
    pub mem_mb: u32,
    pub testpmd_args: &'a [&'a str],
}

impl Default for TestpmdProcess<'_> {
    fn default() -> Self {
        TestpmdProcess { lcores: "0,1", mem_mb: 256, testpmd_args: &[] }
    }
}

/// How the lab names the weftd of a namespace among the processes it started.
fn weftd_label(ns: &str) -> String {
    format!("weftd@{ns}")
}

/// SIGTERM (through kill(1): no unsafe here), wait up to 5 s, then SIGKILL.
/// SIGTERM, then SIGKILL after 5 s; how long it took, and whether it had to be killed.
fn terminate(c: &mut Child) -> (Duration, bool) {
    // `ip netns exec` execs the command, so the child's PID is the program's.
    let t0 = Instant::now();
    let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
    let deadline = t0 + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = c.try_wait() {
            return (t0.elapsed(), false);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = c.kill();
    let _ = c.wait();
    (t0.elapsed(), true)
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop_syncers.store(true, Ordering::Relaxed);
        for s in std::mem::take(&mut self.syncers) {
            let _ = s.join();
        }
        for (_, mut c) in std::mem::take(&mut self.children).into_iter().rev() {
            terminate(&mut c);
        }
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        // What DPDK leaves of a weftd the lab had to kill: its hugepage files and runtime directory.
        crate::eal::remove_dpdk_leftovers(&format!("{}-", self.prefix));
        if std::env::var_os("WEFT_LAB_KEEP_LOGS").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// GET `url` with curl from a namespace (5 s at most): (HTTP status, body); status 0 when nothing
/// answered.
pub fn http_get(ns: &str, url: &str) -> (u16, String) {
    let out =
        Command::new("ip").args(["netns", "exec", ns, "curl", "-s", "-m", "5", "-w", "\n%{http_code}", url]).output();
    let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// `ping -c count` from a namespace; (sent, received).
/// A process's resident set (`VmRSS` of /proc/PID/status), KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// One ping from `ns` to `dst`: the TTL of the reply, if one came (what the far end sent, less the hops
/// on the way back).
pub fn ping_ttl(ns: &str, dst: Ipv4Addr) -> Option<u8> {
    let out = exec(ns, &["ping", "-n", "-c", "1", "-W", "2", &dst.to_string()]).ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split("ttl=").nth(1)?.split_whitespace().next()?.parse().ok()
}

pub fn ping(ns: &str, dst: Ipv4Addr, count: u32, size: Option<u16>, dont_fragment: bool) -> (u32, u32) {
    let mut args = vec![
        "ip".to_string(),
        "netns".into(),
        "exec".into(),
        ns.into(),
        "ping".into(),
        "-n".into(),
        "-q".into(),
        "-c".into(),
        count.to_string(),
        "-i".into(),
        "0.2".into(),
        "-W".into(),
        "2".into(),
    ];
    if let Some(s) = size {
        args.push("-s".into());
        args.push(s.to_string());
    }
    if dont_fragment {
        args.push("-M".into());
        args.push("do".into());
    }
    args.push(dst.to_string());
    let out = Command::new(&args[0]).args(&args[1..]).output();
    let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    // "5 packets transmitted, 5 received, 0% packet loss"
    let nums: Vec<u32> = text
        .lines()
        .find(|l| l.contains("transmitted"))
        .map(|l| l.split(',').filter_map(|p| p.split_whitespace().next()?.parse().ok()).collect())
        .unwrap_or_default();
    (nums.first().copied().unwrap_or(0), nums.get(1).copied().unwrap_or(0))
}
