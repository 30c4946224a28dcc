//! Pods: hot-plugged DPDK ports (net_tap, net_vhost), their addresses, and handing their queues to the
//! workers. Adding publishes the pod in a new snapshot after the workers hold its queues; deleting
//! publishes first (no new frames for it), then takes the queues back, then closes the port, which frees
//! its mbufs and removes the device. [`PodRegistry`] owns all of it: the pods, the restores still
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
use weft_config::node::{PodKind, PodSpec};
use weft_config::MacAddr;

use super::error::{PodError, StateProblem};
use super::host::run_ip;
use super::{lock, TablePublisher};
use dataplane::dpdk::{Mempool, Port, PortConfig, PortId};
use dataplane::tables::{Node, PodEntry};
use dataplane::worker::{PortKind, WorkerCommand};

/// What `weftctl pod add` prints, and what weftd keeps in `state_dir/pods.json` to restore its pods after
/// a restart (same address, same MAC; tap interfaces are made again, vhost clients reconnect).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodInfo {
    pub name: String,
    pub kind: String,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    pub mac: String,
    pub mtu: u16,
    /// The tap interface (tap pods) or the vhost-user socket path (vhost pods).
    pub iface: String,
    pub netns: Option<String>,
    pub port_id: u16,
    #[serde(default)]
    pub vhost_client: bool,
}

