//! Pods: hot-plugged DPDK ports (net_af_packet on a tap pod's veth pair, net_vhost), their addresses,
//! and handing their queues to the workers. Adding publishes the pod in a new snapshot after the workers
//! hold its queues; deleting publishes first (no new frames for it), then takes the queues back, then
//! closes the port, which frees its mbufs, and removes the device (the veth pair, the vhost socket). [`PodRegistry`] owns all of it: the pods, the restores still
//! pending, the state file; it is handed the table publisher, the workers' command queues and the
//! mempool, and nothing else of the process.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam::channel::{bounded, Sender};
use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};
use weft_config::node::{PodKind, PodRoute, PodSpec};
use weft_config::{Ipv4Net, MacAddr};

use super::error::{PodError, StateProblem};
use super::host::{ifindex, iflink, ip_in, run_ip};
use super::vhost::VhostIndex;
use super::{lock, TablePublisher};
use dataplane::dpdk::{Mempool, Port, PortConfig, PortId, VhostSocket};
use dataplane::tables::{Node, PodEntry};
use dataplane::worker::{PortKind, PortRx, PortTx, WorkerCommand, ETH_PORTS};

/// What `weftctl pod add` prints, and what weftd keeps in `state_dir/pods.json` to restore its pods after
/// a restart (same address, same MAC; the veth pairs of tap and veth pods are adopted, vhost clients
/// reconnect).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodInfo {
    pub name: String,
    pub kind: String,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    pub mac: String,
    pub mtu: u16,
    /// The tap interface (tap pods: its name in the pod's namespace) or the vhost-user socket path.
    pub iface: String,
    pub netns: Option<String>,
    /// The pod's weft port (none for a veth pod, which rides the host port).
    pub port_id: Option<u16>,
    #[serde(default)]
    pub vhost_client: bool,
    /// The runtime's container id and the interface name it asked for (pods attached through CNI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifname: Option<String>,
    /// The address belongs to the caller's IPAM (CNI): weftd does not release it.
    #[serde(default)]
    pub ip_reserved: bool,
    /// Routes in the pod's namespace, `dst` or `dst via gw` (tap pods; empty: the default route).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<String>,
}

impl PodInfo {
    fn is(&self, container_id: &str, ifname: &str) -> bool {
        self.container_id.as_deref() == Some(container_id) && self.ifname.as_deref() == Some(ifname)
    }

    /// The spec that attaches this pod again (a restore): same address, MAC and key.
    fn spec(&self) -> PodSpec {
        let routes = self.routes.iter().filter_map(|r| r.parse().ok()).collect();
        PodSpec {
            name: self.name.clone(),
            kind: self.kind.parse().unwrap_or(PodKind::Tap),
            ip: Some(self.ip),
            netns: self.netns.clone(),
            ifname: self.ifname.clone(),
            container_id: self.container_id.clone(),
            ip_reserved: self.ip_reserved,
            routes,
            vhost_client: self.vhost_client,
            mac: self.mac.parse().ok(),
        }
    }
}

/// weft's name for a container's interface: `c` and 11 hex digits of a hash of the key, salted until
/// it is free (FNV-1a: stable across restarts and releases).
fn container_pod_name(container_id: &str, ifname: &str, salt: u32) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in container_id.bytes().chain([b'/']).chain(ifname.bytes()).chain(salt.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("c{:011x}", h & 0x0fff_ffff_ffff)
}

pub(super) struct PodRuntime {
    pub info: PodInfo,
    pub port: PodPort,
}

/// What carries a pod's frames.
pub(super) enum PodPort {
    /// A DPDK port (tap): closed when dropped.
    Eth(Port),
    /// A vhost-user socket and the pod's logical port: dropping the socket destroys a connected device
    /// (after the workers let go of it).
    Vhost {
        #[allow(dead_code)] // held for its Drop: unregistering the socket
        socket: VhostSocket,
        port: PortId,
    },
    /// Nothing of weft's own (veth: the host port carries it).
    None,
}

impl PodPort {
    fn id(&self) -> Option<PortId> {
        match self {
            PodPort::Eth(p) => Some(p.id()),
            PodPort::Vhost { port, .. } => Some(*port),
            PodPort::None => None,
        }
    }
}

