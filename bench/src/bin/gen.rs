//! weft-gen: a DPDK traffic generator for weft and its baselines. It sends VXLAN frames into the device
//! under test's uplink (decap), pod frames into its pod port (encap), or both (mixed), over N flows from
//! templates, at full speed or a set rate, and counts what comes back: every frame carries a sequence
//! number and the sender's TSC in its UDP payload (`frames::write_stamp`), so loss, reordering,
//! duplicates and latency percentiles are measured per frame. `--search` looks for the no-drop rate (NDR)
//! and the partial-drop rate (PDR, loss <= 0.5 %) by bisection in the manner of RFC 2544 / MLRsearch.
//!
//! `weft-gen --mode decap --uplink net_memif0 --pod net_memif1 --seconds 10 -- <EAL args>`
//!
//! The generator runs on the EAL main lcore; give the device under test another core. Its ports are named
//! as DPDK names them (`net_memif0`, `net_af_packet0`, ...). A progress line goes to stderr each second; the
//! result is one `result: {json}` line on stdout.

use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use dataplane::dpdk::{tsc, Burst, Eal, Mempool, Port, PortConfig, RxQueue, TxQueue};
use weft_bench::frames::{self, read_stamp, write_stamp, MIN_STAMPED_LEN, STAMP_AT_POD};
use weft_bench::stats::{LatencyHistogram, SeqTracker};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// VXLAN frames into the uplink, pod frames expected back on the pod port.
    Decap,
    /// Pod frames into the pod port, VXLAN frames expected back on the uplink.
    Encap,
    /// Both at once, half the rate each.
    Mixed,
}

#[derive(Debug, Parser)]
#[command(name = "weft-gen")]
struct Cli {
    #[arg(long, value_enum, default_value_t = Mode::Decap)]
    mode: Mode,
    /// How the device under test crosses hosts: what the uplink frames look like.
    #[arg(long, value_enum, default_value_t = frames::Backend::Vxlan)]
    backend: frames::Backend,
    /// DPDK name of the port wired to the uplink of the device under test.
    #[arg(long)]
    uplink: String,
    /// DPDK name of the port wired to its pod port.
    #[arg(long)]
    pod: String,
    /// Remote VTEPs the frames come from (decap) or go to (encap).
    #[arg(long, default_value_t = 10)]
    peers: u32,
    /// Distinct flows (frames) per direction.
    #[arg(long, default_value_t = 256)]
    flows: u32,
    /// Pod-side frame size in bytes (64..=1518); VXLAN frames are 50 bytes longer.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Offered rate in Mpps (all directions together); 0 = as fast as the ports take frames.
    #[arg(long, default_value_t = 0.0)]
    rate_mpps: f64,
    /// Seconds to send (one trial), or seconds per trial with --search.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Search for NDR and PDR instead of one trial.
    #[arg(long)]
    search: bool,
    /// Search precision: stop when the bounds are this close, relative to the upper one.
    #[arg(long, default_value_t = 0.02)]
    precision: f64,
    /// PDR loss threshold (fraction).
    #[arg(long, default_value_t = 0.005)]
    pdr_loss: f64,
    /// RX queues per port: the device under test may send on several TX queues (OVS-DPDK uses one per
    /// thread, and a memif ring exists only where the client asked for it).
    #[arg(long, default_value_t = 1)]
    rx_queues: u16,
    /// Seconds to wait for stragglers after the last frame is sent.
    #[arg(long, default_value_t = 0.2)]
    drain: f64,
    #[arg(last = true, required = true)]
    eal: Vec<String>,
}

/// One direction's sender: a TX queue, its frame templates and where their stamp goes.
struct Sender {
    tx: TxQueue,
    frames: Vec<Vec<u8>>,
    stamp_at: usize,
    /// Stamped frames the port has not taken yet (kept, not dropped, so sequence numbers stay dense).
    pending: Burst,
    next_frame: usize,
    next_seq: u64,
    sent: u64,
}

impl Sender {
    fn new(tx: TxQueue, frames: Vec<Vec<u8>>, stamp_at: usize) -> Sender {
        Sender { tx, frames, stamp_at, pending: Burst::new(), next_frame: 0, next_seq: 0, sent: 0 }
    }

