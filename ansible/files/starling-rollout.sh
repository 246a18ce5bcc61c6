#!/bin/bash
# One step of rollout.yml on a managed host. rollout.yml sends this text inline with each
# step (`raw`, `bash -c SCRIPT`): one SSH round trip, no file copied, no Python on the host.
# A rollout's time on a small fleet went mostly to Ansible's module round trips, so each
# host does its part of the rollout in as few calls as it can.
#
#   start-tracker   start `starling tracker`, wait until it listens
#   start-seed      make the .torrent, check the payload's sha256, start `starling seed`,
#                   wait until it listens; prints payload=, sha256= and torrent= (base64)
#   start-peer B64  write the .torrent (base64), start `starling peer`; returns at once
#   finish-peer     wait for the peer to exit (stop it when the swarm is complete), check its
#                   exit status and the sha256, unpack; remove the scratch files
#   stop            stop the seed and tracker (SIGTERM, SIGKILL after 10 s), remove the
#                   scratch folder
#
# Settings come in the environment (STARLING_*, set by rollout.yml). On success a step
# prints key=value lines; on failure its last line on stderr says what failed, and it
# exits non-zero. Background processes go in their own session with their pid in
# RUN_DIR/NAME.pid, so stop.yml finds them; seed and tracker run under `timeout`, so a
# rollout whose controller died does not leave them running for ever.
set -uo pipefail

run=${STARLING_RUN_DIR:?}
bin=${STARLING_BIN:?}
fail() { echo "$*" >&2; exit 1; }
# A process that has exited but not yet been reaped (its parent may be an init that reaps
# late) counts as gone.
alive() { [ -e "/proc/$1" ] && ! grep -qs '^State:[[:space:]]*Z' "/proc/$1/status"; }
last_words() { # the last non-empty line of a log
    grep -v '^[[:space:]]*$' "$1" 2>/dev/null | tail -n 1
}

# wait_listen HOST PORT SECONDS PID NAME: until HOST:PORT accepts a connection; fails when
# the process PID exits first (with its last log line) or after SECONDS.
wait_listen() {
    local host=$1 port=$2 limit=$3 pid=$4 name=$5 i
    for ((i = 0; i < limit * 10; i++)); do
        if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then return 0; fi
        alive "$pid" || fail "starling $name exited: $(last_words "$run/$name.log")"
        sleep 0.1
    done
    fail "starling $name did not listen on $host:$port within $limit s: $(last_words "$run/$name.log")"
}

# start_daemon NAME ARGS...: `starling ARGS` in the background under `timeout`.
start_daemon() {
    local name=$1
    shift
    setsid timeout "${STARLING_LIMIT:?}" "$bin" "$@" --log-level "${STARLING_LOG_LEVEL:-notice}" \
        > "$run/$name.log" 2>&1 < /dev/null &
    echo $! > "$run/$name.pid"
}

gossip_args() {
    [ -n "${STARLING_GOSSIP_SUBNET:-}" ] || return 0
    echo "--gossip-subnet $STARLING_GOSSIP_SUBNET --gossip-port ${STARLING_GOSSIP_PORT:?}"
    [ -z "${STARLING_GOSSIP_SEED:-}" ] || echo "--gossip-seed $STARLING_GOSSIP_SEED"
}

# stop_pid NAME: SIGTERM to the process in RUN_DIR/NAME.pid, SIGKILL after 10 s.
stop_pid() {
    local name=$1 pid i
    pid=$(cat "$run/$name.pid" 2>/dev/null) || return 0
    grep -q starling "/proc/$pid/cmdline" 2>/dev/null || return 0
    kill "$pid" 2>/dev/null
    for ((i = 0; i < 200; i++)); do alive "$pid" || break; sleep 0.05; done
    if alive "$pid"; then kill -9 "$pid" 2>/dev/null; echo "killed=$name"; else echo "stopped=$name"; fi
}

step=${1:-}
[ $# -gt 0 ] && shift
case $step in
start-tracker)
    mkdir -p -m 0700 "$run"
    start_daemon tracker tracker --listen "$STARLING_IP:${STARLING_TRACKER_PORT:?}" --interval "${STARLING_ANNOUNCE_INTERVAL:?}"
    wait_listen "$STARLING_IP" "$STARLING_TRACKER_PORT" 20 "$(cat "$run/tracker.pid")" tracker
    echo "tracker=$STARLING_IP:$STARLING_TRACKER_PORT"
    ;;

