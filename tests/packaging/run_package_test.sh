#!/usr/bin/env bash
# The packages on a host without Swift (run as root).
#
# A clean Debian 12 root made by debootstrap (minbase: no Swift, no libssl, no zlib dev
# files), cached as a tarball so later runs only unpack it. Twice, each time in a fresh copy
# of that root:
#   1. deb: `dpkg -i` of dist/starling_*.deb inside the root (chroot): the starling user
#      exists, the example configs are conffiles, ldd lists only the C library;
#   2. bin: the bare static binary copied to /usr/local/bin;
# and from that root (chroot inside `ip netns exec`), in network namespaces on one bridge
# (10.78.0.0/24, no route out), a tracker, a seeder and 3 peers deliver an 8 MiB file;
# every peer's copy must have the source's sha256. The peers run without --ip (they must
# announce the address that routes to the tracker). Then
#   3. ansible: the role, given starling_package, installs the .deb over SSH (sshd chrooted
#      in a second cached root that has openssh-server and python3-apt) with apt, and a
#      rerun changes nothing (skipped with a message when ansible-playbook is missing).
# Everything it made (namespaces, processes by PID, the roots) is removed on exit, even on
# failure.
#
# Exit 0 when every check passed, 77 when the environment cannot run it (not root, no
# debootstrap, the Debian mirror unreachable): the caller reports a skip.
#
# Environment:
#   STARLING_DIST   folder with the packages (default dist/); built with scripts/package.sh
#                   when it lacks them or they were built from another commit
#   STARLING_TEST_CACHE   where the debootstrap tarball is kept (/var/cache/starling-tests)
#   STARLING_DEBIAN_MIRROR   the mirror (default: this machine's apt source, else deb.debian.org)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DIST=${STARLING_DIST:-$ROOT/dist}
CACHE=${STARLING_TEST_CACHE:-/var/cache/starling-tests}
TARBALL=$CACHE/bookworm-minbase.tar
NET=10.78.0
T0=$SECONDS

say() { printf '[package-test %3ds] %s\n' $((SECONDS - T0)) "$*"; }
die() { say "FAIL: $*"; exit 1; }
skip() { say "SKIP: $*"; exit 77; }

[ "$(id -u)" -eq 0 ] || skip "needs root (debootstrap, chroot, network namespaces)"
for tool in debootstrap ip chroot unshare tar sha256sum; do
    command -v "$tool" >/dev/null || skip "missing $tool (bash scripts/install-deps.sh)"
done

mkdir -p "$CACHE"
exec 9>/run/starling-package-test.lock
flock -w 600 9 || die "another package test holds /run/starling-package-test.lock"

