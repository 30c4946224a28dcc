//! Fuzz targets for every wire parser and for both packet paths, as property tests: arbitrary bytes,
//! and valid frames with random bytes changed and random cut lengths, must never panic, and whatever
//! `new_checked` accepts must be safe to read in full. A short run is part of `make test`; the long run is
//! `PROPTEST_CASES=10000000 cargo test --release -p weft-dataplane --test fuzz` (see README).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

use dataplane::dpdk::PortId;
use dataplane::packet::{process_pod, process_uplink, PacketBuf, VecBuf, Verdict};
use dataplane::tables::{Node, PodEntry, Snapshot, TableInputs};
use dataplane::wire::{
    pcap::PcapReader, ArpPacket, EthernetFrame, Icmpv4Packet, Ipv4Packet, UdpPacket, Vni, VxlanPacket,
};
use proptest::prelude::*;
use weft_config::MacAddr;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(3000);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// Read every field a view offers.
fn read_all(b: &[u8]) {
    if let Ok(e) = EthernetFrame::new_checked(b) {
        let _ = (e.dst(), e.src(), e.ethertype(), e.vlan_id(), e.payload().len());
    }
    if let Ok(p) = Ipv4Packet::new_checked(b) {
        let _ = (
            p.src(),
            p.dst(),
            p.ttl(),
            p.protocol(),
            p.options().len(),
            p.payload().len(),
            p.verify_checksum(),
            p.is_fragment(),
            p.frag_offset(),
        );
    }
    if let Ok(u) = UdpPacket::new_checked(b) {
        let _ = (
            u.src_port(),
            u.dst_port(),
            u.payload().len(),
            u.verify_checksum([1, 2, 3, 4].into(), [5, 6, 7, 8].into()),
        );
    }
    if let Ok(v) = VxlanPacket::new_checked(b) {
        let _ = (v.vni(), v.check_flags(), v.payload().len());
    }
    if let Ok(a) = ArpPacket::new_checked(b) {
        let _ = (a.operation(), a.sender_ip(), a.sender_mac(), a.target_ip(), a.target_mac());
    }
    if let Ok(i) = Icmpv4Packet::new_checked(b) {
        let _ = (i.msg_type(), i.code(), i.echo_seq(), i.next_hop_mtu(), i.data().len(), i.verify_checksum());
    }
    if let Ok(r) = PcapReader::new(b) {
        for rec in r.take(64) {
            let _ = rec.map(|x| x.data.len());
        }
    }
}

fn buf(f: &[u8]) -> VecBuf {
    VecBuf::new(f)
}

/// The kernel's frame arriving at its receiver, and a pod frame leaving it, as seeds.
fn seeds() -> (Vec<u8>, Vec<u8>, dataplane::tables::Snapshot) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/kernel-vxlan-ping.pcap");
    let bytes = std::fs::read(path).unwrap();
    let frames: Vec<Vec<u8>> = PcapReader::new(&bytes).unwrap().map(|r| r.unwrap().data.to_vec()).collect();
    let vxlan = frames[0].clone();
    let mut pod = vxlan[50..].to_vec();
    pod[6..12].copy_from_slice(&[2, 0, 0, 0, 2, 2]);
    let node = Node {
        network: "10.244.0.0/16".parse().unwrap(),
        subnet: "10.244.2.0/24".parse().unwrap(),
        subnet_len: 24,
        public_ip: [192, 168, 77, 2].into(),
        uplink_mac: MacAddr([0x9a, 0xbd, 0x31, 0x40, 0x5e, 0x58]),
        vtep_mac: MacAddr([0xaa, 0xc4, 0xe1, 0x93, 0x50, 0xbd]),
        vni: Vni::new(1).unwrap(),
        vxlan_port: 8472,
        backend: weft_config::BackendType::Vxlan,
        direct_routing: false,
        udp_port: 8285,
        underlay_mtu: 1500,
        underlay_net: "192.168.77.0/24".parse().unwrap(),
        underlay_gateway: None,
    };
    let s = TableInputs {
        node,
        peers: vec![dataplane::tables::Peer {
            subnet: "10.244.1.0/24".parse().unwrap(),
            public_ip: [192, 168, 77, 1].into(),
            vtep_mac: MacAddr([0x12, 0xfa, 0x72, 0xe4, 0x41, 0xd0]),
        }],
        pods: vec![PodEntry {
            name: "p".into(),
            ip: [10, 244, 2, 2].into(),
            mac: MacAddr([2, 0, 0, 0, 2, 2]),
            port: PortId(3),
        }],
        neighbours: [([192, 168, 77, 1].into(), MacAddr([0x86, 0x0f, 0xfd, 0xd2, 0x34, 0x00]))].into_iter().collect(),
        host: None,
    }
    .build(1);
    (vxlan, pod, s)
}

