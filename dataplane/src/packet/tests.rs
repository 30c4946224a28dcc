use std::net::Ipv4Addr;

use super::*;
use crate::tables::tests::{inputs, node1, peer2, NODE2_UPLINK};
use crate::tables::{Node, Peer, PodEntry, TableInputs};
use testkit::fixtures::kernel_vxlan_ping;

const POD_A_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 1, 2]);
const POD_B_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 2, 2]);
const POD_A_PORT: PortId = PortId(1);
const POD_B_PORT: PortId = PortId(3);

/// Node 2 of the fixture, which received frame 0, with pod 10.244.2.2 on port 3.
fn node2_inputs() -> TableInputs {
    let n1 = node1();
    TableInputs {
        node: Node {
            subnet: "10.244.2.0/24".parse().unwrap(),
            public_ip: Ipv4Addr::new(192, 168, 77, 2),
            uplink_mac: NODE2_UPLINK,
            vtep_mac: peer2().vtep_mac,
            ..n1.clone()
        },
        peers: vec![Peer { subnet: n1.subnet, public_ip: n1.public_ip, vtep_mac: n1.vtep_mac }],
        pods: vec![PodEntry {
            name: "pod-b".into(),
            ip: Ipv4Addr::new(10, 244, 2, 2),
            mac: POD_B_MAC,
            port: POD_B_PORT,
        }],
        neighbours: [(n1.public_ip, n1.uplink_mac)].into_iter().collect(),
        host: None,
    }
}

/// The ICMP echo request pod 10.244.1.2 sent before its node routed it (TTL 64), as an Ethernet frame
/// from the pod to its gateway.
fn pod_a_echo_frame() -> Vec<u8> {
    let k = &kernel_vxlan_ping()[0];
    let mut f = Vec::new();
    f.extend_from_slice(&node1().vtep_mac.0); // to the gateway
    f.extend_from_slice(&POD_A_MAC.0);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&k[64..]);
    let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
    ip.set_ttl(64);
    ip.fill_checksum();
    f
}

fn verdict_of(frame: &[u8], s: &Snapshot) -> (Verdict, Vec<u8>) {
    let mut b = VecBuf::new(frame);
    let v = process_uplink(&mut b, s);
    (v, b.data().to_vec())
}

#[test]
fn decap_kernel_frame_to_pod() {
    let s = node2_inputs().build(1);
    let k = &kernel_vxlan_ping()[0];
    let (v, out) = verdict_of(k, &s);
    assert_eq!(v, Verdict::ToPod(POD_B_PORT));
    assert_eq!(out.len(), k.len() - 50);
    let eth = EthernetFrame::new_checked(&out[..]).unwrap();
    assert_eq!((eth.dst(), eth.src()), (POD_B_MAC, s.node.gateway_mac()));
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert_eq!(ip.ttl(), 62, "63 on the wire, routed once more at the receiving node");
    assert!(ip.verify_checksum());
    assert_eq!(ip.payload(), &k[64 + 20..], "payload untouched");
}

/// The kernel's frame takes the one-compare path (so the fuzz target comparing it with the full path
/// compares something), with the full path's verdict and bytes; a frame whose VNI, port or MAC is not
/// ours, or whose checksum or sender is wrong, does not.
#[test]
fn decap_fast_path_takes_the_kernel_frame_and_nothing_else() {
    let s = node2_inputs().build(1);
    let vm = s.vxlan_match.expect("a VXLAN node has a header match");
    let k = &kernel_vxlan_ping()[0];
    let mut b = VecBuf::new(k);
    let fast = vxlan_fast(&mut b, &vm, s.cached(&mut PathCache::default()));
    assert_eq!(fast, Some(verdict_of(k, &s).0));
    assert_eq!(b.data(), &verdict_of(k, &s).1[..]);
    let mut full = node2_inputs().build(1);
    full.vxlan_match = None;
    assert_eq!(verdict_of(k, &full), verdict_of(k, &s));
    for (what, at, fix) in [
        ("VNI", 48, false),
        ("UDP port", 37, false),
        ("our MAC", 0, false),
        ("inner MAC", 52, false),
        ("checksum", 25, false),
        ("sender", 29, true),
        ("total length", 17, true),
        ("UDP length", 39, true),
    ] {
        let f = mutate(|f| {
            f[at] ^= 1;
            if fix {
                fix_outer_checksum(f);
            }
        });
        let mut b = VecBuf::new(&f);
        assert_eq!(vxlan_fast(&mut b, &vm, s.cached(&mut PathCache::default())), None, "{what}");
        assert_eq!(verdict_of(&f, &s), verdict_of(&f, &full), "{what}");
    }
}

/// Compare weft's encapsulation with the kernel's for the same inner packet. Fields that may differ:
/// the outer UDP source port (both hash the flow, with different hash functions) and the outer UDP
/// checksum (the kernel's capture holds a partial offload sum; weft sends zero, RFC 7348 §5).
#[test]
fn encap_matches_kernel_frame() {
    let s = inputs().build(1);
    let mut b = VecBuf::new(&pod_a_echo_frame());
    // The kernel's outer IP identification in the capture, so that field compares too.
    let v = process_pod(&mut b, &s, POD_A_PORT, 59492);
    assert_eq!(v, Verdict::ToUplink);
    let got = b.data();
    let want = &kernel_vxlan_ping()[0];
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
        let may_differ = matches!(i, 34 | 35 | 40 | 41);
        if !may_differ {
            assert_eq!(g, w, "byte {i}");
        }
    }
    let ip = Ipv4Packet::new_checked(&got[14..]).unwrap();
    assert!(ip.verify_checksum());
    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
    assert!((32768..61000).contains(&udp.src_port()));
    assert_eq!(udp.checksum(), 0);
}

