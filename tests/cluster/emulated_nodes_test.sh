#!/usr/bin/env bash
# cluster/emulate_nodes.sh: K network-namespace "nodes" with shaped links under one mpirun.
#   emulated_nodes_test.sh EMULATE_NODES NETNS_PROBE WORKDIR
# Checks, with 2 nodes x 2 ranks: every rank's node (hostname, address), local rank and size from
# Open MPI's environment and from MPI_Comm_split_type(SHARED); the caller's environment reaching
# the ranks; the tbf qdiscs of the requested rate on both ends of each node's link while the
# program runs (read inside the node by the program); the program's exit status passed through;
# nothing left behind after success, a failing program, SIGTERM, and --cleanup-stale after
# SIGKILL. Bad options fail with status 2 naming the option. Exits 77 (skipped) where
# `emulate_nodes.sh --check` says this machine cannot emulate nodes (not root, no netns...).
# Nothing here depends on timing: waits are for files or processes, never for a clock.
set -uo pipefail
emulate=$1 probe=$2 work=$3
rm -rf "$work" && mkdir -p "$work" || exit 1
cd "$work" || exit 1
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# ---- Bad usage: status 2, the message names the option (needs no root) ----
usage_error() {  # option-in-message, arguments...
  local want=$1 out status
  shift
  out=$("$emulate" "$@" 2>&1)
  status=$?
  [ $status -eq 2 ] || fail "emulate_nodes.sh $* exited $status, expected 2: $out"
  grep -qF -- "$want" <<<"$out" || fail "emulate_nodes.sh $*: message lacks '$want': $out"
}
usage_error --nodes --nodes 0 --ranks-per-node 1 -- true
usage_error --nodes --ranks-per-node 1 -- true
usage_error --ranks-per-node --nodes 2 --ranks-per-node x -- true
usage_error --rate --nodes 2 --ranks-per-node 1 --rate fast -- true
usage_error --delay --nodes 2 --ranks-per-node 1 --delay 5 -- true
usage_error "no program" --nodes 2 --ranks-per-node 1
usage_error "--bogus" --nodes 2 --ranks-per-node 1 --bogus -- true
help=$("$emulate" --help) || fail "--help exited $?"
for opt in --nodes --ranks-per-node --rate --delay --mpirun-arg --check --cleanup-stale --help; do
  grep -qF -- "$opt" <<<"$help" || fail "--help does not describe $opt"
done

# ---- Can this machine emulate nodes at all? ----
check_out=$("$emulate" --check 2>&1)
check_status=$?
if [ $check_status -eq 77 ]; then
  echo "SKIPPED: $check_out"
  ((fails == 0)) || exit 1
  exit 77
fi
[ $check_status -eq 0 ] || { echo "FAIL: --check exited $check_status: $check_out"; exit 1; }

# ---- Without privileges: status 77 and one line saying why ----
nobody=(setpriv --reuid 65534 --regid 65534 --clear-groups --inh-caps=-all)
# (Only where user nobody can read the checkout: under /root it cannot.)
if command -v setpriv >/dev/null && "${nobody[@]}" test -r "$emulate"; then
  out=$("${nobody[@]}" "$emulate" --nodes 2 --ranks-per-node 1 -- true 2>&1 >/dev/null)
  status=$?
  [ $status -eq 77 ] || fail "as nobody: exited $status, expected 77: $out"
  if [ "$(wc -l <<<"$out")" -ne 1 ] || ! grep -q "cannot emulate nodes here: .*root" <<<"$out"; then
    fail "as nobody: expected one line saying root is needed, got: $out"
  fi
fi

# Everything a run tagged TAG could leave behind; prints what it finds.
leftovers() {  # TAG
  ip netns list | awk '{print $1}' | grep -E "^$1-" | sed 's/^/namespace /'
  ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | grep -E "^$1-" | sed 's/^/link /'
  find /tmp /dev/shm -maxdepth 1 \( -name "$1.*" -o -name "ompi.$1-*" -o -name "vader_segment.$1-*" \) |
    sed 's/^/file /'
}
check_clean() {  # TAG WHEN
  local left
  left=$(leftovers "$1")
  [ -z "$left" ] || fail "after $2, run $1 left: $(echo "$left" | tr '\n' ';')"
}
tag_of() { grep -oE 'namespace tsn[0-9]+-n0' "$1" | head -1 | grep -oE 'tsn[0-9]+'; }

