//! `weftctl trace N` and `weftctl peers`: the workers' packet trace turned into what a person reads
//! (VPP's `show trace`: each packet's headers as received, the table entry it hit, the verdict and the
//! headers as sent), and the peer table with each peer's next hop and packets.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use dataplane::packet::Verdict;
use dataplane::tables::Node;
use dataplane::trace::TraceRecord;
use dataplane::worker::PeerNumbering;
use serde_json::{json, Value};
use weft_config::BackendType;

use super::Shared;

/// How long a trace waits for its packets by default, and at most.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(10);
pub const MAX_WAIT: Duration = Duration::from_secs(20);

/// Trace the next `count` packets the workers handle, waiting up to `wait` for them.
pub fn trace(shared: &Shared, count: usize, wait: Duration) -> Result<Value, String> {
    if count == 0 {
        return Err("trace: give a number of packets of at least 1".into());
    }
    let Ok(_one) = shared.trace_busy.try_lock() else {
        return Err("a trace is under way; try again when it ends".into());
    };
    let t = &shared.trace;
    let count = count.min(dataplane::trace::TRACE_MAX);
    t.arm(count);
    let deadline = Instant::now() + wait.min(MAX_WAIT);
    while t.len() < count && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    t.disarm();
    // A worker that claimed a packet just before the disarm records it right after.
    std::thread::sleep(Duration::from_millis(5));
    let names = port_names(shared);
    let snap = shared.tables.snapshot();
    let records = t.take();
    // When each packet was taken, in µs from the first (as VPP's trace prints its time).
    let (t0, hz) = (records.iter().map(|r| r.tsc).min().unwrap_or(0), dataplane::dpdk::tsc::hz().max(1));
    let packets: Vec<Value> = records
        .iter()
        .map(|r| {
            let mut v = describe(r, Encaps::from(&shared.node), &names, |subnet| peer_of(&snap, subnet));
            v["at_us"] = json!((r.tsc.saturating_sub(t0) as f64 * 1e6 / hz as f64).round());
            v
        })
        .collect();
    Ok(json!({"asked": count, "traced": packets.len(), "packets": packets}))
}

fn port_names(shared: &Shared) -> HashMap<u16, String> {
    super::stats::read(shared).ports.into_iter().map(|p| (p.id.0, p.name)).collect()
}

fn peer_of(snap: &dataplane::tables::Snapshot, subnet: u32) -> Value {
    match snap.lookup_vtep(subnet) {
        Some(v) => json!({
            "subnet": v.peer.subnet.to_string(),
            "public_ip": v.peer.public_ip.to_string(),
            "next_hop": v.next_hop.to_string(),
            "path": v.path.name(),
        }),
        None => json!({"subnet": Ipv4Addr::from(subnet).to_string(), "gone": true}),
    }
}

/// One traced packet as JSON.
fn describe(r: &TraceRecord, node: Encaps, names: &HashMap<u16, String>, peer: impl Fn(u32) -> Value) -> Value {
    let name = |id: u16| names.get(&id).cloned().unwrap_or_else(|| format!("port {id}"));
    let mut v = json!({
        "worker": r.worker,
        "in": name(r.in_port.0),
        "len": r.len,
        "received": layers(r.before(), node),
    });
    let (verdict, out) = match r.verdict {
        Verdict::ToPod(p) => ("to pod".to_string(), Some(name(p.0))),
        Verdict::ToHost(p) => ("to host port".to_string(), Some(name(p.0))),
        Verdict::ToUplink => ("to peer".to_string(), Some("uplink".to_string())),
        Verdict::Reply => ("answered".to_string(), Some(name(r.in_port.0))),
        Verdict::Learn { ip, mac } => (format!("neighbour learned: {ip} is at {mac}"), None),
        Verdict::Drop(reason) => {
            v["drop_reason"] = json!(reason.label());
            (format!("drop: {}", reason.meaning()), None)
        }
    };
    v["verdict"] = json!(verdict);
    if let Some(out) = out {
        v["out"] = json!(out);
        v["sent_len"] = json!(r.after_total);
        v["sent"] = json!(layers(r.after(), node));
    }
    if let Some(subnet) = r.peer_subnet {
        v["peer"] = peer(subnet);
    }
    v
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn ip_at(b: &[u8], at: usize) -> Option<Ipv4Addr> {
    Some(Ipv4Addr::new(*b.get(at)?, *b.get(at + 1)?, *b.get(at + 2)?, *b.get(at + 3)?))
}

fn mac_at(b: &[u8], at: usize) -> Option<String> {
    let m = b.get(at..at + 6)?;
    Some(m.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":"))
}

