//! Malformed frames at full rate through weft's real worker (root, hugepages): a corpus of every
//! malformed class mixed with about as many valid frames is replayed from memory (`net_pcap`
//! `infinite_rx=1`) for a few seconds (`WEFT_MALFORMED_SECONDS=60` for the long run). The replay repeats
//! the corpus, so every drop reason must count exactly replays × its frames (± one partial replay) and
//! every valid frame must be forwarded: nothing crashes, every bad frame is counted under its reason,
//! valid traffic loses nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

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
    let seconds: u64 = std::env::var("WEFT_MALFORMED_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let expect: Vec<_> = corpus.iter().map(|(_, f, r)| (&f[..], *r)).collect();
    let fwdbench = std::path::Path::new(env!("CARGO_BIN_EXE_weft-fwdbench"));
    if let Err(e) = weft_bench::replay::replay_and_check(fwdbench, mode, &expect, seconds) {
        panic!("{e:#}");
    }
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