# A program for the nodes: records its pid, and the qdiscs of its node's link on local rank 0.
cat >node_program.sh <<EOF
#!/usr/bin/env bash
# Runs on an emulated node as rank \$OMPI_COMM_WORLD_RANK; the hostname is tsn<PID>-n<i>.
host=\$(hostname) mode=\$1
shift
echo \$\$ >"$work/pid.\$OMPI_COMM_WORLD_RANK"
if [ "\$OMPI_COMM_WORLD_LOCAL_RANK" = 0 ]; then
  tag=\${host%-n*}
  { echo "node side (eth0):"; tc qdisc show dev eth0
    echo "bridge side (\$tag-h\${host##*-n}):"
    nsenter --net=/proc/\${tag#tsn}/ns/net tc qdisc show dev "\$tag-h\${host##*-n}"
  } >"$work/qdisc.\$host" 2>&1
fi
case \$mode in
  probe) exec "\$@" ;;
  fail) [ "\$OMPI_COMM_WORLD_RANK" = 1 ] && exit 3; exit 0 ;;
  wait) touch "$work/ready.\$OMPI_COMM_WORLD_RANK"; exec sleep 600 ;;
esac
EOF
chmod +x node_program.sh

# ---- 2 nodes x 2 ranks at 500mbit: who is where, environment, qdiscs, cleanup ----
export TESSERA_NETNS_TEST_TOKEN="token-$$-a b"
"$emulate" --nodes 2 --ranks-per-node 2 --rate 500mbit -- "$work/node_program.sh" probe \
  "$probe" --env TESSERA_NETNS_TEST_TOKEN --env OMPI_ALLOW_RUN_AS_ROOT >probe.out 2>probe.err
status=$?
[ $status -eq 0 ] || fail "2x2 probe run exited $status: $(cat probe.err)"
tag=$(tag_of probe.err)
if [ -z "$tag" ]; then
  fail "no 'namespace tsn<PID>-n0' line on stderr: $(cat probe.err)"
else
  for i in 0 1; do
    grep -qE "node $i: namespace $tag-n$i, address 10\.213\.[0-9]+\.$((i + 2))/24, ranks $((2 * i))-$((2 * i + 1)), send rate 500Mbit, receive rate 500Mbit" probe.err ||
      fail "no line for node $i with rate 500Mbit both ways: $(cat probe.err)"
    q=qdisc.$tag-n$i
    if [ ! -f "$q" ]; then
      fail "node $i recorded no qdiscs"
    else
      [ "$(grep -cE '^qdisc tbf .* rate 500Mbit' "$q")" -eq 2 ] ||
        fail "node $i: no tbf rate 500Mbit on both ends of its link while running: $(cat "$q")"
    fi
  done
  [ "$(wc -l <probe.out)" -eq 4 ] || fail "expected 4 rank lines: $(cat probe.out)"
  for r in 0 1 2 3; do
    line=$(grep -E "^rank=$r size=4 " probe.out)
    node=$((r / 2)) lr=$((r % 2))
    want="rank=$r size=4 host=$tag-n$node ip=10\.213\.[0-9]+\.$((node + 2)) local_rank=$lr local_size=2 env_local_rank=$lr env_local_size=2 shared_ranks=$((2 * node)),$((2 * node + 1)) env:TESSERA_NETNS_TEST_TOKEN=$TESSERA_NETNS_TEST_TOKEN env:OMPI_ALLOW_RUN_AS_ROOT=1"
    grep -qxE "$want" <<<"$line" || fail "rank $r: got '$line', expected '$want'"
  done
  check_clean "$tag" "a successful run"
fi

