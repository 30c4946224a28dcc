//! What the end-to-end benchmark tests share: run `weft-bench` as a user would and take its rows.

use std::process::Command;

/// Run `weft-bench ARGS` (after checking root and hugepages, failing clearly without them) and return
/// the rows of the JSON line it ends with, with its whole output for messages.
pub fn weft_bench_rows(args: &[&str]) -> (Vec<serde_json::Value>, String) {
    if let Err(e) = testkit::eal::check_dpdk_preconditions(512) {
        panic!("{e}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_weft-bench")).args(args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "weft-bench {args:?} failed:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let rows = serde_json::from_str(text.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("weft-bench {args:?} ended without its JSON line ({e}):\n{text}"));
    (rows, text)
}
