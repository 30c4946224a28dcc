//! weft's real worker on `net_ring` ports (root, hugepages): VXLAN frames for pods on two pod ports,
//! with malformed ones among them, arranged in runs of every length (one frame, a run across a burst's
//! end, a run longer than a burst). Each pod port must get exactly its frames, in arrival order and
//! byte for byte as the packet path writes them; every other frame must be counted as a drop under its
//! reason, and every mbuf must go back to the pool. Then a new snapshot without half the peers: their
//! frames, which the worker's VTEP cache accepted a moment before, must be dropped. (In `weft-bench`'s
//! tests because the frames and tables are the benchmarks' own.)
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::channel::bounded;
use crossbeam::utils::CachePadded;
use dataplane::dpdk::{Burst, Eal, Mempool, Port, PortConfig, PortId};
use dataplane::packet::{process_uplink_cached, DropReason, PacketBuf, VecBuf, Verdict};
use dataplane::tables::{PathCache, SnapshotCell};
use dataplane::worker::{port_slots, Backoff, PortKind, PortTx, Worker, WorkerCommand, WorkerCounters};
use testkit::eal::{check_dpdk_preconditions, vdev_eal_args};
use weft_bench::frames;

mod rings;
use rings::send_all;

/// Which frames arrive, in order: `A`/`B` a valid frame for a pod on port A/B, `t` a truncated one,
/// `c` one with a bad outer checksum. Runs of one, runs across the 32-frame bursts the worker takes,
/// and runs longer than a burst.
const PLAN: &str = concat!(
    "AAAAAAAAAAAAAAAAAAAA",                               // 20 for A: fills A's buffer part way
    "ttc",                                                // drops between runs
    "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB", // 50 for B: across two bursts, fills B's buffer
    "AtA",                                                // runs of one
    "BABABAB",                                            // alternating
    "AAAAAAAAAAAAAAAAAAAAAA",                             // 22 for A: A's buffer reaches 32 mid-run
    "c",                                                  // a drop at the very end
);