/// The pods of this node and everything about them.
pub struct PodRegistry {
    node: Node,
    state_dir: PathBuf,
    vhost_dir: PathBuf,
    tables: Arc<TablePublisher>,
    workers: Vec<Sender<WorkerCommand>>,
    pool: Arc<Mempool>,
    pods: Mutex<BTreeMap<String, PodRuntime>>,
    /// Pods of the last run whose restore failed: kept in the state file, retried, reported.
    pending: Mutex<BTreeMap<String, PodInfo>>,
    /// Pods deleted while a worker did not let go of their queues in time: their ports stay open
    /// (closing a port a worker polls would crash it) until the workers have stopped.
    detaching: Mutex<Vec<PodRuntime>>,
    /// Why the pod state file could not be used or written (reported on /readyz and in status).
    state_problem: Mutex<Option<StateProblem>>,
    next_vdev: AtomicU32,
    /// The host port's interface: each pod gets a host route through it.
    host_iface: Option<String>,
    /// host-local's store: weft's pods' addresses are reserved there too (one allocator per node).
    store: Option<super::ipam::HostLocalStore>,
    /// Free logical ports for vhost pods, and how many there are in all.
    vhost_ports: Mutex<Vec<PortId>>,
    max_vhost: usize,
    vhost_index: Arc<VhostIndex>,
    /// RPS for tap pods' interfaces (set before they move into the pod).
    steering: Option<super::rps::Steering>,
}

impl std::fmt::Debug for PodRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodRegistry").field("pods", &self.list().len()).field("pending", &self.pending()).finish()
    }
}

fn random_mac() -> Result<MacAddr, PodError> {
    let mut b = [0u8; 6];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .map_err(|cause| PodError::Io { what: "reading /dev/urandom for a MAC".into(), cause })?;
    Ok(MacAddr::local_from_bytes(b))
}

impl PodRegistry {
    pub(super) fn new(
        node: Node,
        settings: &weft_config::node::NodeSettings,
        tables: Arc<TablePublisher>,
        workers: Vec<Sender<WorkerCommand>>,
        pool: Arc<Mempool>,
        host_iface: Option<String>,
        vhost_index: Arc<VhostIndex>,
    ) -> PodRegistry {
        let max_vhost = settings.max_vhost_pods;
        let first = ETH_PORTS as u16;
        let vhost_ports = (first..first.saturating_add(max_vhost as u16)).rev().map(PortId).collect();
        PodRegistry {
            node,
            state_dir: settings.state_dir.clone(),
            vhost_dir: settings.vhost_dir.clone(),
            tables,
            workers,
            pool,
            pods: Mutex::new(BTreeMap::new()),
            pending: Mutex::new(BTreeMap::new()),
            detaching: Mutex::new(Vec::new()),
            state_problem: Mutex::new(None),
            next_vdev: AtomicU32::new(0),
            host_iface,
            store: settings.ipam_store.as_deref().map(super::ipam::HostLocalStore::new),
            vhost_ports: Mutex::new(vhost_ports),
            max_vhost,
            vhost_index,
            steering: None,
        }
    }

    /// The tap ports' RPS CPUs (None: RPS left as the kernel has it).
    pub fn steering(&self) -> Option<&super::rps::Steering> {
        self.steering.as_ref()
    }

    /// Steer the kernel's work for tap pods' interfaces (see [`super::rps`]).
    pub(super) fn with_steering(mut self, steering: Option<super::rps::Steering>) -> PodRegistry {
        self.steering = steering;
        self
    }

    /// Why the state file is not in use, if it is not.
    pub fn state_problem(&self) -> Option<StateProblem> {
        lock(&self.state_problem).clone()
    }

    /// The addresses weft's pods hold (pods whose restore is pending keep theirs); `wanted`, if given,
    /// checked to be a free pod address of this node.
    fn used_ips(&self, wanted: Option<Ipv4Addr>) -> Result<Vec<Ipv4Addr>, PodError> {
        let subnet = self.node.subnet;
        let mut used: Vec<Ipv4Addr> = lock(&self.pods).values().map(|r| r.info.ip).collect();
        used.extend(lock(&self.pending).values().map(|p| p.ip));
        if let Some(ip) = wanted {
            if !subnet.contains(ip) || ip == subnet.addr() || ip == subnet.last_addr() || ip == self.node.gateway_ip() {
                return Err(PodError::NotPodAddress { ip, subnet });
            }
            if used.contains(&ip) {
                return Err(PodError::AddressInUse(ip));
            }
        }
        Ok(used)
    }

