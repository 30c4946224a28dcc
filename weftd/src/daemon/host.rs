//! The host port: a kernel interface (`weft0` by default) that is weft's exception path to the host,
//! playing the part `flannel.1` plays on a kernel flannel node. It carries the node's overlay address
//! (`<subnet>.0/32`, as flannel.1 does) and the route for the cluster network; weft answers the host's
//! ARP for what lies behind it. Through it pods reach the host (probes, Services), cni0's kernel pods
//! and the world, and the host reaches remote pods.
//!
//! Backend: DPDK's exception path of choice, `virtio-user` on the kernel's vhost-net (checksum and TSO
//! offloads, several queues), where `/dev/vhost-net` exists; where it does not, a veth pair whose other
//! end (`weft0-dp`) DPDK's `net_af_packet` holds, with GRO on `weft0` in threaded NAPI. net_tap, the
//! earlier fallback, moved a frame per syscall and handed the host one 1450-byte frame at a time; the
//! veth pair moves a burst per `sendto` and the host routes merged 64 KB aggregates (TCP between cni0
//! pods on two weft nodes in `weft-bench hostport`: 0.67 of two kernel flannel nodes with net_tap,
//! 1.14 with the veth pair). The log and `/metrics` (`weft_host_port_info`) say which. Each worker
//! polls its own queue of the port.
//!
//! With `ip_masq`, the masquerade rules flanneld installs with `--ip-masq` (its `FLANNEL-POSTRTG`
//! chain), checked every few seconds and put back if something flushed them, removed on a clean exit.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::channel::Sender;
use tracing::{info, warn};
use weft_config::{Ipv4Net, MacAddr};

use super::error::Error;
use dataplane::dpdk::{Mempool, Port, PortConfig};
use dataplane::tables::{HostPort, Node};
use dataplane::worker::{PortKind, WorkerCommand};

/// Which DPDK device backs the host port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// virtio-user on /dev/vhost-net: the kernel's vhost worker moves the packets.
    VirtioUser,
    /// A veth pair: the kernel keeps `weft0`, DPDK's net_af_packet holds the other end (`weft0-dp`).
    /// weft reads the frames the host sends from a ring in memory (no syscall per frame) and writes a
    /// burst per `sendto`; `weft0` takes them through NAPI with GRO, so the host routes, bridges and
    /// filters a pod's TCP in up to 64 KB aggregates as it does behind a NIC. (It replaced net_tap, a
    /// `readv` or `writev` per 1450-byte frame.)
    Veth,
}

impl Backend {
    /// virtio-user where the kernel offers vhost-net, a veth pair where it does not.
    pub fn detect() -> Backend {
        if Path::new("/dev/vhost-net").exists() {
            Backend::VirtioUser
        } else {
            Backend::Veth
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Backend::VirtioUser => "virtio_user",
            Backend::Veth => "veth",
        }
    }

    fn devargs(self, iface: &str, queues: usize, mtu: u16) -> String {
        match self {
            Backend::VirtioUser => {
                format!("net_virtio_user_host,path=/dev/vhost-net,iface={iface},queues={queues},queue_size=1024")
            }
            Backend::Veth => af_packet_devargs("net_af_packet_host", &veth_peer(iface), queues, mtu),
        }
    }
}

/// af_packet's ring frame and block (`framesz`, `blocksz`) for frames of `mtu` (the uplink's underlay
/// MTU, the host port's pod MTU): its defaults up to
/// 1500; else the frame (the MTU and the 18 bytes ethdev adds when it checks an MTU) plus the ring's
/// 52-byte header (TPACKET2_HDRLEN), in whole KiB, and a block of whole pages that whole frames fill:
/// the PMD addresses frame i at i x framesz, so frames may not leave gaps at block ends.
pub(super) fn af_packet_frame(mtu: u16) -> Option<(u32, u32)> {
    (mtu > 1500).then(|| {
        let frame = (u32::from(mtu) + 18 + 52).next_multiple_of(1024);
        let gcd = |mut a: u32, mut b: u32| {
            while b != 0 {
                (a, b) = (b, a % b);
            }
            a
        };
        (frame, frame / gcd(frame, 4096) * 4096)
    })
}

/// The name of the veth end DPDK holds: `<iface>-dp` (the iface cut to 12 characters, as names stop at
/// 15).
pub fn veth_peer(iface: &str) -> String {
    let cut = iface.char_indices().nth(12).map_or(iface, |(i, _)| &iface[..i]);
    format!("{cut}-dp")
}

