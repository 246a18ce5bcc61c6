#!/usr/bin/env bash
# End-to-end test of ansible/rollout.yml over real SSH (run as root).
#
# Builds hosts in network namespaces (prefix sa-, 10.77.0.0/24) on one bridge, every
# link shaped with tc, no route out. Each host has a root of its own (a copy-on-write
# overlay of this machine's, so the package it installs is its own) and runs its own sshd
# in it, on its own address (generated host key, root login by a generated key pair).
# From a control namespace:
#   1. ansible-playbook rollout.yml installs Starling's .deb on every host (apt) and
#      pushes a random artifact to every peer: each has it with the right sha256, no
#      starling process is left, the scratch files are gone;
#   2. with one host's sshd stopped, rollout.yml (a folder, --tgz, unpacked) names that
#      host as failed with the reason and completes every other peer;
#   3. `ansible peers -m copy` pushes the same artifact over the same links;
# then prints the two push times side by side. Everything it made (namespaces,
# processes by PID, files) is removed on exit, even on failure.
#
# Environment: STARLING_DEB (default dist/starling_*.deb, built by scripts/package.sh when
# missing), SA_HOSTS (hosts, default 12: 1 tracker+seeder, 11 peers),
# SA_SIZE_MIB (artifact size, default 32), SA_RATE (per-link rate, default 100mbit),
# SA_EXTRA=1 (also run cap.yml and stop.yml on the idle fleet), SA_KEEP_LOGS=DIR (keep
# the Ansible logs there), SA_BENCH=1 (scripts/bench-rollout.sh: the fleet has the package
# already, one timed push and no other run; the copy, which would take an hour at the
# story's shape, is not run: its bound is printed instead).
set -euo pipefail
shopt -s lastpipe

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
NHOSTS=${SA_HOSTS:-12}
SIZE_MIB=${SA_SIZE_MIB:-32}
RATE=${SA_RATE:-100mbit}
NET=10.77.0
CTL_IP=$NET.2
DOWN_HOST=h05          # the host made unreachable in the second run
SEED_S=3               # starling_seed_time of the test runs
T0=$SECONDS

