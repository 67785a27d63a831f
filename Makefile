# GRPCPool — the two commands are `make demo` and `make test`.
#
# Every target installs the Debian packages it needs when they are missing (you are root on the
# machines this project runs on; elsewhere, install them yourself and the check passes).

SWIFT        ?= swift
SYSTEM_PKGS  := libgrpc-dev libprotobuf-dev libc-ares-dev
TEST_PKGS    := dnsmasq-base tshark etcd-server etcd-client
GEN_PKGS     := protobuf-compiler
GEN_SCRATCH  := .build-generators
PROTOC_GEN_SWIFT      = $(GEN_SCRATCH)/release/protoc-gen-swift
PROTOC_GEN_GRPC_SWIFT = $(GEN_SCRATCH)/release/protoc-gen-grpc-swift-2

VENV         := .build-venv
PY_PKGS      := grpcio>=1.60,<2 grpcio-tools>=1.60,<2 grpcio-channelz>=1.60,<2 opentelemetry-proto>=1.20,<2

.PHONY: all build test tsan asan demo bench bench-allocs profile generate deps testdeps deps-generate pydeps clean format

all: build

# Whether a Debian package is installed (not only known: a removed package keeps its
# configuration files, and `dpkg -s` still succeeds for it).
installed = dpkg-query -W -f='$${Status}' $(1) 2>/dev/null | grep -q 'install ok installed'

# Installs the C core and its headers when `dpkg` says they are not there.
deps:
	@missing=""; for p in $(SYSTEM_PKGS); do $(call installed,$$p) || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# The tests' DNS server (dnsmasq on a loopback port, serving a hosts file the tests rewrite),
# tshark, whose HTTP/2 and gRPC dissectors read which messages went out compressed, and etcd
# (server and etcdctl) for the registry tests' clusters.
testdeps:
	@missing=""; for p in $(TEST_PKGS); do $(call installed,$$p) || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# The tests' second server stack: gRPC's C core as a server (grpcio from PyPI, with its default
# settings; grpcio-tools generates the interop messages it serves), in a virtual environment of
# its own, installed when missing; opentelemetry-proto for the tests' OTLP trace receiver.
pydeps:
	@$(VENV)/bin/python -c 'import grpc, grpc_tools, grpc_channelz, opentelemetry.proto' >/dev/null 2>&1 || { \
		echo "installing $(PY_PKGS) into $(VENV)"; \
		{ [ -x $(VENV)/bin/pip ] || python3 -m venv $(VENV); } && $(VENV)/bin/pip install -q $(foreach p,$(PY_PKGS),'$(p)'); }

deps-generate: deps
	@command -v protoc >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(GEN_PKGS); }

build: deps
	$(SWIFT) build

# Builds and runs every test (unit and integration, against real servers on loopback).
# The isolated tests go last, one at a time, so that they neither slow the other tests nor are
# slowed by them: the chaos run (64 callers on a whole CPU for 20 s), GOAWAY every 0.4 s under
# load, a latency comparison, refusals timed to 100 ms, windows of the C core's own timers
# (keepalive, reconnection backoff), and the leak tests' process-wide counts.
# Each phase has a time limit far above its usual time (about 1.5 and 3 minutes here), so that a
# wait without a bound fails the run and says so, instead of hanging it.
# The parallel phase runs at most 8 tests at a time (swift-testing's width): started all at once,
# some 250 tests' servers (the in-process NIO servers share two event-loop threads, in a debug
# build) missed 5 s connect attempts and deadlines in their first seconds. The phase takes as long.
PARALLEL_WIDTH ?= 8
test: deps testdeps pydeps
	python3 Scripts/shape.py
	$(SWIFT) build --build-tests
	$(call time_limited,15m,env SWT_EXPERIMENTAL_MAXIMUM_PARALLELIZATION_WIDTH=$(PARALLEL_WIDTH) $(SWIFT) test --skip-build --skip IsolatedTests)
	$(call time_limited,15m,$(SWIFT) test --skip-build --filter IsolatedTests)

# $(call time_limited,LIMIT,COMMAND): COMMAND, stopped (with its children) after LIMIT.
time_limited = timeout --kill-after=30s $(1) $(2) || { status=$$?; \
	if [ $$status -eq 124 ] || [ $$status -eq 137 ]; then echo "make test: '$(2)' did not end within $(1)" >&2; fi; \
	exit $$status; }

# The test suite under Thread Sanitizer / Address Sanitizer, each in its own build folder, one
# test at a time (a sanitizer slows everything several times over; run in parallel on two cores,
# the tests' deadlines would decide the outcome). GRPC_POOL_SANITIZER disables the two tests that
# a sanitizer decides: one compares latencies, one the resident size.
# TSan: our state sits behind pthread mutexes (Locked), and completion-queue tags carry a
# release/acquire annotation across the C core, so TSan sees every hand-off; GRPCCore's own
# Synchronization.Mutex (FUTEX_LOCK_PI, not intercepted) is suppressed in .tsan-suppressions.
# A report fails the run (exit code 66), also in the grpc-pool processes the tests start.
# Both build with GRPC_POOL_SANITIZER set, which leaves swift-otel out (Package.swift says why).
# ASan: memory errors only; LeakSanitizer is off because it fails every process at exit on the
# singletons of Foundation, NIO and the C core (the README lists what it reported).
tsan: deps testdeps pydeps
	GRPC_POOL_SANITIZER=thread $(SWIFT) build --build-tests --sanitize=thread --scratch-path .build-tsan
	TSAN_OPTIONS="suppressions=$(CURDIR)/.tsan-suppressions" GRPC_POOL_SANITIZER=thread \
		$(SWIFT) test --skip-build --sanitize=thread --scratch-path .build-tsan --no-parallel