/// A packet of the seeds' pod to the remote pod (the capture's inner packet the other way), which the
/// seeds' node encapsulates.
fn remote_pod_frame() -> Vec<u8> {
    let mut f = seeds().1;
    let (src, dst) = (f[26..30].to_vec(), f[30..34].to_vec());
    f[26..30].copy_from_slice(&dst);
    f[30..34].copy_from_slice(&src);
    f
}

/// [`remote_pod_frame`] as TCP or UDP (`proto`), its IPv4 checksum made right again: the first four
/// bytes of its ICMP header are then the ports that the outer UDP source port hashes.
fn remote_pod_l4_frame(proto: u8) -> Vec<u8> {
    let mut f = remote_pod_frame();
    f[23] = proto;
    set_ip_checksum(&mut f, 14, 20);
    f
}

/// Make the checksum of the IPv4 header at `at` right over its first `len` bytes, whatever its IHL
/// says (`Ipv4Packet::fill_checksum` goes by the IHL).
fn set_ip_checksum(f: &mut [u8], at: usize, len: usize) {
    f[at + 10..at + 12].copy_from_slice(&[0, 0]);
    let c = !dataplane::wire::checksum::sum(&f[at..at + len], 0);
    f[at + 10..at + 12].copy_from_slice(&c.to_be_bytes());
}

/// A fast path (`run` on the seeds' snapshot) and the full path (the same snapshot after `no_fast`
/// took the fast path's match away) give `f` the same verdict and bytes.
fn paths_agree(
    f: &[u8],
    no_fast: fn(&mut Snapshot) -> bool,
    run: fn(&mut VecBuf, &Snapshot) -> Verdict,
) -> Result<(), TestCaseError> {
    let (_, _, fast) = seeds();
    let (_, _, mut full) = seeds();
    prop_assert!(no_fast(&mut full), "the seeds' snapshot has the fast path's match");
    let (mut a, mut b) = (buf(f), buf(f));
    let (va, vb) = (run(&mut a, &fast), run(&mut b, &full));
    prop_assert_eq!(va, vb);
    prop_assert_eq!(a.data(), b.data());
    Ok(())
}

/// Encapsulation's fast path and full path (no `EncapMatch`) give `f` the same verdict and bytes.
fn encap_paths_agree(f: &[u8]) -> Result<(), TestCaseError> {
    paths_agree(f, |s| s.encap_match.take().is_some(), |m, s| process_pod(m, s, PortId(3), 7))
}

/// Decapsulation's fast path and full path (no `VxlanMatch`) give `f` the same verdict and bytes.
fn decap_paths_agree(f: &[u8]) -> Result<(), TestCaseError> {
    paths_agree(f, |s| s.vxlan_match.take().is_some(), process_uplink)
}

/// The decapsulated header's version and length byte, every value of it, with the checksum made right
/// over 20 bytes or over the length it says: only version 4 with IHL 5 takes the fast path's 20-byte
/// parse, and whatever the byte, both paths give the same verdict and bytes (the random mutations
/// seldom hit one byte with a checksum made right).
#[test]
fn decap_paths_agree_on_every_inner_version_and_length() {
    const INNER_IP: usize = 64;
    let seed = seeds().0;
    let (_, _, s) = seeds();
    assert!(matches!(process_uplink(&mut buf(&seed), &s), Verdict::ToPod(_)), "the seed is delivered to a pod");
    for b in 0..=u8::MAX {
        for fix_len in [20, usize::from(b & 0x0f) * 4] {
            let mut f = seed.clone();
            f[INNER_IP] = b;
            if fix_len > 0 && INNER_IP + fix_len <= f.len() {
                set_ip_checksum(&mut f, INNER_IP, fix_len);
            }
            if let Err(e) = decap_paths_agree(&f) {
                panic!("inner byte {b:#04x}, checksum over {fix_len}: {e}");
            }
        }
    }
    let mut f = seed.clone();
    f[INNER_IP] = 0x46;
    assert_ne!(
        process_uplink(&mut buf(&f), &s),
        process_uplink(&mut buf(&seed), &s),
        "a 24-byte header is not the seed's"
    );
}

