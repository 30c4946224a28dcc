//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).

/// One's-complement sum of `data` as 16-bit big-endian words, folded to 16 bits, starting from `initial`.
#[inline]
pub fn sum(data: &[u8], initial: u32) -> u16 {
    // Summing 32-bit words into a 64-bit accumulator and folding at the end gives the same one's-complement
    // sum as 16-bit words (RFC 1071 §2(C)), in half the additions.
    let mut acc = initial as u64;
    let mut words = data.chunks_exact(4);
    for c in &mut words {
        acc += u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as u64;
    }
    let rest = words.remainder();
    let mut pairs = rest.chunks_exact(2);
    for c in &mut pairs {
        acc += u16::from_be_bytes([c[0], c[1]]) as u64;
    }
    if let [last] = pairs.remainder() {
        acc += (*last as u64) << 8;
    }
    fold(acc)
}

/// End-around carry down to 16 bits, without a loop: a sum of fewer than 2^32 32-bit words fits in 64
/// bits, and after the 32-bit fold three 16-bit folds always suffice (2^32 = 1 mod 0xffff, so each
/// step keeps the value mod 0xffff, and a non-zero sum never folds to zero).
#[inline(always)]
fn fold(acc: u64) -> u16 {
    let acc = (acc & 0xffff_ffff) + (acc >> 32);
    let acc = (acc & 0xffff) + (acc >> 16);
    let acc = (acc & 0xffff) + (acc >> 16);
    ((acc & 0xffff) + (acc >> 16)) as u16
}

/// The checksum field value for `data` (whose checksum field is zero).
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !sum(data, 0)
}

/// RFC 1624 eqn. 3: the new checksum `HC' = ~(~HC + ~m + m')` after a 16-bit word changed from `old` to
/// `new`. Correct for every input, including the 0x0000/0xffff cases that eqn. 2 gets wrong.
#[inline(always)]
pub fn update16(hc: u16, old: u16, new: u16) -> u16 {
    !fold((!hc) as u64 + (!old) as u64 + new as u64)
}

/// [`sum`] of no data from a 32-bit `acc`: two 16-bit folds suffice (the first leaves at most 0x1ffff,
/// the second at most 0xffff), where [`sum`] folds a 64-bit value four times. For the per-packet
/// checksums that add a few 16-bit fields to a precomputed base (the encapsulation templates').
#[inline(always)]
pub fn fold32(acc: u32) -> u16 {
    let acc = (acc & 0xffff) + (acc >> 16);
    ((acc & 0xffff) + (acc >> 16)) as u16
}

/// [`update16`] for the word of an IPv4 header that holds the TTL (its high byte) when the TTL went
/// down by `hops` and did not wrap: the word went down by `hops << 8`, so `~m + m'` is that difference
/// in one's complement, `0xffff - (hops << 8)`, and the sum fits in 17 bits: one fold, where
/// [`update16`] takes the two words apart and folds four times. Equal to [`update16`] for every
/// checksum and every TTL of at least `hops`: the sum is the same number (the test compares the two on
/// every checksum at the TTLs where carries differ, and on every TTL at checksums near the corners).
#[inline(always)]
pub fn update_ttl_down(hc: u16, hops: u8) -> u16 {
    let acc = u32::from(!hc) + (0xffff - (u32::from(hops) << 8));
    !((acc & 0xffff) + (acc >> 16)) as u16
}

/// [`update_ttl_down`] on the checksum field read as it lies in memory, in little-endian order, and
/// written back the same way: a one's-complement sum does not depend on the byte order (RFC 1071,
/// 2(B)), so the same sum over the swapped words, with the swapped difference (`hops`, not `hops <<
/// 8`), is the swapped result. No swap of the field on the way in or out.
#[inline(always)]
pub fn update_ttl_down_le(raw: u16, hops: u8) -> u16 {
    let acc = u32::from(!raw) + (0xffff - u32::from(hops));
    !((acc & 0xffff) + (acc >> 16)) as u16
}

/// An IPv4 header without options whose checksum is right: its one's-complement sum folds to 0xffff.
/// That is so exactly when the plain sum of its five 32-bit words is a non-zero multiple of 0xffff
/// (folding keeps the value mod 0xffff and never takes a non-zero sum to 0), which one remainder by a
/// constant says in fewer instructions than [`sum`]'s folds.
#[inline(always)]
pub fn valid20(h: &[u8; 20]) -> bool {
    let w = |i: usize| u64::from(u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]));
    let acc = w(0) + w(4) + w(8) + w(12) + w(16);
    acc != 0 && acc % 0xffff == 0
}

