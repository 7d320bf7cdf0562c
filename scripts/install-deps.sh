#!/usr/bin/env bash
# Installs the Debian packages ddpm's build, tests, benchmarks and examples need, when any is missing.
# Usage: scripts/install-deps.sh [extra packages...]   (as root, or with sudo available)
set -euo pipefail

packages=(cmake make g++ pkg-config libeigen3-dev catch2 libbenchmark-dev nlohmann-json3-dev libstb-dev zlib1g-dev
          libopenmpi-dev openmpi-bin "$@")  # OpenMPI: the optional examples/sample_mpi and its ctest runs
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "ddpm: installing missing Debian packages: ${missing[*]}"
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
