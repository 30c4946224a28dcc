#!/usr/bin/env bash
# Prepare a Debian 12 machine for building and testing weft: packages, hugepages, hugetlbfs.
# Idempotent: it installs only what is missing and never lowers a setting that is already enough.
set -euo pipefail

HUGEPAGES_MIN=${WEFT_HUGEPAGES:-1024}   # 2 MiB pages
PACKAGES=(
  dpdk dpdk-dev libdpdk-dev            # DPDK 22.11: libraries, PMD plugins, dpdk-testpmd, headers
  pkg-config clang libclang-dev        # dpdk-sys: pkg-config finds DPDK, bindgen needs libclang
  libpcap-dev                          # net_pcap
  protobuf-compiler libprotobuf-dev    # etcd-client's gRPC code generation
  etcd-server etcd-client              # a real etcd for the control tests
  iproute2 tcpdump ethtool iputils-ping procps psmisc  # the netns lab
  iptables                             # the host port's masquerade and the lab's Services (nft backend)
  containernetworking-plugins          # bridge, host-local, loopback: kernel pods on cni0 the flannel way
  podman runc busybox-static           # a real container runtime driving the weft CNI plugin (CNI backend)
  iperf3                               # the host-port benchmark (TCP and small-packet UDP, pod to pod)
  python3 python3-scapy python3-venv   # frames built by scapy in tests; a venv for the TRex client
  prometheus                           # scrapes weftd in the observability test; promtool lints
  openvswitch-switch-dpdk              # the OVS-DPDK baseline of the benchmarks (and their smoke test)
  curl                                 # HTTP checks of /metrics, /healthz, /readyz
  openssl                              # certificates for the etcd TLS test
  util-linux                           # setpriv: the API test runs a client as another user
  systemd                              # systemd-analyze verify checks the unit
  dpkg-dev                             # dpkg-shlibdeps: the Debian package's library dependencies
  python3-kubernetes python3-yaml      # the DaemonSet manifest checked against Kubernetes' object schema
)

say() { printf 'setup: %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: must run as root (it installs Debian packages and reserves hugepages); try: sudo make setup" >&2
  exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  say "packages present"
fi

# The TRex stateless client (PyPI lbr-trex-client), so the TRex profile test loads bench/trex/ as TRex
# would; in a venv of its own (it bundles an old scapy that must not shadow Debian's).
TREX_VENV=${WEFT_TREX_VENV:-/opt/weft/trex-venv}
if ! "$TREX_VENV/bin/python" -c 'import lbr_trex_client' 2>/dev/null; then
  say "installing lbr-trex-client into $TREX_VENV"
  /usr/bin/python3 -m venv "$TREX_VENV"
  "$TREX_VENV/bin/pip" install -q --disable-pip-version-check lbr-trex-client==3.4.0
fi

cur=$(cat /proc/sys/vm/nr_hugepages)
if [ "$cur" -lt "$HUGEPAGES_MIN" ]; then
  echo "$HUGEPAGES_MIN" > /proc/sys/vm/nr_hugepages
  cur=$(cat /proc/sys/vm/nr_hugepages)
  if [ "$cur" -lt "$HUGEPAGES_MIN" ]; then
    echo "setup: asked for $HUGEPAGES_MIN hugepages, the kernel gave $cur (memory too fragmented?)" >&2
    exit 1
  fi
fi
say "hugepages: $cur reserved, $(awk '/HugePages_Free/ {print $2}' /proc/meminfo) free"

if ! awk '$3 == "hugetlbfs" {found=1} END {exit !found}' /proc/mounts; then
  mkdir -p /dev/hugepages
  mount -t hugetlbfs nodev /dev/hugepages
  say "mounted hugetlbfs on /dev/hugepages"
fi

v=$(pkg-config --modversion libdpdk)
say "DPDK $v via pkg-config"