    /// The next free pod address: from the second host address up, skipping the gateway and broadcast,
    /// and whatever host-local handed out (the shared store); reserved there for `pod`.
    fn allocate_ip(&self, pod: &str, wanted: Option<Ipv4Addr>) -> Result<Ipv4Addr, PodError> {
        let subnet = self.node.subnet;
        let used = self.used_ips(wanted)?;
        let first = u32::from(subnet.first_host()) + 1;
        let last = u32::from(subnet.last_addr());
        let free = (first..last).map(Ipv4Addr::from).filter(|a| !used.contains(a));
        let Some(store) = &self.store else {
            return match wanted {
                Some(ip) => Ok(ip),
                None => free.take(1).next().ok_or(PodError::SubnetFull(subnet)),
            };
        };
        let io = |cause| PodError::Io { what: format!("ipam_store {}", store.dir().display()), cause };
        match store.reserve(pod, wanted, free).map_err(io)? {
            Some(ip) => Ok(ip),
            None => Err(match wanted {
                Some(ip) => PodError::AddressInUse(ip),
                None => PodError::SubnetFull(subnet),
            }),
        }
    }

    /// Give a pod's address back to the shared store.
    fn release_ip(&self, pod: &str, ip: Ipv4Addr) {
        if let Some(store) = &self.store {
            if let Err(e) = store.release(pod, ip) {
                warn!(pod, ip = %ip, error = %e, "address not released in the ipam store");
            }
        }
    }

    fn taken(&self, name: &str) -> bool {
        lock(&self.pods).contains_key(name) || lock(&self.pending).contains_key(name)
    }

    /// The name of the pod attached (or pending) for a container's interface.
    pub fn find(&self, container_id: &str, ifname: &str) -> Option<String> {
        let attached = lock(&self.pods).values().find(|r| r.info.is(container_id, ifname)).map(|r| r.info.name.clone());
        attached.or_else(|| lock(&self.pending).values().find(|p| p.is(container_id, ifname)).map(|p| p.name.clone()))
    }

    pub fn add(&self, mut spec: PodSpec) -> Result<PodInfo, PodError> {
        if let Some(cid) = spec.container_id.as_deref() {
            let ifname = spec.ifname.get_or_insert_with(|| "eth0".to_owned()).clone();
            if let Some(name) = self.find(cid, &ifname) {
                return Err(PodError::Exists(name));
            }
            if spec.name.is_empty() {
                let mut salt = 0;
                spec.name = container_pod_name(cid, &ifname, salt);
                while self.taken(&spec.name) {
                    salt += 1;
                    spec.name = container_pod_name(cid, &ifname, salt);
                }
            }
        }
        if spec.name.is_empty() {
            return Err(PodError::NoName);
        }
        if self.taken(&spec.name) {
            return Err(PodError::Exists(spec.name));
        }
        let name = spec.name.clone();
        if spec.ip_reserved {
            // The caller's IPAM holds the address: check it, and leave the store to the caller.
            let ip = spec.ip.ok_or(PodError::ReservedWithoutIp)?;
            self.used_ips(Some(ip))?;
            return self.attach(spec, ip);
        }
        let ip = self.allocate_ip(&name, spec.ip)?;
        self.attach(spec, ip).inspect_err(|_| self.release_ip(&name, ip))
    }

    /// Detach a container's interface; `None` when there is none (CNI's DEL is idempotent).
    pub fn del_container(&self, container_id: &str, ifname: &str) -> Result<Option<PodInfo>, PodError> {
        match self.find(container_id, ifname) {
            Some(name) => self.del(&name).map(Some),
            None => Ok(None),
        }
    }

    /// CNI's CHECK: the container's pod is attached and, for a kernel pod, its veth pair's host end is
    /// there and its interface is in the namespace with the pod's address.
    pub fn check(&self, container_id: &str, ifname: &str) -> Result<PodInfo, PodError> {
        let none = || PodError::NoSuchContainer { container_id: container_id.into(), ifname: ifname.into() };
        let name = self.find(container_id, ifname).ok_or_else(none)?;
        let Some(info) = lock(&self.pods).get(&name).map(|r| r.info.clone()) else {
            return Err(PodError::NotRestored { name, why: "weftd restarted and could not attach it again".into() });
        };
        let broken = |why: String| PodError::Broken { name: info.name.clone(), why };
        // The veth pair's end on the host: routed (a veth pod), held by weft (a tap pod).
        let host_end = match info.kind.as_str() {
            "veth" => Some(format!("wv-{}", info.name)),
            "tap" => Some(format!("wd-{}", info.name)),
            _ => None,
        };
        if let Some(end) = host_end.filter(|e| !std::path::Path::new(&format!("/sys/class/net/{e}")).exists()) {
            return Err(broken(format!("its host end {end} is gone")));
        }
        if let (true, Some(ns)) = (info.kind != "vhost", info.netns.as_deref()) {
            let addrs = ip_in(ns, &["-o", "-4", "addr", "show", "dev", &info.iface]).map_err(broken)?;
            let want = format!(" {}/{} ", info.ip, info.prefix_len);
            if !addrs.contains(&want) {
                return Err(broken(format!("{} in {ns} does not hold {}/{}", info.iface, info.ip, info.prefix_len)));
            }
        }
        Ok(info)
    }

