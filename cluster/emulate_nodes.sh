#!/usr/bin/env bash
# Emulates a cluster of K nodes on this machine and runs one MPI program across it: each node is
# a network namespace joined to a private bridge by a veth pair shaped with tc, so ranks of
# different nodes talk TCP over slow links while ranks of one node use shared memory.
# Run with --help for the usage. Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN), ip, tc, unshare.
set -uo pipefail

prog=emulate_nodes
usage() {
  cat <<'EOF'
Usage: cluster/emulate_nodes.sh --nodes K --ranks-per-node R [options] -- PROGRAM [ARGS...]
       cluster/emulate_nodes.sh --check [--delay D]
       cluster/emulate_nodes.sh --cleanup-stale

Runs `mpirun -np K*R PROGRAM ARGS...` over K emulated nodes of R ranks each, on this machine.
Node i is the network namespace tsn<PID>-n<i> (PID: this script's process id), with address
10.213.<S>.<i+2>/24 on eth0, joined by the veth pair tsn<PID>-h<i> to the bridge tsn<PID>-br
(10.213.<S>.1, where mpirun runs; S is a /24 that no interface or route here uses). Each
node's link is shaped in both directions with a tbf qdisc (the namespace side's egress and the
bridge side's egress), so each node sends at most RATE and receives at most RATE, like a NIC.
Open MPI runs each node's orted and ranks inside that namespace (rsh agent
cluster/netns_rsh_agent.sh), under the hostname tsn<PID>-n<i>, so ranks r*R ... r*R+R-1 share
node r: OMPI_COMM_WORLD_LOCAL_SIZE and MPI_Comm_split_type(MPI_COMM_TYPE_SHARED) give R, the
ranks of a node talk over shared memory (vader), and ranks of different nodes over TCP, limited
to the bridge's subnet (--mca btl tcp,self,vader, btl_tcp_if_include, oob_tcp_if_include).

Options:
  --nodes K             number of emulated nodes, 1..250 (required)
  --ranks-per-node R    MPI ranks per node, >= 1 (required); mpirun gets -np K*R
  --rate RATE           each node's link rate per direction, in tc's units: <N>bit, <N>kbit,
                        <N>mbit or <N>gbit (decimal: 1gbit = 10^9 bit/s); `none`: no shaping.
                        Default: 1gbit
  --delay D             one-way delay between two nodes, <N>us, <N>ms or <N>s, added by a
                        netem qdisc on each node's outgoing side (round trip: 2 x D; needs
                        the kernel's sch_netem). Default: 0ms (no netem)
  --mpirun-arg ARG      one more argument for mpirun, before PROGRAM; repeat for several
                        (e.g. --mpirun-arg --mca --mpirun-arg btl_base_verbose --mpirun-arg 30)
  --check               only check that this machine can emulate nodes: make one node (with
                        --delay's netem if given), remove it, exit 0, or 77 saying why not
  --cleanup-stale       remove what earlier runs that were killed left behind (namespaces,
                        links, temporary files, Open MPI session files named tsn<PID>-*), for
                        every PID that is no longer a running emulate_nodes.sh; then exit
  -h, --help            this text

Environment: the program sees the caller's whole environment (the rsh agent is a local process,
so orted and the ranks inherit mpirun's environment; nothing needs -x). When run as root,
OMPI_ALLOW_RUN_AS_ROOT=1 and OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 are set unless already set.
mpirun also gets --bind-to none (all nodes share this machine's cores) and --map-by slot.

Output: one line per node on stderr (namespace, address, ranks, the rates tc reports for both
directions); the program's own output is mpirun's.

Cleanup: everything made is removed by name (processes left in the namespaces, namespaces,
veths, bridge, temporary directory, Open MPI files of the node hostnames in /dev/shm and /tmp)
when the program ends, fails, or this script gets SIGINT, SIGTERM or SIGHUP. SIGKILL leaves
them: --cleanup-stale removes them later.

Exit status: the program's (mpirun's) status; 2: bad usage; 77: this machine cannot emulate
nodes (not root, no CAP_NET_ADMIN, no ip/tc/unshare, no veth/bridge/tbf/netem in the kernel),
with a one-line reason on stderr; 1: another setup failure; 128+N after signal N.
EOF
}

die_usage() { echo "$prog: $*" >&2; echo "$prog: see --help" >&2; exit 2; }
cannot() { echo "$prog: cannot emulate nodes here: $*" >&2; exit 77; }

# ---- Arguments ----
nodes="" ranks="" rate=1gbit delay=0ms mode=run
mpirun_args=()
need_value() { [ $# -ge 2 ] || die_usage "$1 needs a value"; }
while [ $# -gt 0 ]; do
  case $1 in
    --nodes) need_value "$@"; nodes=$2; shift 2 ;;
    --nodes=*) nodes=${1#*=}; shift ;;
    --ranks-per-node) need_value "$@"; ranks=$2; shift 2 ;;
    --ranks-per-node=*) ranks=${1#*=}; shift ;;
    --rate) need_value "$@"; rate=$2; shift 2 ;;
    --rate=*) rate=${1#*=}; shift ;;
    --delay) need_value "$@"; delay=$2; shift 2 ;;
    --delay=*) delay=${1#*=}; shift ;;
    --mpirun-arg) need_value "$@"; mpirun_args+=("$2"); shift 2 ;;
    --mpirun-arg=*) mpirun_args+=("${1#*=}"); shift ;;
    --check) mode=check; shift ;;
    --cleanup-stale) mode=cleanup-stale; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) die_usage "unknown option '$1' (the program comes after --)" ;;
  esac