/// As [`update16`] for a 32-bit field (two words), e.g. an address.
#[inline(always)]
pub fn update32(hc: u16, old: u32, new: u32) -> u16 {
    let acc = (!hc) as u64
        + (!(old >> 16) as u16) as u64
        + (!(old as u16)) as u64
        + (new >> 16) as u64
        + (new & 0xffff) as u64;
    !fold(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rustfmt::skip]
    const IPV4_HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x54, // version/IHL, TOS, total length 84
        0x12, 0x34, 0x40, 0x00, // ident, DF
        0x40, 0x01, 0x00, 0x00, // TTL 64, ICMP, checksum (zero)
        0x0a, 0xf4, 0x01, 0x02, // 10.244.1.2
        0x0a, 0xf4, 0x02, 0x02, // 10.244.2.2
    ];

    /// All-zero, all-ones and a real header, then `n` pseudo-random ones (xorshift from `seed`) with
    /// every other byte or so 0xff, so that the sums carry often.
    fn corner_headers(mut seed: u32, n: usize) -> Vec<[u8; 20]> {
        let mut headers: Vec<[u8; 20]> = vec![[0; 20], [0xff; 20], IPV4_HEADER];
        for _ in 0..n {
            let mut h = [0u8; 20];
            for b in h.iter_mut() {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                *b = if seed & 0x100 != 0 { 0xff } else { seed as u8 };
            }
            headers.push(h);
        }
        headers
    }

    /// The loop-free fold and the sum of 32-bit words agree with folding one 16-bit word at a time, on
    /// every corner the carries have.
    #[test]
    fn fold_and_sum_match_the_plain_definition() {
        let slow = |data: &[u8]| {
            let mut acc: u64 = 0;
            for c in data.chunks(2) {
                acc += u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
                while acc >> 16 != 0 {
                    acc = (acc & 0xffff) + (acc >> 16);
                }
            }
            acc as u16
        };
        for h in &corner_headers(0x1234_5678, 10_000) {
            assert_eq!(sum(h, 0), slow(h), "{h:?}");
        }
        assert_eq!(fold(u64::MAX), 0xffff);
        assert_eq!(fold(0), 0);
    }

    #[test]
    fn checksum_verifies_to_zero() {
        let mut h = IPV4_HEADER;
        let c = checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(checksum(&h), 0);
    }

    #[test]
    fn update16_matches_recompute_for_every_ttl() {
        let mut h = IPV4_HEADER;
        for ttl in 0..=255u8 {
            h[8] = ttl;
            h[10..12].copy_from_slice(&[0, 0]);
            let base = checksum(&h);
            let old_word = u16::from_be_bytes([h[8], h[9]]);
            h[8] = ttl.wrapping_sub(1);
            let new_word = u16::from_be_bytes([h[8], h[9]]);
            let inc = update16(base, old_word, new_word);
            h[10..12].copy_from_slice(&[0, 0]);
            let full = checksum(&h);
            // Both forms of zero are equivalent in one's complement; the verifier accepts either.
            h[10..12].copy_from_slice(&inc.to_be_bytes());
            assert_eq!(sum(&h, 0), 0xffff, "ttl {ttl}: inc {inc:#06x} full {full:#06x}");
        }
    }

    /// The update of the field as it lies equals the update of its value, for every checksum and
    /// every number of hops.
    #[test]
    fn update_ttl_down_le_is_update_ttl_down_of_the_swapped_field() {
        for hops in 1..=u8::MAX {
            for hc in 0..=u16::MAX {
                let le = update_ttl_down_le(hc.swap_bytes(), hops).swap_bytes();
                assert_eq!(le, update_ttl_down(hc, hops), "hc {hc:#06x} hops {hops}");
            }
        }
    }

    /// The one-fold TTL update equals the general one for every checksum at the TTLs where carries
    /// differ (the lowest that does not wrap, 64, 255), for every TTL at checksums near the corners,
    /// and whatever the protocol byte, for the 1 to 3 hops the packet paths take.
    #[test]
    fn update_ttl_down_equals_update16_for_every_checksum_and_ttl() {
        let check = |hc: u16, ttl: u8, hops: u8, proto: u8| {
            let old = u16::from_be_bytes([ttl, proto]);
            let new = u16::from_be_bytes([ttl - hops, proto]);
            assert_eq!(update_ttl_down(hc, hops), update16(hc, old, new), "hc {hc:#06x} ttl {ttl} hops {hops}");
        };
        for hops in 1..=3u8 {
            for proto in [0u8, 1, 6, 17, 0xff] {
                for ttl in [hops, hops + 1, 64, 255] {
                    for hc in 0..=u16::MAX {
                        check(hc, ttl, hops, proto);
                    }
                }
                for ttl in hops..=255 {
                    for hc in (0..=0x300u16).chain(0xfc00..=0xffff).chain((0..=u16::MAX).step_by(251)) {
                        check(hc, ttl, hops, proto);
                    }
                }
            }
        }
    }

    /// `fold32` folds as `sum` does, on the corners, on every sum of three 16-bit fields and on 200,000
    /// pseudo-random values.
    #[test]
    fn fold32_equals_sum_of_nothing() {
        let corners = [0, 1, 0xfffe, 0xffff, 0x1_0000, 0x1_fffe, 0x1_ffff, 0xfffe_ffff, 0xffff_0000, u32::MAX];
        let mut x = 0x9e37_79b9u32;
        let spread = (0..200_000).map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        });
        for acc in corners.into_iter().chain(spread).chain(0..=0x3_0000) {
            assert_eq!(fold32(acc), sum(&[], acc), "{acc:#x}");
        }
    }

    /// `valid20` says yes exactly where the header's sum folds to 0xffff: on the random headers, on each
    /// of them with its checksum made right, and on the all-zero and all-ones corners.
    #[test]
    fn valid20_agrees_with_the_folded_sum() {
        let mut headers = corner_headers(0x9e37_79b9, 20_000);
        for i in 0..headers.len() {
            let mut h = headers[i];
            h[10..12].copy_from_slice(&[0, 0]);
            let c = checksum(&h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            headers.push(h);
        }
        let mut valid = 0;
        for h in &headers {
            assert_eq!(valid20(h), sum(h, 0) == 0xffff, "{h:?}");
            valid += usize::from(valid20(h));
        }
        assert!(valid >= 20_003, "only {valid} right checksums among the headers");
        // One byte changed in a right header, anywhere, by anything: never right (it moves its word by d
        // or d << 8 with 0 < |d| < 256, so the sum by no multiple of 0xffff).
        for h in headers.iter().filter(|h| sum(&h[..], 0) == 0xffff).take(500) {
            for i in 0..20 {
                for d in [1u8, 0x80, 0xff] {
                    let mut bad = *h;
                    bad[i] = bad[i].wrapping_add(d);
                    assert!(!valid20(&bad), "byte {i} + {d:#x} of {h:?}");
                }
            }
        }
        assert!(!valid20(&[0; 20]));
        assert!(valid20(&[0xff; 20]));
    }

    #[test]
    fn update32_matches_recompute() {
        let mut h = IPV4_HEADER;
        let base = checksum(&h);
        let old = u32::from_be_bytes([h[16], h[17], h[18], h[19]]);
        let new = u32::from_be_bytes([192, 168, 77, 2]);
        h[16..20].copy_from_slice(&new.to_be_bytes());
        assert_eq!(update32(base, old, new), checksum(&h));
    }

    /// The 32-bit-word sum equals RFC 1071's plain 16-bit one for every length and many inputs.
    #[test]
    fn sum_matches_16_bit_reference() {
        fn reference(d: &[u8], initial: u32) -> u16 {
            let mut acc = initial as u64;
            for c in d.chunks(2) {
                acc += (u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])) as u64;
            }
            while acc >> 16 != 0 {
                acc = (acc & 0xffff) + (acc >> 16);
            }
            acc as u16
        }
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..200 {
            for _ in 0..20 {
                let d: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect();
                let init = (x >> 40) as u32;
                assert_eq!(sum(&d, init), reference(&d, init), "len {len}");
            }
        }
        assert_eq!(sum(&[0xff; 64], 0xffff_ffff), reference(&[0xff; 64], 0xffff_ffff));
    }

    #[test]
    fn sum_handles_odd_length() {
        assert_eq!(sum(&[0x01], 0), 0x0100);
        assert_eq!(sum(&[0xff, 0xff, 0x00, 0x01], 0), 0x0001);
    }
}
