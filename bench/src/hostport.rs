//! The host-port benchmark: a kernel pod on a weft node's `cni0` (its traffic through the host's kernel,
//! weft0 and weft's workers) to a pod on a kernel flannel node, against the same kind of pod pair on two
//! kernel flannel nodes, in one netns lab and one run, alternating: TCP throughput (iperf3) and the
//! small-packet rate (iperf3 UDP, 64-byte datagrams, as fast as it can send, counted at the receiver).

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Context};
use serde_json::Value;
use testkit::lab::{exec, AsPeer, Lab};

use crate::stats::median;

/// One measurement of one pod pair.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub tcp_gbps: f64,
    pub udp64_kpps: f64,
}

fn iperf(client_ns: &str, server: Ipv4Addr, seconds: u64, udp: bool) -> anyhow::Result<Value> {
    let t = seconds.to_string();
    let s = server.to_string();
    let mut args = vec!["timeout", "60", "iperf3", "-c", &s, "-t", &t, "-J"];
    if udp {
        args.extend(["-u", "-b", "0", "-l", "64"]);
    }
    let out = exec(client_ns, &args)?;
    serde_json::from_slice(&out.stdout).context("iperf3 -J printed no JSON")
}

fn sample(client_ns: &str, server: Ipv4Addr, seconds: u64) -> anyhow::Result<Sample> {
    let tcp = iperf(client_ns, server, seconds, false)?;
    let bps = tcp["end"]["sum_received"]["bits_per_second"].as_f64().ok_or_else(|| anyhow!("iperf3 TCP: {tcp}"))?;
    let udp = iperf(client_ns, server, seconds, true)?;
    let sum = &udp["end"]["sum"];
    let (packets, lost, secs) = (
        sum["packets"].as_f64().ok_or_else(|| anyhow!("iperf3 UDP: {udp}"))?,
        sum["lost_packets"].as_f64().unwrap_or(0.0),
        sum["seconds"].as_f64().unwrap_or(seconds as f64).max(0.001),
    );
    Ok(Sample { tcp_gbps: bps / 1e9, udp64_kpps: (packets - lost) / secs / 1e3 })
}

/// Build the lab, measure `reps` alternating rounds of `seconds` per test, print each and the medians,
/// and return the JSON row.
pub fn run(bin_dir: &Path, reps: usize, seconds: u64) -> anyhow::Result<Value> {
    let mut lab = Lab::new(&bin_dir.join("weftd"), &bin_dir.join("weftctl"))?;
    let n1 = lab.weft_node(1)?;
    let k2 = lab.kernel_node(2, &[n1.peer()])?;
    let k3 = lab.kernel_node(3, &[n1.peer(), k2.peer()])?;
    lab.kernel_add_peer(&k2, &k3.peer())?;
    let (kpod, _) = lab.cni0_pod(&n1, "kp")?;
    lab.start_weftd(&n1, &[k2.peer(), k3.peer()], &[])?;
    let log = lab.dir.join("iperf3.log");
    lab.spawn(&k2.pod_ns, &["iperf3", "-s", "-B", &k2.pod_ip.to_string()], &log)?;
    std::thread::sleep(Duration::from_millis(500));
    let (mut weft, mut kernel) = (Vec::new(), Vec::new());
    for rep in 0..reps {
        let w = sample(&kpod, k2.pod_ip, seconds)?;
        let k = sample(&k3.pod_ns, k2.pod_ip, seconds)?;
        println!(
            "hostport rep {rep}: cni0 pod on weft -> kernel node: {:.2} Gbit/s TCP, {:.0} kpps UDP 64 B; \
             kernel node -> kernel node: {:.2} Gbit/s, {:.0} kpps",
            w.tcp_gbps, w.udp64_kpps, k.tcp_gbps, k.udp64_kpps
        );
        weft.push(w);
        kernel.push(k);
    }
    let med = |v: &[Sample], f: fn(&Sample) -> f64| median(&mut v.iter().map(f).collect::<Vec<_>>()).unwrap_or(0.0);
    let (wt, kt) = (med(&weft, |s| s.tcp_gbps), med(&kernel, |s| s.tcp_gbps));
    let (wu, ku) = (med(&weft, |s| s.udp64_kpps), med(&kernel, |s| s.udp64_kpps));
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    println!(
        "hostport: TCP {wt:.2} vs {kt:.2} Gbit/s (weft/kernel {:.3}); UDP 64 B {wu:.0} vs {ku:.0} kpps (weft/kernel {:.3})",
        ratio(wt, kt),
        ratio(wu, ku)
    );
    Ok(serde_json::json!({
        "bench": "cni0 pod on a weft node vs on a kernel flannel node, to a kernel flannel node's pod",
        "reps": reps, "seconds": seconds,
        "weft_tcp_gbps": wt, "kernel_tcp_gbps": kt, "ratio_tcp": ratio(wt, kt),
        "weft_udp64_kpps": wu, "kernel_udp64_kpps": ku, "ratio_udp64": ratio(wu, ku),
    }))
}