#[test]
fn roundtrip_encap_then_decap() {
    let s1 = inputs().build(1);
    let s2 = node2_inputs().build(1);
    let mut b = VecBuf::new(&pod_a_echo_frame());
    assert_eq!(process_pod(&mut b, &s1, POD_A_PORT, 1), Verdict::ToUplink);
    assert_eq!(process_uplink(&mut b, &s2), Verdict::ToPod(POD_B_PORT));
    let ip = Ipv4Packet::new_checked(&b.data()[14..]).unwrap();
    assert_eq!((ip.ttl(), ip.src(), ip.dst()), (62, Ipv4Addr::new(10, 244, 1, 2), Ipv4Addr::new(10, 244, 2, 2)));
}

#[test]
fn encap_trims_ethernet_padding() {
    let s = inputs().build(1);
    let mut f = pod_a_echo_frame();
    f.truncate(14 + 28);
    let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
    ip.set_total_len(28);
    ip.fill_checksum();
    f.resize(60, 0); // padded to the Ethernet minimum
    let mut b = VecBuf::new(&f);
    assert_eq!(process_pod(&mut b, &s, POD_A_PORT, 1), Verdict::ToUplink);
    assert_eq!(b.data().len(), 50 + 14 + 28);
    assert_eq!(Ipv4Packet::new_checked(&b.data()[14..]).unwrap().total_len() as usize, 20 + 8 + 8 + 14 + 28);
}

fn pod_verdict_of(frame: &[u8], s: &Snapshot, port: PortId) -> (Verdict, Vec<u8>) {
    let mut b = VecBuf::new(frame);
    let v = process_pod(&mut b, s, port, 7);
    (v, b.data().to_vec())
}

/// A pod's plain packet to a remote pod takes the encapsulation fast path with the full path's verdict
/// and bytes; a frame that is anything else (padded, options, TTL 1, spoofed, to our own subnet or out
/// of the cluster, a bad checksum, too big, from another port, an unresolved peer) does not.
#[test]
fn encap_fast_path_takes_the_pod_frame_and_nothing_else() {
    let s = inputs().build(1);
    let em = s.encap_match.expect("a VXLAN node has encap checks");
    let f = pod_a_echo_frame();
    let mut b = VecBuf::new(&f);
    let fast = encap_fast(&mut b, &em, POD_A_PORT, 7, s.cached(&mut PathCache::default()));
    assert_eq!(fast, Some(Verdict::ToUplink));
    let mut full = inputs().build(1);
    full.encap_match = None;
    assert_eq!(pod_verdict_of(&f, &full, POD_A_PORT), (Verdict::ToUplink, b.data().to_vec()));
    let fixed = |g: &mut Vec<u8>| Ipv4Packet::new_unchecked(&mut g[14..]).fill_checksum();
    let pod_mutate = |m: &dyn Fn(&mut Vec<u8>)| {
        let mut g = pod_a_echo_frame();
        m(&mut g);
        g
    };
    let too_big = |g: &mut Vec<u8>| {
        g.resize(14 + 1451, 0);
        Ipv4Packet::new_unchecked(&mut g[14..]).set_total_len(1451);
        fixed(g);
    };
    // One byte of the IPv4 header set, the checksum made right again.
    let with = |at: usize, v: u8| {
        pod_mutate(&|g| {
            g[at] = v;
            fixed(g)
        })
    };
    let cases: Vec<(&str, Vec<u8>, PortId)> = vec![
        ("ARP", pod_mutate(&|g| g[13] = 0x06), POD_A_PORT),
        ("padding", pod_mutate(&|g| g.extend_from_slice(&[0, 0])), POD_A_PORT),
        ("cut", pod_mutate(&|g| g.truncate(g.len() - 1)), POD_A_PORT),
        ("options", with(14, 0x46), POD_A_PORT),
        ("TTL 1", with(22, 1), POD_A_PORT),
        ("source MAC", pod_mutate(&|g| g[11] ^= 1), POD_A_PORT),
        ("source address", with(29, 3), POD_A_PORT),
        ("our subnet", with(32, 1), POD_A_PORT),
        ("outside the cluster", with(31, 9), POD_A_PORT),
        ("no route", with(32, 9), POD_A_PORT),
        ("checksum", pod_mutate(&|g| g[24] ^= 1), POD_A_PORT),
        ("too big", pod_mutate(&too_big), POD_A_PORT),
        ("other port", pod_a_echo_frame(), POD_B_PORT),
    ];
    for (what, g, port) in &cases {
        let mut b = VecBuf::new(g);
        assert_eq!(encap_fast(&mut b, &em, *port, 7, s.cached(&mut PathCache::default())), None, "{what}");
        assert_eq!(b.data(), &g[..], "{what}: untouched");
        assert_eq!(pod_verdict_of(g, &s, *port), pod_verdict_of(g, &full, *port), "{what}");
    }
    // The padded frame is still encapsulated, by the full path (trimmed).
    assert_eq!(pod_verdict_of(&cases[1].1, &s, POD_A_PORT).0, Verdict::ToUplink);
    let mut unresolved = inputs();
    unresolved.neighbours.clear();
    let u = unresolved.build(1);
    let mut b = VecBuf::new(&f);
    assert_eq!(encap_fast(&mut b, &em, POD_A_PORT, 7, u.cached(&mut PathCache::default())), None, "unresolved");
    assert_eq!(pod_verdict_of(&f, &u, POD_A_PORT).0, Verdict::Drop(R::NeighbourUnresolved));
}

fn mutate(f: impl Fn(&mut Vec<u8>)) -> Vec<u8> {
    let mut k = kernel_vxlan_ping()[0].clone();
    f(&mut k);
    k
}

fn fix_outer_checksum(k: &mut [u8]) {
    Ipv4Packet::new_unchecked(&mut k[14..]).fill_checksum();
}

