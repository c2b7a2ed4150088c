#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""hugepaged-run --allocator: Debian's jemalloc, mimalloc and tcmalloc in
front of unmodified programs, next to the shim.

  allocator.py jemalloc|mimalloc|tcmalloc
      python3 (py_workload.py dense 1 GiB and runtime) and shim-check (the
      modes whose checks are the C library's contract, not glibc's own
      behaviour: threads, fork, signals, closefds, protnone, split) run
      with the allocator: the allocator's library, and no other malloc, is
      mapped in the process (its /proc/PID/maps); the same SHA-256 as
      without hugepaged-run; every shim-check check passes and the large
      blocks the allocator hands out lie in memory registered with the
      daemon (its mmap calls reach the shim); the daemon served the faults. Skipped (77) when the
      allocator's Debian package is not installed.
  allocator.py sqlite
      sqlite3 with a 768 MiB page cache filled by queries, under
      --allocator jemalloc: the same query results and integrity_check as
      without hugepaged-run; while it holds its cache, the daemon's
      coverage of it (managed bytes / Anonymous) >= 90%, and AnonHugePages
      >= 80% of its Rss.
  allocator.py choice
      which allocator is loaded: --allocator over HUGEPAGED_ALLOCATOR over
      Allocator= of [Program:NAME] in --config's file over the default
      (glibc: nothing loaded); invalid names; LD_PRELOAD order (the shim,
      the allocator, the rest); a program that brings its own
      allocator is left alone and --debug says so: redis-server (linked to
      libjemalloc) keeps its jemalloc and gets no second malloc, a
      statically linked program (static-env.c) gets neither an allocator
      in LD_PRELOAD nor its tuning.
"""

import os
import re
import sys
import time

import progtest
from progtest import MiB, hptest, log, mib

LIBS = {"jemalloc": "libjemalloc.so.2", "mimalloc": "libmimalloc.so.2", "tcmalloc": "libtcmalloc_minimal.so.4"}
PACKAGES = {"jemalloc": "libjemalloc2", "mimalloc": "libmimalloc2.0", "tcmalloc": "libtcmalloc-minimal4"}
LIBDIRS = ["/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib"]
WORKLOAD = progtest.HERE + "/py_workload.py"
SHIM_MODES = [
    ("threads", ["8", "20"]),
    ("fork", []),
    ("signals", []),
    ("closefds", []),
    ("protnone", []),
    ("split", []),
]


def require_allocator(name):
    for d in LIBDIRS:
        if os.path.exists(os.path.join(d, LIBS[name])):
            return
    raise hptest.Skip(f"{LIBS[name]} is not installed (Debian package {PACKAGES[name]}; ./test.sh installs it)")


def malloc_libs(r):
    libs = r.kv.get("malloc_libs", "")
    return [] if libs in ("", "none") else libs.split(",")


def expect_only(ctx, r, name, label):
    """The allocator's library is mapped, and no other malloc library."""
    libs = malloc_libs(r)
    ctx.expect(len(libs) == 1 and libs[0].startswith(LIBS[name]),
               f"{label}: /proc/PID/maps has {LIBS[name]} and no other malloc library ({libs})")


def run_alloc(ctx, d, name, argv, env=None, timeout=900, debug=True):
    opts = ["--allocator", name] + (["--debug"] if debug else [])
    return hptest.run(progtest.managed(ctx, d, argv, opts), timeout=timeout, env=env)


# ---- allocator.py jemalloc|mimalloc|tcmalloc -----------------------------------

