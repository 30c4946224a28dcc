//! vhost-user pods through DPDK's vhost library: each pod has a logical port (an id above the
//! ethdevs', see [`dataplane::worker::ETH_PORTS`]) and a registered socket. When its driver connects,
//! the device's queues go to the workers (a TX vring for each, the driver's TX vrings to the pod's
//! owner); when DPDK destroys the device, the workers let go of it before DPDK may free it.
//!
//! The events come from DPDK's vhost thread through a channel to one thread here, which needs no lock
//! that the pod registry holds while it unregisters a socket (unregistering destroys a connected device
//! and waits for this thread). What an event does to the workers is [`VhostDevices`]'s (the dataplane
//! crate's, which the benchmarks share); this module knows which pod a socket is and logs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crossbeam::channel::{Receiver, Sender};
use tracing::{info, warn};

use super::lock;
use dataplane::dpdk::{Mempool, PortId, VhostEvent};
use dataplane::vhost_devices::{VhostChange, VhostDevices};
use dataplane::worker::WorkerCommand;

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

/// Take vhost events until the channel closes: attach ready devices to the workers, detach destroyed
/// ones (and only then let DPDK go on), track the vrings the driver enabled.
pub fn handle_events(
    events: Receiver<VhostEvent>,
    index: Arc<VhostIndex>,
    workers: Vec<Sender<WorkerCommand>>,
    pool: Arc<Mempool>,
) {
    let mut devices = VhostDevices::new(workers, pool);
    for ev in events {
        match devices.handle(ev, |path| index.get(path)) {
            VhostChange::Attached { vid, path, port, pairs, gone } => {
                for i in gone {
                    warn!(worker = i, "worker gone: vhost device not attached to it");
                }
                info!(path, vid = vid.0, port = port.0, pairs, "vhost-user driver connected");
            }
            VhostChange::Detached { vid, path, port } => {
                info!(path, vid = vid.0, port = port.0, "vhost-user driver gone");
            }
            VhostChange::Unknown { vid, path } => {
                warn!(path, vid = vid.0, "vhost device for a socket no pod has: left unattached");
            }
            VhostChange::Nothing => {}
        }
    }
}
