#!/usr/bin/env bash
# Zabbix 6.0 for real (run as root): does the story's alarm stay quiet under --max-change?
#
# Starts Debian's Zabbix server with PostgreSQL and the PHP frontend, imports
# config/zabbix/starling_template.yaml through the JSON-RPC API (configuration.import: the
# test fails if it does not load), and registers 9 hosts of a namespace swarm (prefix zb-,
# 10.79.0.0/24, links shaped to 100mbit, no route out), each with its own Zabbix agent
# (agents in the namespaces: the template's net.if.in/net.if.out items and their
# abs(change())>{$STARLING.NET.CHANGE.MAX} triggers run exactly as on a fleet, one agent per
# host) and the HTTP template on its Starling /metrics. Zabbix itself runs in a namespace
# zb-mon on the same bridge and reads PostgreSQL through a Unix socket; the frontend is on
# loopback. Then three rollouts of a 64 MiB file from zb-h0 to the 8 other hosts:
#   (a) Starling with --max-change 5mbit/INTERVAL: no problem on any host, from the first
#       announce to the last process exit;
#   (b) Starling with --up-rate 20mbit only: the change trigger fires; while every node runs,
#       every item of both templates on every host has data and none is unsupported;
#   (c) a central HTTP copy to every host at once: the change trigger fires.
# Problems are read back with event.get. Every process it started (PostgreSQL,
# zabbix_server, Apache, agents, the swarm) is stopped by PID on exit, even on failure.
#
# The installed packages come from scripts/install-deps.sh. The database with Zabbix's
# schema is made once and kept in /var/cache/starling-tests/zabbix (ZB_CACHE); each run
# starts from a copy of it.
#
# Environment: STARLING_BIN (default .build/debug/starling), ZB_INTERVAL (the item interval
# and the --max-change INTERVAL, default 10s), ZB_SIZE_MIB (64), ZB_RATE (100mbit),
# ZB_KEEP=DIR (keep the logs there).
set -euo pipefail

# Started by the test runner, the script inherits its blocked signals (SIGTERM among them),
# and so would every process it starts: the HTTP server would never stop, nor this script at
# its timeout. Once, it runs itself again with no signal blocked.
if [ -z "${ZB_SIGNALS_UNBLOCKED:-}" ]; then
    export ZB_SIGNALS_UNBLOCKED=1
    exec python3 -c 'import os, signal, sys; signal.pthread_sigmask(signal.SIG_SETMASK, []); os.execv("/bin/bash", ["/bin/bash"] + sys.argv[1:])' "$0" "$@"
fi

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${STARLING_BIN:-$ROOT/.build/debug/starling}
INTERVAL_S=${ZB_INTERVAL:-10}
INTERVAL_S=${INTERVAL_S%s}
SIZE_MIB=${ZB_SIZE_MIB:-64}
RATE=${ZB_RATE:-100mbit}
CACHE=${ZB_CACHE:-/var/cache/starling-tests/zabbix}
NET=10.79.0
MON_IP=$NET.2
NPEERS=8
PG_PORT=5439
WEB_PORT=18079
T0=$SECONDS

