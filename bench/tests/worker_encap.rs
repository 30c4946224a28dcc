//! weft's real worker encapsulating pod frames on `net_ring` ports (root, hugepages): frames from a pod
//! port's three RX queues, over several bursts, must leave on the uplink in the order the worker takes
//! them (a burst of each queue a loop) and byte for byte as the packet path
//! writes them, each with the outer IPv4 identification one more than the frame's before it (across
//! bursts too), and every frame must be counted against the peer it went to, by the time the worker
//! goes idle, also where the route cache replaced that peer's route. (In `weft-bench`'s tests
//! because the frames and tables are the benchmarks' own; a binary of its own because a process
//! initializes the EAL once.)
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::channel::bounded;
use crossbeam::utils::CachePadded;
use dataplane::dpdk::{Burst, Eal, Mempool, Port, PortConfig};
use dataplane::packet::{process_pod_cached, PacketBuf, VecBuf, Verdict};
use dataplane::tables::{PathCache, SnapshotCell};
use dataplane::worker::{
    peer_slots, port_slots, Backoff, PeerNumbering, PortKind, PortRx, PortTx, Worker, WorkerCommand, WorkerCounters,
};
use testkit::eal::{check_dpdk_preconditions, vdev_eal_args};
use weft_bench::frames;

mod rings;
use rings::send_all;

/// Frames sent: 200 on each RX queue, 6 full bursts and a part of one, each frame of its own flow and
/// to a peer of its own. Far more peers than the worker's route cache has slots (256), so nearly every
/// frame's route replaces one with frames counted in the cache: 96 in a loop that takes a burst of
/// each queue, more than the cache holds (two bursts' worth) unless the worker drains it after every
/// burst.
const FRAMES: usize = 600;
const QUEUES: usize = 3;
const PEERS: u32 = 2000;

#[test]
fn worker_encapsulates_in_order_with_an_ident_per_frame_and_counts_each_peer() {
    if let Err(e) = check_dpdk_preconditions(64) {
        panic!("{e}");
    }
    let pid = std::process::id();
    // ring0: the uplink's RX (nothing comes); ring1: the pod port, whose TX queues 1-3 (each looped back
    // to its RX queue, which the worker polls) the test sends on; ring2: the uplink's TX, read back here.
    let vdevs = ["net_ring0", "net_ring1", "net_ring2"].map(String::from);
    let eal = Eal::init(&vdev_eal_args(&format!("weft-worker-encap-{pid}"), "0", &vdevs)).unwrap();
    eal.clean_up_at_exit().unwrap();
    let pool = Arc::new(Mempool::new("encap_pool", 1023, 0).unwrap());
    let ports: Vec<Port> = vdevs.iter().map(|n| Port::by_name(n).unwrap()).collect();
    let n = 1 + QUEUES as u16;
    let (one, two) = (PortConfig::default(), PortConfig { rx_queues: n, tx_queues: n, ..PortConfig::default() });
    let mut queues: Vec<_> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let q = p.configure(if i == 1 { &two } else { &one }, pool.clone()).unwrap();
            p.start().unwrap();
            q
        })
        .collect();
    let pod = ports[1].id();

    let inputs = frames::inputs(PEERS, pod.0);
    let snap = inputs.build(1);
    let numbering = PeerNumbering::new(inputs.node.network, inputs.node.subnet_len);
    let sent: Vec<Vec<u8>> = frames::encap_frames(PEERS, FRAMES as u32, 64);
    let per_queue: Vec<&[Vec<u8>]> = sent.chunks(FRAMES / QUEUES).collect();
    // The order the worker takes them in: a burst of each queue in turn.
    let taken: Vec<&Vec<u8>> = (0..FRAMES / QUEUES)
        .step_by(32)
        .flat_map(|at| per_queue.iter().flat_map(move |q| &q[at..(at + 32).min(q.len())]))
        .collect();
    assert_eq!(taken.len(), FRAMES);
    // What the packet path makes of each, with the identification the worker gives it: worker 0 starts
    // at 0 and counts one up before each frame. And the frames each peer gets.
    let mut want = Vec::new();
    let mut want_peers = std::collections::BTreeMap::<usize, u64>::new();
    let mut cache = PathCache::default();
    for (i, f) in taken.into_iter().enumerate() {
        let mut b = VecBuf::new(f);
        let mut c = snap.cached(&mut cache);
        let v = process_pod_cached(&mut b, pod, (i + 1) as u16, c.reborrow());
        assert_eq!(v, Verdict::ToUplink, "frame {i}");
        want.push(b.data().to_vec());
        *want_peers.entry(numbering.slot(cache.last_route().unwrap())).or_default() += 1;
    }
    assert_eq!(want_peers.len(), FRAMES, "a peer of its own for each frame");

    let counters = Arc::new(CachePadded::new(
        WorkerCounters::new(port_slots(0)).with_peer_slots(peer_slots(inputs.node.network, inputs.node.subnet_len)),
    ));
    let (cmd_tx, cmd_rx) = bounded(16);
    let (learn_tx, _learn_rx) = bounded(16);
    let (mut up_rx, _) = queues.remove(0);
    let (mut pod_rx, mut pod_tx) = queues.remove(0);
    let (mut out_rx, mut out_tx) = queues.remove(0);
    let worker = Worker::new(
        0,
        up_rx.remove(0),
        out_tx.remove(0),
        Arc::new(SnapshotCell::new(snap)),
        counters.clone(),
        cmd_rx,
        learn_tx,
        pool.clone(),
        Backoff::default(),
    );
    let to_worker = pod_tx.remove(0);
    let rx = pod_rx.drain(1..).map(PortRx::Eth).collect();
    cmd_tx.send(WorkerCommand::Attach { port: pod, tx: PortTx::Eth(to_worker), rx, kind: PortKind::Pod }).unwrap();
    let baseline = pool.in_use();
    // The frames wait in the pod's rings until the worker starts, so it takes them in full bursts.
    for (send, frames) in pod_tx.iter_mut().zip(&per_queue) {
        send_all(&pool, send, frames);
    }
    let running = std::thread::spawn(move || worker.run());

    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < FRAMES && Instant::now() < deadline {
        let mut burst = Burst::new();
        out_rx[0].rx_burst(&mut burst);
        while let Some(m) = burst.pop_front() {
            got.push(m.data().to_vec());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    // Counted while the worker runs: it adds what its route cache counted when it goes idle.
    let counted = || counters.peer_tx.iter().map(|c| c.load(Ordering::Relaxed)).sum::<u64>();
    while counted() < FRAMES as u64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(counted(), FRAMES as u64, "frames counted per peer once the worker is idle, before it stops");
    cmd_tx.send(WorkerCommand::Stop).unwrap();
    running.join().unwrap();

    assert_eq!(got.len(), FRAMES, "frames on the uplink");
    for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
        assert_eq!(g, w, "frame {i} on the uplink");
    }
    let got_peers: std::collections::BTreeMap<usize, u64> =
        want_peers.keys().map(|&slot| (slot, counters.peer_tx[slot].load(Ordering::Relaxed))).collect();
    assert_eq!(got_peers, want_peers, "frames counted per peer");
    let all: u64 = counters.peer_tx.iter().map(|c| c.load(Ordering::Relaxed)).sum();
    assert_eq!(all, FRAMES as u64, "no frame counted against another peer");
    for p in &ports {
        p.stop().unwrap();
    }
    assert_eq!(pool.in_use(), baseline, "every mbuf is back in the pool");
}
