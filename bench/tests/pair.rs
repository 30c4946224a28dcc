//! The two-process benchmark harness end to end, at a low fixed rate so it checks function, not speed:
//! weft-gen drives dpdk-testpmd (io), OVS-DPDK (flannel's rules as OpenFlow), weft's worker (all over
//! memif) and the kernel's flannel VXLAN path (af_packet veths into namespaces) with stamped decap and
//! encap traffic, and every one of them must return every frame. This shows the generator's counting,
//! the baselines' wiring and weft's two-process path are right; the speed comparison itself is
//! `weft-bench pair` (bench/README.md). The same over vhost-user for testpmd, OVS and weft. Needs root and
//! hugepages; tears down what it made.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

use std::sync::Mutex;

mod common;

/// `weft-bench pair` over `transport` at 50 kpps for a second, decap and encap, 10 peers, 128-byte pod
/// frames: its two rows. One run at a time: the tests of this file run on threads of one process, and
/// two runs side by side put four polling processes on two CPUs, where a device under test descheduled
/// for longer than its rings hold (vhost-user's 256 slots are 5 ms at this rate) loses frames.
fn low_rate_rows(transport: &str, duts: &str) -> Vec<serde_json::Value> {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (rows, text) = common::weft_bench_rows(&[
        "pair",
        "--transport",
        transport,
        "--reps",
        "1",
        "--seconds",
        "1",
        "--rate-mpps",
        "0.05",
        "--modes",
        "decap,encap",
        "--peers",
        "10",
        "--duts",
        duts,
        "--size",
        "128",
        "--no-record",
    ]);
    assert_eq!(rows.len(), 2, "{text}");
    rows
}

/// `dut` of `row` returned every frame the generator sent, with a latency measured, and in order where
/// `ordered`; how many were sent.
fn returned_every_frame(row: &serde_json::Value, dut: &str, ordered: bool) -> u64 {
    let d = &row[dut];
    let (sent, lost) = (d["sent"].as_u64().unwrap(), d["lost"].as_u64().unwrap());
    // 1 s at 50 kpps; a generator that sent nothing proves nothing.
    assert!(sent > 40_000, "{} {dut}: only {sent} sent", row["mode"]);
    assert_eq!(lost, 0, "{} {dut}: lost {lost} of {sent}", row["mode"]);
    assert!(d["latency_p50_us"].as_f64().unwrap() > 0.0, "{} {dut}: no latency measured", row["mode"]);
    if ordered {
        assert_eq!(d["reordered"].as_u64().unwrap(), 0, "{} {dut} reordered frames", row["mode"]);
    }
    // One repetition: it is the fastest, and the median.
    let reps: Vec<f64> = d["reps_mpps"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    assert_eq!(reps.len(), 1, "{} {dut}: {d}", row["mode"]);
    assert_eq!(d["best_mpps"].as_f64(), Some(reps[0]), "{} {dut}: {d}", row["mode"]);
    assert_eq!(d["mpps"].as_f64(), Some(reps[0]), "{} {dut}: {d}", row["mode"]);
    sent
}

#[test]
fn every_device_under_test_returns_every_frame_at_a_low_rate() {
    for row in &low_rate_rows("memif", "testpmd,ovs,weft,kernel") {
        for dut in ["testpmd", "ovs", "weft", "kernel"] {
            // One queue end to end: order is kept (OVS may spread over its TX queues).
            returned_every_frame(row, dut, dut != "ovs");
        }
    }
}

/// Over vhost-user, with weft's pod port served as weftd serves a vhost-user pod (DPDK's vhost library,
/// not a net_vhost ethdev) and OVS's ports its own vhost-user clients of the generator's sockets:
/// testpmd, OVS and weft return every frame, and none asks the generator's virtio-user driver to notify
/// it (a polling device turns that off: else the driver makes an eventfd write for about every burst,
/// which a VM pays as an exit to its hypervisor).
#[test]
fn vhost_user_devices_return_every_frame_and_take_no_notifications() {
    for row in &low_rate_rows("vhost", "testpmd,ovs,weft") {
        for dut in ["testpmd", "ovs", "weft"] {
            // OVS returns frames out of the generator's one sequence per direction even over one queue
            // pair (a few hundred of 50,000 at this rate; most frames at full rate, over memif too).
            let sent = returned_every_frame(row, dut, dut != "ovs");
            // At 50 kpps a burst is a frame or two: a driver told to notify writes for nearly each one.
            let writes = row[dut]["generator_write_syscalls"].as_u64().unwrap();
            assert!(
                writes < sent / 100,
                "{} {dut}: the generator made {writes} write calls for {sent} frames",
                row["mode"]
            );
            if dut == "ovs" {
                // OVS reports no cycles of its own per packet to the harness.
                continue;
            }
            let cycles = row[dut]["dut_cycles_per_packet"].as_f64().unwrap();
            assert!(cycles > 0.0, "{} {dut}: no cycles per packet", row["mode"]);
            assert_eq!(row[dut]["best_dut_cycles_per_packet"].as_f64(), Some(cycles), "{} {dut}", row["mode"]);
        }
    }
}