/// What the decoder needs of the node: which UDP datagrams are its encapsulation.
#[derive(Debug, Clone, Copy)]
pub struct Encaps {
    pub backend: BackendType,
    pub vxlan_port: u16,
    pub udp_port: u16,
}

impl From<&Node> for Encaps {
    fn from(n: &Node) -> Encaps {
        Encaps { backend: n.backend, vxlan_port: n.vxlan_port, udp_port: n.udp_port }
    }
}

/// The headers of a frame's first bytes, one line per layer, outer to inner (VXLAN and flannel's udp
/// encapsulation are followed into the inner packet).
pub fn layers(b: &[u8], node: Encaps) -> Vec<String> {
    let mut out = Vec::new();
    ethernet(b, node, &mut out);
    out
}

fn ethernet(b: &[u8], node: Encaps, out: &mut Vec<String>) {
    let (Some(dst), Some(src), Some(ty)) = (mac_at(b, 0), mac_at(b, 6), be16(b, 12)) else {
        out.push(format!("ethernet: truncated ({} bytes)", b.len()));
        return;
    };
    let name = match ty {
        0x0800 => "ipv4".to_string(),
        0x0806 => "arp".to_string(),
        0x8100 => "802.1q".to_string(),
        0x86dd => "ipv6".to_string(),
        t => format!("0x{t:04x}"),
    };
    out.push(format!("ethernet {src} -> {dst} {name}"));
    match ty {
        0x0800 => ipv4(&b[14..], node, out),
        0x0806 => arp(&b[14..], out),
        _ => {}
    }
}

fn arp(b: &[u8], out: &mut Vec<String>) {
    match (be16(b, 6), mac_at(b, 8), ip_at(b, 14), ip_at(b, 24)) {
        (Some(1), _, Some(spa), Some(tpa)) => out.push(format!("arp who-has {tpa} tell {spa}")),
        (Some(2), Some(sha), Some(spa), _) => out.push(format!("arp reply {spa} is-at {sha}")),
        (Some(op), ..) => out.push(format!("arp op {op}")),
        _ => out.push("arp: truncated".into()),
    }
}

fn ipv4(b: &[u8], node: Encaps, out: &mut Vec<String>) {
    let (Some(&vihl), Some(total), Some(frag), Some(&ttl), Some(&proto), Some(src), Some(dst)) =
        (b.first(), be16(b, 2), be16(b, 6), b.get(8), b.get(9), ip_at(b, 12), ip_at(b, 16))
    else {
        out.push("ipv4: truncated".into());
        return;
    };
    let hl = usize::from(vihl & 0x0f) * 4;
    let flags = match (frag & 0x4000 != 0, frag & 0x3fff != 0) {
        (_, true) => " fragment",
        (true, false) => " DF",
        _ => "",
    };
    let pname = match proto {
        1 => "icmp".to_string(),
        6 => "tcp".to_string(),
        17 => "udp".to_string(),
        p => format!("proto {p}"),
    };
    out.push(format!("ipv4 {src} -> {dst} {pname} ttl {ttl} len {total}{flags}"));
    if vihl >> 4 != 4 || hl < 20 || b.len() < hl || frag & 0x1fff != 0 {
        return;
    }
    let l4 = &b[hl..];
    match proto {
        1 => match (l4.first(), l4.get(1)) {
            (Some(8), _) => {
                out.push(format!("icmp echo request id {} seq {}", be16(l4, 4).unwrap_or(0), be16(l4, 6).unwrap_or(0)))
            }
            (Some(0), _) => {
                out.push(format!("icmp echo reply id {} seq {}", be16(l4, 4).unwrap_or(0), be16(l4, 6).unwrap_or(0)))
            }
            (Some(t), Some(c)) => out.push(format!("icmp type {t} code {c}")),
            _ => out.push("icmp: truncated".into()),
        },
        6 => match (be16(l4, 0), be16(l4, 2), l4.get(13)) {
            (Some(s), Some(d), Some(f)) => out.push(format!("tcp {s} -> {d} flags 0x{f:02x}")),
            _ => out.push("tcp: truncated".into()),
        },
        17 => {
            let (Some(sport), Some(dport)) = (be16(l4, 0), be16(l4, 2)) else {
                out.push("udp: truncated".into());
                return;
            };
            out.push(format!("udp {sport} -> {dport}"));
            if dport == node.vxlan_port && node.backend == BackendType::Vxlan && l4.len() >= 16 {
                let vni = u32::from_be_bytes([0, l4[12], l4[13], l4[14]]);
                out.push(format!("vxlan vni {vni} flags 0x{:02x}", l4[8]));
                ethernet(&l4[16..], node, out);
            } else if dport == node.udp_port && node.backend == BackendType::Udp {
                ipv4(&l4[8..], node, out);
            }
        }
        _ => {}
    }
}

