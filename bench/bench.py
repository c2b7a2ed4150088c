#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""bench.py: the benchmark runner behind bench/run.sh (see BENCH.md).

Runs every case (S1-S10, and F1: fork latency) under the kernel's THP baselines (never, always,
khugepaged) and under hugepaged-run, on the same unmodified workload
(bench/hp-bench.c), and S12 on real programs from Debian (python3, redis-server,
sort), repeats each run and takes the median, and prints one
table: case, metric, baselines, hugepaged, ratio, target, PASS/MISS. The same
goes to --json FILE.

Each case gets a fresh daemon on a private socket (--bus none); the served
faults, promotions and latencies of a hugepaged run come from the daemon's
"client PID (comm) gone (...)" log line.

Owns, and restores on every exit path: its daemons, the memory cgroup of S6,
vm.nr_hugepages for S8. Leaves khugepaged's settings alone (S5 compares with
its defaults). Needs root. Python 3 standard library only.
"""
import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

GiB = 1 << 30
MiB = 1 << 20
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASES = ["S1", "S1r", "S2", "S3", "S4", "S5", "S6", "S7", "S8", "S9", "S10", "S12", "S14", "F1"]

# Sizes and durations per preset. full: BENCH.md's sizes (<= 15 min on 2
# cores); quick: scaled down (<= 3 min); smoke: tiny, for the test suite only
# (its numbers mean nothing).
PRESETS = {
    "full": dict(run_timeout=300, repeat=3, sparse=8 * GiB, dense=4 * GiB, mixed=8 * GiB, updates=10,
                 khugepaged_stop=120, forkfit_limit=4 * GiB, forkfit_child=2 * GiB,
                 forkfit_max=64, lat_size=64 * MiB, lat_size_many=16 * MiB, lat_clients=64,
                 lat_threads=16, hugetlb=2 * GiB, scale_clients=256, scale_ranges=16, warm=10 * GiB,
                 headroom_limit=768 * MiB, headroom_size=3 * GiB,
                 fork_size=1 * GiB, fork_churn=64 * MiB, forks=200,
                 py_size=1 * GiB, redis_keys=1000000, redis_requests=1000000, sort_lines=4000000,
                 pg_buffers=1 * GiB, pg_scale=62, pg_seconds=10, pg_repeat=3),
    "quick": dict(run_timeout=120, repeat=3, sparse=1 * GiB, dense=512 * MiB, mixed=1 * GiB, updates=1,
                  khugepaged_stop=10, forkfit_limit=1 * GiB, forkfit_child=512 * MiB,
                  forkfit_max=48, lat_size=16 * MiB, lat_size_many=4 * MiB, lat_clients=64,
                  lat_threads=16, hugetlb=512 * MiB, scale_clients=256, scale_ranges=16, warm=2 * GiB,
                  headroom_limit=768 * MiB, headroom_size=3 * GiB,
                  fork_size=1 * GiB, fork_churn=64 * MiB, forks=100,
                  py_size=1 * GiB, redis_keys=1000000, redis_requests=300000, sort_lines=2000000,
                  pg_buffers=256 * MiB, pg_scale=16, pg_seconds=5, pg_repeat=3),
    "smoke": dict(run_timeout=120, repeat=1, sparse=64 * MiB, dense=64 * MiB, mixed=64 * MiB, updates=0.1,
                  khugepaged_stop=1, forkfit_limit=256 * MiB, forkfit_child=64 * MiB,
                  forkfit_max=4, lat_size=8 * MiB, lat_size_many=4 * MiB, lat_clients=4,
                  lat_threads=4, hugetlb=32 * MiB, scale_clients=8, scale_ranges=4, warm=256 * MiB,
                  headroom_limit=128 * MiB, headroom_size=512 * MiB,
                  fork_size=64 * MiB, fork_churn=16 * MiB, forks=10,
                  py_size=64 * MiB, redis_keys=20000, redis_requests=20000, sort_lines=50000,
                  pg_buffers=32 * MiB, pg_scale=2, pg_seconds=1, pg_repeat=1),
}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def size_arg(b):
    return f"{b // MiB}M"


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def div(a, b):
    return a / b if a is not None and b else None


def scale(a, f):
    return a * f if a is not None else None


def check(cond):
    """A target's verdict; a missing number (a failed run) is a miss."""
    try:
        return bool(cond())
    except (TypeError, ZeroDivisionError):
        return False


def parse_kv(text):
    """key=value lines; repeated keys (child_pid) become lists."""
    d = {}
    for line in text.splitlines():
        k, sep, v = line.partition("=")
        if not sep or not re.fullmatch(r"[a-z0-9_]+", k):
            continue
        try:
            val = float(v) if re.fullmatch(r"-?[0-9.]+", v) else v
        except ValueError:
            val = v
        if k == "child_pid":
            d.setdefault(k, []).append(int(val))
        else:
            d[k] = val
    return d


# ---- S12: real programs ----------------------------------------------------------

PR_SET_THP_DISABLE = 41
PROGRAM_MODES = ["never", "always", "hugepaged"]


def thp_disable():
    """preexec_fn of a `never` run: no THP for the process and what it
    execs (prctl PR_SET_THP_DISABLE is inherited), MADV_HUGEPAGE or not."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) != 0:
        os._exit(125)


# An `always` run on a host whose THP mode is madvise: the program's
# allocator advises MADV_HUGEPAGE on all it maps (glibc malloc's THP tunable;
# jemalloc's thp:always for redis-server), as THP `always` would apply.
ALWAYS_ENV = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1", "MALLOC_CONF": "thp:always"}


def memory_of(pid):
    """Rss and AnonHugePages of pid (bytes), or {} once it is gone."""
    out = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                p = line.split()
                if len(p) >= 3 and p[2] == "kB":
                    out[p[0][:-1]] = int(p[1]) * 1024
    except OSError:
        pass
    return out


def spread(runs, key):
    """min/median/max of key over runs, or None."""
    v = sorted(r[key] for r in runs if r.get(key) is not None)
    return (v[0], statistics.median(v), v[-1]) if v else None


def fmt_spread(t, f=1.0):
    return "-" if t is None else "/".join(f"{x * f:.0f}" if x * f >= 10 else f"{x * f:.2f}" for x in t)


class RunTimeout(RuntimeError):
    pass


def stacks(pid):
    """Where the threads of pid and its children are (kernel stacks), for a
    run that hangs."""
    out = []
    pids = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            pids += [int(x) for x in f.read().split()]
    except OSError:
        pass
    for p in pids:
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tids:
            base = f"/proc/{p}/task/{t}"
            try:
                with open(base + "/comm") as f:
                    comm = f.read().strip()
                with open(base + "/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
                with open(base + "/stack") as f:
                    stk = " < ".join(line.split()[1].split("+")[0] for line in f.read().splitlines()[:8])
            except OSError:
                continue
            out.append(f"  {p}/{t} {comm} {state}: {stk}")
    return "\n".join(out) + "\n"


GONE_RE = re.compile(r"client (\d+) \(([^)]*)\) gone \(([^)]*)\): (.*)$")


class Daemon:
    """A private hugepaged for one case: socket and log in a temp dir."""

    def __init__(self, bench, name, args=()):
        self.bench = bench
        self.dir = tempfile.mkdtemp(prefix=f"hp-bench-{name}-")
        self.sock = os.path.join(self.dir, "hugepaged.sock")
        self.log_path = os.path.join(self.dir, "hugepaged.log")
        self.logf = open(self.log_path, "w")
        cmd = [bench.daemon, "--socket", self.sock, "--foreground", "--log-level", "info",
               "--bus", "none", *args]
        self.proc = subprocess.Popen(cmd, stdout=self.logf, stderr=self.logf, stdin=subprocess.DEVNULL)
        bench.daemons.append(self)
        for _ in range(300):
            if self.proc.poll() is not None:
                raise RuntimeError(f"hugepaged exited at start:\n{self.text()[-2000:]}")
            if os.path.exists(self.sock):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                try:
                    s.connect(self.sock)
                    break
                except OSError:
                    pass
                finally:
                    s.close()
            time.sleep(0.02)
        else:
            raise RuntimeError("hugepaged did not listen within 6 s")
        self.pid = self.proc.pid

    def text(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def tracing(self):
        """'on', or why it is off, from the daemon's start-up lines."""
        t = self.text()
        m = re.search(r"fault tracing off: (.*)", t)
        if m:
            return "off: " + m.group(1).strip()
        if re.search(r"fault tracing on", t):
            return "on"
        return "off: this build has no tracing"

    def gone(self):
        """{pid: stats} of every hp-bench client that has gone."""
        out = {}
        for line in self.text().splitlines():
            m = GONE_RE.search(line)
            if not m or m.group(2) != "hp-bench":
                continue
            st = {k: int(v) for k, v in re.findall(r"([a-z0-9_]+)=(\d+)", m.group(4))}
            st["why"] = m.group(3)
            out[int(m.group(1))] = st
        return out

    def stats_of(self, pid, timeout=10):
        """The counters of the last connection of pid (any program) once it
        has gone, summed over its connections (hugepaged-run's probe and the
        program share a pid), or {}."""
        deadline = time.time() + timeout
        while True:
            lines = [GONE_RE.search(l) for l in self.text().splitlines() if f"client {pid} " in l]
            gone = [m for m in lines if m and int(m.group(1)) == pid]
            if gone and (gone[-1].group(2) != "hugepaged-run" or time.time() > deadline):
                out = {}
                for m in gone:
                    for k, v in re.findall(r"([a-z0-9_]+)=(\d+)", m.group(4)):
                        out[k] = out.get(k, 0) + int(v)
                return out
            if time.time() > deadline:
                return {}
            time.sleep(0.05)

    def wait_gone(self, pids, timeout=20):
        deadline = time.time() + timeout
        while True:
            g = self.gone()
            if all(p in g for p in pids) or time.time() > deadline:
                return {p: g[p] for p in pids if p in g}
            time.sleep(0.05)

    def cpu_ns(self):
        """On-CPU time of all the daemon's threads (schedstat: ns)."""
        total = 0
        try:
            for t in os.listdir(f"/proc/{self.pid}/task"):
                with open(f"/proc/{self.pid}/task/{t}/schedstat") as f:
                    total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
        return total

    def status_kb(self, key):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()
        if self in self.bench.daemons:
            self.bench.daemons.remove(self)

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


