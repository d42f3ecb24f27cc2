#!/usr/bin/env bash
# ctest fixture of the Slurm tests: `start CLUSTER_DIR DATA_DIR TESSERA` starts the private
# cluster (cluster/local-slurm/start.sh) and prepares the tiny dataset once; `stop CLUSTER_DIR`
# stops every daemon it started, by PID.
set -euo pipefail
here=$(cd "$(dirname "$0")/../../cluster/local-slurm" && pwd)
case $1 in
  start)
    t0=$(date +%s.%N)
    "$here/start.sh" "$2"
    echo "cluster start: $(echo "$(date +%s.%N) - $t0" | bc) s"
    if [ ! -f "$3/manifest.yaml" ]; then
      "$4" prepare synthetic --vocab 64 --order 1 --tokens 400k --seed 3 --quiet --overwrite --out "$3"
    fi ;;
  stop)
    t0=$(date +%s.%N)
    "$here/stop.sh" "$2"
    echo "cluster stop: $(echo "$(date +%s.%N) - $t0" | bc) s" ;;
  *) echo "usage: slurm_cluster.sh start DIR DATA TESSERA | stop DIR" >&2; exit 2 ;;
esac