/// Every peer: its lease, how frames reach it, and the frames sent to it since weftd started.
pub fn peers(shared: &Shared) -> Value {
    let snap = shared.tables.snapshot();
    let node = &shared.node;
    let numbering = PeerNumbering::new(node.network, node.subnet_len);
    let list: Vec<Value> = snap
        .vteps
        .iter()
        .map(|v| {
            let slot = numbering.slot(v.peer.subnet.addr_u32());
            json!({
                "subnet": v.peer.subnet.to_string(),
                "public_ip": v.peer.public_ip.to_string(),
                "vtep_mac": (node.backend == weft_config::BackendType::Vxlan).then(|| v.peer.vtep_mac.to_string()),
                "next_hop": v.next_hop.to_string(),
                "next_hop_mac": v.path.next_hop_mac().map(|m| m.to_string()),
                "path": v.path.name(),
                "tx_packets": super::stats::peer_tx(shared, slot),
            })
        })
        .collect();
    json!(list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::dpdk::PortId;

    fn node() -> Encaps {
        Encaps { backend: BackendType::Vxlan, vxlan_port: 8472, udp_port: 8285 }
    }

    /// The kernel VXLAN echo request of the repo's fixtures: outer headers, VXLAN, the inner ICMP echo.
    #[test]
    fn a_vxlan_frame_is_described_layer_by_layer() {
        let frame = &testkit::fixtures::kernel_vxlan_ping()[0];
        let l = layers(&frame[..frame.len().min(dataplane::trace::TRACE_BYTES)], node());
        assert!(l[0].starts_with("ethernet ") && l[0].ends_with(" ipv4"), "{l:?}");
        assert!(l[1].starts_with("ipv4 ") && l[1].contains(" udp ttl "), "{l:?}");
        assert!(l[2].ends_with("-> 8472"), "{l:?}");
        assert!(l[3].starts_with("vxlan vni 1 flags 0x08"), "{l:?}");
        assert!(l[5].contains(" icmp ttl "), "{l:?}");
        assert!(l[6].starts_with("icmp echo"), "{l:?}");
    }

    #[test]
    fn truncated_and_odd_frames_are_described_not_trusted() {
        let n = node();
        assert_eq!(layers(&[0u8; 5], n), vec!["ethernet: truncated (5 bytes)".to_string()]);
        let mut f = vec![0u8; 20];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(layers(&f, n)[1], "ipv4: truncated");
        let rec = TraceRecord {
            worker: 1,
            in_port: PortId(0),
            tsc: 0,
            len: 20,
            before: [0; dataplane::trace::TRACE_BYTES],
            before_len: 20,
            verdict: Verdict::Drop(dataplane::packet::DropReason::NotForUs),
            peer_subnet: None,
            after: [0; dataplane::trace::TRACE_BYTES],
            after_len: 0,
            after_total: 0,
        };
        let names = HashMap::from([(0, "uplink".to_string())]);
        let v = describe(&rec, n, &names, |_| Value::Null);
        assert_eq!(v["in"], "uplink");
        assert_eq!(v["drop_reason"], "not_for_us");
        assert!(v["verdict"].as_str().unwrap().starts_with("drop: Uplink frame not addressed"), "{v}");
        assert!(v.get("sent").is_none());
    }
}