def python_runs(ctx, d, name):
    plain = hptest.run([progtest.PYTHON, WORKLOAD, "dense", "1024"], timeout=900)
    ctx.require(plain.rc == 0, f"python dense without hugepaged-run exits 0{plain.describe() if plain.rc else ''}")
    r = run_alloc(ctx, d, name, [progtest.PYTHON, WORKLOAD, "dense", "1024", "--wait", "30"])
    ctx.require(r.rc == 0, f"python dense with {name}: exits 0{r.describe() if r.rc else ''}")
    expect_only(ctx, r, name, "python dense")
    ctx.expect(r.kv["hash"] == plain.kv["hash"],
               f"python dense with {name}: same SHA-256 as without hugepaged-run ({r.kv['hash'][:16]}..)")
    ctx.expect("not managed" not in r.err, f"python dense with {name}: hugepaged-run did not report 'not managed'")
    stats = d.client_stats(r.int("pid"))
    ctx.require(stats is not None, f"python dense with {name}: the daemon logged its client going")
    ctx.expect(stats.get("faults_served", 0) > 0 and r.int("anon_huge") >= 900 * MiB,
               f"python dense with {name}: the daemon served its faults ({stats.get('faults_served')}) and "
               f"AnonHugePages {mib(r.int('anon_huge'))} >= 900 MiB")
    log(f"numbers: python dense 1 GiB with {name}: Rss {mib(r.int('rss'))} AnonHugePages "
        f"{mib(r.int('anon_huge'))}; coverage {stats.get('coverage_permille', 0) / 10:.1f}%")

    r = run_alloc(ctx, d, name, [progtest.PYTHON, WORKLOAD, "runtime"])
    ctx.require(r.rc == 0, f"python runtime with {name}: exits 0{r.describe() if r.rc else ''}")
    expect_only(ctx, r, name, "python runtime")
    ctx.expect(r.int("failures") == 0,
               f"python runtime with {name}: threads, signals, fork, subprocess and exec checks passed")
    spawned = int(r.kv["spawned_pid"])
    stats = d.client_stats(spawned)
    ctx.expect(stats is not None and stats.get("faults_served", 0) > 0,
               f"python runtime with {name}: its subprocess connected on its own and was served")


def shim_check_runs(ctx, d, name):
    check = os.environ.get("HP_SHIM_CHECK", "")
    if not check or not os.access(check, os.X_OK):
        raise hptest.Failure("HP_SHIM_CHECK is not set or not built; run with `meson test`")
    for mode, args in SHIM_MODES:
        # closefds closes the shim's socket before anything is registered
        env = dict(os.environ, HP_EXPECT="registered" if mode != "closefds" else "")
        r = run_alloc(ctx, d, name, [check, mode, *args], env=env, timeout=600)
        ctx.expect(r.rc == 0 and r.int("mismatches") == 0,
                   f"shim-check {mode} with {name}: every check passes{r.describe() if r.rc else ''}")
        if mode == "closefds":
            continue
        expect_only(ctx, r, name, f"shim-check {mode}")
        # the allocator's own mmap calls reach the shim (its place in
        # LD_PRELOAD): its large blocks lie in memory registered with the
        # daemon. Not necessarily every one: mimalloc gives parts of its
        # segments back (munmap, MADV_DONTNEED) when another thread frees a
        # block, and a block in such a part may be found unregistered.
        seen, registered = r.int("blocks_seen"), r.int("blocks_registered")
        ctx.expect(seen > 0 and registered > 0,
                   f"shim-check {mode} with {name}: the allocator's large blocks lie in registered memory "
                   f"({registered} of {seen})")
        if registered < seen:
            log(f"  note: {seen - registered} of {seen} blocks not registered at the check")
        pid = int(re.findall(r"^pid=(\d+)$", r.out, re.M)[0])
        stats = d.client_stats(pid)
        ctx.expect(stats is not None and stats.get("faults_served", 0) > 0,
                   f"shim-check {mode} with {name}: the daemon served pid {pid}'s faults")


# ---- allocator.py sqlite ---------------------------------------------------------

ROWS = 1_200_000
CACHE_KIB = 768 << 10

BUILD = f"""\
PRAGMA page_size = 4096;
PRAGMA journal_mode = OFF;
PRAGMA synchronous = OFF;
CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER NOT NULL, s TEXT NOT NULL, b BLOB NOT NULL);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {ROWS})
INSERT INTO t SELECT x, (x * 2654435761) % 1000003, printf('%08d-%s', x, hex(sha3(x, 256))),
  sha3(x, 512) || sha3(-x, 512) || sha3(x * 3, 512) || sha3(x * 7, 512) FROM c;
CREATE INDEX t_k ON t(k);
CREATE INDEX t_s ON t(s);
"""

# The queries read every page of the table and both indexes into the cache;
# then the shell says so (a file) and waits (another file) before it reads
# its own smaps_rollup, so that the daemon measures it with the cache full.
QUERY = f"""\
PRAGMA cache_size = -{CACHE_KIB};
SELECT count(*), sum(k), total(length(b)), max(s) FROM t;
SELECT hex(sha3_query('SELECT k, count(*), min(id) FROM t GROUP BY k ORDER BY k', 256));
SELECT hex(sha3_query('SELECT s, k FROM t INDEXED BY t_s WHERE s > ''00400000'' ORDER BY s', 256));
SELECT hex(sha3_query('SELECT id, k FROM t INDEXED BY t_k WHERE k BETWEEN 1000 AND 900000 ORDER BY k, id', 256));
SELECT hex(sha3_query('SELECT id, s FROM t ORDER BY substr(b, 20, 16), id LIMIT 100000', 256));
PRAGMA integrity_check;
.shell echo $PPID > @DIR@/loaded.tmp && mv @DIR@/loaded.tmp @DIR@/loaded
.shell while [ ! -e @DIR@/go ]; do sleep 0.05; done
.shell cat /proc/$PPID/smaps_rollup
"""

