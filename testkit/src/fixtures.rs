//! Byte fixtures kept in the repository (`fixtures/`, see its README).

use weft_wire::pcap::PcapReader;

/// The two frames of `fixtures/kernel-vxlan-ping.pcap` (an ICMP echo request 10.244.1.2 -> 10.244.2.2
/// through two Linux kernel VXLAN nodes, and its reply). Panics naming the file if it cannot be read: a
/// test without its fixture must fail, not pass.
pub fn kernel_vxlan_ping() -> Vec<Vec<u8>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/kernel-vxlan-ping.pcap");
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("fixture {path}: {e}"));
    PcapReader::new(&bytes)
        .unwrap_or_else(|e| panic!("fixture {path}: {e}"))
        .map(|r| r.map(|rec| rec.data.to_vec()))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("fixture {path}: {e}"))
}

/// The path of a fixture file.
pub fn path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures")).join(name)
}
