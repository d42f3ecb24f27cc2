#!/usr/bin/env bash
# Sets everything up (packages, build) and runs the whole test suite with ctest.
# Extra arguments go to ctest (e.g. -L reference, -R kernels).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cd build
ctest --output-on-failure --timeout 600 -j2 "$@"