_SMAPS = re.compile(r"^(\w+):\s+(\d+) kB$")
_COVERAGE = re.compile(r"client (\d+) \(\S+\) coverage: managed_bytes=(\d+) anonymous_bytes=(\d+) "
                       r"coverage_permille=(\d+)")


def sqlite_run(ctx, d, sqlite, db, label, allocator):
    rundir = os.path.join(ctx.tmp, label)
    os.makedirs(rundir)
    path = os.path.join(rundir, "query.sql")
    with open(path, "w") as f:
        f.write(QUERY.replace("@DIR@", rundir))
    argv = [sqlite, "-batch", "-init", path, db, ".quit"]
    if allocator:
        argv = progtest.managed(ctx, d, argv, ["--allocator", allocator, "--debug"])
    out_path, err_path = os.path.join(rundir, "out"), os.path.join(rundir, "err")
    with open(out_path, "w") as out, open(err_path, "w") as err:
        p = hptest.spawn(argv, stdout=out, stderr=err)
    coverage = None
    try:
        loaded = os.path.join(rundir, "loaded")
        progtest.wait_until(lambda: os.path.exists(loaded) or p.poll() is not None, 900,
                            f"{label}: sqlite3 filled its cache")
        ctx.require(os.path.exists(loaded), f"{label}: sqlite3 ran its queries (exit {p.poll()})")
        with open(loaded) as f:
            pid = int(f.read())
        if allocator:
            # a coverage reading taken after the cache was full: the daemon
            # reads each client at least once a second
            start = len(d.log())

            def reading():
                for m in _COVERAGE.finditer(d.log()[start:]):
                    if int(m.group(1)) == pid:
                        return tuple(int(m.group(i)) for i in (2, 3, 4))
                return None
            coverage = progtest.wait_until(reading, 60, f"{label}: the daemon measured sqlite3 {pid}'s coverage")
        open(os.path.join(rundir, "go"), "w").close()
        p.wait(timeout=300)
    finally:
        hptest.kill_tree(p)
    with open(out_path) as f:
        out = f.read()
    with open(err_path) as f:
        err = f.read()
    ctx.require(p.returncode == 0 and not re.search(r"(?i)error", err),
                f"{label}: sqlite3 exits 0 without errors (got {p.returncode})"
                f"{'' if p.returncode == 0 else ': ' + err[-2000:]}")
    results, mem = [], {}
    for line in out.splitlines():
        m = _SMAPS.match(line)
        if m:
            mem[m.group(1)] = int(m.group(2)) * 1024
        elif not line.startswith("/proc/") and "[rollup]" not in line:
            results.append(line)
    return results, mem, coverage, pid, err


def sqlite(ctx):
    sqlite3 = progtest.require_program("/usr/bin/sqlite3", "sqlite3")
    require_allocator("jemalloc")
    d = ctx.daemon()
    db = os.path.join(ctx.tmp, "t.db")
    build = os.path.join(ctx.tmp, "build.sql")
    with open(build, "w") as f:
        f.write(BUILD)
    r = hptest.run([sqlite3, "-batch", "-init", build, db, ".quit"], timeout=1200)
    ctx.require(r.rc == 0, f"the database is built{r.describe() if r.rc else ''}")
    log(f"database: {mib(os.path.getsize(db))}")

    t0 = time.monotonic()
    plain, plain_mem, _, _, _ = sqlite_run(ctx, d, sqlite3, db, "plain", None)
    plain_s = time.monotonic() - t0
    t0 = time.monotonic()
    res, mem, coverage, pid, err = sqlite_run(ctx, d, sqlite3, db, "jemalloc", "jemalloc")
    jem_s = time.monotonic() - t0

    ctx.expect(plain and plain[-1] == "ok", f"plain: PRAGMA integrity_check = ok (got {plain[-1:]})")
    ctx.expect(len(res) >= 6 and res == plain, f"query results identical with jemalloc and without ({len(res)} lines)")
    ctx.expect(re.search(r"allocator jemalloc \(--allocator\): preloading \S*libjemalloc", err) is not None,
               "hugepaged-run --debug says it preloads jemalloc")
    managed, anonymous, permille = coverage
    ctx.expect(permille >= 900,
               f"coverage of sqlite3 {pid} with jemalloc {permille / 10:.1f}% >= 90% "
               f"(managed {mib(managed)} of Anonymous {mib(anonymous)})")
    ctx.expect(anonymous >= 512 * MiB, f"the cache holds what the queries read: Anonymous {mib(anonymous)} >= 512 MiB")
    rss, huge = mem.get("Rss", 0), mem.get("AnonHugePages", 0)
    ctx.expect(rss > 0 and huge >= 0.8 * rss,
               f"AnonHugePages {mib(huge)} >= 80% of Rss {mib(rss)} with jemalloc")
    stats = d.client_stats(pid)
    ctx.expect(stats is not None and stats.get("coverage_permille", 0) >= 900,
               f"the daemon's client-gone line has the coverage ({stats and stats.get('coverage_permille')})")
    log(f"numbers: sqlite3 {CACHE_KIB >> 10} MiB cache: jemalloc Rss {mib(rss)} AnonHugePages {mib(huge)} "
        f"coverage {permille / 10:.1f}%, {jem_s:.1f} s; plain Rss {mib(plain_mem.get('Rss', 0))} AnonHugePages "
        f"{mib(plain_mem.get('AnonHugePages', 0))}, {plain_s:.1f} s")


