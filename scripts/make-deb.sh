#!/usr/bin/env bash
# Build the Debian package `weft` from this workspace: weftd, weftctl and the CNI plugin, the systemd
# unit, the default config (a conffile) and the docs. Dependencies on DPDK's libraries come from
# dpkg-shlibdeps, as a Debian build computes them.
#
#   scripts/make-deb.sh [OUT_DIR]            builds the release binaries first
#   BIN_DIR=target/release scripts/make-deb.sh OUT_DIR   takes binaries already built there
#
# Prints the path of the .deb. Needs dpkg-dev (dpkg-shlibdeps) and cargo when BIN_DIR is not given.
#
# The package runs on other machines than the one that builds it, so its binaries are built for
# x86-64-v2 (SSE4.2, the baseline DPDK's generic x86 build needs too; RUSTFLAGS overrides it) in
# target/portable, not for the build machine's CPU as .cargo/config.toml builds the rest.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/debian}
mkdir -p "$out"
out=$(cd "$out" && pwd)
if [ -z "${BIN_DIR:-}" ]; then
  RUSTFLAGS=${RUSTFLAGS:--C target-cpu=x86-64-v2} CARGO_TARGET_DIR=target/portable \
    ${CARGO:-cargo} build --release -q -p weftd --bin weftd --bin weftctl --bin weft
  BIN_DIR=target/portable/release
fi
for b in weftd weftctl weft; do
  [ -x "$BIN_DIR/$b" ] || { echo "make-deb: no $BIN_DIR/$b (build it, or unset BIN_DIR)" >&2; exit 1; }
done

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/weft_${version}_$arch

install -D -m 755 "$BIN_DIR/weftd" "$root/usr/bin/weftd"
install -D -m 755 "$BIN_DIR/weftctl" "$root/usr/bin/weftctl"
# Where Debian's containernetworking-plugins put CNI plugins (podman and containerd look there too);
# kubelet's default is /opt/cni/bin: link it there, or add /usr/lib/cni to the runtime's plugin dirs.
install -D -m 755 "$BIN_DIR/weft" "$root/usr/lib/cni/weft"
install -D -m 644 config/systemd/weftd.service "$root/lib/systemd/system/weftd.service"
install -D -m 644 config/examples/weftd.toml "$root/etc/weft/weftd.toml"
doc=$root/usr/share/doc/weft
install -D -m 644 README.md "$doc/README.md"
install -D -m 644 docs/OPERATIONS.md "$doc/OPERATIONS.md"
install -D -m 644 docs/DESIGN.md "$doc/DESIGN.md"
for f in config/cni/*.conflist config/prometheus/*.yml config/grafana/*.json; do
  install -D -m 644 "$f" "$doc/examples/$(basename "$f")"
done
cat > "$doc/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: weft
Files: *
License: Apache-2.0
 On Debian systems the full text is in /usr/share/common-licenses/Apache-2.0.
EOF
strip --strip-unneeded "$root/usr/bin/weftd" "$root/usr/bin/weftctl" "$root/usr/lib/cni/weft" 2>/dev/null || true

# Shared-library dependencies the way a Debian build computes them.
mkdir -p "$stage/src/debian"
printf 'Source: weft\n\nPackage: weft\nArchitecture: any\n' > "$stage/src/debian/control"
shlibs=$(cd "$stage/src" && dpkg-shlibdeps -O -e"$root/usr/bin/weftd" -e"$root/usr/bin/weftctl" \
  -e"$root/usr/lib/cni/weft" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')

# The PMDs are plugins EAL loads at start: the host port and tap pods need af_packet (veth pairs), the
# host port virtio-user where vhost-net exists, a NIC its own (dpdk pulls them all), net_tap an
# uplink given as one.
abi=$(printf '%s' "$shlibs" | grep -o 'librte-eal[0-9.]*' | head -1 | sed 's/librte-eal//')
[ -n "$abi" ] && shlibs="$shlibs, librte-net-tap$abi, librte-net-af-packet$abi, librte-net-virtio$abi"
mkdir -p "$root/DEBIAN"
cat > "$root/DEBIAN/control" <<EOF
Package: weft
Version: $version
Architecture: $arch
Maintainer: weft developers <weft@example.invalid>
Depends: ${shlibs:+$shlibs, }iproute2, iptables, util-linux, ethtool
Recommends: dpdk, containernetworking-plugins
Section: net
Priority: optional
Installed-Size: $(du -sk "$root" | cut -f1)
Description: kernel-bypass dataplane for flannel clusters (DPDK)
 weftd joins a flannel cluster through etcd, writing and reading flannel's keys
 and JSON, and puts the same frames on the wire as a kernel flannel node
 (VXLAN, host-gw, udp), but forwards in poll-mode workers on a NIC bound to
 DPDK. Includes weftctl and the weft CNI plugin.
EOF
echo /etc/weft/weftd.toml > "$root/DEBIAN/conffiles"
cat > "$root/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
# systemd learns the unit; weftd is not enabled until its config names the uplink and etcd.
if [ "$1" = configure ] && [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null || true
fi
exit 0
EOF
cat > "$root/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
if [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null || true
fi
exit 0
EOF
chmod 755 "$root/DEBIAN/postinst" "$root/DEBIAN/postrm"
deb=$out/weft_${version}_$arch.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