    /// Stamp and send up to `budget` frames; returns how many the port took.
    #[inline]
    fn send(&mut self, pool: &Mempool, budget: usize, trial: u64, side: u64) -> usize {
        while self.pending.len() < budget.min(dataplane::dpdk::BURST_SIZE) {
            let Some(mut m) = pool.alloc() else { break };
            let f = &self.frames[self.next_frame];
            self.next_frame = if self.next_frame + 1 == self.frames.len() { 0 } else { self.next_frame + 1 };
            if m.set_data(f).is_none() {
                break;
            }
            write_stamp(m.data_mut(), self.stamp_at, seq_id(trial, side, self.next_seq), tsc::now());
            self.next_seq += 1;
            if self.pending.push(m).is_err() {
                break;
            }
        }
        let n = self.tx.tx_burst(&mut self.pending);
        self.sent += n as u64;
        n
    }
}

/// write(2) calls this process has made (`syscw` of /proc/self/io), None where that is not readable.
fn write_syscalls() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines().find_map(|l| l.strip_prefix("syscw:")).and_then(|v| v.trim().parse().ok())
}

/// Sequence numbers carry the trial and the direction, so a straggler from an earlier trial or the other
/// direction is never taken for this one's.
fn seq_id(trial: u64, side: u64, n: u64) -> u64 {
    (trial << 48) | (side << 40) | n
}

fn split_seq(s: u64) -> (u64, u64, u64) {
    (s >> 48, (s >> 40) & 0xff, s & ((1 << 40) - 1))
}

#[derive(Debug, Default, Clone)]
struct Trial {
    offered_mpps: f64,
    sent: u64,
    received: u64,
    lost: u64,
    reordered: u64,
    duplicates: u64,
    /// Frames that came back without a stamp of this trial (ARP, stragglers).
    other: u64,
    rx_mpps: f64,
    tx_mpps: f64,
    latency: LatencyHistogram,
}

impl Trial {
    fn loss_ratio(&self) -> f64 {
        if self.sent == 0 {
            1.0
        } else {
            self.lost as f64 / self.sent as f64
        }
    }

    fn json(&self) -> serde_json::Value {
        let us = |q: f64| self.latency.quantile(q) as f64 / 1e3;
        serde_json::json!({
            "offered_mpps": self.offered_mpps, "tx_mpps": self.tx_mpps, "rx_mpps": self.rx_mpps,
            "sent": self.sent, "received": self.received, "lost": self.lost, "loss_ratio": self.loss_ratio(),
            "reordered": self.reordered, "duplicates": self.duplicates, "other_rx": self.other,
            "latency_us": {"p50": us(0.5), "p90": us(0.9), "p99": us(0.99), "p999": us(0.999),
                           "max": self.latency.max() as f64 / 1e3},
        })
    }

    fn line(&self) -> String {
        format!(
            "offered {:.3} Mpps: tx {:.3} rx {:.3} Mpps, lost {} of {} ({:.4} %), reordered {}, latency p50 {:.1} p99 {:.1} max {:.1} µs",
            self.offered_mpps,
            self.tx_mpps,
            self.rx_mpps,
            self.lost,
            self.sent,
            100.0 * self.loss_ratio(),
            self.reordered,
            self.latency.quantile(0.5) as f64 / 1e3,
            self.latency.quantile(0.99) as f64 / 1e3,
            self.latency.max() as f64 / 1e3,
        )
    }
}

struct Gen {
    pool: Arc<Mempool>,
    senders: Vec<Sender>,
    receivers: Vec<RxQueue>,
    hz: u64,
    trials: u64,
}

