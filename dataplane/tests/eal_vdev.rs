//! EAL with virtual devices: bursts through net_ring and net_null, the kernel's VXLAN frames through
//! net_pcap, a pool kept while a port holds its mbufs, lcore launch with panics caught. Needs root and
//! hugepages; fails (does not skip) without.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use dataplane::dpdk::{Burst, Eal, LcoreId, Mempool, Port, PortConfig, RxQueue, TxQueue, BURST_SIZE};
use dataplane::wire::{pcap, EthernetFrame, Ipv4Packet, UdpPacket, VxlanPacket};
use testkit::eal::{check_dpdk_preconditions, vdev_eal_args};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/kernel-vxlan-ping.pcap");

struct Env {
    pool: Arc<Mempool>,
    tx_pcap: String,
}

/// EAL once per process (DPDK allows no more); tests take turns through the mutex.
fn env() -> MutexGuard<'static, Env> {
    static ENV: OnceLock<Mutex<Env>> = OnceLock::new();
    let m = ENV.get_or_init(|| {
        if let Err(e) = check_dpdk_preconditions(64) {
            panic!("{e}");
        }
        let pid = std::process::id();
        let tx_pcap = format!("{}/weft-test-{pid}-out.pcap", std::env::temp_dir().display());
        let vdevs = vec![
            "net_ring0".to_string(),
            "net_ring1".to_string(),
            "net_null0".to_string(),
            "net_null1".to_string(),
            format!("net_pcap0,rx_pcap={FIXTURE},tx_pcap={tx_pcap}"),
        ];
        let eal =
            Eal::init(&vdev_eal_args(&format!("weft-test-{pid}"), "0,1", &vdevs)).unwrap_or_else(|e| panic!("{e}"));
        // The static is never dropped: EAL's runtime directory and hugepage files go when the process
        // exits.
        eal.clean_up_at_exit().unwrap();
        let pool = Arc::new(Mempool::new("test_pool", 4095, 64).unwrap());
        Mutex::new(Env { pool, tx_pcap })
    });
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The port named `name`, configured with one queue pair receiving into the shared pool, and started.
fn started(env: &Env, name: &str) -> (Port, Vec<RxQueue>, Vec<TxQueue>) {
    let port = Port::by_name(name).unwrap();
    let (rx, tx) = port.configure(&PortConfig::default(), env.pool.clone()).unwrap();
    port.start().unwrap();
    (port, rx, tx)
}

/// Distinct frames of varied sizes, content derived from the index.
fn frame(i: usize) -> Vec<u8> {
    let len = 60 + (i * 37) % 1400;
    (0..len).map(|j| (j * 7 + i * 13) as u8).collect()
}

#[test]
fn net_ring_burst_is_byte_identical() {
    let env = env();
    let baseline = env.pool.in_use();
    let (port, mut rx, mut tx) = started(&env, "net_ring0");
    let mut burst = Burst::new();
    for i in 0..BURST_SIZE {
        let mut m = env.pool.alloc().unwrap();
        m.set_data(&frame(i)).unwrap();
        assert!(burst.push(m).is_ok());
    }
    // The byte count the workers' counters take: every frame held, and after some are taken, the rest.
    let len = |from: usize| (from..BURST_SIZE).map(|i| frame(i).len() as u64).sum::<u64>();
    assert_eq!(burst.bytes(), len(0));
    assert_eq!(tx[0].tx_burst(&mut burst), BURST_SIZE);
    assert_eq!(burst.bytes(), 0);
    let mut got = Burst::new();
    assert_eq!(rx[0].rx_burst(&mut got), BURST_SIZE);
    for i in 0..BURST_SIZE {
        assert_eq!(got.bytes(), len(i), "with {i} taken");
        let m = got.pop_front().unwrap();
        assert_eq!(m.data(), &frame(i)[..], "frame {i}");
    }
    assert_eq!(got.bytes(), 0);
    assert!(got.pop_front().is_none());
    let stats = port.stats().unwrap();
    assert_eq!((stats.tx_packets, stats.rx_packets), (BURST_SIZE as u64, BURST_SIZE as u64));
    port.stop().unwrap();
    assert_eq!(env.pool.in_use(), baseline, "every mbuf is back in the pool");
}

