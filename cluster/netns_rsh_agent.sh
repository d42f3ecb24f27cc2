#!/usr/bin/env bash
# Open MPI's rsh agent for the emulated nodes of cluster/emulate_nodes.sh (plm_rsh_agent): where
# ssh would log in to HOST, this runs COMMAND inside the node's network namespace, named HOST,
# under its own UTS namespace whose hostname is HOST. The own hostname is needed because Open MPI
# names its per-node session directory and shared-memory segments after the hostname: nodes that
# all report this machine's name collide there (vader crashes).
#   netns_rsh_agent.sh [-x] HOST COMMAND...
# COMMAND is joined with spaces and run by /bin/sh -c, as a remote shell would run it. Being a
# local process, it inherits mpirun's environment (ssh would not). Accepts only namespaces of
# emulate_nodes.sh (tsn<pid>-n<i>) that exist.
set -euo pipefail

[ "${1-}" = "-x" ] && shift  # ssh's "no X11 forwarding": meaningless here
if [ $# -lt 2 ]; then
  echo "netns_rsh_agent: usage: netns_rsh_agent.sh [-x] HOST COMMAND..." >&2
  exit 2
fi
host=$1
shift
if [[ ! $host =~ ^tsn[0-9]+-n[0-9]+$ ]] || [ ! -e "/run/netns/$host" ]; then
  echo "netns_rsh_agent: '$host' is not a node of a running emulate_nodes.sh" \
       "(no network namespace /run/netns/$host)" >&2
  exit 255  # what ssh returns when it cannot reach the host
fi
# shellcheck disable=SC2016  # $1 and $2 belong to the inner shell
exec ip netns exec "$host" unshare --uts -- \
  /bin/sh -c 'hostname "$1" && exec /bin/sh -c "$2"' netns_rsh_agent "$host" "$*"
