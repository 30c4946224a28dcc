//! The monitoring that ships with weft: the alert rules fire on what they watch with the texts their
//! thresholds say (`promtool test rules` on `config/prometheus/weft-alerts.test.yml`), and the Grafana
//! dashboard and the alerts only use series weftd exports, with every dashboard query per instance.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

use std::collections::BTreeSet;

const METRICS_RS: &str = include_str!("../src/daemon/metrics.rs");
const DASHBOARD: &str = include_str!("../../config/grafana/weft-dashboard.json");
const ALERTS: &str = include_str!("../../config/prometheus/weft-alerts.yml");

/// The `weft_...` series names in `text`.
fn series(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("weft_") {
        let name: String =
            rest[i..].chars().take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_').collect();
        rest = &rest[i + name.len().max(1)..];
        // Not a series: the alert group's name and file names.
        if name.len() > "weft_".len() && !name.ends_with('_') {
            out.insert(name);
        }
    }
    out
}

#[test]
fn alerts_fire_on_what_they_watch() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/prometheus");
    let out = std::process::Command::new("promtool")
        .args(["test", "rules", "weft-alerts.test.yml"])
        .current_dir(dir)
        .output()
        .expect("promtool (Debian's prometheus package)");
    assert!(
        out.status.success(),
        "promtool test rules: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_dashboard_is_per_instance_and_the_alerts_use_exported_series() {
    let exported = series(METRICS_RS);
    let d: serde_json::Value = serde_json::from_str(DASHBOARD).unwrap();
    let mut used = BTreeSet::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            let e = t["expr"].as_str().unwrap();
            assert!(e.contains("instance=~\"$instance\""), "panel {}: {e} is not filtered by instance", p["title"]);
            for agg in ["sum by (", "max by (", "min by (", "avg by ("] {
                for part in e.split(agg).skip(1) {
                    assert!(part.starts_with("instance"), "panel {}: {e} aggregates instances together", p["title"]);
                }
            }
            used.extend(series(e));
        }
    }
    for name in ["weft_ready", "weft_port_hw_rx_missed_total", "weft_build_info", "weft_backend_info"] {
        assert!(used.contains(name), "the dashboard has no panel for {name}");
    }
    let alerting = series(ALERTS);
    for name in used.iter().chain(alerting.iter()) {
        // `up` is Prometheus's own; everything weft_ must be one weftd writes.
        assert!(exported.contains(name), "{name} is not a series weftd exports");
    }
}