#[test]
fn decap_drops_are_counted_by_reason() {
    let s = node2_inputs().build(1);
    let cases: Vec<(&str, Vec<u8>, DropReason)> = vec![
        ("wrong vni", mutate(|k| k[48] = 2), R::WrongVni),
        (
            "gpe flags",
            mutate(|k| {
                k[42] = 0x0c;
                k[45] = 3
            }),
            R::VxlanFlags,
        ),
        ("i flag clear", mutate(|k| k[42] = 0), R::VxlanFlags),
        ("reserved bits", mutate(|k| k[49] = 1), R::VxlanFlags),
        ("other udp port", mutate(|k| k[37] = 0x19), R::NotVxlan),
        (
            "not udp",
            mutate(|k| {
                k[23] = 6;
                fix_outer_checksum(k)
            }),
            R::NotVxlan,
        ),
        (
            "other dst ip",
            mutate(|k| {
                k[33] = 9;
                fix_outer_checksum(k)
            }),
            R::NotForUs,
        ),
        ("other dst mac", mutate(|k| k[5] = 0), R::NotForUs),
        (
            "unknown vtep",
            mutate(|k| {
                k[29] = 9;
                fix_outer_checksum(k)
            }),
            R::UnknownVtep,
        ),
        (
            "fragment",
            mutate(|k| {
                k[20] = 0x20;
                fix_outer_checksum(k)
            }),
            R::Fragment,
        ),
        ("ip checksum", mutate(|k| k[24] ^= 0xff), R::IpChecksum),
        ("ip version", mutate(|k| k[14] = 0x65), R::BadIpHeader),
        (
            "vlan",
            mutate(|k| {
                k[12] = 0x81;
                k[13] = 0
            }),
            R::Vlan,
        ),
        (
            "ipv6",
            mutate(|k| {
                k[12] = 0x86;
                k[13] = 0xdd
            }),
            R::OtherEthertype,
        ),
        (
            "inner arp",
            mutate(|k| {
                k[62] = 0x08;
                k[63] = 0x06
            }),
            R::InnerNotIpv4,
        ),
        ("inner dst mac", mutate(|k| k[55] ^= 1), R::InnerDstMac),
        (
            "no such pod",
            mutate(|k| {
                k[83] = 99;
                Ipv4Packet::new_unchecked(&mut k[64..]).fill_checksum()
            }),
            R::NoPod,
        ),
        (
            "not our subnet",
            mutate(|k| {
                k[82] = 3;
                Ipv4Packet::new_unchecked(&mut k[64..]).fill_checksum()
            }),
            R::NoRoute,
        ),
        (
            "ttl 1",
            mutate(|k| {
                k[72] = 1;
                Ipv4Packet::new_unchecked(&mut k[64..]).fill_checksum()
            }),
            R::TtlExpired,
        ),
        ("inner checksum", mutate(|k| k[74] ^= 0xff), R::IpChecksum),
    ];
    for (what, frame, reason) in cases {
        assert_eq!(verdict_of(&frame, &s).0, Verdict::Drop(reason), "{what}");
    }
}

/// Every truncation of a valid frame, on both paths: a drop, never a panic or a forward.
#[test]
fn truncated_at_every_length_is_dropped() {
    let s2 = node2_inputs().build(1);
    let s1 = inputs().build(1);
    let k = &kernel_vxlan_ping()[0];
    for len in 0..k.len() {
        assert!(matches!(verdict_of(&k[..len], &s2).0, Verdict::Drop(_)), "uplink len {len}");
    }
    let p = pod_a_echo_frame();
    for len in 0..p.len() {
        let mut b = VecBuf::new(&p[..len]);
        assert!(matches!(process_pod(&mut b, &s1, POD_A_PORT, 0), Verdict::Drop(_)), "pod len {len}");
    }
}

/// Arbitrary bytes never panic either path (a cheap stand-in until the fuzz targets of issue 7).
#[test]
fn random_frames_never_panic() {
    let s1 = inputs().build(1);
    let s2 = node2_inputs().build(1);
    let base = kernel_vxlan_ping()[0].clone();
    let mut x: u64 = 0x243f_6a88_85a3_08d3;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut f = base.clone();
        // Flip a few bytes in the headers and cut at a random length.
        for j in 0..4 {
            let pos = ((x >> (j * 8)) as usize) % 100;
            f[pos] = (x >> (32 + j * 8)) as u8;
        }
        f.truncate((x % base.len() as u64) as usize + 1);
        let _ = process_uplink(&mut VecBuf::new(&f), &s2);
        let _ = process_pod(&mut VecBuf::new(&f), &s1, POD_A_PORT, 0);
    }
}

#[test]
fn pod_proxy_arp_for_gateway_and_subnet() {
    let s = inputs().build(1);
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&POD_A_MAC.0);
    f.extend_from_slice(&[0x08, 0x06]);
    f.extend_from_slice(&[0u8; 28]);
    ArpRepr::request(POD_A_MAC, Ipv4Addr::new(10, 244, 1, 2), Ipv4Addr::new(10, 244, 1, 1))
        .emit(&mut ArpPacket::new_unchecked(&mut f[14..]));
    let mut b = VecBuf::new(&f);
    assert_eq!(process_pod(&mut b, &s, POD_A_PORT, 0), Verdict::Reply);
    let eth = EthernetFrame::new_checked(b.data()).unwrap();
    assert_eq!((eth.dst(), eth.src()), (POD_A_MAC, s.node.gateway_mac()));
    let a = ArpPacket::new_checked(eth.payload()).unwrap();
    assert_eq!(a.operation(), arp::OP_REPLY);
    assert_eq!((a.sender_mac(), a.sender_ip()), (s.node.gateway_mac(), Ipv4Addr::new(10, 244, 1, 1)));
    assert_eq!((a.target_mac(), a.target_ip()), (POD_A_MAC, Ipv4Addr::new(10, 244, 1, 2)));

    // Its own address (duplicate address detection): silence.
    ArpRepr::request(POD_A_MAC, Ipv4Addr::new(10, 244, 1, 2), Ipv4Addr::new(10, 244, 1, 2))
        .emit(&mut ArpPacket::new_unchecked(&mut f[14..]));
    assert_eq!(process_pod(&mut VecBuf::new(&f), &s, POD_A_PORT, 0), Verdict::Drop(R::ArpIgnored));
    // Outside the subnet: silence.
    ArpRepr::request(POD_A_MAC, Ipv4Addr::new(10, 244, 1, 2), Ipv4Addr::new(10, 244, 2, 2))
        .emit(&mut ArpPacket::new_unchecked(&mut f[14..]));
    assert_eq!(process_pod(&mut VecBuf::new(&f), &s, POD_A_PORT, 0), Verdict::Drop(R::ArpIgnored));
    // From another port than the pod's: silence.
    ArpRepr::request(POD_A_MAC, Ipv4Addr::new(10, 244, 1, 2), Ipv4Addr::new(10, 244, 1, 1))
        .emit(&mut ArpPacket::new_unchecked(&mut f[14..]));
    assert_eq!(process_pod(&mut VecBuf::new(&f), &s, PortId(7), 0), Verdict::Drop(R::ArpIgnored));
}

