#!/usr/bin/env bash
# Benchmark: one Starling seed and one Starling peer on loopback, no shaping, one file.
# Reports, per run, the peer's wall time and MB/s (10^6 bytes per second), the CPU seconds per
# GB (10^9 bytes) of both processes and the peer's peak RSS; then the median and best run.
#
#   bash scripts/bench-loopback.sh [SIZE_MIB]
#
# SIZE_MIB defaults to 1024 (1 GiB). Files live in /dev/shm when it has room (so the figures
# measure the engine, not the disk), else in /tmp; everything is deleted on exit. RUNS (default
# 5) runs; NO_BUILD=1 uses the existing release binary, STARLING_BIN another one. The seed listens on 127.0.5.1:7501
# and the peer on 127.0.5.2. The seed's CPU is read from /proc once it listens and again when
# the peer is done, so its start-up check of the file is not in its figure.
set -euo pipefail
cd "$(dirname "$0")/.."

size_mib=${1:-1024}
runs=${RUNS:-5}
bytes=$((size_mib * 1024 * 1024))
[ -x /usr/bin/time ] || { echo "missing /usr/bin/time (apt-get install time)" >&2; exit 1; }

dir=/dev/shm
if [ "$(df -Pk /dev/shm 2>/dev/null | awk 'NR==2 {print $4}')" -lt $((size_mib * 2048 + 65536)) ] 2>/dev/null; then
    dir=/tmp
fi
work=$(mktemp -d "$dir/starling-loopback.XXXXXX")
seed_pid=""
cleanup() {
    [ -n "$seed_pid" ] && kill "$seed_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

if [ "${NO_BUILD:-0}" != 1 ]; then
    echo "== building release"
    swift build -c release --product starling >/dev/null
fi
starling=${STARLING_BIN:-"$(swift build -c release --show-bin-path)/starling"}

echo "== writing $size_mib MiB of random data in $work"
head -c "$bytes" /dev/urandom >"$work/artifact.bin"
"$starling" make-torrent "$work/artifact.bin" --tracker http://127.0.5.1:1/announce \
    --output "$work/artifact.torrent" >/dev/null

# cpu_of PID: user + system CPU seconds of a running process, from /proc (clock ticks).
cpu_of() {
    awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"
}

results="$work/results"
for run in $(seq 1 "$runs"); do
    rm -f "$work/out.bin" "$work/out.bin.part"
    "$starling" seed "$work/artifact.torrent" "$work/artifact.bin" --ip 127.0.5.1 \
        --port-range 7501-7501 >"$work/seed.log" 2>&1 &
    seed_pid=$!
    # Ready once seeding: its file has been checked and it listens.
    for _ in $(seq 1 200); do
        grep -q "seeding" "$work/seed.log" && break
        kill -0 "$seed_pid" 2>/dev/null || { cat "$work/seed.log" >&2; exit 1; }
        sleep 0.05
    done
    seed_before=$(cpu_of "$seed_pid")
    /usr/bin/time -f "%e %U %S %M" -o "$work/peer.time" "$starling" peer "$work/artifact.torrent" \
        "$work/out.bin" --ip 127.0.5.2 --peer 127.0.5.1:7501 >"$work/peer.log" 2>&1 \
        || { cat "$work/peer.log" >&2; exit 1; }
    seed_after=$(cpu_of "$seed_pid")
    kill "$seed_pid"
    wait "$seed_pid" 2>/dev/null || true
    seed_pid=""
    cmp -s "$work/artifact.bin" "$work/out.bin" || { echo "run $run: copy differs" >&2; exit 1; }
    read -r wall user sys rss_kib <"$work/peer.time"
    awk -v b="$bytes" -v w="$wall" -v u="$user" -v s="$sys" -v r="$rss_kib" \
        -v s0="$seed_before" -v s1="$seed_after" -v n="$run" 'BEGIN {
        gb = b / 1e9
        printf "run %d: %.2f s  %4.0f MB/s  peer %.2f CPU-s/GB  seed %.2f CPU-s/GB  peer RSS %.1f MiB\n",
            n, w, b / 1e6 / w, (u + s) / gb, (s1 - s0) / gb, r / 1024
    }' | tee -a "$results"
done

echo "== $runs runs of $size_mib MiB"
sort -t' ' -k3 -n "$results" | awk '{ line[NR] = $0 } END {
    print "median: " line[int((NR + 1) / 2)]
    print "best:   " line[1]
}'