/// The ifindex of an interface (in this namespace), if it exists.
pub(super) fn ifindex(name: &str) -> Option<u32> {
    std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex")).ok()?.trim().parse().ok()
}

/// The iflink of an interface: a veth's is its peer's ifindex, any other device's its own.
pub(super) fn iflink(name: &str) -> Option<u32> {
    std::fs::read_to_string(format!("/sys/class/net/{name}/iflink")).ok()?.trim().parse().ok()
}

/// Make the veth pair for the host port, replacing one a weftd that died left behind (`iface` whose
/// peer is `<iface>-dp`); an `iface` that is anything else is refused, as net_tap refuses a taken name.
fn make_veth(iface: &str, queues: usize, mtu: u16) -> Result<(), String> {
    let peer = veth_peer(iface);
    if let Some(own) = ifindex(iface) {
        let link = iflink(iface);
        if link == Some(own) || link.is_none() || link != ifindex(&peer) {
            return Err(format!(
                "{iface} exists and is not a host port weft left behind (give --host-iface another name, or \"\" \
                 to run without the host port)"
            ));
        }
        info!(iface, peer, "removing the host port a previous weftd left");
        run_ip(&["link", "del", iface])?;
    }
    veth_pair(iface, &peer, queues, mtu)
}

/// A veth pair for a kernel interface `kernel` that DPDK's net_af_packet reaches through its other end
/// `dp`, `queues` each way, both ends at `mtu`, `dp` up (the host port's, a tap pod's). The kernel side
/// hands DPDK whole, checksummed frames: af_packet copies what the skb holds and says nothing of
/// offloads. GRO on the kernel side turns on its NAPI receive (Linux 5.13 and later), which merges what
/// weft writes once it runs threaded ([`threaded_napi`]).
pub(super) fn veth_pair(kernel: &str, dp: &str, queues: usize, mtu: u16) -> Result<(), String> {
    let (q, m) = (queues.to_string(), mtu.to_string());
    let opts = ["numtxqueues", &q, "numrxqueues", &q, "mtu", &m];
    let mut args = vec!["link", "add", kernel];
    args.extend(opts);
    args.extend(["type", "veth", "peer", "name", dp]);
    args.extend(opts);
    run_ip(&args)?;
    let made = || -> Result<(), String> {
        ethtool(&["-K", kernel, "tx", "off", "tso", "off", "gso", "off", "gro", "on"])?;
        // And TSO off on the sending end too: veth hands NAPI (and GRO) only frames from a peer without TSO.
        ethtool(&["-K", dp, "tx", "off", "tso", "off", "gso", "off"])?;
        // The DPDK end is no host: no IPv6 of its own (router solicitations would reach weft as frames),
        // and no ARP. Else the kernel answers a pod asking for its gateway with this end's MAC when the
        // gateway's address is one of the host's (cni0's `<subnet>.1`), takes the pod's frames as its own
        // and routes them to weft a second time through the host port.
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{dp}/disable_ipv6"), "1");
        run_ip(&["link", "set", dp, "arp", "off", "up"])
    };
    made().inspect_err(|_| {
        let _ = run_ip(&["link", "del", dp]);
    })
}

/// `net_af_packet` on the veth end `dp`: a queue pair per worker, frames sized for `mtu`. Bypassing the
/// qdisc also keeps weft's own frames out of its socket (no tap on the xmit).
pub(super) fn af_packet_devargs(vdev: &str, dp: &str, queues: usize, mtu: u16) -> String {
    format!("{vdev},iface={dp},qpairs={queues},qdisc_bypass=1{}", af_packet_ring(mtu))
}

/// The devargs that size af_packet's ring for frames of `mtu` ([`af_packet_frame`]): empty up to 1500.
pub(super) fn af_packet_ring(mtu: u16) -> String {
    af_packet_frame(mtu).map(|(frame, block)| format!(",framesz={frame},blocksz={block}")).unwrap_or_default()
}

/// NAPI of the veth end `iface` (up, in this namespace) in kernel threads: in softirq it would run inside
/// each frame's xmit in weft's `sendto` (af_packet re-enables bottom halves per frame), one frame per
/// poll, and GRO would merge nothing. The threads (`napi/<iface>-<id>`) appear with the write; the
/// setting moves with the device to another namespace, where bringing it up makes its threads again.
pub(super) fn threaded_napi(iface: &str) -> Result<(), String> {
    std::fs::write(format!("/sys/class/net/{iface}/threaded"), "1")
        .map_err(|e| format!("/sys/class/net/{iface}/threaded: {e}"))
}