#[test]
fn uplink_arp_answers_public_ip_and_learns_replies() {
    let s = inputs().build(1);
    let asker = MacAddr([2, 0, 0, 0, 0, 0x99]);
    let req = arp_request(asker, Ipv4Addr::new(192, 168, 77, 9), s.node.public_ip);
    let mut b = VecBuf::new(&req);
    assert_eq!(process_uplink(&mut b, &s), Verdict::Reply);
    let a = ArpPacket::new_checked(&b.data()[14..]).unwrap();
    assert_eq!((a.operation(), a.sender_mac(), a.sender_ip()), (arp::OP_REPLY, s.node.uplink_mac, s.node.public_ip));
    assert_eq!(&b.data()[0..6], &asker.0);

    let mut reply = req;
    ArpRepr {
        operation: arp::OP_REPLY,
        sender_mac: NODE2_UPLINK,
        sender_ip: Ipv4Addr::new(192, 168, 77, 2),
        target_mac: s.node.uplink_mac,
        target_ip: s.node.public_ip,
    }
    .emit(&mut ArpPacket::new_unchecked(&mut reply[14..]));
    assert_eq!(
        process_uplink(&mut VecBuf::new(&reply), &s),
        Verdict::Learn { ip: Ipv4Addr::new(192, 168, 77, 2), mac: NODE2_UPLINK }
    );
    let other = arp_request(asker, Ipv4Addr::new(192, 168, 77, 9), Ipv4Addr::new(192, 168, 77, 50));
    assert_eq!(process_uplink(&mut VecBuf::new(&other), &s), Verdict::Drop(R::ArpIgnored));
}

fn sized_pod_frame(total_len: usize, df: bool) -> Vec<u8> {
    let mut f = pod_a_echo_frame();
    f.resize(14 + total_len, 0x5a);
    let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
    ip.set_total_len(total_len as u16);
    ip.set_dont_frag(df);
    ip.fill_checksum();
    f
}

#[test]
fn pod_mtu_and_fragmentation_needed() {
    let s = inputs().build(1);
    assert_eq!(s.node.pod_mtu(), 1450);
    let mut ok = VecBuf::new(&sized_pod_frame(1450, true));
    assert_eq!(process_pod(&mut ok, &s, POD_A_PORT, 0), Verdict::ToUplink);
    assert_eq!(ok.data().len(), 1514, "a full underlay frame");

    let big = sized_pod_frame(1451, true);
    let mut b = VecBuf::new(&big);
    assert_eq!(process_pod(&mut b, &s, POD_A_PORT, 0), Verdict::Reply);
    let eth = EthernetFrame::new_checked(b.data()).unwrap();
    assert_eq!((eth.dst(), eth.src()), (POD_A_MAC, s.node.gateway_mac()));
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!(
        (ip.src(), ip.dst(), ip.protocol()),
        (s.node.gateway_ip(), Ipv4Addr::new(10, 244, 1, 2), ipv4::protocol::ICMP)
    );
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert!(icmp.verify_checksum());
    assert_eq!((icmp.msg_type(), icmp.code(), icmp.next_hop_mtu()), (3, 4, 1450));
    assert_eq!(icmp.data(), &big[14..14 + 28], "the original header and 8 bytes");
    assert_eq!(b.data().len(), 14 + 20 + 8 + 28);

    assert_eq!(
        process_pod(&mut VecBuf::new(&sized_pod_frame(1451, false)), &s, POD_A_PORT, 0),
        Verdict::Drop(R::TooBig)
    );
}

