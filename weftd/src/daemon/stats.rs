//! The one reader of the workers' counters. Workers are the only writers (single-writer relaxed
//! atomics, see `dataplane::worker::WorkerCounters`); the API's `status` and the Prometheus collector both
//! take a [`Reading`] here instead of walking the arrays each their own way.

use std::sync::atomic::Ordering;

use dataplane::dpdk::PortId;
use dataplane::packet::DropReason;
use dataplane::worker::WorkerCounters;

use super::Shared;

/// Packets and bytes of one port, one worker (or summed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Counts) {
        self.rx_packets += o.rx_packets;
        self.rx_bytes += o.rx_bytes;
        self.tx_packets += o.tx_packets;
        self.tx_bytes += o.tx_bytes;
    }
}

/// One port: who it is and its counts per worker (= per queue).
#[derive(Debug, Clone)]
pub struct PortRow {
    pub id: PortId,
    pub name: String,
    pub kind: String,
    pub per_worker: Vec<Counts>,
}

impl PortRow {
    pub fn total(&self) -> Counts {
        let mut t = Counts::default();
        for c in &self.per_worker {
            t += *c;
        }
        t
    }
}

/// One worker's own totals.
#[derive(Debug, Clone)]
pub struct WorkerRow {
    pub loops: u64,
    pub generation: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
    /// Indexed by `DropReason as usize`.
    pub drops: Vec<u64>,
    pub busy_cycles: u64,
    pub idle_cycles: u64,
    pub busy_loops: u64,
}

impl WorkerRow {
    /// Share of the worker's time spent on loops that found packets, in percent.
    pub fn busy_percent(&self) -> f64 {
        let all = self.busy_cycles + self.idle_cycles;
        if all == 0 {
            0.0
        } else {
            100.0 * self.busy_cycles as f64 / all as f64
        }
    }

    /// Busy cycles per packet received (OVS's "avg processing cycles per packet"); None before any.
    pub fn cycles_per_packet(&self) -> Option<f64> {
        (self.rx_packets > 0).then(|| self.busy_cycles as f64 / self.rx_packets as f64)
    }

    /// Packets per loop that found any (VPP's vectors per call); None before any.
    pub fn packets_per_busy_loop(&self) -> Option<f64> {
        (self.busy_loops > 0).then(|| self.rx_packets as f64 / self.busy_loops as f64)
    }
}

/// The counters at one moment.
#[derive(Debug, Clone)]
pub struct Reading {
    pub ports: Vec<PortRow>,
    pub workers: Vec<WorkerRow>,
}

impl Reading {
    /// Drops of one reason over all workers.
    pub fn drops(&self, r: DropReason) -> u64 {
        self.workers.iter().map(|w| w.drops[r as usize]).sum()
    }
}

fn load(a: &std::sync::atomic::AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

fn counts(c: &WorkerCounters, i: usize) -> Counts {
    Counts {
        rx_packets: load(&c.rx_packets[i]),
        rx_bytes: load(&c.rx_bytes[i]),
        tx_packets: load(&c.tx_packets[i]),
        tx_bytes: load(&c.tx_bytes[i]),
    }
}

/// Read every counter: the uplink, the host port and each pod port, and each worker.
pub fn read(shared: &Shared) -> Reading {
    let mut ports = vec![(shared.uplink.id(), "uplink".to_string(), "uplink".to_string())];
    if let Some(h) = &shared.host {
        ports.push((h.port.id(), h.name.clone(), "host".to_string()));
    }
    ports.extend(shared.pods.ports());
    let ports = ports
        .into_iter()
        .filter_map(|(id, name, kind)| {
            let i = shared.counters.first()?.index(id)?;
            Some(PortRow { id, name, kind, per_worker: shared.counters.iter().map(|c| counts(c, i)).collect() })
        })
        .collect();
    let workers = shared
        .counters
        .iter()
        .map(|c| WorkerRow {
            loops: load(&c.loops),
            generation: load(&c.generation),
            rx_packets: c.rx_packets.iter().map(load).sum(),
            tx_packets: c.tx_packets.iter().map(load).sum(),
            drops: c.drops.iter().map(load).collect(),
            busy_cycles: load(&c.busy_cycles),
            idle_cycles: load(&c.idle_cycles),
            busy_loops: load(&c.busy_loops),
        })
        .collect();
    Reading { ports, workers }
}

/// Frames sent to each peer over all workers, by the peer's slot (see `dataplane::worker::peer_slots`).
pub fn peer_tx(shared: &Shared, slot: usize) -> Option<u64> {
    shared.counters.iter().map(|c| c.peer_tx.get(slot).map(load)).sum()
}
