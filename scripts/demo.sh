#!/usr/bin/env bash
# weft's demo: two weft nodes and a kernel flannel node in network namespaces, pods on each, a ping
# matrix, a TCP transfer, and each node's status. Ends by itself and leaves nothing behind.
# `make demo ARGS=--keep` leaves the cluster up until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
target/release/weftd --version
exec target/release/weft-lab "$@"
