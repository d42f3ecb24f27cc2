#!/usr/bin/env bash
# Builds tessera with CUDA into build-gpu/ and runs every GPU check, in one go, on a GPU machine
# that may lack the Debian build dependencies and has no network: when .gpu-deps/ exists
# (scripts/gpu-deps.sh fills it, elsewhere), the packages the system lacks are unpacked into a
# private prefix (/tmp/tessera-deps; nothing is written under /) and the build is pointed there.
#
#   a. kernels_cuda_tests          every CUDA kernel test (a SKIPPED test fails the check)
#   b. backend_tests               the /cuda instantiations must PASS (skipped = FAIL)
#   c. trainer_tests *ModelOnBackend*  the whole model (MHA and MLA) on CUDA vs CPU (skipped = FAIL)
#   d. ctest -L nccl               NcclComm under mpirun: np1 must pass; np2 may skip (1 GPU)
#   e. train_throughput            recipes/bench-moe.yaml on cuda (and on cpu, for comparison)
#   f. ctest -E 'slurm|cluster'    the whole CPU suite, in the time left (not with --quick)
#
# Never stops at the first failure; prints a summary table last. Exit 0 only if a-e all PASS.
# Everything is logged to ${OUT:-build-gpu/gpu-check-out}/gpu-check.log (build, suite logs beside it).
# Usage: scripts/gpu-check.sh [--quick]
# Env: GPU_CHECK_DEADLINE_S (default 450: the whole script stays under 8 minutes),
#      TESSERA_DEPS_PREFIX (default /tmp/tessera-deps), GPU_CHECK_BUILD_DIR (default build-gpu),
#      GPU_CHECK_CONFIGURE_ONLY=1 (stop after configuring: a dry run of the dependency setup).
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
t_start=$(date +%s)
quick=0
for a in "$@"; do
  case $a in
    --quick) quick=1 ;;
    *) echo "usage: scripts/gpu-check.sh [--quick]" >&2; exit 2 ;;
  esac
done
deadline=${GPU_CHECK_DEADLINE_S:-450}
build=${GPU_CHECK_BUILD_DIR:-build-gpu}
prefix=${TESSERA_DEPS_PREFIX:-/tmp/tessera-deps}
outdir=${OUT:-$build/gpu-check-out}
mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)
log=$outdir/gpu-check.log
: >"$log"
exec > >(tee -a "$log") 2>&1
tee_pid=$!
work=$(mktemp -d /tmp/gpu-check.XXXXXX)
nproc=$(nproc)

elapsed() { echo $(($(date +%s) - t_start)); }
left() { echo $((deadline - $(elapsed))); }
# Seconds a step may take: its own cap, or what is left before the deadline minus a reserve.
cap() {
  local want=$1 reserve=${2:-20} l
  l=$(($(left) - reserve))
  ((l < want)) && want=$l
  ((want < 5)) && want=5
  echo "$want"
}
say() { printf '\n==== [%4ss] %s\n' "$(elapsed)" "$*"; }

# ---- results ----
names=() results=() secs=() notes=()
record() { names+=("$1"); results+=("$2"); secs+=("$3"); notes+=("$4"); }

# ---- machine ----
say "machine"
echo "repo: $repo"
if git -C "$repo" rev-parse HEAD >/dev/null 2>&1; then
  echo "git: $(git -C "$repo" describe --always --dirty 2>/dev/null) ($(git -C "$repo" rev-parse HEAD))"
  git -C "$repo" log -1 --format='     %s' | cut -c1-160
else
  echo "git: no repository here${GPU_CHECK_REV:+ (caller says: $GPU_CHECK_REV)}"
fi
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') x $nproc"
echo "os: $(. /etc/os-release 2>/dev/null; echo "${PRETTY_NAME:-?}"), $(uname -srm)"
[ -x /usr/local/cuda/bin/nvcc ] && export PATH=/usr/local/cuda/bin:$PATH
if command -v nvcc >/dev/null; then nvcc --version | tail -n 2; else echo "nvcc: NOT FOUND"; fi
cxx=$(command -v g++ || command -v c++ || true)
if [ -n "$cxx" ]; then echo "c++: $cxx: $("$cxx" --version | head -n 1)"; else echo "c++: NOT FOUND (g++ is needed)"; fi
echo "cmake: $(cmake --version 2>/dev/null | head -n 1)  ninja: $(ninja --version 2>/dev/null)"
# The Python for the reference tests: the first python3 that has PyTorch.
python=""
for py in "$(command -v python3 || true)" /usr/bin/python3; do
  [ -x "$py" ] && timeout 60 "$py" -c 'import torch' >/dev/null 2>&1 && { python=$py; break; }
