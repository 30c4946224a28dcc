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
use weft_config::node::{PodKind, PodSpec};
use weft_config::MacAddr;

use super::{lock, Shared};
use crate::dpdk::{Port, PortConfig, PortId};
use crate::tables::PodEntry;
use crate::worker::WorkerCommand;

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
    let used: Vec<Ipv4Addr> = shared.inputs().pods.iter().map(|p| p.ip).collect();
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
    if lock(&shared.pods).contains_key(&spec.name) {
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
            let dir = shared.settings.api_socket.parent().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
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
    shared.update(|t| t.pods.push(PodEntry { name: spec.name.clone(), ip, mac, port: port.id() }));
    lock(&shared.pods).insert(spec.name, PodRuntime { info: info.clone(), port });
    save(shared);
    Ok(info)
}

pub(super) fn del(shared: &Shared, name: &str) -> anyhow::Result<PodInfo> {
    let Some(rt) = lock(&shared.pods).remove(name) else { bail!("no pod named {name:?}") };
    let port: PortId = rt.port.id();
    shared.update(|t| t.pods.retain(|p| p.name != name));
    let (done_tx, done_rx) = bounded(shared.workers.len());
    for w in &shared.workers {
        let _ = w.send(WorkerCommand::Detach { port, done: done_tx.clone() });
    }
    for _ in 0..shared.workers.len() {
        done_rx.recv_timeout(Duration::from_secs(5)).map_err(|_| anyhow!("a worker did not release port {port}"))?;
    }
    let info = rt.info.clone();
    // Last handle: stops and closes the port (its queues' mbufs go back to the pool) and removes the
    // device (the tap interface, the vhost socket).
    drop(rt);
    if info.kind == "vhost" && !info.vhost_client {
        let _ = std::fs::remove_file(&info.iface);
    }
    save(shared);
    Ok(info)
}

fn state_file(shared: &Shared) -> PathBuf {
    shared.settings.state_dir.join("pods.json")
}

/// Keep the pod list in the state directory (written atomically), for restarts.
fn save(shared: &Shared) {
    let path = state_file(shared);
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(&list(shared)).unwrap_or_default();
    let written = std::fs::create_dir_all(&shared.settings.state_dir)
        .and_then(|_| std::fs::write(&tmp, text))
        .and_then(|_| std::fs::rename(&tmp, &path));
    if let Err(e) = written {
        eprintln!("weftd: saving pods to {}: {e}", path.display());
    }
}

/// Pods of a previous run (from the state directory) that are not attached yet: attach them again with
/// their old address and MAC.
pub(super) fn restore(shared: &Shared) {
    let path = state_file(shared);
    let Ok(text) = std::fs::read_to_string(&path) else { return };
    let saved: Vec<PodInfo> = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("weftd: {}: {e}; not restoring pods", path.display());
            return;
        }
    };
    for p in saved {
        if lock(&shared.pods).contains_key(&p.name) {
            continue;
        }
        let spec = PodSpec {
            name: p.name.clone(),
            kind: if p.kind == "vhost" { PodKind::Vhost } else { PodKind::Tap },
            ip: Some(p.ip),
            netns: p.netns.clone(),
            vhost_client: p.vhost_client,
            mac: p.mac.parse().ok(),
        };
        match add(shared, spec) {
            Ok(info) => eprintln!("weftd: pod {} restored at {} ({})", info.name, info.ip, info.iface),
            Err(e) => eprintln!("weftd: pod {} not restored: {e:#}", p.name),
        }
    }
}

pub(super) fn list(shared: &Shared) -> Vec<PodInfo> {
    lock(&shared.pods).values().map(|r| r.info.clone()).collect()
}

/// At shutdown, after the workers stopped: close every pod port.
pub(super) fn remove_all(shared: &Shared) {
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
