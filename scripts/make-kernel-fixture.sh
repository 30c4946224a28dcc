#!/usr/bin/env bash
# Regenerate fixtures/kernel-vxlan-ping.pcap from the Linux kernel itself: two namespaces set up as
# flanneld sets up VXLAN nodes (flannel.1, VNI 1, dstport 8472, nolearning; neighbour, FDB and route
# entries from each other's lease), a pod behind cni0 on each, one ping, the two frames captured on the
# underlay (TX checksum offload left on, as in the committed capture: its outer UDP checksums are
# partial). Needs root, iproute2 and tcpdump. Usage: scripts/make-kernel-fixture.sh [OUT.pcap]
set -euo pipefail
out=${1:-fixtures/kernel-vxlan-ping.pcap}
p=wfx$$
cleanup() { for n in a b pa pb; do ip netns del "$p-$n" 2>/dev/null || true; done; }
trap cleanup EXIT
for n in a b pa pb; do ip netns add "$p-$n"; ip -n "$p-$n" link set lo up; done
ip -n "$p-a" link add eth0 type veth peer name eth0 netns "$p-b"
node() { # ns idx peer-idx vtep-mac peer-vtep-mac
  local ns=$p-$1 i=$2 j=$3 mac=$4 pmac=$5
  ip -n "$ns" addr add 192.168.77.$i/24 dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link add flannel.1 type vxlan id 1 local 192.168.77.$i dev eth0 dstport 8472 nolearning
  ip -n "$ns" link set flannel.1 address "$mac" mtu 1450 up
  ip -n "$ns" addr add 10.244.$i.0/32 dev flannel.1
  ip -n "$ns" neigh replace 10.244.$j.0 lladdr "$pmac" dev flannel.1 nud permanent
  ip netns exec "$ns" bridge fdb append "$pmac" dev flannel.1 dst 192.168.77.$j
  ip -n "$ns" route add 10.244.$j.0/24 via 10.244.$j.0 dev flannel.1 onlink
  ip -n "$ns" link add cni0 type bridge
  ip -n "$ns" addr add 10.244.$i.1/24 dev cni0
  ip -n "$ns" link set cni0 up
  ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1
  ip -n "$ns" link add veth0 type veth peer name eth0 netns "$p-p$1"
  ip -n "$ns" link set veth0 master cni0 up
  ip -n "$p-p$1" addr add 10.244.$i.2/24 dev eth0
  ip -n "$p-p$1" link set eth0 up
  ip -n "$p-p$1" route add default via 10.244.$i.1
}
node a 1 2 c6:d2:32:6f:8f:44 aa:c4:e1:93:50:bd
node b 2 1 aa:c4:e1:93:50:bd c6:d2:32:6f:8f:44
ip netns exec "$p-a" tcpdump -i eth0 -c 2 -w "$out" udp port 8472 2>/dev/null &
cap=$!
sleep 1
ip netns exec "$p-pa" ping -c 1 -W 2 10.244.2.2 >/dev/null
wait "$cap"
echo "wrote $out"