/// What a worker does with a burst: frames moved from its front to another burst's end, in order and
/// only as many as fit; frames freed from its front; in place edits through `live_mut`.
#[test]
fn bursts_move_and_free_from_the_front() {
    let env = env();
    let baseline = env.pool.in_use();
    let fill = |from: usize, to: usize| {
        let mut b = Burst::new();
        for i in from..to {
            let mut m = env.pool.alloc().unwrap();
            m.set_data(&frame(i)).unwrap();
            b.push(m).unwrap();
        }
        b
    };
    let heads = |b: &Burst| (0..b.len()).map(|i| b.get(i).unwrap().data()[..].to_vec()).collect::<Vec<_>>();
    let mut src = fill(0, BURST_SIZE);
    let mut dst = fill(100, 100 + BURST_SIZE - 5);
    // Room for 5: of the 8 asked, 5 move, the first 5.
    assert_eq!(src.move_front(8, &mut dst), 5);
    assert_eq!((src.len(), dst.len()), (BURST_SIZE - 5, BURST_SIZE));
    let want: Vec<Vec<u8>> = (100..100 + BURST_SIZE - 5).chain(0..5).map(frame).collect();
    assert_eq!(heads(&dst), want);
    assert_eq!(src.get(0).unwrap().data(), &frame(5)[..]);
    assert_eq!(src.move_front(1, &mut dst), 0, "a full burst takes nothing");
    // Freed from the front: 3, then more than are left.
    assert_eq!(dst.free_front(3), 3);
    assert_eq!(dst.get(0).unwrap().data(), &frame(103)[..]);
    assert_eq!(dst.free_front(1000), BURST_SIZE - 3);
    assert!(dst.is_empty());
    // An emptied burst takes a whole run again, asked for more than the source holds.
    let mut left = fill(200, 203);
    assert_eq!(left.move_front(10, &mut dst), 3);
    assert!(left.is_empty());
    assert_eq!(src.move_front(BURST_SIZE, &mut dst), BURST_SIZE - 5, "what the source holds");
    assert!(src.is_empty());
    assert_eq!(heads(&dst), (200..203).chain(5..BURST_SIZE).map(frame).collect::<Vec<_>>());
    // In place: every frame's first byte rewritten, seen by the next reader.
    for m in dst.live_mut() {
        m.data_mut()[0] = 0xee;
    }
    assert!(heads(&dst).iter().all(|h| h[0] == 0xee));
    drop((src, dst));
    assert_eq!(env.pool.in_use(), baseline, "every mbuf is back in the pool");
}

/// A pool that only fed a TX queue (no port holds it) is dropped while the queue still holds one of its
/// mbufs: it must stay allocated, so that mbuf can still go back to it. Its name stays taken, which is
/// how the test sees that it was not freed.
#[test]
fn a_pool_is_not_freed_under_mbufs_a_port_still_holds() {
    let env = env();
    let (port, mut rx, mut tx) = started(&env, "net_ring1");
    let tx_only = Mempool::new("tx_only_pool", 63, 0).unwrap();
    let mut burst = Burst::new();
    let mut m = tx_only.alloc().unwrap();
    m.set_data(&frame(3)).unwrap();
    assert!(burst.push(m).is_ok());
    assert_eq!(tx[0].tx_burst(&mut burst), 1, "the ring holds the mbuf");
    drop(tx_only);
    assert!(Mempool::new("tx_only_pool", 63, 0).is_err(), "the pool was freed with an mbuf of it still out");
    let mut got = Burst::new();
    assert_eq!(rx[0].rx_burst(&mut got), 1);
    assert_eq!(got.pop_front().unwrap().data(), &frame(3)[..], "and the mbuf is still whole");
    port.stop().unwrap();
}

