//! Malformed frames at full rate through weft's real worker (root, hugepages): a corpus of every
//! malformed class mixed with about as many valid frames is replayed from memory (`net_pcap`
//! `infinite_rx=1`) for a few seconds (`WEFT_MALFORMED_SECONDS=60` for the long run). The replay repeats
//! the corpus, so every drop reason must count exactly replays × its frames (± one partial replay) and
//! every valid frame must be forwarded: nothing crashes, every bad frame is counted under its reason,
//! valid traffic loses nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

use std::collections::BTreeMap;
use std::process::Command;

use dataplane::wire::{EthernetFrame, Ipv4Packet};
use weft_bench::frames;

type Class = (&'static str, Vec<u8>, Option<&'static str>);

fn fix_ip(f: &mut [u8], at: usize) {
    Ipv4Packet::new_unchecked(&mut f[at..]).fill_checksum();
}

fn with(base: &[u8], edit: impl Fn(&mut Vec<u8>)) -> Vec<u8> {
    let mut f = base.to_vec();
    edit(&mut f);
    f
}

/// Frames arriving on the uplink: (name, frame, expected drop reason or None for forwarded).
fn uplink_corpus() -> Vec<Class> {
    let valid = frames::decap_frames(10, 16, 64);
    let v = valid[0].clone();
    let mut c: Vec<Class> = valid.iter().map(|f| ("valid", f.clone(), None)).collect();
    let mut options = v[..34].to_vec();
    options.extend_from_slice(&[0x94, 0x04, 0x00, 0x00]); // IPv4 router-alert option
    options.extend_from_slice(&v[34..]);
    options[14] = 0x46;
    let total = (options.len() - 14) as u16;
    options[16..18].copy_from_slice(&total.to_be_bytes());
    fix_ip(&mut options, 14);
    c.push(("valid with outer IPv4 options", options, None));
    for cut in [10, 13, 20, 30, 38, 41, 46, 49, 60, 70, 83] {
        c.push(("truncated at a header boundary", v[..cut].to_vec(), Some("truncated")));
    }
    c.extend([
        ("IPv4 version 6", with(&v, |f| f[14] = 0x65), Some("bad_ip_header")),
        ("IPv4 IHL 4", with(&v, |f| f[14] = 0x44), Some("bad_ip_header")),
        (
            "IPv4 total length below the header",
            with(&v, |f| f[16..18].copy_from_slice(&[0, 12])),
            Some("bad_ip_header"),
        ),
        (
            "IPv4 total length beyond the frame",
            with(&v, |f| f[16..18].copy_from_slice(&[0x05, 0xdc])),
            Some("truncated"),
        ),
        ("IPv4 bad checksum", with(&v, |f| f[24] ^= 0x5a), Some("ip_checksum")),
        (
            "IPv4 fragment",
            with(&v, |f| {
                f[20] = 0x20;
                fix_ip(f, 14)
            }),
            Some("fragment"),
        ),
        (
            "outer not UDP",
            with(&v, |f| {
                f[23] = 6;
                fix_ip(f, 14)
            }),
            Some("not_vxlan"),
        ),
        ("UDP to another port", with(&v, |f| f[36..38].copy_from_slice(&4789u16.to_be_bytes())), Some("not_vxlan")),
        ("VXLAN I flag clear", with(&v, |f| f[42] = 0), Some("vxlan_flags")),
        (
            "VXLAN-GPE flags",
            with(&v, |f| {
                f[42] = 0x0c;
                f[45] = 3
            }),
            Some("vxlan_flags"),
        ),
        ("VXLAN reserved bits", with(&v, |f| f[49] = 1), Some("vxlan_flags")),
        ("wrong VNI", with(&v, |f| f[48] = 9), Some("wrong_vni")),
        (
            "unknown VTEP",
            with(&v, |f| {
                f[29] = 250;
                fix_ip(f, 14)
            }),
            Some("unknown_vtep"),
        ),
        (
            "inner TTL 1",
            with(&v, |f| {
                f[72] = 1;
                fix_ip(f, 64)
            }),
            Some("ttl_expired"),
        ),
        (
            "inner TTL 0",
            with(&v, |f| {
                f[72] = 0;
                fix_ip(f, 64)
            }),
            Some("ttl_expired"),
        ),
        (
            "802.1Q tagged",
            with(&v, |f| {
                f.splice(12..12, [0x81, 0x00, 0x00, 0x64]);
            }),
            Some("vlan_tagged"),
        ),
        ("IPv6", with(&v, |f| f[12..14].copy_from_slice(&[0x86, 0xdd])), Some("other_ethertype")),
        ("broadcast flood", with(&v, |f| f[0..6].copy_from_slice(&[0xff; 6])), Some("not_for_us")),
        (
            "ARP garbage",
            with(&v[..42], |f| {
                f[12..14].copy_from_slice(&[0x08, 0x06]);
                f[14] = 0x77
            }),
            Some("bad_arp"),
        ),
    ]);
    c
}