# ---- allocator.py choice ---------------------------------------------------------

def probe_argv():
    """A python3 that prints the malloc libraries mapped in it."""
    return [progtest.PYTHON, WORKLOAD, "dense", "4"]


def installed(name):
    try:
        require_allocator(name)
        return True
    except hptest.Skip:
        return False


def choice(ctx):
    require_allocator("jemalloc")
    d = ctx.daemon()
    other = next((a for a in ("mimalloc", "tcmalloc") if installed(a)), None)
    env_clean = {k: v for k, v in os.environ.items() if k != "HUGEPAGED_ALLOCATOR"}

    def loaded(opts=(), env=None, argv=None):
        r = hptest.run(progtest.managed(ctx, d, argv or probe_argv(), ["--debug", *opts]), timeout=300,
                       env=dict(env_clean, **(env or {})))
        ctx.require(r.rc == 0, f"{opts} {env}: the probe exits 0{r.describe() if r.rc else ''}")
        return malloc_libs(r), r

    libs, r = loaded()
    ctx.expect(libs == [] and "allocator glibc (the default)" in r.err,
               f"the default is glibc: no malloc library loaded ({libs})")
    libs, r = loaded(env={"HUGEPAGED_ALLOCATOR": "jemalloc"})
    ctx.expect(libs == ["libjemalloc.so.2"], f"HUGEPAGED_ALLOCATOR=jemalloc loads jemalloc ({libs})")
    libs, r = loaded(["--allocator", "glibc"], env={"HUGEPAGED_ALLOCATOR": "jemalloc"})
    ctx.expect(libs == [], f"--allocator glibc wins over HUGEPAGED_ALLOCATOR ({libs})")
    libs, r = loaded(env={"HUGEPAGED_ALLOCATOR": "hoard"})
    ctx.expect(libs == [] and "HUGEPAGED_ALLOCATOR=hoard: expected glibc, jemalloc, mimalloc or tcmalloc" in r.err,
               f"an unknown HUGEPAGED_ALLOCATOR is reported and the default used ({libs})")

    r = hptest.run([ctx.paths.run, "--allocator", "hoard", "--", "true"], timeout=60)
    ctx.expect(r.rc == 2 and "invalid --allocator 'hoard'" in r.err, f"--allocator hoard: usage error 2 ({r.rc})")

    # LD_PRELOAD: the shim, then the allocator, then the rest, each once
    libm = next((p for p in (os.path.join(x, "libm.so.6") for x in LIBDIRS) if os.path.exists(p)), None)
    jem = os.path.realpath(next(os.path.join(x, LIBS["jemalloc"]) for x in LIBDIRS
                                if os.path.exists(os.path.join(x, LIBS["jemalloc"]))))
    if libm:
        r = hptest.run(progtest.managed(ctx, d, ["/bin/sh", "-c", 'echo "LD_PRELOAD=$LD_PRELOAD"'],
                                        ["--allocator", "jemalloc"]), timeout=60,
                       env=dict(env_clean, LD_PRELOAD=f"{libm}:{jem} {ctx.paths.preload}"))
        ctx.expect(r.kv.get("LD_PRELOAD") == f"{os.path.realpath(ctx.paths.preload)}:{jem}:{libm}",
                   f"LD_PRELOAD is the shim, the allocator, then the rest, each once ({r.kv.get('LD_PRELOAD')})")

    # [Program:NAME] Allocator= of the configuration file, NAME the executable's
    # file name with links resolved (as the daemon matches it)
    exe = os.path.basename(os.path.realpath(progtest.PYTHON))
    conf = os.path.join(ctx.tmp, "run.conf")
    with open(conf, "w") as f:
        f.write(f"[Program:{exe}]\nAllocator = jemalloc\n")
    libs, r = loaded(["--config", conf])
    ctx.expect(libs == ["libjemalloc.so.2"] and f"[Program:{exe}] Allocator=jemalloc" in r.err,
               f"[Program:{exe}] Allocator=jemalloc in --config's file loads jemalloc ({libs})")
    if other:
        libs, r = loaded(["--config", conf], env={"HUGEPAGED_ALLOCATOR": other})
        ctx.expect(len(libs) == 1 and libs[0].startswith(LIBS[other]),
                   f"HUGEPAGED_ALLOCATOR={other} wins over the configuration ({libs})")
    with open(conf, "w") as f:
        f.write(f"[Program:{exe}]\nAllocator = hoard\n")
    libs, r = loaded(["--config", conf])
    ctx.expect(libs == [] and re.search(rf"{re.escape(conf)}:2: Allocator: 'hoard' is not one of", r.err),
               f"a bad Allocator= is reported with file, line and key, and ignored ({libs})")

    # redis-server is linked to libjemalloc.so.2: it keeps it, and gets no
    # second allocator, whichever one is asked for
    redis_bin = progtest.require_program("/usr/bin/redis-server", "redis-server")
    for name in [a for a in ("jemalloc", other) if a]:
        srv = progtest.RedisServer(ctx, f"redis-{name}",
                                   prefix=progtest.managed(ctx, d, [], ["--allocator", name, "--debug"]))
        srv.start()
        try:
            with open(f"/proc/{srv.pid}/maps") as f:
                maps = f.read()
            libs = sorted({os.path.basename(l.split()[-1]) for l in maps.splitlines()
                           if "/" in l and "malloc" in os.path.basename(l.split()[-1])})
            ctx.expect(libs == ["libjemalloc.so.2"],
                       f"redis-server with --allocator {name}: only its own libjemalloc.so.2 is mapped ({libs})")
            ctx.expect("libhugepaged-preload.so" in maps, f"redis-server with --allocator {name}: the shim is loaded")
            c = srv.client()
            c.call("SET", "k", "v" * 100000)
            ctx.expect(c.call("GET", "k") == b"v" * 100000, f"redis-server with --allocator {name}: data reads back")
            c.close()
        finally:
            srv.stop()
        ctx.expect(re.search(rf"allocator {name} \(--allocator\) not loaded: \S+ has its own allocator "
                             rf"\(it is linked to libjemalloc.so.2\)", srv.log()) is not None,
                   f"redis-server with --allocator {name}: --debug says it keeps its own allocator")
    log(f"{redis_bin}: checked with {', '.join(a for a in ('jemalloc', other) if a)}")

    # a statically linked program: no allocator is preloaded or tuned for it
    static = os.environ.get("HP_STATIC_ENV")
    if not static:
        log("HP_STATIC_ENV not built (no static C library): the static case is not checked")
        return
    r = hptest.run(progtest.managed(ctx, d, [static], ["--allocator", "jemalloc", "--debug"]), timeout=60,
                   env=env_clean)
    ctx.expect(r.rc == 0 and "libjemalloc" not in r.kv.get("LD_PRELOAD", "") and r.kv.get("MALLOC_CONF") == "",
               f"a static program gets no allocator in LD_PRELOAD and no tuning ({r.kv})")
    ctx.expect("has its own allocator (it is statically linked)" in r.err,
               "--debug says the static program is left alone")

def test(ctx):
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    if what in LIBS:
        require_allocator(what)
        progtest.require_program(progtest.PYTHON, "python3")
        d = ctx.daemon()
        python_runs(ctx, d, what)
        shim_check_runs(ctx, d, what)
    elif what == "sqlite":
        sqlite(ctx)
    elif what == "choice":
        choice(ctx)
    else:
        raise hptest.Failure(f"usage: allocator.py {'|'.join(LIBS)}|sqlite|choice (got '{what}')")


if __name__ == "__main__":
    hptest.main(test)