done
program=("$@")

if [ "$mode" = run ]; then
  if ! [[ $nodes =~ ^[0-9]+$ ]] || ((10#$nodes < 1 || 10#$nodes > 250)); then
    die_usage "--nodes must be an integer 1..250, got '$nodes'"
  fi
  if ! [[ $ranks =~ ^[0-9]+$ ]] || ((10#$ranks < 1)); then
    die_usage "--ranks-per-node must be an integer >= 1, got '$ranks'"
  fi
  nodes=$((10#$nodes)) ranks=$((10#$ranks))
  ((${#program[@]})) || die_usage "no program to run (give it after --)"
elif [ "$mode" = check ]; then
  nodes=1 ranks=1
  ((${#program[@]} == 0)) || die_usage "--check runs no program"
else
  ((${#program[@]} == 0)) || die_usage "--cleanup-stale runs no program"
fi

rate_bps=0  # 0: no shaping
if [ "$rate" != none ]; then
  [[ $rate =~ ^([0-9]+)(bit|kbit|mbit|gbit)$ ]] ||
    die_usage "--rate must be <N>bit, <N>kbit, <N>mbit, <N>gbit or none, got '$rate'"
  case ${BASH_REMATCH[2]} in
    bit) rate_bps=$((10#${BASH_REMATCH[1]})) ;;
    kbit) rate_bps=$((10#${BASH_REMATCH[1]} * 1000)) ;;
    mbit) rate_bps=$((10#${BASH_REMATCH[1]} * 1000000)) ;;
    gbit) rate_bps=$((10#${BASH_REMATCH[1]} * 1000000000)) ;;
  esac
  ((rate_bps >= 8000)) || die_usage "--rate must be at least 8kbit, got '$rate'"
fi
[[ $delay =~ ^([0-9]+)(us|ms|s)$ ]] || die_usage "--delay must be <N>us, <N>ms or <N>s, got '$delay'"
delay_on=$((10#${BASH_REMATCH[1]} > 0))

# ---- Names: everything this run makes carries the tag tsn<PID> ----
tag=tsn$$
bridge=$tag-br
ns_name() { echo "$tag-n$1"; }
veth_name() { echo "$tag-h$1"; }
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
agent=$here/netns_rsh_agent.sh

# Removes what run TAG made, by name: processes in its namespaces, namespaces, links, files.
# Safe to call for pieces that were never made.
remove_run() {
  local t=$1 ns n
  local -a pids
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$t-n[0-9]+$"); do
    # Processes in a namespace keep it (and its veth) alive after `ip netns del`; they are this
    # run's orteds and ranks, which daemonize away from mpirun, so end them by pid.
    mapfile -t pids < <(ip netns pids "$ns" 2>/dev/null)
    if ((${#pids[@]})); then
      kill -TERM "${pids[@]}" 2>/dev/null
      for ((n = 0; n < 50; n++)); do  # up to 5 s to exit cleanly
        [ -z "$(ip netns pids "$ns" 2>/dev/null)" ] && break
        sleep 0.1
      done
      mapfile -t pids < <(ip netns pids "$ns" 2>/dev/null)
      ((${#pids[@]} == 0)) || kill -KILL "${pids[@]}" 2>/dev/null
    fi
    ip netns del "$ns" 2>/dev/null
  done
  # Deleting a namespace deletes its end of the veth pair and so the pair; a veth made before
  # its namespace existed, and the bridge, go here.
  for n in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' |
             grep -E "^$t-(br|h[0-9]+)$"); do
    ip link del "$n" 2>/dev/null
  done
  rm -rf /tmp/"$t".?????? /tmp/ompi."$t"-n[0-9]* /dev/shm/vader_segment."$t"-n[0-9]* 2>/dev/null
  return 0
}

if [ "$mode" = cleanup-stale ]; then
  [ "$(id -u)" -eq 0 ] || cannot "--cleanup-stale needs root"
  # Tags from namespaces, links, the work directory and Open MPI's files of the node hostnames.
  tags=$( { ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^tsn[0-9]+-n[0-9]+$'
            ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' |
              grep -E '^tsn[0-9]+-(br|h[0-9]+)$'
            find /tmp /dev/shm -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | grep -E \
              '^(tsn[0-9]+\.[A-Za-z0-9]{6}|ompi\.tsn[0-9]+-n[0-9]+\..*|vader_segment\.tsn[0-9]+-n[0-9]+\..*)$'
          } | grep -oE 'tsn[0-9]+' | sort -u)
  for t in $tags; do
    pid=${t#tsn}
    if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q emulate_nodes; then
      echo "$prog: $t belongs to running process $pid: kept"
      continue
    fi
    remove_run "$t"
    echo "$prog: removed leftovers of $t"
  done
  exit 0
fi

# ---- Can this machine do it? ----
for tool in ip tc unshare hostname mpirun; do
  command -v "$tool" >/dev/null || cannot "'$tool' not found (Debian: iproute2, util-linux, hostname, openmpi-bin)"
done
[ "$(id -u)" -eq 0 ] || cannot "network namespaces need root (CAP_NET_ADMIN and CAP_SYS_ADMIN)"
[ -x "$agent" ] || { echo "$prog: the rsh agent $agent is missing or not executable" >&2; exit 1; }
[[ $agent =~ [[:space:]] ]] && { echo "$prog: Open MPI splits plm_rsh_agent at spaces; move the checkout out of '$agent'" >&2; exit 1; }
unshare --uts true 2>/dev/null || cannot "unshare --uts fails (no CAP_SYS_ADMIN?)"

# ---- Cleanup on every way out ----
workdir="" mpirun_pid="" cleaned=0
cleanup() {
  ((cleaned)) && return
  cleaned=1
  if [ -n "$mpirun_pid" ] && kill -0 "$mpirun_pid" 2>/dev/null; then
    kill -TERM "$mpirun_pid" 2>/dev/null  # mpirun tells its orteds to end the ranks
    local n
    for ((n = 0; n < 100; n++)); do  # up to 10 s
      kill -0 "$mpirun_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$mpirun_pid" 2>/dev/null
    wait "$mpirun_pid" 2>/dev/null
  fi
  remove_run "$tag"
}
# shellcheck disable=SC2317  # called by the traps below
on_signal() {  # NAME NUMBER
  trap '' INT TERM HUP
  echo "$prog: got SIG$1: stopping the program and removing the nodes" >&2
  cleanup
  trap - EXIT
  exit $((128 + $2))
}
trap cleanup EXIT
trap 'on_signal INT 2' INT
trap 'on_signal TERM 15' TERM
trap 'on_signal HUP 1' HUP

# Runs a setup command; on failure prints why and exits (77 for what the kernel lacks).
step() {  # DESCRIPTION COMMAND...
  local what=$1 out
  shift
  if ! out=$("$@" 2>&1); then
    out=$(echo "$out" | tr '\n' ' ')
    case $out in
      *"Operation not permitted"*|*"Permission denied"*|*"not supported"*|*"Unknown device type"*|*"qdisc kind is unknown"*)
        cleanup; cannot "$what: $out" ;;
    esac
    echo "$prog: $what failed: $* -> $out" >&2
    exit 1
  fi
}

# ---- The bridge, on a /24 that nothing here uses ----
# Two concurrent runs pick different subnets: the choice and the bridge's address happen under a
# lock on /run/netns (a directory every run uses anyway, so no lock file is left behind).
mkdir -p /run/netns && exec {lock_fd}</run/netns || exit 1
flock "$lock_fd"
subnet=""
for ((i = 0; i < 256; i++)); do
  s=$((($$ + i) % 256))
  if [ -z "$(ip -4 -o addr show to "10.213.$s.0/24" 2>/dev/null)" ] &&
     ! ip -4 route show to match "10.213.$s.1" 2>/dev/null | grep -qv '^default'; then
    subnet=10.213.$s
    break
  fi
done
[ -n "$subnet" ] || { echo "$prog: no free /24 in 10.213.0.0/16 for the bridge" >&2; exit 1; }
step "creating the bridge $bridge" ip link add "$bridge" type bridge
step "addressing $bridge" ip addr add "$subnet.1/24" dev "$bridge"
flock -u "$lock_fd"
exec {lock_fd}>&-
step "bringing up $bridge" ip link set "$bridge" up

# Shapes egress of DEV (in namespace NS, or here when NS is empty): netem delay (if any) as the
# root with tbf below it, or tbf alone.
burst=$((rate_bps / 8 / 1000 > 131072 ? rate_bps / 8 / 1000 : 131072))  # 1 ms of traffic, >= 2 GSO packets
shape() {  # NS DEV WITH_DELAY
  local -a tcn=(tc)
  [ -n "$1" ] && tcn=(tc -n "$1")
  local parent=root
  if (($3)); then
    step "adding netem delay $delay on $2 in ${1:-the root namespace} (kernel needs sch_netem)" \
      "${tcn[@]}" qdisc add dev "$2" root handle 1: netem delay "$delay"
    parent="parent 1:1"
  fi
  ((rate_bps)) || return 0
  # shellcheck disable=SC2086  # parent is one or two words
  step "adding tbf rate $rate on $2 in ${1:-the root namespace}" "${tcn[@]}" qdisc add dev "$2" $parent handle 10: tbf \
    rate "$rate" burst "$burst" latency 20ms
}
qdisc_rate() {  # NS DEV: the rate tc reports, or "unshaped"
  local -a tcn=(tc)
  [ -n "$1" ] && tcn=(tc -n "$1")
  "${tcn[@]}" qdisc show dev "$2" | grep -oE ' rate [^ ]+' | head -1 | sed 's/ rate //' | grep . ||
    echo unshaped
}

# ---- The nodes ----
workdir=$(mktemp -d "/tmp/$tag.XXXXXX") || exit 1
hostfile=$workdir/hostfile
for ((i = 0; i < nodes; i++)); do
  ns=$(ns_name $i) veth=$(veth_name $i)
  step "creating network namespace $ns" ip netns add "$ns"
  step "creating veth $veth" ip link add "$veth" type veth peer name eth0 netns "$ns"
  step "attaching $veth to $bridge" ip link set "$veth" master "$bridge" up
  step "addressing $ns" ip -n "$ns" addr add "$subnet.$((i + 2))/24" dev eth0
  step "bringing up $ns" ip -n "$ns" link set eth0 up
  step "bringing up lo in $ns" ip -n "$ns" link set lo up
  shape "$ns" eth0 "$delay_on"  # what the node sends (with the one-way delay)
  shape "" "$veth" 0            # what the node receives
  echo "$ns slots=$ranks" >>"$hostfile"
  node_ranks="rank $((i * ranks))"
  ((ranks == 1)) || node_ranks="ranks $((i * ranks))-$((i * ranks + ranks - 1))"
  echo "$prog: node $i: namespace $ns, address $subnet.$((i + 2))/24, $node_ranks," \
       "send rate $(qdisc_rate "$ns" eth0)," \
       "receive rate $(qdisc_rate "" "$veth"), delay $delay" >&2
done

if [ "$mode" = check ]; then
  cleanup
  echo "$prog: this machine can emulate nodes"
  exit 0
fi

# ---- Run ----
if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1}
  export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}
fi
# Background + wait, so that a signal runs its trap at once, not after mpirun ends; 0<&0 keeps
# stdin (a background job would get /dev/null).
mpirun -np $((nodes * ranks)) --hostfile "$hostfile" --map-by slot --bind-to none \
  --mca plm_rsh_agent "$agent" --mca plm_rsh_no_tree_spawn 1 \
  --mca btl tcp,self,vader \
  --mca btl_tcp_if_include "$subnet.0/24" --mca oob_tcp_if_include "$subnet.0/24" \
  "${mpirun_args[@]}" "${program[@]}" 0<&0 &
mpirun_pid=$!
wait "$mpirun_pid"
status=$?
mpirun_pid=""
cleanup
exit "$status"