    /// Make the pod's port, configure it and hand it to the workers, at the address reserved for it.
    fn attach(&self, spec: PodSpec, ip: Ipv4Addr) -> Result<PodInfo, PodError> {
        let mac = match spec.mac {
            Some(m) => m,
            None => random_mac()?,
        };
        match spec.kind {
            PodKind::Tap => self.attach_tap(spec, ip, mac),
            PodKind::Vhost => self.attach_vhost(spec, ip, mac),
            PodKind::Veth => self.attach_veth(spec, ip, mac),
        }
    }

    /// What `pod add` prints and the state file keeps.
    fn pod_info(&self, spec: &PodSpec, ip: Ipv4Addr, mac: MacAddr, iface: String, port: Option<PortId>) -> PodInfo {
        PodInfo {
            name: spec.name.clone(),
            kind: spec.kind.to_string(),
            ip,
            prefix_len: self.node.subnet.prefix_len(),
            gateway: self.node.gateway_ip(),
            mac: mac.to_string(),
            mtu: self.node.pod_mtu(),
            iface,
            netns: spec.netns.clone(),
            port_id: port.map(|p| p.0),
            vhost_client: spec.vhost_client,
            container_id: spec.container_id.clone(),
            ifname: spec.ifname.clone(),
            ip_reserved: spec.ip_reserved,
            routes: spec.routes.iter().map(ToString::to_string).collect(),
        }
    }

    /// The pod is in the tables (frames for it go to `port`), routed on the host, registered, saved.
    fn publish(&self, info: &PodInfo, mac: MacAddr, port: PortId, device: PodPort) {
        let (name, ip) = (info.name.clone(), info.ip);
        self.tables.update(|t| t.pods.push(PodEntry { name: name.clone(), ip, mac, port }));
        if let Some(h) = &self.host_iface {
            super::host::route_pod(h, ip);
        }
        lock(&self.pods).insert(name, PodRuntime { info: info.clone(), port: device });
        self.save();
    }

    /// A tap pod: a kernel pod on a weft port of its own. A veth pair: `wt-<name>` goes into the pod's
    /// namespace, DPDK's `net_af_packet` holds `wd-<name>` with a queue pair per worker (one worker, round
    /// robin, polls its RX queues). weft reads what the pod sends from a ring in memory and writes a
    /// burst per `sendto`; the pod's end merges it (GRO in threaded NAPI, as the host port's `weft0`).
    /// It replaced DPDK's net_tap, a `readv` or `writev` per frame and at most 1500-byte frames. A pair
    /// an earlier weftd left (the pod kept its interface) is adopted.
    fn attach_tap(&self, spec: PodSpec, ip: Ipv4Addr, mac: MacAddr) -> Result<PodInfo, PodError> {
        let n = self.next_vdev.fetch_add(1, Ordering::Relaxed);
        let workers = self.workers.len();
        let mtu = self.node.pod_mtu();
        let (iface, dp) = (format!("wt-{}", spec.name), format!("wd-{}", spec.name));
        let inner = match (&spec.netns, &spec.ifname) {
            (Some(_), Some(i)) => i.clone(),
            _ => iface.clone(),
        };
        let adopted = self.tap_pair_left(&spec, &inner, &dp);
        if adopted {
            info!(pod = %spec.name, iface = dp, "adopting the veth pair an earlier weftd left");
        }
        let netns_err = |reason: String| PodError::Netns {
            iface: iface.clone(),
            netns: spec.netns.clone().unwrap_or_else(|| "(host)".into()),
            reason,
        };
        if !adopted {
            if ifindex(&dp).is_some() {
                let _ = run_ip(&["link", "del", &dp]); // ours by its name, and no pod's any more
            }
            super::host::veth_pair(&iface, &dp, workers, mtu).map_err(netns_err)?;
        }
        let undo = |e: PodError| {
            if !adopted {
                let _ = run_ip(&["link", "del", &dp]);
            }
            e
        };
        let dpdk = |what: &str| {
            let what = what.to_owned();
            move |cause| undo(PodError::Dpdk { what, cause })
        };
        let devargs = super::host::af_packet_devargs(&format!("net_af_packet_pod{n}"), &dp, workers, mtu);
        let port = Port::probe(&devargs).map_err(dpdk("creating the pod's port"))?;
        if usize::from(port.id().0) >= ETH_PORTS {
            return Err(undo(PodError::NoPortSlot { port: port.id().0, max: ETH_PORTS }));
        }
        let q = workers as u16;
        let (rx, tx) = port
            .configure(&PortConfig { rx_queues: q, tx_queues: q, ..PortConfig::default() }, self.pool.clone())
            .map_err(dpdk("configuring the pod port"))?;
        port.start().map_err(dpdk("starting the pod port"))?;
        if !adopted {
            // Up here first: NAPI can be made threaded only while the device is up; the setting moves
            // with it, and its threads are made again when the pod's namespace brings it up. RPS before the
            // move too: weftd sees the interface's sysfs only in its own namespace.
            if let Err(e) = run_ip(&["link", "set", &iface, "up"]).and_then(|_| super::host::threaded_napi(&iface)) {
                warn!(iface, error = %e, "could not make the tap pod's NAPI threaded: GRO will merge little");
            }
            if let Some(s) = &self.steering {
                super::rps::steer(&iface, s);
            }
            let before = super::host::napi_threads(&inner);
            if let Some(ns) = spec.netns.as_deref() {
                self.configure_in_netns(&spec, ns, &iface, ip, mac).map_err(undo)?;
            } else {
                let m = mac.to_string();
                run_ip(&["link", "set", &iface, "address", &m]).map_err(|r| undo(netns_err(r)))?;
            }
            super::host::pin_new_napi(&inner, &before, self.steering.as_ref());
        }
        let info =
            self.pod_info(&spec, ip, mac, if spec.netns.is_some() { inner } else { iface.clone() }, Some(port.id()));
        let owner = (n as usize) % workers;
        let mut rx = Some(rx);
        for (i, (w, txq)) in self.workers.iter().zip(tx).enumerate() {
            let rxq = if i == owner { rx.take().unwrap_or_default() } else { Vec::new() };
            // af_packet reads a ring in memory: polled every loop (no PortRx::Tap timer).
            let (tx, rx) = (PortTx::Eth(txq), rxq.into_iter().map(PortRx::Eth).collect());
            w.send(WorkerCommand::Attach { port: port.id(), tx, rx, kind: PortKind::Pod })
                .map_err(|_| PodError::WorkerGone(i))?;
        }
        self.publish(&info, mac, port.id(), PodPort::Eth(port));
        Ok(info)
    }

