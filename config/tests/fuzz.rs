//! Fuzz targets for the config and lease parsers, as property tests (see dataplane/tests/fuzz.rs for the
//! long run): mutated valid inputs and arbitrary strings never panic, and what validates is consistent.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

use proptest::prelude::*;
use weft_config::node::NodeFile;
use weft_config::{Ipv4Net, Lease, MacAddr, NetworkConfig, SubnetKey};

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(3000);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

const NETWORK: &str = r#"{"Network":"10.244.0.0/16","SubnetLen":24,"SubnetMin":"10.244.1.0","SubnetMax":"10.244.9.0","Backend":{"Type":"vxlan","VNI":1,"Port":8472}}"#;
const LEASE: &str = r#"{"PublicIP":"192.168.100.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}"#;
const NODE: &str = "network = \"10.244.0.0/16\"\nsubnet = \"10.244.1.0/24\"\npublic_ip = \"192.168.77.1\"\nuplink = \"net_null0\"\n[[peers]]\nsubnet = \"10.244.2.0/24\"\npublic_ip = \"192.168.77.2\"\nvtep_mac = \"aa:c4:e1:93:50:bd\"\n";

fn mutated(seed: &'static str) -> impl Strategy<Value = String> {
    let b = seed.as_bytes().to_vec();
    let len = b.len();
    (proptest::collection::vec((0..len, any::<u8>()), 0..5), 0..=len).prop_map(move |(edits, cut)| {
        let mut f = b.clone();
        for (i, x) in edits {
            f[i] = x;
        }
        f.truncate(cut);
        String::from_utf8_lossy(&f).into_owned()
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_network_config(s in mutated(NETWORK)) {
        if let Ok(c) = NetworkConfig::from_json(&s) {
            prop_assert!(c.network.contains(c.subnet_min) && c.network.contains(c.subnet_max));
            prop_assert!(c.subnet_len > c.network.prefix_len() && c.subnet_len <= 30);
            prop_assert!(c.vni.get() < 1 << 24);
        }
    }

    #[test]
    fn fuzz_lease_json(s in mutated(LEASE)) {
        if let Ok(l) = Lease::from_json(&s) {
            let _ = l.vxlan_data();
            let again = Lease::from_json(&l.to_json()).unwrap();
            prop_assert_eq!(again.public_ip, l.public_ip);
        }
    }

    #[test]
    fn fuzz_node_file(s in mutated(NODE)) {
        if let Ok(f) = NodeFile::from_toml(&s) {
            let _ = f.resolve();
            let _ = f.etcd();
        }
    }

    #[test]
    fn fuzz_small_parsers(s in "\\PC{0,24}") {
        let _ = s.parse::<SubnetKey>();
        let _ = s.parse::<Ipv4Net>();
        let _ = s.parse::<MacAddr>();
        let _ = NetworkConfig::from_json(&s);
        let _ = Lease::from_json(&s);
        let _ = NodeFile::from_toml(&s);
    }
}
