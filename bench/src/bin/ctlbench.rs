//! weft-ctlbench: the control side against a real etcd (started here on loopback).
//! - initial sync: N leases in etcd, time from start to the first snapshot holding all of them, and the
//!   memory that took (RSS growth; no mempools are involved here);
//! - updates: M new leases put one at a time; time from each put to a published snapshot that routes
//!   the new subnet (p50/p99). A worker takes a snapshot at its next burst, so this is the delay to the
//!   first packet encapsulated with the new entry, plus at most one poll-loop iteration.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use dataplane::tables::{SnapshotCell, TableInputs};
use testkit::etcd::EtcdServer;
use weft_bench::stats::median;
use weft_config::{Lease, MacAddr};
use weft_control::etcd::{start, ControlEvent, EtcdConfig, Identity};

#[derive(Debug, Parser)]
struct Cli {
    #[arg(long, default_value_t = 5000)]
    leases: u32,
    #[arg(long, default_value_t = 1000)]
    updates: u32,
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn lease_kv(i: u32) -> (String, String) {
    let n = i + 1;
    let key = format!("/coreos.com/network/subnets/10.{}.{}.0-24", n >> 8, n & 255);
    let mac = MacAddr([2, 0xcc, 0, (n >> 16) as u8, (n >> 8) as u8, n as u8]);
    let v =
        Lease::vxlan(Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 16, 0, 2)) + i), weft_config::Vni::ONE, mac).to_json();
    (key, v)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let etcd = EtcdServer::start()?;
    etcd.put("/coreos.com/network/config", r#"{"Network":"10.0.0.0/8","Backend":{"Type":"vxlan"}}"#)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut client = rt.block_on(etcd_client::Client::connect(etcd.endpoints(), None))?;
    let loaded = Instant::now();
    rt.block_on(async {
        for i in 0..cli.leases {
            let (k, v) = lease_kv(i);
            client.put(k, v, None).await?;
        }
        Ok::<_, etcd_client::Error>(())
    })?;
    println!("loaded {} leases into etcd in {:.2?}", cli.leases, loaded.elapsed());

    let dir = std::env::temp_dir().join(format!("weft-ctlbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let node = weft_bench::frames::node();
    let rss0 = rss_kib();
    let t0 = Instant::now();
    let h = start(
        EtcdConfig { endpoints: etcd.endpoints(), ..EtcdConfig::default() },
        Identity {
            public_ip: node.public_ip,
            vtep_mac: node.vtep_mac,
            underlay_mtu: 1500,
            subnet_file: dir.join("subnet.env"),
            ipmasq: false,
            lease_ttl: Duration::from_secs(3600),
            renew_margin: Duration::from_secs(600),
        },
    );
    let (_, subnet, peers) = h.wait_acquired(Duration::from_secs(30))?;
    let mut peers = peers;
    while peers.len() < cli.leases as usize {
        match h.events.recv_timeout(Duration::from_secs(10)) {
            Ok(ControlEvent::Peers(p)) => peers = p,
            Ok(_) => {}
            Err(_) => bail!("only {} of {} peers arrived", peers.len(), cli.leases),
        }
    }
    let mut inputs = TableInputs {
        node: dataplane::tables::Node { subnet, ..node.clone() },
        peers: peers.clone(),
        pods: Vec::new(),
        neighbours: peers.iter().map(|l| (l.public_ip, weft_bench::frames::NEXT_HOP_MAC)).collect(),
        host: None,
    };
    let cell = SnapshotCell::new(inputs.build(1));
    let sync = t0.elapsed();
    let grown = rss_kib().saturating_sub(rss0);
    println!(
        "initial sync of {} leases: {:.1} ms to the first full snapshot ({} VTEPs), memory +{:.1} MiB RSS (target < 1 s, < 64 MiB)",
        cli.leases,
        sync.as_secs_f64() * 1e3,
        cell.load().vteps.len(),
        grown as f64 / 1024.0
    );

    let mut lat = Vec::with_capacity(cli.updates as usize);
    for u in 0..cli.updates {
        // Far above the subnets the node itself may lease (the first free ones after the loaded leases).
        let (k, v) = lease_kv(40_000 + u);
        let want: weft_config::SubnetKey = k.rsplit('/').next().context("key")?.parse()?;
        let t = Instant::now();
        rt.block_on(client.put(k, v, None))?;
        loop {
            match h.events.recv_timeout(Duration::from_secs(10)) {
                Ok(ControlEvent::Peers(p)) => {
                    if let Some(l) = p.iter().find(|l| l.subnet == want.0) {
                        // What weftd does with the event: rebuild, publish.
                        inputs.peers = p.clone();
                        inputs.neighbours.insert(l.public_ip, weft_bench::frames::NEXT_HOP_MAC);
                        cell.publish(inputs.build(2 + u as u64));
                        if cell.load().lookup_vtep(want.0.addr_u32() + 1).is_none() {
                            bail!("published snapshot does not route {}", want.0);
                        }
                        break;
                    }
                }
                Ok(_) => {}
                Err(_) => bail!("update {u} never arrived"),
            }
        }
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    let p50 = median(&mut lat.clone()).unwrap_or(0.0);
    println!(
        "{} updates with {} leases: etcd put -> snapshot published p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (target p99 < 100 ms)",
        cli.updates,
        cli.leases,
        p50,
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(0.0)
    );
    h.stop();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
