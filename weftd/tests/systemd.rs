//! weftd under systemd: the unit passes `systemd-analyze verify`, and the notification protocol as a
//! `Type=notify` service sees it: READY=1 once weftd is ready, WATCHDOG=1 while every worker moves and
//! none while one is stalled, STOPPING=1 on SIGTERM. The notify test needs root and hugepages (the lab);
//! it is the only lab test in this binary because it sets NOTIFY_SOCKET (and flannel's healthz
//! variables, whose listener it checks) in the environment weftd inherits.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

use testkit::lab::{http_get, Lab};

const UNIT: &str = include_str!("../../config/systemd/weftd.service");

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    let dir = std::env::temp_dir().join(format!("weft-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // verify checks that ExecStart's binary exists: point it at the one just built.
    let unit = UNIT.replace("/usr/bin/weftd", env!("CARGO_BIN_EXE_weftd"));
    assert_ne!(unit, UNIT);
    let path = dir.join("weftd.service");
    std::fs::write(&path, unit).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian's systemd package)");
    let _ = std::fs::remove_dir_all(&dir);
    let said = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "systemd-analyze verify: {said}");
    let ours: Vec<&str> = said.lines().filter(|l| l.contains("weftd.service")).collect();
    assert!(ours.is_empty(), "systemd-analyze verify complains about the unit: {ours:?}");
}

/// Datagrams on the socket until `pred` holds for one, within `within`; all seen on the way.
fn wait_for(sock: &UnixDatagram, within: Duration, pred: impl Fn(&str) -> bool) -> Result<Vec<String>, Vec<String>> {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1)))).unwrap();
        let Ok(n) = sock.recv(&mut buf) else { break };
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        let done = pred(&msg);
        seen.push(msg);
        if done {
            return Ok(seen);
        }
    }
    Err(seen)
}

#[test]
fn notify_ready_watchdog_and_stopping() {
    let mut lab = Lab::new(Path::new(env!("CARGO_BIN_EXE_weftd")), Path::new(env!("CARGO_BIN_EXE_weftctl")))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let sock_path = lab.dir.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    // Inherited through `ip netns exec` by the weftd the lab starts (this binary's only test does it).
    std::env::set_var("NOTIFY_SOCKET", &sock_path);
    std::env::set_var("WATCHDOG_USEC", "1000000");
    let n1 = lab.weft_node(1).unwrap();
    // flannel's healthz listener too, through FLANNELD_ variables as flanneld's /etc/default file sets.
    std::env::set_var("FLANNELD_HEALTHZ_IP", "127.0.0.1");
    std::env::set_var("FLANNELD_HEALTHZ_PORT", "8471");
    lab.start_weftd(&n1, &[], &[]).unwrap_or_else(|e| panic!("{e:#}"));
    std::env::remove_var("FLANNELD_HEALTHZ_IP");
    std::env::remove_var("FLANNELD_HEALTHZ_PORT");
    std::env::remove_var("NOTIFY_SOCKET");
    std::env::remove_var("WATCHDOG_USEC");
    let seen = wait_for(&sock, Duration::from_secs(30), |m| m.contains("READY=1"))
        .unwrap_or_else(|s| panic!("no READY=1: {s:?}"));
    assert!(seen.last().unwrap().contains("STATUS=forwarding"), "{seen:?}");
    let (code, body) = http_get(&n1.ns, "http://127.0.0.1:8471/healthz");
    assert_eq!(code, 200, "{body}");
    assert_eq!(http_get(&n1.ns, "http://127.0.0.1:8471/readyz").0, 200);
    assert_eq!(http_get(&n1.ns, "http://127.0.0.1:8471/metrics").0, 404, "the probes' listener serves no metrics");
    // Fed at half the interval while the workers move: at least 3 pings in 2.2 s.
    let t = Instant::now();
    let mut pings = 0;
    while t.elapsed() < Duration::from_millis(2200) {
        if let Ok(s) = wait_for(&sock, Duration::from_millis(2200).saturating_sub(t.elapsed()), |m| m == "WATCHDOG=1") {
            pings += s.iter().filter(|m| *m == "WATCHDOG=1").count();
        }
    }
    assert!(pings >= 3, "{pings} watchdog pings in 2.2 s");
    // A stalled worker: the status says so and the pings stop until it moves again.
    lab.weftctl(&n1, &["debug", "pause-worker", "0", "--seconds", "4"]).unwrap();
    let seen = wait_for(&sock, Duration::from_secs(3), |m| m.contains("STATUS=workers stalled: [0]"))
        .unwrap_or_else(|s| panic!("no stalled status: {s:?}"));
    assert!(seen.iter().any(|m| m.contains("stalled")), "{seen:?}");
    let during = wait_for(&sock, Duration::from_millis(1200), |m| m == "WATCHDOG=1");
    assert!(during.is_err(), "the watchdog was fed while worker 0 was stalled: {during:?}");
    wait_for(&sock, Duration::from_secs(6), |m| m == "WATCHDOG=1")
        .unwrap_or_else(|s| panic!("pings never came back: {s:?}"));
    lab.stop_weftd(&n1.ns);
    wait_for(&sock, Duration::from_secs(10), |m| m.contains("STOPPING=1"))
        .unwrap_or_else(|s| panic!("no STOPPING=1: {s:?}"));
}
