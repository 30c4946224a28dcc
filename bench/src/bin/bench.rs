//! weft-bench: runs weft and its baselines in one invocation and reports ratios.
//!
//! `weft-bench io`: weft-iofwd against `dpdk-testpmd --forward-mode=io`, both on two net_null ports.
//! `weft-bench fwd`: weft's decap and encap (weft-fwdbench: the real worker and tables) against
//! testpmd io on the same devices: `net_pcap` replaying from memory (`infinite_rx=1`) into `net_null`.
//! Each on one forwarding lcore, alternating runs, medians of the per-second samples.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use weft_bench::frames;
use weft_bench::stats::{median, testpmd_rx_pps};

#[derive(Debug, Parser)]
#[command(name = "weft-bench")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// Alternating repetitions of each.
    #[arg(long, default_value_t = 3, global = true)]
    reps: usize,
    /// Seconds per run.
    #[arg(long, default_value_t = 8, global = true)]
    seconds: u64,
    /// Forwarding lcore (EAL gets main lcore 0 plus this one).
    #[arg(long, default_value_t = 1, global = true)]
    lcore: u32,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// I/O forwarding ceiling: weft's loop vs testpmd io on net_null ports.
    Io,
    /// The cost of metrics: decap with and without a thread reading the counters as the collector does.
    Metrics,
    /// Table swaps under load: decap at full rate while N new tables are published; any drop is a loss.
    Swaps {
        #[arg(long, default_value_t = 1000)]
        swaps: u32,
        #[arg(long, default_value_t = 5000)]
        peers: u32,
    },
    /// Decap and encap Mpps vs testpmd io, replayed from memory.
    Fwd {
        /// Remote VTEPs in the table.
        #[arg(long, default_value_t = 10)]
        peers: u32,
        /// Inner frame size in bytes.
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Flows (distinct frames replayed).
        #[arg(long, default_value_t = 256)]
        flows: u32,
    },
}

/// Samples after the first two seconds (ramp-up).
fn steady(mut v: Vec<f64>) -> Vec<f64> {
    if v.len() > 3 {
        v.drain(..2);
    }
    v
}

struct Runner {
    seconds: u64,
    lcore: u32,
    tag: String,
}

impl Runner {
    fn eal(&self, who: &str, rep: usize, vdevs: &[String]) -> Vec<String> {
        dataplane::testing::vdev_eal_args(
            &format!("weft-bench-{who}-{}-{rep}", self.tag),
            &format!("0,{}", self.lcore),
            vdevs,
        )
    }

