//! Replaying a corpus of frames through weft's real worker at full rate (`weft-fwdbench`, `net_pcap`
//! `infinite_rx=1` into `net_null`) and checking the outcome: because the replay repeats the corpus,
//! every drop reason must count exactly replays × its frames (± one partial replay) and every frame
//! expected to pass must be forwarded as often. Used by the malformed-frame and the TRex profile tests.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, ensure, Context};

/// A frame and what weft must do with it: `None` forward it, `Some(reason)` drop it under that label.
pub type Expect<'a> = (&'a [u8], Option<&'a str>);

/// What a replay did.
#[derive(Debug)]
pub struct Outcome {
    pub rx: u64,
    pub replays: u64,
    pub forwarded: u64,
    pub drops: BTreeMap<String, u64>,
}

/// Replay `corpus` into the uplink (`mode` "decap") or a pod port ("encap") for `seconds` and check
/// every frame was forwarded or counted as expected.
pub fn replay_and_check(fwdbench: &Path, mode: &str, corpus: &[Expect<'_>], seconds: u64) -> anyhow::Result<Outcome> {
    testkit::eal::check_dpdk_preconditions(256).map_err(|e| anyhow::anyhow!("{e}"))?;
    let tag = format!("weft-replay-{}-{mode}", std::process::id());
    let dir = std::env::temp_dir().join(&tag);
    std::fs::create_dir_all(&dir)?;
    let pcap = dir.join("corpus.pcap");
    std::fs::write(&pcap, dataplane::wire::pcap::write_pcap(corpus.iter().map(|c| c.0)))?;
    let vdevs = [format!("net_pcap0,rx_pcap={},infinite_rx=1", pcap.display()), "net_null0,no-rx=1".to_string()];
    let eal = testkit::eal::vdev_eal_args(&tag, "0,1", &vdevs);
    let out = Command::new(fwdbench)
        .args(["--mode", mode, "--peers", "10", "--seconds", &seconds.to_string(), "--"])
        .args(&eal)
        .output()
        .context("running weft-fwdbench")?;
    let _ = std::fs::remove_dir_all(&dir);
    testkit::eal::remove_dpdk_leftovers(&tag);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(out.status.success(), "weft-fwdbench: {text}{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value =
        serde_json::from_str(text.lines().find_map(|l| l.strip_prefix("report: ")).context("no report line")?)?;
    let rx = report["rx"].as_u64().context("rx")?;
    let n = corpus.len() as u64;
    let replays = rx / n;
    ensure!(replays > 10, "only {rx} frames in {seconds} s");
    let mut want: BTreeMap<&str, u64> = BTreeMap::new();
    let mut valid = 0;
    for (_, reason) in corpus {
        match reason {
            Some(r) => *want.entry(r).or_default() += 1,
            None => valid += 1,
        }
    }
    let forwarded = report["forwarded"].as_u64().context("forwarded")?;
    let drops: BTreeMap<String, u64> = report["drops"]
        .as_object()
        .context("drops")?
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
        .collect();
    eprintln!("{mode}: {rx} frames ({replays} replays of {n}); forwarded {forwarded}; drops {drops:?}");
    ensure!(
        (replays * valid..=(replays + 1) * valid).contains(&forwarded),
        "frames lost: {forwarded} forwarded of {replays}×{valid}"
    );
    for (reason, k) in &want {
        let got = drops.get(*reason).copied().unwrap_or(0);
        ensure!((replays * k..=(replays + 1) * k).contains(&got), "{reason}: {got} counted, {replays}×{k} expected");
    }
    if let Some((reason, v)) = drops.iter().find(|(r, _)| !want.contains_key(r.as_str())) {
        bail!("unexpected drops under {reason}: {v}");
    }
    ensure!(drops.values().sum::<u64>() + forwarded == rx, "not every frame forwarded or counted");
    // What stays allocated after stop is the replay ring of the pcap device (one mbuf per corpus frame).
    let left = report["mempool_in_use_after_stop"].as_u64().context("mempool")?;
    ensure!(left <= n + 64, "mbufs still in use after stop: {left}");
    Ok(Outcome { rx, replays, forwarded, drops })
}