impl Gen {
    /// Send at `rate_pps` (0 = full speed) for `seconds`, then wait `drain` for stragglers.
    fn trial(&mut self, rate_pps: f64, seconds: f64, drain: f64, progress: bool) -> Trial {
        self.trials += 1;
        let trial = self.trials;
        for s in &mut self.senders {
            s.pending.free_all();
            s.next_seq = 0;
            s.sent = 0;
        }
        let mut seqs = vec![SeqTracker::default(); self.senders.len()];
        let mut lat = LatencyHistogram::default();
        let mut other = 0u64;
        let hz = self.hz as f64;
        let ns_per_tick = 1e9 / hz;
        let start = tsc::now();
        let end = start + (seconds * hz) as u64;
        let stop_rx = end + (drain * hz) as u64;
        let per_sender = rate_pps / self.senders.len() as f64;
        let mut rx = Burst::new();
        let mut next_report = start + self.hz;
        let (mut last_tx, mut last_rx, mut last_t) = (0u64, 0u64, start);
        let mut received = 0u64;
        loop {
            let now = tsc::now();
            if now >= stop_rx {
                break;
            }
            if now < end {
                for (side, s) in self.senders.iter_mut().enumerate() {
                    let budget = if rate_pps > 0.0 {
                        let due = ((now - start) as f64 * per_sender / hz) as u64;
                        due.saturating_sub(s.sent) as usize
                    } else {
                        usize::MAX
                    };
                    if budget > 0 {
                        s.send(&self.pool, budget, trial, side as u64);
                    }
                }
            }
            for q in &mut self.receivers {
                if q.rx_burst(&mut rx) == 0 {
                    continue;
                }
                let t = tsc::now();
                for i in 0..rx.len() {
                    let Some(m) = rx.get(i) else { break };
                    match read_stamp(m.data()).map(|(s, ts)| (split_seq(s), ts)) {
                        Some(((tr, side, n), ts)) if tr == trial && (side as usize) < seqs.len() => {
                            seqs[side as usize].record(n);
                            lat.record((t.saturating_sub(ts) as f64 * ns_per_tick) as u64);
                            received += 1;
                        }
                        _ => other += 1,
                    }
                }
                rx.free_all();
            }
            if progress && now >= next_report {
                let sent: u64 = self.senders.iter().map(|s| s.sent).sum();
                let dt = (now - last_t) as f64 / hz;
                eprintln!(
                    "weft-gen: {:>4.0} s  tx {:>7.3} Mpps  rx {:>7.3} Mpps  sent {sent}  received {received}  p99 {:.1} µs",
                    (now - start) as f64 / hz,
                    (sent - last_tx) as f64 / dt / 1e6,
                    (received - last_rx) as f64 / dt / 1e6,
                    lat.quantile(0.99) as f64 / 1e3,
                );
                (last_tx, last_rx, last_t) = (sent, received, now);
                next_report += self.hz;
            }
        }
        for s in &mut self.senders {
            s.pending.free_all();
        }
        let sent: u64 = self.senders.iter().map(|s| s.sent).sum();
        let got: u64 = seqs.iter().map(|t| t.received).sum();
        Trial {
            offered_mpps: rate_pps / 1e6,
            sent,
            received: got,
            lost: self.senders.iter().zip(&seqs).map(|(s, t)| t.lost(s.sent)).sum(),
            reordered: seqs.iter().map(|t| t.reordered).sum(),
            duplicates: seqs.iter().map(|t| t.duplicates).sum(),
            other,
            tx_mpps: sent as f64 / seconds / 1e6,
            rx_mpps: got as f64 / seconds / 1e6,
            latency: lat,
        }
    }
}