class Cgroup:
    """A child memory cgroup with a limit (v2 where the memory controller is
    on a v2 hierarchy, else v1). Removed on close, even after failures."""

    def __init__(self, limit):
        self.path = None
        self.v2 = False
        for base in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
            try:
                with open(os.path.join(base, "cgroup.controllers")) as f:
                    ctrl = f.read().split()
            except OSError:
                continue
            if "memory" in ctrl:
                self.v2 = True
                self.base = base
                break
        if not self.v2:
            if not os.path.exists("/sys/fs/cgroup/memory/memory.limit_in_bytes"):
                raise RuntimeError("no memory cgroup controller (neither v2 nor v1)")
            self.base = "/sys/fs/cgroup/memory"
        if self.v2:
            # the controller must be enabled for children of the base
            try:
                with open(os.path.join(self.base, "cgroup.subtree_control"), "w") as f:
                    f.write("+memory")
            except OSError:
                pass
        self.path = os.path.join(self.base, f"hp-bench-{os.getpid()}")
        os.mkdir(self.path)
        if self.v2:
            self._write("memory.max", str(limit))
            if os.path.exists(os.path.join(self.path, "memory.swap.max")):
                self._write("memory.swap.max", "0")
        else:
            self._write("memory.limit_in_bytes", str(limit))
        self.procs = os.path.join(self.path, "cgroup.procs")

    def _write(self, name, value):
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

    def close(self):
        if not self.path or not os.path.isdir(self.path):
            return
        for _ in range(100):
            try:
                with open(self.procs) as f:
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
                break
            except OSError:
                time.sleep(0.05)
        self.path = None


