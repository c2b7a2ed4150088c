#!/usr/bin/env bash
# run.sh: build hugepaged and show what it does. Starts the daemon on a
# private socket, runs a sparse and two dense workloads under hugepaged-run,
# runs the same workloads under the kernel's own THP behaviour for
# comparison, and prints one table. Needs root (the daemon opens
# /dev/userfaultfd). Single runs: the times are indicative only.
#
#   ./run.sh [SPARSE_SIZE [DENSE_SIZE]]     defaults: 2G 1G
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"

sparse_size=${1:-2G}
dense_size=${2:-1G}

if [ "$(id -u)" -ne 0 ]; then
  echo "run.sh: must run as root: hugepaged opens /dev/userfaultfd and collapses other processes' memory" >&2
  exit 1
fi
if [ ! -e /dev/userfaultfd ]; then
  echo "run.sh: /dev/userfaultfd is missing: hugepaged needs a kernel with userfaultfd (6.1 or later)" >&2
  exit 1
fi

./test.sh --build-only

daemon=build/daemon/hugepaged
runner=build/tools/hugepaged-run
workload=build/tests/hp-workload

tmp=$(mktemp -d -t hugepaged-run.XXXXXX)
sock=$tmp/hugepaged.sock
daemon_log=$tmp/hugepaged.log
daemon_pid=

cleanup() {
  local status=$?
  if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
    kill -TERM "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
  fi
  if [ "$status" -ne 0 ] && [ -s "$daemon_log" ]; then
    echo "run.sh: failed; last lines of the daemon log:" >&2
    tail -n 30 "$daemon_log" >&2 || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

: >"$tmp/hugepaged.conf"   # built-in defaults, whatever /etc/hugepaged holds
"$daemon" --socket "$sock" --config "$tmp/hugepaged.conf" --foreground --log-level info --bus none \
  2>"$daemon_log" &
daemon_pid=$!
for _ in $(seq 100); do
  [ -S "$sock" ] && break
  kill -0 "$daemon_pid" 2>/dev/null || { echo "run.sh: hugepaged exited at start" >&2; exit 1; }
  sleep 0.1
done
[ -S "$sock" ] || { echo "run.sh: hugepaged did not create $sock" >&2; exit 1; }

echo "THP: enabled=$(sed 's/.*\[\(.*\)\].*/\1/' /sys/kernel/mm/transparent_hugepage/enabled)" \
     "defrag=$(sed 's/.*\[\(.*\)\].*/\1/' /sys/kernel/mm/transparent_hugepage/defrag)"
# The first touch of never-used guest memory is much slower on VMs: touch
# (and free) more than the largest case once, so no mode pays it alone.
echo "warming memory..."
"$workload" --advise huge --wait 0 dense-seq 4G >/dev/null

rows=()
kv() { sed -n "s/^$1=//p" <<<"$2" | tail -n 1; }

# run_case CASE MODE CMD...: run one workload, add a table row.
run_case() {
  local case=$1 mode=$2 out pid promotions huge_s
  shift 2
  echo "  $case / $mode"
  out=$("$@") || { echo "run.sh: $case / $mode: workload failed (exit $?)" >&2; exit 1; }
  if [ "$(kv mismatches "$out")" != 0 ]; then
    echo "run.sh: $case / $mode: data mismatch" >&2
    exit 1
  fi
  promotions=-
  if [ "$mode" = hugepaged ]; then
    pid=$(kv pid "$out")
    for _ in $(seq 50); do
      grep -q "client $pid .*gone" "$daemon_log" && break
      sleep 0.1
    done
    promotions=$(grep "client $pid .*gone" "$daemon_log" | sed -n 's/.*[^a-z_]promotions=\([0-9]*\).*/\1/p' | tail -n 1)
    promotions=${promotions:-?}
  fi
  huge_s=-
  if [ "$(kv huge_reached "$out")" = 1 ]; then
    huge_s=$(awk -v ms="$(kv wait_ms "$out")" 'BEGIN { printf "%.2f", ms / 1000 }')
  fi
  rows+=("$(awk -v c="$case" -v m="$mode" -v rss="$(kv rss_bytes "$out")" \
              -v huge="$(kv anon_huge_bytes "$out")" -v cov="$(kv coverage_pct "$out")" \
              -v pop="$(kv populate_ms "$out")" -v hs="$huge_s" -v pr="$promotions" \
    'BEGIN { printf "%-16s %-10s %10.1f %12.1f %9.1f %11.2f %9s %10s", c, m, rss / 1048576, huge / 1048576, cov, pop / 1000, hs, pr }')")
}

# run_modes CASE WORKLOAD-ARGS...: the kernel baselines, then hugepaged.
run_modes() {
  local case=$1
  shift
  run_case "$case" never "$workload" --advise nohuge --wait 0 "$@"
  run_case "$case" always "$workload" --advise huge --wait 5 "$@"
  run_case "$case" hugepaged "$runner" --socket "$sock" -- "$workload" --wait 30 "$@"
}

echo "running workloads..."
run_modes "sparse $sparse_size" sparse "$sparse_size"
run_modes "dense-seq $dense_size" dense-seq "$dense_size"
run_modes "dense-rand $dense_size" dense-rand "$dense_size"

echo
echo "never = MADV_NOHUGEPAGE (4 KiB pages), always = MADV_HUGEPAGE (THP at fault time),"
echo "hugepaged = the same unmodified program under hugepaged-run."
echo "sparse touches 1 page of every 2 MiB region; dense writes every page."
echo "coverage = AnonHugePages / RSS of the mapping; populate = time to touch the pages;"
echo "to-huge = further time until 99% of the mapping was huge (- = not reached)."
echo
printf '%-16s %-10s %10s %12s %9s %11s %9s %10s\n' case mode "RSS MiB" "AnonHuge MiB" "cover %" "populate s" "to-huge s" promotions
printf '%s\n' "${rows[@]}"
