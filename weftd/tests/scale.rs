//! Hundreds of pods on one node (root, hugepages): 250 vhost-user pods through DPDK's vhost library
//! (their drivers: eight `dpdk-testpmd` processes of up to 32 virtio-user ports, DPDK's port limit), and
//! 250 veth pods riding the host port; every pod answers a kernel flannel node's pod, and pods churn
//! next to the 250 without a leak or a lost packet. Attach and detach times and memory per pod are
//! printed (run with `--nocapture`; `WEFT_CHURN_CYCLES=1000` for the long churn).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use testkit::lab::{exec, AsPeer, KernelNode, Lab, TestpmdProcess, WeftNode};

/// Labs are named by the process id: one at a time.
static ONE_LAB_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

const PODS: usize = 250;

fn new_lab() -> Lab {
    Lab::new(Path::new(env!("CARGO_BIN_EXE_weftd")), Path::new(env!("CARGO_BIN_EXE_weftctl")))
        .unwrap_or_else(|e| panic!("{e:#}"))
}

fn churn_cycles() -> usize {
    std::env::var("WEFT_CHURN_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(100)
}

/// weftd's resident memory, kB.
fn rss_kb(pid: u32) -> u64 {
    testkit::lab::rss_kib(pid).unwrap_or(0)
}

/// Ping every address from `ns` (a shell loop: one fork per address, not one per test step), up to
/// `tries` times; the addresses that did not answer within 2 s on any try. A second try is for first
/// contact (a driver still connecting, a neighbour being resolved); once everything answered, one.
fn unanswered(ns: &str, ips: &[Ipv4Addr], tries: usize) -> Vec<Ipv4Addr> {
    let list: Vec<String> = ips.iter().map(ToString::to_string).collect();
    let once = "ping -n -q -c 1 -W 2 $ip >/dev/null";
    let script = format!("for ip in {}; do {} || echo $ip; done", list.join(" "), vec![once; tries].join(" || "));
    let out = exec(ns, &["sh", "-c", &script]).unwrap();
    String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// Background traffic to one pod while the others churn: `count` pings 50 ms apart, each answer awaited
/// up to 2 s (a count, not a deadline: a deadline would count the last ping in flight as lost).
fn ping_during(ns: &str, to: Ipv4Addr, count: usize) -> std::process::Child {
    std::process::Command::new("ip")
        .args(["netns", "exec", ns, "ping", "-n", "-q", "-i", "0.05", "-W", "2", "-c", &count.to_string()])
        .arg(to.to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

fn ping_result(child: std::process::Child) -> (u32, u32) {
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.contains("transmitted")).unwrap_or_default().to_owned();
    let n = |word: &str| -> u32 {
        let parts: Vec<&str> = line.split(',').collect();
        parts.iter().find(|p| p.contains(word)).and_then(|p| p.split_whitespace().next()?.parse().ok()).unwrap_or(0)
    };
    (n("transmitted"), n("received"))
}

/// A weft node sized for the pods, a kernel node, weftd's pid and its resident memory before any pod.
fn node() -> (Lab, WeftNode, KernelNode, u32, u64) {
    let mut lab = new_lab();
    let n1 = lab.weft_node(1).unwrap();
    let k3 = lab.kernel_node(3, &[n1.peer()]).unwrap();
    lab.start_weftd(&n1, &[k3.peer()], &["--max-vhost-pods", "256"]).unwrap();
    let pid = lab.pid_of(&n1.ns).unwrap();
    let rss = rss_kb(pid);
    (lab, n1, k3, pid, rss)
}

/// What the scale tests measured (`--nocapture` shows it).
fn report(kind: &str, attach: Duration, detach: Duration, rss0: u64, rss_attached: u64, more: &str, churn: Duration) {
    let each = |d: Duration| d.as_secs_f64() * 1000.0 / PODS as f64;
    let grew = rss_attached.saturating_sub(rss0);
    eprintln!(
        "{kind} pods: {PODS} attached in {:.2} s ({:.1} ms each, weftctl included), detached in {:.2} s ({:.1} ms \
         each); weftd RSS {rss0} kB, +{grew} kB attached ({:.1} kB a pod) {more}; churn {} cycles in {:.1} s",
        attach.as_secs_f64(),
        each(attach),
        detach.as_secs_f64(),
        each(detach),
        grew as f64 / PODS as f64,
        CHURNED.load(std::sync::atomic::Ordering::Relaxed),
        churn.as_secs_f64(),
    );
}

fn mbufs_in_use(lab: &Lab, n: &WeftNode) -> u64 {
    lab.weftctl(n, &["status"]).unwrap()["mempool"]["in_use"].as_u64().unwrap()
}

/// The churn: one pod of `kind` added and deleted `cycles` times next to the others while `watch`
/// answers pings without a loss; mbufs in use come back to where they were.
fn churn(lab: &mut Lab, n1: &WeftNode, k3: &KernelNode, kind: &str, watch: Ipv4Addr) -> Duration {
    let cycles = churn_cycles();
    let ns = lab.ns_name("churn");
    if kind == "veth" {
        lab.add_ns(&ns).unwrap();
    }
    let before = mbufs_in_use(lab, n1);
    let mut bg = ping_during(&k3.pod_ns, watch, 2 * cycles.max(50));
    let t0 = Instant::now();
    // At least `cycles`, and on for as long as the watched pod is pinged.
    let mut i = 0;
    while i < cycles || matches!(bg.try_wait(), Ok(None)) {
        let mut args = vec!["pod", "add", "churn", "--kind", kind];
        if kind == "veth" {
            args.extend(["--netns", &ns]);
        }
        lab.weftctl(n1, &args).unwrap_or_else(|e| panic!("cycle {i}: {e:#}"));
        lab.weftctl(n1, &["pod", "del", "churn"]).unwrap_or_else(|e| panic!("cycle {i}: {e:#}"));
        i += 1;
    }
    let took = t0.elapsed();
    let (sent, got) = ping_result(bg);
    assert!(sent > 0 && got == sent, "{kind} churn: the watched pod {watch} answered {got} of {sent} in {i} cycles");
    let after = mbufs_in_use(lab, n1);
    assert!(after <= before + 64, "{kind} churn: mbufs in use {before} -> {after} after {cycles} cycles");
    CHURNED.store(i, std::sync::atomic::Ordering::Relaxed);
    took
}

/// How many cycles the last churn made (at least `churn_cycles()`).
static CHURNED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[test]
fn two_hundred_fifty_vhost_pods() {
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (mut lab, n1, k3, pid, rss0) = node();
    let t0 = Instant::now();
    let mut pods = Vec::new();
    for i in 0..PODS {
        let info = lab.weftctl(&n1, &["pod", "add", &format!("vh{i}"), "--kind", "vhost"]).unwrap();
        pods.push((
            info["iface"].as_str().unwrap().to_owned(),
            info["mac"].as_str().unwrap().to_owned(),
            info["ip"].as_str().unwrap().parse::<Ipv4Addr>().unwrap(),
        ));
    }
    let attach = t0.elapsed();
    let rss_attached = rss_kb(pid);
    // Their drivers: 32 virtio-user ports per testpmd, all of them on CPU 0 (weft's worker has CPU 1).
    let proc = TestpmdProcess { lcores: "(0,1)@0", mem_mb: 128, ..Default::default() };
    for (k, chunk) in pods.chunks(32).enumerate() {
        let list: Vec<(&str, &str)> = chunk.iter().map(|(s, m, _)| (s.as_str(), m.as_str())).collect();
        lab.spawn_testpmd_pods(&n1.ns, &format!("tp{k}"), &list, false, &proc).unwrap();
    }
    let ips: Vec<Ipv4Addr> = pods.iter().map(|p| p.2).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut left = ips.clone();
    while !left.is_empty() && Instant::now() < deadline {
        left = unanswered(&k3.pod_ns, &left, 2);
    }
    let status = lab.weftctl(&n1, &["status"]).unwrap();
    assert!(left.is_empty(), "{} of {PODS} vhost pods never answered: {left:?}\n{status:#}", left.len());
    let rss_connected = rss_kb(pid);
    // All at once, after all of them connected: no pod is lost to another's traffic, not one ping.
    let lost = unanswered(&k3.pod_ns, &ips, 1);
    assert!(lost.is_empty(), "second round: {lost:?}");
    let ports = status["ports"].as_array().unwrap();
    assert_eq!(ports.iter().filter(|p| p["kind"] == "vhost").count(), PODS);

    let churn_took = churn(&mut lab, &n1, &k3, "vhost", ips[PODS / 2]);

    let t0 = Instant::now();
    for i in 0..PODS {
        lab.weftctl(&n1, &["pod", "del", &format!("vh{i}")]).unwrap();
    }
    let detach = t0.elapsed();
    let st = lab.weftctl(&n1, &["status"]).unwrap();
    assert_eq!(st["tables"]["pods"], 0, "{st:#}");
    let connected = format!(
        "+{} kB with drivers connected ({:.1} kB a pod)",
        rss_connected.saturating_sub(rss0),
        rss_connected.saturating_sub(rss0) as f64 / PODS as f64
    );
    report("vhost", attach, detach, rss0, rss_attached, &connected, churn_took);
}

#[test]
fn two_hundred_fifty_veth_pods() {
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (mut lab, n1, k3, pid, rss0) = node();
    let mut names = Vec::new();
    for i in 0..PODS {
        let ns = lab.ns_name(&format!("v{i}"));
        lab.add_ns(&ns).unwrap();
        names.push(ns);
    }
    let t0 = Instant::now();
    let mut ips = Vec::new();
    for (i, ns) in names.iter().enumerate() {
        let info = lab.weftctl(&n1, &["pod", "add", &format!("v{i}"), "--kind", "veth", "--netns", ns]).unwrap();
        ips.push(info["ip"].as_str().unwrap().parse::<Ipv4Addr>().unwrap());
    }
    let attach = t0.elapsed();
    let rss_attached = rss_kb(pid);
    let lost = unanswered(&k3.pod_ns, &ips, 2);
    assert!(lost.is_empty(), "{} of {PODS} veth pods did not answer: {lost:?}", lost.len());
    // The workers poll the same queues as with no pod: veth pods have no port.
    let status = lab.weftctl(&n1, &["status"]).unwrap();
    assert_eq!(status["ports"].as_array().unwrap().len(), 2, "uplink and host port only: {status:#}");
    let churn_took = churn(&mut lab, &n1, &k3, "veth", ips[PODS / 2]);
    let t0 = Instant::now();
    for i in 0..PODS {
        lab.weftctl(&n1, &["pod", "del", &format!("v{i}")]).unwrap();
    }
    let detach = t0.elapsed();
    let links = String::from_utf8_lossy(&exec(&n1.ns, &["ip", "-o", "link"]).unwrap().stdout).into_owned();
    assert!(!links.contains("wv-"), "every veth pair is gone: {links}");
    report("veth", attach, detach, rss0, rss_attached, "", churn_took);
}
