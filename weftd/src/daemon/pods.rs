//! Pods: hot-plugged DPDK ports (net_tap, net_vhost), their addresses, and handing their queues to the
//! workers. Adding publishes the pod in a new snapshot after the workers hold its queues; deleting
//! publishes first (no new frames for it), then takes the queues back, then closes the port, which frees
//! its mbufs and removes the device.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use crossbeam::channel::bounded;
use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};
use weft_config::node::{PodKind, PodSpec};
use weft_config::MacAddr;

use super::{lock, Shared};
use dataplane::dpdk::{Port, PortConfig, PortId};
use dataplane::tables::PodEntry;
use dataplane::worker::WorkerCommand;

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

fn random_mac() -> anyhow::Result<MacAddr> {
    let mut b = [0u8; 6];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut b)?;
    Ok(MacAddr::local_from_bytes(b))
}

fn ip_cmd(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip").args(args).output().context("running ip (apt-get install iproute2)")?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// The next free pod address: from the second host address up, skipping the gateway and broadcast.
fn allocate_ip(shared: &Shared, wanted: Option<Ipv4Addr>) -> anyhow::Result<Ipv4Addr> {
    let subnet = shared.node.subnet;
    // Pods whose restore is pending keep their addresses.
    let mut used: Vec<Ipv4Addr> = shared.tables.inputs().pods.iter().map(|p| p.ip).collect();
    used.extend(lock(&shared.pending).values().map(|p| p.ip));
    if let Some(ip) = wanted {
        if !subnet.contains(ip) || ip == subnet.addr() || ip == subnet.last_addr() || ip == shared.node.gateway_ip() {
            bail!(
                "ip: {ip} is not a pod address of this node's subnet {subnet} (not the network, gateway or broadcast)"
            );
        }
        if used.contains(&ip) {
            bail!("ip: {ip} is already used by another pod");
        }
        return Ok(ip);
    }
    let first = u32::from(subnet.first_host()) + 1;
    let last = u32::from(subnet.last_addr());
    (first..last)
        .map(Ipv4Addr::from)
        .find(|a| !used.contains(a))
        .ok_or_else(|| anyhow!("no free address left in {subnet}"))
}

pub(super) fn add(shared: &Shared, spec: PodSpec) -> anyhow::Result<PodInfo> {
    if lock(&shared.pods).contains_key(&spec.name) || lock(&shared.pending).contains_key(&spec.name) {
        bail!("pod {:?} exists already", spec.name);
    }
    let ip = allocate_ip(shared, spec.ip)?;
    let mac = match spec.mac {
        Some(m) => m,
        None => random_mac()?,
    };
    let n = shared.next_vdev.fetch_add(1, Ordering::Relaxed);
    let workers = shared.workers.len() as u16;
    let (devargs, iface) = match spec.kind {
        PodKind::Tap => {
            let iface = format!("wt-{}", spec.name);
            (format!("net_tap{n},iface={iface}"), iface)
        }
        PodKind::Vhost => {
            // Pods' sockets live apart from the API socket (whose directory is private to root).
            let dir = &shared.settings.vhost_dir;
            std::fs::create_dir_all(dir).with_context(|| format!("vhost_dir {}: cannot create it", dir.display()))?;
            let sock = dir.join(format!("{}.sock", spec.name));
            if spec.vhost_client {
                // The pod owns the socket; net_vhost's client retries until it can connect.
                (format!("net_vhost{n},iface={},queues={workers},client=1", sock.display()), sock.display().to_string())
            } else {
                let _ = std::fs::remove_file(&sock);
                (format!("net_vhost{n},iface={},queues={workers},client=0", sock.display()), sock.display().to_string())
            }
        }
    };
    let port = Port::probe(&devargs).with_context(|| format!("creating the {} port", spec.kind))?;
    if dataplane::worker::port_index(port.id()).is_none() {
        bail!(
            "DPDK gave the pod port id {} but the workers hold {} ports: this node has as many pods as it can take",
            port.id().0,
            dataplane::worker::MAX_PORTS
        );
    }
    let (rx, tx) = port
        .configure(
            &PortConfig { rx_queues: workers, tx_queues: workers, rx_desc: 512, tx_desc: 512, ..PortConfig::default() },
            shared.pool.clone(),
        )
        .context("configuring the pod port")?;
    port.start().context("starting the pod port")?;
    let mtu = shared.node.pod_mtu();
    let prefix_len = shared.node.subnet.prefix_len();
    let gateway = shared.node.gateway_ip();
    if let (PodKind::Tap, Some(ns)) = (spec.kind, spec.netns.as_deref()) {
        // What a CNI plugin does for a pod: move the interface in, then address and route it.
        let addr = format!("{ip}/{prefix_len}");
        let (m, t) = (mac.to_string(), mtu.to_string());
        ip_cmd(&["link", "set", &iface, "netns", ns])
            .and_then(|_| ip_cmd(&["-n", ns, "link", "set", &iface, "address", &m, "mtu", &t, "up"]))
            .and_then(|_| ip_cmd(&["-n", ns, "addr", "add", &addr, "dev", &iface]))
            .and_then(|_| ip_cmd(&["-n", ns, "link", "set", "lo", "up"]))
            .and_then(|_| ip_cmd(&["-n", ns, "route", "add", "default", "via", &gateway.to_string(), "dev", &iface]))
            .with_context(|| format!("setting up {iface} in netns {ns}"))?;
    }
    // Every worker gets a TX queue; one worker (round robin) polls all of the pod's RX queues.
    let owner = (n as usize) % shared.workers.len();
    let mut rx = Some(rx);
    for (i, (w, txq)) in shared.workers.iter().zip(tx).enumerate() {
        let rxq = if i == owner { rx.take().unwrap_or_default() } else { Vec::new() };
        w.send(WorkerCommand::Attach { port: port.id(), tx: txq, rx: rxq })
            .map_err(|_| anyhow!("worker {i} is gone"))?;
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
    shared.tables.update(|t| t.pods.push(PodEntry { name: spec.name.clone(), ip, mac, port: port.id() }));
    lock(&shared.pods).insert(spec.name, PodRuntime { info: info.clone(), port });
    save(shared);
    Ok(info)
}

pub(super) fn del(shared: &Shared, name: &str) -> anyhow::Result<PodInfo> {
    if let Some(info) = lock(&shared.pending).remove(name) {
        save(shared); // a pod whose restore failed: forgetting it is all there is to do
        return Ok(info);
    }
    let Some(rt) = lock(&shared.pods).remove(name) else { bail!("no pod named {name:?}") };
    let port: PortId = rt.port.id();
    shared.tables.update(|t| t.pods.retain(|p| p.name != name));
    // Durable before anything can fail: the pod does not come back after a restart.
    save(shared);
    let (done_tx, done_rx) = bounded(shared.workers.len());
    for w in &shared.workers {
        let _ = w.send_timeout(WorkerCommand::Detach { port, done: done_tx.clone() }, Duration::from_secs(1));
    }
    for _ in 0..shared.workers.len() {
        if done_rx.recv_timeout(Duration::from_secs(5)).is_err() {
            // Closing a port that a worker still polls would crash it: keep the port open until the
            // workers let go of it (at the latest when they stop).
            lock(&shared.detaching).push(rt);
            bail!("pod {name:?} is out of the tables and the state file, but a worker did not release port {port} within 5 s; the port is closed when it does (at the latest at shutdown)");
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

fn state_file(shared: &Shared) -> PathBuf {
    shared.settings.state_dir.join("pods.json")
}

/// Keep the pod list (attached pods and pods whose restore is pending) in the state directory,
/// written atomically and durably, for restarts.
fn save(shared: &Shared) {
    let path = state_file(shared);
    let mut all = list(shared);
    all.extend(lock(&shared.pending).values().cloned());
    let text = serde_json::to_string_pretty(&all).unwrap_or_default();
    match weft_config::state::write_atomic(&path, text.as_bytes()) {
        Ok(()) => {
            let mut p = lock(&shared.state_problem);
            if p.as_deref().is_some_and(|s| s.starts_with("cannot write")) {
                *p = None;
            }
        }
        Err(e) => {
            error!(path = %path.display(), error = %e, "saving pods");
            *lock(&shared.state_problem) = Some(format!("cannot write {}: {e}", path.display()));
        }
    }
}

/// Pods of a previous run (from the state directory) that are not attached yet: attach them again with
/// their old address and MAC. A file that does not parse is moved aside and reported; a pod whose
/// restore fails stays in the file and is tried again.
pub(super) fn restore(shared: &Shared) {
    let path = state_file(shared);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            error!(path = %path.display(), error = %e, "pods not restored");
            *lock(&shared.state_problem) = Some(format!("cannot read {}: {e}", path.display()));
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
            *lock(&shared.state_problem) = Some(msg);
            return;
        }
    };
    for p in saved {
        if !lock(&shared.pods).contains_key(&p.name) {
            lock(&shared.pending).insert(p.name.clone(), p);
        }
    }
    retry_pending(shared);
}

/// Try the pending restores again.
pub(super) fn retry_pending(shared: &Shared) {
    let pending: Vec<PodInfo> = lock(&shared.pending).values().cloned().collect();
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
        lock(&shared.pending).remove(&p.name);
        match add(shared, spec) {
            Ok(info) => info!(pod = %info.name, ip = %info.ip, iface = %info.iface, "pod restored"),
            Err(e) => {
                warn!(pod = %p.name, error = format!("{e:#}"), "pod not restored yet; trying again in 5 s");
                lock(&shared.pending).insert(p.name.clone(), p);
            }
        }
    }
}

/// Names of the pods whose restore is pending.
pub(super) fn pending(shared: &Shared) -> Vec<String> {
    lock(&shared.pending).keys().cloned().collect()
}

pub(super) fn list(shared: &Shared) -> Vec<PodInfo> {
    lock(&shared.pods).values().map(|r| r.info.clone()).collect()
}

/// At shutdown, after the workers stopped: close every pod port.
pub(super) fn remove_all(shared: &Shared) {
    lock(&shared.detaching).clear();
    let all = std::mem::take(&mut *lock(&shared.pods));
    for (_, rt) in all {
        if rt.info.kind == "vhost" && !rt.info.vhost_client {
            let _ = std::fs::remove_file(&rt.info.iface);
        }
    }
}

pub(super) fn ports(shared: &Shared) -> Vec<(PortId, String, String)> {
    lock(&shared.pods).values().map(|r| (r.port.id(), r.info.name.clone(), r.info.kind.clone())).collect()
}
