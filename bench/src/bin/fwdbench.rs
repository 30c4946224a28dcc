//! weft-fwdbench: weft's real worker loop and tables, in one process, fed from memory. Decap: the uplink
//! is `net_pcap` replaying VXLAN frames (`infinite_rx=1`) and the pods sit on `net_null`; encap: the pod
//! port replays pod frames and the uplink is `net_null`. Prints RX packets per second of the fed port,
//! from the port's own counters, as `weft-iofwd` and testpmd do.
//!
//! Mixed: both ports replay (`net_pcap0` VXLAN frames into the uplink, `net_pcap1` pod frames into the
//! pod port), and what the worker sends is dropped by the pcap devices (they have no TX file).
//! Two-process runs name the ports instead (`--uplink-dev net_memif0 --pod-dev net_memif1`), are fed by
//! `weft-gen`, and run until SIGTERM or SIGINT with `--seconds 0`. Over vhost-user the pod port is a
//! socket (`--pod-vhost <path>`) served through DPDK's vhost library by the code weftd serves a
//! vhost-user pod with; the report at the end gives the worker's busy cycles per packet received.
//!
//! `weft-fwdbench --mode decap --peers 10 --seconds 8 -- <EAL args with net_pcap0 and net_null0>`

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, ValueEnum};
use crossbeam::channel::bounded;
use crossbeam::utils::CachePadded;
use dataplane::dpdk::{set_event_sink, Eal, LcoreId, Mempool, Port, PortConfig, PortId, VhostSocket};
use dataplane::tables::SnapshotCell;
use dataplane::vhost_devices::VhostDevices;
use dataplane::worker::{
    peer_slots, port_slots, Backoff, PortKind, PortRx, PortTx, Worker, WorkerCommand, WorkerCounters, ETH_PORTS,
};

/// The pod port: an ethdev, or a vhost-user socket served through DPDK's vhost library as weftd serves
/// a vhost-user pod (a logical port above the ethdevs').
enum PodPort {
    Eth(Port),
    Vhost { port: PortId, path: std::path::PathBuf },
}

impl PodPort {
    fn id(&self) -> PortId {
        match self {
            PodPort::Eth(p) => p.id(),
            PodPort::Vhost { port, .. } => *port,
        }
    }

