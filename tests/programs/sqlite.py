#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Debian's sqlite3 shell, unmodified, under hugepaged-run.

The same SQL builds a ~700 MiB database (1.5 million rows, two indexes: the
sorter's growing buffers are large malloc blocks, resized with realloc) and
then queries it with a 1 GiB page cache (PRAGMA cache_size), once under the
shim and once without. Properties:
- every query result is identical, and PRAGMA integrity_check says ok;
- the database files are identical byte for byte;
- the daemon served faults of both sqlite3 processes under the shim (they
  were managed), including the shell's own children (.shell).
Rss and AnonHugePages of the querying process are read at the end of the
queries (with the page cache full) and reported with the run times.
"""

import hashlib
import os
import re
import time

import progtest
from progtest import hptest, log, mib

ROWS = 1_500_000
CACHE_KIB = 1 << 20        # PRAGMA cache_size = -KiB: a 1 GiB page cache

BUILD = f"""\
PRAGMA page_size = 4096;
PRAGMA cache_size = -{CACHE_KIB};
PRAGMA journal_mode = OFF;
PRAGMA synchronous = OFF;
CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER NOT NULL, s TEXT NOT NULL, b BLOB NOT NULL);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {ROWS})
INSERT INTO t SELECT x, (x * 2654435761) % 1000003, printf('%08d-%s', x, hex(sha3(x, 256))),
  sha3(x, 512) || sha3(-x, 512) || sha3(x * 3, 512) || sha3(x * 7, 512) FROM c;
CREATE INDEX t_k ON t(k);
CREATE INDEX t_s ON t(s);
"""

QUERY = f"""\
PRAGMA cache_size = -{CACHE_KIB};
SELECT count(*), sum(k), total(length(b)), max(s) FROM t;
SELECT hex(sha3_query('SELECT id, k, s, b FROM t ORDER BY id', 256));
SELECT hex(sha3_query('SELECT k, count(*), min(id) FROM t GROUP BY k ORDER BY k', 256));
SELECT hex(sha3_query('SELECT id FROM t WHERE k BETWEEN 1000 AND 90000 ORDER BY k, id', 256));
SELECT hex(sha3_query('SELECT id, s FROM t ORDER BY substr(b, 20, 16), id LIMIT 100000', 256));
SELECT hex(sha3_query('SELECT s, k FROM t INDEXED BY t_s WHERE s > ''01000000'' ORDER BY s', 256));
SELECT id, s FROM t WHERE s >= '00700000' ORDER BY s LIMIT 3;
PRAGMA integrity_check;
.shell cat /proc/$PPID/smaps_rollup
"""

_SMAPS = re.compile(r"^(\w+):\s+(\d+) kB$")


def run_sqlite(ctx, d, sqlite, db, script, shim, label):
    path = os.path.join(ctx.tmp, f"{label}.sql")
    with open(path, "w") as f:
        f.write(script)
    # -init runs the script, then the command-line ".quit" ends the shell
    argv = [sqlite, "-batch", "-init", path, db, ".quit"]
    if shim:
        argv = progtest.managed(ctx, d, argv, ["--debug"])
    t0 = time.monotonic()
    r = hptest.run(argv, timeout=1200)
    seconds = time.monotonic() - t0
    ctx.require(r.rc == 0 and not re.search(r"(?i)error", r.err),
                f"{label}: sqlite3 exits 0 without errors (got {r.rc}){'' if r.rc == 0 else r.describe()}")
    if shim:
        ctx.expect("not managed" not in r.err, f"{label}: hugepaged-run did not report 'not managed'")
    results, mem = [], {}
    for line in r.out.splitlines():
        m = _SMAPS.match(line)
        if m:
            mem[m.group(1)] = int(m.group(2)) * 1024
        elif not line.startswith("/proc/") and "[rollup]" not in line:
            results.append(line)
    pid = _pid(r.err)
    return results, mem, seconds, pid


def _pid(err):
    """sqlite3's pid, from the shim's --debug line ("hugepaged: pid N (sqlite3): ...")."""
    m = re.search(r"hugepaged: pid (\d+) \(sqlite3\)", err)
    return int(m.group(1)) if m else None


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def test(ctx):
    sqlite = progtest.require_program("/usr/bin/sqlite3", "sqlite3")
    d = ctx.daemon()
    runs = {}
    for shim in (True, False):
        name = "shim" if shim else "plain"
        db = os.path.join(ctx.tmp, f"{name}.db")
        b_res, _, b_s, b_pid = run_sqlite(ctx, d, sqlite, db, BUILD, shim, f"{name}-build")
        q_res, q_mem, q_s, q_pid = run_sqlite(ctx, d, sqlite, db, QUERY, shim, f"{name}-query")
        runs[name] = dict(db=db, build=b_res, query=q_res, mem=q_mem, build_s=b_s, query_s=q_s,
                          pids=(b_pid, q_pid))
        ctx.expect(q_res and q_res[-1] == "ok", f"{name}: PRAGMA integrity_check = ok (got {q_res[-1:]})")
        ctx.expect("Rss" in q_mem, f"{name}: the query run read its own smaps_rollup")

    shim, plain = runs["shim"], runs["plain"]
    ctx.expect(len(shim["query"]) >= 9 and shim["query"] == plain["query"],
               f"query results identical with and without the shim ({len(shim['query'])} lines)")
    if shim["query"] != plain["query"]:
        for a, b in zip(shim["query"], plain["query"]):
            if a != b:
                log(f"  shim:  {a[:120]}\n  plain: {b[:120]}")
    log(f"  first result: {shim['query'][0][:100]}")
    ctx.expect(sha256_file(shim["db"]) == sha256_file(plain["db"]),
               "the database files are identical byte for byte")

    for what, pid in zip(("build", "query"), shim["pids"]):
        ctx.require(pid is not None, f"{what}: the shim's --debug line gave sqlite3's pid")
        stats = d.client_stats(pid)
        ctx.expect(stats is not None and stats.get("faults_served", 0) > 0,
                   f"{what}: the daemon served sqlite3's faults (pid {pid}: "
                   f"faults_served={stats and stats.get('faults_served')}, "
                   f"promotions={stats and stats.get('promotions')})")
    # `.shell` ran sh (and cat) under the inherited shim: they connected too
    ctx.expect(re.search(r"client \d+ \(sh\) gone", d.log()) is not None,
               "the shell sqlite3 spawned for .shell connected on its own")

    size = os.path.getsize(shim["db"])
    log(f"numbers: sqlite3 ({ROWS} rows, {mib(size)} database, {CACHE_KIB >> 10} MiB cache): "
        f"query process shim Rss {mib(shim['mem'].get('Rss', 0))} AnonHugePages "
        f"{mib(shim['mem'].get('AnonHugePages', 0))}, plain Rss {mib(plain['mem'].get('Rss', 0))} "
        f"AnonHugePages {mib(plain['mem'].get('AnonHugePages', 0))}; build {shim['build_s']:.1f} s vs "
        f"{plain['build_s']:.1f} s, queries {shim['query_s']:.1f} s vs {plain['query_s']:.1f} s (shim vs plain)")


if __name__ == "__main__":
    hptest.main(test)