    /// Whether a tap pod's veth pair from an earlier weftd is still there and whole: `dp` in this
    /// namespace, its peer the pod's interface `inner` (a veth's iflink is its peer's ifindex).
    fn tap_pair_left(&self, spec: &PodSpec, inner: &str, dp: &str) -> bool {
        let (Some(own), Some(peer)) = (ifindex(dp), iflink(dp)) else { return false };
        if own == peer {
            return false; // not a veth
        }
        match spec.netns.as_deref() {
            Some(ns) => ip_in(ns, &["-o", "link", "show", "dev", inner])
                .is_ok_and(|l| l.starts_with(&format!("{peer}: {inner}@if{own}:"))),
            None => ifindex(inner) == Some(peer) && iflink(inner) == Some(own),
        }
    }

    /// A vhost-user pod through DPDK's vhost library: a logical port and a registered socket; its queues
    /// go to the workers when the pod's driver connects (see [`super::vhost`]).
    fn attach_vhost(&self, spec: PodSpec, ip: Ipv4Addr, mac: MacAddr) -> Result<PodInfo, PodError> {
        // Pods' sockets live apart from the API socket (whose directory is private to root); a
        // container's in a directory of its own, which its runtime can mount into it.
        let (dir, file) = self.vhost_place(&spec);
        std::fs::create_dir_all(&dir)
            .map_err(|cause| PodError::Io { what: format!("vhost_dir {}: cannot create it", dir.display()), cause })?;
        let sock = dir.join(format!("{file}.sock"));
        if !spec.vhost_client {
            let _ = std::fs::remove_file(&sock); // a stale socket of an earlier run
        }
        let port = lock(&self.vhost_ports).pop().ok_or(PodError::VhostFull(self.max_vhost))?;
        let path = sock.display().to_string();
        let info = self.pod_info(&spec, ip, mac, path.clone(), Some(port));
        let give_back = |e: PodError| {
            self.vhost_index.remove(&path);
            lock(&self.vhost_ports).push(port);
            e
        };
        if info.container_id.is_some() {
            self.write_vhost_card(&info).map_err(give_back)?;
        }
        let owner = self.next_vdev.fetch_add(1, Ordering::Relaxed) as usize % self.workers.len().max(1);
        self.vhost_index.insert(path.clone(), port, owner);
        let socket = VhostSocket::start(&sock, spec.vhost_client)
            .map_err(|cause| give_back(PodError::Dpdk { what: "starting the vhost-user socket".into(), cause }))?;
        self.publish(&info, mac, port, PodPort::Vhost { socket, port });
        Ok(info)
    }

