#!/usr/bin/env bash
# Announces per second on loopback: `starling tracker` vs `opentracker`, same load, same run.
#
#   scripts/bench-tracker.sh            # builds release binaries first
#   NO_BUILD=1 PEERS=10000 TORRENTS=100 DURATION=10 CONCURRENCY=64 MEM_PEERS=100000 scripts/bench-tracker.sh
#
# Load: .build/release/tracker-bench, PEERS distinct peers (distinct peer ids, and distinct
# ports within a torrent, since opentracker keys peers by address and port) over TORRENTS
# torrents, a quarter of them seeders, numwant=50, compact. Each tracker is first filled
# (every peer announces event=started once), then hammered for DURATION seconds from
# CONCURRENCY connections, (a) one connection per announce, as BitTorrent clients do, and
# (b) with HTTP keep-alive. Then resident memory of a fresh tracker after MEM_PEERS peers.
# Debian's opentracker runs in whitelist mode: the bench's info-hashes are written to its list.
set -euo pipefail
cd "$(dirname "$0")/.."

PEERS=${PEERS:-10000}
TORRENTS=${TORRENTS:-100}
DURATION=${DURATION:-10}
CONCURRENCY=${CONCURRENCY:-64}
MEM_PEERS=${MEM_PEERS:-100000}
BIN=.build/release

if [[ -z "${NO_BUILD:-}" ]]; then
  swift build -c release --product starling >&2
  swift build -c release --product tracker-bench >&2
fi
command -v opentracker >/dev/null || { echo "opentracker is not installed (apt-get install opentracker)" >&2; exit 1; }

work=$(mktemp -d /tmp/bench-tracker.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "tracker on port $1 did not start" >&2; exit 1
}

# Sets TRACKER_PID and TRACKER_PORT.
start_starling() {
  TRACKER_PORT=$(free_port)
  "$BIN/starling" tracker --listen "127.0.0.1:$TRACKER_PORT" --log-level warning --max-numwant 50 2>>"$work/starling.log" &
  TRACKER_PID=$!
  pids+=("$TRACKER_PID")
  wait_port "$TRACKER_PORT"
}
start_opentracker() {
  TRACKER_PORT=$(free_port)
  mkdir -p "$work/ot"
  chmod 755 "$work/ot"
  "$BIN/tracker-bench" --print-hashes --torrents "$TORRENTS" > "$work/ot/whitelist.txt"
  # opentracker chroots into -d first, so the whitelist path is relative to it.
  opentracker -i 127.0.0.1 -p "$TRACKER_PORT" -P "$TRACKER_PORT" -d "$work/ot" -w /whitelist.txt \
    >>"$work/opentracker.log" 2>&1 &
  TRACKER_PID=$!
  pids+=("$TRACKER_PID")
  wait_port "$TRACKER_PORT"
}
stop_tracker() { kill "$TRACKER_PID" 2>/dev/null || true; wait "$TRACKER_PID" 2>/dev/null || true; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get(sys.argv[2], ""))' "$1" "$2"; }

declare -A rate
for tracker in starling opentracker; do
  # close: one connection per announce (generator on 1 thread); close2: the same with the
  # generator on 2 threads (on 2 cores it then competes with the tracker, but is no longer
  # the bottleneck for opentracker); keepalive: connections reused.
  for mode in close close2 keepalive; do
    "start_$tracker"
    flag=(--threads 1); [[ $mode == keepalive ]] && flag=(--keepalive --threads 1)
    [[ $mode == close2 ]] && flag=(--threads 2)
    out=$("$BIN/tracker-bench" --url "http://127.0.0.1:$TRACKER_PORT/announce" --peers "$PEERS" --torrents "$TORRENTS" \
          --duration "$DURATION" --concurrency "$CONCURRENCY" "${flag[@]}")
    echo "$tracker $mode: $out" >&2
    rate[$tracker-$mode]=$(field "$out" announces_per_second)
    [[ "$(field "$out" keepalive_drops)" =~ ^(0|)$ ]] || rate[$tracker-$mode]+=" (closes)"
    fails=$(field "$out" failures)
    [[ "$fails" == 0 ]] || echo "WARNING: $tracker $mode: $fails failed announces: $(field "$out" first_failure)" >&2
    stop_tracker
  done
done

declare -A mem
for tracker in starling opentracker; do
  "start_$tracker"
  idle=$(rss_kib "$TRACKER_PID")
  out=$("$BIN/tracker-bench" --url "http://127.0.0.1:$TRACKER_PORT/announce" --peers "$MEM_PEERS" --torrents "$TORRENTS" \
        --concurrency 32 --fill-only)
  echo "$tracker fill: $out" >&2
  mem[$tracker]="$idle KiB idle, $(rss_kib "$TRACKER_PID") KiB with $(field "$out" fill_ok) peers"
  stop_tracker
done

ratio() { python3 -c "import sys; a,b=float(sys.argv[1] or 0),float(sys.argv[2] or 0); print(f'{a/b:.2f}' if b else 'n/a')" "$1" "$2"; }
echo
echo "Loopback, $(nproc) cores, $PEERS peers over $TORRENTS torrents, ${DURATION}s, $CONCURRENCY connections"
printf '%-28s %12s %12s %8s\n' "announces/s" starling opentracker ratio
printf '%-28s %12s %12s %8s\n' "connection per announce" "${rate[starling-close]}" "${rate[opentracker-close]}" \
  "$(ratio "${rate[starling-close]}" "${rate[opentracker-close]}")"
printf '%-28s %12s %12s %8s\n' "  same, 2 generator threads" "${rate[starling-close2]}" "${rate[opentracker-close2]}" \
  "$(ratio "${rate[starling-close2]}" "${rate[opentracker-close2]}")"
printf '%-28s %12s %12s %8s\n' "keep-alive" "${rate[starling-keepalive]}" "${rate[opentracker-keepalive]}" \
  "$(ratio "${rate[starling-keepalive]%% *}" "${rate[opentracker-keepalive]%% *}")"
echo "(closes) = the tracker closed kept-alive connections, so the figure is really per-connection."
echo "resident memory, starling:    ${mem[starling]}"
echo "resident memory, opentracker: ${mem[opentracker]}"
