#!/usr/bin/env bash
# Benchmark: `starling make-torrent` beside `sha1sum` and `mktorrent` on the same 1 GiB file,
# in the same run. Reports MB/s (10^6 bytes per second) and the peak RSS of starling and mktorrent.
#
#   bash scripts/bench-make-torrent.sh [SIZE_MIB] [PIECE_LOG2]
#
# SIZE_MIB defaults to 1024 (1 GiB), PIECE_LOG2 to 20 (1 MiB pieces, which is also what
# starling picks by itself for 1 GiB). The file lives in /dev/shm when it has room (so the
# figures measure hashing, not the disk), else in /tmp; it is deleted on exit. Each tool runs
# once to warm the page cache, then RUNS times (default 3); the best run is reported.
set -euo pipefail
cd "$(dirname "$0")/.."

size_mib=${1:-1024}
piece_log2=${2:-20}
runs=${RUNS:-3}
piece=$((1 << piece_log2))
bytes=$((size_mib * 1024 * 1024))

for tool in sha1sum mktorrent; do
    command -v "$tool" >/dev/null || { echo "missing $tool: bash scripts/install-deps.sh" >&2; exit 1; }
done
[ -x /usr/bin/time ] || { echo "missing /usr/bin/time (apt-get install time)" >&2; exit 1; }

dir=/dev/shm
if [ "$(df -Pk /dev/shm 2>/dev/null | awk 'NR==2 {print $4}')" -lt $((size_mib * 1024 + 65536)) ] 2>/dev/null; then
    dir=/tmp
fi
work=$(mktemp -d "$dir/starling-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
data="$work/artifact.bin"

echo "== building release"
swift build -c release --product starling >/dev/null
starling="$(swift build -c release --show-bin-path)/starling"

echo "== writing $size_mib MiB of random data to $data"
head -c "$bytes" /dev/urandom >"$data"

# best_of NAME CMD... : runs CMD (warm-up + $runs), prints the best wall time and the peak RSS.
best_of() {
    local name=$1; shift
    local best="" cpu="" rss=0
    "$@" >/dev/null 2>&1 # warm-up: page cache, binary
    for _ in $(seq "$runs"); do
        /usr/bin/time -f "%e %M %U %S" -o "$work/time" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
        read -r secs kib user sys <"$work/time"
        if [ -z "$best" ] || awk -v a="$secs" -v b="$best" 'BEGIN {exit !(a < b)}'; then
            best=$secs
            cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN {print u + s}')
        fi
        [ "$kib" -gt "$rss" ] && rss=$kib
    done
    # CPU seconds (user + sys) of the best run: less sensitive than wall time to other load.
    awk -v n="$name" -v s="$best" -v c="$cpu" -v b="$bytes" -v r="$rss" \
        'BEGIN { printf "%-24s %6.2f s wall %6.2f s cpu %7.0f MB/s   peak RSS %6.1f MiB\n", n, s, c, (s > 0 ? b / s / 1e6 : 0), r / 1024 }'
}

echo "== $size_mib MiB, piece size $piece bytes, $(nproc) CPUs, best of $runs; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
best_of "sha1sum" sha1sum "$data"
# mktorrent refuses to overwrite its output: remove it first (exec keeps one process for `time`).
mk() { echo "rm -f '$work/mk.torrent'; exec mktorrent -t $1 -l $piece_log2 -a http://t/announce -o '$work/mk.torrent' '$data'"; }
best_of "mktorrent -t $(nproc)" sh -c "$(mk "$(nproc)")"
best_of "mktorrent -t 1" sh -c "$(mk 1)"
best_of "starling make-torrent" "$starling" make-torrent "$data" --piece-size "$piece" \
    --tracker http://t/announce --output "$work/st.torrent"

rm -f "$work/mk.torrent" "$work/st.torrent"
mktorrent -l "$piece_log2" -a http://t/announce -o "$work/mk.torrent" "$data" >/dev/null
"$starling" make-torrent "$data" --piece-size "$piece" --tracker http://t/announce --output "$work/st.torrent" >/dev/null
mk_hash=$("$starling" inspect --json "$work/mk.torrent" | sed 's/.*"infoHash":"\([0-9a-f]*\)".*/\1/')
st_hash=$("$starling" inspect --json "$work/st.torrent" | sed 's/.*"infoHash":"\([0-9a-f]*\)".*/\1/')
echo "info-hash mktorrent $mk_hash, starling $st_hash: $([ "$mk_hash" = "$st_hash" ] && echo same || echo DIFFERENT)"
[ "$mk_hash" = "$st_hash" ]