done
[ -n "$python" ] || python=$(command -v python3 || true)
echo "python3: ${python:-NOT FOUND} ($([ -n "$python" ] && "$python" -c 'import torch; print("torch", torch.__version__)' 2>/dev/null || echo 'no torch'))"
have_gpu=0
if command -v nvidia-smi >/dev/null; then
  nvidia-smi >"$outdir/nvidia-smi.txt" 2>&1
  if nvidia-smi -L 2>&1 | tee "$work/gpus" | grep -q '^GPU '; then have_gpu=1; fi
  cat "$work/gpus"
else
  echo "nvidia-smi: NOT FOUND"
fi
n_gpus=$(grep -c '^GPU ' "$work/gpus" 2>/dev/null || echo 0)
((have_gpu)) || echo "*** no GPU on this machine: the GPU checks below will FAIL (CUDA code is still built) ***"

# ---- dependencies: the system's where present, else .gpu-deps unpacked into $prefix ----
say "dependencies"
t0=$(date +%s)
multiarch=$(gcc -print-multiarch 2>/dev/null || true)
[ -n "$multiarch" ] || multiarch="$(uname -m)-linux-gnu"
L=$prefix/usr/lib/$multiarch
cmake_args=()
deps_note="system"

exists_glob() { # exists_glob PATTERN...: some match exists (dangling links do not count)
  local f
  for f in "$@"; do [ -e "$f" ] && return 0; done
  return 1
}
sys_lib() { # sys_lib NAME: a library NAME (libfoo.so / libfoo.a) on the system
  exists_glob /usr/lib/$multiarch/$1 /usr/lib/$multiarch/*/$1 /usr/lib/$1 /usr/lib64/$1 \
    /usr/local/lib/$1 /lib/$multiarch/$1
}
have_sys() { # have_sys COMPONENT: the system has what the build needs of it
  case $1 in
    mpi) command -v mpicxx >/dev/null && command -v mpirun >/dev/null ;;
    hdf5) command -v h5pcc >/dev/null ;;
    yaml) exists_glob /usr/lib/*/cmake/yaml-cpp/*onfig.cmake /usr/lib/cmake/yaml-cpp/*onfig.cmake \
      /usr/share/cmake/yaml-cpp/*onfig.cmake ;;
    boost) [ -e /usr/include/boost/program_options.hpp ] && sys_lib 'libboost_program_options.so' ;;
    blas) exists_glob /usr/include/cblas.h /usr/include/$multiarch/cblas.h /usr/include/openblas/cblas.h &&
      sys_lib 'libopenblas.so' ;;
    dnnl) [ -e /usr/include/oneapi/dnnl/dnnl.h ] && sys_lib 'libdnnl.so' ;;
    gtest) [ -e /usr/include/gtest/gtest.h ] && { sys_lib 'libgtest.a' || sys_lib 'libgtest.so'; } ;;
    *) return 1 ;;
  esac
}
component_of() { # the component a package belongs to; "runtime" for support libraries
  case $1 in
    openmpi-*|libopenmpi*) echo mpi ;;
    libhdf5-*) echo hdf5 ;;
    libyaml-cpp*) echo yaml ;;
    libboost*) echo boost ;;
    libopenblas*) echo blas ;;
    libdnnl*) echo dnnl ;;
    libgtest*|googletest) echo gtest ;;
    *) echo runtime ;;
  esac
}
deb_list() { # file names a .deb holds
  if command -v dpkg-deb >/dev/null; then dpkg-deb -c "$1" | awk '{print $6}'
  else local m; m=$(ar t "$1" | grep '^data\.tar'); ar p "$1" "$m" | tar -t -a -f - 2>/dev/null ||
       ar p "$1" "$m" | tar -t -J 2>/dev/null; fi
}
deb_extract() {
  if command -v dpkg-deb >/dev/null; then dpkg-deb -x "$1" "$prefix"
  else local m; m=$(ar t "$1" | grep '^data\.tar')
    case $m in *.xz) ar p "$1" "$m" | tar -xJ -C "$prefix" ;; *.zst) ar p "$1" "$m" | tar --zstd -x -C "$prefix" ;;
      *) ar p "$1" "$m" | tar -xz -C "$prefix" ;; esac
  fi
}

use_ours=()
if [ -d .gpu-deps ] && compgen -G ".gpu-deps/*.deb" >/dev/null; then
  for c in mpi hdf5 yaml boost blas dnnl gtest; do
    if have_sys $c; then echo "  $c: the system's"; else echo "  $c: from .gpu-deps"; use_ours+=("$c"); fi
  done
  rm -rf "$prefix" && mkdir -p "$prefix"
  sys_sonames=$(ldconfig -p 2>/dev/null | awk 'NR>1{print $1}' | sort -u)
  unpacked=() skipped=()
  for deb in .gpu-deps/*.deb; do
    pkg=$(basename "$deb"); pkg=${pkg%%_*}
    comp=$(component_of "$pkg")
    if [ "$comp" = runtime ]; then
      # A support library: skip it when the system already has every shared library it ships
      # (then ours would only shadow the system's through LD_LIBRARY_PATH).
      libs=$(deb_list "$deb" | sed -n 's|.*/\(lib[^/]*\.so\.[0-9][0-9]*\)$|\1|p' | sort -u)
      if [ -n "$libs" ] && [ -z "$(comm -23 <(echo "$libs") <(echo "$sys_sonames"))" ]; then
        skipped+=("$pkg"); continue
      fi
    else
      printf '%s\n' "${use_ours[@]}" | grep -qx "$comp" || { skipped+=("$pkg"); continue; }
    fi
    deb_extract "$deb" && unpacked+=("$pkg")
  done
  echo "  unpacked into $prefix (${#unpacked[@]}): ${unpacked[*]}"
  echo "  the system has (${#skipped[@]}): ${skipped[*]}"
  deps_note="${#unpacked[@]} packages from .gpu-deps"
  # Debian's alternatives (update-alternatives links made by postinst scripts) do not exist in
  # an unpacked prefix: make the few the build uses.
  for w in mpicc mpicxx mpic++ mpirun mpiexec; do
    [ -e "$prefix/usr/bin/$w.openmpi" ] && ln -sf "$w.openmpi" "$prefix/usr/bin/$w"
  done
  if [ -f "$prefix/usr/bin/h5pcc.openmpi" ]; then
    # Relocate the h5pcc script, link the shared libhdf5 by default (FindHDF5 test-links with
    # it), and let it name only libdl/libm: the shared libhdf5 brings its own libcurl,
    # libcrypto, libsz and libz (whose -dev links may be absent).
    sed -e "s|^prefix=\"/usr\"|prefix=\"$prefix/usr\"|" \
        -e 's|USE_SHARED_LIB="${HDF5_USE_SHLIB:-no}"|USE_SHARED_LIB="${HDF5_USE_SHLIB:-yes}"|' \
        -e 's|^H5BLD_LIBS=.*|H5BLD_LIBS="-ldl -lm"|' \
        "$prefix/usr/bin/h5pcc.openmpi" >"$prefix/usr/bin/h5pcc"
    chmod +x "$prefix/usr/bin/h5pcc"
  fi
  export PATH=$prefix/usr/bin:$PATH
  ld=$L
  for d in "$L/openmpi/lib" "$L/hdf5/openmpi" "$L/openblas-pthread" "$L/pmix2/lib"; do
    [ -d "$d" ] && ld=$ld:$d
  done
  export LD_LIBRARY_PATH=$ld${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  export CMAKE_PREFIX_PATH=$prefix/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}
  if printf '%s\n' "${use_ours[@]}" | grep -qx mpi; then
    # Open MPI relocates to OPAL_PREFIX (its wrapper data, help files, components); PMIx's
    # components are pointed at explicitly.
    export OPAL_PREFIX=$prefix/usr
    export OMPI_MCA_mca_base_component_path=$L/openmpi/lib/openmpi3
    [ -d "$L/pmix2/lib/pmix" ] && export PMIX_MCA_mca_base_component_path=$L/pmix2/lib/pmix
    export PMIX_INSTALL_PREFIX=$L/pmix2
    # components whose libraries were pruned (EFA, PSM, ...) are skipped; say nothing of them
    export OMPI_MCA_mca_base_component_show_load_errors=0
    cmake_args+=(-DMPI_C_COMPILER="$prefix/usr/bin/mpicc" -DMPI_CXX_COMPILER="$prefix/usr/bin/mpicxx"
                 -DMPIEXEC_EXECUTABLE="$prefix/usr/bin/mpirun")
  fi
  if printf '%s\n' "${use_ours[@]}" | grep -qx hdf5; then
    # our h5pcc names Debian's mpicc.openmpi; with the system's MPI, its mpicc
    printf '%s\n' "${use_ours[@]}" | grep -qx mpi || export HDF5_CC=mpicc HDF5_CLINKER=mpicc
    cmake_args+=(-DHDF5_C_COMPILER_EXECUTABLE="$prefix/usr/bin/h5pcc")
  fi
  if printf '%s\n' "${use_ours[@]}" | grep -qx blas; then
    cmake_args+=(-DBLAS_LIBRARIES="$L/openblas-pthread/libopenblas.so")
    export CPATH=$prefix/usr/include/$multiarch/openblas-pthread${CPATH:+:$CPATH}
  fi
elif [ -d .gpu-deps ]; then
  echo "  .gpu-deps/ holds no .deb files: using the system's packages only"
else
  echo "  no .gpu-deps/: using the system's packages only (scripts/gpu-deps.sh makes it)"
fi
# NCCL: the CUDA toolkit's, the system's, else the one in Python's nvidia-nccl wheel.
if [ -e /usr/local/cuda/include/nccl.h ] && exists_glob /usr/local/cuda/lib64/libnccl.so /usr/local/cuda/lib/libnccl.so; then
  echo "  nccl: the CUDA toolkit's"
elif [ -e /usr/include/nccl.h ] && sys_lib 'libnccl.so'; then
  echo "  nccl: the system's"
else
  nccl_dir=""
  [ -n "$python" ] && nccl_dir=$("$python" -c 'import nvidia.nccl as m; print(list(m.__path__)[0])' 2>/dev/null)
  nccl_lib=$(ls "$nccl_dir"/lib/libnccl.so* 2>/dev/null | sort | head -n 1)
  if [ -n "$nccl_dir" ] && [ -n "$nccl_lib" ] && [ -e "$nccl_dir/include/nccl.h" ]; then
    cmake_args+=(-DNCCL_LIBRARY="$nccl_lib" -DNCCL_INCLUDE_DIR="$nccl_dir/include")
    export LD_LIBRARY_PATH=$nccl_dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    echo "  nccl: $nccl_lib (Python's nvidia-nccl wheel)"
  else
    echo "  nccl: NOT FOUND (neither /usr/local/cuda nor Python's nvidia-nccl): NcclComm is not built"
  fi
fi
# GCC 13 headers no longer pull in <cstdint> transitively; yaml-cpp 0.7's headers relied on it.
if [ -n "$cxx" ] && [ "$("$cxx" -dumpversion 2>/dev/null | cut -d. -f1)" -ge 13 ] 2>/dev/null; then
  export CXXFLAGS="${CXXFLAGS:+$CXXFLAGS }-include cstdint"
  echo "  g++ >= 13: CXXFLAGS+=-include cstdint (yaml-cpp 0.7 headers)"
fi
[ -n "$python" ] && cmake_args+=(-DTESSERA_PYTHON="$python")
command -v nvcc >/dev/null && cmake_args+=(-DCMAKE_CUDA_COMPILER="$(command -v nvcc)")
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
# Containers and VMs: no cross-memory attach; no interconnect but shared memory.
export OMPI_MCA_btl_vader_single_copy_mechanism=none
echo "  LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
record "deps" PASS $(($(date +%s) - t0)) "$deps_note"

# ---- configure and build ----
say "configure ($build)"
t0=$(date +%s)
rm -f "$build/CMakeCache.txt"
timeout -k 10 "$(cap 120)" cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release "${cmake_args[@]}" \
  >"$outdir/configure.log" 2>&1
rc=$?
grep -E 'tessera:|Found (MPI|HDF5|Boost|BLAS|GTest|CUDAToolkit|yaml)|CMake Error|Could NOT' "$outdir/configure.log"
if ((rc)); then
  tail -n 40 "$outdir/configure.log"
  record "configure" FAIL $(($(date +%s) - t0)) "rc=$rc, see configure.log"
else
  grep -q 'CUDA backend ON' "$outdir/configure.log" && cuda_on=1 || cuda_on=0
  grep -q 'NCCL communicator ON' "$outdir/configure.log" && nccl_on=1 || nccl_on=0
  record "configure" "$( ((cuda_on)) && echo PASS || echo FAIL)" $(($(date +%s) - t0)) \
    "CUDA backend $( ((cuda_on)) && echo ON || echo OFF), NCCL $( ((nccl_on)) && echo ON || echo OFF)"
fi
built=0
if [ "${GPU_CHECK_CONFIGURE_ONLY:-0}" = 1 ]; then
  echo "GPU_CHECK_CONFIGURE_ONLY=1: stopping after configure"
  sed -n '/^-- /p' "$outdir/configure.log" | tail -n 25
  exit "$rc"
fi
if ((rc == 0)); then
  say "build (-j$nproc)"
  t0=$(date +%s)
  timeout -k 10 "$(cap 330 60)" cmake --build "$build" --parallel "$nproc" >"$outdir/build.log" 2>&1
  rc=$?
  tail -n 3 "$outdir/build.log"
  if ((rc)); then
    grep -E -B2 -A12 'error|FAILED' "$outdir/build.log" | head -n 80
    record "build" FAIL $(($(date +%s) - t0)) "rc=$rc$( ((rc == 124)) && echo ' (timed out)'), see build.log"
  else
    built=1
    record "build" PASS $(($(date +%s) - t0)) "$(grep -c 'warning:' "$outdir/build.log") warnings"
  fi
fi

# ---- the checks ----
# run_check NAME CAP CMD...: output into the log and $work/NAME.out; sets rc and dt.
run_check() {
  local name=$1 c=$2; shift 2
  say "$name: $*"
  local t=$(date +%s)
  timeout -k 10 "$(cap "$c")" "$@" 2>&1 | tee "$work/$name.out"
  rc=${PIPESTATUS[0]}
  dt=$(($(date +%s) - t))
  echo "---- $name: rc=$rc, ${dt}s"
}
# gtest_verdict NAME [PATTERN]: PASS when rc=0, at least one test ran OK (matching PATTERN),
# and none (matching PATTERN) was SKIPPED.
gtest_verdict() {
  local name=$1 pat=${2:-.} f=$work/$1.out ok sk fl
  ok=$(grep -E '^\[       OK \]' "$f" | grep -cE "$pat")
  sk=$(grep -E '^\[  SKIPPED \] [A-Za-z]' "$f" | grep -E "$pat" | sed 's/ (.*//' | sort -u | wc -l)
  fl=$(grep -E '^\[  FAILED  \] [A-Za-z]' "$f" | sed 's/ (.*//' | sort -u | wc -l)
  local note="$ok passed, $sk skipped, $fl failed"
  [ "$pat" != . ] && note="$note (matching $pat)"
  ((rc == 124 || rc == 137)) && note="timed out; $note"
  if ((rc == 0 && ok > 0 && sk == 0)); then record "$name" PASS "$dt" "$note"
  else
    ((have_gpu)) || note="no GPU; $note"
    record "$name" FAIL "$dt" "rc=$rc, $note"
  fi
}

declare -A tp=()
if ((built)); then
  run_check "a.kernels_cuda" 90 "$build/tests/kernels_cuda_tests"
  if [ -x "$build/tests/kernels_cuda_tests" ]; then gtest_verdict "a.kernels_cuda"
  else record "a.kernels_cuda" FAIL "$dt" "kernels_cuda_tests not built"; fi

  run_check "b.backend_cuda" 90 "$build/tests/backend_tests"
  gtest_verdict "b.backend_cuda" '/cuda'

  run_check "c.model_on_cuda" 90 "$build/tests/trainer_tests" --gtest_filter='*ModelOnBackend*'
  gtest_verdict "c.model_on_cuda"

  run_check "d.nccl" 120 ctest --test-dir "$build" -L nccl -V --timeout 100
  f=$work/d.nccl.out
  np1=$(grep -E 'Test +#[0-9]+: parallel_nccl\.comm_nccl_np1 ' "$f" | grep -oE 'Passed|\*\*\*Skipped|\*\*\*Failed|\*\*\*Timeout|Failed' | head -n 1)
  np2=$(grep -E 'Test +#[0-9]+: parallel_nccl\.comm_nccl_np2 ' "$f" | grep -oE 'Passed|\*\*\*Skipped|\*\*\*Failed|\*\*\*Timeout|Failed' | head -n 1)
  why2=$(grep -m1 -oE 'SKIP nccl_comm_mpitest: .*' "$f" | cut -c1-90)
  if [ -z "$np1" ]; then
    record "d.nccl" FAIL "$dt" "no nccl tests (NCCL not found at configure?)"
  elif [ "$np1" = Passed ] && { [ "$np2" = Passed ] || [ "$np2" = "***Skipped" ]; }; then
    note="np1 Passed, np2 ${np2#\*\*\*}"
    [ "$np2" = "***Skipped" ] && note="$note ($n_gpus GPU(s) here; ${why2:-fewer GPUs than ranks})"
    record "d.nccl" PASS "$dt" "$note"
  else
    note="np1 ${np1#\*\*\*}, np2 ${np2#\*\*\*}"
    [ "$np1" = "***Skipped" ] && note="$note: ${why2:-skipped}"
    record "d.nccl" FAIL "$dt" "$note"
  fi

  # e. throughput, the benchmark model: cuda, then cpu with every core for comparison.
  for dev in cuda cpu; do
    if [ $dev = cuda ]; then args=(--steps 20 --warmup 3 --threads 1)
    else args=(--steps 4 --warmup 1 --threads "$nproc"); fi
    run_check "e.throughput_$dev" 90 "$build/bench/train_throughput" --recipe recipes/bench-moe.yaml \
      --set run.device=$dev "${args[@]}"
    json=$(grep -E '^\{"impl":"tessera"' "$work/e.throughput_$dev.out" | tail -n 1)
    if ((rc == 0)) && [ -n "$json" ]; then
      tp[$dev]=$("$python" -c 'import json,sys; print(json.loads(sys.argv[1])["tokens_per_s"])' "$json" 2>/dev/null)
      note=$("$python" - "$json" "$dev" <<'PY' 2>/dev/null
import json, sys
j, dev = json.loads(sys.argv[1]), sys.argv[2]
s = f"{j['tokens_per_s']:.0f} tokens/s, step {1000*j['step_s']:.2f} ms, {j['gflops']:.1f} GFLOP/s"
if dev == "cuda":
    # H200 datasheet fp32 (non-tensor) peak, about 67 TFLOP/s: a rough MFU.
    s += f", {100*j['gflops']/67000:.2f}% of 67 TFLOP/s fp32"
else:
    s += f", {100*j['fraction_of_peak']:.1f}% of CPU SGEMM peak {j['sgemm_peak_gflops']:.0f}"
print(s)
PY
)
      record "e.throughput_$dev" PASS "$dt" "$note"
    else
      note="rc=$rc"
      ((have_gpu)) || [ $dev = cpu ] || note="no GPU; $note"
      record "e.throughput_$dev" FAIL "$dt" "$note: $(grep -v '^\s*$' "$work/e.throughput_$dev.out" | tail -n 1 | cut -c1-80)"
    fi
  done
  if [ -n "${tp[cuda]:-}" ] && [ -n "${tp[cpu]:-}" ]; then
    echo "throughput: cuda/cpu = $("$python" -c "print(f'{${tp[cuda]}/${tp[cpu]}:.1f}x')")"
  fi

  # g. a short training run on one GPU (the loop, checkpoints staged through host memory, a
  # resume) against the same run on the CPU: every step's loss within 1e-4 relative.
  if (($(left) > 90)); then
    gdata=$work/markov-v256
    "$build/tessera" prepare synthetic --vocab 256 --order 1 --tokens 400000 --seed 1 \
      --out "$gdata" --quiet >/dev/null 2>&1
    for dev in cuda cpu; do
      run_check "g.train_$dev" 120 "$build/tessera" train recipes/bench-moe.yaml \
        --set run.device=$dev --set data.path="$gdata" --set run.dir="$work/train-$dev" \
        --set train.steps=12 --set checkpoint.every_steps=6 --set checkpoint.keep_last=2 \
        --set train.eval_every=0 --set run.cpu_threads="$nproc"
    done
    # Resume the cuda run from its step-6 checkpoint: steps 7..12 again.
    rm -f "$work/train-cuda/checkpoints/latest" "$work/train-cuda/DONE"
    rm -rf "$work/train-cuda/checkpoints/step-00000012"
    run_check "g.resume_cuda" 90 "$build/tessera" train recipes/bench-moe.yaml \
      --set run.device=cuda --set data.path="$gdata" --set run.dir="$work/train-cuda" \
      --set train.steps=12 --set checkpoint.every_steps=6 --set train.eval_every=0 \
      --resume "$work/train-cuda/checkpoints/step-00000006"
    note=$("$python" - "$work/train-cuda/metrics.jsonl" "$work/train-cpu/metrics.jsonl" <<'PY' 2>&1
import json, sys
def losses(path):
    last = {}
    for line in open(path):
        r = json.loads(line)
        last[r["step"]] = r
    return last
g, c = losses(sys.argv[1]), losses(sys.argv[2])
steps = sorted(set(g) & set(c))
worst = max(abs(g[s]["loss"] - c[s]["loss"]) / abs(c[s]["loss"]) for s in steps)
tps = sorted(g[s]["tokens_per_s"] for s in steps if s > 2)
ok = len(steps) == 12 and worst <= 1e-4
print(("OK" if ok else "BAD") + f" {len(steps)} steps, loss rel diff max {worst:.2e} (resumed 7-12), "
      f"cuda {tps[len(tps)//2]:.0f} tokens/s median, final loss {g[12]['loss']:.4f}")
PY
)
    echo "g: $note"
    if [[ $note == OK* ]]; then record "g.train_cuda" PASS "$dt" "${note#OK }"
    else record "g.train_cuda" FAIL "$dt" "$note"; fi
  else
    record "g.train_cuda" SKIP 0 "only $(left)s left"
  fi

  # f. the CPU suite, in the time left.
  if ((quick)); then
    record "f.cpu_suite" SKIP 0 "--quick"
  elif (($(left) < 60)); then
    record "f.cpu_suite" SKIP 0 "only $(left)s left of ${deadline}s"
  else
    c=$(cap 600 15)
    say "f.cpu_suite: ctest -E 'slurm|cluster' -j8 (at most ${c}s)"
    t=$(date +%s)
    timeout -k 10 "$c" ctest --test-dir "$build" -E 'slurm|cluster' -j8 --timeout 240 \
      --output-on-failure >"$outdir/cpu-suite.log" 2>&1
    rc=$?
    dt=$(($(date +%s) - t))
    grep -E '\*\*\*|Failed|tests passed|Total Test time' "$outdir/cpu-suite.log" | grep -v '^ *[0-9]*/[0-9]* Test .*Passed' | tail -n 30
    summ=$(grep -E 'tests passed' "$outdir/cpu-suite.log" | tail -n 1)
    if ((rc == 124 || rc == 137)); then
      record "f.cpu_suite" FAIL "$dt" "timed out after ${c}s ($(grep -c ' Passed ' "$outdir/cpu-suite.log") passed so far)"
    elif ((rc == 0)); then record "f.cpu_suite" PASS "$dt" "${summ:-?}"
    else record "f.cpu_suite" FAIL "$dt" "${summ:-rc=$rc}, see cpu-suite.log"; fi
  fi
else
  for n in a.kernels_cuda b.backend_cuda c.model_on_cuda d.nccl e.throughput_cuda g.train_cuda; do
    record "$n" FAIL 0 "not built"
  done
fi

# ---- summary ----
say "summary ($( ((have_gpu)) && echo "$n_gpus GPU(s)" || echo 'NO GPU on this machine'), $(elapsed)s in all)"
status=0
{
  printf '%-20s %-5s %6s  %s\n' check result secs note
  for i in "${!names[@]}"; do
    printf '%-20s %-5s %6s  %s\n' "${names[$i]}" "${results[$i]}" "${secs[$i]}" "${notes[$i]}"
  done
} | tee "$outdir/summary.txt"
for i in "${!names[@]}"; do
  case ${names[$i]} in
    deps|configure|build|a.*|b.*|c.*|d.*|e.throughput_cuda|g.*) [ "${results[$i]}" = PASS ] || status=1 ;;
  esac
done
((have_gpu)) || echo "NO GPU: the GPU checks cannot pass on this machine."
echo "gpu-check: $( ((status)) && echo FAILED || echo 'all GPU checks PASSED') (log: $log)"
rm -rf "$work"
exec >&- 2>&-
wait "$tee_pid" 2>/dev/null
exit $status