class Bench:
    def __init__(self, args):
        self.args = args
        self.p = dict(PRESETS[args.preset])
        if args.repeat:
            self.p["repeat"] = args.repeat
        build = args.build
        self.daemon = os.path.join(build, "daemon", "hugepaged")
        self.runner = os.path.join(build, "tools", "hugepaged-run")
        self.workload = os.path.join(build, "bench", "hp-bench")
        self.daemons = []
        self.cgroups = []
        self.restore = []       # (path, value) written back at exit
        self.results = {}
        self.rows = []
        self.notes = []
        self.tracing = None
        for f in (self.daemon, self.runner, self.workload):
            if not os.access(f, os.X_OK):
                raise SystemExit(f"bench: {f} is missing: build first (./test.sh --build-only)")

    # ---- running workloads ---------------------------------------------------

    def run(self, mode, cmd_args, daemon=None, cgroup=None, timeout=None, check=True):
        """One workload run in `mode`; returns its key=value output, plus the
        daemon's per-client statistics for hugepaged runs."""
        cmd = [self.workload]
        if mode in ("never", "always", "khugepaged"):
            cmd.append(f"--advise={mode}")
        cmd += cmd_args
        if mode == "hugepaged":
            cmd = [self.runner, "--socket", daemon.sock, "--"] + cmd
        pre = None
        if cgroup:
            procs = cgroup.procs

            def pre():
                with open(procs, "w") as f:
                    f.write(str(os.getpid()))
        cpu0 = daemon.cpu_ns() if daemon else 0
        t0 = time.time()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL, preexec_fn=pre, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout or self.p["run_timeout"])
        except subprocess.TimeoutExpired:
            diag = stacks(proc.pid) + (stacks(daemon.pid) if daemon else "")
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.communicate()
            tail = "\n".join(daemon.text().splitlines()[-20:]) if daemon else ""
            raise RunTimeout(f"{' '.join(cmd)}: did not finish in {timeout or self.p['run_timeout']} s\n"
                             f"{diag}\n--- daemon log ---\n{tail}")
        r = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
        if mode == "hugepaged" and "running unmanaged" in r.stderr:
            raise RuntimeError(f"hugepaged-run ran the workload unmanaged: "
                               f"{r.stderr.strip().splitlines()[0][:300]}")
        d = parse_kv(r.stdout)
        d["wall_s"] = time.time() - t0
        d["exit"] = r.returncode
        if r.returncode and r.stderr:
            d["stderr"] = r.stderr[-500:]
        if mode == "hugepaged":
            pids = [int(d["pid"])] + d.get("child_pid", []) if "pid" in d else []
            gone = daemon.wait_gone(pids)
            d["clients"] = len(gone)
            for k in ("faults_served", "pages_populated", "promotions", "promotions_failed",
                      "regions_huge", "bpf_faults", "bpf_collapse_ok", "bpf_collapse_failed",
                      "bpf_thp_splits", "hugetlb_faults", "hugetlb_prefilled"):
                vals = [g[k] for g in gone.values() if k in g]
                if vals:
                    d[k] = sum(vals)
            # latencies: the main client's, or the median over the children
            for k in ("fault_p50_ns", "fault_p99_ns", "bpf_fault_p50_ns", "bpf_fault_p99_ns"):
                vals = [g[k] for p, g in gone.items() if k in g and (g.get("faults_served", 0) > 0)]
                if vals:
                    d[k] = median(vals)
            d["daemon_cpu_ns"] = daemon.cpu_ns() - cpu0
        return d

    def runs(self, case, modes, cmd_args, daemon=None, repeat=None, run_mode=None, once=(), **kw):
        """Repeat `cmd_args` in every mode, interleaved (the host's state
        drifts: each mode sees the same drift), and keep all runs. Modes in
        `once` (reference columns no target depends on) run the first time only."""
        res = self.results.setdefault(case, {"runs": {}, "median": {}})
        for i in range(repeat or self.p["repeat"]):
            for mode in modes:
                if i > 0 and mode in once:
                    continue
                args = cmd_args(mode) if callable(cmd_args) else cmd_args
                log(f"  {case} {mode} #{i + 1}: hp-bench {' '.join(args)}")
                try:
                    d = self.run(run_mode(mode) if run_mode else mode, args, daemon=daemon, **kw)
                except RunTimeout as e:
                    log(f"  {case} {mode}: {e}")
                    res.setdefault("failures", []).append(f"{mode}: {e}")
                    self.notes.append(f"{case} {mode} run #{i + 1} hung (killed after "
                                      f"{self.p['run_timeout']} s); its kernel stacks are in the JSON")
                    continue
                res["runs"].setdefault(mode, []).append(d)
        for mode in modes:
            rs = res["runs"].get(mode, [])
            keys = {k for r in rs for k, v in r.items() if isinstance(v, (int, float))}
            res["median"][mode] = {k: median([r.get(k) for r in rs]) for k in keys}
        return res["median"]

    # ---- the table -----------------------------------------------------------

    def row(self, case, metric, base, hp, ratio, ratio_of, target, ok, unit="", note=""):
        status = "N/A" if ok is None else ("PASS" if ok else "MISS")
        self.rows.append(dict(case=case, metric=metric, unit=unit, baselines=base, hugepaged=hp,
                              ratio=ratio, ratio_of=ratio_of, target=target, status=status, note=note))

    # ---- cases ---------------------------------------------------------------

    def case_s1(self, d):
        m = self.runs("S1", ["never", "always", "hugepaged"], ["sparse", size_arg(self.p["sparse"])], daemon=d)
        never, always, hp = (m[k].get("rss_bytes") for k in ("never", "always", "hugepaged"))
        base = {"never": scale(never, 1 / MiB), "always": scale(always, 1 / MiB)}
        self.row("S1", "sparse RSS", base, scale(hp, 1 / MiB), div(hp, never), "never", "<= 1.10x never",
                 check(lambda: hp <= 1.10 * never), "MiB")
        self.row("S1", "always RSS / hugepaged RSS", base, scale(hp, 1 / MiB), div(always, hp), "always/hp",
                 ">= 100", check(lambda: always / hp >= 100), "MiB")

    def case_s1r(self, d):
        m = self.runs("S1r", ["never", "always", "hugepaged"],
                      ["--per-region=0", "--random-max=32", "sparse", size_arg(self.p["sparse"])], daemon=d)
        never, always, hp = (m[k].get("rss_bytes") for k in ("never", "always", "hugepaged"))
        self.row("S1r", "sparse 1..32 pages RSS", {"never": scale(never, 1 / MiB), "always": scale(always, 1 / MiB)},
                 scale(hp, 1 / MiB), div(hp, never), "never", "<= 1.10x never",
                 check(lambda: hp <= 1.10 * never), "MiB")

    def dense_args(self, order):
        return [f"--updates={self.p['updates']}", "--wait=10", order, size_arg(self.p["dense"])]

    def case_dense(self, case, order, d):
        # 4 KiB faults over GiBs take long: the never column (a reference) runs once
        m = self.runs(case, ["never", "always", "hugepaged"], self.dense_args(order), daemon=d, once=("never",))
        nv, al, hp = m["never"], m["always"], m["hugepaged"]
        base = lambda k, f=1.0: {"never": scale(nv.get(k), f), "always": scale(al.get(k), f)}
        limit = 1.5 if case == "S2" else 3.0
        hp_pop, al_pop = hp.get("populate_ms"), al.get("populate_ms")
        note = ""
        if hp.get("faults_served"):
            note = (f"{hp['faults_served']:.0f} served faults, {hp.get('promotions', 0):.0f} promotions; "
                    f"daemon CPU {hp.get('daemon_cpu_ns', 0) / 1e6:.0f} ms")
        self.row(case, "populate", base("populate_ms"), hp_pop, div(hp_pop, al_pop), "always",
                 f"<= {limit}x always", check(lambda: hp_pop <= limit * al_pop), "ms", note=note)
        after = hp.get("cover_after_ms")
        if case == "S2":
            cov = hp.get("coverage_pct")
            self.row(case, "THP coverage", base("coverage_pct"), cov, None, "", ">= 99%",
                     check(lambda: cov >= 99), "%")
        else:
            self.row(case, "99% coverage after populate", base("cover_after_ms"), after, None, "",
                     "<= 1000 ms", check(lambda: 0 <= after <= 1000), "ms",
                     note="" if after is None or after >= 0 else "99% not reached")
        hu, au = hp.get("updates_per_s"), al.get("updates_per_s")
        self.row(case, "random updates", base("updates_per_s", 1e-6), scale(hu, 1e-6), div(hu, au), "always",
                 ">= 0.97x always", check(lambda: hu >= 0.97 * au), "M/s")
        if case == "S2":
            pages = scale(hp.get("rss_bytes"), 1 / 4096)
            per = div(pages, hp.get("faults_served"))
            self.row("S7", "sequential: pages per served fault", {}, per, None, "", ">= 16",
                     check(lambda: per >= 16), "pages",
                     note=f"{hp.get('faults_served') or 0:.0f} served faults for {pages or 0:.0f} pages (S2)")

    def case_s4(self, d):
        m = self.runs("S4", ["never", "always", "hugepaged"],
                      [f"--updates={self.p['updates']}", "--wait=10", "--dense-every=4", "mixed",
                       size_arg(self.p["mixed"])], daemon=d, once=("never",))
        nv, al, hp = m["never"], m["always"], m["hugepaged"]
        ideal = nv.get("ideal_bytes") or hp.get("ideal_bytes")
        rss = hp.get("rss_bytes")
        self.row("S4", "mixed RSS", {"never": scale(nv.get("rss_bytes"), 1 / MiB),
                                     "always": scale(al.get("rss_bytes"), 1 / MiB)},
                 scale(rss, 1 / MiB), div(rss, ideal), "ideal", "<= 1.10x ideal",
                 check(lambda: rss <= 1.10 * ideal), "MiB",
                 note=f"ideal = dense at 2 MiB + sparse at 4 KiB = {(ideal or 0) / MiB:.0f} MiB; "
                      f"hugepaged: {hp.get('promotions') or 0:.0f} promotions")
        hu, au = hp.get("updates_per_s"), al.get("updates_per_s")
        self.row("S4", "random updates (dense part)",
                 {"never": scale(nv.get("updates_per_s"), 1e-6), "always": scale(au, 1e-6)},
                 scale(hu, 1e-6), div(hu, au), "always", ">= 0.97x always", check(lambda: hu >= 0.97 * au), "M/s")

    def case_s5(self, d):
        stop = self.p["khugepaged_stop"]
        m = self.runs("S5", ["khugepaged"],
                      ["--updates=0", f"--wait={stop}", "--cover=90", "dense-seq", size_arg(self.p["dense"])],
                      daemon=d, repeat=1)
        kh = m["khugepaged"]
        hp = self.results.get("S2", {}).get("median", {}).get("hugepaged")
        if not hp:
            hp = self.runs("S5", ["hugepaged"], ["--updates=0", "--wait=10", "dense-seq",
                                                 size_arg(self.p["dense"])], daemon=d)["hugepaged"]
        hp_t90 = hp.get("t90_ms")
        if hp_t90 is not None and hp_t90 < 0:
            hp_t90 = None
        kh_t90 = kh.get("t90_ms")
        note = ""
        if kh_t90 is not None and kh_t90 < 0:
            # not reached: extrapolate from the coverage at the stop (khugepaged
            # works at a constant rate: pages_to_scan per scan_sleep_millisecs)
            cov = kh["coverage_pct"] / 100
            kh_t90 = kh["populate_ms"] + stop * 1000 * 0.90 / cov if cov > 0 else float("inf")
            note = (f"khugepaged reached {kh['coverage_pct']:.1f}% in {stop} s; 90% extrapolated "
                    f"at that rate" + (" (no progress: never)" if cov <= 0 else ""))
        finite = kh_t90 not in (None, 0, float("inf"))
        self.row("S5", "time to 90% huge (from first touch)", {"khugepaged": scale(kh_t90, 1e-3)},
                 scale(hp_t90, 1e-3), div(hp_t90, kh_t90) if finite else None, "khugepaged",
                 "<= 0.01x khugepaged", check(lambda: hp_t90 * 100 <= kh_t90), "s", note=note)

    def case_s6(self, d):
        limit, child = self.p["forkfit_limit"], self.p["forkfit_child"]
        counts = {}
        for mode in ("always", "never", "hugepaged"):
            cg = Cgroup(limit)
            self.cgroups.append(cg)
            try:
                # enough children to prove 20x always, not to find the real maximum
                mx = self.p["forkfit_max"] if mode != "always" else 32
                log(f"  S6 {mode}: forkfit {size_arg(child)} in a {size_arg(limit)} cgroup")
                r = self.run(mode, [f"--max-children={mx}", "--child-timeout=60", "forkfit", size_arg(child)],
                             daemon=d, cgroup=cg)
            except RunTimeout as e:
                log(f"  S6 {mode}: {e}")
                self.results.setdefault("S6", {"runs": {}, "median": {}}).setdefault("failures", []).append(str(e))
                r = {"children_ok": None, "stopped_by": "hang"}
            finally:
                cg.close()
                self.cgroups.remove(cg)
            self.results.setdefault("S6", {"runs": {}, "median": {}})["runs"][mode] = [r]
            self.results["S6"]["median"][mode] = r
            counts[mode] = (r["children_ok"], r["stopped_by"])
        al, hp = counts["always"][0], counts["hugepaged"][0]
        capped = counts["hugepaged"][1] == "max_children"
        ratio = div(hp, al)
        self.row("S6", "children fitting the cgroup", {"always": al, "never": counts["never"][0]},
                 hp, ratio, "always", ">= 20x always", check(lambda: ratio >= 20), "",
                 note=f"limit {size_arg(limit)}, child {size_arg(child)}; hugepaged stopped by "
                      f"{counts['hugepaged'][1]}" + (" (at least this many fit)" if capped else ""))

    def case_s10(self, d):
        """BENCH.md S10: a memory cgroup, 70 random pages written in every
        2 MiB region: fits at 4 KiB, not at 2 MiB; hugepaged must exit 0."""
        limit, size = self.p["headroom_limit"], self.p["headroom_size"]
        margin = min(limit // 10, 64 * MiB)
        res = self.results.setdefault("S10", {"runs": {}, "median": {}})
        for mode in ("never", "always", "hugepaged"):
            cg = Cgroup(limit)
            self.cgroups.append(cg)
            try:
                kills = cg.oom_kills()
                log(f"  S10 {mode}: 70 pages per region of {size_arg(size)} in a {size_arg(limit)} cgroup")
                # no prewarm: its child would touch the whole size inside the cgroup
                r = self.run(mode, ["--no-prewarm", "--per-region=70", "sparse", size_arg(size)], daemon=d, cgroup=cg)
                r["oom_kills"] = cg.oom_kills() - kills
            except RunTimeout as e:
                log(f"  S10 {mode}: {e}")
                res.setdefault("failures", []).append(str(e))
                r = {"exit": None, "oom_kills": None}
            finally:
                cg.close()
                self.cgroups.remove(cg)
            res["runs"][mode] = [r]
            res["median"][mode] = r
        nv, al, hp = (res["median"][m] for m in ("never", "always", "hugepaged"))

        def status(r):
            return "killed" if r.get("oom_kills") else r.get("exit")
        self.row("S10", "exit status (OOM kills)", {"never": status(nv), "always": status(al)}, status(hp), None,
                 "", "hugepaged exits 0", check(lambda: hp["exit"] == 0 and hp["oom_kills"] == 0),
                 note=f"limit {size_arg(limit)}, {size_arg(size)} mapped, 70 pages per 2 MiB region")
        huge = hp.get("anon_huge_bytes")
        want = 100 * MiB * limit // (768 * MiB)
        self.row("S10", "huge bytes", {}, scale(huge, 1 / MiB), None, "", f">= {want // MiB} MiB",
                 check(lambda: hp["exit"] == 0 and huge >= want), "MiB")
        rss = hp.get("rss_bytes")
        self.row("S10", "RSS vs the limit less the margin", {"never": scale(nv.get("rss_bytes"), 1 / MiB)},
                 scale(rss, 1 / MiB), div(rss, limit - margin), "limit-margin", f"<= {(limit - margin) // MiB} MiB",
                 check(lambda: hp["exit"] == 0 and rss <= limit - margin), "MiB")

    def case_s7(self, d):
        p = self.p
        configs = [(1, 1, p["lat_size"]), (p["lat_threads"], 1, p["lat_size_many"]),
                   (1, p["lat_clients"], p["lat_size_many"])]
        modes = ["never", "floor-block", "floor-busy", "hugepaged"]
        for threads, clients, size in configs:
            case = f"S7 {threads}t x {clients}c"

            def args(mode, threads=threads, clients=clients, size=size):
                fm = mode if mode.startswith("floor") else "plain"
                return [f"--threads={threads}", f"--clients={clients}", f"--fault-mode={fm}",
                        "latency", size_arg(size)]

            # the floors serve their own faults: run plainly, not under a baseline
            m = self.runs(case, modes, args, daemon=d, run_mode=lambda mo: "plain" if mo.startswith("floor") else mo)
            fl, fb, hp, kn = m["floor-block"], m["floor-busy"], m["hugepaged"], m["never"]
            for q, limit in (("p50", 1.3), ("p99", 5)):
                key = f"lat_{q}_ns"
                base = {"never": scale(kn.get(key), 1e-3), "floor": scale(fl.get(key), 1e-3),
                        "busy floor": scale(fb.get(key), 1e-3)}
                h, f = hp.get(key), fl.get(key)
                note = ""
                if q == "p50" and hp.get("fault_p50_ns") is not None:
                    note = f"daemon-side (read to reply) p50 {hp['fault_p50_ns'] / 1000:.1f} us"
                self.row(case, f"served 4K fault {q}", base, scale(h, 1e-3), div(h, f), "floor",
                         f"<= {limit}x floor", check(lambda: h <= limit * f), "us", note=note)
            # the in-kernel histogram against the program's own clock
            b, h = hp.get("bpf_fault_p50_ns"), hp.get("lat_p50_ns")
            if b:
                r = div(h, b)
                self.row(case, "in-kernel (BPF) p50 vs program p50", {"program": scale(h, 1e-3)}, scale(b, 1e-3),
                         r, "program/bpf", "within 2x", check(lambda: 0.5 <= r <= 2), "us",
                         note="BPF: fault entry to the last kernel event before user space "
                              "(bucket upper bound); the program: around the touching instruction")

    def case_s8(self, d):
        """The kernel runs with the pages reserved in advance (as its users
        must); hugepaged runs with the pool as found, left to the daemon, which
        grows it for the program's mmap (pre-touching the pages it adds) and
        takes the pages back when the program ends."""
        size = self.p["hugetlb"]
        want = size // (2 * MiB)
        path = "/proc/sys/vm/nr_hugepages"

        def nr():
            with open(path) as f:
                return int(f.read())

        def set_nr(v):
            with open(path, "w") as f:
                f.write(str(v))
        orig = nr()
        self.restore.append((path, str(orig)))
        given_back = []
        last = [None]

        def pool_for(mode):
            if last[0] == "hugepaged":
                # the daemon gives its pages back on its own thread: wait for it
                end = time.monotonic() + 30
                while nr() != orig and time.monotonic() < end:
                    time.sleep(0.05)
                given_back.append(nr() == orig)
            last[0] = mode
            set_nr(orig + want if mode == "plain" else orig)
            return ["hugetlb", size_arg(size)]
        pool_for("plain")
        got = nr() - orig
        if got < want:
            self.row("S8", "hugetlb 2 MiB fault p50", {}, None, None, "", "<= 1.0x kernel", None, "us",
                     note=f"only {got} of {want} huge pages could be reserved")
            return
        log("  S8 warm-up (first touch of the huge pages on the host)")
        self.run("plain", ["hugetlb", size_arg(size)])
        m = self.runs("S8", ["plain", "hugepaged"], pool_for, daemon=d)
        pool_for("hugepaged")       # the last run's pages are back
        kn, hp = m["plain"], m["hugepaged"]
        managed = (hp.get("faults_served") or 0) > 0
        h, k = hp.get("fault2m_p50_ns"), kn.get("fault2m_p50_ns")
        note = "not managed" if not managed else (
            f"pool {orig} pages at start of each hugepaged run, grown by the daemon; "
            f"{hp.get('hugetlb_prefilled', 0)} of {want} pages filled ahead of the stream, "
            f"{hp.get('hugetlb_faults', 0)} faults served; daemon-side (read to reply) p50 "
            f"{(hp.get('fault_p50_ns') or 0) / 1000:.0f} us (a 2 MiB copy where the kernel clears); "
            f"pages given back after every run: {all(given_back)}")
        self.row("S8", "hugetlb 2 MiB fault p50", {"kernel hugetlb": scale(k, 1e-3)}, scale(h, 1e-3), div(h, k),
                 "kernel", "<= 1.0x kernel", check(lambda: h <= k) if managed else None, "us", note=note)
        # The whole first touch: both clear or copy every page, at the speed
        # of memory writes; the daemon only takes the copies off the faults.
        hm, km = hp.get("populate_ms"), kn.get("populate_ms")
        self.row("S8", "hugetlb populate (whole mapping)", {"kernel hugetlb": km}, hm, div(hm, km), "kernel", "-",
                 None, "ms", note="both bound by memory write bandwidth (2 MiB cleared or copied per page)")

    def case_s14(self, d):
        """Shared memory and the shmem backend. The kernel's 4 KiB fault in
        anonymous shared memory (shmem_enabled=never here) vs a fault the
        daemon serves with UFFDIO_CONTINUE from the region's reservation; and,
        in the hugepaged run, MADV_COLLAPSE of regions with 63 pages written:
        in place in the daemon's file vs the same in private anonymous memory
        (a new huge page, the pages copied), same run."""
        size = self.p.get("shmem", 16 * self.p["lat_size"])
        m = self.runs("S14", ["plain", "hugepaged"], ["shmem", size_arg(size)], daemon=d)
        kn, hp = m["plain"], m["hugepaged"]
        managed = (hp.get("collapse_shared_ok") or 0) > 0
        k, h = kn.get("shfault_p50_ns"), hp.get("shfault_p50_ns")
        self.row("S14", "shmem 4 KiB fault p50", {"kernel shmem": scale(k, 1e-3)}, scale(h, 1e-3), div(h, k),
                 "kernel", "-", None, "us",
                 note="not managed" if not managed else
                 f"a UFFDIO_CONTINUE round trip, no copy; p99 {(hp.get('shfault_p99_ns') or 0) / 1000:.0f} us "
                 f"(a region's first fault reserves its 2 MiB) vs kernel "
                 f"{(kn.get('shfault_p99_ns') or 0) / 1000:.0f} us")
        a, s = hp.get("collapse_anon_p50_ns"), hp.get("collapse_shared_p50_ns")
        self.row("S14", "in-place collapse vs anon collapse p50", {"anon collapse": scale(a, 1e-3)},
                 scale(s, 1e-3), div(a, s), "anon / in-place", ">= 5x faster",
                 check(lambda: a / s >= 5) if managed else None, "us",
                 note=f"{hp.get('collapse_shared_ok', 0)} of 32 shared regions collapsed in place; without the "
                      f"daemon MADV_COLLAPSE of shared memory fails (errno {kn.get('collapse_shared_errno')})")
        for name, fn in (("release", self.s14_release), ("postgres", self.s14_postgres)):
            try:
                fn()
            except Exception as e:     # one part failing must not hide the others
                log(f"  S14 {name} failed: {e}")
                self.results.setdefault(f"S14 {name}", {"runs": {}, "median": {}})["error"] = str(e)
                self.row("S14", f"{name}: (failed)", {}, None, None, "", "", False,
                         note=str(e).splitlines()[0][:200])

    def s14_release(self):
        """Memory after release: tests/hp-shmem maps 64 MiB of anonymous
        shared memory under hugepaged-run, writes one 4 KiB page per region
        of its first half and every page of its second half (each region's
        first fault reserves 2 MiB in the daemon's file); then memory
        pressure (LowMemAvailable=100% and a reload) makes the daemon punch
        the never-touched subpages: the file is left with the touched pages."""
        prog = os.path.join(self.args.build, "tests", "hp-shmem")
        res = self.results.setdefault("S14 release", {"runs": {}, "median": {}})
        if not os.access(prog, os.X_OK):
            res["skipped"] = f"{prog} is not built"
            self.row("S14", "memory after release", {}, None, None, "touched", "<= 1.10x touched", None, "MiB",
                     note=f"skipped: {prog} is not built (meson builds it with the tests)")
            return
        size = 64 * MiB
        half, regions = size // 2, size // 2 // (2 * MiB)
        touched = half + regions * 4096
        conf = tempfile.NamedTemporaryFile("w", prefix="hp-bench-S14-", suffix=".conf", delete=False)
        conf.close()
        d = Daemon(self, "S14-release", ["--config", conf.name])
        out = os.path.join(d.dir, "hp-shmem.out")

        def pressure(on):
            with open(conf.name, "w") as f:
                f.write("[Pressure]\nLowMemAvailable=100%\n" if on else "")
            d.proc.send_signal(signal.SIGHUP)

        def state():
            with open(out) as f:
                return f.read()
        try:
            with open(out, "w") as f:
                proc = subprocess.Popen([self.runner, "--socket", d.sock, "--", prog, f"{size // MiB}M"],
                                        stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True)
            try:
                end = time.monotonic() + self.p["run_timeout"]
                while "touched_file_bytes=" not in state() and proc.poll() is None and time.monotonic() < end:
                    time.sleep(0.1)
                before = parse_kv(state())
                if "touched_file_bytes" not in before:
                    raise RuntimeError(f"hp-shmem did not touch its memory: {state()[-300:]}")
                pressure(True)
                end = time.monotonic() + 60
                while "untouched subpages of shared reservations released" not in d.text() and \
                        time.monotonic() < end:
                    time.sleep(0.1)
                pressure(False)
                proc.send_signal(signal.SIGUSR1)
                proc.wait(self.p["run_timeout"])
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            kv = parse_kv(state())
            if proc.returncode or "released_file_bytes" not in kv:
                raise RuntimeError(f"hp-shmem exited with status {proc.returncode}: {state()[-300:]}")
            st = d.stats_of(int(kv["pid"]))
        finally:
            d.stop()
            if not self.args.keep_logs:
                d.cleanup()
            os.unlink(conf.name)
        r = {k: int(kv[k]) for k in ("touched_file_bytes", "released_file_bytes", "released_rss") if k in kv}
        r.update({k: v for k, v in st.items() if k.startswith("shmem_") or k == "pages_populated"})
        r["mismatches"], r["released_nonzero"] = int(kv.get("mismatches", -1)), int(kv.get("released_nonzero", -1))
        res["runs"]["hugepaged"] = [r]
        res["median"]["hugepaged"] = r
        held, rss = r.get("released_file_bytes"), r.get("released_rss")
        intact = r["mismatches"] == 0 and r["released_nonzero"] == 0
        self.row("S14", "memory after release", {"touched": scale(touched, 1 / MiB),
                                                 "reserved": scale(r.get("touched_file_bytes"), 1 / MiB)},
                 scale(held, 1 / MiB), div(held, touched), "touched", "<= 1.10x touched",
                 check(lambda: held <= 1.10 * touched and intact), "MiB",
                 note=f"{size // MiB} MiB of shared memory, {regions} regions dense and {regions} with one 4 KiB "
                      f"page touched: the file's blocks after the release (Rss {(rss or 0) / MiB:.1f} MiB), "
                      f"{r.get('shmem_subpages_punched', 0)} subpages punched; data intact: {intact}")

    def s14_postgres(self):
        """PostgreSQL 15 (Debian's) pgbench -S, 2 clients, shared_buffers
        pg_buffers, a data set of pg_scale read into them by pg_prewarm:
        plain (no hugepaged), under hugepaged-run with huge_pages=off (the
        shmem backend) and with huge_pages=on and vm.nr_hugepages=0 (the
        daemon grows the pool). One pgbench -i; each run starts the server
        on that data, prewarms, waits for the collapses and runs pgbench."""
        import pwd
        res = self.results.setdefault("S14 postgres", {"runs": {}, "median": {}})
        bindir = "/usr/lib/postgresql/15/bin"
        modes = ["plain", "hugepaged", "hugepaged huge_pages=on"]
        metrics = ["pgbench -S TPS (huge_pages=off)", "ShmemPmdMapped of the postmaster",
                   "pgbench -S TPS (huge_pages=on, empty pool)"]
        missing = [p for p in ("initdb", "postgres", "pg_ctl", "pg_isready", "pgbench", "psql")
                   if not os.access(os.path.join(bindir, p), os.X_OK)]
        why = None
        if missing:
            why = f"PostgreSQL 15 missing ({', '.join(missing)}; Debian postgresql-15)"
        elif not os.path.exists("/usr/lib/postgresql/15/lib/pg_prewarm.so"):
            why = "pg_prewarm missing (Debian postgresql-15)"
        else:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                why = "no postgres user (Debian postgresql-15 creates it)"
        if why:
            res["skipped"] = why
            for m in metrics:
                self.row("S14", f"postgres: {m}", {}, None, None, "", "", None, note="skipped: " + why)
            return
        sb, scl, secs = self.p["pg_buffers"], self.p["pg_scale"], self.p["pg_seconds"]
        nr_path = "/proc/sys/vm/nr_hugepages"

        def nr():
            with open(nr_path) as f:
                return int(f.read())

        def set_nr(v):
            with open(nr_path, "w") as f:
                f.write(str(v))
        nr0 = nr()
        self.restore.append((nr_path, str(nr0)))
        top = tempfile.mkdtemp(prefix="hp-bench-S14-pg-")
        os.chmod(top, 0o755)
        data, sock, bins = (os.path.join(top, x) for x in ("data", "run", "bin"))
        for p in (data, sock):
            os.mkdir(p, 0o700)
            os.chown(p, pw.pw_uid, pw.pw_gid)
        os.mkdir(bins, 0o755)
        # copies the postgres user can run, whatever the build tree's permissions
        runner = os.path.join(bins, "hugepaged-run")
        preload = os.path.join(bins, "libhugepaged-preload.so")
        shutil.copy2(self.runner, runner)
        shutil.copy2(os.path.join(self.args.build, "libclient", "libhugepaged-preload.so"), preload)
        for p in (runner, preload):
            os.chmod(p, 0o755)
        env = dict(os.environ, HUGEPAGED_PRELOAD=preload, LC_ALL="C")
        env.pop("MALLOC_PERTURB_", None)
        as_pg = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups", "--"]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = str(s.getsockname()[1])
        conn = ["-h", sock, "-p", port, "-U", "postgres"]
        psql = as_pg + [os.path.join(bindir, "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", *conn, "postgres"]
        pg_log = os.path.join(top, "postgres.log")
        d = None

        def sh(argv, what, timeout=None):
            r = subprocess.run(argv, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL,
                               timeout=timeout or self.p["run_timeout"] * 5)
            if r.returncode:
                raise RuntimeError(f"{what} exited with status {r.returncode}: {(r.stderr or r.stdout)[-300:]}")
            return r.stdout

        def start(mode):
            argv = [os.path.join(bindir, "postgres"), "-D", data, "-k", sock, "-p", port,
                    "-c", "listen_addresses=", "-c", f"shared_buffers={sb // MiB}MB", "-c", "fsync=off",
                    "-c", "max_connections=20", "-c", "huge_pages=" + ("on" if mode.endswith("=on") else "off")]
            if mode != "plain":
                argv = [runner, "--socket", d.sock, "--"] + argv
            with open(pg_log, "w") as lf:
                proc = subprocess.Popen(as_pg + argv, stdout=lf, stderr=lf, stdin=subprocess.DEVNULL, env=env,
                                        start_new_session=True)
            end = time.monotonic() + 120
            while subprocess.run(as_pg + [os.path.join(bindir, "pg_isready"), "-q", *conn], env=env).returncode:
                if proc.poll() is not None or time.monotonic() > end:
                    with open(pg_log) as f:
                        raise RuntimeError(f"postgres ({mode}) did not start: {f.read()[-400:]}")
                time.sleep(0.2)
            with open(pg_log) as f:
                unmanaged = [l for l in f.read().splitlines() if "running unmanaged" in l]
            if mode != "plain" and unmanaged:
                stop(proc)
                raise RuntimeError(f"hugepaged-run ran postgres unmanaged: {unmanaged[-1][:300]}")
            return proc

        def stop(proc):
            subprocess.run(as_pg + [os.path.join(bindir, "pg_ctl"), "stop", "-D", data, "-m", "fast", "-w",
                                    "-t", "60"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

        def one(mode):
            if mode.endswith("=on"):
                set_nr(0)
            r = {"nr_hugepages_start": nr()}
            proc = start(mode)
            pm = proc.pid       # setpriv and hugepaged-run exec: the postmaster
            try:
                blocks = sh(psql + ["-c", "select pg_prewarm('pgbench_accounts') + "
                                          "pg_prewarm('pgbench_accounts_pkey')"], "pg_prewarm").strip()
                r["prewarmed_bytes"] = int(blocks) * 8192

                def pmd():
                    m = memory_of(pm)
                    return m.get("ShmemPmdMapped", 0) + m.get("FilePmdMapped", 0)
                # collapses run off the fault path: wait for them (a bound) until
                # they stop growing
                end, last, since = time.monotonic() + 60, -1, time.monotonic()
                while mode == "hugepaged" and time.monotonic() < end:
                    v = pmd()
                    if v != last:
                        last, since = v, time.monotonic()
                    elif time.monotonic() - since > 3 or v >= 0.9 * sb:
                        break
                    time.sleep(0.2)
                out = sh(as_pg + [os.path.join(bindir, "pgbench"), "-n", "-S", "-c", "2", "-j", "2", "-T", str(secs),
                                  *conn, "postgres"], "pgbench -S")
                m = re.search(r"tps = ([0-9.]+)", out)
                if not m or not re.search(r"number of failed transactions: 0\b", out):
                    raise RuntimeError(f"pgbench -S: {out[-300:]}")
                r["tps"] = float(m.group(1))
                mem = memory_of(pm)
                r["pmd_bytes"] = mem.get("ShmemPmdMapped", 0) + mem.get("FilePmdMapped", 0)
                r["hugetlb_bytes"] = mem.get("Shared_Hugetlb", 0) + mem.get("Private_Hugetlb", 0)
                r["nr_hugepages_running"] = nr()
            finally:
                stop(proc)
            if mode.endswith("=on"):
                end = time.monotonic() + 30     # the daemon gives the pages back on its own thread
                while nr() != 0 and time.monotonic() < end:
                    time.sleep(0.05)
                r["nr_hugepages_after"] = nr()
                set_nr(nr0)
            return r
        try:
            sh(as_pg + [os.path.join(bindir, "initdb"), "-D", data, "-A", "trust", "-U", "postgres", "--no-sync"],
               "initdb")
            d = Daemon(self, "S14-postgres", ["--group", "postgres"])
            os.chmod(d.dir, 0o755)      # the postgres user connects to its socket
            log(f"  S14 postgres: pgbench -i -s {scl}")
            proc = start("plain")
            try:
                sh(as_pg + [os.path.join(bindir, "pgbench"), "-i", "-q", "-s", str(scl), *conn, "postgres"],
                   "pgbench -i")
                sh(psql + ["-c", "create extension pg_prewarm"], "create extension pg_prewarm")
            finally:
                stop(proc)
            for i in range(self.p["pg_repeat"]):
                for mode in modes:
                    log(f"  S14 postgres {mode} #{i + 1}")
                    try:
                        res["runs"].setdefault(mode, []).append(one(mode))
                    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
                        log(f"  S14 postgres {mode}: {e}")
                        res.setdefault("failures", []).append(f"{mode}: {e}")
            for mode in modes:
                rs = res["runs"].get(mode, [])
                keys = {k for r in rs for k, v in r.items() if isinstance(v, (int, float))}
                res["median"][mode] = {k: median([r.get(k) for r in rs]) for k in keys}
            clients = {}
            gone = [GONE_RE.search(l) for l in d.text().splitlines()]
            for m in gone:
                if m and m.group(2) == "postgres":
                    for k, v in re.findall(r"([a-z0-9_]+)=(\d+)", m.group(4)):
                        clients[k] = clients.get(k, 0) + int(v)
            res["daemon"] = clients
        finally:
            if d:
                d.stop()
                if not self.args.keep_logs:
                    d.cleanup()
            set_nr(nr0)
            shutil.rmtree(top, ignore_errors=True)
        med = res["median"]
        pl, hp, on = (med.get(m, {}) for m in modes)
        n = self.p["pg_repeat"]
        runs = f"median of {n} runs of {secs} s" if n > 1 else f"1 run of {secs} s"
        if n > 1:
            runs += " (TPS min/median/max: " + ", ".join(
                f"{m} {fmt_spread(spread(res['runs'].get(m, []), 'tps'))}" for m in modes) + ")"
        fill = (pl.get("prewarmed_bytes") or hp.get("prewarmed_bytes") or 0) / sb
        t, tp = hp.get("tps"), pl.get("tps")
        self.row("S14", "postgres: pgbench -S TPS (huge_pages=off)", {"plain": tp}, t, div(t, tp), "plain",
                 ">= 1.0x plain", check(lambda: t >= tp), "1/s",
                 note=f"PostgreSQL 15, 2 clients, shared_buffers {sb // MiB} MiB, scale {scl}, accounts and their "
                      f"index prewarmed ({fill:.0%} of shared_buffers); {runs}; under hugepaged-run the "
                      f"shared memory is the shmem backend's")
        pmd = hp.get("pmd_bytes")
        self.row("S14", "postgres: ShmemPmdMapped of the postmaster", {"plain": scale(pl.get("pmd_bytes"), 1 / MiB)},
                 scale(pmd, 1 / MiB), div(pmd, sb), "shared_buffers", ">= 0.90x shared_buffers",
                 check(lambda: pmd >= 0.9 * sb), "MiB",
                 note=f"ShmemPmdMapped + FilePmdMapped (smaps_rollup) after pgbench; the prewarmed data is "
                      f"{fill:.0%} of shared_buffers, {res['daemon'].get('shmem_promotions', 0)} in-place "
                      f"collapses (postmaster and backends), {res['daemon'].get('shmem_reservations_nohuge', 0)} reservations "
                      f"without a huge page")
        to = on.get("tps")
        back = [r.get("nr_hugepages_after") for r in res["runs"].get(modes[2], [])]
        self.row("S14", "postgres: pgbench -S TPS (huge_pages=on, empty pool)", {"plain": tp}, to, div(to, tp),
                 "plain", ">= 1.0x plain", check(lambda: to >= tp), "1/s",
                 note=f"vm.nr_hugepages 0 at start, grown by the daemon ({on.get('nr_hugepages_running')} while "
                      f"running, {(on.get('hugetlb_bytes') or 0) / MiB:.0f} MiB hugetlb in the postmaster); "
                      f"back to 0 after every run: {bool(back) and all(b == 0 for b in back)} ({back}); "
                      f"restored to {nr0} after")

    def case_s9(self, d):
        n = self.p["scale_clients"]
        one_name, many_name = "1 client", f"{n} clients"

        def args(mode):
            clients = 1 if mode == one_name else n
            return [f"--clients={clients}", f"--ranges={self.p['scale_ranges']}", f"--daemon-pid={d.pid}",
                    "--child-timeout=120", "scale"]
        hp_mode = lambda mode: "hugepaged"
        self.runs("S9", [one_name], args, daemon=d, run_mode=hp_mode)
        m = self.runs("S9", [many_name], args, daemon=d, run_mode=hp_mode, repeat=1)
        # The same processes with no daemon: how long the kernel alone makes
        # a touch wait when this many processes share the CPUs.
        kern_name = f"kernel, {n} clients"
        mk = self.runs("S9", [kern_name], args, run_mode=lambda mode: "plain", repeat=1)
        res = self.results["S9"]
        for name in (one_name, many_name):
            rs = res["runs"].get(name, [])
            for r in rs:
                r["cpu_per_fault_ns"] = div(r.get("daemon_cpu_ns"), r.get("faults_served"))
            m[name]["cpu_per_fault_ns"] = median([r["cpu_per_fault_ns"] for r in rs])
        one, many = m[one_name], m[many_name]
        res["median"]["hugepaged"] = many
        rss = many.get("daemon_rss_kb")
        self.row("S9", f"daemon RSS, {n} clients x {self.p['scale_ranges']} ranges",
                 {"1 client": scale(one.get("daemon_rss_kb"), 1 / 1024)}, scale(rss, 1 / 1024), None, "",
                 "< 64 MiB", check(lambda: rss < 64 * 1024), "MiB")
        worst, kworst = many.get("worst_fault_ns"), mk[kern_name].get("worst_fault_ns")
        self.row("S9", "worst fault wait", {"1 client": scale(one.get("worst_fault_ns"), 1e-6),
                                            f"kernel {n}": scale(kworst, 1e-6)},
                 scale(worst, 1e-6), div(worst, kworst), "kernel", "<= 1.5x kernel", check(lambda: div(worst, kworst) <= 1.5), "ms",
                 note=f"{many.get('faults_served') or 0:.0f} served faults, {many.get('promotions') or 0:.0f} "
                      f"promotions over {n} clients; kernel {n}: the same {n} processes without hugepaged "
                      f"(their worst touch includes waiting for a CPU among {n} runnable processes on "
                      f"{os.cpu_count()} CPUs)")
        c1, cn = one.get("cpu_per_fault_ns"), many.get("cpu_per_fault_ns")
        ratio = div(cn, c1)
        self.row("S9", "daemon CPU per served fault", {"1 client": scale(c1, 1e-3)}, scale(cn, 1e-3), ratio,
                 "1 client", "flat: <= 1.5x 1 client", check(lambda: ratio <= 1.5), "us")

    def case_f1(self, d):
        """Fork latency: a process with fork_size written forks children that
        exit at once. hugepaged against the kernel's THP modes; `always` has
        the same huge pages, so it is the baseline of the ratios."""
        modes = ["never", "always", "hugepaged"]
        forks = self.p["forks"]
        m = self.runs("F1", modes, [f"--forks={forks}", "fork", size_arg(self.p["fork_size"])], daemon=d)
        nv, al, hp = m["never"], m["always"], m["hugepaged"]
        us = lambda r, k: scale(r.get(k), 1e-3)
        base = lambda k: {"never": us(nv, k), "always": us(al, k)}
        f, fa = hp.get("fork_p50_ns"), al.get("fork_p50_ns")
        self.row("F1", f"fork() p50, {size_arg(self.p['fork_size'])} written (parent)", base("fork_p50_ns"),
                 us(hp, "fork_p50_ns"), div(f, fa), "always", "<= 1.5x always + 100 us",
                 check(lambda: f <= 1.5 * fa + 100e3), "us",
                 note="never: the same memory in 4 KiB pages (page tables copied at fork); always: in huge "
                      "pages like hugepaged's; the parent never waits on the daemon")
        r, ra = hp.get("ready_p50_ns"), al.get("ready_p50_ns")
        self.row("F1", "fork() to child running p50", base("ready_p50_ns"), us(hp, "ready_p50_ns"), div(r, ra),
                 "always", "-", None, "us",
                 note="the child's fork() returns once it has its own connection and its parent's ranges "
                      "(HP_MSG_INHERIT), or unmanaged 250 ms after the fork at most")
        mc = self.runs("F1 churn", modes, [f"--forks={forks * 5}", "fork", size_arg(self.p["fork_churn"])],
                       daemon=d)
        c, ca = mc["hugepaged"].get("children_per_s"), mc["always"].get("children_per_s")
        self.row("F1", f"fork+exit+reap rate, {size_arg(self.p['fork_churn'])} written",
                 {"never": mc["never"].get("children_per_s"), "always": ca}, c, div(c, ca), "always",
                 ">= 0.90x always", check(lambda: c >= 0.9 * ca), "1/s")


    # ---- S12: real programs --------------------------------------------------

    def program(self, mode, argv, daemon, env=None, timeout=None, during=None):
        """Run argv (a real program) in `mode`; returns its process, started.
        The memory it will take is touched and freed first (the host's first
        touch, hp-bench warm), as every case does right before timing."""
        cmd = list(argv)
        if mode == "hugepaged":
            cmd = [self.runner, "--socket", daemon.sock, "--"] + cmd
        e = dict(os.environ)
        e.pop("MALLOC_PERTURB_", None)
        if mode == "always":
            e.update(ALWAYS_ENV)
        if env:
            e.update(env)
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL, env=e, start_new_session=True,
                                preexec_fn=thp_disable if mode == "never" else None)

    def prewarm(self, size):
        self.run("plain", ["warm", size_arg(size)])

    def finish(self, proc, what, timeout=None):
        try:
            out, err = proc.communicate(timeout=timeout or self.p["run_timeout"])
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise RunTimeout(f"{what}: did not finish in {timeout or self.p['run_timeout']} s")
        if proc.returncode:
            raise RuntimeError(f"{what} exited with status {proc.returncode}: {err.strip()[-300:]}")
        return out

    def served(self, r, mode, d, pid):
        """r with the daemon's counters of a hugepaged run of pid."""
        if mode == "hugepaged":
            st = d.stats_of(pid)
            for k in ("faults_served", "promotions", "promotions_failed", "bpf_fault_p50_ns"):
                if k in st:
                    r[k] = st[k]
        return r

    def program_runs(self, case, one):
        """one(mode) -> dict, for every mode, interleaved, `repeat` times."""
        res = self.results.setdefault(case, {"runs": {}, "median": {}})
        for i in range(self.p["repeat"]):
            for mode in PROGRAM_MODES:
                log(f"  {case} {mode} #{i + 1}")
                try:
                    res["runs"].setdefault(mode, []).append(one(mode))
                except (RunTimeout, RuntimeError, OSError) as e:
                    log(f"  {case} {mode}: {e}")
                    res.setdefault("failures", []).append(f"{mode}: {e}")
        for mode in PROGRAM_MODES:
            rs = res["runs"].get(mode, [])
            keys = {k for r in rs for k, v in r.items() if isinstance(v, (int, float))}
            res["median"][mode] = {k: median([r.get(k) for r in rs]) for k in keys}
        return res

    def program_rows(self, case, name, res, first, first_what, speeds, rss_key="rss_bytes"):
        """The rows of one program: `first` (ms: first touch or load) against
        the faster of never/always with its min/median/max; each of `speeds`
        ((key, label, unit, factor)) against always; RSS and AnonHugePages."""
        runs, med = res["runs"], res["median"]
        nv, al, hp = (med.get(m, {}) for m in PROGRAM_MODES)
        sp = {m: spread(runs.get(m, []), first) for m in PROGRAM_MODES}
        best = min((x for x in (nv.get(first), al.get(first)) if x is not None), default=None)
        h, hs = hp.get(first), sp["hugepaged"]
        self.row("S12", f"{name}: {first_what}", {"never": nv.get(first), "always": al.get(first)}, h,
                 div(h, best), "faster", "<= 1.1x faster; max <= 1.5x min",
                 check(lambda: h <= 1.1 * best and hs[2] <= 1.5 * hs[0]), "ms",
                 note="min/median/max ms: " + ", ".join(f"{m} {fmt_spread(sp[m])}" for m in PROGRAM_MODES) +
                 (f"; hugepaged: {hp['faults_served']:.0f} served faults, {hp.get('promotions', 0):.0f} "
                  f"promotions, in-kernel fault p50 {hp.get('bpf_fault_p50_ns', 0) / 1e3:.0f} us"
                  if hp.get("faults_served") is not None else ""))
        for key, label, unit, f in speeds:
            a, x = al.get(key), hp.get(key)
            self.row("S12", f"{name}: {label}", {"never": scale(nv.get(key), f), "always": scale(a, f)},
                     scale(x, f), div(x, a), "always", ">= 0.97x always", check(lambda: x >= 0.97 * a), unit)
        rn, ra, rh = nv.get(rss_key), al.get(rss_key), hp.get(rss_key)
        self.row("S12", f"{name}: RSS", {"never": scale(rn, 1 / MiB), "always": scale(ra, 1 / MiB)},
                 scale(rh, 1 / MiB), div(rh, rn), "never", "<= 1.05x never + (always - never)",
                 check(lambda: rh <= 1.05 * rn + max(0, ra - rn)), "MiB")
        k = "anon_huge_bytes"
        self.row("S12", f"{name}: AnonHugePages", {"never": scale(nv.get(k), 1 / MiB),
                                                  "always": scale(al.get(k), 1 / MiB)},
                 scale(hp.get(k), 1 / MiB), div(hp.get(k), al.get(k)), "always", "-", None, "MiB")

    def s12_python(self, d):
        size = self.p["py_size"]
        script = os.path.join(ROOT, "bench", "programs", "py-fill.py")

        def one(mode):
            self.prewarm(size + size // 2)
            proc = self.program(mode, ["/usr/bin/python3", script, str(size)], d)
            r = parse_kv(self.finish(proc, "python3"))
            return self.served(r, mode, d, proc.pid)
        res = self.program_runs("S12 python", one)
        self.program_rows("S12 python", f"python3 bytearray({size_arg(size)})", res, "fill_ms", "fill",
                          [("hash_mb_per_s", "sha256 of it", "MB/s", 1.0)])

    def s12_redis(self, d):
        server, bench_ = shutil.which("redis-server"), shutil.which("redis-benchmark")
        cli = shutil.which("redis-cli")
        if not (server and bench_ and cli):
            raise RuntimeError("redis-server, redis-cli or redis-benchmark missing (Debian redis-server, redis-tools)")
        keys, n = self.p["redis_keys"], self.p["redis_requests"]

        def one(mode):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            self.prewarm(max(512 * MiB, keys * 400))
            proc = self.program(mode, [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                       "--appendonly", "no", "--enable-debug-command", "yes",
                                       "--daemonize", "no", "--loglevel", "warning"], d)
            try:
                c = [cli, "-p", str(port)]
                for _ in range(200):
                    if subprocess.run(c + ["ping"], capture_output=True, text=True).stdout.strip() == "PONG":
                        break
                    if proc.poll() is not None:
                        raise RuntimeError(f"redis-server exited: {proc.stderr.read()[-300:]}")
                    time.sleep(0.05)
                t0 = time.monotonic()
                subprocess.run(c + ["debug", "populate", str(keys), "key", "100"], check=True, capture_output=True,
                               timeout=self.p["run_timeout"])
                r = {"load_ms": (time.monotonic() - t0) * 1e3}
                out = subprocess.run([bench_, "-p", str(port), "-P", "16", "-t", "set,get", "-n", str(n),
                                      "-r", str(keys), "-d", "100", "--csv"], check=True, capture_output=True,
                                     text=True, timeout=self.p["run_timeout"]).stdout
                for line in out.splitlines():
                    f = [x.strip('"') for x in line.split(",")]
                    if len(f) >= 2 and f[0] in ("SET", "GET"):
                        r[f"{f[0].lower()}_rps"] = float(f[1])
                mem = memory_of(proc.pid)
                r["rss_bytes"], r["anon_huge_bytes"] = mem.get("Rss"), mem.get("AnonHugePages")
            finally:
                subprocess.run([cli, "-p", str(port), "shutdown", "nosave"], capture_output=True, timeout=30)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            return self.served(r, mode, d, proc.pid)
        res = self.program_runs("S12 redis", one)
        self.program_rows("S12 redis", f"redis-server {keys} keys", res, "load_ms", "load (DEBUG POPULATE)",
                          [("set_rps", "SET -P 16", "k/s", 1e-3), ("get_rps", "GET -P 16", "k/s", 1e-3)])

    def s12_sort(self, d):
        lines = self.p["sort_lines"]
        path = os.path.join(tempfile.gettempdir(), f"hp-bench-sort-{os.getpid()}.txt")
        import random
        rnd = random.Random(12)
        with open(path, "w") as f:
            for _ in range(lines):
                f.write(f"{rnd.getrandbits(64):016x} {rnd.getrandbits(32)}\n")
        size = os.path.getsize(path)

        def one(mode):
            self.prewarm(1 * GiB)
            t0 = time.monotonic()
            proc = self.program(mode, ["sort", "-S", "1G", "--parallel=1", "-o", "/dev/null", path], d,
                                env={"LC_ALL": "C"})
            huge, usage = 0, None
            while True:     # AnonHugePages sampled; peak RSS from the kernel (ru_maxrss)
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                huge = max(huge, memory_of(proc.pid).get("AnonHugePages", 0))
                time.sleep(0.01)
            t = (time.monotonic() - t0) * 1e3
            proc.returncode = os.waitstatus_to_exitcode(status)
            self.finish(proc, "sort")
            return self.served({"sort_ms": t, "rss_bytes": usage.ru_maxrss * 1024, "anon_huge_bytes": huge,
                                "mb_per_s": size / t / 1e3}, mode, d, proc.pid)
        try:
            res = self.program_runs("S12 sort", one)
        finally:
            os.unlink(path)
        self.program_rows("S12 sort", f"sort -S 1G, {size // MiB} MiB of lines", res, "sort_ms", "sort",
                          [("mb_per_s", "sort throughput", "MB/s", 1.0)])

    def case_s12(self, d):
        """Real programs, unmodified: never (PR_SET_THP_DISABLE), always (the
        allocator advises MADV_HUGEPAGE on everything), under hugepaged-run."""
        failed = []
        for name, fn in (("python", self.s12_python), ("redis", self.s12_redis), ("sort", self.s12_sort)):
            try:
                fn(d)
            except Exception as e:     # one program missing must not hide the others
                log(f"  S12 {name} failed: {e}")
                self.results.setdefault(f"S12 {name}", {"runs": {}, "median": {}})["error"] = str(e)
                self.row("S12", f"{name}: (failed)", {}, None, None, "", "", False, note=str(e).splitlines()[0][:200])
                failed.append(name)

    # ---- driver --------------------------------------------------------------

    def machine(self):
        def read(p):
            try:
                with open(p) as f:
                    return f.read().strip()
            except OSError:
                return ""
        cpu = ""
        for line in read("/proc/cpuinfo").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        thp = lambda p: re.sub(r".*\[(.*)\].*", r"\1", read(p))
        return {
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "kernel": platform.release(),
            "cpu": cpu,
            "cpus": os.cpu_count(),
            "mem_gib": round(int(read("/proc/meminfo").split()[1]) / (1 << 20), 1),
            "thp_enabled": thp("/sys/kernel/mm/transparent_hugepage/enabled"),
            "thp_defrag": thp("/sys/kernel/mm/transparent_hugepage/defrag"),
            "khugepaged": {k: read(f"/sys/kernel/mm/transparent_hugepage/khugepaged/{k}") for k in
                           ("pages_to_scan", "scan_sleep_millisecs", "max_ptes_none")},
            "loadavg_start": float(read("/proc/loadavg").split()[0]),
        }

    def main(self):
        cases = self.args.cases or CASES
        t_start = time.time()
        self.info = self.machine()
        self.info["preset"] = self.args.preset
        self.info["repeat"] = self.p["repeat"]
        log(f"hp-bench: {self.args.preset} run of {' '.join(cases)} on {self.info['kernel']}, "
            f"{self.info['cpus']} CPUs, THP enabled={self.info['thp_enabled']}")
        if self.info["loadavg_start"] > 1.0:
            log(f"note: load average {self.info['loadavg_start']}: other work on this machine skews the numbers")
        log(f"warming {size_arg(self.p['warm'])} (first touch of guest memory)")
        self.run("plain", ["warm", size_arg(self.p["warm"])])
        handlers = {"S1": self.case_s1, "S1r": self.case_s1r,
                    "S2": lambda d: self.case_dense("S2", "dense-seq", d),
                    "S3": lambda d: self.case_dense("S3", "dense-rand", d),
                    "S4": self.case_s4, "S5": self.case_s5, "S6": self.case_s6, "S7": self.case_s7,
                    "S8": self.case_s8, "S9": self.case_s9, "S10": self.case_s10,
                    "S12": self.case_s12, "S14": self.case_s14, "F1": self.case_f1}
        self.timing = {}
        for c in cases:
            log(f"{c}:")
            t0 = time.time()
            d = Daemon(self, c)
            if self.tracing is None:
                time.sleep(0.1)
                self.tracing = d.tracing()
            try:
                handlers[c](d)
            except Exception as e:         # one broken case must not hide the others
                log(f"  {c} failed: {e}")
                self.row(c, "(case failed)", {}, None, None, "", "", False, note=str(e).splitlines()[0][:200])
                self.results.setdefault(c, {"runs": {}, "median": {}})["error"] = str(e)
            finally:
                d.stop()
                if self.args.keep_logs:
                    log(f"  daemon log: {d.log_path}")
                else:
                    d.cleanup()
            self.timing[c] = round(time.time() - t0, 1)
        self.info["tracing"] = self.tracing
        self.info["duration_s"] = round(time.time() - t_start, 1)
        with open("/proc/loadavg") as f:
            self.info["loadavg_end"] = float(f.read().split()[0])
        self.print_table()
        if self.args.json:
            with open(self.args.json, "w") as f:
                json.dump({"machine": self.info, "rows": self.rows, "cases": self.results,
                           "notes": self.notes, "case_seconds": self.timing}, f, indent=1, default=str)
        return 0

    def print_table(self):
        def fmt(v):
            if v is None:
                return "-"
            if isinstance(v, str):
                return v
            if v == float("inf"):
                return "inf"
            a = abs(v)
            return f"{v:.0f}" if a >= 100 else f"{v:.1f}" if a >= 10 else f"{v:.2f}" if a >= 0.01 or a == 0 else f"{v:.4f}"

        used = ["never", "always", "khugepaged"]
        head = ["case", "metric", "unit"] + used + ["other", "hugepaged", "ratio", "target", "result"]
        lines = []
        for r in self.rows:
            ratio = "-" if r["ratio"] is None else f"{fmt(r['ratio'])}x {r['ratio_of']}"
            other = ", ".join(f"{k} {fmt(v)}" for k, v in r["baselines"].items() if k not in used) or "-"
            lines.append([r["case"], r["metric"], r["unit"]] + [fmt(r["baselines"].get(c)) for c in used] +
                         [other, fmt(r["hugepaged"]), ratio, r["target"], r["status"]])
        w = [max(len(str(x[i])) for x in lines + [head]) for i in range(len(head))]
        out = sys.stdout
        i = self.info
        print(f"\nhugepaged benchmark ({i['preset']}, median of {i['repeat']}) {i['date']}", file=out)
        print(f"kernel {i['kernel']}, {i['cpus']} x {i['cpu']}, {i['mem_gib']} GiB, THP enabled={i['thp_enabled']} "
              f"defrag={i['thp_defrag']}, fault tracing {i['tracing']}", file=out)
        print(f"{i['duration_s']:.0f} s; load average {i['loadavg_start']:.2f} at start, {i['loadavg_end']:.2f} at end "
              f"(other work on the machine skews the numbers)", file=out)
        print("  ".join(h.ljust(w[k]) for k, h in enumerate(head)).rstrip(), file=out)
        for ln in lines:
            print("  ".join(str(x).ljust(w[k]) if k < 3 or k == 6 or k >= len(head) - 2 else str(x).rjust(w[k])
                            for k, x in enumerate(ln)).rstrip(), file=out)
        notes, seen = [], set()
        for r in self.rows:
            if r["note"] and r["note"] not in seen:   # say a shared explanation once
                seen.add(r["note"])
                notes.append(f"  {r['case']} {r['metric']}: {r['note']}")
        notes += [f"  {n}" for n in self.notes]
        if notes:
            print("notes:", file=out)
            print("\n".join(notes), file=out)
        passed = sum(r["status"] == "PASS" for r in self.rows)
        missed = sum(r["status"] == "MISS" for r in self.rows)
        print(f"{passed} PASS, {missed} MISS, {len(self.rows) - passed - missed} N/A", file=out)

    def cleanup(self):
        for d in list(self.daemons):
            try:
                d.stop()
                d.cleanup()
            except Exception:
                pass
        for cg in list(self.cgroups):
            try:
                cg.close()
            except Exception:
                pass
        for path, value in self.restore:
            try:
                with open(path, "w") as f:
                    f.write(value)
            except OSError as e:
                log(f"bench: could not restore {path} to {value}: {e}")


def main():
    ap = argparse.ArgumentParser(prog="bench/run.sh", description=__doc__.split("\n\n")[0])
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", dest="preset", action="store_const", const="quick",
                   help="scaled-down sizes, about 3 minutes")
    g.add_argument("--smoke", dest="preset", action="store_const", const="smoke",
                   help="tiny sizes for the test suite (the numbers mean nothing)")
    ap.set_defaults(preset="full")
    ap.add_argument("--json", metavar="FILE", help="write the results as JSON")
    ap.add_argument("--build", metavar="DIR", default=os.environ.get("HP_BUILD_DIR", os.path.join(ROOT, "build")),
                    help="meson build directory (default: build, or $HP_BUILD_DIR)")
    ap.add_argument("--repeat", type=int, help="runs per case and mode (default 3)")
    ap.add_argument("--keep-logs", action="store_true", help="keep the daemons' logs")
    ap.add_argument("cases", nargs="*", metavar="CASE", help=f"cases to run (default all: {' '.join(CASES)})")
    args = ap.parse_args()
    for c in args.cases:
        if c not in CASES:
            ap.error(f"unknown case {c} (cases: {' '.join(CASES)})")
    if os.geteuid() != 0:
        sys.exit("bench: must run as root (the daemon opens /dev/userfaultfd; S6 and S8 change cgroups and "
                 "vm.nr_hugepages)")
    if not os.path.exists("/dev/userfaultfd"):
        sys.exit("bench: /dev/userfaultfd is missing: the kernel needs CONFIG_USERFAULTFD (6.1 or later)")
    b = Bench(args)

    def on_signal(sig, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_signal)
    try:
        return b.main()
    except KeyboardInterrupt:
        log("bench: interrupted")
        return 130
    finally:
        b.cleanup()


if __name__ == "__main__":
    sys.exit(main())
