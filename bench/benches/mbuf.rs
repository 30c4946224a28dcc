//! What the DPDK layer's per-packet helpers cost on a real mbuf: `Mbuf::trim` (run for every padded
//! frame) and `tsc::now` (run per burst for TX deadlines), against `Mbuf::adj`, which has always been
//! done in Rust, as the reference for "no call". EAL runs without hugepages (`--no-huge`), so this
//! needs root but no `make setup`.
//!
//! `cargo bench -p weft-bench --bench mbuf` prints criterion's report and ns per operation.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::Criterion;
use dataplane::dpdk::{tsc, Eal, Mempool};

const OPS: usize = 1024;

fn criterion_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/criterion")
}

fn mean_ns(id: &str) -> Option<f64> {
    let p = criterion_dir().join("mbuf").join(id).join("new/estimates.json");
    let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()?;
    j["mean"]["point_estimate"].as_f64()
}

fn main() {
    if let Err(e) = run() {
        eprintln!("bench mbuf: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let prefix = format!("--file-prefix=weft-bench-mbuf-{}", std::process::id());
    let _eal = Eal::init(&["-l0", "--no-huge", "-m", "128", "--no-pci", "--no-telemetry", prefix.as_str()])
        .map_err(|e| format!("EAL (run as root): {e}"))?;
    let pool = Mempool::new("bench_mbuf", 1023, 0).map_err(|e| e.to_string())?;
    let mut m = pool.alloc().ok_or("no mbuf")?;
    m.append(1500).ok_or("no room for 1500 bytes")?;
    let mut c = Criterion::default().output_directory(&criterion_dir()).configure_from_args();
    {
        let mut g = c.benchmark_group("mbuf");
        // Each iteration shortens the packet by one byte OPS times and grows it back with one append.
        g.bench_function("trim", |b| {
            b.iter(|| {
                for _ in 0..OPS {
                    black_box(m.trim(black_box(1)));
                }
                black_box(m.append(OPS));
            })
        });
        g.bench_function("adj", |b| {
            b.iter(|| {
                for _ in 0..OPS {
                    black_box(m.adj(black_box(1)));
                }
                black_box(m.prepend(OPS));
            })
        });
        g.bench_function("tsc", |b| {
            b.iter(|| {
                for _ in 0..OPS {
                    black_box(tsc::now());
                }
            })
        });
        g.finish();
    }
    c.final_summary();
    println!("\nper operation (mean of {OPS}):");
    for id in ["trim", "adj", "tsc"] {
        if let Some(ns) = mean_ns(id) {
            println!("  {id:<5} {:>6.2} ns", ns / OPS as f64);
        }
    }
    Ok(())
}
