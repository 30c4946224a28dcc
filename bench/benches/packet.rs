//! Microbenchmarks of weft's per-packet work on bursts of 32 frames in memory, no DPDK: decap
//! (`process_uplink_cached`), encap (`process_pod_cached`) and the subnet-table lookup, at table sizes of
//! 10, 10k and 100k remote VTEPs; and the same decap and encap for the host-gw and udp backends at 10 and
//! 100k peers (`decap-host-gw`, `encap-udp`, ...). Frames come from `weft_bench::frames`, the same the forwarding
//! benchmarks replay; 256 flows interleave peers, so the one-entry caches miss as on a busy node.
//!
//! `cargo bench -p weft-bench --bench packet` prints criterion's report, then ns and cycles per packet
//! (cycles from the nominal TSC rate in /proc/cpuinfo).

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{BatchSize, Criterion, Throughput};
use dataplane::dpdk::PortId;
use dataplane::packet::{process_pod_cached, process_uplink_cached, VecBuf, Verdict};
use dataplane::tables::PathCache;
use weft_bench::frames;
use weft_config::BackendType;

const BURST: usize = 32;
const SIZES: [u32; 3] = [10, 10_000, 100_000];
const POD_PORT: u16 = 5;

fn burst(frames: &[Vec<u8>]) -> Vec<VecBuf> {
    frames.iter().cycle().take(BURST).map(|f| VecBuf::new(f)).collect()
}

fn benches(c: &mut Criterion) {
    for peers in SIZES {
        let snap = frames::inputs(peers, POD_PORT).build(1);
        let mut g = c.benchmark_group("packet");
        g.throughput(Throughput::Elements(BURST as u64));
        decap_and_encap(&mut g, "", &snap, BackendType::Vxlan, peers);
        // Destinations spread over every peer: each lookup is a hash probe, not a cache hit.
        let dsts: Vec<u32> = (0..BURST as u32)
            .map(|i| frames::peer(i * (peers / BURST as u32).max(1) % peers).subnet.addr_u32() + 2)
            .collect();
        g.bench_function(format!("lookup/{peers}"), |b| {
            b.iter(|| {
                for d in &dsts {
                    black_box(snap.lookup_vtep(black_box(*d)).is_some());
                }
            })
        });
        g.finish();
    }
    for backend in [BackendType::HostGw, BackendType::Udp] {
        for peers in [SIZES[0], SIZES[2]] {
            let snap = frames::inputs_for(backend, peers, POD_PORT).build(1);
            let mut g = c.benchmark_group("packet");
            g.throughput(Throughput::Elements(BURST as u64));
            decap_and_encap(&mut g, &format!("-{backend}"), &snap, backend, peers);
            g.finish();
        }
    }
}

/// `decap{suffix}/{peers}` and `encap{suffix}/{peers}`: bursts of the backend's frames through the
/// uplink and pod paths.
fn decap_and_encap(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    suffix: &str,
    snap: &dataplane::tables::Snapshot,
    backend: BackendType,
    peers: u32,
) {
    let flows = 256.min(peers.max(32));
    let decap = frames::decap_frames_for(backend, peers, flows, 64);
    let encap = frames::encap_frames(peers, flows, 64);
    let mut cache = PathCache::default();
    g.bench_function(format!("decap{suffix}/{peers}"), |b| {
        b.iter_batched_ref(
            || burst(&decap),
            |bufs| {
                let mut c = snap.cached(&mut cache);
                for m in bufs.iter_mut() {
                    let v = process_uplink_cached(m, c.reborrow());
                    debug_assert!(matches!(v, Verdict::ToPod(_)));
                    black_box(v);
                }
            },
            BatchSize::SmallInput,
        )
    });
    let mut ident = 0u16;
    g.bench_function(format!("encap{suffix}/{peers}"), |b| {
        b.iter_batched_ref(
            || burst(&encap),
            |bufs| {
                let mut c = snap.cached(&mut cache);
                for m in bufs.iter_mut() {
                    ident = ident.wrapping_add(1);
                    let v = process_pod_cached(m, PortId(POD_PORT), ident, c.reborrow());
                    debug_assert_eq!(v, Verdict::ToUplink);
                    black_box(v);
                }
            },
            BatchSize::SmallInput,
        )
    });
}

fn criterion_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/criterion")
}

/// Nominal TSC rate from /proc/cpuinfo (a VM reports the host TSC there), GHz.
fn ghz() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mhz: f64 = s.lines().find(|l| l.starts_with("cpu MHz"))?.split(':').nth(1)?.trim().parse().ok()?;
    Some(mhz / 1e3)
}

/// Mean ns per burst from criterion's saved estimate.
fn mean_ns(id: &str) -> Option<f64> {
    let p = criterion_dir().join("packet").join(id.replace('/', "_")).join("new/estimates.json");
    let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()?;
    j["mean"]["point_estimate"].as_f64()
}

fn main() {
    let mut c = Criterion::default().output_directory(&criterion_dir()).configure_from_args();
    benches(&mut c);
    c.final_summary();
    let ghz = ghz();
    println!("\nper packet (mean of bursts of {BURST}; cycles at {:.2} GHz nominal TSC):", ghz.unwrap_or(0.0));
    for path in ["decap", "encap", "lookup", "decap-host-gw", "encap-host-gw", "decap-udp", "encap-udp"] {
        for peers in SIZES {
            if let Some(ns) = mean_ns(&format!("{path}/{peers}")) {
                let per = ns / BURST as f64;
                let cycles = ghz.map(|g| format!("{:.0}", per * g)).unwrap_or_else(|| "?".into());
                println!("  {path:<13} {peers:>6} peers: {per:>6.1} ns  {cycles:>4} cycles");
            }
        }
    }
}
