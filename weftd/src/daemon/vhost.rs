//! vhost-user pods through DPDK's vhost library: each pod has a logical port (an id above the
//! ethdevs', see [`dataplane::worker::ETH_PORTS`]) and a registered socket. When its driver connects,
//! the device's queues go to the workers (a TX vring for each, the driver's TX vrings to the pod's
//! owner); when DPDK destroys the device, the workers let go of it before DPDK may free it.
//!
//! The events come from DPDK's vhost thread through a channel to one thread here, which needs no lock
//! that the pod registry holds while it unregisters a socket (unregistering destroys a connected device
//! and waits for this thread).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crossbeam::channel::{bounded, Receiver, Sender};
use tracing::{info, warn};

use super::lock;
use dataplane::dpdk::{Mempool, PortId, VhostEvent, VhostRx, VhostTx, VhostVid, VringMask};
use dataplane::worker::{PortKind, PortRx, PortTx, WorkerCommand};

/// Which logical port serves a socket path, and which worker polls the pod's driver-TX vrings.
#[derive(Debug, Default)]
pub struct VhostIndex {
    by_path: Mutex<HashMap<String, (PortId, usize)>>,
}

impl VhostIndex {
    pub fn insert(&self, path: String, port: PortId, owner: usize) {
        lock(&self.by_path).insert(path, (port, owner));
    }

    pub fn remove(&self, path: &str) {
        lock(&self.by_path).remove(path);
    }

    fn get(&self, path: &str) -> Option<(PortId, usize)> {
        lock(&self.by_path).get(path).copied()
    }
}

/// A connected device, as the handler knows it.
struct Device {
    port: PortId,
    mask: Arc<VringMask>,
}

/// Take vhost events until the channel closes: attach ready devices to the workers, detach destroyed
/// ones (and only then let DPDK go on), track the vrings the driver enabled.
pub fn handle_events(
    events: Receiver<VhostEvent>,
    index: Arc<VhostIndex>,
    workers: Vec<Sender<WorkerCommand>>,
    pool: Arc<Mempool>,
) {
    let mut devices: HashMap<VhostVid, Device> = HashMap::new();
    let mut masks: HashMap<VhostVid, Arc<VringMask>> = HashMap::new();
    for ev in events {
        match ev {
            VhostEvent::VringState { vid, vring, enabled } => {
                // Vring states may come before the device is ready: keep them for it.
                masks.entry(vid).or_default().set(vring, enabled);
            }
            VhostEvent::Ready { vid, path, vrings } => {
                let Some((port, owner)) = index.get(&path) else {
                    warn!(path, vid = vid.0, "vhost device for a socket no pod has: left unattached");
                    continue;
                };
                let mask = masks.entry(vid).or_default().clone();
                if !mask.any() {
                    // A driver that did not negotiate the protocol features never enables vrings one by
                    // one: its first pair is enabled (DPDK checks each vring itself anyway).
                    mask.set(0, true);
                }
                let pairs = (vrings / 2).max(1);
                for (i, w) in workers.iter().enumerate() {
                    let tx = PortTx::Vhost(VhostTx::new(vid, port, i, mask.clone()));
                    let rx = if i == owner % workers.len().max(1) {
                        vec![PortRx::Vhost(VhostRx::new(vid, port, pairs, mask.clone(), pool.clone()))]
                    } else {
                        Vec::new()
                    };
                    if w.send(WorkerCommand::Attach { port, tx, rx, kind: PortKind::Pod }).is_err() {
                        warn!(worker = i, "worker gone: vhost device not attached to it");
                    }
                }
                info!(path, vid = vid.0, port = port.0, pairs, "vhost-user driver connected");
                devices.insert(vid, Device { port, mask });
            }
            VhostEvent::Gone { vid, path, done } => {
                masks.remove(&vid);
                if let Some(d) = devices.remove(&vid) {
                    detach(&workers, d.port);
                    drop(d.mask);
                    info!(path, vid = vid.0, port = d.port.0, "vhost-user driver gone");
                }
                let _ = done.send(());
            }
        }
    }
}

/// Make every worker let go of `port` and wait until each has (a worker that is gone holds nothing).
fn detach(workers: &[Sender<WorkerCommand>], port: PortId) {
    let (done_tx, done_rx) = bounded(workers.len());
    let mut asked = 0;
    for w in workers {
        if w.send(WorkerCommand::Detach { port, done: done_tx.clone() }).is_ok() {
            asked += 1;
        }
    }
    drop(done_tx);
    for _ in 0..asked {
        // Each worker answers between bursts; a stopped worker drops its command (and our sender).
        if done_rx.recv().is_err() {
            break;
        }
    }
}
