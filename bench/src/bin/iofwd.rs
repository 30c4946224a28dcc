//! weft-iofwd: the no-work I/O loop (receive a burst, send it out the other port) on one worker lcore
//! through weft's safe DPDK layer, measured like `dpdk-testpmd --forward-mode=io` measures itself: RX
//! packets per second from the ports' own counters.
//!
//! `weft-iofwd --seconds 10 -- <EAL args with two ports>`

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use dataplane::dpdk::{Burst, Eal, LcoreId, Mempool, Port, PortConfig, RxQueue, TxQueue};

#[derive(Debug, Parser)]
#[command(name = "weft-iofwd", about = "I/O forwarding between the first two DPDK ports on one lcore")]
struct Cli {
    /// How long to forward.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Mbufs in the pool.
    #[arg(long, default_value_t = 8191)]
    mbufs: u32,
    /// EAL arguments (after `--`); give EAL at least one worker lcore and two ports.
    #[arg(last = true, required = true)]
    eal: Vec<String>,
}

fn forward(mut rx: [RxQueue; 2], mut tx: [TxQueue; 2], stop: Arc<AtomicBool>) -> u64 {
    let mut burst = Burst::new();
    let mut dropped = 0u64;
    while !stop.load(Ordering::Relaxed) {
        for dir in 0..2 {
            if rx[dir].rx_burst(&mut burst) == 0 {
                continue;
            }
            let (_, freed) = tx[1 - dir].send_or_free(&mut burst);
            dropped += freed as u64;
        }
    }
    dropped
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _eal = Eal::init(&cli.eal)?;
    let ports = Port::all();
    if ports.len() < 2 {
        bail!("need two DPDK ports (e.g. --vdev net_null0 --vdev net_null1), found {}", ports.len());
    }
    let worker = *LcoreId::workers().first().context("need a worker lcore: pass e.g. -l 0,1 to EAL")?;
    let pool = Arc::new(Mempool::new("iofwd_pool", cli.mbufs, 256)?);
    let (mut rx0, mut tx0) = ports[0].configure(&PortConfig::default(), pool.clone())?;
    let (mut rx1, mut tx1) = ports[1].configure(&PortConfig::default(), pool.clone())?;
    ports[0].start()?;
    ports[1].start()?;
    let stop = Arc::new(AtomicBool::new(false));
    let (rx, tx) = ([rx0.remove(0), rx1.remove(0)], [tx0.remove(0), tx1.remove(0)]);
    let handle = worker.launch({
        let stop = stop.clone();
        move || forward(rx, tx, stop)
    })?;
    let rx_total = || -> anyhow::Result<u64> { Ok(ports[0].stats()?.rx_packets + ports[1].stats()?.rx_packets) };
    let mut last = (Instant::now(), rx_total()?);
    for _ in 0..cli.seconds {
        std::thread::sleep(Duration::from_secs(1));
        let now = (Instant::now(), rx_total()?);
        let pps = (now.1 - last.1) as f64 / (now.0 - last.0).as_secs_f64();
        println!("Rx-pps-total: {pps:.0}");
        last = now;
    }
    stop.store(true, Ordering::Relaxed);
    let dropped = handle.join()?;
    println!("tx-unsent-freed: {dropped}");
    for p in &ports[..2] {
        p.stop()?;
    }
    Ok(())
}
