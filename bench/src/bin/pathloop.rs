//! weft-pathloop: weft's packet paths on the benchmark frames in memory, no DPDK, for an instruction
//! count. It runs bursts of 32 frames through decap (`process_uplink_cached`) or encap
//! (`process_pod_cached`) in one function, [`path_burst`], which `weft-bench icount` has callgrind count
//! alone: the instructions a packet costs in weft's own code, the same on every run of the same build,
//! where the forwarding rates of a shared machine move by several percent from one run to the next. The
//! frames sit in ordinary buffers ([`VecBuf`]), not mbufs: the count covers the packet path, not the
//! worker's loop or the PMDs.
//!
//! Every frame must be forwarded (to a pod port for decap, to the uplink for encap); a drop fails the
//! run, so a count is never of frames that stopped early.
//!
//! `weft-pathloop --mode encap --peers 10 --packets 100000`

use anyhow::bail;
use clap::{Parser, ValueEnum};
use dataplane::dpdk::PortId;
use dataplane::packet::{process_pod_cached, process_uplink_cached, VecBuf, Verdict};
use dataplane::tables::{PathCache, Snapshot};
use weft_bench::frames;

const BURST: usize = 32;
const POD_PORT: u16 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Decap,
    Encap,
}

#[derive(Parser, Debug)]
#[command(about = "weft's packet paths on the benchmark frames, for callgrind (weft-bench icount)")]
struct Cli {
    #[arg(long, value_enum)]
    mode: Mode,
    #[arg(long, default_value_t = 10)]
    peers: u32,
    #[arg(long, default_value_t = 256)]
    flows: u32,
    /// Packets through the path (rounded up to whole bursts of 32).
    #[arg(long, default_value_t = 100_000)]
    packets: u64,
}

/// One burst through the path; what callgrind counts (`--toggle-collect=*path_burst*`). Returns how many
/// frames were forwarded.
#[inline(never)]
fn path_burst(mode: Mode, bufs: &mut [VecBuf], snap: &Snapshot, cache: &mut PathCache, ident: &mut u16) -> usize {
    let mut good = 0;
    // As a worker does, the cache is made the snapshot's once, not at every lookup.
    let mut c = snap.cached(cache);
    for m in bufs.iter_mut() {
        let v = match mode {
            Mode::Decap => process_uplink_cached(m, c.reborrow()),
            Mode::Encap => {
                *ident = ident.wrapping_add(1);
                process_pod_cached(m, PortId(POD_PORT), *ident, c.reborrow())
            }
        };
        good += usize::from(match mode {
            Mode::Decap => matches!(v, Verdict::ToPod(_)),
            Mode::Encap => v == Verdict::ToUplink,
        });
    }
    good
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.peers == 0 || cli.flows == 0 {
        bail!("--peers and --flows must be at least 1");
    }
    let snap = frames::inputs(cli.peers, POD_PORT).build(1);
    let frames = match cli.mode {
        Mode::Decap => frames::decap_frames(cli.peers, cli.flows, 64),
        Mode::Encap => frames::encap_frames(cli.peers, cli.flows, 64),
    };
    let bursts = cli.packets.div_ceil(BURST as u64);
    let (mut cache, mut ident) = (PathCache::default(), 0u16);
    let mut next = frames.iter().cycle();
    let mut packets = 0u64;
    for _ in 0..bursts {
        // Fresh copies of the next 32 frames, made outside the counted function.
        let mut bufs: Vec<VecBuf> = next.by_ref().take(BURST).map(|f| VecBuf::new(f)).collect();
        let good = path_burst(cli.mode, &mut bufs, &snap, &mut cache, &mut ident);
        if good != bufs.len() {
            bail!("{} of {} frames were not forwarded ({:?})", bufs.len() - good, bufs.len(), cli.mode);
        }
        packets += good as u64;
    }
    println!(
        "{}",
        serde_json::json!({ "mode": format!("{:?}", cli.mode).to_lowercase(), "peers": cli.peers, "packets": packets })
    );
    Ok(())
}