# --- The packages: built from this commit, else (re)built -------------------------------
want_commit=$(cd "$ROOT" && git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if [ "$want_commit" != unknown ] && [ -n "$(cd "$ROOT" && git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    want_commit="$want_commit-dirty"
fi
find_dist() {
    BIN=$(ls -t "$DIST"/starling-*-linux-"$(uname -m)" 2>/dev/null | head -1 || true)
    DEB=$(ls -t "$DIST"/starling_*.deb 2>/dev/null | head -1 || true)
}
find_dist
have_commit=""
if [ -n "$BIN" ] && [ -n "$DEB" ]; then
    have_commit=$("$BIN" --version 2>/dev/null | sed -n 's/.*(commit \(.*\))$/\1/p')
fi
if [ -z "$BIN" ] || [ -z "$DEB" ] || { [ -z "${STARLING_DIST:-}" ] && [ "$have_commit" != "$want_commit" ]; }; then
    say "packages missing or from another commit (${have_commit:-none}, want $want_commit): scripts/package.sh"
    t=$SECONDS
    bash "$ROOT/scripts/package.sh" --out "$DIST" > "$CACHE/package.log" 2>&1 || { tail -n 40 "$CACHE/package.log"; die "scripts/package.sh failed"; }
    say "packages built in $((SECONDS - t)) s"
    find_dist
fi
[ -x "$BIN" ] && [ -f "$DEB" ] || die "no binary or .deb in $DIST"
say "testing $(basename "$DEB") and $(basename "$BIN") ($("$BIN" --version))"

# --- The clean Debian 12 root, cached ---------------------------------------------------
mirror=${STARLING_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
    mirror=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | grep -v security | head -1 || true)
    [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $0 !~ /security/ { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)
    [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
fi
# make_tarball TARBALL [PACKAGES]: a minbase root (plus PACKAGES, comma-separated) made once
# and kept as TARBALL; returns 1 when debootstrap fails (no mirror).
make_tarball() {
    local tarball=$1 include=${2:-} t=$SECONDS tmp=$1.dir
    [ -s "$tarball" ] && return 0
    say "no cached root: debootstrap --variant=minbase ${include:+--include=$include }bookworm from $mirror (once; cached in $tarball)"
    rm -rf "$tmp"
    if ! debootstrap --variant=minbase ${include:+--include="$include"} bookworm "$tmp" "$mirror" > "$tarball.log" 2>&1; then
        tail -n 5 "$tarball.log"
        rm -rf "$tmp"
        return 1
    fi
    tar -C "$tmp" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$tmp"
    say "debootstrap + tarball: $((SECONDS - t)) s ($(du -h "$tarball" | cut -f1))"
}
make_tarball "$TARBALL" || skip "debootstrap could not make a Debian 12 root from $mirror (see $TARBALL.log)"

D=$(mktemp -d /tmp/starling-pkgtest.XXXXXX)
HOSTS=(tracker seeder peer1 peer2 peer3 ctl managed)
declare -A IP=([tracker]=$NET.11 [seeder]=$NET.12 [peer1]=$NET.21 [peer2]=$NET.22 [peer3]=$NET.23
               [ctl]=$NET.2 [managed]=$NET.31)
NSES=(pk-sw)
for h in "${HOSTS[@]}"; do NSES+=("pk-$h"); done
PIDS=()

# cleanup_ns (every process in the namespaces of NSES killed by PID, the namespaces
# deleted), add_switch, add_host_ns.
source "$ROOT/tests/lib/netns.sh"
on_exit() {
    local rc=$?
    cleanup_ns
    # Nothing is mounted in the roots, so removing them touches only their own files.
    rm -rf --one-file-system "$D"
    if [ $rc -eq 0 ] || [ $rc -eq 77 ]; then say "cleaned up"; else say "cleaned up after failure (exit $rc)"; fi
    exit $rc
}
trap on_exit EXIT
trap 'exit 130' INT TERM
cleanup_ns

# --- Network: a bridge and one namespace per host ---------------------------------------
add_switch pk-sw
for h in "${HOSTS[@]}"; do add_host_ns "pk-$h" "${IP[$h]}" "p-$h" pk-sw; done
ip -n pk-peer1 route | grep -q default && die "a namespace has a default route"

# Runs a command chrooted into ROOT with /proc mounted there (the Swift runtime reads
# /proc/self) and /dev bound in (sshd gives Ansible's raw steps a PTY), in a mount namespace of its own: the mount ends with the process and is
# never seen outside, so nothing needs unmounting. in_ns does the same in a host's namespace;
# it is only started in the background (&) and execs, so that $! is the starling process
# itself (a subshell in between would hold a TERM until its child exits).
in_root() { # root, command...
    local r=$1; shift
    unshare --mount --propagation private sh -c 'mount -t proc proc "$0/proc" && mount --rbind /dev "$0/dev" && exec chroot "$0" "$@"' "$r" "$@"
}
in_ns() { # host, root, command...
    local ns=pk-$1 r=$2; shift 2
    exec ip netns exec "$ns" unshare --mount --propagation private sh -c 'mount -t proc proc "$0/proc" && mount --rbind /dev "$0/dev" && exec chroot "$0" "$@"' "$r" "$@"
}

# A fresh copy of the cached root.
new_root() { # folder
    mkdir -p "$1"
    tar -C "$1" -xf "$TARBALL"
    # No Swift, no libcrypto, no zlib development files: the binary must bring its own.
    local found
    found=$(find "$1" \( -name 'libswiftCore.so*' -o -name 'libFoundation.so*' -o -name 'libcrypto.so*' -o -name 'libz.a' \) -print | head -3)
    [ -z "$found" ] || die "the clean root is not clean: $found"
}

# Checks that the binary in ROOT needs only the C library, as ldd inside the root says.
check_ldd() { # root, binary path inside it
    local out
    out=$(in_root "$1" ldd "$2") || die "ldd $2 failed in the root: $out"
    if grep -Evq '^[[:space:]]*(linux-vdso\.so\.1|lib(c|m|pthread|dl|rt)\.so\.[0-9]+|/lib[^ ]*/ld-linux[^ ]*\.so\.[0-9]+)[[:space:]]' <<<"$out"; then
        die "$2 needs libraries outside the C library:"$'\n'"$out"
    fi
    say "ldd $2 in the root: $(awk '{print $1}' <<<"$out" | tr '\n' ' ')"
}

# The swarm from ROOT: tracker, seeder, 3 peers without --ip; every copy verified.
run_swarm() { # root, starling path inside it, label
    local r=$1 bin=$2 label=$3 h pid rc
    mkdir -p "$r/srv" "$r/var/log/pktest"
    head -c $((8 * 1024 * 1024)) /dev/urandom > "$r/srv/artifact.bin"
    local want
    want=$(sha256sum "$r/srv/artifact.bin" | cut -d' ' -f1)
    in_root "$r" "$bin" make-torrent /srv/artifact.bin --tracker "http://${IP[tracker]}:6969/announce" \
        --output /srv/artifact.torrent > "$D/$label-make.log" 2>&1 || die "$label: make-torrent failed: $(cat "$D/$label-make.log")"
    PIDS=()
    in_ns tracker "$r" "$bin" tracker --listen "${IP[tracker]}:6969" --interval 2 \
        > "$r/var/log/pktest/tracker.log" 2>&1 &
    PIDS+=($!)
    in_ns seeder "$r" "$bin" seed /srv/artifact.torrent /srv/artifact.bin --ip "${IP[seeder]}" \
        > "$r/var/log/pktest/seeder.log" 2>&1 &
    PIDS+=($!)
    local peer_pids=()
    for h in peer1 peer2 peer3; do
        mkdir -p "$r/srv/$h"
        in_ns "$h" "$r" "$bin" peer /srv/artifact.torrent "/srv/$h/artifact.bin" \
            --seed-after 2 --timeout 90 > "$r/var/log/pktest/$h.log" 2>&1 &
        peer_pids+=($!)
    done
    PIDS+=("${peer_pids[@]}")
    local i=0
    for pid in "${peer_pids[@]}"; do
        i=$((i + 1))
        rc=0
        wait "$pid" || rc=$?
        [ $rc -eq 0 ] || die "$label: peer$i exited $rc:"$'\n'"$(tail -n 20 "$r/var/log/pktest/peer$i.log")"
    done
    for h in peer1 peer2 peer3; do
        local got
        got=$(sha256sum "$r/srv/$h/artifact.bin" 2>/dev/null | cut -d' ' -f1 || true)
        [ "$got" = "$want" ] || die "$label: $h has sha256 ${got:-(no file)}, want $want; its log:"$'\n'"$(tail -n 20 "$r/var/log/pktest/$h.log")"
        grep -q "no --ip: listening on all addresses, announcing ${IP[$h]}" "$r/var/log/pktest/$h.log" \
            || die "$label: $h did not announce its own address ${IP[$h]}:"$'\n'"$(head -n 5 "$r/var/log/pktest/$h.log")"
    done
    kill "${PIDS[0]}" "${PIDS[1]}" 2>/dev/null || true
    wait "${PIDS[0]}" "${PIDS[1]}" 2>/dev/null || true
    say "$label: tracker, seeder and 3 peers (no --ip) delivered sha256 $want to every peer"
}

# --- 1. The .deb -------------------------------------------------------------------------
t=$SECONDS
new_root "$D/deb"
cp "$DEB" "$D/deb/tmp/starling.deb"
in_root "$D/deb" dpkg -i /tmp/starling.deb > "$D/dpkg.log" 2>&1 || die "dpkg -i failed:"$'\n'"$(cat "$D/dpkg.log")"
in_root "$D/deb" getent passwd starling >/dev/null || die "the package did not create the starling user"
conffiles=$(in_root "$D/deb" dpkg-query -W -f='${Conffiles}' starling)
for f in tracker.yaml seeder.yaml peer.yaml tracker-only.yaml; do
    grep -q "/etc/starling/$f" <<<"$conffiles" || die "/etc/starling/$f is not a conffile"
done
for f in /usr/lib/systemd/system/starling-node.service /usr/lib/sysusers.d/starling.conf \
         /usr/share/man/man1/starling.1.gz /usr/share/bash-completion/completions/starling; do
    [ -f "$D/deb$f" ] || die "the package did not install $f"
done
grep -q '^ExecStart=/usr/bin/starling ' "$D/deb/usr/lib/systemd/system/starling-node.service" || die "the unit does not run /usr/bin/starling"
in_root "$D/deb" /usr/bin/starling node --check-config /etc/starling/peer.yaml > "$D/check.log" 2>&1 \
    || die "the packaged peer.yaml does not pass --check-config: $(cat "$D/check.log")"
check_ldd "$D/deb" /usr/bin/starling
say "deb: installed with dpkg -i in a clean Debian 12 root ($((SECONDS - t)) s); user, conffiles, unit, man page present"
run_swarm "$D/deb" /usr/bin/starling deb
rm -rf --one-file-system "$D/deb"

# --- 2. The bare binary ------------------------------------------------------------------
new_root "$D/bin"
install -m 0755 "$BIN" "$D/bin/usr/local/bin/starling"
check_ldd "$D/bin" /usr/local/bin/starling
run_swarm "$D/bin" /usr/local/bin/starling binary
rm -rf --one-file-system "$D/bin"

# --- 3. The Ansible role with starling_package, over SSH ---------------------------------
# A root with sshd and python3-apt (a second cached tarball) is the managed host; sshd runs
# chrooted in it, in its namespace; ansible-playbook runs in the control namespace with the
# role from ansible/roles. The .deb must be installed by apt, and a rerun change nothing.
if ! command -v ansible-playbook >/dev/null; then
    say "ansible-playbook missing: the role's package install is not tested (bash scripts/install-deps.sh)"
elif ! make_tarball "$CACHE/bookworm-ssh.tar" openssh-server,python3,python3-apt; then
    say "debootstrap could not make the SSH root: the role's package install is not tested"
else
    t=$SECONDS
    r=$D/managed
    mkdir -p "$r" "$D/ansible"
    tar -C "$r" -xf "$CACHE/bookworm-ssh.tar"
    [ -z "$(find "$r" -name 'libswiftCore.so*' -print -quit)" ] || die "the SSH root has Swift"
    ssh-keygen -q -t ed25519 -N '' -f "$D/ansible/id" -C package-test
    install -d -m 0700 "$r/root/.ssh"
    install -m 0600 "$D/ansible/id.pub" "$r/root/.ssh/authorized_keys"
    in_root "$r" ssh-keygen -A >/dev/null
    mkdir -p "$r/run/sshd"
    in_ns managed "$r" /usr/sbin/sshd -D -e -o "ListenAddress=${IP[managed]}" -o PermitRootLogin=prohibit-password \
        -o UsePAM=no -o PasswordAuthentication=no > "$D/ansible/sshd.log" 2>&1 &
    sshd_pid=$!
    cp "$DEB" "$D/ansible/"
    cat > "$D/ansible/inventory.ini" <<INV
managed ansible_host=${IP[managed]} ansible_user=root ansible_ssh_private_key_file=$D/ansible/id ansible_python_interpreter=/usr/bin/python3
INV
    cat > "$D/ansible/install.yml" <<'PLAY'
- name: Install starling from the package
  hosts: all
  gather_facts: false
  roles:
    - role: starling
      vars:
        starling_node_render_config: false
PLAY
    cat > "$D/ansible/ansible.cfg" <<CFG
[defaults]
host_key_checking = false
roles_path = $ROOT/ansible/roles
local_tmp = $D/ansible/local
[ssh_connection]
pipelining = true
ssh_args = -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no -o IdentitiesOnly=yes -o ControlMaster=no
CFG
    play() { # log
        ip netns exec pk-ctl env ANSIBLE_CONFIG="$D/ansible/ansible.cfg" ANSIBLE_NOCOLOR=1 \
            timeout 180 ansible-playbook -i "$D/ansible/inventory.ini" -e "starling_package=$D/ansible/$(basename "$DEB")" \
            "$D/ansible/install.yml" > "$1" 2>&1 || die "ansible-playbook failed:"$'\n'"$(tail -n 30 "$1")"
    }
    for _ in $(seq 50); do grep -q "Server listening" "$D/ansible/sshd.log" && break; sleep 0.1; done
    play "$D/ansible/run1.log"
    in_root "$r" dpkg -s starling 2>/dev/null | grep -q '^Status: install ok installed' || die "the role did not install the package"
    in_root "$r" /usr/bin/starling --version > /dev/null || die "the role's /usr/bin/starling does not run"
    play "$D/ansible/run2.log"
    grep -Eq 'managed +: ok=[0-9]+ +changed=0 ' "$D/ansible/run2.log" \
        || die "a second run of the role changed something:"$'\n'"$(grep -B2 changed: "$D/ansible/run2.log" | head -20)"
    kill "$sshd_pid" 2>/dev/null || true
    wait "$sshd_pid" 2>/dev/null || true
    say "ansible: the role with starling_package installed the .deb over SSH (dpkg); a rerun changed nothing ($((SECONDS - t)) s)"
fi
say "all checks passed"
