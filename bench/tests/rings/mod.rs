//! What the tests of the real worker on `net_ring` ports share.

use dataplane::dpdk::{Burst, Mempool, TxQueue};

/// Send `frames` on `tx` in bursts of 32 (into a `net_ring` port's ring, where they wait for whoever
/// polls its RX queue).
pub fn send_all(pool: &Mempool, tx: &mut TxQueue, frames: &[Vec<u8>]) {
    for chunk in frames.chunks(32) {
        let mut burst = Burst::new();
        for f in chunk {
            let mut m = pool.alloc().unwrap();
            m.set_data(f).unwrap();
            burst.push(m).unwrap();
        }
        assert_eq!(tx.tx_burst(&mut burst), chunk.len());
    }
}