    fn testpmd(&self, rep: usize, vdevs: &[String]) -> anyhow::Result<f64> {
        let mut args = vec!["-s".to_string(), "INT".into(), format!("{}", self.seconds + 1), "dpdk-testpmd".into()];
        args.extend(self.eal("tp", rep, vdevs));
        args.extend(["--", "--forward-mode=io", "--stats-period", "1", "--nb-cores", "1"].map(String::from));
        let out =
            Command::new("timeout").args(&args).output().context("running dpdk-testpmd (apt-get install dpdk)")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let periods: Vec<f64> = testpmd_rx_pps(&text).into_iter().filter(|p| *p > 0.0).collect();
        if periods.is_empty() {
            bail!("testpmd printed no statistics:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(median(&mut steady(periods)).unwrap_or(0.0))
    }

    fn weft(&self, exe: &str, rep: usize, pre: &[String], vdevs: &[String]) -> anyhow::Result<f64> {
        let exe: PathBuf = std::env::current_exe()?.with_file_name(exe);
        let mut args = pre.to_vec();
        args.extend(["--seconds".to_string(), self.seconds.to_string(), "--".into()]);
        args.extend(self.eal("wf", rep, vdevs));
        let out = Command::new(&exe).args(&args).output().with_context(|| format!("running {}", exe.display()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!("{} failed:\n{text}\n{}", exe.display(), String::from_utf8_lossy(&out.stderr));
        }
        if let Some(l) = text.lines().find(|l| l.starts_with("forwarded:")) {
            eprintln!("   {l}");
        }
        let v: Vec<f64> = text
            .lines()
            .filter_map(|l| l.strip_prefix("Rx-pps-total:"))
            .filter_map(|x| x.trim().parse().ok())
            .collect();
        Ok(median(&mut steady(v)).unwrap_or(0.0))
    }
}

fn compare(
    name: &str,
    base: &str,
    reps: usize,
    mut tp: impl FnMut(usize) -> anyhow::Result<f64>,
    mut wf: impl FnMut(usize) -> anyhow::Result<f64>,
) -> anyhow::Result<serde_json::Value> {
    let (mut t, mut w) = (Vec::new(), Vec::new());
    for rep in 0..reps {
        let a = tp(rep)?;
        let b = wf(rep)?;
        println!("{name} rep {rep}: {base} {:.2} Mpps, weft {:.2} Mpps", a / 1e6, b / 1e6);
        t.push(a);
        w.push(b);
    }
    let (t, w) = (median(&mut t).unwrap_or(0.0), median(&mut w).unwrap_or(0.0));
    let ratio = if t > 0.0 { w / t } else { 0.0 };
    println!("{name}: {base} {:.2} Mpps, weft {:.2} Mpps, ratio {ratio:.3}", t / 1e6, w / 1e6);
    Ok(
        serde_json::json!({"bench": name, "baseline": base, "baseline_mpps": t / 1e6, "weft_mpps": w / 1e6, "ratio": ratio, "reps": reps}),
    )
}

fn write_pcap(path: &Path, frames: &[Vec<u8>]) -> anyhow::Result<()> {
    std::fs::write(path, dataplane::wire::pcap::write_pcap(frames.iter().map(|f| &f[..])))?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let r = Runner { seconds: cli.seconds, lcore: cli.lcore, tag: std::process::id().to_string() };
    let mut results = Vec::new();
    match cli.cmd {
        Cmd::Io => {
            let vdevs = ["net_null0".to_string(), "net_null1".into()];
            let res = compare(
                "io (2x net_null, 64 B)",
                "testpmd io",
                cli.reps,
                |rep| r.testpmd(rep, &vdevs),
                |rep| r.weft("weft-iofwd", rep, &[], &vdevs),
            )?;
            println!("target: ratio >= 0.95");
            results.push(res);
        }
        Cmd::Metrics => {
            let dir = std::env::temp_dir().join(format!("weft-bench-{}", r.tag));
            std::fs::create_dir_all(&dir)?;
            let pcap = dir.join("decap.pcap");
            write_pcap(&pcap, &frames::decap_frames(10, 256, 64))?;
            let vdevs = [format!("net_pcap0,rx_pcap={},infinite_rx=1", pcap.display()), "net_null0,no-rx=1".into()];
            let off = ["--mode".to_string(), "decap".into()];
            let on = ["--mode".to_string(), "decap".into(), "--read-counters".into()];
            let res = compare(
                "decap with counters read as the collector does",
                "metrics off",
                cli.reps,
                |rep| r.weft("weft-fwdbench", rep, &off, &vdevs),
                |rep| r.weft("weft-fwdbench", rep + 100, &on, &vdevs),
            )?;
            println!("target: on/off >= 0.99");
            results.push(res);
            let _ = std::fs::remove_dir_all(&dir);
        }
        Cmd::Swaps { swaps, peers } => {
            let dir = std::env::temp_dir().join(format!("weft-bench-{}", r.tag));
            std::fs::create_dir_all(&dir)?;
            let pcap = dir.join("decap.pcap");
            write_pcap(&pcap, &frames::decap_frames(peers.min(256), 256, 64))?;
            let vdevs = [format!("net_pcap0,rx_pcap={},infinite_rx=1", pcap.display()), "net_null0,no-rx=1".into()];
            let exe = std::env::current_exe()?.with_file_name("weft-fwdbench");
            let mut args = vec![
                "--mode".to_string(),
                "decap".into(),
                "--peers".into(),
                peers.to_string(),
                "--swaps".into(),
                swaps.to_string(),
                "--seconds".into(),
                cli.seconds.to_string(),
                "--".into(),
            ];
            args.extend(r.eal("sw", 0, &vdevs));
            let out = Command::new(&exe).args(&args).output()?;
            let text = String::from_utf8_lossy(&out.stdout);
            anyhow::ensure!(
                out.status.success(),
                "weft-fwdbench failed: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            for l in text.lines().filter(|l| l.starts_with("swaps:") || l.starts_with("forwarded:")) {
                println!("{l}");
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
        Cmd::Fwd { peers, size, flows } => {
            let dir = std::env::temp_dir().join(format!("weft-bench-{}", r.tag));
            std::fs::create_dir_all(&dir)?;
            for (mode, frames) in [
                ("decap", frames::decap_frames(peers, flows, size)),
                ("encap", frames::encap_frames(peers, flows, size)),
            ] {
                let pcap = dir.join(format!("{mode}.pcap"));
                write_pcap(&pcap, &frames)?;
                let vdevs = [format!("net_pcap0,rx_pcap={},infinite_rx=1", pcap.display()), "net_null0,no-rx=1".into()];
                let pre = ["--mode".to_string(), mode.into(), "--peers".into(), peers.to_string()];
                let name = format!("{mode} ({peers} peers, {flows} flows, {size} B inner)");
                results.push(compare(
                    &name,
                    "testpmd io",
                    cli.reps,
                    |rep| r.testpmd(rep, &vdevs),
                    |rep| r.weft("weft-fwdbench", rep, &pre, &vdevs),
                )?);
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    println!("{}", serde_json::to_string(&results)?);
    Ok(())
}
