//! The control side against a real etcd (Debian's etcd-server, started here on free loopback ports).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use weft_config::{Ipv4Net, MacAddr};
use weft_control::etcd::{start, ControlEvent, ControlHandle, EtcdConfig, Identity, RemoteLease};
use weft_control::testing::EtcdServer;

const PREFIX: &str = "/coreos.com/network";
const CONFIG: &str = r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}"#;

/// A test's own directory (subnet files), removed when the test ends, also when it fails.
struct TmpDir(PathBuf);

impl std::ops::Deref for TmpDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tmpdir(tag: &str) -> TmpDir {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let d = std::env::temp_dir().join(format!("weft-ctl-{}-{tag}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    TmpDir(d)
}

fn identity(ip: u8, dir: &std::path::Path) -> Identity {
    Identity {
        public_ip: Ipv4Addr::new(192, 168, 77, ip),
        vtep_mac: MacAddr([0x02, 0x77, 0, 0, 0, ip]),
        underlay_mtu: 1500,
        subnet_file: dir.join(format!("subnet-{ip}.env")),
        ipmasq: false,
        lease_ttl: Duration::from_secs(24 * 3600),
        renew_margin: Duration::from_secs(3600),
    }
}

fn node(etcd: &EtcdServer, id: Identity) -> ControlHandle {
    start(EtcdConfig { endpoints: etcd.endpoints(), ..EtcdConfig::default() }, id)
}

fn etcd_with_config(config: &str) -> EtcdServer {
    let e = EtcdServer::start().unwrap_or_else(|e| panic!("{e}"));
    e.put(&format!("{PREFIX}/config"), config).unwrap();
    e
}

fn key(subnet: Ipv4Net) -> String {
    format!("{PREFIX}/subnets/{}-{}", subnet.addr(), subnet.prefix_len())
}

/// Wait for a Peers event that satisfies `pred`.
/// `start` is the set known so far (from `wait_acquired`).
fn wait_peers(
    h: &ControlHandle,
    start: &[RemoteLease],
    timeout: Duration,
    pred: impl Fn(&[RemoteLease]) -> bool,
) -> Vec<RemoteLease> {
    if pred(start) {
        return start.to_vec();
    }
    let deadline = Instant::now() + timeout;
    let mut last = start.to_vec();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match h.events.recv_timeout(left) {
            Ok(ControlEvent::Peers(p)) => {
                if pred(&p) {
                    return p;
                }
                last = p;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    panic!("no matching peer set within {timeout:?}; last: {last:?}");
}

fn lease_value(ip: &str, mac: &str) -> String {
    format!(
        r#"{{"PublicIP":"{ip}","PublicIPv6":null,"BackendType":"vxlan","BackendData":{{"VNI":1,"VtepMAC":"{mac}"}}}}"#
    )
}

#[test]
fn acquire_writes_flannels_lease_and_subnet_file() {
    let etcd = etcd_with_config(CONFIG);
    let dir = tmpdir("acquire");
    let id = identity(1, &dir);
    let h = node(&etcd, id.clone());
    let (net, subnet, _) = h.wait_acquired(Duration::from_secs(20)).unwrap();
    assert_eq!(net.network.to_string(), "10.244.0.0/16");
    assert!(
        net.network.contains_net(&subnet) && subnet.prefix_len() == 24 && subnet.addr() != Ipv4Addr::new(10, 244, 0, 0)
    );
    let value = etcd.get(&key(subnet)).unwrap().unwrap();
    assert_eq!(value, lease_value("192.168.77.1", "02:77:00:00:00:01"), "exactly flanneld's JSON");
    // Attached to an etcd lease of about 24 h.
    let json = etcd.etcdctl(&["get", &key(subnet), "-w", "json"]).unwrap();
    let lease_id: i64 =
        json.split("\"lease\":").nth(1).unwrap().split([',', '}']).next().unwrap().trim().parse().unwrap();
    assert_ne!(lease_id, 0);
    let ttl = etcd.etcdctl(&["lease", "timetolive", &format!("{lease_id:x}")]).unwrap();
    let secs: i64 = ttl.split("remaining(").nth(1).unwrap().split('s').next().unwrap().parse().unwrap();
    assert!(secs > 23 * 3600, "{ttl}");
    let file = std::fs::read_to_string(&id.subnet_file).unwrap();
    assert_eq!(
        file,
        format!(
            "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET={}/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n",
            subnet.first_host()
        )
    );
    h.stop();
}

#[test]
fn waits_for_the_network_config() {
    let etcd = EtcdServer::start().unwrap();
    let dir = tmpdir("wait");
    let h = node(&etcd, identity(1, &dir));
    assert!(h.wait_acquired(Duration::from_secs(2)).is_err(), "no config yet: no lease");
    etcd.put(&format!("{PREFIX}/config"), CONFIG).unwrap();
    h.wait_acquired(Duration::from_secs(10)).unwrap();
}

#[test]
fn renews_a_short_lease() {
    let etcd = etcd_with_config(CONFIG);
    let dir = tmpdir("renew");
    let mut id = identity(1, &dir);
    id.lease_ttl = Duration::from_secs(4);
    id.renew_margin = Duration::from_secs(2);
    let h = node(&etcd, id);
    let (_, subnet, _) = h.wait_acquired(Duration::from_secs(10)).unwrap();
    std::thread::sleep(Duration::from_secs(10));
    assert!(etcd.get(&key(subnet)).unwrap().is_some(), "renewed past 2.5 TTLs");
    assert_eq!(h.status.reacquired.load(std::sync::atomic::Ordering::Relaxed), 0, "renewed, not re-taken");
    h.stop();
}

#[test]
fn restart_keeps_subnet_and_vtep_mac() {
    let etcd = etcd_with_config(CONFIG);
    let dir = tmpdir("restart");
    let h = node(&etcd, identity(1, &dir));
    let (_, first, _) = h.wait_acquired(Duration::from_secs(10)).unwrap();
    h.stop();
    let h = node(&etcd, identity(1, &dir));
    let (_, again, _) = h.wait_acquired(Duration::from_secs(10)).unwrap();
    assert_eq!(first, again);
    assert_eq!(etcd.keys(&format!("{PREFIX}/subnets/")).unwrap().len(), 1);
    assert!(etcd.get(&key(again)).unwrap().unwrap().contains("02:77:00:00:00:01"));
}

#[test]
fn racing_nodes_end_on_different_subnets() {
    let etcd = etcd_with_config(CONFIG);
    let dir = tmpdir("race");
    // Both remember the same subnet from a previous life: both try it first, one wins the transaction.
    for ip in [1, 2] {
        std::fs::write(
            dir.join(format!("subnet-{ip}.env")),
            "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.7.1/24\n",
        )
        .unwrap();
    }
    let a = node(&etcd, identity(1, &dir));
    let b = node(&etcd, identity(2, &dir));
    let (_, sa, pa) = a.wait_acquired(Duration::from_secs(10)).unwrap();
    let (_, sb, _) = b.wait_acquired(Duration::from_secs(10)).unwrap();
    assert_ne!(sa, sb);
    assert!(sa.to_string() == "10.244.7.0/24" || sb.to_string() == "10.244.7.0/24");
    assert_eq!(etcd.keys(&format!("{PREFIX}/subnets/")).unwrap().len(), 2);
    // Each sees the other as its peer.
    wait_peers(&a, &pa, Duration::from_secs(5), |p| p.iter().any(|x| x.subnet == sb));
}

#[test]
fn peers_skip_garbage_host_gw_and_honour_reservations() {
    let etcd = etcd_with_config(
        r#"{"Network":"10.244.0.0/16","SubnetMin":"10.244.1.0","SubnetMax":"10.244.6.0","Backend":{"Type":"vxlan"}}"#,
    );
    let s = |i: u8| format!("{PREFIX}/subnets/10.244.{i}.0-24");
    etcd.put(&s(1), "{not json").unwrap();
    etcd.put(&s(2), r#"{"PublicIP":"192.168.77.22","BackendType":"host-gw"}"#).unwrap();
    etcd.put(
        &s(3),
        r#"{"publicip":"192.168.77.33","backendtype":"vxlan","backenddata":{"vni":1,"vtepmac":"02:00:00:00:00:33"}}"#,
    )
    .unwrap();
    // A reservation: no etcd lease, held forever, a real peer all the same.
    etcd.put(&s(4), &lease_value("192.168.77.44", "02:00:00:00:00:44")).unwrap();
    etcd.put(&format!("{PREFIX}/subnets/garbage-key"), "x").unwrap();
    etcd.put(&s(5), &lease_value("192.168.77.55", "02:00:00:00:00:55")).unwrap();
    let dir = tmpdir("garbage");
    let h = node(&etcd, identity(1, &dir));
    let (_, subnet, start) = h.wait_acquired(Duration::from_secs(10)).unwrap();
    assert_eq!(
        subnet.to_string(),
        "10.244.6.0/24",
        "the only free subnet: garbage, host-gw and reservations hold theirs"
    );
    let peers = wait_peers(&h, &start, Duration::from_secs(5), |p| p.len() == 3);
    let mut got: Vec<String> = peers.iter().map(|p| format!("{} {} {}", p.subnet, p.public_ip, p.vtep_mac)).collect();
    got.sort();
    assert_eq!(
        got,
        [
            "10.244.3.0/24 192.168.77.33 02:00:00:00:00:33",
            "10.244.4.0/24 192.168.77.44 02:00:00:00:00:44",
            "10.244.5.0/24 192.168.77.55 02:00:00:00:00:55"
        ]
    );
    assert!(h.status.bad_values.load(std::sync::atomic::Ordering::Relaxed) >= 2);
    // A peer's value turning to garbage keeps its last good value; deleting it removes the peer.
    etcd.put(&s(5), "garbage").unwrap();
    etcd.delete(&s(3)).unwrap();
    let peers = wait_peers(&h, &[], Duration::from_secs(5), |p| p.len() == 2);
    assert!(peers.iter().any(|p| p.public_ip == Ipv4Addr::new(192, 168, 77, 55)));
}

#[test]
fn our_deleted_key_is_taken_again() {
    let etcd = etcd_with_config(CONFIG);
    let dir = tmpdir("deleted");
    let h = node(&etcd, identity(1, &dir));
    let (_, subnet, _) = h.wait_acquired(Duration::from_secs(10)).unwrap();
    etcd.delete(&key(subnet)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while etcd.get(&key(subnet)).unwrap().is_none() {
        assert!(Instant::now() < deadline, "our lease was not taken again");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(etcd.get(&key(subnet)).unwrap().unwrap(), lease_value("192.168.77.1", "02:77:00:00:00:01"));
    assert_eq!(h.status.reacquired.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[test]
fn watch_survives_compaction_and_etcd_restart() {
    let mut etcd = etcd_with_config(CONFIG);
    let dir = tmpdir("compact");
    let h = node(&etcd, identity(1, &dir));
    h.wait_acquired(Duration::from_secs(10)).unwrap();
    let s = |i: u8| format!("{PREFIX}/subnets/10.244.{i}.0-24");
    for round in 0..20u8 {
        etcd.put(&s(100), &lease_value(&format!("192.168.77.{}", 100 + round), "02:00:00:00:00:64")).unwrap();
    }
    etcd.compact().unwrap();
    etcd.put(&s(101), &lease_value("192.168.77.101", "02:00:00:00:00:65")).unwrap();
    wait_peers(&h, &[], Duration::from_secs(5), |p| {
        p.len() == 2 && p.iter().any(|x| x.public_ip == Ipv4Addr::new(192, 168, 77, 119))
    });

    // etcd dies: nothing happens to what we have; it comes back: changes made meanwhile arrive.
    etcd.members[0].kill();
    std::thread::sleep(Duration::from_secs(2));
    assert!(!h.status.connected.load(std::sync::atomic::Ordering::Relaxed));
    etcd.members[0].restart().unwrap();
    etcd.wait_healthy(Duration::from_secs(20)).unwrap();
    etcd.delete(&s(100)).unwrap();
    etcd.put(&s(102), &lease_value("192.168.77.102", "02:00:00:00:00:66")).unwrap();
    etcd.compact().unwrap();
    wait_peers(&h, &[], Duration::from_secs(15), |p| {
        let ips: Vec<_> = p.iter().map(|x| x.public_ip.octets()[3]).collect();
        ips.len() == 2 && ips.contains(&101) && ips.contains(&102)
    });
}

#[test]
fn three_member_cluster_loses_one_member() {
    let mut etcd = EtcdServer::cluster(3).unwrap();
    etcd.put(&format!("{PREFIX}/config"), CONFIG).unwrap();
    let dir = tmpdir("cluster");
    let mut id = identity(1, &dir);
    id.lease_ttl = Duration::from_secs(6);
    id.renew_margin = Duration::from_secs(3);
    let h = node(&etcd, id);
    let (_, subnet, _) = h.wait_acquired(Duration::from_secs(15)).unwrap();
    for victim in 0..3 {
        etcd.members[victim].kill();
        let s = format!("{PREFIX}/subnets/10.244.{}.0-24", 200 + victim);
        etcd.put(&s, &lease_value(&format!("192.168.77.{}", 200 + victim), "02:00:00:00:00:c8")).unwrap();
        wait_peers(&h, &[], Duration::from_secs(15), |p| {
            p.iter().any(|x| x.public_ip.octets()[3] == 200 + victim as u8)
        });
        etcd.members[victim].restart().unwrap();
        etcd.wait_healthy(Duration::from_secs(20)).unwrap();
    }
    assert!(etcd.get(&key(subnet)).unwrap().is_some(), "lease renewed throughout");
    assert_eq!(h.status.reacquired.load(std::sync::atomic::Ordering::Relaxed), 0);
}

#[test]
fn a_joining_node_gets_the_existing_peers() {
    let etcd = etcd_with_config(CONFIG);
    let dir = tmpdir("join");
    let a = node(&etcd, identity(1, &dir));
    let (_, sa, _) = a.wait_acquired(Duration::from_secs(10)).unwrap();
    let b = node(&etcd, identity(2, &dir));
    let (_, _, pb) = b.wait_acquired(Duration::from_secs(10)).unwrap();
    let got = wait_peers(&b, &pb, Duration::from_secs(5), |p| p.iter().any(|x| x.subnet == sa));
    assert_eq!(got.len(), 1);
}

#[test]
fn another_node_claiming_our_subnet_is_reported_not_fought() {
    let etcd = etcd_with_config(CONFIG);
    let dir = tmpdir("claim");
    let h = node(&etcd, identity(1, &dir));
    let (_, subnet, _) = h.wait_acquired(Duration::from_secs(10)).unwrap();
    etcd.put(&key(subnet), &lease_value("192.168.77.66", "02:00:00:00:00:66")).unwrap();
    let t0 = Instant::now();
    while h.status.claimed_by.load(std::sync::atomic::Ordering::Relaxed) != u32::from(Ipv4Addr::new(192, 168, 77, 66)) {
        assert!(t0.elapsed() < Duration::from_secs(5), "claim not noticed");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(h.status.conflicts.load(std::sync::atomic::Ordering::Relaxed), 1);
    std::thread::sleep(Duration::from_secs(1));
    assert!(etcd.get(&key(subnet)).unwrap().unwrap().contains("192.168.77.66"), "weft does not fight over the key");
    // The other node goes away (its key deleted): weft takes its subnet back.
    etcd.delete(&key(subnet)).unwrap();
    let t0 = Instant::now();
    while etcd.get(&key(subnet)).unwrap().is_none_or(|v| !v.contains("192.168.77.1\"")) {
        assert!(t0.elapsed() < Duration::from_secs(10), "not taken back");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(h.status.claimed_by.load(std::sync::atomic::Ordering::Relaxed), 0);
}

#[test]
fn oversized_values_and_a_compaction_storm() {
    let etcd = etcd_with_config(CONFIG);
    let dir = tmpdir("storm");
    let h = node(&etcd, identity(1, &dir));
    let (_, _, start) = h.wait_acquired(Duration::from_secs(10)).unwrap();
    // A value of 1 MiB of garbage (etcd's request limit is 1.5 MiB): logged, counted, skipped.
    let big = "x".repeat(1 << 20);
    let file = dir.join("big");
    std::fs::write(&file, &big).unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ETCDCTL_API=3 etcdctl --endpoints={} put {PREFIX}/subnets/10.244.77.0-24 < {}",
            etcd.endpoints()[0],
            file.display()
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // A compaction storm: 50 rounds of churn, each followed by a compaction.
    for round in 0..50u8 {
        etcd.put(
            &format!("{PREFIX}/subnets/10.244.200.0-24"),
            &lease_value(&format!("192.168.77.{}", round + 100), "02:00:00:00:00:c8"),
        )
        .unwrap();
        etcd.compact().unwrap();
    }
    let peers = wait_peers(&h, &start, Duration::from_secs(10), |p| {
        p.iter().any(|x| x.public_ip == Ipv4Addr::new(192, 168, 77, 149))
    });
    assert_eq!(peers.len(), 1, "the garbage key is not a peer: {peers:?}");
    assert!(h.status.bad_values.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    // No hot loop (flannel #2470): a live watch is not cancelled by compactions behind it.
    let resyncs = h.status.resyncs.load(std::sync::atomic::Ordering::Relaxed);
    assert!(resyncs <= 2, "{resyncs} re-lists for 50 compactions");
}
