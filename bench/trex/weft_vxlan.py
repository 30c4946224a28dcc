"""TRex stateless profile: the traffic of weft's benchmarks, for a real NIC.

decap: VXLAN frames from remote flannel nodes to this node's pods (into weft's uplink);
encap: frames from this node's pods to remote subnets (into a pod port).

The frames are byte for byte those of weft's own generator (bench/src/frames.rs; weft's test
bench/tests/trex.rs loads this file with STLProfile.load_py and compares), one stream per flow: the
benchmark node is 172.16.0.1 (uplink MAC 02:be:00:00:00:aa, VtepMAC 02:be:00:00:00:ee) in the flannel
network 10.0.0.0/8 with /26 subnets, its pods 10.0.0.2-5; peer i is 172.16.0.2+i with subnet number i+1
and VtepMAC 02:cc:00:ii:ii:ii. Point weftd at the same addresses (static mode --peer ... or leases).

VXLAN header: RFC 7348's flags 0x08 (I) with 24 reserved bits. The scapy bundled with the TRex client
builds VXLAN()/Ether() as VXLAN-GPE (flags 0x0c, next protocol 3) unless told otherwise; weft drops
and counts those (reason vxlan_flags), so the flags are set explicitly here.

  trex> start -f weft_vxlan.py -m 10mpps -t mode=decap,peers=10,flows=256,size=64
"""

import argparse
import ipaddress

from trex_stl_lib.api import (IP, UDP, VXLAN, Ether, Raw, STLPktBuilder, STLStream, STLTXCont)

NODE_IP = "172.16.0.1"
UPLINK_MAC = "02:be:00:00:00:aa"
NEXT_HOP_MAC = "02:be:00:00:00:bb"
VTEP_MAC = "02:be:00:00:00:ee"
NETWORK = ipaddress.IPv4Address("10.0.0.0")
SUBNET_LEN = 26
PODS = 4
VNI = 1
VXLAN_PORT = 8472
TTL = 64


def peer(i):
    """(PublicIP, subnet address, VtepMAC) of peer i, as frames::peer."""
    public_ip = str(ipaddress.IPv4Address(NODE_IP) + 1 + i)
    subnet = int(NETWORK) | ((i + 1) << (32 - SUBNET_LEN))
    mac = "02:cc:00:%02x:%02x:%02x" % ((i >> 16) & 0xFF, (i >> 8) & 0xFF, i & 0xFF)
    return public_ip, subnet, mac


def pod_frame(src_mac, dst_mac, src, dst, sport, size):
    """Ethernet/IPv4 (DF, TTL 64, ident 0)/UDP to 5001 with checksum 0, zero-padded to `size` bytes."""
    pkt = (Ether(src=src_mac, dst=dst_mac) / IP(src=src, dst=dst, ttl=TTL, id=0, flags="DF")
           / UDP(sport=sport & 0xFFFF, dport=5001, chksum=0))
    return pkt / Raw(b"\x00" * max(0, size - len(pkt)))


def decap_frame(i, peers, size):
    p = i % peers
    public_ip, subnet, mac = peer(p)
    inner = pod_frame(mac, VTEP_MAC, str(ipaddress.IPv4Address(subnet + 2)),
                      str(NETWORK + 2 + i % PODS), 10000 + i, size)
    return (Ether(src=NEXT_HOP_MAC, dst=UPLINK_MAC) / IP(src=public_ip, dst=NODE_IP, ttl=TTL, id=0, flags=0)
            / UDP(sport=32768 + i % 28000, dport=VXLAN_PORT, chksum=0)
            / VXLAN(flags=0x08, vni=VNI) / inner)


def encap_frame(i, peers, size):
    p = i % peers
    _, subnet, _ = peer(p)
    pod = i % PODS
    dst = ipaddress.IPv4Address(subnet + 2 + (i // peers) % 60)
    return pod_frame("02:be:00:00:01:%02x" % pod, VTEP_MAC, str(NETWORK + 2 + pod), str(dst), 10000 + i, size)


class WeftVxlan:
    def get_streams(self, tunables=(), **kwargs):
        parser = argparse.ArgumentParser(description="weft's VXLAN decap/encap traffic",
                                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        parser.add_argument("--mode", choices=["decap", "encap"], default="decap")
        parser.add_argument("--peers", type=int, default=10, help="remote VTEPs the flows spread over")
        parser.add_argument("--flows", type=int, default=64, help="flows, one stream each")
        parser.add_argument("--size", type=int, default=64, help="pod-side frame size (VXLAN adds 50)")
        parser.add_argument("--pps", type=float, default=1e6, help="total rate, shared by the streams")
        args = parser.parse_args(list(tunables))
        if not 64 <= args.size <= 1518:
            parser.error("--size must be 64..1518")
        if args.peers < 1 or not 1 <= args.flows <= 4096:
            parser.error("need --peers >= 1 and --flows in 1..4096")
        build = decap_frame if args.mode == "decap" else encap_frame
        pps = args.pps / args.flows
        return [STLStream(packet=STLPktBuilder(pkt=build(i, args.peers, args.size)), mode=STLTXCont(pps=pps))
                for i in range(args.flows)]


def register():
    return WeftVxlan()
