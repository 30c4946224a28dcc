//! The vhost-user devices a process serves, kept from the events of DPDK's vhost thread
//! ([`crate::dpdk::VhostEvent`]): a ready device's queues go to the workers (a queue onto the driver's
//! RX vrings for each, the driver's TX vrings to one owner), a destroyed device is taken back from every
//! worker before DPDK may free it. weftd's pods and the benchmarks' vhost-user pod port both go through
//! here, so a benchmark measures the path a pod takes.

use std::collections::HashMap;
use std::sync::Arc;

use crossbeam::channel::Sender;

use crate::dpdk::{Mempool, PortId, VhostEvent, VhostRx, VhostTx, VhostVid, VringMask};
use crate::worker::{PortKind, PortRx, PortTx, WorkerCommand};

/// What an event changed, for the caller to report.
#[derive(Debug, PartialEq, Eq)]
pub enum VhostChange {
    /// A device is ready and attached as `port`; `gone` lists the workers that had stopped (nothing was
    /// attached to them).
    Attached { vid: VhostVid, path: String, port: PortId, pairs: u16, gone: Vec<usize> },
    /// A device was taken back from the workers (DPDK was told it may go on).
    Detached { vid: VhostVid, path: String, port: PortId },
    /// A device is ready on a socket the caller does not know: left unattached.
    Unknown { vid: VhostVid, path: String },
    /// Nothing to report (a vring state, the end of a device that was never attached).
    Nothing,
}

/// The devices attached to the workers and the vring states reported so far.
#[derive(Debug)]
pub struct VhostDevices {
    workers: Vec<Sender<WorkerCommand>>,
    pool: Arc<Mempool>,
    attached: HashMap<VhostVid, PortId>,
    /// Vring states, which may come before their device is ready.
    masks: HashMap<VhostVid, Arc<VringMask>>,
}

impl VhostDevices {
    /// Devices for these workers, dequeuing into `pool`.
    pub fn new(workers: Vec<Sender<WorkerCommand>>, pool: Arc<Mempool>) -> VhostDevices {
        VhostDevices { workers, pool, attached: HashMap::new(), masks: HashMap::new() }
    }

    /// Act on one event. `port_of` names the logical port that serves a socket path and the worker
    /// that owns its driver's TX vrings (None: no pod has the socket).
    pub fn handle(&mut self, ev: VhostEvent, port_of: impl FnOnce(&str) -> Option<(PortId, usize)>) -> VhostChange {
        match ev {
            VhostEvent::VringState { vid, vring, enabled } => {
                self.masks.entry(vid).or_default().set(vring, enabled);
                VhostChange::Nothing
            }
            VhostEvent::Ready { vid, path, vrings } => {
                let Some((port, owner)) = port_of(&path) else { return VhostChange::Unknown { vid, path } };
                let mask = self.masks.entry(vid).or_default().clone();
                if !mask.any() {
                    // A driver that did not negotiate the protocol features never enables vrings one by
                    // one: its first pair is enabled (DPDK checks each vring itself anyway).
                    mask.set(0, true);
                }
                let pairs = (vrings / 2).max(1);
                let owner = owner % self.workers.len().max(1);
                let mut gone = Vec::new();
                for (i, w) in self.workers.iter().enumerate() {
                    let tx = PortTx::Vhost(VhostTx::new(vid, port, i, mask.clone()));
                    let rx = if i == owner {
                        vec![PortRx::Vhost(VhostRx::new(vid, port, pairs, mask.clone(), self.pool.clone()))]
                    } else {
                        Vec::new()
                    };
                    if w.send(WorkerCommand::Attach { port, tx, rx, kind: PortKind::Pod }).is_err() {
                        gone.push(i);
                    }
                }
                self.attached.insert(vid, port);
                VhostChange::Attached { vid, path, port, pairs, gone }
            }
            VhostEvent::Gone { vid, path, done } => {
                self.masks.remove(&vid);
                let change = match self.attached.remove(&vid) {
                    Some(port) => {
                        detach_everywhere(&self.workers, port);
                        VhostChange::Detached { vid, path, port }
                    }
                    None => VhostChange::Nothing,
                };
                // Only now may DPDK destroy the device: no worker holds its queues.
                let _ = done.send(());
                change
            }
        }
    }
}

/// Make every worker let go of `port` and wait until each has (a worker that is gone holds nothing).
fn detach_everywhere(workers: &[Sender<WorkerCommand>], port: PortId) {
    let (done_tx, done_rx) = crossbeam::channel::bounded(workers.len());
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
