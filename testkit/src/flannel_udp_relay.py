#!/usr/bin/env python3
"""The lab's stand-in for flanneld's udp backend (flannel pkg/backend/udp), which Debian does not package.

It does what flanneld's udp backend does on a node, step for step:
  - opens the TUN device flannel0 (IFF_TUN | IFF_NO_PI), gives it <subnet address>/32, the MTU
    underlay - 28, brings it up and routes the whole cluster network into it (udp_network_amd64.go
    configureIface);
  - binds a UDP socket to its PublicIP and the backend's port (8285) and relays, as proxy_amd64.c does:
    flannel0 -> the PublicIP of the lease whose subnet holds the destination, same port, the IPv4 packet
    as the whole payload, TTL - 1 (a packet without a route gets ICMP net unreachable back; TTL 0 is
    dropped); UDP -> flannel0 with TTL - 1.
The route table (subnet -> PublicIP) comes from the leases in etcd, as flanneld's watch feeds its relay:
the lab's syncer writes them to ROUTES ("SUBNET PUBLICIP" lines), re-read here when the file changes.
It stops when its parent (the lab) is gone or on SIGTERM.
"""

import fcntl
import ipaddress
import os
import select
import signal
import socket
import struct
import subprocess
import sys

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def decrement_ttl(pkt: bytearray) -> bool:
    """TTL - 1 with the header checksum patched as proxy_amd64.c patches it; False when it reaches 0."""
    if pkt[8] <= 1:
        return False
    pkt[8] -= 1
    pkt[10:12] = b"\0\0"
    hl = (pkt[0] & 0x0F) * 4
    pkt[10:12] = struct.pack("!H", checksum(bytes(pkt[:hl])))
    return True


def net_unreachable(tun_ip: bytes, offender: bytes) -> bytes:
    """ICMP destination unreachable / net unreachable back to the sender (send_net_unreachable)."""
    hl = (offender[0] & 0x0F) * 4
    if offender[9] == 1 or struct.unpack("!H", offender[6:8])[0] & 0x1FFF:
        return b""
    quoted = offender[: hl + 8]
    icmp = bytearray(struct.pack("!BBHI", 3, 0, 0, 0) + quoted)
    icmp[2:4] = struct.pack("!H", checksum(bytes(icmp)))
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 0, 0, 8, 1, 0, tun_ip, offender[12:16]))
    ip[10:12] = struct.pack("!H", checksum(bytes(ip)))
    return bytes(ip + icmp)


def main() -> int:
    network, subnet, public_ip, port, mtu, routes_path = sys.argv[1:7]
    port, mtu = int(port), int(mtu)
    sn = ipaddress.ip_network(subnet)
    tun = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(tun, TUNSETIFF, struct.pack("16sH", b"flannel0", IFF_TUN | IFF_NO_PI))
    os.set_blocking(tun, False)
    for cmd in (
        f"ip addr add {sn.network_address}/32 dev flannel0",
        f"ip link set flannel0 mtu {mtu} up",
        f"ip route add {network} dev flannel0 scope global",
    ):
        subprocess.run(cmd.split(), check=True)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((public_ip, port))
    sock.setblocking(False)
    tun_ip = sn.network_address.packed
    routes = []  # (network, (ip, port))
    mtime = None
    parent = os.getppid()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"relay: flannel0 up, {public_ip}:{port}", flush=True)
    while os.getppid() == parent:
        try:
            m = os.stat(routes_path).st_mtime_ns
        except FileNotFoundError:
            m = None
        if m != mtime:
            mtime = m
            routes = []
            if m is not None:
                with open(routes_path) as f:
                    for line in f:
                        parts = line.split()
                        if len(parts) == 2:
                            routes.append((ipaddress.ip_network(parts[0]), (parts[1], port)))
        ready, _, _ = select.select([tun, sock], [], [], 0.2)
        if tun in ready:
            while True:
                try:
                    pkt = bytearray(os.read(tun, 65536))
                except BlockingIOError:
                    break
                if len(pkt) < 20:
                    continue
                dst = ipaddress.ip_address(bytes(pkt[16:20]))
                hop = next((h for n, h in routes if dst in n), None)
                if hop is None:
                    reply = net_unreachable(tun_ip, bytes(pkt))
                    if reply:
                        os.write(tun, reply)
                    continue
                if decrement_ttl(pkt):
                    sock.sendto(bytes(pkt), hop)
        if sock in ready:
            while True:
                try:
                    pkt = bytearray(sock.recv(65536))
                except BlockingIOError:
                    break
                if len(pkt) >= 20 and decrement_ttl(pkt):
                    os.write(tun, bytes(pkt))
    return 0


if __name__ == "__main__":
    sys.exit(main())