# ---- A failing program (rank 1 exits 3), unshaped: status 3, nothing left ----
"$emulate" --nodes 2 --ranks-per-node 1 --rate none -- "$work/node_program.sh" fail \
  >fail.out 2>fail.err
status=$?
[ $status -eq 3 ] || fail "failing program: emulate_nodes.sh exited $status, expected 3"
tag=$(tag_of fail.err)
grep -q "node 0: .*send rate unshaped, receive rate unshaped" fail.err ||
  fail "--rate none: node 0 is not reported unshaped: $(cat fail.err)"
[ -n "$tag" ] && check_clean "$tag" "a failing program"

# Starts a 2x2 run of `node_program.sh wait` in the background and waits (no clock) until every
# rank runs; sets run_pid and run_tag.
start_waiting_run() {  # NAME
  rm -f ready.* pid.*
  "$emulate" --nodes 2 --ranks-per-node 2 -- "$work/node_program.sh" wait >"$1.out" 2>"$1.err" &
  run_pid=$!
  until [ -f ready.0 ] && [ -f ready.1 ] && [ -f ready.2 ] && [ -f ready.3 ]; do
    kill -0 "$run_pid" 2>/dev/null || { fail "$1: emulate_nodes.sh ended early: $(cat "$1.err")"; return 1; }
    sleep 0.2
  done
  run_tag=$(tag_of "$1.err")
}
ranks_gone() {  # WHEN: no rank process (sleep 600) of the last run may be alive
  local r pid
  for r in 0 1 2 3; do
    pid=$(cat "pid.$r" 2>/dev/null) || continue
    if [ -r "/proc/$pid/stat" ] && ! awk '{exit $3 == "Z" ? 0 : 1}' "/proc/$pid/stat" &&
       grep -q "sleep" "/proc/$pid/cmdline" 2>/dev/null; then
      fail "$1: rank $r (pid $pid) still runs"
    fi
  done
}

# ---- SIGTERM to the script: it stops the program, removes everything, exits 143 ----
if start_waiting_run term; then
  kill -TERM "$run_pid"
  wait "$run_pid"
  status=$?
  [ $status -eq 143 ] || fail "SIGTERM: emulate_nodes.sh exited $status, expected 143"
  grep -q "got SIGTERM" term.err || fail "SIGTERM: not reported: $(cat term.err)"
  check_clean "$run_tag" "SIGTERM"
  ranks_gone "SIGTERM"
fi

# ---- SIGKILL leaves everything; --cleanup-stale removes it ----
if start_waiting_run kill; then
  mpirun_pid=$(pgrep -P "$run_pid" -x mpirun)
  kill -KILL "$run_pid"
  wait "$run_pid" 2>/dev/null
  [ -n "$(leftovers "$run_tag")" ] || fail "SIGKILL: nothing was left to clean (test is moot)"
  out=$("$emulate" --cleanup-stale 2>&1) || fail "--cleanup-stale exited $?: $out"
  grep -qF "removed leftovers of $run_tag" <<<"$out" || fail "--cleanup-stale did not name $run_tag: $out"
  check_clean "$run_tag" "--cleanup-stale"
  ranks_gone "--cleanup-stale"
  # The killed script's mpirun loses its daemons and ends by itself; this test started it, so
  # make sure, by pid.
  [ -n "$mpirun_pid" ] && kill -KILL "$mpirun_pid" 2>/dev/null
fi

# ---- --delay: netem where the kernel has it, else a clear refusal (77); nothing left ----
out=$("$emulate" --check --delay 1ms 2>&1)
status=$?
case $status in
  0) grep -q "delay 1ms" <<<"$out" || fail "--check --delay 1ms: no delay reported: $out" ;;
  77) grep -q "netem" <<<"$out" || fail "--check --delay 1ms refused without naming netem: $out" ;;
  *) fail "--check --delay 1ms exited $status: $out" ;;
esac
tag=$(grep -oE 'tsn[0-9]+' <<<"$out" | head -1)
[ -n "$tag" ] && check_clean "$tag" "--check --delay"

if ((fails)); then
  echo "$fails check(s) failed"
  exit 1
fi
echo "emulated nodes: all checks passed"