say() { printf '[zabbix-test %3ds] %s\n' $((SECONDS - T0)) "$*"; }
die() { say "FAIL: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces, PostgreSQL as its own user)"
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
for tool in ip tc curl jq setpriv unshare python3 /usr/sbin/zabbix_server /usr/sbin/zabbix_agentd \
            /usr/sbin/apache2 "$PGBIN/postgres" "$PGBIN/initdb" "$BIN"; do
    command -v "$tool" >/dev/null || [ -x "$tool" ] || die "missing $tool (bash scripts/install-deps.sh; swift build)"
done
SCHEMA=/usr/share/zabbix-server-pgsql
[ -f "$SCHEMA/schema.sql.gz" ] || die "missing $SCHEMA/schema.sql.gz (zabbix-server-pgsql)"
PHP_MOD=$(ls /usr/lib/apache2/modules/libphp*.so 2>/dev/null | head -n 1)
[ -n "$PHP_MOD" ] || die "missing Apache's PHP module (libapache2-mod-php)"

exec 9>/run/starling-zabbix-test.lock
flock -w 300 9 || die "another Zabbix test holds /run/starling-zabbix-test.lock"

D=$(mktemp -d /tmp/zb-test.XXXXXX)
chmod 755 "$D"
HOSTS=()
for i in $(seq 0 "$NPEERS"); do HOSTS+=("h$i"); done
NSES=(zb-sw zb-mon)
for h in "${HOSTS[@]}"; do NSES+=("zb-$h"); done
declare -A IP
for i in $(seq 0 "$NPEERS"); do IP[h$i]=$NET.$((10 + i)); done

# Processes this script started, by PID (the namespaced ones are also swept by cleanup_ns).
PIDS=()
source "$ROOT/tests/lib/netns.sh"
stop_pid() { # stop_pid PID [SIGNAL]: signal, then KILL after 10 s; only a child of this script
    local pid=$1 sig=${2:-TERM}
    ours() { [ "$(ps -o ppid= -p "$pid" 2>/dev/null | tr -d ' ')" = "$$" ]; }
    # A child that exited and was reaped may have left its PID to another process.
    ours || return 0
    kill "-$sig" "$pid" 2>/dev/null || true
    for _ in $(seq 100); do ours && [[ "$(ps -o stat= -p "$pid" 2>/dev/null)" != Z* ]] || return 0; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
}
on_exit() {
    local rc=$? pid
    set +e
    trap '' INT TERM
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    [ -n "${PG_PID:-}" ] && stop_pid "$PG_PID" INT
    cleanup_ns
    if [ -n "${ZB_KEEP:-}" ]; then
        mkdir -p "$ZB_KEEP" && cp -r "$D"/*.log "$D"/logs "$D"/events-*.json "$D"/history-*.json "$D"/items-net.json "$ZB_KEEP"/ 2>/dev/null || true
    fi
    rm -rf "$D"
    if [ $rc -eq 0 ]; then say "stopped everything"; else say "stopped everything after failure (exit $rc)"; fi
    exit $rc
}
trap on_exit EXIT
trap 'exit 130' INT TERM
cleanup_ns   # namespaces left by a run killed hard

# --- PostgreSQL: a cluster of its own, Unix socket only -----------------------------
version=$(dpkg-query -W -f '${Version}' zabbix-server-pgsql 2>/dev/null || echo unknown)
pgmajor=$(basename "$(dirname "$PGBIN")")
PRISTINE=$CACHE/pgdata-$pgmajor-${version//[^A-Za-z0-9.]/_}
mkdir -p "$D/pg" "$D/logs"
chown postgres:postgres "$D/pg"
start_pg() { # start_pg DATADIR
    setpriv --reuid=postgres --regid=postgres --init-groups -- "$PGBIN/postgres" -D "$1" \
        -k "$D/pg" -p $PG_PORT -c listen_addresses='' -c fsync=off -c synchronous_commit=off \
        -c full_page_writes=off > "$D/logs/postgres.log" 2>&1 &
    PG_PID=$!
    for _ in $(seq 100); do [ -S "$D/pg/.s.PGSQL.$PG_PORT" ] && return 0; sleep 0.1; done
    die "PostgreSQL did not start: $(tail -n 5 "$D/logs/postgres.log")"
}
psql_zb() { setpriv --reuid=postgres --regid=postgres --init-groups -- "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$D/pg" -p $PG_PORT "$@"; }
if [ ! -f "$PRISTINE/PG_VERSION" ]; then
    say "first run: a database with Zabbix $version's schema (kept in $PRISTINE)"
    mkdir -p "$D/pgdata" && chown postgres:postgres "$D/pgdata"
    setpriv --reuid=postgres --regid=postgres --init-groups -- "$PGBIN/initdb" -D "$D/pgdata" -U postgres \
        --auth=trust -E UTF8 --locale=C > "$D/logs/initdb.log" 2>&1 || die "initdb failed: $(tail -n 5 "$D/logs/initdb.log")"
    start_pg "$D/pgdata"
    psql_zb -U postgres -d postgres -c "create user zabbix" -c "create database zabbix owner zabbix"
    for f in schema images data; do
        zcat "$SCHEMA/$f.sql.gz" | psql_zb -U zabbix -d zabbix > /dev/null || die "importing $f.sql failed"
    done
    stop_pid "$PG_PID" INT
    mkdir -p "$CACHE"
    rm -rf "$PRISTINE.tmp"
    cp -a "$D/pgdata" "$PRISTINE.tmp" && mv "$PRISTINE.tmp" "$PRISTINE"
    rm -rf "$D/pgdata"
fi
cp -a "$PRISTINE" "$D/pgdata"
start_pg "$D/pgdata"
say "PostgreSQL up (pid $PG_PID, socket in $D/pg)"

# --- Network: switch, Zabbix's namespace, 9 hosts ---------------------------------
add_switch zb-sw
add_host_ns zb-mon "$MON_IP" p-mon zb-sw
for h in "${HOSTS[@]}"; do add_host_ns "zb-$h" "${IP[$h]}" "p-$h" zb-sw "$RATE"; done
ip -n zb-h0 route | grep -q default && die "a host namespace has a default route"

# --- Zabbix server (in zb-mon), agents (one per host), frontend (loopback) ----------
cat > "$D/zabbix_server.conf" <<CONF
LogFile=$D/logs/zabbix_server.log
LogFileSize=0
PidFile=$D/zabbix_server.pid
SocketDir=$D
DBHost=$D/pg
DBPort=$PG_PORT
DBName=zabbix
DBUser=zabbix
ListenIP=$MON_IP
AllowRoot=1
CacheUpdateFrequency=1
HousekeepingFrequency=0
StartPollers=8
StartPollersUnreachable=1
StartDiscoverers=0
StartHTTPPollers=0
StartTimers=1
StartEscalators=1
StartAlerters=1
Timeout=4
CONF
ip netns exec zb-mon /usr/sbin/zabbix_server -f -c "$D/zabbix_server.conf" > "$D/logs/zabbix_server.out" 2>&1 &
PIDS+=($!)
for h in "${HOSTS[@]}"; do
    cat > "$D/agent-$h.conf" <<CONF
LogFile=$D/logs/agent-$h.log
LogFileSize=0
PidFile=$D/agent-$h.pid
Server=$MON_IP
ServerActive=
ListenIP=${IP[$h]}
Hostname=zb-$h
AllowRoot=1
StartAgents=2
Timeout=3
CONF
    ip netns exec "zb-$h" /usr/sbin/zabbix_agentd -f -c "$D/agent-$h.conf" > "$D/logs/agent-$h.out" 2>&1 &
    PIDS+=($!)
done

# The frontend reads /etc/zabbix/zabbix.conf.php: Apache runs in a mount namespace of its
# own where /etc/zabbix is this run's folder, so nothing in the machine's /etc changes.
mkdir -p "$D/etc-zabbix"
cat > "$D/etc-zabbix/zabbix.conf.php" <<PHP
<?php
\$DB['TYPE'] = 'POSTGRESQL';
\$DB['SERVER'] = '$D/pg';
\$DB['PORT'] = '$PG_PORT';
\$DB['DATABASE'] = 'zabbix';
\$DB['USER'] = 'zabbix';
\$DB['PASSWORD'] = '';
\$DB['SCHEMA'] = '';
\$DB['ENCRYPTION'] = false;
\$DB['DOUBLE_IEEE754'] = true;
\$ZBX_SERVER = '$MON_IP';
\$ZBX_SERVER_PORT = '10051';
\$ZBX_SERVER_NAME = 'starling-test';
\$IMAGE_FORMAT_DEFAULT = IMAGE_FORMAT_PNG;
PHP
cat > "$D/apache2.conf" <<CONF
ServerRoot /etc/apache2
ServerName 127.0.0.1
Listen 127.0.0.1:$WEB_PORT
PidFile $D/apache2.pid
Mutex file:$D
User www-data
Group www-data
ErrorLog $D/logs/apache-error.log
LogLevel warn
LoadModule mpm_prefork_module /usr/lib/apache2/modules/mod_mpm_prefork.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
LoadModule mime_module /usr/lib/apache2/modules/mod_mime.so
LoadModule dir_module /usr/lib/apache2/modules/mod_dir.so
LoadModule alias_module /usr/lib/apache2/modules/mod_alias.so
LoadModule php_module $PHP_MOD
TypesConfig /etc/mime.types
StartServers 2
MinSpareServers 1
MaxSpareServers 4
Alias /zabbix /usr/share/zabbix
<Directory /usr/share/zabbix>
    Require all granted
    DirectoryIndex index.php
    php_value max_execution_time 300
    php_value memory_limit 256M
    php_value post_max_size 16M
</Directory>
<FilesMatch "\.php$">
    SetHandler application/x-httpd-php
</FilesMatch>
CONF
unshare --mount --propagation private -- /bin/bash -c \
    "mount --bind '$D/etc-zabbix' /etc/zabbix && exec /usr/sbin/apache2 -f '$D/apache2.conf' -DFOREGROUND" \
    > "$D/logs/apache.out" 2>&1 &
PIDS+=($!)

API=http://127.0.0.1:$WEB_PORT/zabbix/api_jsonrpc.php
AUTH=null
# api METHOD PARAMS_JSON: the call's result; dies on an error answer.
api() {
    local body answer
    body=$(jq -cn --arg m "$1" --argjson p "$2" --argjson a "$AUTH" '{jsonrpc: "2.0", method: $m, params: $p, auth: $a, id: 1}')
    answer=$(curl -sS --max-time 60 -H 'Content-Type: application/json-rpc' --data-binary @- "$API" <<< "$body") \
        || die "$1: no answer from the frontend ($(tail -n 3 "$D/logs/apache-error.log" 2>/dev/null))"
    if ! jq -e 'has("result")' <<< "$answer" > /dev/null 2>&1; then
        die "$1 failed: $(jq -c '.error // .' <<< "$answer" 2>/dev/null || echo "$answer" | head -c 600)"
    fi
    jq -c '.result' <<< "$answer"
}
for _ in $(seq 100); do
    v=$(curl -s --max-time 2 -H 'Content-Type: application/json-rpc' \
        -d '{"jsonrpc":"2.0","method":"apiinfo.version","params":{},"id":1}' "$API" | jq -r '.result // empty' 2>/dev/null || true)
    [ -n "$v" ] && break
    sleep 0.2
done
[ -n "$v" ] || die "the API did not answer: $(tail -n 5 "$D/logs/apache-error.log" 2>/dev/null)"
AUTH=$(api user.login '{"username": "Admin", "password": "zabbix"}')
say "Zabbix $v: server, 9 agents, frontend up; API logged in"

# --- The template, through the API --------------------------------------------------
rules='{"groups": {"createMissing": true}, "templates": {"createMissing": true, "updateExisting": true},
        "items": {"createMissing": true, "updateExisting": true}, "triggers": {"createMissing": true, "updateExisting": true},
        "discoveryRules": {"createMissing": true, "updateExisting": true}, "templateDashboards": {"createMissing": true, "updateExisting": true},
        "templateLinkage": {"createMissing": true}, "valueMaps": {"createMissing": true, "updateExisting": true}}'
params=$(jq -n --rawfile s "$ROOT/config/zabbix/starling_template.yaml" --argjson r "$rules" '{format: "yaml", source: $s, rules: $r}')
[ "$(api configuration.import "$params")" = "true" ] || die "configuration.import did not answer true"
templates=$(api template.get '{"output": ["templateid", "host"], "filter": {"host": ["Starling node by HTTP", "Starling network by Zabbix agent"]}}')
HTTP_T=$(jq -r '.[] | select(.host == "Starling node by HTTP") | .templateid' <<< "$templates")
NET_T=$(jq -r '.[] | select(.host == "Starling network by Zabbix agent") | .templateid' <<< "$templates")
[ -n "$HTTP_T" ] && [ -n "$NET_T" ] || die "the imported templates are not there: $templates"
nitems=$(api item.get "{\"templateids\": [$HTTP_T, $NET_T], \"countOutput\": true}" | jq -r .)
ntriggers=$(api trigger.get "{\"templateids\": [$HTTP_T, $NET_T], \"countOutput\": true}" | jq -r .)
say "imported config/zabbix/starling_template.yaml: 2 templates, $nitems items, $ntriggers triggers"

# --- The hosts ----------------------------------------------------------------------
GROUP=$(api hostgroup.create '{"name": "Starling test swarm"}' | jq -r '.groupids[0]')
# One call for every host (each host.create links two templates: about 4 s of PHP per call).
hosts_json=$(for h in "${HOSTS[@]}"; do
    jq -n --arg h "zb-$h" --arg ip "${IP[$h]}" --arg g "$GROUP" --arg t1 "$HTTP_T" --arg t2 "$NET_T" \
        --arg url "http://${IP[$h]}:9460/metrics" --arg iv "${INTERVAL_S}s" '{
        host: $h, groups: [{groupid: $g}], templates: [{templateid: $t1}, {templateid: $t2}],
        interfaces: [{type: 1, main: 1, useip: 1, ip: $ip, dns: "", port: "10050"}],
        macros: [{macro: "{$STARLING.METRICS.URL}", value: $url}, {macro: "{$STARLING.INTERVAL}", value: $iv},
                 {macro: "{$STARLING.NET.INTERVAL}", value: $iv}]}'
done | jq -sc .)
HOSTIDS=$(api host.create "$hosts_json" | jq -c '.hostids')
# The story's trigger, as the template made it on each host.
CHANGE_TRIGGERS=$(api trigger.get "{\"hostids\": $HOSTIDS, \"output\": [\"triggerid\"], \"search\": {\"description\": \"traffic changed by more than\"}}" | jq -c '[.[].triggerid]')
[ "$(jq length <<< "$CHANGE_TRIGGERS")" -eq $((2 * ${#HOSTS[@]})) ] \
    || die "want an in and an out change trigger on each of ${#HOSTS[@]} hosts, got $CHANGE_TRIGGERS"
say "${#HOSTS[@]} hosts registered (agent interface, both templates, items every ${INTERVAL_S}s); waiting for the first interface rates"
for _ in $(seq 120); do
    missing=$(api item.get "{\"hostids\": $HOSTIDS, \"search\": {\"key_\": \"net.if.\"}, \"output\": [\"lastclock\", \"state\", \"error\", \"key_\"]}" \
        | jq '[.[] | select(.lastclock == "0")] | length')
    [ "$missing" -eq 0 ] && break
    sleep 1
done
[ "$missing" -eq 0 ] || die "$missing interface items have no value after 120 s: $(api item.get "{\"hostids\": $HOSTIDS, \"search\": {\"key_\": \"net.if.\"}, \"output\": [\"key_\", \"error\", \"state\"]}" | head -c 600)"
say "every host's interface rate is in"

# --- Rollouts -------------------------------------------------------------------------
head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom > "$D/payload.bin"
WANT=$(sha256sum "$D/payload.bin" | cut -d' ' -f1)
"$BIN" make-torrent "$D/payload.bin" --tracker "http://${IP[h0]}:6969/announce" --output "$D/payload.torrent" > /dev/null
check_copies() { # check_copies RUN: every receiver has the payload
    local h got
    for h in "${HOSTS[@]:1}"; do
        got=$(sha256sum "$D/out-$h.bin" 2>/dev/null | cut -d' ' -f1 || true)
        [ "$got" = "$WANT" ] || die "$1: $h has sha256 '${got:-missing}', want $WANT"
    done
    rm -f "$D"/out-*.bin
}
# Lets the interface rates settle to idle: the last rollout's fall is sampled and its
# problems recovered before the next one starts.
settle() { sleep $((2 * INTERVAL_S + 2)); }

# events RUN FROM TILL: problem events on the test hosts with clock in [FROM, TILL]; writes
# them to events-RUN.json and prints how many came from the change triggers and from any.
events() {
    local run=$1 from=$2 till=$3 ev
    ev=$(api event.get "{\"hostids\": $HOSTIDS, \"source\": 0, \"object\": 0, \"value\": 1, \"time_from\": $from, \"time_till\": $till,
                        \"output\": [\"eventid\", \"clock\", \"name\", \"objectid\"], \"selectHosts\": [\"host\"], \"sortfield\": [\"clock\"]}")
    echo "$ev" > "$D/events-$run.json"
    # The interface rates behind them, kept with ZB_KEEP.
    api history.get "{\"history\": 0, \"itemids\": $(api item.get "{\"hostids\": $HOSTIDS, \"search\": {\"key_\": \"net.if.\"}, \"output\": [\"itemid\"]}" | jq -c '[.[].itemid]'),
                      \"time_from\": $((from - 2 * INTERVAL_S)), \"time_till\": $((till + INTERVAL_S)), \"sortfield\": \"clock\"}" > "$D/history-$run.json"
    api item.get "{\"hostids\": $HOSTIDS, \"search\": {\"key_\": \"net.if.\"}, \"output\": [\"itemid\", \"key_\"], \"selectHosts\": [\"host\"]}" > "$D/items-net.json"
    jq -r --argjson from "$from" '.[] | "    +\(.clock|tonumber - $from)s \(.hosts[0].host): \(.name)"' <<< "$ev" | sed -n '1,40p' >&2
    # The largest change between two consecutive samples of any host's interface rate.
    local worst
    worst=$(jq -r --slurpfile items "$D/items-net.json" '
        ($items[0] | map({(.itemid): "\(.hosts[0].host) \(.key_ | sub("\\[.*"; ""))"}) | add) as $name
        | group_by(.itemid) | map(. as $s | [range(1; length) | ($s[.].value | tonumber) - ($s[. - 1].value | tonumber) | fabs]
                                  | {d: (max // 0), item: $s[0].itemid})
        | max_by(.d) | "\(.d / 1e6 * 100 | round / 100) Mbit/s (\($name[.item]))"' "$D/history-$run.json")
    jq -r --argjson t "$CHANGE_TRIGGERS" --arg w "$worst" '"\([.[] | select(.objectid as $o | $t | index($o))] | length) \(length) \($w)"' <<< "$ev"
}

# starling_rollout RUN SEED_AFTER ARGS...: tracker and seeder in h0, a peer in every other
# host, all at once; waits for every peer to exit 0 (after lingering SEED_AFTER seconds),
# then stops the seeder (SIGTERM: under --max-change it tapers first) and the tracker.
# Sets RUN_FROM and RUN_TILL (unix seconds): the tracker's start and the last exit.
starling_rollout() {
    local run=$1 linger=$2; shift 2
    local h pid rc deadline
    local -A peer
    RUN_FROM=$(date +%s)
    ip netns exec zb-h0 "$BIN" tracker --listen "${IP[h0]}:6969" --interval 5 > "$D/logs/$run-tracker.log" 2>&1 &
    local tracker=$!; PIDS+=($tracker)
    for _ in $(seq 50); do ip netns exec zb-h0 curl -s -o /dev/null "http://${IP[h0]}:6969/metrics" && break; sleep 0.1; done
    ip netns exec zb-h0 "$BIN" seed "$D/payload.torrent" "$D/payload.bin" --ip "${IP[h0]}" \
        --metrics-listen "${IP[h0]}:9460" "$@" > "$D/logs/$run-seed.log" 2>&1 &
    local seeder=$!; PIDS+=($seeder)
    for _ in $(seq 100); do ip netns exec zb-h0 curl -s -o /dev/null "http://${IP[h0]}:9460/metrics" && break; sleep 0.1; done
    for h in "${HOSTS[@]:1}"; do
        ip netns exec "zb-$h" "$BIN" peer "$D/payload.torrent" "$D/out-$h.bin" --ip "${IP[$h]}" \
            --metrics-listen "${IP[$h]}:9460" --seed-after "$linger" --timeout 400 "$@" > "$D/logs/$run-$h.log" 2>&1 &
        peer[$h]=$!; PIDS+=(${peer[$h]})
    done
    if [ -n "${ON_ALL_COMPLETE:-}" ]; then
        deadline=$((SECONDS + 300))
        until [ "$(ls "$D"/out-*.bin 2>/dev/null | wc -l)" -eq "$NPEERS" ]; do
            [ $SECONDS -lt $deadline ] || die "$run: not every peer complete in 300 s"
            sleep 0.5
        done
        "$ON_ALL_COMPLETE"
    fi
    for h in "${HOSTS[@]:1}"; do
        rc=0; wait "${peer[$h]}" || rc=$?
        [ $rc -eq 0 ] || die "$run: the peer in $h exited $rc: $(tail -n 3 "$D/logs/$run-$h.log")"
    done
    kill -TERM "$seeder"; rc=0; wait "$seeder" || rc=$?
    [ $rc -eq 0 ] || [ $rc -eq 143 ] || die "$run: the seeder exited $rc: $(tail -n 3 "$D/logs/$run-seed.log")"
    RUN_TILL=$(date +%s)
    kill -TERM "$tracker"; wait "$tracker" || true
}

# Every item of both templates on every host (discovered ones included) has a value from
# the last minute and none is unsupported: run while every node serves /metrics.
check_items() {
    local since=$(( $(date +%s) - 60 )) items bad
    for _ in $(seq 60); do
        items=$(api item.get "{\"hostids\": $HOSTIDS, \"output\": [\"key_\", \"lastclock\", \"state\", \"error\", \"value_type\"], \"selectHosts\": [\"host\"], \"webitems\": true}")
        bad=$(jq -c --argjson s "$since" '[.[] | select(.state != "0" or ((.lastclock | tonumber) < $s and .value_type != "4"))
              | "\(.hosts[0].host) \(.key_): \(if .state != "0" then "unsupported: " + .error else "no data" end)"]' <<< "$items")
        [ "$(jq length <<< "$bad")" -eq 0 ] \
            && [ "$(jq '[.[] | select(.key_ | startswith("starling.torrent."))] | length' <<< "$items")" -gt 0 ] && break
        sleep 1
    done
    [ "$(jq length <<< "$bad")" -eq 0 ] || die "items without data or unsupported: $(jq -r '.[]' <<< "$bad" | head -n 20)"
    ITEMS_OK=$(jq length <<< "$items")
    say "  every item has data and none is unsupported: $ITEMS_OK items on ${#HOSTS[@]} hosts (discovered per-torrent ones included)"
}

declare -A CHANGE_PROBLEMS ALL_PROBLEMS SECS WORST
run_case() { # run_case NAME: records the problems of RUN_FROM..RUN_TILL (+ the sample that covers the end)
    local n
    sleep $((INTERVAL_S + 2))   # the sample covering the last exit, and its trigger evaluation
    read -r c a w < <(events "$1" "$RUN_FROM" $((RUN_TILL + INTERVAL_S + 1)))
    CHANGE_PROBLEMS[$1]=$c; ALL_PROBLEMS[$1]=$a; SECS[$1]=$((RUN_TILL - RUN_FROM)); WORST[$1]=$w
    say "  $1: ${SECS[$1]} s from the first announce to the last exit; problems: $c from the change triggers, $a in all;"
    say "     largest change between two ${INTERVAL_S}-s samples: $w"
}

say "rollout (a): Starling, --max-change 5mbit/${INTERVAL_S}s, $SIZE_MIB MiB to $NPEERS hosts"
starling_rollout a 0 --max-change "5mbit/${INTERVAL_S}s"
check_copies a
run_case a
settle

say "rollout (b): Starling, --up-rate 20mbit only"
ON_ALL_COMPLETE=check_items starling_rollout b 30 --up-rate 20mbit
check_copies b
run_case b
settle

say "rollout (c): a central HTTP copy to every host at once"
RUN_FROM=$(date +%s)
ip netns exec zb-h0 python3 -m http.server 8000 --bind "${IP[h0]}" --directory "$D" > "$D/logs/c-http.log" 2>&1 &
http=$!; PIDS+=($http)
for _ in $(seq 50); do ip netns exec zb-h0 curl -s -o /dev/null "http://${IP[h0]}:8000/" && break; sleep 0.1; done
declare -A cp
for h in "${HOSTS[@]:1}"; do
    ip netns exec "zb-$h" curl -sS -o "$D/out-$h.bin" "http://${IP[h0]}:8000/payload.bin" > "$D/logs/c-$h.log" 2>&1 &
    cp[$h]=$!; PIDS+=(${cp[$h]})
done
for h in "${HOSTS[@]:1}"; do wait "${cp[$h]}" || die "(c): the copy to $h failed: $(cat "$D/logs/c-$h.log")"; done
kill -TERM "$http"; wait "$http" || true
RUN_TILL=$(date +%s)
check_copies c
run_case c

echo
printf 'ZABBIX_RESULTS interval=%ss a_change=%s a_all=%s a_s=%s b_change=%s b_all=%s b_s=%s c_change=%s c_all=%s c_s=%s items=%s total_s=%s\n' \
    "$INTERVAL_S" "${CHANGE_PROBLEMS[a]}" "${ALL_PROBLEMS[a]}" "${SECS[a]}" "${CHANGE_PROBLEMS[b]}" "${ALL_PROBLEMS[b]}" "${SECS[b]}" \
    "${CHANGE_PROBLEMS[c]}" "${ALL_PROBLEMS[c]}" "${SECS[c]}" "$ITEMS_OK" $((SECONDS - T0))
[ "${ALL_PROBLEMS[a]}" -eq 0 ] || die "(a) under --max-change raised ${ALL_PROBLEMS[a]} problems (above)"
[ "${CHANGE_PROBLEMS[b]}" -gt 0 ] || die "(b) with only a level cap raised no change problem"
[ "${CHANGE_PROBLEMS[c]}" -gt 0 ] || die "(c) the central copy raised no change problem"
say "all checks passed"
