#!/usr/bin/env bash
# Forwarding rates of this checkout and of an older commit, in one `weft-bench fwd` invocation: the older
# commit is checked out in a git worktree, its weft-fwdbench built there, and both run in the same
# alternating repetitions next to testpmd and OVS-DPDK, so their ratios to the baselines are comparable.
#
#   scripts/bench-against.sh REV [weft-bench fwd flags...]
#   scripts/bench-against.sh 3c01afe --modes decap,encap --peers 10,100000
#
# Needs what `make bench-fwd` needs (root, hugepages: `make setup`). The worktree and its build stay in
# target/bench-base/ (reused by the next run of the same commit); `git worktree prune` after deleting it.
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:?usage: scripts/bench-against.sh REV [weft-bench fwd flags...]}
shift
sha=$(git rev-parse --verify "$rev^{commit}")
dir=target/bench-base/${sha:0:12}
if [ ! -d "$dir" ]; then
  mkdir -p target/bench-base
  git worktree add --detach "$dir" "$sha" >&2
fi
CARGO=${CARGO:-cargo}
# Its own target directory: the two builds never share (or overwrite) artefacts.
(cd "$dir" && "$CARGO" build --release -q -p weft-bench --bin weft-fwdbench)
"$CARGO" build --release -q -p weft-bench --bin weft-bench --bin weft-fwdbench
echo "base: $sha ($(git log -1 --format=%s "$sha" | cut -c1-70))" >&2
echo "this: $(git rev-parse HEAD)$(git diff --quiet || echo ' + uncommitted changes')" >&2
exec ./target/release/weft-bench fwd --base-fwdbench "$dir/target/release/weft-fwdbench" "$@"
