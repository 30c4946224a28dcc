/*
 * C shim for DPDK's `static inline` functions and macros, which have no symbol in libdpdk and so cannot
 * be bound directly. Each wrapper is one call; they are compiled with pkg-config's flags plus -O3 so the
 * inline bodies are optimised as DPDK intends. Per-burst calls (rx/tx burst, bulk alloc) go through
 * here; per-packet field reads (data pointer, lengths) are done in Rust on the bound struct layout to
 * avoid a call per packet.
 */
#ifndef WEFT_SHIM_H
#define WEFT_SHIM_H
#include <stdint.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

uint16_t weft_eth_rx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **rx_pkts, uint16_t nb_pkts);
uint16_t weft_eth_tx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **tx_pkts, uint16_t nb_pkts);
struct rte_mbuf *weft_pktmbuf_alloc(struct rte_mempool *mp);
int weft_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned count);
void weft_pktmbuf_free(struct rte_mbuf *m);
char *weft_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len);
char *weft_pktmbuf_adj(struct rte_mbuf *m, uint16_t len);
char *weft_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
int weft_pktmbuf_trim(struct rte_mbuf *m, uint16_t len);
uint16_t weft_pktmbuf_headroom(const struct rte_mbuf *m);
uint16_t weft_pktmbuf_tailroom(const struct rte_mbuf *m);
int weft_errno(void);
uint64_t weft_rdtsc(void);
unsigned weft_lcore_id(void);
void weft_pause(void);
#endif
