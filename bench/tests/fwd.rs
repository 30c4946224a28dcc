//! `weft-bench fwd` end to end, for what it reports rather than how fast: two short repetitions of
//! encap against testpmd io, and the row must hold every repetition's rate, the fastest of them, the
//! ratios of both, and weft's own cycles a packet worked out from weft-fwdbench's TSC rate. Needs root
//! and hugepages; the processes it starts end with their `--seconds`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panic is the failure report

mod common;

fn f(row: &serde_json::Value, key: &str) -> f64 {
    row[key].as_f64().unwrap_or_else(|| panic!("no {key} in {row}"))
}

#[test]
fn a_fwd_row_holds_every_repetition_the_fastest_and_weft_s_own_cycles() {
    let (rows, text) = common::weft_bench_rows(&[
        "fwd",
        "--modes",
        "encap",
        "--peers",
        "10",
        "--baselines",
        "testpmd",
        "--reps",
        "2",
        "--seconds",
        "2",
        "--no-record",
    ]);
    assert_eq!(rows.len(), 1, "{text}");
    let row = &rows[0];
    for who in ["weft", "testpmd"] {
        let reps: Vec<f64> = row[format!("{who}_reps_mpps")]
            .as_array()
            .unwrap_or_else(|| panic!("no {who}_reps_mpps in {row}"))
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert_eq!(reps.len(), 2, "{who}: {row}");
        assert!(reps.iter().all(|&r| r > 0.1), "{who} forwarded nothing in a repetition: {row}");
        // Two repetitions: the median is their mean, the best the larger.
        let (lo, hi) = (reps[0].min(reps[1]), reps[0].max(reps[1]));
        assert!((f(row, &format!("{who}_best_mpps")) - hi).abs() < 1e-9, "{row}");
        assert!((f(row, &format!("{who}_mpps")) - (lo + hi) / 2.0).abs() < 1e-9, "{row}");
    }
    let ratio = f(row, "weft_best_mpps") / f(row, "testpmd_best_mpps");
    assert!((f(row, "best_ratio_vs_testpmd") - ratio).abs() < 1e-9, "{row}");
    // The TSC rate is weft-fwdbench's (its EAL's calibration), printed with the figures.
    let mhz: f64 = text
        .lines()
        .find_map(|l| l.split("own cycles a packet (").nth(1)?.split(" MHz").next()?.parse().ok())
        .unwrap_or_else(|| panic!("no own cycles line:\n{text}"));
    let hz = mhz * 1e6;
    assert!(hz > 1e8, "{hz} Hz:\n{text}");
    for (key, rate) in [("weft_own_cycles", "mpps"), ("weft_own_cycles_best", "best_mpps")] {
        let want = hz / (f(row, &format!("weft_{rate}")) * 1e6) - hz / (f(row, &format!("testpmd_{rate}")) * 1e6);
        // The line rounds the rate to a MHz.
        assert!((f(row, key) - want).abs() < 0.01 * want.abs().max(1.0), "{key}: {} against {want}: {row}", row[key]);
    }
}
