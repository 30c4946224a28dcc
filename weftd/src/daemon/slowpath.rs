//! The slow path: resolves the underlay next hops the snapshot lists as unresolved by ARP (requests go
//! out through worker 0's uplink TX queue; replies come back from the workers as learned neighbours),
//! and republishes the tables when a neighbour appears or changes. Workers never wait for it.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam::channel::{Receiver, Sender};
use weft_config::MacAddr;

use super::TablePublisher;
use dataplane::packet::arp_request;
use dataplane::worker::WorkerCommand;

/// How often an unresolved next hop is asked for again.
const RETRY: Duration = Duration::from_millis(500);
/// How often a resolved next hop in use is asked for again, to notice a changed MAC.
const REFRESH: Duration = Duration::from_secs(30);

/// Runs until `stop`; sees only the tables and the queue to worker 0 (where its ARP requests leave).
pub(super) fn run(
    tables: &TablePublisher,
    to_uplink: &Sender<WorkerCommand>,
    learned: Receiver<(Ipv4Addr, MacAddr)>,
    stop: &AtomicBool,
) {
    let mut asked: HashMap<Ipv4Addr, Instant> = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        let mut changed = Vec::new();
        while let Ok((ip, mac)) = learned.recv_timeout(Duration::from_millis(50)) {
            changed.push((ip, mac));
            if changed.len() >= 64 {
                break;
            }
        }
        if !changed.is_empty() {
            let inputs = tables.inputs();
            let fresh: Vec<_> =
                changed.into_iter().filter(|(ip, mac)| inputs.neighbours.get(ip) != Some(mac)).collect();
            if !fresh.is_empty() {
                for (ip, mac) in &fresh {
                    tracing::info!(%ip, %mac, "underlay neighbour learned");
                }
                tables.update(|t| t.neighbours.extend(fresh.iter().copied()));
            }
        }
        let snap = tables.snapshot();
        let now = Instant::now();
        let wanted = snap
            .unresolved
            .iter()
            .map(|ip| (*ip, RETRY))
            .chain(snap.vteps.iter().filter(|v| v.path.is_resolved()).map(|v| (v.next_hop, REFRESH)));
        for (ip, every) in wanted {
            if asked.get(&ip).is_none_or(|t| now.duration_since(*t) >= every) {
                asked.insert(ip, now);
                let frame = arp_request(snap.node.uplink_mac, snap.node.public_ip, ip);
                let _ = to_uplink.try_send(WorkerCommand::SendOnUplink { frame });
            }
        }
    }
}
