#!/usr/bin/env bash
# test.sh: set up a Debian 12 machine for hugepaged, build it and run every
# test (unit and integration; the integration tests need root).
#
#   ./test.sh                      install what is missing, build, run all tests
#   ./test.sh --build-only         install what is missing and build (run.sh uses this)
#   ./test.sh [MESON TEST ARGS]    e.g. ./test.sh --suite unit, ./test.sh sparse
#   ./test.sh --sanitize [ARGS]    build in build-sanitize with ASan and UBSan and run the
#                                  tests there (ARGS as above); any sanitizer report fails
#                                  the run. The preload shim, and the workloads it is
#                                  loaded into, are built without (they must not load the
#                                  sanitizer runtime first).
#   ./test.sh --fuzz [SECONDS]     build the libFuzzer harnesses (tests/fuzz) with clang in
#                                  build-fuzz and run each for SECONDS (default 60)
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
  postgresql-15 postgresql-client-15  # tests/programs/postgres.py and postgres_hugetlb.py
  libjemalloc2 libmimalloc2.0 libtcmalloc-minimal4  # hugepaged-run --allocator (tests/programs/allocator.py)
  systemd man-db  # tests/dbus: systemd-analyze verify, systemd-sysusers, man -l
  libclang-rt-14-dev  # libFuzzer for ./test.sh --fuzz
  prometheus  # promtool: tests/dbus/metrics.py
  libseccomp-dev  # tests/dbus/hp-unit-sandbox.c: the unit's SystemCallFilter=
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

# setup_dir DIR [MESON SETUP OPTIONS]: configure DIR once, then build it.
setup_dir() {
  local dir=$1
  shift
  if [ ! -f "$dir/build.ninja" ]; then
    if [ -d "$dir" ]; then
      meson setup --wipe "$dir" "$@"
    else
      meson setup "$dir" "$@"
    fi
  fi
  ninja -C "$dir"
}

# Every process writes its sanitizer reports to a file in one directory
# (any user may: some tests run clients as nobody): reports from processes
# the tests only kill or whose exit status they ignore still fail the run.
run_sanitized() {
  setup_dir build-sanitize -Db_sanitize=address,undefined -Db_lundef=false
  local reports rc=0
  reports=$(mktemp -d /tmp/hugepaged-sanitize.XXXXXX)
  chmod 1777 "$reports"
  export ASAN_OPTIONS="log_path=$reports/asan:detect_leaks=1:check_initialization_order=1:strict_string_checks=1"
  export UBSAN_OPTIONS="log_path=$reports/ubsan:halt_on_error=1:print_stacktrace=1"
  export HP_SANITIZE=1
  meson test -C build-sanitize --print-errorlogs "$@" || rc=$?
  # Kept in meson-logs too, where .ci/run's summary finds them.
  rm -f build-sanitize/meson-logs/sanitizer-reports.txt
  if compgen -G "$reports/*" >/dev/null; then
    echo "test.sh: sanitizer reports:" >&2
    for f in "$reports"/*; do
      echo "==== $f"
      cat "$f"
    done | tee build-sanitize/meson-logs/sanitizer-reports.txt >&2
    rc=1
  fi
  rm -rf "$reports"
  return "$rc"
}

run_fuzz() {
  local seconds=${1:-60} rc=0
  CC=clang setup_dir build-fuzz -Dfuzz=true
  meson configure build-fuzz -Dfuzz_seconds="$seconds"
  meson test -C build-fuzz --suite fuzz --print-errorlogs || rc=$?
  grep -h '^fuzz: ' build-fuzz/meson-logs/testlog.txt || true
  return "$rc"
}

install_missing_packages
case "${1:-}" in
--sanitize)
  shift
  run_sanitized "$@"
  exit
  ;;
--fuzz)
  shift
  run_fuzz "$@"
  exit
  ;;
esac
build

if [ "${1:-}" = "--build-only" ]; then
  exit 0
fi
exec meson test -C build --print-errorlogs "$@"
