//! The Kubernetes manifest (`deploy/kube-weft.yml`): every object checked against the Kubernetes object
//! schema by Debian's Kubernetes Python client (`tests/deploy/check_manifest.py`), then what a node needs
//! of it: the host's network, privileges, hugepages, the volumes every mount names, the init containers
//! that install the CNI plugin and conflist, weftd's flags and variables, the config and the conflist.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

use clap::CommandFactory;
use serde_json::Value;
use weft_config::node::NodeFile;

fn manifest() -> Vec<Value> {
    let dir = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new("/usr/bin/python3")
        .arg(format!("{dir}/tests/deploy/check_manifest.py"))
        .arg(format!("{dir}/../deploy/kube-weft.yml"))
        .output()
        .expect("/usr/bin/python3 with python3-kubernetes and python3-yaml (make setup)");
    assert!(
        out.status.success(),
        "the manifest does not fit the Kubernetes schema: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_daemonset_fits_the_schema_and_what_a_node_needs() {
    let docs = manifest();
    let of = |kind: &str| docs.iter().find(|d| d["kind"] == kind).unwrap_or_else(|| panic!("no {kind}"));
    let ds = of("DaemonSet");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    let weft = &pod["containers"][0];
    assert_eq!(weft["securityContext"]["privileged"], true);
    assert!(weft["resources"]["limits"]["hugepages-2Mi"].is_string(), "{weft}");
    assert_eq!(weft["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(weft["readinessProbe"]["httpGet"]["path"], "/readyz");
    // Every mount names a volume; the host paths weft needs are there.
    let volumes: Vec<&str> = pod["volumes"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
    let all_containers = pod["containers"].as_array().unwrap().iter().chain(pod["initContainers"].as_array().unwrap());
    for c in all_containers {
        for m in c["volumeMounts"].as_array().unwrap() {
            assert!(volumes.contains(&m["name"].as_str().unwrap()), "{}: no volume {}", c["name"], m["name"]);
        }
    }
    let host_paths: Vec<&str> =
        pod["volumes"].as_array().unwrap().iter().filter_map(|v| v["hostPath"]["path"].as_str()).collect();
    for p in [
        "/dev/vfio",
        "/run/flannel",
        "/run/weft",
        "/run/weft-vhost",
        "/var/lib/weft",
        "/var/lib/cni/networks",
        "/run/netns",
        "/opt/cni/bin",
        "/etc/cni/net.d",
    ] {
        assert!(host_paths.contains(&p), "no hostPath {p}");
    }
    let inits: Vec<String> =
        pod["initContainers"].as_array().unwrap().iter().map(|c| format!("{} {}", c["name"], c["args"])).collect();
    assert!(inits.iter().any(|c| c.contains("install-cni-plugin") && c.contains("/opt/cni/bin/weft")), "{inits:?}");
    assert!(
        inits.iter().any(|c| c.contains("install-cni") && c.contains("/etc/cni/net.d/10-weft.conflist")),
        "{inits:?}"
    );

    // weftd takes the container's flags, and its variables name flags it has.
    let mut argv = vec!["weftd".to_string()];
    argv.extend(weft["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_owned()));
    NodeFile::command().try_get_matches_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    let longs: Vec<String> = NodeFile::command()
        .get_arguments()
        .filter_map(|a| a.get_long().map(|l| l.to_uppercase().replace('-', "_")))
        .collect();
    for e in weft["env"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap();
        let flag = name.strip_prefix("WEFTD_").unwrap_or_else(|| panic!("{name} is not a WEFTD_ variable"));
        assert!(longs.iter().any(|l| l == flag), "{name}: weftd has no --{}", flag.to_lowercase().replace('_', "-"));
    }

    // The ConfigMap: weftd's config parses (no unknown key) and the conflist is the weft plugin's.
    let cfg = &of("ConfigMap")["data"];
    NodeFile::from_toml(cfg["weftd.toml"].as_str().unwrap()).unwrap_or_else(|e| panic!("weftd.toml: {e}"));
    let cni: Value = serde_json::from_str(cfg["cni-conf.json"].as_str().unwrap()).unwrap();
    assert_eq!(cni["plugins"][0]["type"], "weft");
    assert_eq!(cni["cniVersion"], "1.0.0");
}
