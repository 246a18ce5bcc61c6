#!/usr/bin/env bash
# libFuzzer runs of the parsers of outside bytes (the package in Fuzz/, built with
# -sanitize=fuzzer,address in .build-fuzz/). Exits non-zero on a finding: a crash, a broken
# round-trip property, a leak, a hang (-timeout) or a memory blow-up (-rss_limit_mb).
#
#   scripts/fuzz.sh --list              the targets
#   scripts/fuzz.sh TARGET SECONDS      build if needed, run one from its seed corpus
#   scripts/fuzz.sh --all SECONDS       every target, SECONDS each, one after the other
#
# Crash inputs and the corpus grown by a run go to $FUZZ_SCRATCH (default /tmp/starling-fuzz),
# never into the repository; the committed seeds in Fuzz/Corpus/TARGET/ are only read.
# Extra libFuzzer flags: FUZZ_ARGS="-runs=1000000". NO_BUILD=1 skips the build.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SCRATCH=${FUZZ_SCRATCH:-/tmp/starling-fuzz}
BIN=$ROOT/.build-fuzz/release

# TARGET:MAX_LEN, each length a little above what its parser accepts, so mutations stay useful.
TARGETS=(
    bencode:4096           # nested values; the limits themselves are unit-tested
    metainfo:8192          # a torrent of a few hundred pieces
    handshake:80           # 68 bytes and the start of what follows
    peer-wire:1024         # several frames (a piece frame of 16 KiB is not needed to reach the code)
    tracker-http:2048      # pipelined heads against a 1 KiB head limit
    tracker-query:1024     # an announce query is about 200 bytes
    tracker-response:4096  # compact and dictionary peers
    gossip:1400            # GossipMessage.maxDatagramSize
    node-config:8192       # the examples in config/ are 1-2 KiB
    admin:2048
)

list() { for t in "${TARGETS[@]}"; do echo "${t%%:*}"; done; }

build() {
    [ "${NO_BUILD:-0}" = 1 ] && return
    # -enable-testing: fuzz-admin reaches the node's routes with @testable import.
    (cd Fuzz && swift build -c release --scratch-path "$ROOT/.build-fuzz" \
        -Xswiftc -sanitize=fuzzer,address -Xswiftc -enable-testing)
}

run() {
    local name=$1 seconds=$2 maxlen="" t
    for t in "${TARGETS[@]}"; do [ "${t%%:*}" = "$name" ] && maxlen=${t#*:}; done
    [ -n "$maxlen" ] || { echo "unknown target '$name'; try --list" >&2; exit 2; }
    local work=$SCRATCH/$name
    mkdir -p "$work/corpus" "$work/artifacts"
    local extra=() asan=${ASAN_OPTIONS:-detect_stack_use_after_return=0}
    # The admin target's engine (its piece worker's thread pool) lives for the whole process:
    # LeakSanitizer calls that a leak at exit.
    if [ "$name" = admin ]; then extra+=(-detect_leaks=0); asan+=:detect_leaks=0; fi
    echo "== fuzz-$name for ${seconds}s (max_len $maxlen)"
    # The Swift runtime's own crash handler would run under ASan and muddle the report.
    SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=$asan \
        "$BIN/fuzz-$name" -max_total_time="$seconds" -max_len="$maxlen" -timeout=10 -rss_limit_mb=2048 \
        -workers=1 -print_final_stats=1 -artifact_prefix="$work/artifacts/" "${extra[@]}" ${FUZZ_ARGS:-} \
        "$work/corpus" "Fuzz/Corpus/fuzz-$name"
}

case "${1:-}" in
    --list) list ;;
    --all)
        [ $# -eq 2 ] || { echo "usage: $0 --all SECONDS" >&2; exit 2; }
        build
        for t in $(list); do run "$t" "$2"; done ;;
    ""|-h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' ;;
    *)
        [ $# -eq 2 ] || { echo "usage: $0 TARGET SECONDS" >&2; exit 2; }
        list | grep -qx "$1" || { echo "unknown target '$1'; try --list" >&2; exit 2; }
        build
        run "$1" "$2" ;;
esac
