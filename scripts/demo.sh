#!/usr/bin/env bash
# Starling's main job on one machine: a tracker, a seeder and several peers on loopback
# addresses deliver a generated artifact; prints how long each peer took.
#   bash scripts/demo.sh [PEERS] [SIZE_MB]
set -euo pipefail
cd "$(dirname "$0")/.."
peers=${1:-8}
size_mb=${2:-64}
bash scripts/install-deps.sh
swift build -c release 2>&1 | tail -1
bin=$PWD/.build/release/starling
work=$(mktemp -d /tmp/starling-demo.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

head -c $((size_mb * 1024 * 1024)) /dev/urandom > "$work/artifact.bin"
"$bin" tracker --listen 127.0.0.1:6969 > "$work/tracker.log" 2>&1 & pids+=($!)
"$bin" make-torrent "$work/artifact.bin" --tracker http://127.0.0.1:6969/announce --output "$work/artifact.torrent"
"$bin" seed "$work/artifact.torrent" "$work/artifact.bin" --ip 127.0.0.1 > "$work/seed.log" 2>&1 & pids+=($!)
for _ in $(seq 50); do grep -qs seeding "$work/seed.log" && break; sleep 0.1; done

echo "starting $peers peers at once"
start=$(date +%s.%N)
peer_pids=()
for i in $(seq 2 $((peers + 1))); do
    "$bin" peer "$work/artifact.torrent" "$work/peer$i/artifact.bin" --ip 127.0.0.$i --seed-after 3 --timeout 300 \
        > "$work/peer$i.log" 2>&1 & peer_pids+=($!)
done
failed=0
for i in "${!peer_pids[@]}"; do
    wait "${peer_pids[$i]}" || failed=$((failed + 1))
done
end=$(date +%s.%N)
want=$(sha256sum < "$work/artifact.bin")
for i in $(seq 2 $((peers + 1))); do
    took=$(grep -o 'seconds=[0-9.]*' "$work/peer$i.log" | tail -1 | cut -d= -f2)
    if [ "$(sha256sum < "$work/peer$i/artifact.bin" 2>/dev/null)" = "$want" ]; then ok=verified; else ok=MISMATCH; failed=$((failed + 1)); fi
    printf 'peer 127.0.0.%-3s %6s s  %s\n' "$i" "${took:-?}" "$ok"
done
printf 'all %d peers done in %.1f s (including %d s of seeding after completion)\n' "$peers" "$(awk "BEGIN{print $end - $start}")" 3
[ "$failed" -eq 0 ] || { echo "$failed peer(s) failed; logs were in $work" >&2; exit 1; }
