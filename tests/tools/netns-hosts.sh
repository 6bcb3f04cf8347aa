#!/usr/bin/env bash
# Emulated hosts on one Linux machine: network namespaces on a private switch, each with its own
# host name, and Open MPI started across them through a launch agent (no ssh), talking only TCP.
# Used by tests/test_multihost.sh and the benchmarks; needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN).
#
#   netns-hosts.sh up NAME [N] [SLOTS]  make hosts NAME-h0 .. NAME-h<N-1> (default 3, 2 slots
#                                       each); exit 77 when namespaces cannot be made here
#   netns-hosts.sh rate NAME RATE       limit each host's link to RATE in each direction with a
#                                       tc tbf (e.g. 10gbit, 1gbit; "off" removes the limit)
#   netns-hosts.sh mpirun NAME ARGS...  mpirun ARGS on host 0, over the hostfile of every host
#   netns-hosts.sh exec HOST WORDS...   run a shell command on HOST, like ssh HOST WORDS...
#   netns-hosts.sh agent HOST WORDS...  the same with the clean environment of a remote login:
#                                       Open MPI's launch agent (plm_rsh_agent)
#   netns-hosts.sh hosts NAME           print the host names, one a line
#   netns-hosts.sh pids HOST            print the ids of the processes running on HOST
#   netns-hosts.sh down NAME            kill every process on the hosts and remove them all
#   netns-hosts.sh gc                   remove the hosts of owners that died without "down"
#
# Layout: a switch namespace NAME-sw holds a bridge; each host namespace NAME-hI holds lo and
# eth0 (10.77.0.<I+1>/24), a veth whose other end is a port of the bridge. Nothing is added to
# the machine's own network namespace, so every set of hosts has the same private subnet and
# several sets (parallel tests) cannot collide. The host name is set per process through a new
# UTS namespace (unshare --uts) when entering the host. State (hostfile, owner) is kept in
# /run/ewc-netns/NAME. With NETNS_HOSTS_OWNER=PID, "up" records that process as the owner, and
# later "up" and "gc" remove the hosts once it is gone (e.g. a test killed by its timeout);
# without it the hosts stay until "down".
set -euo pipefail

self=$(readlink -f "${BASH_SOURCE[0]}")
state_root=/run/ewc-netns
subnet=10.77.0

die() { echo "netns-hosts: $*" >&2; exit 1; }
check_name() { [[ $1 =~ ^[a-z0-9][a-z0-9-]{0,40}$ ]] || die "bad name '$1' (use a-z, 0-9, -)"; }
ns_exists() { [ -e "/run/netns/$1" ]; }
host_names() { # NAME: the host names of NAME, from its state
    [ -f "$state_root/$1/hosts" ] || die "no hosts named $1 (run: netns-hosts.sh up $1)"
    cat "$state_root/$1/hosts"
}
start_time() { # PID: its start time in clock ticks (with the pid, identifies a process);
                # nothing for a process that has ended (a zombie included)
    awk '{ sub(/^.*\) /, ""); if ($1 != "Z") print $20 }' "/proc/$1/stat" 2> /dev/null
}

# Run WORDS (joined by spaces and read by sh, as ssh does) on HOST with its host name.
enter() {
    local host=$1; shift
    check_name "$host"
    ns_exists "$host" || die "no host $host"
    exec ip netns exec "$host" unshare --uts /bin/sh -c "hostname $host && { $* ; }"
}

# Run the command ARGS... (not through a shell) on HOST with its host name.
enter_argv() {
    local host=$1; shift
    check_name "$host"
    ns_exists "$host" || die "no host $host"
    exec ip netns exec "$host" unshare --uts /bin/sh -c 'hostname "$0" && exec "$@"' "$host" "$@"
}

cmd_down() {
    local name=$1 host pid
    check_name "$name"
    for host in $(cat "$state_root/$name/hosts" 2> /dev/null) "$name-sw"; do
        ns_exists "$host" || continue
        # twice: a process can fork while the first round is being killed
        for _ in 1 2; do
            for pid in $(ip netns pids "$host" 2> /dev/null); do kill -KILL "$pid" 2> /dev/null || true; done
        done
        ip netns del "$host" 2> /dev/null || true # also deletes its veth and its peer
    done
    # hosts made by an "up" that failed before it wrote its state
    for host in /run/netns/"$name"-h*; do
        [ -e "$host" ] && ip netns del "$(basename "$host")" 2> /dev/null || true
    done
    rm -rf "${state_root:?}/$name"
}

