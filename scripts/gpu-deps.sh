#!/usr/bin/env bash
# Downloads (apt-get download; nothing is installed) the Debian 12 packages that tessera's build
# and tests need, with their runtime library dependencies, into .gpu-deps/ in the repository root,
# for a GPU machine that has no network (see scripts/gpu-check.sh, which unpacks them into a
# private prefix there). Run it here, on a Debian 12 (bookworm) machine that reaches the archive.
#
# Packages that a CUDA image surely has (the C library, libstdc++, zlib, OpenSSL, ...) and
# packages the build does not need (Fortran, documentation, JavaScript, -dev packages of
# dependencies) are pruned: neither downloaded nor followed. Prints the total size at the end.
#
# Usage: scripts/gpu-deps.sh [--clean]     (--clean: empty .gpu-deps/ first)
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.gpu-deps

# What the build and the tests use directly (scripts/setup.sh, CMakeLists.txt).
roots=(
  openmpi-bin openmpi-common libopenmpi-dev
  libhdf5-openmpi-dev
  libyaml-cpp-dev
  libboost-program-options1.74-dev libboost1.74-dev
  libopenblas-dev libopenblas-pthread-dev
  libdnnl-dev
  libgtest-dev
)

# Never downloaded, never followed. A regular expression over package names.
prune_re='^('
# the base system / toolchain every CUDA image (Ubuntu or Debian) carries
prune_re+='libc6|libc6-dev|libc-dev-bin|libstdc\+\+6|libstdc\+\+-[0-9]+-dev|libgcc-s1|gcc-[0-9]+-base'
prune_re+='|zlib1g|zlib1g-dev|libzstd1|liblzma5|libbz2-1\.0|libudev1|libsystemd0|libcap2|libcrypt1'
prune_re+='|libgcrypt20|libgpg-error0|liblz4-1|libssl3|libssl-dev|libselinux1|libpcre2-8-0'
prune_re+='|libgnutls30|libnettle8|libhogweed6|libgmp10|libidn2-0|libunistring2|libp11-kit0|libtasn1-6|libffi8'
prune_re+='|debconf|dpkg|perl-base|perl|perl-modules-.*|libperl.*|python3.*|openssh-client|ssh-client'
prune_re+='|gcc|g\+\+|gcc-[0-9]+|g\+\+-[0-9]+|cpp|cpp-[0-9]+|binutils.*|make|libtinfo6|libncursesw6'
# Fortran compilers and the -dev packages of dependencies (the build links only the shared libs)
prune_re+='|gfortran.*|flang.*|gfortran-mod-.*|libgfortran-[0-9]+-dev'
prune_re+='|libibverbs-dev|libhwloc-dev|libevent-dev|libpmix-dev|libnl-.*-dev|libnuma-dev|libltdl-dev'
prune_re+='|libaec-dev|libjpeg-dev|libjpeg62-turbo-dev|libcurl.*-dev|libcurl-dev'
prune_re+='|libblas-dev|liblapack-dev|libopenblas-openmp-dev|libopenblas-serial-dev|libopenblas0-openmp|libopenblas0-serial'
# documentation, JavaScript, the Java binding
prune_re+='|libjs-.*|.*-doc|libmpi-java.*|default-jre.*'
# system administration (user accounts, PAM), and hwloc's optional plugins (X11, libxml2 with
# 9 MiB of ICU, OpenCL): Open MPI runs without them
prune_re+='|adduser|passwd|login|libpam.*|libaudit.*|libsemanage.*|libsepol.*|libcap-ng0|libuuid1'
prune_re+='|libhwloc-plugins|libx11-.*|libxext6|libxcb1|libxau6|libxdmcp6|libxml2|libicu[0-9]+|libxnvctrl0'
prune_re+='|ocl-icd-libopencl1|ibverbs-providers'
prune_re+=')$'

[ "${1:-}" = "--clean" ] && rm -rf "$dest"
mkdir -p "$dest"

# Breadth-first over Depends and Pre-Depends (first alternative of each OR-group; a virtual
# package resolves to its first provider), stopping at pruned packages.
declare -A seen=()
queue=("${roots[@]}")
wanted=()
while ((${#queue[@]})); do
  p=${queue[0]}
  queue=("${queue[@]:1}")
  [[ -n ${seen[$p]:-} ]] && continue
  seen[$p]=1
  [[ $p =~ $prune_re ]] && continue
  wanted+=("$p")
  # apt-cache depends prints "  Depends: X" / " |Depends: X" (an OR-group continues on the next
  # Depends line) and, under a virtual "<X>", its providers indented by four spaces.
  in_or=0 virtual=0
  while IFS= read -r line; do
    if [[ $line =~ ^\ \ *(\|?)(Pre)?Depends:\ (.*)$ ]]; then
      or=${BASH_REMATCH[1]} dep=${BASH_REMATCH[3]}
      virtual=0
      if ((in_or)); then in_or=$([ -n "$or" ] && echo 1 || echo 0); continue; fi
      in_or=$([ -n "$or" ] && echo 1 || echo 0)
      if [[ $dep == \<*\> ]]; then virtual=1; continue; fi
      queue+=("${dep%%:*}")
    elif ((virtual)) && [[ $line =~ ^\ \ \ \ ([^ ]+)$ ]]; then
      queue+=("${BASH_REMATCH[1]%%:*}")
      virtual=0
    fi
  done < <(apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks \
             --no-replaces --no-enhances "$p" 2>/dev/null | tail -n +2)
done

echo "gpu-deps: ${#wanted[@]} packages: ${wanted[*]}"
# Remove .debs of packages no longer wanted (a changed list), then download what is missing.
for f in "$dest"/*.deb; do
  [ -e "$f" ] || continue
  name=$(basename "$f"); name=${name%%_*}
  keep=0
  for w in "${wanted[@]}"; do [ "$w" = "$name" ] && keep=1 && break; done
  ((keep)) || rm -f "$f"
done
missing=()
for w in "${wanted[@]}"; do
  compgen -G "$dest/${w}_*.deb" >/dev/null || missing+=("$w")
done
if ((${#missing[@]})); then
  (cd "$dest" && apt-get download -q "${missing[@]}")
fi
printf '%s\n' "${wanted[@]}" >"$dest/PACKAGES"
echo "gpu-deps: $(ls "$dest"/*.deb | wc -l) .deb files in $dest, $(du -sh "$dest" | cut -f1) in all"
ls -S -l "$dest"/*.deb | awk '{printf "  %8.1f KiB  %s\n", $5/1024, $NF}' | head -15
