#!/usr/bin/env bash
# test.sh: set up a Debian 12 machine for hugepaged, build it and run every
# test (unit and integration; the integration tests need root).
#
#   ./test.sh                      install what is missing, build, run all tests
#   ./test.sh --build-only         install what is missing and build (run.sh uses this)
#   ./test.sh [MESON TEST ARGS]    e.g. ./test.sh --suite unit, ./test.sh sparse
#
# The exit status is that of `meson test`.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"

# Debian packages the build, the tests and the tools need.
packages=(
  build-essential gcc meson ninja-build pkg-config
  liburing-dev libsystemd-dev libinih-dev
  python3 util-linux strace  # strace: tests/programs/shim_absent.py
  sqlite3 redis-server redis-tools scdoc dbus libbpf-dev bpftool clang
  systemd man-db  # tests/dbus: systemd-analyze verify, systemd-sysusers, man -l
)

install_missing_packages() {
  local missing=() p
  for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
      missing+=("$p")
    fi
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    return 0
  fi
  echo "test.sh: installing ${missing[*]}" >&2
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "test.sh: need root (or sudo) to install ${missing[*]}" >&2; exit 1; }
    sudo=(sudo)
  fi
  "${sudo[@]}" apt-get update
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${missing[@]}"
}

build() {
  if [ ! -f build/build.ninja ]; then
    if [ -d build ]; then
      meson setup --wipe build
    else
      meson setup build
    fi
  fi
  ninja -C build
}

install_missing_packages
build

if [ "${1:-}" = "--build-only" ]; then
  exit 0
fi
exec meson test -C build --print-errorlogs "$@"