#[test]
fn net_null_tx_takes_or_frees_everything() {
    let env = env();
    let baseline = env.pool.in_use();
    let (port, mut rx, mut tx) = started(&env, "net_null0");
    let mut sent_total = 0;
    for _ in 0..100 {
        let mut burst = Burst::new();
        assert_eq!(rx[0].rx_burst(&mut burst), BURST_SIZE, "net_null always has a full burst");
        let (sent, freed) = tx[0].send_or_free(&mut burst);
        assert_eq!(sent + freed, BURST_SIZE);
        assert!(burst.is_empty());
        sent_total += sent;
    }
    assert_eq!(port.stats().unwrap().tx_packets, sent_total as u64);
    port.stop().unwrap();
    assert_eq!(env.pool.in_use(), baseline, "no mbuf leaked");
}

#[test]
fn kernel_vxlan_frames_through_net_pcap() {
    let env = env();
    let (port, mut rx, mut tx) = started(&env, "net_pcap0");
    let mut burst = Burst::new();
    // net_pcap reads the file on start; poll a few times in case a burst comes up short.
    for _ in 0..10 {
        rx[0].rx_burst(&mut burst);
    }
    assert_eq!(burst.len(), 2, "the fixture holds two frames");
    let want: Vec<Vec<u8>> =
        pcap::PcapReader::new(&std::fs::read(FIXTURE).unwrap()).unwrap().map(|r| r.unwrap().data.to_vec()).collect();
    let mut out = Burst::new();
    let mut vnis = Vec::new();
    while let Some(m) = burst.pop_front() {
        {
            let eth = EthernetFrame::new_checked(m.data()).unwrap();
            let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
            assert_eq!(ip.src().octets()[..3], Ipv4Addr::new(192, 168, 77, 0).octets()[..3]);
            let udp = UdpPacket::new_checked(ip.payload()).unwrap();
            assert_eq!(udp.dst_port(), 8472);
            let vx = VxlanPacket::new_checked(udp.payload()).unwrap();
            vx.check_flags().unwrap();
            vnis.push(vx.vni().get());
            assert_eq!(m.data(), &want[vnis.len() - 1][..]);
        }
        out.push(m).unwrap();
    }
    assert_eq!(vnis, vec![1, 1]);
    // Out through the pcap writer and back from the file: byte-identical.
    assert_eq!(tx[0].tx_burst(&mut out), 2);
    port.stop().unwrap();
    let written = std::fs::read(&env.tx_pcap).unwrap();
    let got: Vec<Vec<u8>> = pcap::PcapReader::new(&written).unwrap().map(|r| r.unwrap().data.to_vec()).collect();
    assert_eq!(got, want);
    let _ = std::fs::remove_file(&env.tx_pcap);
}

#[test]
fn mbuf_prepend_and_adj_stay_within_headroom() {
    let env = env();
    let mut m = env.pool.alloc().unwrap();
    m.set_data(&[1, 2, 3, 4]).unwrap();
    let head = m.headroom();
    assert_eq!(head, 128, "DPDK's default headroom");
    m.prepend(50).unwrap();
    m.data_mut()[..50].fill(0xee);
    assert_eq!(m.data_len(), 54);
    assert_eq!(m.pkt_len(), 54);
    assert_eq!(&m.data()[50..], &[1, 2, 3, 4]);
    assert!(m.prepend(head).is_none(), "beyond the headroom");
    assert_eq!(m.data_len(), 54, "a refused prepend changes nothing");
    m.adj(50).unwrap();
    assert_eq!(m.data(), &[1, 2, 3, 4]);
    assert!(m.adj(5).is_none());
    m.trim(2).unwrap();
    assert_eq!(m.data(), &[1, 2]);
    assert!(m.tailroom() > 1000);
}

#[test]
fn lcore_launch_returns_result_and_catches_panics() {
    let _env = env();
    let workers = LcoreId::workers();
    assert_eq!(workers, vec![LcoreId(1)], "EAL was given -l 0,1");
    let h = workers[0].launch(|| LcoreId::current().map(|l| l.0 * 10 + 7)).unwrap();
    assert_eq!(h.join().unwrap(), Some(17));
    let h = workers[0].launch(|| -> u32 { panic!("worker blew up (an intended test panic)") }).unwrap();
    let err = h.join().unwrap_err().to_string();
    assert!(err.contains("worker blew up") && err.contains("lcore 1"), "{err}");
    // The lcore is usable again after a caught panic.
    let h = workers[0].launch(|| 5).unwrap();
    assert_eq!(h.join().unwrap(), 5);
}