#[test]
fn pod_checks_and_local_switching() {
    let mut i = inputs();
    i.pods.push(PodEntry {
        name: "pod-c".into(),
        ip: Ipv4Addr::new(10, 244, 1, 3),
        mac: MacAddr([2, 0, 0, 0, 1, 3]),
        port: PortId(2),
    });
    let s = i.build(1);
    let frame = pod_a_echo_frame();

    let mut spoof_ip = frame.clone();
    spoof_ip[14 + 15] = 3;
    Ipv4Packet::new_unchecked(&mut spoof_ip[14..]).fill_checksum();
    assert_eq!(process_pod(&mut VecBuf::new(&spoof_ip), &s, POD_A_PORT, 0), Verdict::Drop(R::SpoofedSource));
    let mut spoof_mac = frame.clone();
    spoof_mac[11] ^= 1;
    assert_eq!(process_pod(&mut VecBuf::new(&spoof_mac), &s, POD_A_PORT, 0), Verdict::Drop(R::SpoofedSource));
    assert_eq!(process_pod(&mut VecBuf::new(&frame), &s, PortId(2), 0), Verdict::Drop(R::SpoofedSource), "wrong port");

    let mut local = frame.clone();
    local[14 + 18] = 1;
    local[14 + 19] = 3;
    Ipv4Packet::new_unchecked(&mut local[14..]).fill_checksum();
    let mut b = VecBuf::new(&local);
    assert_eq!(process_pod(&mut b, &s, POD_A_PORT, 0), Verdict::ToPod(PortId(2)));
    assert_eq!(&b.data()[0..6], &[2, 0, 0, 0, 1, 3]);
    assert_eq!(b.data()[14 + 8], 64, "switched within the node: TTL unchanged");

    let to = |a: [u8; 4]| {
        let mut f = frame.clone();
        f[30..34].copy_from_slice(&a);
        Ipv4Packet::new_unchecked(&mut f[14..]).fill_checksum();
        process_pod(&mut VecBuf::new(&f), &s, POD_A_PORT, 0)
    };
    assert_eq!(to([10, 244, 1, 77]), Verdict::Drop(R::NoPod));
    assert_eq!(to([10, 244, 9, 1]), Verdict::Drop(R::NoRoute));
    assert_eq!(to([8, 8, 8, 8]), Verdict::Drop(R::NotOverlay));
}

#[test]
fn unresolved_next_hop_is_dropped_not_waited_for() {
    let mut i = inputs();
    i.neighbours.clear();
    let s = i.build(1);
    assert_eq!(
        process_pod(&mut VecBuf::new(&pod_a_echo_frame()), &s, POD_A_PORT, 0),
        Verdict::Drop(R::NeighbourUnresolved)
    );
    assert_eq!(s.unresolved, vec![Ipv4Addr::new(192, 168, 77, 2)]);
}

#[test]
fn flow_src_port_is_stable_per_flow_and_spreads() {
    let f = pod_a_echo_frame();
    let a = flow_src_port(&f[14..]);
    assert_eq!(a, flow_src_port(&f[14..]));
    let mut ports = std::collections::HashSet::new();
    for i in 0..200u8 {
        let mut g = f.clone();
        g[14 + 19] = i;
        let p = flow_src_port(&g[14..]);
        assert!((32768..61000).contains(&p));
        ports.insert(p);
    }
    assert!(ports.len() > 190, "{} distinct of 200", ports.len());
    // Flows that differ only in their source address, or only in a TCP port, spread as well.
    let mut by_src = std::collections::HashSet::new();
    let mut by_port = std::collections::HashSet::new();
    for i in 0..200u8 {
        let mut g = f.clone();
        g[14 + 15] = i;
        by_src.insert(flow_src_port(&g[14..]));
        let mut t = f.clone();
        t[14 + 9] = 6; // TCP: the ports count
        t[14 + 20] = i;
        by_port.insert(flow_src_port(&t[14..]));
    }
    assert!(by_src.len() > 190 && by_port.len() > 190, "{} and {} distinct of 200", by_src.len(), by_port.len());
}

/// As the kernel's flow dissector: the transport ports count for an unfragmented packet (DF or not),
/// and not for a fragment (MF, or any bit of the offset), so every fragment of a packet takes one port.
#[test]
fn flow_src_port_leaves_out_the_ports_of_fragments() {
    let mut t = pod_a_echo_frame();
    t[14 + 9] = 6; // TCP
    let ports_seen = |t: &[u8]| {
        let by_port: std::collections::HashSet<u16> = (0..50u8)
            .map(|i| {
                let mut g = t.to_vec();
                g[14 + 20] = i;
                flow_src_port(&g[14..])
            })
            .collect();
        by_port.len()
    };
    for flags_frag in [[0x00, 0x00], [0x40, 0x00], [0x80, 0x00]] {
        t[14 + 6..14 + 8].copy_from_slice(&flags_frag);
        assert!(ports_seen(&t) > 45, "unfragmented {flags_frag:02x?}: the ports count");
    }
    for flags_frag in [[0x20, 0x00], [0x01, 0x00], [0x10, 0x00], [0x00, 0x01], [0x00, 0x80], [0x7f, 0xff]] {
        t[14 + 6..14 + 8].copy_from_slice(&flags_frag);
        assert_eq!(ports_seen(&t), 1, "fragment {flags_frag:02x?}: the ports do not count");
    }
}

#[test]
fn drop_reason_labels_are_unique() {
    let labels: std::collections::HashSet<_> = DropReason::ALL.iter().map(|r| r.label()).collect();
    assert_eq!(labels.len(), DropReason::COUNT);
}

const HOST_PORT: PortId = PortId(2);
const HOST_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0xee, 0x01]);

fn with_host(mut t: TableInputs) -> Snapshot {
    t.host = Some(crate::tables::HostPort { port: HOST_PORT, mac: HOST_MAC });
    t.build(1)
}

/// Pod A's echo request with another destination.
fn pod_a_to(dst: Ipv4Addr) -> Vec<u8> {
    let mut f = pod_a_echo_frame();
    let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
    ip.set_dst(dst);
    ip.fill_checksum();
    f
}

/// Node 1's pod A on port 1, as `inputs()` has it, for the pod-side tests.
fn node1_with_pod_a() -> TableInputs {
    let mut t = inputs();
    t.pods =
        vec![PodEntry { name: "pod-a".into(), ip: Ipv4Addr::new(10, 244, 1, 2), mac: POD_A_MAC, port: POD_A_PORT }];
    t
}

