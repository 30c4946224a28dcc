-- Pktgen-DPDK script: weft's benchmark traffic on a real NIC, from a pcap of the exact frames weft's own
-- generator and TRex profile send (bench/src/frames.rs, bench/trex/weft_vxlan.py).
--
--   weft-bench pcap --mode decap --peers 10 --flows 256 --size 64 --out decap.pcap
--   pktgen -l 0-2 -a <tx NIC> -a <rx NIC> -- -P -m "[1].0,[2].1" -s 0:decap.pcap -f weft_vxlan.lua
--
-- Port 0 is wired to weft's uplink (decap; use an encap pcap on a port wired to a pod interface for
-- encap), port 1 receives what weft forwards. The script sends at each rate in `rates` (percent of line
-- rate) for `seconds`, prints tx and rx Mpps per second and the loss of each step, then quits.
-- Pktgen is not packaged for Debian, so this script is not run by weft's tests; the pcap it replays is
-- (weft-bench pcap writes the frames that bench/tests/trex.rs shows weft forwarding in full).

package.path = package.path .. ";?.lua;test/?.lua;app/?.lua;"
require "Pktgen"

local tx_port, rx_port = "0", "1"
local rates = {100, 75, 50, 25}
local seconds = 10

pktgen.screen("off")
for _, rate in ipairs(rates) do
    pktgen.clr()
    pktgen.set(tx_port, "rate", rate)
    pktgen.delay(500)
    pktgen.start(tx_port)
    for s = 1, seconds do
        pktgen.delay(1000)
        local r = pktgen.portStats("all", "rate")
        printf("rate %3d%%  %2d s  tx %8.3f Mpps  rx %8.3f Mpps\n", rate, s,
            r[tonumber(tx_port)]["pkts_tx"] / 1e6, r[tonumber(rx_port)]["pkts_rx"] / 1e6)
    end
    pktgen.stop(tx_port)
    pktgen.delay(1000)
    local st = pktgen.portStats("all", "port")
    local sent, got = st[tonumber(tx_port)]["opackets"], st[tonumber(rx_port)]["ipackets"]
    local loss = 0
    if sent > 0 then loss = 100 * (sent - got) / sent end
    printf("rate %3d%%: sent %d, received %d, loss %.4f %%\n", rate, sent, got, loss)
end
pktgen.quit()
