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

/// The fastest of a contender's repetitions, `None` when there are none. On a shared machine another
/// tenant only ever slows a forwarder down (taking its core's time, its caches, its memory bandwidth),
/// so the fastest repetition is the one the machine disturbed least: what the forwarder itself does,
/// where the median also carries how often the machine got in its way.
pub fn best(v: &[f64]) -> Option<f64> {
    v.iter().copied().reduce(f64::max)
}

/// Cycles a packet of a forwarder that does `pps` packets a second on one core whose TSC ticks `hz`
/// times a second; `None` without a rate.
pub fn cycles_per_packet(hz: f64, pps: f64) -> Option<f64> {
    (pps > 0.0 && hz > 0.0).then(|| hz / pps)
}

/// The cycles a packet that `own_pps` costs more than `base_pps` on the same devices: weft's own
/// work, where the baseline (testpmd io) only moves frames from one device to the other.
pub fn own_cycles(hz: f64, own_pps: f64, base_pps: f64) -> Option<f64> {
    Some(cycles_per_packet(hz, own_pps)? - cycles_per_packet(hz, base_pps)?)
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

/// Latency histogram with log-linear buckets: 16 sub-buckets per power of two, so every recorded value
/// lands in a bucket at most 1/16 (6.25 %) wide relative to its value. Fixed size, no allocation per
/// sample: the generator records every received frame.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    buckets: Vec<u64>,
    count: u64,
    max: u64,
}

const SUB_BITS: u32 = 4;
const SUB: u64 = 1 << SUB_BITS;

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram { buckets: vec![0; (64 * SUB) as usize], count: 0, max: 0 }
    }
}

impl LatencyHistogram {
    fn index(v: u64) -> usize {
        if v < SUB {
            return v as usize;
        }
        let msb = 63 - v.leading_zeros() as u64;
        let sub = (v >> (msb - SUB_BITS as u64)) & (SUB - 1);
        ((msb - SUB_BITS as u64 + 1) * SUB + sub) as usize
    }

    /// The smallest value that falls in bucket `i`.
    fn lower(i: usize) -> u64 {
        let i = i as u64;
        if i < SUB {
            return i;
        }
        let msb = i / SUB + SUB_BITS as u64 - 1;
        (1 << msb) | ((i % SUB) << (msb - SUB_BITS as u64))
    }

    #[inline]
    pub fn record(&mut self, v: u64) {
        self.buckets[Self::index(v)] += 1;
        self.count += 1;
        self.max = self.max.max(v);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value at quantile `q` (0..=1): the lower edge of the bucket holding it (exact below 16).
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Self::lower(i).min(self.max);
            }
        }
        self.max
    }
}

/// What came back of a numbered stream: received, lost, reordered (arrived after a higher number) and
/// duplicated numbers, for sequence numbers 0.. sent in order.
#[derive(Debug, Clone, Default)]
pub struct SeqTracker {
    pub received: u64,
    pub reordered: u64,
    pub duplicates: u64,
    next_expected: u64,
    /// Numbers below `next_expected` that were skipped and have not (yet) arrived, as a bitmap window
    /// so late arrivals are told apart from duplicates without a set per packet.
    window: Vec<u64>,
}

const WINDOW_BITS: u64 = 1 << 20;

impl SeqTracker {
    fn bit(&mut self, seq: u64) -> (usize, u64) {
        if self.window.is_empty() {
            self.window = vec![0; (WINDOW_BITS / 64) as usize];
        }
        let b = seq % WINDOW_BITS;
        ((b / 64) as usize, 1 << (b % 64))
    }