    /// Frames received from the pod port: the ethdev's counter, or the worker's for the vhost device.
    fn rx_packets(&self, counters: &WorkerCounters) -> anyhow::Result<u64> {
        Ok(match self {
            PodPort::Eth(p) => p.stats()?.rx_packets,
            PodPort::Vhost { port, .. } => {
                counters.rx_packets.get(usize::from(port.0)).map_or(0, |c| c.load(Ordering::Relaxed))
            }
        })
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mode {
    Decap,
    Encap,
    Mixed,
}

#[derive(Debug, Parser)]
struct Cli {
    #[arg(long, value_enum)]
    mode: Mode,
    #[arg(long, default_value_t = 10)]
    peers: u32,
    /// The backend whose paths the worker runs (the frames fed must be of it).
    #[arg(long, value_enum, default_value_t = weft_bench::frames::Backend::Vxlan)]
    backend: weft_bench::frames::Backend,
    /// Seconds to run; 0 = until SIGTERM or SIGINT.
    #[arg(long, default_value_t = 8)]
    seconds: u64,
    /// DPDK name of the uplink port (default by mode: the replaying or the sink device).
    #[arg(long)]
    uplink_dev: Option<String>,
    /// DPDK name of the pod port.
    #[arg(long)]
    pod_dev: Option<String>,
    /// Serve the pod port as weftd serves a vhost-user pod instead: DPDK's vhost library on this socket
    /// (weft the server, the driver connecting to it), not a `net_vhost` ethdev.
    #[arg(long, conflicts_with = "pod_dev")]
    pod_vhost: Option<std::path::PathBuf>,
    /// Read every counter twice a second from another thread, as weftd's metrics collector does.
    #[arg(long)]
    read_counters: bool,
    /// Publish this many new tables (each one peer more) while forwarding, spread over the run.
    #[arg(long, default_value_t = 0)]
    swaps: u32,
    /// Also attach this many tap pods that send nothing (net_tap ports `wfb-idle<i>`; root), polled as
    /// weftd polls tap pods.
    #[arg(long, default_value_t = 0)]
    idle_taps: u16,
    /// Poll the idle taps every loop (as weft did before tap queues were polled on a timer when idle).
    #[arg(long)]
    idle_taps_every_loop: bool,
    #[arg(last = true, required = true)]
    eal: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _eal = Eal::init(&cli.eal)?;
    let pool = Arc::new(Mempool::new("fwd_pool", 16383, 256)?);
    let (up_name, pod_name) = match cli.mode {
        Mode::Decap => ("net_pcap0", "net_null0"),
        Mode::Encap => ("net_null0", "net_pcap0"),
        Mode::Mixed => ("net_pcap0", "net_pcap1"),
    };
    let up_name = cli.uplink_dev.as_deref().unwrap_or(up_name);
    let pod_name = cli.pod_dev.as_deref().unwrap_or(pod_name);
    let uplink = Port::by_name(up_name).with_context(|| format!("uplink: no DPDK port {up_name} (--vdev?)"))?;
    let pods = match &cli.pod_vhost {
        Some(path) => PodPort::Vhost { port: PortId(ETH_PORTS as u16), path: path.clone() },
        None => PodPort::Eth(
            Port::by_name(pod_name).with_context(|| format!("pod port: no DPDK port {pod_name} (--vdev?)"))?,
        ),
    };
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    let (mut urx, mut utx) = uplink.configure(&PortConfig::default(), pool.clone())?;
    uplink.start()?;
    let built = Instant::now();
    let mut inputs = weft_bench::frames::inputs_for(cli.backend.config(), cli.peers, pods.id().0);
    let snap = inputs.build(1);
    eprintln!("tables: {} peers built in {:?}", snap.vteps.len(), built.elapsed());
    let cell = Arc::new(SnapshotCell::new(snap));
    // Per-peer TX counters as weftd gives its workers: the worker counts every frame it sends to a peer.
    let peers = peer_slots(inputs.node.network, inputs.node.subnet_len);
    let counters = Arc::new(CachePadded::new(WorkerCounters::new(port_slots(1)).with_peer_slots(peers)));
    let (cmd_tx, cmd_rx) = bounded(16);
    let (learn_tx, _learn_rx) = bounded(16);
    let w = Worker::new(
        0,
        urx.remove(0),
        utx.remove(0),
        cell.clone(),
        counters.clone(),
        cmd_rx,
        learn_tx,
        pool.clone(),
        Backoff { busy_poll: true, ..Backoff::default() },
    );
    // The pod port: an ethdev attached now, or a vhost-user socket whose device is attached when its
    // driver connects, by the same code as weftd's vhost pods.
    let (vhost, vhost_events) = match &pods {
        PodPort::Eth(p) => {
            let (prx, mut ptx) = p.configure(&PortConfig::default(), pool.clone())?;
            p.start()?;
            let (tx, rx) = (PortTx::Eth(ptx.remove(0)), prx.into_iter().map(PortRx::Eth).collect());
            cmd_tx.send(WorkerCommand::Attach { port: p.id(), tx, rx, kind: PortKind::Pod })?;
            (None, None)
        }
        PodPort::Vhost { port, path } => {
            let (ev_tx, ev_rx) = bounded(64);
            set_event_sink(ev_tx).map_err(|_| anyhow::anyhow!("the vhost event sink was already set"))?;
            let mut devices = VhostDevices::new(vec![cmd_tx.clone()], pool.clone());
            let port = *port;
            let handler = std::thread::spawn(move || {
                for ev in ev_rx {
                    devices.handle(ev, |_| Some((port, 0)));
                }
            });
            let socket = VhostSocket::start(path, false).with_context(|| format!("--pod-vhost {}", path.display()))?;
            (Some(socket), Some(handler))
        }
    };
    let mut taps = Vec::new();
    for i in 0..cli.idle_taps {
        let tap = Port::probe(&format!("net_tap_idle{i},iface=wfb-idle{i}"))?;
        let (mut trx, mut ttx) = tap.configure(&PortConfig::default(), pool.clone())?;
        tap.start()?;
        let q = trx.remove(0);
        let rx = vec![if cli.idle_taps_every_loop { PortRx::Eth(q) } else { PortRx::Tap(q) }];
        cmd_tx.send(WorkerCommand::Attach {
            port: tap.id(),
            tx: PortTx::Eth(ttx.remove(0)),
            rx,
            kind: PortKind::Pod,
        })?;
        taps.push(tap);
    }
    let lcore = *LcoreId::workers().first().context("need a worker lcore (-l 0,1)")?;
    let h = lcore.launch(move || w.run())?;
    let reader = cli.read_counters.then(|| {
        let c = counters.clone();
        std::thread::spawn(move || {
            let mut sum = 0u64;
            while Arc::strong_count(&c) > 1 {
                sum = c
                    .rx_packets
                    .iter()
                    .chain(c.tx_packets.iter())
                    .chain(c.rx_bytes.iter())
                    .chain(c.tx_bytes.iter())
                    .chain(c.drops.iter())
                    .map(|x| x.load(Ordering::Relaxed))
                    .fold(sum, u64::wrapping_add);
                std::thread::sleep(Duration::from_millis(500));
            }
            sum
        })
    });
    // Frames the ports received, together: the fed port's in-process (the sink receives none), both in
    // two-process and mixed runs.
    let rx_both = || -> anyhow::Result<u64> { Ok(uplink.stats()?.rx_packets + pods.rx_packets(&counters)?) };
    println!("ready");
    let mut last = (Instant::now(), rx_both()?);
    let per_second = cli.swaps.div_ceil(cli.seconds.max(1) as u32);
    let mut swapped = 0u32;
    let mut swap_time = Duration::ZERO;
    let mut elapsed = 0;
    while (cli.seconds == 0 || elapsed < cli.seconds) && !stop.load(Ordering::Relaxed) {
        elapsed += 1;
        let second = Instant::now();
        for _ in 0..per_second.min(cli.swaps - swapped) {
            // As weftd does on a lease event: one more peer, a full rebuild, one publish.
            let p = weft_bench::frames::peer(cli.peers + swapped);
            inputs.peers.push(p);
            inputs.neighbours.insert(p.public_ip, weft_bench::frames::NEXT_HOP_MAC);
            let t = Instant::now();
            cell.publish(inputs.build(2 + swapped as u64));
            swap_time += t.elapsed();
            swapped += 1;
            std::thread::sleep(Duration::from_secs(1).saturating_sub(second.elapsed()) / (per_second + 1));
        }
        while second.elapsed() < Duration::from_secs(1) && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50).min(Duration::from_secs(1).saturating_sub(second.elapsed())));
        }
        let now = (Instant::now(), rx_both()?);
        // Counters restart when a memif or vhost peer reconnects: no negative rates.
        println!("Rx-pps-total: {:.0}", now.1.saturating_sub(last.1) as f64 / (now.0 - last.0).as_secs_f64());
        last = now;
    }
    cmd_tx.send(WorkerCommand::Stop)?;
    h.join()?;
    let drops: u64 = counters.drops.iter().map(|d| d.load(Ordering::Relaxed)).sum();
    let tx: u64 = counters.tx_packets.iter().map(|d| d.load(Ordering::Relaxed)).sum();
    println!("forwarded: {tx} dropped: {drops}");
    let by_reason: serde_json::Map<String, serde_json::Value> = dataplane::packet::DropReason::ALL
        .iter()
        .map(|r| (r.label().to_string(), counters.drops[*r as usize].load(Ordering::Relaxed)))
        .filter(|(_, v)| *v != 0)
        .map(|(k, v)| (k, serde_json::Value::from(v)))
        .collect();
    let rx_total: u64 = counters.rx_packets.iter().map(|d| d.load(Ordering::Relaxed)).sum();
    // The worker's cycles in loops that found frames, per frame received: what the device under test
    // spends on a frame whatever the generator's rate (testpmd's --record-core-cycles figure).
    let busy_cycles = counters.busy_cycles.load(Ordering::Relaxed);
    // Frames per loop that found any: how full the bursts were (32 at most per port polled).
    let busy_loops = counters.busy_loops.load(Ordering::Relaxed);
    if cli.swaps > 0 {
        let gen = counters.generation.load(Ordering::Relaxed);
        println!("swaps: {swapped} tables published (mean rebuild+publish {:?}), worker on generation {gen}, dropped {drops} of {tx} forwarded", swap_time / swapped.max(1));
    }
    drop(counters);
    if let Some(r) = reader {
        let _ = r.join();
    }
    // Unregistering the socket destroys a connected device; the handler takes it back from the worker
    // (stopped by now: nothing to wait for). The handler thread ends with the process (the vhost module
    // keeps the event channel's sender).
    drop(vhost);
    drop(vhost_events);
    uplink.stop()?;
    if let PodPort::Eth(p) = &pods {
        p.stop()?;
    }
    println!(
        "report: {}",
        serde_json::json!({
            "rx": rx_total, "forwarded": tx, "drops": by_reason, "mempool_in_use_after_stop": pool.in_use(),
            "busy_cycles": busy_cycles, "cycles_per_packet": busy_cycles as f64 / rx_total.max(1) as f64,
            "busy_loops": busy_loops, "packets_per_busy_loop": rx_total as f64 / busy_loops.max(1) as f64,
            "tsc_hz": dataplane::dpdk::tsc::hz(),
        })
    );
    Ok(())
}
