#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# bench/run.sh: compare hugepaged with the kernel's THP modes (BENCH.md).
#
#   bench/run.sh [--quick] [--json FILE] [CASES...]     e.g. bench/run.sh --quick S2 S7
#
# Needs root and a build (./test.sh, or ./test.sh --build-only); rebuilds
# what changed first. The full set takes about 15 minutes, --quick about 3
# (plus S12's real programs: python3, redis-server and redis-benchmark from
# Debian's redis-server and redis-tools, and sort; and S14's PostgreSQL 15,
# Debian's postgresql-15, about a minute quick, 2 to 3 full).
# See bench/bench.py --help for every option.
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
build=${HP_BUILD_DIR:-$root/build}
if [ -f "$build/build.ninja" ] && command -v ninja >/dev/null; then
  ninja -C "$build" >/dev/null || { echo "bench: build failed (ninja -C $build)" >&2; exit 1; }
fi
exec env HP_BUILD_DIR="$build" python3 "$root/bench/bench.py" "$@"