/// The seed of the encapsulation fast path's target is encapsulated (so its mutations start from a
/// frame that takes the fast path).
#[test]
fn remote_pod_frame_is_encapsulated() {
    let (_, _, s) = seeds();
    assert_eq!(process_pod(&mut buf(&remote_pod_frame()), &s, PortId(3), 7), Verdict::ToUplink);
}

fn mutated(seed: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = seed.len();
    (proptest::collection::vec((0..len, any::<u8>()), 0..6), 0..=len).prop_map(move |(edits, cut)| {
        let mut f = seed.clone();
        for (i, b) in edits {
            f[i] = b;
        }
        f.truncate(cut);
        f
    })
}

/// A valid frame with up to four bytes of its first `head` changed (where the headers are), at its
/// length (half the cases), cut at a random length or padded with up to three bytes, and with the
/// checksums of its IPv4 headers (at `ip_at`) made right again or not.
fn mutated_head(seed: Vec<u8>, head: usize, ip_at: &'static [usize]) -> impl Strategy<Value = Vec<u8>> {
    let len = seed.len();
    let end = prop_oneof![4 => Just(len), 1 => len + 1..=len + 3, 3 => 0..len];
    (proptest::collection::vec((0..len.min(head), any::<u8>()), 0..4), end, any::<bool>()).prop_map(
        move |(edits, end, fix)| {
            let mut f = seed.clone();
            for (i, b) in edits {
                f[i] = b;
            }
            f.resize(end, 0);
            for &at in ip_at.iter().filter(|_| fix) {
                if f.len() >= at + 20 {
                    set_ip_checksum(&mut f, at, 20);
                }
            }
            f
        },
    )
}

proptest! {
    #![proptest_config(config())]

    /// VXLAN decapsulation's one-compare header check (`VxlanMatch`) gives the verdict and the bytes
    /// of the full path, for frames that match and frames that differ anywhere in their headers.
    #[test]
    fn fuzz_decap_fast_path_agrees_with_the_full_path(f in mutated_head(seeds().0, 84, &[14, 64])) {
        decap_paths_agree(&f)?;
    }

    /// Encapsulation's fast path (`EncapMatch`) gives the verdict and the bytes of the full path, for
    /// a pod's packet to a remote pod and for that packet changed anywhere in its headers.
    #[test]
    fn fuzz_encap_fast_path_agrees_with_the_full_path(f in mutated_head(remote_pod_frame(), 34, &[14])) {
        encap_paths_agree(&f)?;
    }

    /// The same for TCP and UDP, whose ports (changed too) go into the outer source port: the fast path
    /// reads them from where its 20-byte header ends, the full path from the header's length.
    #[test]
    fn fuzz_encap_fast_path_agrees_on_tcp_and_udp(
        f in prop_oneof![Just(6u8), Just(17u8)].prop_flat_map(|p| mutated_head(remote_pod_l4_frame(p), 38, &[14]))
    ) {
        encap_paths_agree(&f)?;
    }

    #[test]
    fn fuzz_wire_views_on_arbitrary_bytes(b in proptest::collection::vec(any::<u8>(), 0..200)) {
        read_all(&b);
    }

    #[test]
    fn fuzz_decap_path(f in mutated(seeds().0)) {
        let (_, _, s) = seeds();
        read_all(&f);
        let mut m = buf(&f);
        if let Verdict::ToPod(_) = process_uplink(&mut m, &s) {
            // Whatever is forwarded is a well-formed IPv4 frame for our pod.
            let e = EthernetFrame::new_checked(m.data()).unwrap();
            let ip = Ipv4Packet::new_checked(e.payload()).unwrap();
            prop_assert!(ip.verify_checksum());
            prop_assert!(s.node.subnet.contains(ip.dst()));
        }
    }

    #[test]
    fn fuzz_encap_path(f in mutated(seeds().1)) {
        let (_, _, s) = seeds();
        let mut m = buf(&f);
        if process_pod(&mut m, &s, PortId(3), 7) == Verdict::ToUplink {
            let e = EthernetFrame::new_checked(m.data()).unwrap();
            let ip = Ipv4Packet::new_checked(e.payload()).unwrap();
            prop_assert!(ip.verify_checksum());
            let u = UdpPacket::new_checked(ip.payload()).unwrap();
            prop_assert_eq!(u.dst_port(), 8472);
        }
    }

    #[test]
    fn fuzz_arbitrary_bytes_on_both_paths(b in proptest::collection::vec(any::<u8>(), 0..160)) {
        let (_, _, s) = seeds();
        let _ = process_uplink(&mut buf(&b), &s);
        let _ = process_pod(&mut buf(&b), &s, PortId(3), 1);
    }
}
