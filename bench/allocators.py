#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""bench/allocators.py: how much of real programs' heaps hugepaged manages
with glibc's malloc and with each allocator of hugepaged-run --allocator.

Three unmodified glibc-malloc programs: sqlite3 with a large page cache
filled by queries, python3 with many mid-size objects
(bench/programs/py-objects.py), perl with a key-value hash
(bench/programs/kv.pl). Each runs plain (no hugepaged-run), then under
hugepaged-run with glibc (the default), glibc with --min-size 128K (what
managing small mappings too would give), jemalloc, mimalloc and tcmalloc;
the variants alternate within each round so that drift hits them alike.

Per run, with the program holding its memory at the end of its work:
coverage (the daemon's: managed bytes / Anonymous of smaps_rollup),
AnonHugePages / Rss, Rss / the plain median, and speed: plain median time /
the run's time (the program's own timing of its work: python and perl time
themselves, sqlite3's .timer). Every run's result (digest or query output)
must equal the plain one. Rows give min/median/max over the rounds.

Targets (the issue): coverage >= 90% with the recommended allocator, Rss <=
1.10 x plain, speed >= plain. Needs root; starts its own daemon on a private
socket and removes everything it made.

  bench/allocators.py [--rounds N] [--json FILE] [--programs sqlite3,python3,perl] [--variants V,...]
"""

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROGRAMS_DIR = os.path.join(ROOT, "bench", "programs")
PYTHON = "/usr/bin/python3"
PERL = "/usr/bin/perl"
SQLITE = "/usr/bin/sqlite3"

VARIANTS = [
    ("plain", None),
    ("glibc", ["--allocator", "glibc"]),
    ("glibc-128K", ["--allocator", "glibc", "--min-size", "128K"]),
    ("jemalloc", ["--allocator", "jemalloc"]),
    ("mimalloc", ["--allocator", "mimalloc"]),
    ("tcmalloc", ["--allocator", "tcmalloc"]),
]
# Not run by default (--variants): the allocators with a lower promotion threshold.
EXTRA_VARIANTS = [
    ("jemalloc-t16", ["--allocator", "jemalloc", "--threshold", "16"]),
    ("mimalloc-t16", ["--allocator", "mimalloc", "--threshold", "16"]),
]

SQL_ROWS = 1_200_000
SQL_CACHE_KIB = 768 << 10
SQL_BUILD = f"""\
PRAGMA page_size = 4096;
PRAGMA journal_mode = OFF;
PRAGMA synchronous = OFF;
CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER NOT NULL, s TEXT NOT NULL, b BLOB NOT NULL);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {SQL_ROWS})
INSERT INTO t SELECT x, (x * 2654435761) % 1000003, printf('%08d-%s', x, hex(sha3(x, 256))),
  sha3(x, 512) || sha3(-x, 512) || sha3(x * 3, 512) || sha3(x * 7, 512) FROM c;