say() { printf '[rollout-test %3ds] %s\n' $((SECONDS - T0)) "$*"; }
die() { say "FAIL: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces)"
for tool in ip tc /usr/sbin/sshd ssh-keygen ansible-playbook ansible sha256sum findmnt; do
    command -v "$tool" >/dev/null || die "missing $tool (bash scripts/install-deps.sh)"
done
[ "$NHOSTS" -ge 10 ] || die "SA_HOSTS must be at least 10"

# One run at a time: the namespace names and the subnet are fixed.
exec 9>/run/starling-rollout-test.lock
flock -w 300 9 || die "another rollout test holds /run/starling-rollout-test.lock"

DEB=${STARLING_DEB:-}
if [ -z "$DEB" ]; then
    DEB=$(ls "$ROOT"/dist/starling_*_amd64.deb 2>/dev/null | head -n 1 || true)
    if [ -z "$DEB" ]; then
        say "no package in dist/: bash scripts/package.sh"
        bash "$ROOT/scripts/package.sh" >/dev/null
        DEB=$(ls "$ROOT"/dist/starling_*_amd64.deb | head -n 1)
    fi
fi
[ -f "$DEB" ] || die "no .deb at $DEB"
/usr/bin/python3 -c 'import apt' 2>/dev/null || die "missing python3-apt, which Ansible's apt module needs (bash scripts/install-deps.sh)"

D=$(mktemp -d /tmp/sa-rollout.XXXXXX)
chmod 755 "$D"
HOSTS=()
for i in $(seq 1 "$NHOSTS"); do HOSTS+=("$(printf 'h%02d' "$i")"); done
NSES=(sa-sw sa-ctl)
for h in "${HOSTS[@]}"; do NSES+=("sa-$h"); done

# cleanup_ns (every process in the namespaces of NSES killed by PID, the namespaces
# deleted), add_switch, add_host_ns.
source "$ROOT/tests/lib/netns.sh"
# Unmounts every host root (and what is mounted in it) under PREFIX, deepest first.
unmount_roots() {
    local m
    { findmnt -rn -o TARGET | grep "^$1" || true; } | sort -r | while read -r m; do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
}
on_exit() {
    local rc=$?
    cleanup_ns
    unmount_roots "$D/"
    if [ -n "${SA_KEEP_LOGS:-}" ]; then
        mkdir -p "$SA_KEEP_LOGS" && cp "$D"/*.log "$SA_KEEP_LOGS"/ 2>/dev/null || true
    fi
    # A host root still mounted would take this machine's /dev with it: leave $D then.
    if findmnt -rn -o TARGET | grep -q "^$D/"; then
        say "host roots still mounted under $D: not removing it"
    else
        rm -rf --one-file-system "$D"
    fi
    if [ $rc -eq 0 ]; then say "cleaned up"; else say "cleaned up after failure (exit $rc)"; fi
    exit $rc
}
trap on_exit EXIT
trap 'exit 130' INT TERM

# Leftovers of a run that was killed hard (no trap) would block this one.
cleanup_ns
unmount_roots /tmp/sa-rollout.

# --- Network: a switch namespace with a bridge, one veth pair per host ----------
say "building $NHOSTS hosts + control in namespaces (links $RATE, $NET.0/24, no route out)"
add_switch sa-sw
add_host_ns sa-ctl "$CTL_IP" p-ctl sa-sw "$RATE"
declare -A IP
for i in $(seq 1 "$NHOSTS"); do
    h=${HOSTS[$((i - 1))]}
    IP[$h]=$NET.$((10 + i))
    add_host_ns "sa-$h" "${IP[$h]}" "p-$h" sa-sw "$RATE"
done

# --- Roots: each host's own copy-on-write view of this machine's ----------------
# An overlay of / (upper layers in a tmpfs: an overlay's upper may not lie inside its
# lower) with /dev and /proc, and the test folder bound in, so what the hosts fetch lands
# where the checks below read it while what they install (/usr, /var/lib/dpkg, /etc)
# stays in their own layer.
mkdir -p "$D/fs"
mount -t tmpfs -o size=16g,mode=0755 sa-rollout-layers "$D/fs"
LOWER=/
if [ -n "${SA_BENCH:-}" ]; then
    # A fleet that has the package: installed once in a layer every host root sits on, as
    # the role would have left it (the package in its cache folder, the dpkg database).
    mkdir -p "$D/fs/base/upper" "$D/fs/base/work" "$D/fs/base/root"
    mount -t overlay sa-root-base -o "lowerdir=/,upperdir=$D/fs/base/upper,workdir=$D/fs/base/work" "$D/fs/base/root"
    mount --rbind /dev "$D/fs/base/root/dev"
    mount -t proc proc "$D/fs/base/root/proc"
    mkdir -p "$D/fs/base/root/var/cache/starling"
    cp "$DEB" "$D/fs/base/root/var/cache/starling/"
    chroot "$D/fs/base/root" dpkg -i "/var/cache/starling/$(basename "$DEB")" >/dev/null || die "dpkg -i in the base layer failed"
    unmount_roots "$D/fs/base/root"
    LOWER=$D/fs/base/upper:/
fi
declare -A R
for h in "${HOSTS[@]}"; do
    R[$h]=$D/fs/$h/root
    mkdir -p "$D/fs/$h/upper" "$D/fs/$h/work" "${R[$h]}"
    mount -t overlay "sa-root-$h" -o "lowerdir=$LOWER,upperdir=$D/fs/$h/upper,workdir=$D/fs/$h/work" "${R[$h]}"
    mount --rbind /dev "${R[$h]}/dev"
    mount -t proc proc "${R[$h]}/proc"
    mount --bind "$D" "${R[$h]}$D"
done

# --- SSH: a key pair for root, one host key, one sshd per host ------------------
mkdir -p "$D/ssh" /run/sshd
ssh-keygen -q -t ed25519 -N '' -f "$D/ssh/id" -C rollout-test
ssh-keygen -q -t ed25519 -N '' -f "$D/ssh/host_key" -C rollout-test-host
cp "$D/ssh/id.pub" "$D/ssh/authorized_keys"
chmod 600 "$D/ssh/authorized_keys"
start_sshd() {
    local h=$1
    mkdir -p "$D/hosts/$h"
    cat > "$D/hosts/$h/sshd_config" <<CONF
ListenAddress ${IP[$h]}
Port 22
HostKey $D/ssh/host_key
PidFile $D/hosts/$h/sshd.pid
AuthorizedKeysFile $D/ssh/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
MaxStartups 200
MaxSessions 200
Subsystem sftp internal-sftp
LogLevel ERROR
CONF
    rm -f "$D/hosts/$h/sshd.pid"
    ip netns exec "sa-$h" chroot "${R[$h]}" /usr/sbin/sshd -f "$D/hosts/$h/sshd_config" -E "$D/hosts/$h/sshd.log"
}
for h in "${HOSTS[@]}"; do start_sshd "$h"; done
for h in "${HOSTS[@]}"; do
    for _ in $(seq 50); do [ -s "$D/hosts/$h/sshd.pid" ] && break; sleep 0.1; done
    [ -s "$D/hosts/$h/sshd.pid" ] || die "sshd of $h did not start: $(cat "$D/hosts/$h/sshd.log" 2>/dev/null)"
done

# --- Ansible: inventory, variables, configuration --------------------------------
mkdir -p "$D/ctl-tmp" "$D/ansible-local" "$D/cp"
{
    echo "[tracker]"; echo "h01 ansible_host=${IP[h01]}"
    echo "[seeder]"; echo "h01 ansible_host=${IP[h01]}"
    echo "[peers]"
    for h in "${HOSTS[@]:1}"; do echo "$h ansible_host=${IP[$h]}"; done
    echo "[all:vars]"
    echo "ansible_user=root"
    echo "ansible_python_interpreter=/usr/bin/python3"
    echo "ansible_ssh_private_key_file=$D/ssh/id"
} > "$D/inventory.ini"
# The hosts' roots share the test folder: give each its own folders in it.
cat > "$D/vars.yml" <<VARS
starling_package: $DEB
starling_host_root: "$D/hosts/{{ inventory_hostname }}"
starling_run_dir: "{{ starling_host_root }}/run"
starling_dest_dir: "{{ starling_host_root }}/dest"
starling_config_dir: "{{ starling_host_root }}/etc"
starling_data_dir: "{{ starling_host_root }}/data"
starling_seed_time: $SEED_S
starling_fetch_timeout: ${SA_FETCH_TIMEOUT:-150}
starling_poll_interval: 1
starling_announce_interval: 5
starling_gossip_subnet: $NET.0/24
starling_gossip_key: $(head -c 32 /dev/urandom | sha256sum | cut -c1-48)
VARS
cat > "$D/ansible.cfg" <<CFG
[defaults]
forks = 50
host_key_checking = false
interpreter_python = /usr/bin/python3
local_tmp = $D/ansible-local
remote_tmp = $D/ansible-remote
roles_path = $ROOT/ansible/roles
timeout = 15
[ssh_connection]
pipelining = true
control_path_dir = $D/cp
ssh_args = -o ControlMaster=auto -o ControlPersist=60s -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -o IdentitiesOnly=yes
CFG
stamp() { # prefixes each line with the time of day
    local line
    while IFS= read -r line; do printf '%(%T)T %s\n' -1 "$line"; done
}
in_ctl() { # runs a command in the control namespace with the test's Ansible settings
    ip netns exec sa-ctl env ANSIBLE_CONFIG="$D/ansible.cfg" ANSIBLE_ASYNC_DIR="$D/async" \
        TMPDIR="$D/ctl-tmp" ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0 "$@"
}
# Drops the controller's persistent SSH connections (so a stopped sshd is really gone).
drop_connections() {
    local pids
    pids=$(ip netns pids sa-ctl 2>/dev/null || true)
    [ -n "$pids" ] && kill $pids 2>/dev/null || true
    rm -f "$D/cp"/*
}

# No route out: the namespaces know only their own /24.
ip -n sa-ctl route | grep -q default && die "the control namespace has a default route"

# Checks that no starling process runs in any host and that the scratch files are gone.
check_stopped_and_clean() {
    local h pid left=()
    for h in "${HOSTS[@]}"; do
        for pid in $(ip netns pids "sa-$h" 2>/dev/null); do
            case $(readlink "/proc/$pid/exe" 2>/dev/null) in */usr/bin/starling) left+=("$h:$pid") ;; esac
        done
    done
    [ ${#left[@]} -eq 0 ] || die "starling still running: ${left[*]}"
    local junk
    junk=$(find "$D/hosts" "$D/ctl-tmp" \( -name run -o -name '*.part' -o -name '*.torrent' \
           -o -name 'starling-rollout.*' -o -name '*.log' ! -name sshd.log \) 2>/dev/null || true)
    [ -z "$junk" ] || die "scratch files left behind: $junk"
    if [ -d "$D/async" ] && [ -n "$(ls -A "$D/async")" ]; then die "async job files left: $(ls "$D/async")"; fi
    return 0
}

# push RUN FILE: rollout.yml pushes FILE to every peer; checks every sha256, that no
# starling process is left and no scratch file; sets ROLLOUT_S (the playbook's wall time)
# and FETCH_S (the swarm part alone: from the task "Start starling peer" to the tracker's
# count of every peer complete, the end of the task "Watch the swarm").
push() {
    local run=$1 file=$2 want t h got
    want=$(sha256sum "$file" | cut -d' ' -f1)
    t=$(date +%s.%N)
    if ! in_ctl timeout "${SA_PLAYBOOK_TIMEOUT:-300}" ansible-playbook -i "$D/inventory.ini" -e "@$D/vars.yml" \
            -e "starling_artifact=$file" "$ROOT/ansible/rollout.yml" 2>&1 | stamp > "$D/$run.log"; then
        tail -n 60 "$D/$run.log"
        die "$run: ansible-playbook rollout.yml failed"
    fi
    ROLLOUT_S=$(awk -v a="$t" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    FETCH_S=$(awk '
        function secs(t,  p) { split(t, p, ":"); return p[1] * 3600 + p[2] * 60 + p[3] }
        /TASK \[Start starling peer/ { a = secs($1); next }
        /TASK \[Watch the swarm/ { w = 1; next }
        w && /TASK \[/ && !b { b = secs($1) }
        END { if (a && b) printf "%d", b - a; else printf "?" }' "$D/$run.log")
    grep -E "starling rollout \[" "$D/$run.log" | tail -n 2
    grep -E "starling rollout:" "$D/$run.log" | sed 's/^ *"msg": //' | head -n 1
    for h in "${HOSTS[@]:1}"; do
        got=$(sha256sum "$D/hosts/$h/dest/$(basename "$file")" 2>/dev/null | cut -d' ' -f1 || true)
        [ "$got" = "$want" ] || die "$run: $h has sha256 '${got:-missing}', want $want"
    done
    check_stopped_and_clean
}

if [ -n "${SA_BENCH:-}" ]; then
    head -c "$((SIZE_MIB * 1024 * 1024))" /dev/urandom > "$D/artifact.bin"
    say "bench: rollout.yml pushes a $SIZE_MIB MiB file from h01 to the $(( ${#HOSTS[@]} - 1 )) peers (package installed)"
    push run1 "$D/artifact.bin"
    PEERS=$(( ${#HOSTS[@]} - 1 ))
    # The copy's bound: every byte of every peer's copy leaves the controller's one link.
    BOUND_S=$(awk -v n="$PEERS" -v mib="$SIZE_MIB" -v rate="$RATE" 'BEGIN {
        r = rate + 0; u = tolower(rate); sub(/^[0-9.]+/, "", u)
        m = (u == "kbit") ? 1e3 : (u == "mbit") ? 1e6 : (u == "gbit") ? 1e9 : 1
        printf "%.1f", n * mib * 1048576 * 8 / (r * m) }')
    echo
    printf 'push of %d MiB to %d peers over %s links (wall time, including Ansible)\n' "$SIZE_MIB" "$PEERS" "$RATE"
    printf '  %-44s %7.1f s\n' "ansible-playbook rollout.yml (package there):" "$ROLLOUT_S"
    printf '  %-44s %5s   s\n' "  of which the swarm fetch itself:" "$FETCH_S"
    printf '  %-44s %7.1f s (%d x %d MiB through one %s link; not run)\n' "ansible -m copy, at least:" "$BOUND_S" "$PEERS" "$SIZE_MIB" "$RATE"
    printf 'ROLLOUT_TIMES starling=%.1fs copy_bound=%ss swarm_fetch=%ss size=%dMiB peers=%d rate=%s\n' \
        "$ROLLOUT_S" "$BOUND_S" "$FETCH_S" "$SIZE_MIB" "$PEERS" "$RATE"
    say "all checks passed"
    exit 0
fi

# --- Run 1: the package onto every host and a 32 MiB file to every peer -------------
head -c "$((SIZE_MIB * 1024 * 1024))" /dev/urandom > "$D/artifact.bin"
say "run 1: rollout.yml installs $(basename "$DEB") on ${#HOSTS[@]} hosts and pushes a $SIZE_MIB MiB file from h01 to the $(( ${#HOSTS[@]} - 1 )) peers"
push run1 "$D/artifact.bin"
FIRST_S=$ROLLOUT_S
version=$(dpkg-deb -f "$DEB" Version)
for h in "${HOSTS[@]}"; do
    got=$(chroot "${R[$h]}" dpkg-query -W -f '${Version}' starling 2>/dev/null || true)
    [ "$got" = "$version" ] || die "run 1: $h has starling package '${got:-none}', want $version from $(basename "$DEB")"
done
say "run 1 ok: the package installed on every host; every peer has the file; processes stopped; scratch files gone ($FIRST_S s)"

# --- Run 1b: the next artifact to the same fleet (the package already there) ---------
head -c "$((SIZE_MIB * 1024 * 1024))" /dev/urandom > "$D/artifact2.bin"
say "run 1b: rollout.yml pushes another $SIZE_MIB MiB file to the same fleet"
push run1b "$D/artifact2.bin"
awk '/TASK \[/ { t = /Copy the package|Install the package/ } t && /^[0-9:]+ (changed|ok): \[/ { again = 1 } END { exit !again }' "$D/run1b.log" \
    && die "run 1b: the package was copied or installed again, though every host has it"
say "run 1b ok: package left as it was; every peer has the file ($ROLLOUT_S s, of which the swarm fetch $FETCH_S s)"

PEERS=$(( ${#HOSTS[@]} - 1 ))
# --- Run 2: one host unreachable; a folder, sent as .tgz and unpacked ----------------
drop_connections
kill "$(cat "$D/hosts/$DOWN_HOST/sshd.pid")"
mkdir -p "$D/bundle/sub"
head -c $((3 * 1024 * 1024)) /dev/urandom > "$D/bundle/app.bin"
head -c $((1024 * 1024)) /dev/urandom > "$D/bundle/sub/lib.bin"
echo "version 2" > "$D/bundle/VERSION"
say "run 2: rollout.yml pushes a folder (as .tgz, unpacked) with $DOWN_HOST's sshd stopped"
set +e
in_ctl timeout 240 ansible-playbook -i "$D/inventory.ini" -e "@$D/vars.yml" \
    -e "starling_artifact=$D/bundle" -e starling_unpack=true -e starling_node_render_config=true "$ROOT/ansible/rollout.yml" 2>&1 | stamp > "$D/run2.log"
rc2=$?
set -e
[ $rc2 -eq 124 ] && { tail -n 60 "$D/run2.log"; die "run 2: ansible-playbook timed out"; }
[ $rc2 -ne 0 ] || { tail -n 40 "$D/run2.log"; die "run 2: ansible-playbook exited 0 with $DOWN_HOST down"; }
summary=$(grep -o 'starling rollout: [^"]*' "$D/run2.log" | head -n 1)
echo "$summary"
echo "$summary" | grep -q "FAILED hosts: $DOWN_HOST (FAILED unreachable: " \
    || { tail -n 60 "$D/run2.log"; die "run 2: the summary does not name $DOWN_HOST as unreachable"; }
echo "$summary" | grep -q "$(( ${#HOSTS[@]} - 2 )) of $(( ${#HOSTS[@]} - 1 )) peers" \
    || { tail -n 60 "$D/run2.log"; die "run 2: the other peers did not all finish"; }
for h in "${HOSTS[@]:1}"; do
    [ "$h" = "$DOWN_HOST" ] && continue
    diff -r "$D/bundle" "$D/hosts/$h/dest/bundle" >/dev/null \
        || die "run 2: $h's unpacked bundle differs from the source"
done
check_stopped_and_clean
say "run 2 ok: $DOWN_HOST reported unreachable, the $(( ${#HOSTS[@]} - 2 )) others unpacked an identical folder"

# --- Run 3: the same file with ansible -m copy over the same links ------------------
start_sshd "$DOWN_HOST"
for _ in $(seq 50); do [ -s "$D/hosts/$DOWN_HOST/sshd.pid" ] && break; sleep 0.1; done
drop_connections
for h in "${HOSTS[@]:1}"; do mkdir -p "$D/hosts/$h/copy"; done
say "run 3: ansible peers -m copy pushes the same $SIZE_MIB MiB file from the controller"
t=$(date +%s.%N)
if ! in_ctl timeout 240 ansible peers -i "$D/inventory.ini" -m ansible.builtin.copy \
        -a "src=$D/artifact.bin dest=$D/hosts/{{ inventory_hostname }}/copy/artifact.bin mode=0644" 2>&1 | stamp > "$D/copy.log"; then
    tail -n 40 "$D/copy.log"
    die "run 3: ansible -m copy failed"
fi
COPY_S=$(awk -v a="$t" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
WANT=$(sha256sum "$D/artifact.bin" | cut -d' ' -f1)
for h in "${HOSTS[@]:1}"; do
    got=$(sha256sum "$D/hosts/$h/copy/artifact.bin" | cut -d' ' -f1)
    [ "$got" = "$WANT" ] || die "run 3: $h's copy has the wrong sha256"
done

# --- Optional (SA_EXTRA=1): cap.yml and stop.yml against the now idle fleet ------------
if [ -n "${SA_EXTRA:-}" ]; then
    say "extra: cap.yml and stop.yml on the idle fleet"
    in_ctl timeout 120 ansible-playbook -i "$D/inventory.ini" -e "@$D/vars.yml" -e starling_cap_up=20mbit \
        "$ROOT/ansible/cap.yml" 2>&1 | stamp > "$D/cap.log" || { tail -n 30 "$D/cap.log"; die "cap.yml failed"; }
    grep -q "caps unchanged" "$D/cap.log" || die "cap.yml did not report the hosts with nothing running"
    in_ctl timeout 120 ansible-playbook -i "$D/inventory.ini" -e "@$D/vars.yml" \
        "$ROOT/ansible/stop.yml" 2>&1 | stamp > "$D/stop.log" || { tail -n 30 "$D/stop.log"; die "stop.yml failed"; }
    check_stopped_and_clean
fi

echo
printf 'push of %d MiB to %d peers over %s links (wall time, including Ansible)\n' "$SIZE_MIB" "$PEERS" "$RATE"
printf '  %-44s %7.1f s\n' "ansible-playbook rollout.yml (package there):" "$ROLLOUT_S"
printf '  %-44s %5s   s (to 1 s)\n' "  of which the swarm fetch itself:" "$FETCH_S"
printf '  %-44s %7.1f s\n' "the first rollout, installing the package:" "$FIRST_S"
printf '  %-44s %7.1f s\n' "ansible peers -m copy:" "$COPY_S"
printf 'ROLLOUT_TIMES starling=%.1fs first=%.1fs ansible_copy=%.1fs swarm_fetch=%ss size=%dMiB peers=%d rate=%s\n' \
    "$ROLLOUT_S" "$FIRST_S" "$COPY_S" "$FETCH_S" "$SIZE_MIB" "$PEERS" "$RATE"
say "all checks passed"