#[test]
fn pod_to_outside_the_cluster_goes_to_the_host_unrouted() {
    let world = Ipv4Addr::new(203, 0, 113, 7);
    for (inputs, want) in [
        (with_host(node1_with_pod_a()), Verdict::ToHost(HOST_PORT)),
        (node1_with_pod_a().build(1), Verdict::Drop(DropReason::NotOverlay)),
    ] {
        let mut b = VecBuf::new(&pod_a_to(world));
        assert_eq!(process_pod(&mut b, &inputs, POD_A_PORT, 1), want);
    }
    let s = with_host(node1_with_pod_a());
    let mut b = VecBuf::new(&pod_a_to(world));
    process_pod(&mut b, &s, POD_A_PORT, 1);
    let eth = EthernetFrame::new_checked(b.data()).unwrap();
    assert_eq!((eth.dst(), eth.src()), (HOST_MAC, s.node.gateway_mac()));
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert_eq!(ip.ttl(), 64, "weft bridges to the host as cni0 does: the host's kernel routes (and decrements)");
    assert!(ip.verify_checksum());
}

#[test]
fn pod_to_a_subnet_address_no_weft_pod_has_goes_to_the_host() {
    // A cni0 pod, or the gateway address the host holds on cni0.
    let cni0_pod = Ipv4Addr::new(10, 244, 1, 40);
    let mut b = VecBuf::new(&pod_a_to(cni0_pod));
    assert_eq!(process_pod(&mut b, &with_host(node1_with_pod_a()), POD_A_PORT, 1), Verdict::ToHost(HOST_PORT));
    let mut b = VecBuf::new(&pod_a_to(cni0_pod));
    assert_eq!(process_pod(&mut b, &node1_with_pod_a().build(1), POD_A_PORT, 1), Verdict::Drop(DropReason::NoPod));
}

#[test]
fn decap_for_our_subnet_without_a_weft_pod_goes_to_the_host_unrouted() {
    let k = &kernel_vxlan_ping()[0];
    let mut t = node2_inputs();
    t.pods.clear();
    let (v, out) = verdict_of(k, &with_host(t.clone()));
    assert_eq!(v, Verdict::ToHost(HOST_PORT));
    assert_eq!(out.len(), k.len() - 50);
    let eth = EthernetFrame::new_checked(&out[..]).unwrap();
    assert_eq!(eth.dst(), HOST_MAC);
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert_eq!(ip.ttl(), 63, "as flannel.1 hands it to the kernel: the kernel routes it on to cni0");
    assert!(ip.verify_checksum());
    assert_eq!(verdict_of(k, &t.build(1)).0, Verdict::Drop(DropReason::NoPod), "no host port: dropped");
}

/// What the host's kernel routes into weft0: the pod A frame's inner packet from the host's MAC.
fn from_host(dst: Ipv4Addr, ttl: u8) -> Vec<u8> {
    let mut f = pod_a_to(dst);
    f[6..12].copy_from_slice(&HOST_MAC.0);
    let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
    ip.set_src(Ipv4Addr::new(10, 244, 1, 0));
    ip.set_ttl(ttl);
    ip.fill_checksum();
    f
}

#[test]
fn host_to_a_remote_pod_is_encapsulated_without_a_second_ttl_decrement() {
    let s = with_host(node1_with_pod_a());
    let mut b = VecBuf::new(&from_host(Ipv4Addr::new(10, 244, 2, 2), 1));
    assert_eq!(process_host(&mut b, &s, 9), Verdict::ToUplink);
    let ip = Ipv4Packet::new_checked(&b.data()[14..]).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!(ip.dst(), peer2().public_ip);
    let inner = Ipv4Packet::new_checked(&b.data()[64..]).unwrap();
    assert_eq!(inner.ttl(), 1, "the kernel routed it into weft0 as into flannel.1; TTL 1 still goes out");
    assert!(inner.verify_checksum());
    // The other node decapsulates it for its pod as from any flannel node.
    assert_eq!(process_uplink(&mut b, &node2_inputs().build(1)), Verdict::Drop(DropReason::TtlExpired));
    let mut b = VecBuf::new(&from_host(Ipv4Addr::new(10, 244, 2, 2), 64));
    process_host(&mut b, &s, 9);
    assert_eq!(process_uplink(&mut b, &node2_inputs().build(1)), Verdict::ToPod(POD_B_PORT));
}

#[test]
fn host_to_a_weft_pod_and_elsewhere() {
    let s = with_host(node1_with_pod_a());
    let mut b = VecBuf::new(&from_host(Ipv4Addr::new(10, 244, 1, 2), 64));
    assert_eq!(process_host(&mut b, &s, 1), Verdict::ToPod(POD_A_PORT));
    let eth = EthernetFrame::new_checked(b.data()).unwrap();
    assert_eq!((eth.dst(), eth.src()), (POD_A_MAC, s.node.gateway_mac()));
    assert_eq!(Ipv4Packet::new_checked(eth.payload()).unwrap().ttl(), 64);
    for (dst, why) in [
        (Ipv4Addr::new(10, 244, 1, 9), DropReason::NoPod),
        (Ipv4Addr::new(10, 244, 9, 9), DropReason::NoRoute),
        (Ipv4Addr::new(8, 8, 8, 8), DropReason::NotOverlay),
    ] {
        let mut b = VecBuf::new(&from_host(dst, 64));
        assert_eq!(process_host(&mut b, &s, 1), Verdict::Drop(why), "{dst}");
    }
}

#[test]
fn host_too_big_with_df_gets_fragmentation_needed() {
    let s = with_host(node1_with_pod_a());
    let mut f = from_host(Ipv4Addr::new(10, 244, 2, 2), 64);
    f.resize(14 + 1460, 0);
    let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
    ip.set_total_len(1460);
    ip.set_dont_frag(true);
    ip.fill_checksum();
    let mut b = VecBuf::new(&f);
    assert_eq!(process_host(&mut b, &s, 1), Verdict::Reply);
    let eth = EthernetFrame::new_checked(b.data()).unwrap();
    assert_eq!(eth.dst(), HOST_MAC);
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert_eq!(Icmpv4Repr::parse(&icmp).unwrap(), Icmpv4Repr::FragNeeded { mtu: 1450 });
}

