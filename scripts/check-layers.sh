#!/usr/bin/env bash
# The layers of docs/ARCHITECTURE.md, checked on the dependency graph (not on comments): the wire formats,
# the control side and the config know no DPDK, and no production crate depends on the test kit.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}
fail=0
# The normal (non-dev) dependencies of a crate, one name a line, the crate itself left out. A failing
# `cargo tree` stops the check (set -e on the assignment): it never passes by seeing nothing.
deps() {
  local out
  out=$("$CARGO" tree -q -p "$1" -e normal --prefix none --format '{p}')
  printf '%s\n' "$out" | awk '{print $1}' | sort -u | grep -vx "$1" || true
}
for crate in weft-wire weft-config weft-control weft-dataplane weftd; do
  d=$(deps "$crate")
  [ -n "$d" ] || { echo "layers: no dependencies listed for $crate: is the check broken?" >&2; exit 1; }
  case "$crate" in
    weft-wire|weft-config|weft-control)
      if grep -qx 'dpdk-sys' <<<"$d"; then
        echo "layers: $crate depends on dpdk-sys (wire, config and control must build without DPDK)" >&2
        "$CARGO" tree -q -p "$crate" -e normal -i dpdk-sys >&2 || true
        fail=1
      fi
      ;;
  esac
  if grep -qx 'weft-testkit' <<<"$d"; then
    echo "layers: $crate depends on weft-testkit (the test kit is for tests, benchmarks and the demo only)" >&2
    fail=1
  fi
  if [ "$crate" = weft-wire ] && grep -q '^weft' <<<"$d"; then
    echo "layers: weft-wire depends on another weft crate; it is the bottom layer" >&2
    fail=1
  fi
done
# Errors are values in the libraries (thiserror enums); anyhow is for the binaries' edges.
lib_anyhow=$(grep -rlE '(^|[^a-z_])anyhow::|use anyhow' wire/src config/src control/src dataplane/src weftd/src \
  --include='*.rs' | grep -v '/bin/' || true)
if [ -n "$lib_anyhow" ]; then
  echo "layers: anyhow in library code (return a thiserror enum instead): $lib_anyhow" >&2
  fail=1
fi
[ "$fail" = 0 ] && echo "layers: wire, config and control know no DPDK; no production crate uses the test kit; no anyhow in libraries"
exit "$fail"