    #[inline]
    pub fn record(&mut self, seq: u64) {
        if seq >= self.next_expected {
            // Mark the skipped numbers as missing (bounded by the window; older ones count as lost).
            let from = self.next_expected.max((seq + 1).saturating_sub(WINDOW_BITS));
            for s in from..seq {
                let (w, m) = self.bit(s);
                self.window[w] |= m;
            }
            let (w, m) = self.bit(seq);
            self.window[w] &= !m;
            self.next_expected = seq + 1;
            self.received += 1;
        } else if seq + WINDOW_BITS > self.next_expected {
            let (w, m) = self.bit(seq);
            if self.window[w] & m != 0 {
                self.window[w] &= !m;
                self.received += 1;
                self.reordered += 1;
            } else {
                self.duplicates += 1;
            }
        } else {
            // Later than the window can tell: count it as a late (reordered) arrival.
            self.received += 1;
            self.reordered += 1;
        }
    }

    /// Lost out of `sent` numbers (0..sent): sent minus distinct numbers received.
    pub fn lost(&self, sent: u64) -> u64 {
        sent.saturating_sub(self.received)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_is_the_fastest_repetition() {
        assert_eq!(best(&[17.5, 24.2, 14.7, 18.6]), Some(24.2));
        assert_eq!(best(&[3.0]), Some(3.0));
        assert_eq!(best(&[]), None);
    }

    #[test]
    fn own_cycles_are_the_difference_of_cycles_a_packet() {
        // 2445 MHz: 24.15 Mpps is 101.24 cycles a packet, 39.82 Mpps 61.40.
        let c = own_cycles(2.445e9, 24.15e6, 39.82e6).unwrap();
        assert!((c - 39.84).abs() < 0.01, "{c}");
        assert_eq!(cycles_per_packet(2.0e9, 1.0e6), Some(2000.0));
        assert_eq!(own_cycles(2.0e9, 0.0, 1.0e6), None);
        assert_eq!(own_cycles(2.0e9, 1.0e6, 0.0), None);
        assert_eq!(own_cycles(0.0, 1.0e6, 1.0e6), None);
    }

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

    #[test]
    fn histogram_quantiles_within_a_bucket() {
        let mut h = LatencyHistogram::default();
        for v in 1..=10_000u64 {
            h.record(v);
        }
        assert_eq!(h.count(), 10_000);
        assert_eq!(h.max(), 10_000);
        for (q, exact) in [(0.5, 5_000.0), (0.9, 9_000.0), (0.99, 9_900.0), (0.999, 9_990.0)] {
            let got = h.quantile(q) as f64;
            assert!(got <= exact && got >= exact * (1.0 - 1.0 / 16.0), "q{q}: {got} vs {exact}");
        }
        assert_eq!(h.quantile(0.0), 1);
        assert_eq!(h.quantile(1.0), h.max().min(LatencyHistogram::lower(LatencyHistogram::index(10_000))));
    }

    #[test]
    fn histogram_small_values_exact_and_empty() {
        let mut h = LatencyHistogram::default();
        assert_eq!(h.quantile(0.5), 0);
        for v in [3, 3, 7, 15] {
            h.record(v);
        }
        assert_eq!(h.quantile(0.5), 3);
        assert_eq!(h.quantile(1.0), 15);
        h.record(u64::MAX);
        assert_eq!(h.max(), u64::MAX);
    }

    #[test]
    fn bucket_edges_are_monotonic() {
        let mut last = 0;
        for i in 1..=LatencyHistogram::index(u64::MAX) {
            let lo = LatencyHistogram::lower(i);
            assert!(lo > last, "bucket {i}");
            assert_eq!(LatencyHistogram::index(lo), i);
            last = lo;
        }
    }

    #[test]
    fn seq_in_order_lost_reordered_duplicated() {
        let mut t = SeqTracker::default();
        for s in [0, 1, 2, 5, 3, 6, 6, 9] {
            t.record(s);
        }
        // 4, 7, 8 never came; 3 came after 5; 6 came twice.
        assert_eq!(t.received, 7);
        assert_eq!(t.reordered, 1);
        assert_eq!(t.duplicates, 1);
        assert_eq!(t.lost(10), 3);
    }

    #[test]
    fn seq_far_behind_the_window_counts_as_late() {
        let mut t = SeqTracker::default();
        t.record(5 * WINDOW_BITS);
        t.record(1);
        assert_eq!((t.received, t.reordered, t.duplicates), (2, 1, 0));
    }
}