    /// What a CNI plugin does for a pod's interface `iface` (in this namespace now): move it into `ns`,
    /// name it, give it the MAC, the pod MTU, the address and the routes. Its name in the pod.
    fn configure_in_netns(
        &self,
        spec: &PodSpec,
        ns: &str,
        iface: &str,
        ip: Ipv4Addr,
        mac: MacAddr,
    ) -> Result<String, PodError> {
        let addr = format!("{ip}/{}", self.node.subnet.prefix_len());
        let (m, t) = (mac.to_string(), self.node.pod_mtu().to_string());
        let gateway = self.node.gateway_ip();
        let inner = spec.ifname.clone().unwrap_or_else(|| iface.to_owned());
        let default = [PodRoute { dst: Ipv4Net::new(Ipv4Addr::UNSPECIFIED, 0).unwrap_or(self.node.subnet), gw: None }];
        let routes = if spec.routes.is_empty() { &default[..] } else { &spec.routes[..] };
        run_ip(&["link", "set", iface, "netns", ns])
            .and_then(|_| {
                if inner == iface {
                    Ok(String::new())
                } else {
                    ip_in(ns, &["link", "set", iface, "name", &inner])
                }
            })
            .and_then(|_| ip_in(ns, &["link", "set", &inner, "address", &m, "mtu", &t, "up"]))
            .and_then(|_| ip_in(ns, &["addr", "add", &addr, "dev", &inner]))
            .and_then(|_| ip_in(ns, &["link", "set", "lo", "up"]))
            .and_then(|_| {
                routes.iter().try_for_each(|r| {
                    let (dst, via) = (r.dst.to_string(), r.gw.unwrap_or(gateway).to_string());
                    ip_in(ns, &["route", "add", &dst, "via", &via, "dev", &inner]).map(drop)
                })
            })
            .map_err(|reason| PodError::Netns { iface: iface.to_owned(), netns: ns.to_owned(), reason })?;
        Ok(inner)
    }

    /// A veth pod: a veth pair, one end in the pod's namespace, the other (`wv-<name>`) routed on the
    /// host (a /32 route, proxy ARP for the pod's gateway and neighbours, forwarding on), so the pod's
    /// traffic enters and leaves weft through the host port. A host end left by an earlier run (weftd
    /// stopped; the pod kept its interface) is adopted.
    fn attach_veth(&self, spec: PodSpec, ip: Ipv4Addr, mac: MacAddr) -> Result<PodInfo, PodError> {
        if self.host_iface.is_none() {
            return Err(PodError::VethNeedsHostPort);
        }
        let ns = spec.netns.clone().ok_or(PodError::VethNeedsNetns)?;
        let outer = format!("wv-{}", spec.name);
        let netns_err = |reason: String| PodError::Netns { iface: outer.clone(), netns: ns.clone(), reason };
        let inner = match spec.ifname.clone() {
            Some(i) => i,
            None => format!("wt-{}", spec.name),
        };
        if !std::path::Path::new(&format!("/sys/class/net/{outer}")).exists() {
            let peer = format!("wp-{}", spec.name);
            let mtu = self.node.pod_mtu().to_string();
            run_ip(&["link", "add", &outer, "mtu", &mtu, "type", "veth", "peer", "name", &peer, "mtu", &mtu])
                .map_err(netns_err)?;
            if let Err(e) = self.configure_in_netns(&spec, &ns, &peer, ip, mac) {
                let _ = run_ip(&["link", "del", &outer]);
                return Err(e);
            }
        }
        let host_side = || -> Result<(), String> {
            // Proxy ARP answers at once, not after up to 0.8 s (the kernel's proxy_delay), as Calico has it.
            for (key, value, what) in [
                (format!("conf/{outer}/proxy_arp"), "1", "proxy ARP"),
                (format!("neigh/{outer}/proxy_delay"), "0", "proxy ARP delay"),
                ("ip_forward".to_owned(), "1", "forwarding"),
            ] {
                let path = format!("/proc/sys/net/ipv4/{key}");
                std::fs::write(&path, value).map_err(|e| format!("{what}: {path}: {e}"))?;
            }
            run_ip(&["link", "set", &outer, "up"])?;
            run_ip(&["route", "replace", &format!("{ip}/32"), "dev", &outer])
        };
        if let Err(reason) = host_side() {
            let _ = run_ip(&["link", "del", &outer]);
            return Err(netns_err(reason));
        }
        let info = self.pod_info(&spec, ip, mac, inner, None);
        lock(&self.pods).insert(spec.name, PodRuntime { info: info.clone(), port: PodPort::None });
        self.save();
        Ok(info)
    }

