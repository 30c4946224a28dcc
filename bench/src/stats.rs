//! Small statistics for benchmark samples.

/// Median of `v` (sorted in place); `None` when empty.
pub fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

/// Parse testpmd's periodic "Port statistics" blocks: per period, the sum of `Rx-pps` over all ports.
pub fn testpmd_rx_pps(output: &str) -> Vec<f64> {
    let mut periods = Vec::new();
    let mut cur: Option<f64> = None;
    for line in output.lines() {
        if line.contains("Port statistics ====") {
            if let Some(c) = cur.take() {
                periods.push(c);
            }
            cur = Some(0.0);
        } else if let Some(rest) = line.trim_start().strip_prefix("Rx-pps:") {
            if let (Some(c), Some(v)) =
                (cur.as_mut(), rest.split_whitespace().next().and_then(|x| x.parse::<f64>().ok()))
            {
                *c += v;
            }
        }
    }
    if let Some(c) = cur {
        periods.push(c);
    }
    periods
}

#[cfg(test)]
mod tests {
    use super::*;

    const TESTPMD: &str = "\
Port statistics ====================================
  ######################## NIC statistics for port 0  ########################
  Rx-pps:            0          Rx-bps:            0
  Tx-pps:            0          Tx-bps:            0
  ######################## NIC statistics for port 1  ########################
  Rx-pps:            0          Rx-bps:            0
Port statistics ====================================
  Rx-pps:     55124441          Rx-bps:            0
  Tx-pps:     55124457          Tx-bps:            0
  Rx-pps:     55124520          Rx-bps:            0
";

    #[test]
    fn parse_testpmd_periods() {
        assert_eq!(testpmd_rx_pps(TESTPMD), vec![0.0, 110248961.0]);
    }

    #[test]
    fn median_odd_even_empty() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
    }
}