/// Frames a pod sends.
fn pod_corpus() -> Vec<Class> {
    let valid = frames::encap_frames(10, 16, 64);
    let v = valid[0].clone();
    let mut c: Vec<Class> = valid.iter().map(|f| ("valid", f.clone(), None)).collect();
    let mut big = v.clone();
    big.resize(14 + 1600, 0x5a);
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut big[14..]);
        ip.set_total_len(1600);
        ip.set_dont_frag(false);
        ip.fill_checksum();
    }
    let mut arp_out = vec![0xff; 6];
    arp_out.extend_from_slice(&v[6..12]);
    arp_out.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    arp_out.extend_from_slice(&v[6..12]);
    arp_out.extend_from_slice(&v[26..30]);
    arp_out.extend_from_slice(&[0; 6]);
    arp_out.extend_from_slice(&[8, 8, 8, 8]);
    c.extend([
        (
            "spoofed source IP",
            with(&v, |f| {
                f[29] = 99;
                fix_ip(f, 14)
            }),
            Some("spoofed_source"),
        ),
        ("spoofed source MAC", with(&v, |f| f[11] ^= 0x40), Some("spoofed_source")),
        (
            "ARP garbage",
            with(&v[..42], |f| {
                f[12..14].copy_from_slice(&[0x08, 0x06]);
                f[14] = 0x77
            }),
            Some("bad_arp"),
        ),
        ("ARP for outside the subnet", arp_out, Some("arp_ignored")),
        ("over the MTU, DF clear", big, Some("too_big")),
        (
            "TTL 1",
            with(&v, |f| {
                f[22] = 1;
                fix_ip(f, 14)
            }),
            Some("ttl_expired"),
        ),
        (
            "outside the cluster network",
            with(&v, |f| {
                f[30..34].copy_from_slice(&[8, 8, 8, 8]);
                fix_ip(f, 14)
            }),
            Some("not_overlay"),
        ),
        (
            "no node leases it",
            with(&v, |f| {
                f[30..34].copy_from_slice(&[10, 250, 0, 1]);
                fix_ip(f, 14)
            }),
            Some("no_route"),
        ),
        (
            "no such pod here",
            with(&v, |f| {
                f[30..34].copy_from_slice(&[10, 0, 0, 60]);
                fix_ip(f, 14)
            }),
            Some("no_pod"),
        ),
        ("IPv4 bad checksum", with(&v, |f| f[24] ^= 0x5a), Some("ip_checksum")),
        ("IPv6", with(&v, |f| f[12..14].copy_from_slice(&[0x86, 0xdd])), Some("other_ethertype")),
        (
            "802.1Q tagged",
            with(&v, |f| {
                f.splice(12..12, [0x81, 0x00, 0x00, 0x64]);
            }),
            Some("vlan_tagged"),
        ),
        ("truncated in the IPv4 header", v[..20].to_vec(), Some("truncated")),
    ]);
    c
}

fn run(mode: &str, corpus: &[Class]) {
    if let Err(e) = dataplane::testing::check_dpdk_preconditions(256) {
        panic!("{e}");
    }
    let seconds: u64 = std::env::var("WEFT_MALFORMED_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let dir = std::env::temp_dir().join(format!("weft-malformed-{}-{mode}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("corpus.pcap");
    std::fs::write(&pcap, dataplane::wire::pcap::write_pcap(corpus.iter().map(|c| &c.1[..]))).unwrap();
    let vdevs = [format!("net_pcap0,rx_pcap={},infinite_rx=1", pcap.display()), "net_null0,no-rx=1".to_string()];
    let eal =
        dataplane::testing::vdev_eal_args(&format!("weft-malformed-{}-{mode}", std::process::id()), "0,1", &vdevs);
    let out = Command::new(env!("CARGO_BIN_EXE_weft-fwdbench"))
        .args(["--mode", mode, "--peers", "10", "--seconds", &seconds.to_string(), "--"])
        .args(&eal)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "weft-fwdbench: {text}{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value =
        serde_json::from_str(text.lines().find_map(|l| l.strip_prefix("report: ")).unwrap()).unwrap();
    let rx = report["rx"].as_u64().unwrap();
    let n = corpus.len() as u64;
    let replays = rx / n;
    assert!(replays > 10, "only {rx} frames in {seconds} s");
    let mut want: BTreeMap<&str, u64> = BTreeMap::new();
    let mut valid = 0;
    for (_, _, reason) in corpus {
        match reason {
            Some(r) => *want.entry(r).or_default() += 1,
            None => valid += 1,
        }
    }
    eprintln!(
        "{mode}: {rx} frames ({replays} replays of {n}); forwarded {}; drops {}",
        report["forwarded"], report["drops"]
    );
    let fwd = report["forwarded"].as_u64().unwrap();
    assert!(
        (replays * valid..=(replays + 1) * valid).contains(&fwd),
        "valid frames lost: {fwd} forwarded of {replays}×{valid}"
    );
    let drops = report["drops"].as_object().unwrap();
    for (reason, k) in &want {
        let got = drops.get(*reason).and_then(|v| v.as_u64()).unwrap_or(0);
        assert!((replays * k..=(replays + 1) * k).contains(&got), "{reason}: {got} counted, {replays}×{k} expected");
    }
    for (reason, v) in drops {
        assert!(want.contains_key(reason.as_str()), "unexpected drops under {reason}: {v}");
    }
    let dropped: u64 = drops.values().filter_map(|v| v.as_u64()).sum();
    assert_eq!(dropped + fwd, rx, "every frame forwarded or counted");
    // What stays allocated after stop is the replay ring of the pcap device (one mbuf per corpus frame).
    let left = report["mempool_in_use_after_stop"].as_u64().unwrap();
    assert!(left <= n + 64, "mbufs still in use after stop: {left}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn malformed_uplink_frames_at_rate() {
    let c = uplink_corpus();
    // Sanity: the corpus is what it says (valid frames parse, classes are distinct frames).
    assert!(EthernetFrame::new_checked(&c[0].1[..]).is_ok());
    run("decap", &c);
}

#[test]
fn malformed_pod_frames_at_rate() {
    run("encap", &pod_corpus());
}
