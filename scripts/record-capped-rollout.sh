#!/usr/bin/env bash
# Records a real capped rollout on loopback and renders docs/rollout-capped.png:
# a tracker, one seeder and N peers, every host capped at CAP up, a Prometheus scraping
# them every second, then scripts/plot-rollout.py over the run.
#   scripts/record-capped-rollout.sh [PEERS=5] [CAP=20mbit] [SIZE_MIB=50]
# Needs a built .build/debug/starling, prometheus, curl and python3 with matplotlib.
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS=${1:-5}; CAP=${2:-20mbit}; SIZE_MIB=${3:-50}
S=$PWD/.build/debug/starling
PY=${PYTHON:-python3}
"$PY" -c "import matplotlib" 2>/dev/null || PY=/usr/bin/python3
NET=127.0.23
work=$(mktemp -d /tmp/starling-rollout.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom > "$work/artifact.bin"
"$S" tracker --listen $NET.2:6923 --interval 2 > "$work/tracker.log" 2>&1 & pids+=($!)
sleep 1
"$S" make-torrent "$work/artifact.bin" --tracker http://$NET.2:6923/announce --output "$work/a.torrent" > /dev/null
targets="\"$NET.3:9460\""
for i in $(seq 1 "$PEERS"); do targets="$targets, \"$NET.$((3 + i)):9460\""; done
cat > "$work/prometheus.yml" <<EOF
global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: starling
    static_configs: [{targets: [$targets]}]
EOF
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
    --web.listen-address=$NET.1:9293 --log.level=warn > "$work/prometheus.log" 2>&1 & pids+=($!)
"$S" seed "$work/a.torrent" "$work/artifact.bin" --ip $NET.3 --port-range 7233-7233 --up-rate "$CAP" \
    --metrics-listen $NET.3:9460 > "$work/seed.log" 2>&1 & pids+=($!)
sleep 4
start=$(date +%s)
peer_pids=()
for i in $(seq 1 "$PEERS"); do
    ip=$NET.$((3 + i))
    "$S" peer "$work/a.torrent" "$work/copy$i.bin" --ip "$ip" --port-range "$((7233 + i))-$((7233 + i))" \
        --up-rate "$CAP" --metrics-listen "$ip:9460" --seed-after 8 > "$work/peer$i.log" 2>&1 & peer_pids+=($!); pids+=($!)
done
for p in "${peer_pids[@]}"; do wait "$p" || echo "a peer failed" >&2; done
end=$(date +%s)
echo "rollout of ${SIZE_MIB} MiB to $PEERS peers at $CAP took about $((end - start - 8)) s (+8 s seeding after)"
sleep 2
"$PY" scripts/plot-rollout.py --prometheus http://$NET.1:9293 --start $((start - 3)) --end $((end + 1)) \
    --save-json "${SAVE_JSON:-/dev/null}" \
    --title "Starling: ${SIZE_MIB} MiB to $PEERS peers + 1 seeder on loopback, every host capped at $CAP up" \
    --output docs/rollout-capped.png
