//! weft-bench: runs weft and its baselines in one invocation and reports ratios.
//!
//! `weft-bench io`: weft-iofwd against `dpdk-testpmd --forward-mode=io`, both on two net_null ports
//! and one forwarding lcore, alternating runs, medians of the per-second samples.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use weft_bench::stats::{median, testpmd_rx_pps};

#[derive(Debug, Parser)]
#[command(name = "weft-bench")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// I/O forwarding ceiling: weft's loop vs testpmd io on net_null ports.
    Io {
        /// Alternating repetitions of each.
        #[arg(long, default_value_t = 3)]
        reps: usize,
        /// Seconds per run.
        #[arg(long, default_value_t = 8)]
        seconds: u64,
        /// Forwarding lcore (EAL gets main lcore 0 plus this one).
        #[arg(long, default_value_t = 1)]
        lcore: u32,
    },
}

fn eal_args(prefix: &str, lcore: u32) -> Vec<String> {
    dataplane::testing::vdev_eal_args(prefix, &format!("0,{lcore}"), &["net_null0".into(), "net_null1".into()])
}

/// Samples after the first two seconds (ramp-up), as f64 pps.
fn steady(mut v: Vec<f64>) -> Vec<f64> {
    if v.len() > 3 {
        v.drain(..2);
    }
    v
}

fn run_testpmd(seconds: u64, lcore: u32, rep: usize) -> anyhow::Result<Vec<f64>> {
    let mut args = vec!["-s".to_string(), "INT".into(), format!("{}", seconds + 1), "dpdk-testpmd".into()];
    args.extend(eal_args(&format!("weft-bench-tp-{}-{rep}", std::process::id()), lcore));
    args.extend(["--", "--forward-mode=io", "--stats-period", "1", "--nb-cores", "1"].map(String::from));
    let out = Command::new("timeout").args(&args).output().context("running dpdk-testpmd (apt-get install dpdk)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    // The first period is the start-up, before forwarding began.
    let periods: Vec<f64> = testpmd_rx_pps(&text).into_iter().filter(|p| *p > 0.0).collect();
    if periods.is_empty() {
        bail!("testpmd printed no statistics:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(steady(periods))
}

fn run_weft(seconds: u64, lcore: u32, rep: usize) -> anyhow::Result<Vec<f64>> {
    let exe: PathBuf = std::env::current_exe()?.with_file_name("weft-iofwd");
    let mut args = vec!["--seconds".to_string(), seconds.to_string(), "--".into()];
    args.extend(eal_args(&format!("weft-bench-wf-{}-{rep}", std::process::id()), lcore));
    let out = Command::new(&exe).args(&args).output().with_context(|| format!("running {}", exe.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("weft-iofwd failed:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    }
    let v: Vec<f64> =
        text.lines().filter_map(|l| l.strip_prefix("Rx-pps-total:")).filter_map(|x| x.trim().parse().ok()).collect();
    Ok(steady(v))
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Io { reps, seconds, lcore } => {
            let (mut tp, mut wf) = (Vec::new(), Vec::new());
            for rep in 0..reps {
                let t = median(&mut run_testpmd(seconds, lcore, rep)?).unwrap_or(0.0);
                let w = median(&mut run_weft(seconds, lcore, rep)?).unwrap_or(0.0);
                println!("rep {rep}: testpmd io {:.2} Mpps, weft io {:.2} Mpps", t / 1e6, w / 1e6);
                tp.push(t);
                wf.push(w);
            }
            let t = median(&mut tp).unwrap_or(0.0);
            let w = median(&mut wf).unwrap_or(0.0);
            let ratio = if t > 0.0 { w / t } else { 0.0 };
            println!("io forward, 2x net_null, 1 lcore, 64 B: testpmd {:.2} Mpps, weft {:.2} Mpps, ratio {ratio:.3} (target >= 0.95)", t / 1e6, w / 1e6);
            println!(
                "{{\"bench\":\"io\",\"testpmd_mpps\":{:.3},\"weft_mpps\":{:.3},\"ratio\":{ratio:.4},\"reps\":{reps},\"seconds\":{seconds}}}",
                t / 1e6,
                w / 1e6
            );
        }
    }
    Ok(())
}
