# weft's two entry points: `make demo` and `make test` (both run `setup` first, which needs root).
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: setup build test demo lint deb bench-io bench-fwd bench-pair bench-micro bench-icount bench-hostport clean

setup:
	@bash scripts/setup.sh

build: setup
	$(CARGO) build --release --workspace --all-targets

lint: setup
	bash scripts/check-layers.sh
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Every test: unit, EAL integration on virtual devices, and (as they land) etcd and netns lab tests.
test: lint
	$(CARGO) test --workspace --release

demo: build
	@bash scripts/demo.sh $(ARGS)

# Not a test: weft's I/O loop against dpdk-testpmd on the same net_null ports (see bench/README.md).
bench-io: build
	./target/release/weft-bench io

# Kernel pods (tap pods; cni0 and veth pods behind the host port) across weft nodes vs across kernel flannel nodes:
# TCP and 64-byte UDP, as ratios.
bench-hostport: build
	./target/release/weft-bench hostport

bench-fwd: build
	./target/release/weft-bench fwd --modes decap,encap,mixed

# Two processes: weft-gen drives testpmd io, OVS-DPDK, weft (memif) and the kernel (af_packet veths).
bench-pair: build
	./target/release/weft-bench pair --modes decap,encap,mixed

# Criterion microbenchmarks of the per-packet work: ns and cycles per packet; then the DPDK layer's
# per-packet helpers on a real mbuf (trim, adj, the TSC).
bench-micro: setup
	$(CARGO) bench -p weft-bench --bench packet
	$(CARGO) bench -p weft-bench --bench mbuf

# Instructions per packet of weft's forwarding loop, of testpmd io's on the same devices and of the packet
# paths alone, under callgrind (needs valgrind): the same on every run of a build, for changes smaller than
# the forwarding rates' run-to-run spread.
# valgrind (3.19) decodes x86-64 up to AVX2, not the AVX-512 and GFNI a native build uses on CPUs
# that have them: the counted binaries are built for x86-64-v3 (AVX2), in a target directory of their
# own; so are the base builds they are counted against, which also makes counts of different machines
# comparable.
ICOUNT_FLAGS = -C target-cpu=x86-64-v3
bench-icount: setup
	RUSTFLAGS="$(ICOUNT_FLAGS)" CARGO_TARGET_DIR=target/icount $(CARGO) build --release -p weft-bench --bins
	./target/icount/release/weft-bench icount

# The Debian package (weftd, weftctl, the CNI plugin, the systemd unit, the default config) in target/debian.
deb: setup
	bash scripts/make-deb.sh target/debian

clean:
	$(CARGO) clean