#[test]
fn worker_sends_each_run_to_its_port_in_order() {
    if let Err(e) = check_dpdk_preconditions(64) {
        panic!("{e}");
    }
    let pid = std::process::id();
    // The uplink's RX is ring 0, whose TX the test keeps to send on; the worker's uplink TX is ring 3's.
    let vdevs = ["net_ring0", "net_ring1", "net_ring2", "net_ring3"].map(String::from);
    let eal = Eal::init(&vdev_eal_args(&format!("weft-worker-{pid}"), "0", &vdevs)).unwrap();
    eal.clean_up_at_exit().unwrap();
    let pool = Arc::new(Mempool::new("worker_pool", 1023, 0).unwrap());
    let ports: Vec<Port> = vdevs.iter().map(|n| Port::by_name(n).unwrap()).collect();
    let mut queues: Vec<_> = ports
        .iter()
        .map(|p| {
            let q = p.configure(&PortConfig::default(), pool.clone()).unwrap();
            p.start().unwrap();
            q
        })
        .collect();
    let (uplink, pod_a, pod_b) = (ports[0].id(), ports[1].id(), ports[2].id());

    // The benchmarks' node with pods 0 and 2 on port A, 1 and 3 on port B.
    let mut inputs = frames::inputs(10, pod_a.0);
    for (i, p) in inputs.pods.iter_mut().enumerate() {
        p.port = if i % 2 == 0 { pod_a } else { pod_b };
    }
    let snap = inputs.build(1);
    // The second snapshot: the last 5 of the 10 peers gone.
    inputs.peers.truncate(5);
    let snap2 = inputs.build(2);

    // Frames by plan, and what the packet path makes of each (on an ordinary buffer).
    let valid = frames::decap_frames(10, 64, 64);
    let (mut to_a, mut to_b) = (valid.iter().step_by(2).cycle(), valid.iter().skip(1).step_by(2).cycle());
    let mut sent = Vec::new();
    for c in PLAN.chars() {
        let f = match c {
            'A' => to_a.next().unwrap().clone(),
            'B' => to_b.next().unwrap().clone(),
            't' => valid[0][..40].to_vec(),
            'c' => {
                let mut f = valid[1].clone();
                f[24] ^= 0x5a;
                f
            }
            _ => unreachable!(),
        };
        sent.push(f);
    }
    let mut want_a = Vec::new();
    let mut want_b = Vec::new();
    let mut want_drops = [0u64; DropReason::COUNT];
    let mut cache = PathCache::default();
    for (f, c) in sent.iter().zip(PLAN.chars()) {
        let mut b = VecBuf::new(f);
        match process_uplink_cached(&mut b, snap.cached(&mut cache)) {
            Verdict::ToPod(p) if p == pod_a && c == 'A' => want_a.push(b.data().to_vec()),
            Verdict::ToPod(p) if p == pod_b && c == 'B' => want_b.push(b.data().to_vec()),
            Verdict::Drop(r) if "tc".contains(c) => want_drops[r as usize] += 1,
            v => panic!("the plan's {c} frame has verdict {v:?}"),
        }
    }
    assert!(want_drops[DropReason::Truncated as usize] > 0 && want_drops[DropReason::IpChecksum as usize] > 0);

    // The frames wait in the uplink's ring (net_ring loops a port's TX back to its RX) before the worker
    // starts, so it takes them in full bursts.
    let baseline = pool.in_use();
    let (mut urx, mut utx) = queues.remove(0);
    send_all(&pool, &mut utx[0], &sent);
    // Then every valid frame once more, under the second snapshot.
    let mut fresh = PathCache::default();
    let mut want_drops2 = want_drops;
    let (mut want_a2, mut want_b2) = (want_a.clone(), want_b.clone());
    for f in &valid {
        let mut b = VecBuf::new(f);
        match process_uplink_cached(&mut b, snap2.cached(&mut fresh)) {
            Verdict::ToPod(p) if p == pod_a => want_a2.push(b.data().to_vec()),
            Verdict::ToPod(p) if p == pod_b => want_b2.push(b.data().to_vec()),
            Verdict::Drop(r) => want_drops2[r as usize] += 1,
            v => panic!("verdict {v:?} under the second snapshot"),
        }
    }
    let gone = want_drops2[DropReason::UnknownVtep as usize];
    let of_the_gone = (0..valid.len()).filter(|i| i % 10 >= 5).count() as u64; // frame i is peer i % 10's
    assert_eq!(gone, of_the_gone, "the frames of the 5 peers gone are unknown VTEPs'");
    let cell = Arc::new(SnapshotCell::new(snap));
    let counters = Arc::new(CachePadded::new(WorkerCounters::new(port_slots(0))));
    let (cmd_tx, cmd_rx) = bounded(16);
    let (learn_tx, _learn_rx) = bounded(16);
    let mut send = utx.remove(0);
    let worker = Worker::new(
        0,
        urx.remove(0),
        queues.pop().unwrap().1.remove(0),
        cell.clone(),
        counters.clone(),
        cmd_rx,
        learn_tx,
        pool.clone(),
        Backoff::default(),
    );
    // The pod ports' TX queues go to the worker; their RX queues stay here, to read what it sent.
    let mut pod_rx = Vec::new();
    for (port, (rx, mut tx)) in [pod_a, pod_b].into_iter().zip(queues.drain(..)) {
        let tx = PortTx::Eth(tx.remove(0));
        cmd_tx.send(WorkerCommand::Attach { port, tx, rx: Vec::new(), kind: PortKind::Pod }).unwrap();
        pod_rx.push(rx.into_iter().next().unwrap());
    }
    let running = std::thread::spawn(move || worker.run());

    let mut got: [Vec<Vec<u8>>; 2] = [Vec::new(), Vec::new()];
    let mut take = |want: [usize; 2], got: &mut [Vec<Vec<u8>>; 2]| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while (got[0].len() < want[0] || got[1].len() < want[1]) && Instant::now() < deadline {
            for (rx, got) in pod_rx.iter_mut().zip(got.iter_mut()) {
                let mut burst = Burst::new();
                rx.rx_burst(&mut burst);
                while let Some(m) = burst.pop_front() {
                    got.push(m.data().to_vec());
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    take([want_a.len(), want_b.len()], &mut got);
    assert_eq!([got[0].len(), got[1].len()], [want_a.len(), want_b.len()], "frames on the pod ports");

    // The second snapshot: once the worker has taken it, the same frames again.
    cell.publish(snap2);
    let deadline = Instant::now() + Duration::from_secs(10);
    while counters.generation.load(std::sync::atomic::Ordering::Relaxed) != 2 {
        assert!(Instant::now() < deadline, "the worker did not take the second snapshot");
        std::thread::sleep(Duration::from_millis(1));
    }
    send_all(&pool, &mut send, &valid);
    let (want_a, want_b, want_drops) = (want_a2, want_b2, want_drops2);
    take([want_a.len(), want_b.len()], &mut got);
    let deadline = Instant::now() + Duration::from_secs(10);
    let dropped = || counters.drops[DropReason::UnknownVtep as usize].load(std::sync::atomic::Ordering::Relaxed);
    while dropped() < gone && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    cmd_tx.send(WorkerCommand::Stop).unwrap();
    running.join().unwrap();

    for (port, got, want) in [("A", &got[0], &want_a), ("B", &got[1], &want_b)] {
        assert_eq!(got.len(), want.len(), "frames on pod port {port}");
        for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
            assert_eq!(g, w, "frame {i} on pod port {port}");
        }
    }
    let drops: Vec<u64> = counters.drops.iter().map(|d| d.load(std::sync::atomic::Ordering::Relaxed)).collect();
    assert_eq!(drops, want_drops, "drops by reason");
    let count =
        |c: &[std::sync::atomic::AtomicU64], p: PortId| c[usize::from(p.0)].load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(count(&counters.rx_packets, uplink), (PLAN.len() + valid.len()) as u64);
    assert_eq!(count(&counters.tx_packets, pod_a), want_a.len() as u64);
    assert_eq!(count(&counters.tx_packets, pod_b), want_b.len() as u64);
    for p in &ports {
        p.stop().unwrap();
    }
    assert_eq!(pool.in_use(), baseline, "every mbuf is back in the pool");
}