    pub fn del(&self, name: &str) -> Result<PodInfo, PodError> {
        if let Some(info) = lock(&self.pending).remove(name) {
            self.save(); // a pod whose restore failed: forgetting it is all there is to do
            if !info.ip_reserved {
                self.release_ip(name, info.ip);
            }
            return Ok(info);
        }
        let Some(rt) = lock(&self.pods).remove(name) else { return Err(PodError::NoSuchPod(name.to_owned())) };
        // Out of the tables, the host's routes and the state file before anything can fail (the pod does
        // not come back after a restart); its address goes back to the store.
        let port = rt.port.id();
        if port.is_some() {
            self.tables.update(|t| t.pods.retain(|p| p.name != name));
            if let Some(h) = &self.host_iface {
                super::host::unroute_pod(h, rt.info.ip);
            }
        }
        self.save();
        if !rt.info.ip_reserved {
            self.release_ip(name, rt.info.ip);
        }
        let port = match (&rt.port, port) {
            (PodPort::Vhost { port, .. }, _) => {
                // Unregistering the socket destroys a connected device once the workers let go of it;
                // then the logical port is free again.
                let port = *port;
                self.vhost_index.remove(&rt.info.iface);
                let info = rt.info.clone();
                drop(rt);
                lock(&self.vhost_ports).push(port);
                self.remove_vhost_files(&info);
                return Ok(info);
            }
            (PodPort::Eth(_), Some(port)) => port,
            _ => {
                // A veth pod: the pair (and the host route through it) goes with the host end.
                let _ = run_ip(&["link", "del", &format!("wv-{name}")]);
                return Ok(rt.info);
            }
        };
        let (done_tx, done_rx) = bounded(self.workers.len());
        for w in &self.workers {
            let _ = w.send_timeout(WorkerCommand::Detach { port, done: done_tx.clone() }, Duration::from_secs(1));
        }
        for _ in 0..self.workers.len() {
            if done_rx.recv_timeout(Duration::from_secs(5)).is_err() {
                // Closing a port that a worker still polls would crash it: keep the port open until the
                // workers let go of it (at the latest when they stop). The pod's veth pair can go (its
                // socket then sees nothing more).
                let _ = run_ip(&["link", "del", &format!("wd-{name}")]);
                lock(&self.detaching).push(rt);
                return Err(PodError::DetachTimeout { name: name.to_owned(), port });
            }
        }
        let info = rt.info.clone();
        // Last handle: stops and closes the port (its queues' mbufs go back to the pool); then the tap
        // pod's veth pair goes, both ends.
        drop(rt);
        if let Err(e) = run_ip(&["link", "del", &format!("wd-{name}")]) {
            warn!(pod = name, error = %e, "could not delete the pod's veth pair");
        }
        Ok(info)
    }

    /// Where a vhost pod's socket goes: `vhost_dir/<name>.sock`, or for a container
    /// `vhost_dir/<container id>/<ifname>.sock` beside `<ifname>.json` (its card).
    fn vhost_place(&self, spec: &PodSpec) -> (PathBuf, String) {
        match (spec.container_id.as_deref(), spec.ifname.as_deref()) {
            (Some(cid), Some(ifname)) => (self.vhost_dir.join(cid), ifname.to_owned()),
            _ => (self.vhost_dir.clone(), spec.name.clone()),
        }
    }

    /// The card a DPDK pod reads to configure its virtio-user port: socket, MAC, address, gateway, MTU.
    fn write_vhost_card(&self, info: &PodInfo) -> Result<(), PodError> {
        let card = std::path::Path::new(&info.iface).with_extension("json");
        let text = serde_json::json!({
            "socket": info.iface, "mode": if info.vhost_client { "server" } else { "client" },
            "mac": info.mac, "ip": format!("{}/{}", info.ip, info.prefix_len),
            "gateway": info.gateway, "mtu": info.mtu,
        });
        weft_config::state::write_atomic(&card, format!("{text:#}\n").as_bytes())
            .map_err(|cause| PodError::Io { what: format!("writing {}", card.display()), cause })
    }

