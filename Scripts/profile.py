#!/usr/bin/env python3
"""Where a unary call's client CPU goes, layer by layer (`make profile`).

Runs `grpc-pool bench --memory` (a fixed number of unary 32 B calls at concurrency 64 against the
echo server, which runs as a separate process) once per client under `perf record`, keeps the
client process's samples, and sorts each sample's leaf function into a layer: the C core, the
kernel, the Swift runtime's metadata lookups, task allocator, concurrency runtime, retain/release,
malloc, and each Swift module's own code. Then counts, with uprobes, how many times per call the
Swift runtime creates a task, switches executors, allocates from a task, allocates an object and
instantiates generic metadata (counted over two runs of different lengths, so start-up cancels).

perf's cpu-clock sampling is used because this kind of machine has no hardware counters and
valgrind cannot run Swift's concurrency runtime here. Needs root (uprobes) and `perf`.
"""
import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile

CLIENTS = {
    "pool-stub": "(a) pool stub: GRPCClient on the pool-wide transport",
    "pool-raw": "(a') the pool's own unary call, no GRPCCore",
    "core-channel": "(d) one core channel through the core layer",
    "nio": "(c) grpc-swift-2's NIO client",
    "ceiling": "(e) the ceiling: calls chained on the poller thread, no Swift task per call",
}
HZ = 2000


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def layer(sym, dso):
    if dso.startswith("[kernel"):
        return "kernel (syscalls, scheduling)"
    if re.search(r"lib(grpc|gpr|absl|upb|address_sorting|re2|ssl|crypto|cares)", dso):
        return "C core (libgrpc, gpr, absl)"
    if re.search(r"Metadata|getCache|ConcurrentReadableHashMap|TypeByMangled|conformsToProtocol|Witness", sym):
        return "Swift runtime: generic metadata, witnesses"
    if re.search(r"StackAllocator|swift_task_alloc|swift_task_dealloc", sym):
        return "Swift runtime: task allocator"
    if re.search(r"swift_retain|swift_release|RefCount|swift_bridgeObject", sym):
        return "Swift runtime: retain/release"
    if re.search(r"malloc|free|swift_allocObject|swift_slowAlloc|swift_deallocClassInstance|_swift_release_dealloc|_int_", sym):
        return "malloc/free"
    if "libswift_Concurrency" in dso or "libdispatch" in dso or "__tls_get_addr" in sym:
        return "Swift concurrency runtime, dispatch"
    if re.search(r"libc\.so|ld-linux|vdso|libpthread", dso):
        return "libc (locks, clock, memcpy)"
    if "libswiftCore" in dso:
        return "Swift stdlib"
    m = re.match(r"\$s(\d+)", sym)
    if m:
        length = int(m.group(1))
        module = sym[len(m.group(0)):len(m.group(0)) + length]
        return "code: " + module
    return "other"


