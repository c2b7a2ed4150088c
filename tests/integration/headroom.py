#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""hugepaged never causes an OOM kill, holds promotions back under memory
pressure, and keeps to a bloat cap.

Headroom: in a memory cgroup limited to 768 MiB, hp-workload maps 3 GiB and
writes 70 pages in every 2 MiB region (about 420 MiB at 4 KiB). At 4 KiB it
fits; with MADV_HUGEPAGE the kernel's THP at fault time needs 3 GiB and the
run is OOM-killed (reported, not a failure of this test). Under hugepaged it
must exit 0 with its data intact and no OOM kill in the cgroup, with some
regions huge and the rest held back for headroom. The cgroup is v2 where
the memory controller is on a v2 hierarchy, else v1 (a v2 run where the
host has none is reported as not possible here).

Pressure: with LowMemAvailable= set 1.5 GiB under what is available now, a
memory hog of 3 GiB raises the pressure level; a workload whose regions
reach the threshold then gets no promotion (held back for pressure), with
its data intact; once the hog is gone the level falls and the same workload
gets its regions promoted again.

Bloat: with MaxBloatPerClient=0, regions with 100 of 512 pages in use stay
at 4 KiB (held back for bloat) and regions written in full become huge.
"""

import os
import signal
import subprocess
import time

import hptest

M = 1 << 20
LIMIT = 768 * M


class Cgroup:
    """A child memory cgroup with a limit; removed (its processes killed) on close."""

    def __init__(self, limit, v2):
        self.v2 = v2
        self.base = None
        if v2:
            for base in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
                try:
                    with open(os.path.join(base, "cgroup.controllers")) as f:
                        if "memory" in f.read().split():
                            self.base = base
                            break
                except OSError:
                    pass
            if not self.base:
                raise hptest.Skip("no v2 hierarchy with the memory controller")
            try:
                with open(os.path.join(self.base, "cgroup.subtree_control"), "w") as f:
                    f.write("+memory")
            except OSError:
                pass
        else:
            self.base = "/sys/fs/cgroup/memory"
            if not os.path.exists(os.path.join(self.base, "memory.limit_in_bytes")):
                raise hptest.Skip("no v1 memory controller at /sys/fs/cgroup/memory")
        self.path = os.path.join(self.base, f"hp-headroom-{os.getpid()}-{'v2' if v2 else 'v1'}")
        os.mkdir(self.path)
        if v2:
            self.write("memory.max", str(limit))
            if os.path.exists(os.path.join(self.path, "memory.swap.max")):
                self.write("memory.swap.max", "0")
        else:
            self.write("memory.limit_in_bytes", str(limit))
            if os.path.exists(os.path.join(self.path, "memory.memsw.limit_in_bytes")):
                self.write("memory.memsw.limit_in_bytes", str(limit))

    def write(self, name, value):
        with open(os.path.join(self.path, name), "w") as f:
            f.write(value)

    def oom_kills(self):
        name = "memory.events" if self.v2 else "memory.oom_control"
        try:
            with open(os.path.join(self.path, name)) as f:
                for line in f:
                    k, _, v = line.partition(" ")
                    if k == "oom_kill":
                        return int(v)
        except OSError:
            pass
        return 0

    def argv(self, argv):
        """argv run inside the cgroup (the shell joins it, then execs)."""
        procs = os.path.join(self.path, "cgroup.procs")
        return ["sh", "-c", f'echo $$ > "{procs}" && exec "$@"', "sh", *argv]

    def close(self):
        procs = os.path.join(self.path, "cgroup.procs")
        for _ in range(100):
            try:
                with open(procs) as f:
                    pids = [int(x) for x in f.read().split()]
            except OSError:
                pids = []
            if not pids:
                break
            for p in pids:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
        for _ in range(100):
            try:
                os.rmdir(self.path)
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.05)


def daemon_with(ctx, name, config):
    d = hptest.Daemon(ctx, [], name)
    with open(d.config, "w") as f:
        f.write(config)
    ctx.daemons.append(d)
    d.start()
    return d


SPARSE_70 = ["--per-region", "70", "--settle", "0", "sparse", "3G"]


def headroom_case(ctx, d, v2):
    label = "cgroup v2" if v2 else "cgroup v1"
    try:
        cg = Cgroup(LIMIT, v2)
    except hptest.Skip as e:
        hptest.log(f"{label}: not possible here ({e}); that part is left out")
        return
    try:
        r = hptest.run(cg.argv([ctx.paths.workload, "--advise", "nohuge", *SPARSE_70]), timeout=300)
        ctx.expect(r.rc == 0 and r.int("mismatches") == 0,
                   f"{label}, 4 KiB pages: exits 0 with data intact (rc {r.rc})")
        four_k = r.int("rss_bytes") if r.rc == 0 else 0
        kills = cg.oom_kills()
        r = hptest.run(cg.argv([ctx.paths.workload, "--advise", "huge", *SPARSE_70]), timeout=300)
        hptest.log(f"{label}, MADV_HUGEPAGE: exit status {r.rc}, {cg.oom_kills() - kills} OOM kill(s) "
                   f"(THP at fault time needs 3 GiB; reported, not checked)")

        kills = cg.oom_kills()
        r = hptest.run(cg.argv(ctx.managed(d.socket, SPARSE_70)), timeout=300)
        ctx.require(r.rc == 0, f"{label}, hugepaged: exits 0 (got {r.rc}){'' if r.rc == 0 else r.describe()}")
        ctx.expect(r.int("mismatches") == 0 and r.int("zero_sample_mismatches") == 0,
                   f"{label}, hugepaged: data intact ({r.kv['mismatches']} mismatches)")
        ctx.expect(cg.oom_kills() == kills, f"{label}, hugepaged: no OOM kill in the cgroup")
        huge, rss = r.int("anon_huge_bytes"), r.int("rss_bytes")
        stats = d.client_stats(r.int("pid"))
        ctx.require(stats is not None, f"{label}: the daemon logged the client's counters")
        ctx.expect(stats.get("promotions", 0) > 0 and huge >= 100 * M,
                   f"{label}, hugepaged: promoted {stats.get('promotions')} regions, "
                   f"AnonHugePages {huge / M:.0f} MiB >= 100 MiB")
        ctx.expect(stats.get("skipped_headroom", 0) > 0,
                   f"{label}, hugepaged: held {stats.get('skipped_headroom')} regions back for headroom")
        ctx.expect(rss <= LIMIT, f"{label}, hugepaged: Rss {rss / M:.0f} MiB within the {LIMIT // M} MiB limit "
                   f"(4 KiB: {four_k / M:.0f} MiB)")
    finally:
        cg.close()


def mem_available():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise hptest.Failure("no MemAvailable in /proc/meminfo")


def hugetlb_under_pressure(ctx, d):
    """The pool does not grow under pressure: a MAP_HUGETLB program gets what
    the kernel gives it without the daemon, and never waits for ever."""
    prog, nr = os.environ.get("HP_HUGETLB", ""), "/proc/sys/vm/nr_hugepages"
    if not prog or not os.path.exists(nr):
        hptest.log("hugetlb under pressure: no hp-hugetlb or no 2 MiB huge pages; left out")
        return
    with open(nr) as f:
        orig = int(f.read())
    try:
        with open(nr, "w") as f:
            f.write("0\n")
        for args, label in ((["32M"], "reserved"), (["--noreserve", "32M"], "MAP_NORESERVE")):
            plain = hptest.run([prog, *args], timeout=60)
            r = hptest.run([ctx.paths.run, "--socket", d.socket, "--", prog, *args], timeout=60)
            ctx.expect(r.rc == plain.rc and r.kv.get("mmap_errno") == plain.kv.get("mmap_errno"),
                       f"under pressure, hugetlb {label}: as without the daemon (rc {r.rc} vs {plain.rc}, "
                       f"{r.kv.get('mmap_errno')} vs {plain.kv.get('mmap_errno')})")
        with open(nr) as f:
            ctx.expect(int(f.read()) == 0, "under pressure the hugetlb pool did not grow")
    finally:
        with open(nr, "w") as f:
            f.write(f"{orig}\n")


def pressure_case(ctx):
    low = (mem_available() - 1536 * M) // (2 * M) * (2 * M)
    ctx.require(low > 1024 * M, f"enough memory for the pressure case ({mem_available() // M} MiB available)")
    d = daemon_with(ctx, "pressure", f"[Pressure]\nLowMemAvailable={low // M}M\n")
    if os.path.exists("/proc/pressure/memory"):
        # the socket comes before the backends' start logs its trigger: wait for the line
        deadline = time.monotonic() + 30
        while "memory pressure: PSI trigger (" not in d.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        ctx.expect("memory pressure: PSI trigger (" in d.log(),
                   "the host has PSI: the daemon armed its trigger on /proc/pressure/memory")
    work = ["--per-region", "100", "--settle", "0", "sparse", "256M"]

    hog = hptest.spawn(["python3", "-c", "import sys, time\nb = bytearray(3 << 30)\nfor i in range(0, len(b), 4096):"
                        "\n    b[i] = 1\nprint('held', flush=True)\ntime.sleep(600)"], stdout=subprocess.PIPE)
    try:
        ctx.require(hog.stdout.readline().strip() == b"held", "the memory hog holds 3 GiB")
        end = time.monotonic() + 10
        while "memory pressure none -> " not in d.log() and time.monotonic() < end:
            time.sleep(0.1)
        ctx.require("memory pressure none -> " in d.log(), "the daemon saw the pressure rise")
        r = hptest.run(ctx.managed(d.socket, work), timeout=120)
        ctx.expect(r.rc == 0 and r.int("mismatches") == 0, f"under pressure: data intact (rc {r.rc})")
        stats = d.client_stats(r.int("pid")) or {}
        ctx.expect(stats.get("promotions", -1) == 0 and stats.get("skipped_pressure", 0) > 0,
                   f"under pressure: no promotion ({stats.get('promotions')}), "
                   f"{stats.get('skipped_pressure')} regions held back for pressure")
        hugetlb_under_pressure(ctx, d)
    finally:
        hptest.kill_tree(hog)
        hog.wait()
    end = time.monotonic() + 30
    while " -> none" not in d.log() and time.monotonic() < end:
        time.sleep(0.2)
    ctx.require(" -> none" in d.log(), "the level falls once the hog is gone")
    r = hptest.run(ctx.managed(d.socket, work), timeout=120)
    stats = d.client_stats(r.int("pid")) or {}
    ctx.expect(r.rc == 0 and r.int("mismatches") == 0 and stats.get("promotions", 0) > 0,
               f"after the pressure: data intact and regions promoted again ({stats.get('promotions')})")


def bloat_case(ctx):
    d = daemon_with(ctx, "bloat", "[Budgets]\nMaxBloatPerClient=0\n")
    r = hptest.run(ctx.managed(d.socket, ["--per-region", "100", "--settle", "0", "sparse", "128M"]), timeout=120)
    stats = d.client_stats(r.int("pid")) or {}
    ctx.expect(r.rc == 0 and r.int("mismatches") == 0, f"bloat cap 0, 100 of 512 pages: data intact (rc {r.rc})")
    ctx.expect(stats.get("promotions", -1) == 0 and r.int("anon_huge_bytes") == 0
               and stats.get("skipped_bloat", 0) > 0,
               f"bloat cap 0: partly used regions stay at 4 KiB (promotions {stats.get('promotions')}, "
               f"held back {stats.get('skipped_bloat')}, AnonHugePages {r.int('anon_huge_bytes')})")
    r = hptest.run(ctx.managed(d.socket, ["--wait", "30", "dense-seq", "64M"]), timeout=120)
    stats = d.client_stats(r.int("pid")) or {}
    ctx.expect(r.rc == 0 and r.float("huge_pct") >= 90 and stats.get("bloat_pages", -1) == 0,
               f"bloat cap 0: regions written in full become huge ({r.kv.get('huge_pct')}% huge, "
               f"bloat {stats.get('bloat_pages')} pages)")


def test(ctx):
    d = daemon_with(ctx, "headroom", "")
    headroom_case(ctx, d, v2=False)
    headroom_case(ctx, d, v2=True)
    bloat_case(ctx)
    pressure_case(ctx)


if __name__ == "__main__":
    hptest.main(test)
