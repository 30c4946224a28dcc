#!/usr/bin/env bash
# weft's demo (Foundation stage): EAL on virtual devices, the Linux kernel's VXLAN frames read from a
# pcap, forwarded across two DPDK ports by weft's I/O loop, written out and decoded.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release
fixture=$(realpath ../shared/fixtures/kernel-vxlan-ping.pcap 2>/dev/null || true)
[ -f "$fixture" ] || { echo "demo: ../shared/fixtures/kernel-vxlan-ping.pcap is missing" >&2; exit 1; }
work=$(mktemp -d /tmp/weft-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT

echo "== weftd --version"
$bin/weftd --version
echo
echo "== two net_pcap ports, each replaying the kernel's VXLAN ping; weft-iofwd forwards 0<->1 for 2 s"
$bin/weft-iofwd --seconds 2 -- -l 0,1 --no-pci --no-telemetry --file-prefix "weft-demo-$$" --huge-unlink \
  --log-level=lib.eal:warning \
  --vdev "net_pcap0,rx_pcap=$fixture,tx_pcap=$work/out0.pcap" \
  --vdev "net_pcap1,rx_pcap=$fixture,tx_pcap=$work/out1.pcap"
echo
echo "== what left port 1 (came in on port 0):"
tcpdump -nn -e -r "$work/out1.pcap" 2>/dev/null