asan: deps testdeps pydeps
	GRPC_POOL_SANITIZER=address $(SWIFT) build --build-tests --sanitize=address --scratch-path .build-asan
	ASAN_OPTIONS=detect_leaks=0 GRPC_POOL_SANITIZER=address \
		$(SWIFT) test --skip-build --sanitize=address --scratch-path .build-asan --no-parallel

# Runs the demo: local services, a pool over them, a mixed load, a restart, a metrics table.
demo: deps
	$(SWIFT) build --product grpc-pool
	$(SWIFT) run --skip-build grpc-pool demo

# Side-by-side client benchmarks (release build; the echo server runs as a separate process, and
# the defaults-against-tuned rows run against a grpcio server too, from .build-venv).
# BENCH_ARGS passes options, e.g. `make bench BENCH_ARGS="--json --duration 5"`.
# CMO=1 builds every module with cross-module optimization (in .build-cmo; a cold build takes
# about 15 minutes here), so that GRPCCore's generic client executor is specialized for the
# pool's transport: the flag an application can add to its own release build.
BENCH_SCRATCH := $(if $(CMO),.build-cmo,.build)
BENCH_FLAGS   := $(if $(CMO),-Xswiftc -cross-module-optimization,)
BENCH_BUILD    = $(SWIFT) build -c release --product grpc-pool --scratch-path $(BENCH_SCRATCH) $(BENCH_FLAGS)
bench: deps testdeps pydeps
	$(BENCH_BUILD)
	$(BENCH_SCRATCH)/release/grpc-pool bench $(BENCH_ARGS)

# What one call costs, counted: allocations per call (ordo-one/benchmark with its malloc
# interposer; the package adds the harness only when GRPC_POOL_BENCHMARKS is set, so that `make
# test` never builds it) for (e) the bare C-core call, (a′) the pool's own call, (a) a generated
# stub on manager.client(for:) and a bidi message round trip, each against `grpc-pool serve` in
# another process; fails when a row passes its committed threshold (Benchmarks/Thresholds/;
# `make bench-allocs UPDATE=1` writes them anew). Then syscalls per call, counted by strace.
# grpc-pool (the server, and the syscall and lock counts) builds in a scratch folder of its own:
# sharing the benchmark plugin's, each build would undo the other's.
BENCH_CLI = .build-benchmarks-cli/release/grpc-pool
BENCH_ALLOCS = GRPC_POOL_BENCHMARKS=1 GRPC_POOL_BINARY=$(CURDIR)/$(BENCH_CLI) \
	$(SWIFT) package --scratch-path .build-benchmarks --disable-sandbox \
	benchmark --target CallCost --no-progress
bench-allocs: deps
	@command -v strace >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq strace; }
	GRPC_POOL_BENCHMARKS=1 $(SWIFT) build -c release --scratch-path .build-benchmarks-cli --product grpc-pool
	$(BENCH_ALLOCS) $(if $(UPDATE),thresholds update --path Benchmarks/Thresholds,--format markdown)
	$(if $(UPDATE),,$(BENCH_ALLOCS) thresholds check --path Benchmarks/Thresholds)
	Scripts/syscalls.sh $(BENCH_CLI)

# Where a unary call's client CPU goes, layer by layer, and the Swift runtime's events per call
# (perf sampling and uprobes; BENCHMARKS.md explains the tables). Needs root and linux-perf.
profile: deps
	@command -v perf >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf; }
	$(BENCH_BUILD)
	python3 Scripts/profile.py --binary $(BENCH_SCRATCH)/release/grpc-pool $(PROFILE_ARGS)

# Regenerates the committed Swift code from Protos/. Builds the two protoc plugins from the
# pinned packages (release, in its own scratch folder); CI never runs this.
generate: deps-generate pydeps
	$(SWIFT) build -c release --scratch-path $(GEN_SCRATCH) --product protoc-gen-swift
	$(SWIFT) build -c release --scratch-path $(GEN_SCRATCH) --product protoc-gen-grpc-swift-2
	./Protos/generate.sh "$(PROTOC_GEN_SWIFT)" "$(PROTOC_GEN_GRPC_SWIFT)"

# Checks the formatting against .swift-format (swift-nio's rules); generated code is left out.
# `make format FIX=1` rewrites the files instead.
FORMAT_FILES = $(shell find Sources Tests -name '*.swift' -not -path '*/Generated/*')
format:
	@$(SWIFT) format $(if $(FIX),format -i,lint --strict) --parallel $(FORMAT_FILES)

clean:
	rm -rf .build .build-tsan .build-asan .build-benchmarks .build-benchmarks-cli $(GEN_SCRATCH) $(VENV)