start-seed)
    art=${STARLING_ARTIFACT:?}
    [ -e "$art" ] || fail "no artifact at $art on the seeder"
    mkdir -p -m 0700 "$run"
    name=$(basename "$art")
    tgz=()
    if [ -d "$art" ]; then
        name=$name.tgz
        payload=$run/$name
        tgz=(--tgz)
    else
        payload=$art
    fi
    torrent=$run/$name.torrent
    piece=()
    [ -z "${STARLING_PIECE_SIZE:-}" ] || piece=(--piece-size "$STARLING_PIECE_SIZE")
    out=$("$bin" make-torrent "$art" --tracker "${STARLING_TRACKER_URL:?}" --output "$torrent" "${tgz[@]}" "${piece[@]}" 2>&1) \
        || fail "starling make-torrent failed: $(echo "$out" | tail -n 1)"
    sum=$(sha256sum "$payload" | cut -d' ' -f1) || fail "cannot read $payload"
    want=${STARLING_ARTIFACT_SHA256:-}
    if [ -n "$want" ] && [ ! -d "$art" ] && [ "$sum" != "$want" ]; then
        fail "the artifact on the seeder has sha256 $sum, not $want"
    fi
    # shellcheck disable=SC2046 # gossip_args is words on purpose
    start_daemon seed seed "$torrent" "$payload" --ip "$STARLING_IP" --port-range "${STARLING_PORT_RANGE:?}" \
        --up-rate "${STARLING_UP_RATE:-0}" --admin-listen "127.0.0.1:${STARLING_ADMIN_PORT:?}" $(gossip_args)
    wait_listen "$STARLING_IP" "${STARLING_PORT_RANGE%%-*}" 60 "$(cat "$run/seed.pid")" seed
    echo "payload=$name"
    echo "sha256=$sum"
    echo "torrent=$(base64 -w0 "$torrent")"
    ;;

start-peer)
    [ $# -eq 1 ] || fail "start-peer needs the .torrent in base64"
    dest=${STARLING_DEST:?}
    mkdir -p -m 0700 "$run" || fail "cannot make $run"
    mkdir -p "$(dirname "$dest")" || fail "cannot make the destination folder $(dirname "$dest")"
    torrent=$run/$(basename "$dest").torrent
    printf '%s' "$1" | base64 -d > "$torrent" || fail "the .torrent did not decode"
    rm -f "$run/peer.rc"
    # The wrapper writes starling's exit status to peer.rc for finish-peer; peer.pid is
    # starling's own pid, which stop.yml and finish-peer signal.
    # shellcheck disable=SC2046 # gossip_args is words on purpose
    setsid bash -c '"$@" > "$0/peer.log" 2>&1 < /dev/null & echo $! > "$0/peer.pid"; wait $!; echo $? > "$0/peer.rc.tmp"; mv "$0/peer.rc.tmp" "$0/peer.rc"' \
        "$run" "$bin" peer "$torrent" "$dest" --ip "$STARLING_IP" --port-range "${STARLING_PORT_RANGE:?}" \
        --up-rate "${STARLING_UP_RATE:-0}" --down-rate "${STARLING_DOWN_RATE:-0}" \
        --seed-after "${STARLING_SEED_TIME:?}" --timeout "${STARLING_FETCH_TIMEOUT:?}" \
        --admin-listen "127.0.0.1:${STARLING_ADMIN_PORT:?}" --log-level "${STARLING_LOG_LEVEL:-notice}" \
        $(gossip_args) > /dev/null 2>&1 < /dev/null &
    for ((i = 0; i < 50; i++)); do [ -s "$run/peer.pid" ] && break; sleep 0.02; done
    echo "started=$(cat "$run/peer.pid" 2>/dev/null)"
    ;;

finish-peer)
    dest=${STARLING_DEST:?}
    limit=${STARLING_WAIT:?}
    # The swarm is complete (every peer has announced completion): nobody needs this
    # peer's seeding any more, so it stops now rather than after its seeding time.
    if [ "${STARLING_SWARM_COMPLETE:-false}" = true ] && [ ! -e "$run/peer.rc" ]; then
        stop_pid peer > /dev/null
    fi
    for ((i = 0; i < limit * 10; i++)); do [ -e "$run/peer.rc" ] && break; sleep 0.1; done
    words=$(last_words "$run/peer.log")
    if [ ! -e "$run/peer.rc" ]; then
        stop_pid peer > /dev/null
        rm -rf "$run" "$dest.part"
        fail "starling peer did not finish in $limit s: ${words:-no output}"
    fi
    rc=$(cat "$run/peer.rc")
    rm -rf "$run" "$dest.part"
    [ "$rc" = 0 ] || fail "starling peer exited $rc: ${words:-no output}"
    [ -f "$dest" ] || fail "$dest is missing"
    sum=$(sha256sum "$dest" | cut -d' ' -f1)
    [ "$sum" = "${STARLING_SHA256:?}" ] || fail "$dest has sha256 $sum, the seeder's is $STARLING_SHA256"
    echo "sha256=$sum"
    if [ "${STARLING_UNPACK:-false}" = true ]; then
        mkdir -p "${STARLING_UNPACK_DIR:?}" && tar -xzf "$dest" -C "$STARLING_UNPACK_DIR" \
            || fail "cannot unpack $dest into $STARLING_UNPACK_DIR"
        echo "unpacked=$STARLING_UNPACK_DIR"
    fi
    ;;

stop)
    stop_pid seed
    stop_pid tracker
    rm -rf "$run"
    ;;

*)
    fail "usage: starling-rollout.sh start-tracker|start-seed|start-peer B64|finish-peer|stop"
    ;;
esac
