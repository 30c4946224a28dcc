/* The DPDK headers weft binds. rte_config.h comes in through pkg-config's `-include`. */
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_version.h>
#include <rte_lcore.h>
#include <rte_launch.h>
#include <rte_cycles.h>
#include <rte_mempool.h>
#include <rte_mbuf.h>
#include <rte_ethdev.h>
#include <rte_dev.h>
#include <rte_bus_vdev.h>
#include <rte_ring.h>
#include <rte_eth_ring.h>
#include <rte_malloc.h>
#include <rte_vhost.h>
#include <rte_pdump.h>
#include "shim.h"
