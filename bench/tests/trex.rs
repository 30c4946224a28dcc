//! The TRex profile (`bench/trex/weft_vxlan.py`) loaded the way the TRex client loads it
//! (`STLProfile.load_py`, no TRex server; PyPI's lbr-trex-client in the venv `make setup` makes): its
//! frames are byte for byte the benchmark generator's, and weft forwards every one of them at full
//! rate through its real worker; the same frame with the bundled scapy's default (VXLAN-GPE style)
//! header is counted under `vxlan_flags`, never forwarded. Needs root and hugepages.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::Command;

use weft_bench::frames;

fn python() -> PathBuf {
    let venv = std::env::var("WEFT_TREX_VENV").unwrap_or_else(|_| "/opt/weft/trex-venv".into());
    let py = Path::new(&venv).join("bin/python");
    assert!(py.exists(), "{} missing: the TRex client venv is made by `make setup` (scripts/setup.sh)", py.display());
    py
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// (the profile's frames, the scapy-default VXLAN frame) for these tunables.
fn load(tunables: &[&str]) -> (Vec<Vec<u8>>, Vec<u8>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("trex");
    let out = Command::new(python())
        .arg(dir.join("dump_profile.py"))
        .arg(dir.join("weft_vxlan.py"))
        .args(tunables)
        .output()
        .unwrap();
    assert!(out.status.success(), "dump_profile.py: {}", String::from_utf8_lossy(&out.stderr));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let frames = j["frames"].as_array().unwrap().iter().map(|f| hex(f.as_str().unwrap())).collect();
    (frames, hex(j["scapy_default_vxlan"].as_str().unwrap()))
}

fn assert_same(profile: &[Vec<u8>], ours: &[Vec<u8>], what: &str) {
    assert_eq!(profile.len(), ours.len(), "{what}: stream count");
    for (i, (p, o)) in profile.iter().zip(ours).enumerate() {
        let first = p.iter().zip(o).position(|(a, b)| a != b);
        assert!(p == o, "{what} stream {i}: lengths {} vs {}, first difference at byte {first:?}", p.len(), o.len());
    }
}

#[test]
fn trex_profile_frames_are_the_generators() {
    for (peers, flows, size) in [(10u32, 64u32, 64usize), (3, 7, 1518), (100, 128, 200)] {
        let t = [format!("peers={peers}"), format!("flows={flows}"), format!("size={size}")];
        let t: Vec<&str> = t.iter().map(|s| s.as_str()).collect();
        let (decap, _) = load(&[&["mode=decap"], &t[..]].concat());
        assert_same(&decap, &frames::decap_frames(peers, flows, size), "decap");
        let (encap, _) = load(&[&["mode=encap"], &t[..]].concat());
        assert_same(&encap, &frames::encap_frames(peers, flows, size), "encap");
    }
}

#[test]
fn weft_forwards_the_trex_profile_and_counts_gpe_flags() {
    let fwdbench = Path::new(env!("CARGO_BIN_EXE_weft-fwdbench"));
    let (decap, gpe) = load(&["mode=decap", "peers=10", "flows=64"]);
    assert_eq!(&gpe[42..46], &[0x0c, 0, 0, 3], "the bundled scapy's default VXLAN header is GPE style");
    assert_eq!(&decap[0][42..46], &[0x08, 0, 0, 0], "the profile sets RFC 7348's I flag");
    let mut corpus: Vec<_> = decap.iter().map(|f| (&f[..], None)).collect();
    corpus.push((&gpe[..], Some("vxlan_flags")));
    let o = weft_bench::replay::replay_and_check(fwdbench, "decap", &corpus, 2).unwrap();
    assert!(o.forwarded >= o.replays * 64);
    let (encap, _) = load(&["mode=encap", "peers=10", "flows=64"]);
    let corpus: Vec<_> = encap.iter().map(|f| (&f[..], None)).collect();
    weft_bench::replay::replay_and_check(fwdbench, "encap", &corpus, 2).unwrap();
}