#[test]
fn host_arp_for_the_cluster_is_answered_with_the_gateway_mac() {
    let s = with_host(node1_with_pod_a());
    let ask = |target: Ipv4Addr| {
        let mut f = vec![0u8; 42];
        EthernetRepr { dst: MacAddr::BROADCAST, src: HOST_MAC, vlan_tci: None, ethertype: EtherType::ARP }
            .emit(&mut EthernetFrame::new_unchecked(&mut f[..]));
        ArpRepr::request(HOST_MAC, Ipv4Addr::new(10, 244, 1, 0), target)
            .emit(&mut ArpPacket::new_unchecked(&mut f[14..]));
        f
    };
    for target in [Ipv4Addr::new(10, 244, 2, 2), Ipv4Addr::new(10, 244, 1, 2)] {
        let mut b = VecBuf::new(&ask(target));
        assert_eq!(process_host(&mut b, &s, 1), Verdict::Reply);
        let reply = ArpRepr::parse(&ArpPacket::new_checked(&b.data()[14..]).unwrap()).unwrap();
        assert_eq!(
            reply,
            ArpRepr::reply_to(
                &ArpRepr::request(HOST_MAC, Ipv4Addr::new(10, 244, 1, 0), target),
                target,
                s.node.gateway_mac()
            )
        );
        assert_eq!(EthernetFrame::new_checked(b.data()).unwrap().dst(), HOST_MAC);
    }
    // Its own overlay address (duplicate address detection) and anything outside the cluster: silence.
    for target in [Ipv4Addr::new(10, 244, 1, 0), Ipv4Addr::new(192, 168, 77, 9)] {
        let mut b = VecBuf::new(&ask(target));
        assert_eq!(process_host(&mut b, &s, 1), Verdict::Drop(DropReason::ArpIgnored), "{target}");
    }
}

/// Tables of both fixture nodes switched to `backend` (and DirectRouting).
fn both_as(backend: BackendType, direct_routing: bool) -> (Snapshot, Snapshot) {
    let (mut a, mut b) = (inputs(), node2_inputs());
    for t in [&mut a, &mut b] {
        t.node.backend = backend;
        t.node.direct_routing = direct_routing;
    }
    (a.build(1), b.build(1))
}

/// host-gw: the pod's packet leaves as it is, routed (TTL - 1) from our uplink to the peer's, and the
/// peer routes it to its pod (TTL - 1 again), as two kernel host-gw nodes do.
#[test]
fn host_gw_routes_to_the_peer_and_back() {
    let (s1, s2) = both_as(BackendType::HostGw, false);
    let sent = pod_a_echo_frame();
    let mut b = VecBuf::new(&sent);
    assert_eq!(process_pod(&mut b, &s1, POD_A_PORT, 1), Verdict::ToUplink);
    let wire = b.data().to_vec();
    assert_eq!(wire.len(), sent.len(), "nothing added");
    assert_eq!((&wire[0..6], &wire[6..12]), (&NODE2_UPLINK.0[..], &node1().uplink_mac.0[..]));
    let ip = Ipv4Packet::new_checked(&wire[14..]).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!(ip.ttl(), 63);
    assert_eq!(&wire[14 + 9..14 + 10], &sent[14 + 9..14 + 10]);
    assert_eq!(ip.payload(), &sent[14 + 20..]);
    assert_eq!(process_uplink(&mut b, &s2), Verdict::ToPod(POD_B_PORT));
    let eth = EthernetFrame::new_checked(b.data()).unwrap();
    assert_eq!((eth.dst(), eth.src()), (POD_B_MAC, s2.node.gateway_mac()));
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert_eq!(ip.ttl(), 62);
    assert!(ip.verify_checksum());
}

/// flanneld's udp backend: IPv4 / UDP 8285 -> 8285 / the inner packet, with the TTL taken down by the
/// kernel and by the relay on each side (64 -> 62 on the wire -> 60 at the pod).
#[test]
fn udp_backend_encap_and_decap() {
    let (s1, s2) = both_as(BackendType::Udp, false);
    let sent = pod_a_echo_frame();
    let mut b = VecBuf::new(&sent);
    assert_eq!(process_pod(&mut b, &s1, POD_A_PORT, 7), Verdict::ToUplink);
    let wire = b.data().to_vec();
    assert_eq!(wire.len(), sent.len() + 28);
    assert_eq!((&wire[0..6], &wire[6..12]), (&NODE2_UPLINK.0[..], &node1().uplink_mac.0[..]));
    let outer = Ipv4Packet::new_checked(&wire[14..]).unwrap();
    assert!(outer.verify_checksum() && outer.dont_frag());
    assert_eq!((outer.src(), outer.dst(), outer.ttl(), outer.ident()), (node1().public_ip, s2.node.public_ip, 64, 7));
    let u = UdpPacket::new_checked(outer.payload()).unwrap();
    assert_eq!((u.src_port(), u.dst_port()), (8285, 8285));
    assert!(u.verify_checksum(outer.src(), outer.dst()));
    let inner = Ipv4Packet::new_checked(u.payload()).unwrap();
    assert_eq!(inner.ttl(), 62);
    assert!(inner.verify_checksum());
    assert_eq!(inner.payload(), &sent[14 + 20..]);
    assert_eq!(process_uplink(&mut b, &s2), Verdict::ToPod(POD_B_PORT));
    let eth = EthernetFrame::new_checked(b.data()).unwrap();
    assert_eq!((eth.dst(), eth.src(), eth.outer_ethertype()), (POD_B_MAC, s2.node.gateway_mac(), EtherType::IPV4));
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert_eq!(ip.ttl(), 60);
    assert!(ip.verify_checksum());
    assert_eq!(b.data().len(), sent.len());
}

