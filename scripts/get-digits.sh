#!/usr/bin/env bash
# Prints the path of the 8x8 handwritten digits file (sklearn/datasets/data/digits.csv.gz: 1797 rows of 64
# grey levels 0..16 and a label; the UCI optical digits, BSD-3-Clause as part of scikit-learn), fetching it
# first if needed.
#
#   1. Debian's python3-sklearn installed: its copy, /usr/lib/python3/dist-packages/sklearn/datasets/data/.
#   2. Otherwise the cached copy in build/data/digits.csv.gz (or $DDPM_DATA_DIR/digits.csv.gz).
#   3. Otherwise `apt-get download python3-sklearn` (that one .deb, ~2 MB, none of its dependencies such as
#      SciPy), `dpkg-deb -x` it in a temporary directory and copy the one file into the cache.
#
# Usage: scripts/get-digits.sh          (stdout: the path, nothing else; progress goes to stderr)
# Needs only Debian's archive; runs `apt-get update` (as root, or through sudo) when apt has no package lists.
set -euo pipefail

system=/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz
if [ -f "$system" ]; then
  echo "$system"
  exit 0
fi

root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${DDPM_DATA_DIR:-$root/build/data}"
target="$cache/digits.csv.gz"
if [ -f "$target" ]; then
  echo "$target"
  exit 0
fi

# The file in python3-sklearn 1.2.1+dfsg-1 (bookworm); a different one is used, with a warning.
expected_sha256=46abec6b12486ad9e51943373abcf22bbea1b5a51a1619b361570d8893f1464a

sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# apt drops privileges to _apt for downloads; let it write here (the directory is ours and removed after).
chmod 0777 "$tmp"

echo "ddpm: fetching digits.csv.gz from Debian's python3-sklearn package (the .deb alone)" >&2
download() { (cd "$tmp" && apt-get download -q python3-sklearn) >&2; }
if ! download; then
  echo "ddpm: apt-get download failed; updating apt's package lists and retrying" >&2
  "${sudo_cmd[@]}" apt-get update -qq >&2
  download
fi

deb="$(ls "$tmp"/python3-sklearn_*.deb)"
dpkg-deb -x "$deb" "$tmp/x"
file="$tmp/x/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz"
if [ ! -f "$file" ]; then
  echo "ddpm: $(basename "$deb") holds no sklearn/datasets/data/digits.csv.gz" >&2
  exit 1
fi
gzip -t "$file"
actual_sha256="$(sha256sum "$file" | cut -d' ' -f1)"
if [ "$actual_sha256" != "$expected_sha256" ]; then
  echo "ddpm: warning: digits.csv.gz from $(basename "$deb") has sha256 $actual_sha256, not the" \
       "$expected_sha256 of python3-sklearn 1.2.1+dfsg-1; using it anyway" >&2
fi

mkdir -p "$cache"
cp "$file" "$target.tmp.$$"
mv "$target.tmp.$$" "$target"
echo "$target"