    /// A vhost pod's socket (when weft made it), its card and its container's directory (when empty).
    fn remove_vhost_files(&self, info: &PodInfo) {
        if info.kind != "vhost" {
            return;
        }
        let sock = std::path::Path::new(&info.iface);
        if !info.vhost_client {
            let _ = std::fs::remove_file(sock);
        }
        if info.container_id.is_some() {
            let _ = std::fs::remove_file(sock.with_extension("json"));
            if let Some(dir) = sock.parent().filter(|d| *d != self.vhost_dir) {
                let _ = std::fs::remove_dir(dir); // only when empty: other interfaces may live there
            }
        }
    }

    fn state_file(&self) -> PathBuf {
        self.state_dir.join("pods.json")
    }

    /// Keep the pod list (attached pods and pods whose restore is pending) in the state directory,
    /// written atomically and durably, for restarts.
    fn save(&self) {
        let path = self.state_file();
        let mut all = self.list();
        all.extend(lock(&self.pending).values().cloned());
        let text = serde_json::to_string_pretty(&all).unwrap_or_default();
        match weft_config::state::write_atomic(&path, text.as_bytes()) {
            Ok(()) => {
                let mut p = lock(&self.state_problem);
                if matches!(*p, Some(StateProblem::Unwritable(_))) {
                    *p = None;
                }
            }
            Err(e) => {
                error!(path = %path.display(), error = %e, "saving pods");
                *lock(&self.state_problem) =
                    Some(StateProblem::Unwritable(format!("cannot write {}: {e}", path.display())));
            }
        }
    }

    /// Pods of a previous run (from the state directory) that are not attached yet: attach them again
    /// with their old address and MAC. A file that does not parse is moved aside and reported; a pod
    /// whose restore fails stays in the file and is tried again.
    pub fn restore(&self) {
        let path = self.state_file();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                error!(path = %path.display(), error = %e, "pods not restored");
                *lock(&self.state_problem) =
                    Some(StateProblem::Unreadable(format!("cannot read {}: {e}", path.display())));
                return;
            }
        };
        let saved: Vec<PodInfo> = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                let msg = match weft_config::state::move_aside(&path) {
                    Ok(to) => format!(
                        "{} did not parse ({e}); moved to {} for inspection; its pods were not restored",
                        path.display(),
                        to.display()
                    ),
                    Err(m) => format!("{} did not parse ({e}) and could not be moved aside ({m})", path.display()),
                };
                error!("{msg}");
                *lock(&self.state_problem) = Some(StateProblem::Unreadable(msg));
                return;
            }
        };
        for p in saved {
            if !lock(&self.pods).contains_key(&p.name) {
                lock(&self.pending).insert(p.name.clone(), p);
            }
        }
        self.retry_pending();
    }

    /// Try the pending restores again.
    pub fn retry_pending(&self) {
        let pending: Vec<PodInfo> = lock(&self.pending).values().cloned().collect();
        for p in pending {
            let gone = p.container_id.is_some()
                && p.netns.as_deref().is_some_and(|ns| ns.contains('/') && !std::path::Path::new(ns).exists());
            if gone {
                // The container's namespace is gone while weftd was away: its runtime has deleted it (or
                // will, and DEL is idempotent). Nothing to attach; the address is its IPAM's to free.
                warn!(pod = %p.name, container = ?p.container_id, netns = ?p.netns, "container gone: pod forgotten");
                lock(&self.pending).remove(&p.name);
                self.save();
                if !p.ip_reserved {
                    self.release_ip(&p.name, p.ip);
                }
                continue;
            }
            let spec = p.spec();
            // Out of the pending list while it is tried, so the address is free for it.
            lock(&self.pending).remove(&p.name);
            match self.add(spec) {
                Ok(info) => info!(pod = %info.name, ip = %info.ip, iface = %info.iface, "pod restored"),
                Err(e) => {
                    warn!(pod = %p.name, error = %e, "pod not restored yet; trying again in 5 s");
                    lock(&self.pending).insert(p.name.clone(), p);
                }
            }
        }
    }

    /// Names of the pods whose restore is pending.
    pub fn pending(&self) -> Vec<String> {
        lock(&self.pending).keys().cloned().collect()
    }

    pub fn list(&self) -> Vec<PodInfo> {
        lock(&self.pods).values().map(|r| r.info.clone()).collect()
    }

    /// At shutdown, after the workers stopped: close every pod port.
    pub(super) fn remove_all(&self) {
        lock(&self.detaching).clear();
        let all = std::mem::take(&mut *lock(&self.pods));
        for (_, rt) in all {
            self.remove_vhost_files(&rt.info);
        }
    }

    /// Each pod's port id, name and kind.
    pub fn ports(&self) -> Vec<(PortId, String, String)> {
        lock(&self.pods)
            .values()
            .filter_map(|r| Some((r.port.id()?, r.info.name.clone(), r.info.kind.clone())))
            .collect()
    }
}