CREATE INDEX t_k ON t(k);
CREATE INDEX t_s ON t(s);
"""
SQL_QUERY = f"""\
PRAGMA cache_size = -{SQL_CACHE_KIB};
.timer on
SELECT count(*), sum(k), total(length(b)), max(s) FROM t;
SELECT hex(sha3_query('SELECT k, count(*), min(id) FROM t GROUP BY k ORDER BY k', 256));
SELECT hex(sha3_query('SELECT s, k FROM t INDEXED BY t_s WHERE s > ''00400000'' ORDER BY s', 256));
SELECT hex(sha3_query('SELECT id, k FROM t INDEXED BY t_k WHERE k BETWEEN 1000 AND 900000 ORDER BY k, id', 256));
SELECT hex(sha3_query('SELECT id, s FROM t ORDER BY substr(b, 20, 16), id LIMIT 100000', 256));
.timer off
.shell echo $PPID > "$HP_BENCH_LOADED.tmp" && mv "$HP_BENCH_LOADED.tmp" "$HP_BENCH_LOADED"
.shell while [ ! -e "$HP_BENCH_GO" ]; do sleep 0.05; done
"""

_COVERAGE = re.compile(r"client (\d+) \(\S+\) coverage: managed_bytes=(\d+) anonymous_bytes=(\d+) "
                       r"coverage_permille=(\d+)")
_RUNTIME = re.compile(r"^Run Time: real ([0-9.]+)", re.M)


def die(msg):
    sys.exit(f"bench/allocators.py: {msg}")


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def thp_mode(name):
    try:
        with open(f"/sys/kernel/mm/transparent_hugepage/{name}") as f:
            t = f.read()
        return t[t.index("[") + 1:t.index("]")]
    except (OSError, ValueError):
        return "?"


def rollup(pid):
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            p = line.split()
            if len(p) >= 3 and p[0].endswith(":") and p[2] == "kB":
                out[p[0][:-1]] = int(p[1]) * 1024
    return out


def lib_installed(name):
    soname = {"jemalloc": "libjemalloc.so.2", "mimalloc": "libmimalloc.so.2",
              "tcmalloc": "libtcmalloc_minimal.so.4"}.get(name)
    return soname is None or any(os.path.exists(os.path.join(d, soname)) for d in
                                 ("/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib"))


class Daemon:
    def __init__(self, exe, tmp):
        self.sock = os.path.join(tmp, "hugepaged.sock")
        self.log_path = os.path.join(tmp, "hugepaged.log")
        conf = os.path.join(tmp, "hugepaged.conf")
        open(conf, "w").close()
        self.logf = open(self.log_path, "w")
        self.proc = subprocess.Popen([exe, "--foreground", "--socket", self.sock, "--config", conf,
                                      "--bus", "none", "--log-level", "debug"],
                                     stdout=self.logf, stderr=self.logf, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        end = time.monotonic() + 15
        while not os.path.exists(self.sock):
            if self.proc.poll() is not None or time.monotonic() > end:
                die(f"the daemon did not start:\n{self.text()[-2000:]}")
            time.sleep(0.05)

    def text(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()


class Runner:
    def __init__(self, args, tmp):
        self.args = args
        self.tmp = tmp
        build = args.build
        self.run_exe = os.path.join(build, "tools", "hugepaged-run")
        daemon = os.path.join(build, "daemon", "hugepaged")
        for f in (self.run_exe, daemon, PYTHON, PERL, SQLITE):
            if not os.access(f, os.X_OK):
                die(f"{f} is missing (build with ./test.sh --build-only; Debian: python3, perl, sqlite3)")
        self.db = os.path.join(tmp, "bench.db")
        build_sql = os.path.join(tmp, "build.sql")
        with open(build_sql, "w") as f:
            f.write(SQL_BUILD)
        subprocess.run([SQLITE, "-batch", "-init", build_sql, self.db, ".quit"], check=True,
                       stdout=subprocess.DEVNULL)
        self.query_sql = os.path.join(tmp, "query.sql")
        with open(self.query_sql, "w") as f:
            f.write(SQL_QUERY)
        self.daemon = Daemon(daemon, tmp)
        self.n = 0

    def argv(self, program):
        if program == "sqlite3":
            return [SQLITE, "-batch", "-init", self.query_sql, self.db, ".quit"]
        if program == "python3":
            return [PYTHON, os.path.join(PROGRAMS_DIR, "py-objects.py")]
        return [PERL, os.path.join(PROGRAMS_DIR, "kv.pl")]

    def run(self, program, variant, opts):
        """One run: its result text, time, memory at the end of its work, coverage."""
        self.n += 1
        rundir = os.path.join(self.tmp, f"run{self.n}")
        os.mkdir(rundir)
        loaded, go = os.path.join(rundir, "loaded"), os.path.join(rundir, "go")
        argv = self.argv(program)
        if opts is not None:
            argv = [self.run_exe, "--socket", self.daemon.sock, *opts, "--", *argv]
        env = dict(os.environ, HP_BENCH_LOADED=loaded, HP_BENCH_GO=go)
        env.pop("MALLOC_PERTURB_", None)
        for k in ("HUGEPAGED_ALLOCATOR", "MALLOC_CONF", "LD_PRELOAD"):
            env.pop(k, None)
        out_path, err_path = os.path.join(rundir, "out"), os.path.join(rundir, "err")
        with open(out_path, "w") as out, open(err_path, "w") as err:
            p = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env,
                                 start_new_session=True)
        res = {"program": program, "variant": variant}
        try:
            end = time.monotonic() + 900
            while not os.path.exists(loaded):
                if p.poll() is not None or time.monotonic() > end:
                    with open(err_path) as f:
                        die(f"{program} {variant}: ended ({p.poll()}) before holding its memory: {f.read()[-1500:]}")
                time.sleep(0.05)
            with open(loaded) as f:
                pid = int(f.read())
            if opts is not None:
                start = len(self.daemon.text())
                end = time.monotonic() + 30
                cov = None
                while cov is None and time.monotonic() < end:
                    for m in _COVERAGE.finditer(self.daemon.text()[start:]):
                        if int(m.group(1)) == pid:
                            cov = int(m.group(2)), int(m.group(3)), int(m.group(4))
                            break
                    else:
                        time.sleep(0.1)
                if cov is None:
                    die(f"{program} {variant}: the daemon logged no coverage of pid {pid} in 30 s")
                res.update(managed=cov[0], anonymous_daemon=cov[1], coverage=cov[2] / 10)
            mem = rollup(pid)
            res.update(rss=mem.get("Rss", 0), anonymous=mem.get("Anonymous", 0),
                       anon_huge=mem.get("AnonHugePages", 0))
            open(go, "w").close()
            p.wait(timeout=300)
        finally:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        with open(out_path) as f:
            out = f.read()
        with open(err_path) as f:
            err = f.read()
        if p.returncode != 0:
            die(f"{program} {variant}: exit {p.returncode}: {err[-1500:]}")
        if opts is not None and ("running unmanaged" in err or "not managed" in err):
            die(f"{program} {variant}: ran unmanaged: {err[-500:]}")
        if program == "sqlite3":
            res["seconds"] = sum(float(x) for x in _RUNTIME.findall(out))
            res["result"] = "\n".join(l for l in out.splitlines() if not l.startswith("Run Time:"))
        else:
            kv = dict(l.split("=", 1) for l in out.splitlines() if "=" in l)
            res["seconds"] = float(kv["seconds"])
            res["result"] = kv["digest"]
        res["huge_of_rss"] = 100.0 * res["anon_huge"] / res["rss"] if res["rss"] else 0.0
        shutil.rmtree(rundir, ignore_errors=True)
        return res

    def stop(self):
        self.daemon.stop()


def mmm(values, fmt):
    if not values:
        return "-"
    v = sorted(values)
    return "/".join(fmt.format(x) for x in (v[0], statistics.median(v), v[-1]))


def main():
    ap = argparse.ArgumentParser(prog="bench/allocators.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="runs of each program and variant (default 3)")
    ap.add_argument("--json", metavar="FILE", help="write every run's figures as JSON")
    ap.add_argument("--build", metavar="DIR", default=os.environ.get("HP_BUILD_DIR", os.path.join(ROOT, "build")),
                    help="the build directory (default: build/)")
    ap.add_argument("--programs", default="sqlite3,python3,perl", help="comma-separated subset")
    ap.add_argument("--variants", help="comma-separated variants (default: "
                    + ",".join(n for n, _ in VARIANTS) + "; also " + ",".join(n for n, _ in EXTRA_VARIANTS) + ")")
    args = ap.parse_args()
    if os.geteuid() != 0:
        die("needs root (it starts a daemon)")
    chosen = VARIANTS
    if args.variants:
        known = dict(VARIANTS + EXTRA_VARIANTS)
        names = ["plain"] + [n for n in args.variants.split(",") if n != "plain"]
        unknown = [n for n in names if n not in known]
        if unknown:
            die(f"unknown variants {unknown}: expected {', '.join(known)}")
        chosen = [(n, known[n]) for n in names]
    variants = [(n, o) for n, o in chosen if o is None or lib_installed(o[1])]
    skipped = [n for n, o in chosen if (n, o) not in variants]
    programs = args.programs.split(",")

    t_start = time.time()
    load_start = loadavg()
    tmp = tempfile.mkdtemp(prefix="hp-allocators-")
    runs = []
    r = None
    try:
        r = Runner(args, tmp)
        for rnd in range(args.rounds):
            for program in programs:
                for name, opts in variants:
                    res = r.run(program, name, opts)
                    res["round"] = rnd
                    runs.append(res)
                    print(f"  round {rnd + 1} {program:8} {name:11} {res['seconds']:7.2f} s  Rss "
                          f"{res['rss'] >> 20:5} MiB  huge {res['huge_of_rss']:5.1f}%  coverage "
                          f"{res.get('coverage', 0):5.1f}%", file=sys.stderr, flush=True)
    finally:
        if r:
            r.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    # every run computed what the plain runs computed
    for program in programs:
        ref = next(x["result"] for x in runs if x["program"] == program and x["variant"] == "plain")
        bad = [x for x in runs if x["program"] == program and x["result"] != ref]
        if bad:
            die(f"{program}: results differ from plain in {[(x['variant'], x['round']) for x in bad]}")

    names = [n for n, _ in variants]
    uname = platform.uname()
    print(f"hugepaged allocators (min/median/max of {args.rounds}) {time.strftime('%Y-%m-%d %H:%M:%S %z')}")
    print(f"kernel {uname.release}, {os.cpu_count()} CPUs, THP enabled={thp_mode('enabled')} "
          f"defrag={thp_mode('defrag')}")
    print(f"{time.time() - t_start:.0f} s; load average {load_start} at start, {loadavg()} at end"
          + (f"; not installed: {', '.join(skipped)}" if skipped else ""))
    print("every run's result equals the plain run's")
    width = 20
    print(f"{'program':9} {'row':22}" + "".join(f"{n:>{width}}" for n in names) + "  target")
    table = {}
    for program in programs:
        plain = [x for x in runs if x["program"] == program and x["variant"] == "plain"]
        rss0 = statistics.median(x["rss"] for x in plain)
        t0 = statistics.median(x["seconds"] for x in plain)
        rows = {
            "coverage %": (lambda x: x.get("coverage"), "{:.1f}", ">= 90%"),
            "AnonHugePages/Rss %": (lambda x: x["huge_of_rss"], "{:.1f}", "-"),
            "Rss vs plain": (lambda x: x["rss"] / rss0, "{:.2f}", "<= 1.10x"),
            "speed vs plain": (lambda x: t0 / x["seconds"] if x["seconds"] else None, "{:.2f}", ">= 1.00x"),
            "Rss MiB": (lambda x: x["rss"] / (1 << 20), "{:.0f}", "-"),
            "time s": (lambda x: x["seconds"], "{:.2f}", "-"),
        }
        for row, (fn, fmt, target) in rows.items():
            cells = []
            for n in names:
                vals = [v for v in (fn(x) for x in runs if x["program"] == program and x["variant"] == n)
                        if v is not None]
                cells.append(mmm(vals, fmt))
                table.setdefault(program, {}).setdefault(row, {})[n] = sorted(vals)
            print(f"{program:9} {row:22}" + "".join(f"{c:>{width}}" for c in cells) + f"  {target}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"load_start": load_start, "load_end": loadavg(), "rounds": args.rounds,
                       "table": table, "runs": runs}, f, indent=1)


if __name__ == "__main__":
    main()