def record(perf_options, data, binary, client, calls):
    """`perf record` of one memory run: `calls` unary calls of `client`."""
    run(["perf", "record", "-q", *perf_options, "-o", data, binary, "bench", "--memory",
         "--memory-calls", str(calls), "--memory-client", client],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def probe_group(lib):
    """The event group `perf probe` names after a library: probe_libswiftCore."""
    return f"probe_{lib.split('.')[0].replace('-', '_')}"


def profile(binary, client, calls, workdir):
    data = os.path.join(workdir, f"{client}.perf")
    record(["-F", str(HZ)], data, binary, client, calls)
    out = run(["perf", "script", "-i", data, "-F", "pid,ip,sym,dso"],
              capture_output=True, text=True).stdout
    samples = []
    for line in out.splitlines():
        m = re.match(r"\s*(\d+)\s+[0-9a-f]+\s+(.*?)\s+\((.*)\)\s*$", line)
        if m:
            samples.append((int(m.group(1)), m.group(2), m.group(3).rsplit("/", 1)[-1]))
    client_pid = min(pid for pid, _, _ in samples)  # the bench starts the server after itself
    layers = collections.Counter(layer(s, d) for pid, s, d in samples if pid == client_pid)
    return {k: v / HZ * 1e6 / calls for k, v in layers.items()}


PROBES = [
    ("libswift_Concurrency.so", "swift_task_create", "task created"),
    ("libswift_Concurrency.so", "swift_task_enqueueGlobal", "job enqueued"),
    ("libswift_Concurrency.so", "swift_task_switch", "executor switch"),
    ("libswift_Concurrency.so", "swift_task_alloc", "task-allocator allocation"),
    ("libswiftCore.so", "swift_allocObject", "object allocated"),
    ("libswiftCore.so", "swift_getGenericMetadata", "generic metadata lookup"),
]


def counts(binary, client, workdir, short=3000, long=8000):
    per = {}
    for calls in (short, long):
        data = os.path.join(workdir, f"{client}.{calls}.count")
        events = sum((["-e", f"{probe_group(lib)}:{fn}"] for lib, fn, _ in PROBES), [])
        record(["-c", "1", *events], data, binary, client, calls)
        out = run(["perf", "script", "-i", data, "-F", "pid,event"], capture_output=True, text=True).stdout
        os.unlink(data)
        by_pid = collections.defaultdict(collections.Counter)
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 2:
                by_pid[int(parts[0])][parts[1].rstrip(":").split(":")[-1]] += 1
        per[calls] = by_pid[min(by_pid)]
    return {fn: (per[long][fn] - per[short][fn]) / (long - short) for _, fn, _ in PROBES}


def library(binary, name):
    out = run(["ldd", binary], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if name in line and "=>" in line:
            return line.split("=>")[1].split()[0]
    sys.exit(f"{name} not linked by {binary}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--binary", default=".build/release/grpc-pool")
    parser.add_argument("--calls", type=int, default=40000)
    parser.add_argument("--clients", nargs="*", default=["pool-stub", "pool-raw", "core-channel", "ceiling"])
    parser.add_argument("--no-counts", action="store_true", help="skip the uprobe counts")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as workdir:
        profiles = {c: profile(args.binary, c, args.calls, workdir) for c in args.clients}
        names = sorted({k for p in profiles.values() for k in p}, key=lambda k: -max(p.get(k, 0) for p in profiles.values()))
        print(f"Client CPU per call, µs, by layer ({args.calls} unary 32 B calls at concurrency 64; perf, {HZ} Hz):\n")
        print("| layer | " + " | ".join(args.clients) + " |")
        print("|---|" + "---:|" * len(args.clients))
        for name in names:
            cells = [profiles[c].get(name, 0) for c in args.clients]
            if max(cells) >= 0.3:
                print(f"| {name} | " + " | ".join(f"{v:.1f}" for v in cells) + " |")
        print("| **total** | " + " | ".join(f"**{sum(profiles[c].values()):.1f}**" for c in args.clients) + " |")
        for c in args.clients:
            print(f"\n{c}: {CLIENTS.get(c, c)}", end="")
        print("\n")

        if args.no_counts:
            return
        added = []
        try:
            for lib, fn, _ in PROBES:
                path = library(args.binary, lib)
                run(["perf", "probe", "-q", "-x", path, "-a", fn], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                added.append(f"{probe_group(lib)}:{fn}")
            table = {c: counts(args.binary, c, workdir) for c in args.clients}
        finally:
            for event in added:
                subprocess.run(["perf", "probe", "-q", "-d", event], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        print("Swift runtime events per call (uprobes; 8,000 calls minus 3,000):\n")
        print("| event | " + " | ".join(args.clients) + " |")
        print("|---|" + "---:|" * len(args.clients))
        for _, fn, label in PROBES:
            print(f"| {label} (`{fn}`) | " + " | ".join(f"{table[c][fn]:.1f}" for c in args.clients) + " |")


if __name__ == "__main__":
    main()