/// The highest rate whose trial loses at most `max_loss` (fraction; 0 = not one frame), by bisection
/// between `lo` (known good, may be 0) and `hi` (known bad or the ceiling). Returns (rate, trial at it).
fn bisect(
    g: &mut Gen,
    cli: &Cli,
    name: &str,
    max_loss: f64,
    mut lo: f64,
    mut hi: f64,
    mut good: Option<Trial>,
) -> (f64, Option<Trial>) {
    let ok = |t: &Trial| if max_loss == 0.0 { t.lost == 0 } else { t.loss_ratio() <= max_loss };
    let mut rate = if lo > 0.0 { (lo + hi) / 2.0 } else { hi * 0.9 };
    for _ in 0..16 {
        if hi - lo <= cli.precision * hi {
            break;
        }
        let t = g.trial(rate, cli.seconds, cli.drain, false);
        let pass = ok(&t);
        println!("{name} trial: {} -> {}", t.line(), if pass { "pass" } else { "fail" });
        if pass {
            lo = rate;
            good = Some(t);
        } else {
            hi = rate;
        }
        rate = (lo + hi) / 2.0;
    }
    (lo, good)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if !(MIN_STAMPED_LEN.max(64)..=1518).contains(&cli.size) {
        bail!("--size {}: the pod-side frame must be 64..=1518 bytes", cli.size);
    }
    if cli.flows == 0 || cli.peers == 0 {
        bail!("--flows and --peers must be at least 1");
    }
    let _eal = Eal::init(&cli.eal)?;
    let pool = Arc::new(Mempool::new("gen_pool", 32767, 256)?);
    let uplink = Port::by_name(&cli.uplink).with_context(|| format!("--uplink {}: no such DPDK port", cli.uplink))?;
    let pod = Port::by_name(&cli.pod).with_context(|| format!("--pod {}: no such DPDK port", cli.pod))?;
    let cfg = PortConfig { rx_queues: cli.rx_queues.max(1), ..PortConfig::default() };
    let (urx, mut utx) = uplink.configure(&cfg, pool.clone())?;
    let (prx, mut ptx) = pod.configure(&cfg, pool.clone())?;
    uplink.start()?;
    pod.start()?;
    let (utx, ptx) = (utx.remove(0), ptx.remove(0));
    let b = cli.backend.config();
    let decap =
        |tx| Sender::new(tx, frames::decap_frames_for(b, cli.peers, cli.flows, cli.size), frames::stamp_at_decap(b));
    let encap = |tx| Sender::new(tx, frames::encap_frames(cli.peers, cli.flows, cli.size), STAMP_AT_POD);
    let (senders, receivers) = match cli.mode {
        Mode::Decap => (vec![decap(utx)], prx),
        Mode::Encap => (vec![encap(ptx)], urx),
        Mode::Mixed => (vec![decap(utx), encap(ptx)], prx.into_iter().chain(urx).collect()),
    };
    let mut g = Gen { pool, senders, receivers, hz: tsc::hz(), trials: 0 };
    // Let links come up (memif and vhost connect asynchronously) before the clock starts. A memif
    // client connects once, when its port starts, and a server that has not configured its queues yet
    // (testpmd still filling its mempool on a busy machine) refuses the rings and drops the connection
    // for good: so a memif port whose link is still down after two seconds is restarted, which connects
    // again, as VPP's memif client retries. (A vhost-user link negotiates on its own: left alone.)
    let up = std::time::Instant::now();
    let mut retried = up;
    while !(uplink.link()?.up && pod.link()?.up) {
        if up.elapsed() > std::time::Duration::from_secs(30) {
            bail!("links not up after 30 s (is the device under test running?)");
        }
        if retried.elapsed() > std::time::Duration::from_secs(2) {
            for (p, name) in [(&uplink, &cli.uplink), (&pod, &cli.pod)] {
                if name.starts_with("net_memif") && !p.link()?.up {
                    eprintln!("{name}: link still down; restarting the port to connect again");
                    p.stop()?;
                    p.start()?;
                }
            }
            retried = std::time::Instant::now();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // A short warm-up trial fills caches and lets the device under test learn nothing stale.
    g.trial(cli.rate_mpps * 1e6, 0.3, cli.drain, false);
    let result = if cli.search {
        let full = g.trial(0.0, cli.seconds, cli.drain, false);
        println!("ceiling trial: {}", full.line());
        let ceiling = full.tx_mpps * 1e6;
        let (pdr, pdr_t) = if full.loss_ratio() <= cli.pdr_loss {
            (ceiling, Some(full.clone()))
        } else {
            bisect(&mut g, &cli, "PDR", cli.pdr_loss, 0.0, ceiling, None)
        };
        let (ndr, ndr_t) = if full.lost == 0 {
            (ceiling, Some(full.clone()))
        } else {
            bisect(&mut g, &cli, "NDR", 0.0, 0.0, pdr.max(ceiling * 0.05), None)
        };
        println!("NDR {:.3} Mpps, PDR ({} % loss) {:.3} Mpps", ndr / 1e6, cli.pdr_loss * 100.0, pdr / 1e6);
        serde_json::json!({
            "mode": format!("{:?}", cli.mode).to_lowercase(), "size": cli.size, "peers": cli.peers,
            "flows": cli.flows, "ceiling": full.json(),
            "ndr_mpps": ndr / 1e6, "ndr": ndr_t.map(|t| t.json()),
            "pdr_mpps": pdr / 1e6, "pdr": pdr_t.map(|t| t.json()),
        })
    } else {
        let writes = write_syscalls();
        let t = g.trial(cli.rate_mpps * 1e6, cli.seconds, cli.drain, true);
        let writes = write_syscalls().zip(writes).map(|(after, before)| after.saturating_sub(before));
        println!("trial: {}", t.line());
        let mut j = t.json();
        // A virtio-user driver writes to an eventfd to notify a device that asked for it; a polling
        // device turns that off. What else the trial writes is a progress line a second.
        j["write_syscalls"] = writes.into();
        j["mode"] = format!("{:?}", cli.mode).to_lowercase().into();
        j["size"] = cli.size.into();
        j["peers"] = cli.peers.into();
        j["flows"] = cli.flows.into();
        j
    };
    drop(g);
    uplink.stop()?;
    pod.stop()?;
    println!("result: {result}");
    Ok(())
}
