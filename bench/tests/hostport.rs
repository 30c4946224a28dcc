//! The kernel-pod benchmark end to end, briefly, so it checks that it runs, not speed: weft-bench builds
//! its lab (two weft nodes with tap, cni0 and veth pods, two kernel flannel nodes), runs iperf3 TCP and UDP
//! through every pod pair, and prints a row per weft pair with the kernel pair's figures beside it.
//! Every pair must have carried traffic. The comparison itself is `weft-bench hostport`
//! (bench/README.md). Needs root and hugepages; the lab tears down what it made.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod common;

#[test]
fn every_pod_pair_carries_tcp_and_udp() {
    let (rows, _) = common::weft_bench_rows(&["hostport", "--reps", "1", "--seconds", "1", "--no-record"]);
    let titles: Vec<&str> = rows.iter().map(|r| r["bench"].as_str().unwrap()).collect();
    assert_eq!(rows.len(), 4, "tap -> tap, cni0 -> cni0, veth -> veth, cni0 -> kernel: {titles:?}");
    for row in &rows {
        for key in ["weft_tcp_gbps", "kernel_tcp_gbps", "weft_udp64_kpps", "kernel_udp64_kpps"] {
            assert!(row[key].as_f64().unwrap() > 0.0, "{}: {key} is {}", row["bench"], row[key]);
        }
    }
}
