//! weftd's flags and config file: every wrong one exits non-zero at start with a message that names the
//! field and says what to do. No root needed: all of these fail before DPDK starts.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

use std::process::Command;

const STATIC: [&str; 8] =
    ["--network", "10.244.0.0/16", "--subnet", "10.244.1.0/24", "--public-ip", "192.168.77.1", "--uplink", "net_null0"];

/// Run weftd with `base` flags, `extra` replacing the value of a base flag it repeats.
fn weftd(extra: &[&str], base: &[&str]) -> (i32, String) {
    let state = std::env::temp_dir().join(format!("weft-cli-{}", std::process::id()));
    let mut args: Vec<String> = base.iter().map(|s| s.to_string()).collect();
    for pair in extra.chunks(2) {
        match (args.iter().position(|a| a == pair[0]), pair.get(1)) {
            (Some(i), Some(v)) => args[i + 1] = v.to_string(),
            _ => args.extend(pair.iter().map(|s| s.to_string())),
        }
    }
    let out = Command::new(env!("CARGO_BIN_EXE_weftd")).args(&args).arg("--state-dir").arg(&state).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn version_names_dpdk() {
    let out = Command::new(env!("CARGO_BIN_EXE_weftd")).arg("--version").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.starts_with("weftd ") && text.contains("DPDK 22.11"), "{text}");
    // flanneld's form on stderr: the bare version, v-prefixed, alone on its line.
    let flannel = String::from_utf8_lossy(&out.stderr);
    assert_eq!(flannel, format!("v{}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn every_bad_flag_is_named_with_its_fix() {
    let cases: &[(&[&str], &[&str], &str)] = &[
        (&["--public-ip", "192.168.77"], &STATIC, "public_ip: \"192.168.77\" is not an IPv4 address"),
        (&["--network", "10.244.0.0"], &STATIC, "network: "),
        (&["--subnet", "10.99.1.0/24"], &STATIC, "subnet: 10.99.1.0/24 is not a subnet inside network"),
        (&["--vni", "16777216"], &STATIC, "vni: "),
        (&["--vxlan-port", "0"], &STATIC, "vxlan_port: 0 is not a UDP port"),
        (&["--underlay-mtu", "100"], &STATIC, "underlay_mtu: "),
        (&["--vtep-mac", "zz:zz"], &STATIC, "vtep_mac: "),
        (&["--workers", "0"], &STATIC, "workers: "),
        (&["--mbufs", "10"], &STATIC, "mbufs: "),
        (&["--metrics-addr", "nowhere"], &STATIC, "metrics_addr: "),
        (&["--peer", "10.244.2.0/24"], &STATIC, "--peer <SUBNET,PUBLIC_IP[,VTEP_MAC]>': \"10.244.2.0/24\" must be"),
        (&["--peer", "10.244.2.0/24,192.168.77.2"], &STATIC, "peers[0].vtep_mac: missing: a vxlan peer needs"),
        (&["--backend", "ipip"], &STATIC, "backend: \"ipip\" is not a backend weft speaks"),
        (&["--backend", "udp", "--direct-routing"], &STATIC, "direct_routing: is for the vxlan backend only"),
        (&["--peer", "10.244.2.0/24,192.168.77.2,xx"], &STATIC, "peers[0].vtep_mac: "),
        (
            &["--etcd-endpoints", "http://127.0.0.1:2379"],
            &STATIC,
            "static mode (subnet given) and etcd_endpoints exclude each other",
        ),
        (&["--config", "/nonexistent/weftd.toml"], &STATIC, "--config /nonexistent/weftd.toml: cannot read it"),
        (&[], &["--uplink", "net_null0"], "public_ip: missing: set `public_ip = "),
        (
            &["--etcd-endpoints", "127.0.0.1:2379"],
            &["--public-ip", "192.168.77.1", "--uplink", "net_null0"],
            "etcd_endpoints: ",
        ),
        (
            &["--etcd-prefix", "coreos.com/network"],
            &["--public-ip", "192.168.77.1", "--uplink", "net_null0"],
            "etcd_prefix: ",
        ),
        (
            &["--etcd-cafile", "/nonexistent/ca.pem"],
            &["--public-ip", "192.168.77.1", "--uplink", "net_null0"],
            "etcd_cafile: /nonexistent/ca.pem is not a readable file",
        ),
        (
            &["--subnet-lease-renew-margin", "0"],
            &["--public-ip", "192.168.77.1", "--uplink", "net_null0"],
            "subnet_lease_renew_margin: ",
        ),
    ];
    for (extra, base, want) in cases {
        let (code, err) = weftd(extra, base);
        assert_ne!(code, 0, "{extra:?} must fail");
        assert!(err.contains(want), "{extra:?}: wanted {want:?} in:\n{err}");
    }
    // An unknown key in the config file is named.
    let file = std::env::temp_dir().join(format!("weft-cli-{}.toml", std::process::id()));
    std::fs::write(&file, "netwrok = \"10.0.0.0/8\"\n").unwrap();
    let (code, err) = weftd(&["--config", file.to_str().unwrap()], &[]);
    assert!(code != 0 && err.contains("netwrok"), "{err}");
    let _ = std::fs::remove_file(file);
}

/// weftd with `args` and `env` set (and nothing else of weft's or flannel's in its environment).
fn weftd_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let state = std::env::temp_dir().join(format!("weft-cli-env-{}", std::process::id()));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weftd"));
    for (k, _) in std::env::vars() {
        if k.starts_with("WEFTD_") || k.starts_with("FLANNELD_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd.args(args).arg("--state-dir").arg(&state).envs(env.iter().copied()).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Every flag from the environment: WEFTD_<FLAG>; flannel's flags also from FLANNELD_<FLAG>, as flanneld
/// reads them; a flag wins over its variable, and WEFTD_ over FLANNELD_.
#[test]
fn flags_from_the_environment() {
    let base = ["--network", "10.244.0.0/16", "--subnet", "10.244.1.0/24", "--uplink", "net_null0"];
    let (code, err) = weftd_env(&base, &[("WEFTD_PUBLIC_IP", "192.168.77")]);
    assert!(code != 0 && err.contains("public_ip: \"192.168.77\""), "{err}");
    let (code, err) = weftd_env(&base, &[("FLANNELD_PUBLIC_IP", "10.0.0.300")]);
    assert!(code != 0 && err.contains("public_ip: \"10.0.0.300\""), "{err}");
    let (_, err) = weftd_env(&base, &[("WEFTD_PUBLIC_IP", "1.2.3"), ("FLANNELD_PUBLIC_IP", "4.5.6")]);
    assert!(err.contains("\"1.2.3\""), "WEFTD_ wins: {err}");
    // Not a flannel flag: no FLANNELD_ variable for it. (workers is checked before mbufs, so had the
    // variable been read, the error would name workers.)
    let mut later_error = base.to_vec();
    later_error.extend(["--mbufs", "10"]);
    let (code, err) = weftd_env(&later_error, &[("FLANNELD_WORKERS", "0"), ("WEFTD_PUBLIC_IP", "192.168.77.1")]);
    assert!(code != 0 && err.contains("mbufs: 10") && !err.contains("workers:"), "{err}");
    let (code, err) = weftd_env(&base, &[("WEFTD_WORKERS", "0"), ("WEFTD_PUBLIC_IP", "192.168.77.1")]);
    assert!(code != 0 && err.contains("workers: 0"), "{err}");
    // The flag wins.
    let mut with_flag = base.to_vec();
    with_flag.extend(["--public-ip", "192.168.77.1", "--workers", "0"]);
    let (_, err) = weftd_env(&with_flag, &[("WEFTD_PUBLIC_IP", "bad")]);
    assert!(err.contains("workers: 0") && !err.contains("public_ip"), "{err}");
    // Booleans from the environment, and flannel's healthz flags.
    let mut no_host_port = base.to_vec();
    no_host_port.extend(["--host-iface", ""]);
    let (code, err) = weftd_env(&no_host_port, &[("FLANNELD_IP_MASQ", "true"), ("WEFTD_PUBLIC_IP", "192.168.77.1")]);
    assert!(code != 0 && err.contains("ip_masq: masquerading needs the host port"), "{err}");
    let (code, err) = weftd_env(
        &base,
        &[("FLANNELD_HEALTHZ_IP", "nowhere"), ("FLANNELD_HEALTHZ_PORT", "8471"), ("WEFTD_PUBLIC_IP", "192.168.77.1")],
    );
    assert!(code != 0 && err.contains("healthz_ip: \"nowhere\""), "{err}");
}
