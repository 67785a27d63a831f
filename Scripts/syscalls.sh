#!/usr/bin/env bash
# Syscalls per call, counted by strace (-f -c) over a fixed number of calls of each client of
# `make bench-allocs` against `grpc-pool serve` in another process. ordo-one/benchmark's syscall
# metric is not supported on this kernel; strace counts every thread's system calls exactly.
# Each client runs twice, N and 3N calls; the difference, divided by 2N, is the cost of one call
# (start-up and shut-down cancel out). The bidi row's calls are streams of 10 round trips.
#
# Then, for the pool's two unary rows, the package's locks per call by the line that takes them,
# as those runs printed them (the benchmark build counts them: GRPC_POOL_COUNT_LOCKS).
#
# Usage: Scripts/syscalls.sh PATH/TO/grpc-pool [N]
set -euo pipefail
bin=$1
n=${2:-500}
out=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; rm -rf "$out"' EXIT

"$bin" serve --port 0 > "$out/server" &
server=$!
for _ in $(seq 1 100); do grep -q "listening on" "$out/server" 2>/dev/null && break; sleep 0.1; done
target=$(sed -n 's/^listening on //p' "$out/server")
[ -n "$target" ] || { echo "syscalls: the server did not start" >&2; exit 1; }

total() {  # the "calls" column of strace's total line
    awk '$NF == "total" { print $4 }' "$1"
}

printf '%-30s %12s\n' "client" "syscalls/call"
for client in core-channel pool-raw pool-stub bidi; do
    for count in "$n" $((3 * n)); do
        strace -f -c -o "$out/$client.$count" "$bin" bench --target "$target" --count-calls "$count" \
            --call-client "$client" > "$out/$client.$count.out"
    done
    per=$(awk -v a="$(total "$out/$client.$n")" -v b="$(total "$out/$client.$((3 * n))")" -v n="$n" -v c="$client" \
        'BEGIN { per = (b - a) / (2 * n); if (c == "bidi") per /= 10; printf "%.1f", per }')
    case $client in
        core-channel) name="(e) C-core call" ;;
        pool-raw) name="(a′) pool, own call" ;;
        pool-stub) name="(a) stub on manager.client(for:)" ;;
        bidi) name="bidi message round trip" ;;
    esac
    printf '%-30s %12s\n' "$name" "$per"
done

# The lock table each counted run printed (the 3N run's: strace does not change the count).
for client in pool-raw pool-stub; do
    printf '\n%s, ' "$client"
    grep -v '^[0-9]\{4\}-' "$out/$client.$((3 * n)).out"
done
