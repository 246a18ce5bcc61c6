# Sourced by the test scripts that build hosts in network namespaces.

# cleanup_ns: kills every process inside the namespaces named in the array NSES (by PID:
# TERM, then KILL), then deletes those namespaces. Namespaces that do not exist are skipped.
cleanup_ns() {
    local ns pids
    for ns in "${NSES[@]}"; do
        ip netns list 2>/dev/null | grep -qw "^$ns" || continue
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        [ -n "$pids" ] && kill $pids 2>/dev/null || true
    done
    sleep 0.3
    for ns in "${NSES[@]}"; do
        ip netns list 2>/dev/null | grep -qw "^$ns" || continue
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        [ -n "$pids" ] && kill -9 $pids 2>/dev/null || true
        ip netns del "$ns" 2>/dev/null || true
    done
}

# add_switch SWITCH_NS: a namespace holding the bridge br0 that the hosts' links join.
add_switch() {
    ip netns add "$1"
    ip -n "$1" link set lo up
    ip -n "$1" link add br0 type bridge
    ip -n "$1" link set br0 up
}

# add_host_ns NS ADDRESS PORT SWITCH_NS [RATE]: a host namespace whose eth0 (ADDRESS/24) is a
# veth to the switch's port PORT on br0; no default route. With RATE (e.g. 100mbit) both
# directions are shaped: the host's egress and the switch port's egress to it. The pair is
# made inside the two namespaces, never in this machine's own, so tests that run at the
# same time and name their ports alike (p-ctl) do not collide.
add_host_ns() {
    local ns=$1 addr=$2 port=$3 sw=$4 rate=${5:-}
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip link add "$port" netns "$sw" type veth peer name eth0 netns "$ns"
    ip -n "$sw" link set "$port" master br0 up
    ip -n "$ns" addr add "$addr/24" dev eth0
    ip -n "$ns" link set eth0 up
    if [ -n "$rate" ]; then
        ip netns exec "$ns" tc qdisc add dev eth0 root tbf rate "$rate" burst 64kb latency 50ms
        ip netns exec "$sw" tc qdisc add dev "$port" root tbf rate "$rate" burst 64kb latency 50ms
    fi
}