pub(super) struct PodRuntime {
    pub info: PodInfo,
    pub port: Port,
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
    ) -> PodRegistry {
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
        }
    }

    /// Why the state file is not in use, if it is not.
    pub fn state_problem(&self) -> Option<StateProblem> {
        lock(&self.state_problem).clone()
    }

    /// The next free pod address: from the second host address up, skipping the gateway and broadcast,
    /// and whatever host-local handed out (the shared store); reserved there for `pod`.
    fn allocate_ip(&self, pod: &str, wanted: Option<Ipv4Addr>) -> Result<Ipv4Addr, PodError> {
        let subnet = self.node.subnet;
        // Pods whose restore is pending keep their addresses.
        let mut used: Vec<Ipv4Addr> = self.tables.inputs().pods.iter().map(|p| p.ip).collect();
        used.extend(lock(&self.pending).values().map(|p| p.ip));
        if let Some(ip) = wanted {
            if !subnet.contains(ip) || ip == subnet.addr() || ip == subnet.last_addr() || ip == self.node.gateway_ip() {
                return Err(PodError::NotPodAddress { ip, subnet });
            }
            if used.contains(&ip) {
                return Err(PodError::AddressInUse(ip));
            }
        }
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

    pub fn add(&self, spec: PodSpec) -> Result<PodInfo, PodError> {
        if lock(&self.pods).contains_key(&spec.name) || lock(&self.pending).contains_key(&spec.name) {
            return Err(PodError::Exists(spec.name));
        }
        let name = spec.name.clone();
        let ip = self.allocate_ip(&name, spec.ip)?;
        self.attach(spec, ip).inspect_err(|_| self.release_ip(&name, ip))
    }

    /// Make the pod's port, configure it and hand it to the workers, at the address reserved for it.
    fn attach(&self, spec: PodSpec, ip: Ipv4Addr) -> Result<PodInfo, PodError> {
        let mac = match spec.mac {
            Some(m) => m,
            None => random_mac()?,
        };
        let n = self.next_vdev.fetch_add(1, Ordering::Relaxed);
        let workers = self.workers.len() as u16;
        let (devargs, iface) = match spec.kind {
            PodKind::Tap => {
                let iface = format!("wt-{}", spec.name);
                (format!("net_tap{n},iface={iface}"), iface)
            }
            PodKind::Vhost => {
                // Pods' sockets live apart from the API socket (whose directory is private to root).
                let dir = &self.vhost_dir;
                std::fs::create_dir_all(dir).map_err(|cause| PodError::Io {
                    what: format!("vhost_dir {}: cannot create it", dir.display()),
                    cause,
                })?;
                let sock = dir.join(format!("{}.sock", spec.name));
                if spec.vhost_client {
                    // The pod owns the socket; net_vhost's client retries until it can connect.
                    (
                        format!("net_vhost{n},iface={},queues={workers},client=1", sock.display()),
                        sock.display().to_string(),
                    )
                } else {
                    let _ = std::fs::remove_file(&sock);
                    (
                        format!("net_vhost{n},iface={},queues={workers},client=0", sock.display()),
                        sock.display().to_string(),
                    )
                }
            }
        };
        let dpdk = |what: &str| {
            let what = what.to_owned();
            move |cause| PodError::Dpdk { what, cause }
        };
        let port = Port::probe(&devargs).map_err(dpdk(&format!("creating the {} port", spec.kind)))?;
        if dataplane::worker::port_index(port.id()).is_none() {
            return Err(PodError::NoPortSlot { port: port.id().0, max: dataplane::worker::MAX_PORTS });
        }
        let (rx, tx) = port
            .configure(
                &PortConfig {
                    rx_queues: workers,
                    tx_queues: workers,
                    rx_desc: 512,
                    tx_desc: 512,
                    ..PortConfig::default()
                },
                self.pool.clone(),
            )
            .map_err(dpdk("configuring the pod port"))?;
        port.start().map_err(dpdk("starting the pod port"))?;
        let mtu = self.node.pod_mtu();
        let prefix_len = self.node.subnet.prefix_len();
        let gateway = self.node.gateway_ip();
        if let (PodKind::Tap, Some(ns)) = (spec.kind, spec.netns.as_deref()) {
            // What a CNI plugin does for a pod: move the interface in, then address and route it.
            let addr = format!("{ip}/{prefix_len}");
            let (m, t) = (mac.to_string(), mtu.to_string());
            run_ip(&["link", "set", &iface, "netns", ns])
                .and_then(|_| run_ip(&["-n", ns, "link", "set", &iface, "address", &m, "mtu", &t, "up"]))
                .and_then(|_| run_ip(&["-n", ns, "addr", "add", &addr, "dev", &iface]))
                .and_then(|_| run_ip(&["-n", ns, "link", "set", "lo", "up"]))
                .and_then(|_| {
                    run_ip(&["-n", ns, "route", "add", "default", "via", &gateway.to_string(), "dev", &iface])
                })
                .map_err(|reason| PodError::Netns { iface: iface.clone(), netns: ns.to_owned(), reason })?;
        }
        // Every worker gets a TX queue; one worker (round robin) polls all of the pod's RX queues.
        let owner = (n as usize) % self.workers.len();
        let mut rx = Some(rx);
        for (i, (w, txq)) in self.workers.iter().zip(tx).enumerate() {
            let rxq = if i == owner { rx.take().unwrap_or_default() } else { Vec::new() };
            w.send(WorkerCommand::Attach { port: port.id(), tx: txq, rx: rxq, kind: PortKind::Pod })
                .map_err(|_| PodError::WorkerGone(i))?;
        }
        let info = PodInfo {
            name: spec.name.clone(),
            kind: spec.kind.to_string(),
            ip,
            prefix_len,
            gateway,
            mac: mac.to_string(),
            mtu,
            iface,
            netns: spec.netns.clone(),
            port_id: port.id().0,
            vhost_client: spec.vhost_client,
        };
        self.tables.update(|t| t.pods.push(PodEntry { name: spec.name.clone(), ip, mac, port: port.id() }));
        if let Some(h) = &self.host_iface {
            super::host::route_pod(h, ip);
        }
        lock(&self.pods).insert(spec.name, PodRuntime { info: info.clone(), port });
        self.save();
        Ok(info)
    }

    pub fn del(&self, name: &str) -> Result<PodInfo, PodError> {
        if let Some(info) = lock(&self.pending).remove(name) {
            self.save(); // a pod whose restore failed: forgetting it is all there is to do
            self.release_ip(name, info.ip);
            return Ok(info);
        }
        let Some(rt) = lock(&self.pods).remove(name) else { return Err(PodError::NoSuchPod(name.to_owned())) };
        let port: PortId = rt.port.id();
        self.tables.update(|t| t.pods.retain(|p| p.name != name));
        if let Some(h) = &self.host_iface {
            super::host::unroute_pod(h, rt.info.ip);
        }
        // Durable before anything can fail: the pod does not come back after a restart.
        self.save();
        self.release_ip(name, rt.info.ip);
        let (done_tx, done_rx) = bounded(self.workers.len());
        for w in &self.workers {
            let _ = w.send_timeout(WorkerCommand::Detach { port, done: done_tx.clone() }, Duration::from_secs(1));
        }
        for _ in 0..self.workers.len() {
            if done_rx.recv_timeout(Duration::from_secs(5)).is_err() {
                // Closing a port that a worker still polls would crash it: keep the port open until the
                // workers let go of it (at the latest when they stop).
                lock(&self.detaching).push(rt);
                return Err(PodError::DetachTimeout { name: name.to_owned(), port });
            }
        }
        let info = rt.info.clone();
        // Last handle: stops and closes the port (its queues' mbufs go back to the pool) and removes the
        // device (the tap interface, the vhost socket).
        drop(rt);
        if info.kind == "vhost" && !info.vhost_client {
            let _ = std::fs::remove_file(&info.iface);
        }
        Ok(info)
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
            let spec = PodSpec {
                name: p.name.clone(),
                kind: if p.kind == "vhost" { PodKind::Vhost } else { PodKind::Tap },
                ip: Some(p.ip),
                netns: p.netns.clone(),
                vhost_client: p.vhost_client,
                mac: p.mac.parse().ok(),
            };
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
            if rt.info.kind == "vhost" && !rt.info.vhost_client {
                let _ = std::fs::remove_file(&rt.info.iface);
            }
        }
    }

    /// Each pod's port id, name and kind.
    pub fn ports(&self) -> Vec<(PortId, String, String)> {
        lock(&self.pods).values().map(|r| (r.port.id(), r.info.name.clone(), r.info.kind.clone())).collect()
    }
}
