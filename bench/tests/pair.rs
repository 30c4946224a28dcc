//! The two-process benchmark harness end to end, at a low fixed rate so it checks function, not speed:
//! weft-gen drives dpdk-testpmd (io), OVS-DPDK (flannel's rules as OpenFlow), weft's worker (all over
//! memif) and the kernel's flannel VXLAN path (af_packet veths into namespaces) with stamped decap and
//! encap traffic, and every one of them must return every frame. This shows the generator's counting,
//! the baselines' wiring and weft's two-process path are right; the speed comparison itself is
//! `weft-bench pair` (bench/README.md). Needs root and hugepages; tears down what it made.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

use std::process::Command;

#[test]
fn every_device_under_test_returns_every_frame_at_a_low_rate() {
    if let Err(e) = testkit::eal::check_dpdk_preconditions(512) {
        panic!("{e}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_weft-bench"))
        .args(["pair", "--reps", "1", "--seconds", "1", "--rate-mpps", "0.05", "--modes", "decap,encap"])
        .args(["--peers", "10", "--duts", "testpmd,ovs,weft,kernel", "--size", "128", "--no-record"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "weft-bench pair failed:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<serde_json::Value> = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(rows.len(), 2, "{text}");
    for row in &rows {
        for dut in ["testpmd", "ovs", "weft", "kernel"] {
            let d = &row[dut];
            let (sent, lost) = (d["sent"].as_u64().unwrap(), d["lost"].as_u64().unwrap());
            // 1 s at 50 kpps; a generator that sent nothing proves nothing.
            assert!(sent > 40_000, "{} {dut}: only {sent} sent", row["mode"]);
            assert_eq!(lost, 0, "{} {dut}: lost {lost} of {sent}", row["mode"]);
            assert!(d["latency_p50_us"].as_f64().unwrap() > 0.0, "{} {dut}: no latency measured", row["mode"]);
            if dut != "ovs" {
                // One queue end to end: order is kept (OVS may spread over its TX queues).
                assert_eq!(d["reordered"].as_u64().unwrap(), 0, "{} {dut} reordered frames", row["mode"]);
            }
        }
    }
}