/// The NAPI threads of an interface named `iface` (`napi/<iface>-<id>`, cut to the 15 characters the
/// kernel keeps), in any namespace.
pub(super) fn napi_threads(iface: &str) -> Vec<u32> {
    let comm = format!("napi/{iface}-");
    let comm = comm.char_indices().nth(15).map_or(comm.as_str(), |(i, _)| &comm[..i]);
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.starts_with(comm)))
        .collect()
}

/// Keep the NAPI threads of `iface` that were not in `before` on `kernel_cpus`, with the rest of the
/// kernel's share of the work (RPS), off the workers' cores. Logged, never fatal. (A thread of another
/// interface of the same name made meanwhile goes to the same CPUs, where it belongs as well.)
pub(super) fn pin_new_napi(iface: &str, before: &[u32], steering: Option<&super::rps::Steering>) {
    let Some(s) = steering else { return };
    let list = s.cpus.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
    for pid in napi_threads(iface).into_iter().filter(|p| !before.contains(p)) {
        let out = Command::new("taskset").args(["-pc", &list, &pid.to_string()]).output();
        match out {
            Ok(o) if o.status.success() => info!(iface, pid, cpus = list, "NAPI thread pinned"),
            Ok(o) => warn!(iface, pid, error = %String::from_utf8_lossy(&o.stderr).trim(), "NAPI thread not pinned"),
            Err(e) => warn!(iface, pid, error = %e, "NAPI thread not pinned: running taskset (util-linux)"),
        }
    }
}

