//! The Debian package (`scripts/make-deb.sh`) from the binaries this test run built: its control data
//! (DPDK's libraries as dependencies, the config as a conffile), then installed with dpkg into an empty
//! root, run from there, removed (the config stays) and purged (nothing stays). An empty root, not a
//! fresh machine: the dependencies are the host's (`--force-depends`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

use std::path::Path;
use std::process::Command;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{cmd:?}: {text}");
    text
}

#[test]
fn the_debian_package_installs_runs_and_purges() {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_weftd")).parent().unwrap();
    assert!(bin_dir.join("weft").exists() && bin_dir.join("weftctl").exists());
    let dir = std::env::temp_dir().join(format!("weft-deb-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/make-deb.sh");
    let out = run(Command::new("bash").arg(script).arg(dir.join("out")).env("BIN_DIR", bin_dir));
    let deb = out.lines().last().unwrap().trim().to_owned();
    assert!(deb.ends_with(".deb"), "{out}");

    let info = run(Command::new("dpkg-deb").args(["--info", &deb]));
    for want in [
        "Package: weft",
        "librte-eal",
        "librte-ethdev",
        "librte-net-tap",
        "librte-net-af-packet",
        "iproute2",
        "iptables",
        "ethtool",
    ] {
        assert!(info.contains(want), "{want} not in:\n{info}");
    }

    // An empty dpkg root.
    let root = dir.join("root");
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    let dpkg = |args: &[&str]| {
        let mut c = Command::new("dpkg");
        c.arg(format!("--root={}", root.display()))
            .args(["--force-depends", "--force-script-chrootless", "--log=/dev/null"])
            .args(args);
        run(&mut c)
    };
    dpkg(&["-i", &deb]);
    let status = dpkg(&["-s", "weft"]);
    assert!(status.contains("Status: install ok installed"), "{status}");
    assert!(status.contains("/etc/weft/weftd.toml"), "the config is a conffile:\n{status}");
    for f in [
        "usr/bin/weftd",
        "usr/bin/weftctl",
        "usr/lib/cni/weft",
        "lib/systemd/system/weftd.service",
        "etc/weft/weftd.toml",
    ] {
        assert!(root.join(f).exists(), "{f} not installed");
    }
    // The installed binaries run against the system's DPDK.
    let v = run(Command::new(root.join("usr/bin/weftd")).arg("--version"));
    assert!(v.starts_with("weftd ") && v.contains("DPDK"), "{v}");
    let cni = run(Command::new(root.join("usr/lib/cni/weft")).env("CNI_COMMAND", "VERSION"));
    assert!(cni.contains("supportedVersions"), "{cni}");
    // The installed config parses (it is etcd mode: a static subnet on top is refused by name, at once,
    // rather than waiting for its etcd).
    let e = Command::new("timeout")
        .arg("20")
        .arg(root.join("usr/bin/weftd"))
        .arg("--config")
        .arg(root.join("etc/weft/weftd.toml"))
        .args(["--subnet", "10.244.1.0/24", "--state-dir"])
        .arg(dir.join("state"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&e.stderr);
    assert!(said.contains("static mode (subnet given) and etcd_endpoints exclude each other"), "{said}");

    dpkg(&["-r", "weft"]);
    assert!(!root.join("usr/bin/weftd").exists());
    assert!(root.join("etc/weft/weftd.toml").exists(), "remove keeps the conffile");
    dpkg(&["-P", "weft"]);
    assert!(!root.join("etc/weft/weftd.toml").exists(), "purge removes the conffile");
    let _ = std::fs::remove_dir_all(&dir);
}
