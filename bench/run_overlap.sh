#!/usr/bin/env bash
# Overlap benchmark over emulated nodes (bench/overlap_bench.py; needs root for the network
# namespaces of cluster/emulate_nodes.sh). Usage: bench/run_overlap.sh [overlap_bench.py flags,
# e.g. --nodes 2 --rate 500mbit --schedules 1f1b,dualpipev]. Uses $TESSERA if set, else build/tessera.
set -euo pipefail
cd "$(dirname "$0")/.."
tessera=${TESSERA:-build/tessera}
if [ ! -x "$tessera" ]; then
  echo "run_overlap.sh: no tessera binary at '$tessera' (build it, or set TESSERA=path)" >&2
  exit 1
fi
if ! cluster/emulate_nodes.sh --check; then
  echo "run_overlap.sh: this machine cannot emulate nodes (see above)" >&2
  exit 77
fi
exec /usr/bin/python3 bench/overlap_bench.py --tessera "$tessera" "$@"