#[test]
fn udp_backend_drops_by_reason() {
    let (s1, s2) = both_as(BackendType::Udp, false);
    let mut b = VecBuf::new(&pod_a_echo_frame());
    assert_eq!(process_pod(&mut b, &s1, POD_A_PORT, 1), Verdict::ToUplink);
    let wire = b.data().to_vec();
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut w = wire.clone();
        f(&mut w);
        Ipv4Packet::new_unchecked(&mut w[14..]).fill_checksum();
        let mut b = VecBuf::new(&w);
        process_uplink(&mut b, &s2)
    };
    assert_eq!(with(&|w| w[37] = 0x2d), Verdict::Drop(R::NotUdpEncap), "another port");
    assert_eq!(with(&|w| w[23] = 6), Verdict::Drop(R::NotUdpEncap), "not UDP");
    assert_eq!(with(&|w| w[29] = 9), Verdict::Drop(R::UnknownVtep), "from a PublicIP without a lease");
    assert_eq!(with(&|w| w[42 + 10] ^= 1), Verdict::Drop(R::IpChecksum), "inner checksum");
    let ttl2 = |w: &mut Vec<u8>| {
        let mut inner = Ipv4Packet::new_unchecked(&mut w[42..]);
        inner.set_ttl(2);
        inner.fill_checksum();
    };
    assert_eq!(with(&ttl2), Verdict::Drop(R::TtlExpired), "the relay and the kernel need two hops");
    assert_eq!(with(&|w| w.truncate(50)), Verdict::Drop(R::Truncated));
    // A pod's packet with TTL 2 dies in this node's relay.
    let mut f = pod_a_echo_frame();
    Ipv4Packet::new_unchecked(&mut f[14..]).set_ttl(2);
    Ipv4Packet::new_unchecked(&mut f[14..]).fill_checksum();
    assert_eq!(process_pod(&mut VecBuf::new(&f), &s1, POD_A_PORT, 1), Verdict::Drop(R::TtlExpired));
}

/// DirectRouting: a peer on our L2 is routed to; one behind the underlay gateway still gets VXLAN;
/// routed frames to our subnet come in. Without DirectRouting (or host-gw), a routed frame to a pod is
/// not for us.
#[test]
fn direct_routing_per_peer_and_routed_frames_in() {
    let (s1, s2) = both_as(BackendType::Vxlan, true);
    let mut b = VecBuf::new(&pod_a_echo_frame());
    assert_eq!(process_pod(&mut b, &s1, POD_A_PORT, 1), Verdict::ToUplink);
    assert_eq!(b.data().len(), pod_a_echo_frame().len(), "direct: no VXLAN");
    let routed = b.data().to_vec();
    assert_eq!(process_uplink(&mut VecBuf::new(&routed), &s2), Verdict::ToPod(POD_B_PORT));
    // VXLAN from the peer still decapsulates under DirectRouting.
    assert_eq!(verdict_of(&kernel_vxlan_ping()[0], &s2).0, Verdict::ToPod(POD_B_PORT));
    let plain = node2_inputs().build(1);
    assert_eq!(verdict_of(&routed, &plain).0, Verdict::Drop(R::NotForUs));
    // The same peer behind a gateway: VXLAN through the gateway's MAC.
    let mut far = inputs();
    far.node.direct_routing = true;
    far.node.underlay_net = "192.168.76.0/24".parse().unwrap();
    far.node.underlay_gateway = Some(Ipv4Addr::new(192, 168, 76, 254));
    far.neighbours.insert(Ipv4Addr::new(192, 168, 76, 254), MacAddr([2, 0, 0, 0, 0, 0xfe]));
    let s = far.build(1);
    let mut b = VecBuf::new(&pod_a_echo_frame());
    assert_eq!(process_pod(&mut b, &s, POD_A_PORT, 1), Verdict::ToUplink);
    assert_eq!(b.data().len(), pod_a_echo_frame().len() + 50);
    assert_eq!(&b.data()[0..6], &[2, 0, 0, 0, 0, 0xfe]);
}

/// host-gw: a peer whose PublicIP is not on our L2 is refused; its frames are counted, not sent.
#[test]
fn host_gw_refuses_a_peer_off_our_l2() {
    let mut t = inputs();
    t.node.backend = BackendType::HostGw;
    t.node.underlay_gateway = Some(Ipv4Addr::new(192, 168, 77, 254));
    t.peers[0].public_ip = Ipv4Addr::new(172, 16, 0, 2);
    let s = t.build(1);
    assert_eq!(s.off_link, vec![t.peers[0]]);
    assert!(s.unresolved.is_empty(), "nothing to resolve for a refused peer");
    let mut b = VecBuf::new(&pod_a_echo_frame());
    assert_eq!(process_pod(&mut b, &s, POD_A_PORT, 1), Verdict::Drop(R::PeerOffLink));
}

/// The host port under host-gw: what the kernel routed into weft0 is sent on as it is (the kernel took
/// its hop); a routed frame for a cni0 pod goes to the host untouched.
#[test]
fn host_gw_with_the_host_port() {
    let mut t = inputs();
    t.node.backend = BackendType::HostGw;
    let s = with_host(t);
    let mut f = pod_a_echo_frame();
    f[0..6].copy_from_slice(&s.node.gateway_mac().0);
    f[6..12].copy_from_slice(&HOST_MAC.0);
    let mut b = VecBuf::new(&f);
    assert_eq!(process_host(&mut b, &s, 1), Verdict::ToUplink);
    assert_eq!(Ipv4Packet::new_checked(&b.data()[14..]).unwrap().ttl(), 64);
    let mut t2 = node2_inputs();
    t2.node.backend = BackendType::HostGw;
    t2.pods.clear();
    let s2 = with_host(t2);
    assert_eq!(process_uplink(&mut b, &s2), Verdict::ToHost(HOST_PORT));
    assert_eq!(Ipv4Packet::new_checked(&b.data()[14..]).unwrap().ttl(), 64);
    assert_eq!(&b.data()[0..6], &HOST_MAC.0);
}