fn ethtool(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ethtool")
        .args(args)
        .output()
        .map_err(|e| format!("running ethtool (apt-get install ethtool): {e}"))?;
    if !out.status.success() {
        return Err(format!("ethtool {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(())
}

/// The host port, attached to the workers.
pub struct HostIface {
    pub name: String,
    pub backend: Backend,
    pub port: Port,
    pub mac: MacAddr,
}

impl std::fmt::Debug for HostIface {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostIface").field("name", &self.name).field("backend", &self.backend).finish()
    }
}

/// Run `ip` with these arguments; its complaint on failure.
pub(super) fn run_ip(args: &[&str]) -> Result<(), String> {
    let out =
        Command::new("ip").args(args).output().map_err(|e| format!("running ip (apt-get install iproute2): {e}"))?;
    if !out.status.success() {
        return Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(())
}

/// Run `ip` in a network namespace given by name (under /run/netns) or by path (CNI's `CNI_NETNS`,
/// through `nsenter`, as `ip -n` takes names only); its output, or its complaint.
pub(super) fn ip_in(netns: &str, args: &[&str]) -> Result<String, String> {
    let mut cmd = if netns.contains('/') {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={netns}")).arg("ip");
        c
    } else {
        let mut c = Command::new("ip");
        c.args(["-n", netns]);
        c
    };
    let out = cmd.args(args).output().map_err(|e| format!("running ip in {netns} (iproute2, util-linux): {e}"))?;
    if !out.status.success() {
        return Err(format!("ip {} in {netns}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The kernel interface's MAC, once the device has made it.
fn iface_mac(name: &str) -> Result<MacAddr, String> {
    let path = format!("/sys/class/net/{name}/address");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match std::fs::read_to_string(&path) {
            Ok(t) => return t.trim().parse().map_err(|e| format!("{path}: {e}")),
            Err(e) if Instant::now() > deadline => return Err(format!("{path}: {e}")),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Create the host port, give it flannel.1's address, MTU and the route for the cluster network, and
/// hand one queue of it to each worker.
pub(super) fn attach(
    name: &str,
    node: &Node,
    pool: &Arc<Mempool>,
    workers: &[Sender<WorkerCommand>],
    steering: Option<&super::rps::Steering>,
) -> Result<HostIface, Error> {
    let backend = Backend::detect();
    let queues = workers.len();
    if backend == Backend::Veth {
        info!(iface = name, "no /dev/vhost-net: the host port is a veth pair (virtio-user needs vhost-net)");
        make_veth(name, queues, node.pod_mtu()).map_err(|reason| Error::Setting { field: "host_iface", reason })?;
    }
    let port = Port::probe(&backend.devargs(name, queues, node.pod_mtu())).map_err(Error::dpdk(format!(
        "host_iface {name}: creating the {} port (is {name} taken by another interface? give --host-iface \
             another name, or \"\" to run without the host port)",
        backend.label()
    )))?;
    if usize::from(port.id().0) >= dataplane::worker::ETH_PORTS {
        return Err(Error::Setting {
            field: "host_iface",
            reason: format!("DPDK gave the host port id {} beyond the workers' port table", port.id().0),
        });
    }
    let n = queues as u16;
    let (rx, tx) = port
        .configure(&PortConfig { rx_queues: n, tx_queues: n, ..PortConfig::default() }, pool.clone())
        .map_err(Error::dpdk(format!("host_iface {name}: configuring the port")))?;
    port.start().map_err(Error::dpdk(format!("host_iface {name}: starting the port")))?;
    let mac = iface_mac(name).map_err(|reason| Error::Setting { field: "host_iface", reason })?;
    let addr = format!("{}/32", node.subnet.addr());
    let mtu = node.pod_mtu().to_string();
    let network = node.network.to_string();
    run_ip(&["link", "set", name, "mtu", &mtu, "up"])
        .and_then(|_| run_ip(&["addr", "replace", &addr, "dev", name]))
        .and_then(|_| run_ip(&["route", "replace", &network, "dev", name]))
        .map_err(|reason| Error::Setting { field: "host_iface", reason: format!("{name}: {reason}") })?;
    if let Some(s) = steering {
        super::rps::steer(name, s);
    }
    if backend == Backend::Veth {
        // Those threads that were not there before are this port's (another namespace's port of the same
        // name has its own).
        let before = napi_threads(name);
        match threaded_napi(name) {
            Err(e) => {
                warn!(iface = name, error = %e, "could not make the host port's NAPI threaded: GRO will merge little")
            }
            Ok(()) => pin_new_napi(name, &before, steering),
        }
    }
    for (i, ((w, txq), rxq)) in workers.iter().zip(tx).zip(rx).enumerate() {
        // virtio-user and af_packet read a ring in memory: polled every loop (no PortRx::Tap timer).
        let (tx, rx) = (dataplane::worker::PortTx::Eth(txq), vec![dataplane::worker::PortRx::Eth(rxq)]);
        w.send(WorkerCommand::Attach { port: port.id(), tx, rx, kind: PortKind::Host })
            .map_err(|_| Error::Setting { field: "workers", reason: format!("worker {i} is gone") })?;
    }
    info!(iface = name, backend = backend.label(), mac = %mac, address = %addr, route = %network, "host port up");
    Ok(HostIface { name: name.to_owned(), backend, port, mac })
}

impl HostIface {
    /// What the tables need of it.
    pub fn table_entry(&self) -> HostPort {
        HostPort { port: self.port.id(), mac: self.mac }
    }

    /// At a clean exit: the workers are stopped. A veth pair outlives the process, so it is deleted
    /// (DPDK's tap and virtio-user interfaces go with the port).
    pub fn remove(&self) {
        if self.backend == Backend::Veth {
            let _ = self.port.stop();
            if let Err(e) = run_ip(&["link", "del", &self.name]) {
                warn!(iface = self.name, error = %e, "could not delete the host port");
            }
        }
    }
}

/// A route to one weft pod through the host port: where cni0 holds the subnet's route, the host would
/// otherwise look for weft's pods on the bridge.
pub(super) fn route_pod(iface: &str, pod: std::net::Ipv4Addr) {
    if let Err(e) = run_ip(&["route", "replace", &format!("{pod}/32"), "dev", iface]) {
        warn!(pod_ip = %pod, error = %e, "no host route to the pod");
    }
}

pub(super) fn unroute_pod(iface: &str, pod: std::net::Ipv4Addr) {
    let _ = run_ip(&["route", "del", &format!("{pod}/32"), "dev", iface]);
}

/// The bridge of the node's kernel pods: what the flannel CNI plugin's delegate calls it by default.
pub const CNI_BRIDGE: &str = "cni0";

/// Kernel pods on the bridge take the whole subnet as on-link and ARP there for weft's pods, which are
/// not on it: the host answers for them (proxy ARP on the bridge answers for addresses the host routes
/// through another interface, and weft's pods are routed through the host port). Checked with the
/// rules, since the bridge appears with its first kernel pod. Whether it had to be switched on.
pub fn ensure_bridge_proxy_arp(bridge: &str) -> bool {
    let path = format!("/proc/sys/net/ipv4/conf/{bridge}/proxy_arp");
    match std::fs::read_to_string(&path) {
        Ok(v) if v.trim() == "1" => false,
        Ok(_) => match std::fs::write(&path, "1") {
            Ok(()) => {
                info!(bridge, "proxy ARP on for weft's pods (kernel pods on the bridge reach them through the host)");
                true
            }
            Err(e) => {
                warn!(bridge, error = %e, "cannot turn proxy ARP on; kernel pods on the bridge will not reach weft's pods");
                false
            }
        },
        Err(_) => false, // no bridge (yet)
    }
}

const FLANNEL_CHAIN: &str = "FLANNEL-POSTRTG";
const FLANNEL_COMMENT: &str = "flanneld masq";
/// kube-proxy's masquerade mark: traffic it will masquerade itself is left alone (no double NAT).
const KUBE_PROXY_MARK: &str = "0x4000/0x4000";
const WEFT_CHAIN: &str = "WEFT-HOSTPORT";
/// weft's mark for packets that came in through the host port (kube-proxy uses 0x4000 and 0x8000).
const HOST_PORT_MARK: &str = "0x2000/0x2000";

/// A chain of one table with the rule that jumps to it from a built-in chain, kept in place as
/// flanneld keeps its own: checked, rebuilt in order when anything is missing, removed on exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSet {
    pub table: &'static str,
    pub chain: &'static str,
    /// The built-in chain that jumps to `chain`, and the jump's own match (a comment).
    pub hook: &'static str,
    pub hook_first: bool,
    pub comment: &'static str,
    /// The chain's rules, in order, without the comment (added to each).
    pub rules: Vec<Vec<String>>,
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

impl RuleSet {
    fn with_comment(&self, spec: &[String]) -> Vec<String> {
        // The comment goes before the target, as iptables -S prints it.
        let at = spec.iter().position(|a| a == "-j").unwrap_or(spec.len());
        let mut v = spec[..at].to_vec();
        v.extend(strings(&["-m", "comment", "--comment", self.comment]));
        v.extend_from_slice(&spec[at..]);
        v
    }

    /// The jump and the rules as `iptables -t TABLE` arguments after the action (`-A CHAIN ...`).
    pub fn lines(&self) -> Vec<(&'static str, Vec<String>)> {
        let mut out = vec![(self.hook, self.with_comment(&strings(&["-j", self.chain])))];
        out.extend(self.rules.iter().map(|r| (self.chain, self.with_comment(r))));
        out
    }

    fn run(&self, action: &str, chain: &str, spec: &[String]) -> Result<bool, String> {
        let mut a = vec!["-w", "5", "-t", self.table, action, chain];
        a.extend(spec.iter().map(String::as_str));
        let out = Command::new("iptables")
            .args(&a)
            .output()
            .map_err(|e| format!("running iptables (apt-get install iptables): {e}"))?;
        Ok(out.status.success())
    }

    /// Everything present? Else the chain again, in order, and the jump if it is missing. Whether
    /// anything had to be (re)installed.
    pub fn ensure(&self) -> Result<bool, String> {
        let lines = self.lines();
        if lines.iter().try_fold(true, |all, (chain, spec)| Ok::<_, String>(all && self.run("-C", chain, spec)?))? {
            return Ok(false);
        }
        if !self.run("-N", self.chain, &[])? && !self.run("-F", self.chain, &[])? {
            return Err(format!("iptables -t {} -F {} failed", self.table, self.chain));
        }
        for (chain, spec) in &lines {
            if *chain == self.hook {
                if self.run("-C", chain, spec)? {
                    continue;
                }
                let ok = if self.hook_first {
                    let mut at1 = vec!["1".to_string()];
                    at1.extend_from_slice(spec);
                    self.run("-I", chain, &at1)?
                } else {
                    self.run("-A", chain, spec)?
                };
                if !ok {
                    return Err(format!("iptables -t {} -I/-A {chain} {} failed", self.table, spec.join(" ")));
                }
            } else if !self.run("-A", chain, spec)? {
                return Err(format!("iptables -t {} -A {chain} {} failed", self.table, spec.join(" ")));
            }
        }
        Ok(true)
    }

    /// Remove the jump and the chain.
    pub fn remove(&self) {
        if let Some((hook, jump)) = self.lines().first() {
            while self.run("-D", hook, jump).unwrap_or(false) {}
        }
        let _ = self.run("-F", self.chain, &[]);
        let _ = self.run("-X", self.chain, &[]);
    }
}

/// flanneld's `--ip-masq` rules for a cluster network and this node's subnet, in its order.
pub fn flannel_masq(network: Ipv4Net, subnet: Ipv4Net) -> RuleSet {
    let (n, s) = (network.to_string(), subnet.to_string());
    RuleSet {
        table: "nat",
        chain: FLANNEL_CHAIN,
        hook: "POSTROUTING",
        hook_first: false,
        comment: FLANNEL_COMMENT,
        rules: vec![
            strings(&["-m", "mark", "--mark", KUBE_PROXY_MARK, "-j", "RETURN"]),
            strings(&["-s", &s, "-d", &n, "-j", "RETURN"]),
            strings(&["-s", &n, "-d", &s, "-j", "RETURN"]),
            strings(&["!", "-s", &n, "-d", &s, "-j", "RETURN"]),
            strings(&["-s", &n, "!", "-d", "224.0.0.0/4", "-j", "MASQUERADE", "--random-fully"]),
            strings(&["!", "-s", &n, "-d", &n, "-j", "MASQUERADE", "--random-fully"]),
        ],
    }
}

/// The host port's hairpin: a weft pod's connection that the host DNATs (a Service) back out through
/// the host port (to a remote pod) is masqueraded to the node's overlay address, so that the answer
/// comes back through the host, whose conntrack undoes the DNAT; weft would otherwise hand it straight
/// to the pod, which would see an answer from the backend instead of the ClusterIP. cni0 pods' traffic
/// never enters through weft0 and is not touched. Two sets: the mark in mangle, the masquerade in nat.
pub fn hairpin(iface: &str) -> [RuleSet; 2] {
    let comment = "weft host port hairpin";
    [
        RuleSet {
            table: "mangle",
            chain: WEFT_CHAIN,
            hook: "PREROUTING",
            hook_first: true,
            comment,
            rules: vec![strings(&["-i", iface, "-j", "MARK", "--set-xmark", HOST_PORT_MARK])],
        },
        RuleSet {
            table: "nat",
            chain: WEFT_CHAIN,
            hook: "POSTROUTING",
            hook_first: true,
            comment,
            rules: vec![strings(&[
                "-o",
                iface,
                "-m",
                "mark",
                "--mark",
                HOST_PORT_MARK,
                "-m",
                "conntrack",
                "--ctstate",
                "DNAT",
                "-j",
                "MASQUERADE",
            ])],
        },
    ]
}

/// The rule sets weftd keeps on its host: the hairpin with the host port, flanneld's masquerade with
/// `ip_masq`.
#[derive(Debug, Default)]
pub struct HostRules {
    sets: Vec<RuleSet>,
}

impl HostRules {
    pub fn new(sets: Vec<RuleSet>) -> HostRules {
        HostRules { sets }
    }

    /// Ensure each set; log what was (re)installed or failed. `first`: the initial install.
    pub fn ensure(&self, first: bool) {
        for s in &self.sets {
            match s.ensure() {
                Ok(true) if first => info!(table = s.table, chain = s.chain, "iptables rules installed"),
                Ok(true) => warn!(
                    table = s.table,
                    chain = s.chain,
                    "iptables rules were missing or out of order: installed again"
                ),
                Ok(false) => {}
                Err(e) => tracing::error!(table = s.table, chain = s.chain, error = %e, "iptables rules"),
            }
        }
    }

    pub fn remove(&self) {
        for s in &self.sets {
            s.remove();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masq_rules_are_flanneld_s() {
        let r = flannel_masq("10.244.0.0/16".parse().unwrap(), "10.244.1.0/24".parse().unwrap());
        let text: Vec<String> = r.lines().iter().map(|(c, s)| format!("-A {c} {}", s.join(" "))).collect();
        let m = "-m comment --comment flanneld masq";
        assert_eq!(
            text,
            vec![
                format!("-A POSTROUTING {m} -j FLANNEL-POSTRTG"),
                format!("-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 {m} -j RETURN"),
                format!("-A FLANNEL-POSTRTG -s 10.244.1.0/24 -d 10.244.0.0/16 {m} -j RETURN"),
                format!("-A FLANNEL-POSTRTG -s 10.244.0.0/16 -d 10.244.1.0/24 {m} -j RETURN"),
                format!("-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.1.0/24 {m} -j RETURN"),
                format!("-A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 {m} -j MASQUERADE --random-fully"),
                format!("-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.0.0/16 {m} -j MASQUERADE --random-fully"),
            ]
        );
    }
}