cmd_gc() {
    local dir pid start
    for dir in "$state_root"/*/; do
        [ -f "$dir/owner" ] || continue
        read -r pid start < "$dir/owner" || continue
        [ -n "$pid" ] && [ "$(start_time "$pid")" = "$start" ] && continue
        echo "netns-hosts: removing $(basename "$dir") (its owner $pid is gone)" >&2
        cmd_down "$(basename "$dir")"
    done
}

cmd_up() {
    local name=$1 n=${2:-3} slots=${3:-2} i host
    check_name "$name"
    [[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 200 ] || die "bad host count '$n'"
    [[ $slots =~ ^[0-9]+$ ]] && [ "$slots" -ge 1 ] || die "bad slot count '$slots'"
    # can namespaces be made here at all? (no root, no CAP_NET_ADMIN / CAP_SYS_ADMIN, no ip,
    # no unshare, a kernel without namespaces): then the caller should skip, not fail
    for tool in ip unshare; do
        command -v "$tool" > /dev/null || { echo "netns-hosts: no '$tool' command" >&2; exit 77; }
    done
    ns_exists "$name-sw" && die "hosts named $name exist already"
    local err
    if ! err=$(ip netns add "$name-sw" 2>&1); then
        echo "netns-hosts: cannot make network namespaces here: ${err%%$'\n'*}" >&2
        exit 77
    fi
    # the kernel features the hosts are made of (a container may lack them)
    local missing=""
    ip netns exec "$name-sw" unshare --uts true 2> /dev/null || missing="UTS namespaces (unshare --uts)"
    ip -n "$name-sw" link add br0 type bridge 2> /dev/null || missing="$missing bridges"
    ip -n "$name-sw" link add p0 type veth peer name q0 2> /dev/null || missing="$missing veth pairs"
    ip -n "$name-sw" link del p0 2> /dev/null || true
    if [ -n "$missing" ]; then
        ip netns del "$name-sw"
        echo "netns-hosts: cannot make $missing here" >&2
        exit 77
    fi
    mkdir -p "$state_root/$name"
    if [ -n "${NETNS_HOSTS_OWNER:-}" ]; then
        [[ $NETNS_HOSTS_OWNER =~ ^[0-9]+$ ]] || die "bad NETNS_HOSTS_OWNER '$NETNS_HOSTS_OWNER'"
        # written whole, then renamed: a "gc" running at the same time never reads half of it
        echo "$NETNS_HOSTS_OWNER $(start_time "$NETNS_HOSTS_OWNER")" > "$state_root/$name/owner.tmp"
        mv "$state_root/$name/owner.tmp" "$state_root/$name/owner"
    fi
    cmd_gc # earlier sets whose owners died (this one's owner is alive)
    trap 'cmd_down "$name"' ERR
    local sw=(ip -n "$name-sw")
    "${sw[@]}" link set lo up
    "${sw[@]}" link set br0 up
    : > "$state_root/$name/hostfile"
    : > "$state_root/$name/hosts"
    for ((i = 0; i < n; i++)); do
        host=$name-h$i
        ip netns add "$host"
        echo "$host" >> "$state_root/$name/hosts"
        # the veth is made in the switch, its other end moved into the host: no name ever
        # appears in the machine's own namespace
        "${sw[@]}" link add "p$i" type veth peer name eth0 netns "$host"
        "${sw[@]}" link set "p$i" master br0
        "${sw[@]}" link set "p$i" up
        ip -n "$host" link set lo up
        ip -n "$host" addr add "$subnet.$((i + 1))/24" dev eth0
        ip -n "$host" link set eth0 up
        echo "$host slots=$slots" >> "$state_root/$name/hostfile"
    done
    trap - ERR
    # wait until the bridge forwards (its ports leave the listening state)
    for ((i = 0; i < 50; i++)); do
        [ "$("${sw[@]}" -br link show master br0 | grep -c ' UP ')" -eq "$n" ] && break
        sleep 0.1
    done
    echo "netns-hosts: $n hosts $name-h0 .. $name-h$((n - 1)) on $subnet.0/24, $slots slots each" >&2
}

cmd_rate() {
    local name=$1 rate=$2 i=0 host bytes burst
    check_name "$name"
    for host in $(host_names "$name"); do
        if [ "$rate" = off ]; then
            ip -n "$host" link show eth0 > /dev/null
            tc -n "$host" qdisc del dev eth0 root 2> /dev/null || true
            tc -n "$name-sw" qdisc del dev "p$i" root 2> /dev/null || true
        else
            # burst: 100 us at the rate, at least 64 KiB (one GSO segment): a token bucket
            # passes a burst at full speed, so it is kept short next to the messages measured
            bytes=$(echo "$rate" | awk '
                /^[0-9.]+gbit$/ { print $0 * 1e9 / 8; next }
                /^[0-9.]+mbit$/ { print $0 * 1e6 / 8; next }
                /^[0-9.]+kbit$/ { print $0 * 1e3 / 8; next }
                { exit 1 }') || die "bad rate '$rate' (e.g. 10gbit, 1gbit, 100mbit, off)"
            burst=$(awk -v b="$bytes" 'BEGIN { x = b * 1e-4; printf "%d", x < 65536 ? 65536 : x }')
            # both directions: host -> switch on eth0, switch -> host on the switch port
            tc -n "$host" qdisc replace dev eth0 root tbf rate "$rate" burst "$burst" latency 50ms
            tc -n "$name-sw" qdisc replace dev "p$i" root tbf rate "$rate" burst "$burst" latency 50ms
        fi
        i=$((i + 1))
    done
}

cmd_mpirun() {
    local name=$1; shift
    check_name "$name"
    local hosts; hosts=$(host_names "$name")
    # Open MPI splits the agent command at spaces
    [[ $self != *[[:space:]]* ]] || die "the path of this script has a space: $self"
    # orted comes up on each host through the agent and connects back to mpirun over TCP; the
    # out-of-band channel and the byte transfer layer are both held to the hosts' subnet, and
    # only TCP (between hosts), shared memory (vader, within a host) and self are allowed
    local args=(mpirun --hostfile "$state_root/$name/hostfile"
                --mca plm_rsh_agent "$self agent" --mca plm_rsh_no_tree_spawn 1
                --mca pml ob1 --mca btl tcp,vader,self
                --mca oob_tcp_if_include "$subnet.0/24" --mca btl_tcp_if_include "$subnet.0/24"
                "$@")
    # the hosts share this machine's cores: each orted would bind its first rank to core 0, its
    # second to core 1 ..., stacking ranks of different hosts on one core (a ping-pong between
    # two hosts then takes ~300 us instead of ~5 us); so no binding unless ARGS ask for it
    args=("${args[0]}" --mca hwloc_base_binding_policy none "${args[@]:1}")
    # more slots than cores: ranks waiting for a message must yield the core (as Open MPI does by
    # itself when it knows it oversubscribes), or busy-polling ranks starve the ones computing
    local slots; slots=$(awk '{ sub(/slots=/, "", $2); s += $2 } END { print s }' \
        "$state_root/$name/hostfile")
    [ "$slots" -gt "$(nproc)" ] && args=("${args[0]}" --mca mpi_yield_when_idle 1 "${args[@]:1}")
    # a sanitizer build's options (tests/sanitizers) must reach the remote ranks too
    local v
    for v in ASAN_OPTIONS LSAN_OPTIONS UBSAN_OPTIONS; do
        [ -n "${!v:-}" ] && args=("${args[0]}" -x "$v" "${args[@]:1}")
    done
    enter_argv "${hosts%%$'\n'*}" "${args[@]}"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
    up) [ $# -ge 1 ] || die "usage: up NAME [N] [SLOTS]"; cmd_up "$@" ;;
    down) [ $# -eq 1 ] || die "usage: down NAME"; cmd_down "$1" ;;
    gc) cmd_gc ;;
    rate) [ $# -eq 2 ] || die "usage: rate NAME RATE"; cmd_rate "$1" "$2" ;;
    mpirun) [ $# -ge 1 ] || die "usage: mpirun NAME ARGS..."; cmd_mpirun "$@" ;;
    exec) [ $# -ge 2 ] || die "usage: exec HOST WORDS..."; enter "$@" ;;
    agent)
        [ $# -ge 2 ] || die "usage: agent HOST WORDS..."
        # a remote login starts with a clean environment: what the ranks need must travel with
        # mpirun -x (as on a real cluster)
        exec env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin HOME="${HOME:-/root}" \
            USER="$(id -un)" LANG=C.UTF-8 "$self" exec "$@" ;;
    hosts) [ $# -eq 1 ] || die "usage: hosts NAME"; host_names "$1" ;;
    pids) [ $# -eq 1 ] || die "usage: pids HOST"; check_name "$1"; ip netns pids "$1" ;;
    *) sed -n '2,/^set -euo/p' "$self" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
