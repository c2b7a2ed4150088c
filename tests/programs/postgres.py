#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""PostgreSQL 15 (Debian's) under hugepaged-run: the backends are clients.

The postmaster forks a backend per connection without exec. As the postgres
user, in a data directory and socket directory of the test's own (its own
port, no TCP), initdb runs plainly; postgres runs under hugepaged-run with
work_mem=256MB. `pgbench -i -s 10`, then a short TPC-B run and a run of a
sort over pgbench_accounts that fits work_mem (an in-memory quicksort).
Properties: pgbench reports no failed transaction; the TPC-B invariant
holds (the sums of the balances of accounts, tellers and branches equal the
sum of the history's deltas); the in-memory sort really was one (EXPLAIN
ANALYZE says quicksort, Memory); backends forked by the postmaster were
clients of their own with served faults (the daemon's `forked from client
<postmaster>` and `gone` lines).
"""

import os
import re
import shutil
import subprocess
import time

import progtest
from progtest import hptest

PGBIN = "/usr/lib/postgresql/15/bin"
# every row sorted (no top-N heap): about 160 MiB, in memory within work_mem
SORT_SQL = "SELECT aid FROM pgbench_accounts ORDER BY filler DESC, abalance DESC OFFSET 999999 LIMIT 1;\n"


def test(ctx):
    for b in ("initdb", "postgres", "pgbench", "psql", "pg_ctl"):
        progtest.require_program(os.path.join(PGBIN, b), "postgresql-15")
    setpriv = progtest.require_program("setpriv", "util-linux")
    try:
        import pwd
        pw = pwd.getpwnam("postgres")
    except KeyError:
        raise hptest.Skip("no postgres user (Debian package postgresql-15 creates it)")

    # copies the postgres user can load, whatever the build tree's permissions
    bindir = os.path.join(ctx.tmp, "bin")
    os.mkdir(bindir, 0o755)
    for attr in ("run", "preload"):
        dst = os.path.join(bindir, os.path.basename(getattr(ctx.paths, attr)))
        shutil.copy2(getattr(ctx.paths, attr), dst)
        os.chmod(dst, 0o755)
        setattr(ctx.paths, attr, dst)
    env = dict(os.environ, HUGEPAGED_PRELOAD=ctx.paths.preload, LC_ALL="C")

    d = hptest.Daemon(ctx, [], "hugepaged")
    with open(d.config, "w") as f:
        f.write("[Daemon]\nAllowedUsers=postgres\n")
    ctx.daemons.append(d)
    d.start()

    data, sock = os.path.join(ctx.tmp, "pgdata"), os.path.join(ctx.tmp, "pgsock")
    for p in (data, sock):
        os.mkdir(p, 0o700)
        os.chown(p, pw.pw_uid, pw.pw_gid)
    as_pg = [setpriv, f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups", "--"]
    port = str(progtest.free_port())

    r = hptest.run(as_pg + [f"{PGBIN}/initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync"],
                   timeout=300, env=env)
    ctx.require(r.rc == 0, f"initdb ran{'' if r.rc == 0 else r.describe()}")

    log_path = os.path.join(ctx.tmp, "postgres.log")
    argv = as_pg + progtest.managed(ctx, d, [f"{PGBIN}/postgres", "-D", data, "-k", sock, "-p", port,
                                             "-c", "listen_addresses=", "-c", "work_mem=256MB",
                                             "-c", "maintenance_work_mem=256MB", "-c", "shared_buffers=64MB",
                                             "-c", "huge_pages=off", "-c", "fsync=off",
                                             "-c", "max_connections=20"], ["--debug"])
    hptest.log("$ " + " ".join(argv))
    with open(log_path, "w") as lf:
        pg = hptest.spawn(argv, stdout=lf, stderr=lf, env=env)
    postmaster = pg.pid     # setpriv and hugepaged-run exec: the same process
    conn = ["-h", sock, "-p", port, "-U", "postgres"]
    try:
        progtest.wait_until(lambda: pg.poll() is None and subprocess.run(
            as_pg + [f"{PGBIN}/pg_isready", "-q", *conn], env=env).returncode == 0, 60,
            "postgres accepts connections")

        r = hptest.run(as_pg + [f"{PGBIN}/pgbench", "-i", "-s", "10", "-q", *conn, "postgres"], timeout=600,
                       env=env)
        ctx.require(r.rc == 0, f"pgbench -i -s 10{'' if r.rc == 0 else r.describe()}")
        r = hptest.run(as_pg + [f"{PGBIN}/pgbench", "-c", "4", "-j", "2", "-t", "300", *conn, "postgres"],
                       timeout=600, env=env)
        ctx.expect(r.rc == 0 and re.search(r"number of failed transactions: 0\b", r.out) is not None
                   and re.search(r"number of transactions actually processed: 1200/1200", r.out) is not None,
                   f"pgbench TPC-B: 1200 of 1200 transactions, none failed{'' if r.rc == 0 else r.describe()}")
        sort_file = os.path.join(ctx.tmp, "sort.sql")
        with open(sort_file, "w") as f:
            f.write(SORT_SQL)
        os.chmod(sort_file, 0o644)
        r = hptest.run(as_pg + [f"{PGBIN}/pgbench", "-n", "-c", "2", "-j", "2", "-t", "4", "-f", sort_file,
                                *conn, "postgres"], timeout=600, env=env)
        ctx.expect(r.rc == 0 and re.search(r"number of failed transactions: 0\b", r.out) is not None,
                   f"pgbench sorts of pgbench_accounts: none failed{'' if r.rc == 0 else r.describe()}")

        psql = as_pg + [f"{PGBIN}/psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", *conn, "postgres", "-c"]
        r = hptest.run(psql + ["EXPLAIN (ANALYZE, COSTS OFF) " + SORT_SQL], timeout=300, env=env)
        ctx.expect(r.rc == 0 and re.search(r"Sort Method: quicksort\s+Memory", r.out)
                   is not None, f"the sort ran in memory (work_mem=256MB): {r.out.strip()[:300]}")
        r = hptest.run(psql + ["SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT sum(tbalance) FROM "
                                "pgbench_tellers), (SELECT sum(bbalance) FROM pgbench_branches), (SELECT sum(delta) "
                                "FROM pgbench_history), (SELECT count(*) FROM pgbench_accounts);"], timeout=300, env=env)
        sums = r.out.strip().split("|")
        ctx.expect(r.rc == 0 and len(sums) == 5 and len(set(sums[:4])) == 1 and sums[4] == "1000000",
                   f"TPC-B invariant: accounts, tellers, branches and history sum alike, 1000000 accounts ({sums})")
    finally:
        subprocess.run(as_pg + [f"{PGBIN}/pg_ctl", "stop", "-D", data, "-m", "fast", "-w", "-t", "60"], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            pg.wait(timeout=60)
        except subprocess.TimeoutExpired:
            hptest.kill_tree(pg)

    log = d.log()
    backends = sorted(set(int(p) for p in re.findall(rf"client (\d+) \(postgres\): forked from client {postmaster},",
                                                     log)))
    ctx.expect(len(backends) >= 4, f"processes forked by the postmaster {postmaster} were clients ({len(backends)})")
    served = []
    for m in re.finditer(r"client (\d+) \(postgres\) gone .*\bfaults_served=(\d+)", log):
        if int(m.group(1)) in backends and int(m.group(2)) > 0:
            served.append(int(m.group(1)))
    ctx.expect(len(served) > 0, f"the daemon served faults of backends ({len(served)} of {len(backends)})")


if __name__ == "__main__":
    hptest.main(test)
