#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""PostgreSQL 15 with huge_pages=off: its shared memory on huge pages anyway.

Its shared_buffers are anonymous shared memory (MAP_SHARED|MAP_ANONYMOUS),
which the kernel leaves on 4 KiB pages while shmem_enabled is never (the
Debian default: MADV_COLLAPSE even fails EINVAL there). Under hugepaged-run
the shim maps it as a file on the daemon's huge tmpfs instead: the daemon
reserves 2 MiB per region at its first fault and maps the regions in place
once dense, in the postmaster and in its forked backends. After `pgbench
-i -s 15` (the data set fills shared_buffers), ShmemPmdMapped +
FilePmdMapped of the postmaster is at least 64 MiB once the accounts table
is read into shared_buffers (pg_prewarm: COPY, VACUUM and sequential scans
use small ring buffers and leave most of shared_buffers untouched), a short
pgbench run
passes, and the balances of accounts, tellers and branches each equal the
sum of the history. The server runs as the postgres user in a private data
directory, on a private port and socket directory.
"""

import os
import pwd
import time

import progtest
from progtest import Failure, Skip, hptest, log

BIN = progtest.PG_BIN
as_postgres = progtest.as_postgres
MiB = 1 << 20


def pmd_mapped(pid):
    """ShmemPmdMapped + FilePmdMapped of pid's mappings, in bytes."""
    total = 0
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            k = line.split()
            if k[0] in ("ShmemPmdMapped:", "FilePmdMapped:"):
                total += int(k[1]) * 1024
    return total


def test(ctx):
    for p in ("initdb", "postgres", "pg_ctl", "pg_isready", "pgbench", "psql"):
        progtest.require_program(f"{BIN}/{p}" if p != "psql" else "psql", "postgresql-15")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise Skip("no postgres user (Debian package postgresql-15 creates it)")
    with open("/sys/kernel/mm/transparent_hugepage/shmem_enabled") as f:
        log(f"shmem_enabled: {f.read().strip()}")

    data, sockdir, port, server, log_path = progtest.pg_cluster(ctx, "off")

    d = ctx.daemon("--group", "postgres")
    if "the shmem backend is off" in d.log():
        raise Skip("the shmem backend is off: " + d.log())
    logf = open(log_path, "w")
    proc = hptest.spawn(as_postgres([ctx.paths.run, "--socket", d.socket, "--debug", "--", *server]),
                        stdout=logf, stderr=logf)
    logf.close()
    try:
        ready = progtest.pg_wait_ready(sockdir, port, proc)
        ctx.require(ready, "under hugepaged-run it starts with huge_pages=off:\n"
                    + hptest.indent(open(log_path).read()[-3000:]))
        pm = int(open(os.path.join(data, "postmaster.pid")).readline())
        pgb = [f"{BIN}/pgbench", "-h", sockdir, "-p", str(port), "-U", "postgres"]
        r = hptest.run(as_postgres([*pgb, "-i", "-s", "15", "postgres"]), timeout=900)
        ctx.expect(r.rc == 0, f"pgbench -i -s 15 (rc {r.rc})" + ("" if r.rc == 0 else r.describe()))
        # COPY, VACUUM and sequential scans go through small ring buffers:
        # read the accounts into shared_buffers for real (pg_prewarm, contrib)
        psql = ["psql", "-h", sockdir, "-p", str(port), "-U", "postgres", "-AtX", "-v", "ON_ERROR_STOP=1"]
        r = hptest.run(as_postgres([*psql, "-c", "create extension if not exists pg_prewarm", "-c",
                                    "select pg_prewarm('pgbench_accounts')", "postgres"]), timeout=600)
        ctx.expect(r.rc == 0, f"pg_prewarm of pgbench_accounts (rc {r.rc}, {r.out.strip()} blocks)"
                   + ("" if r.rc == 0 else r.describe()))
        # collapses run off the fault path: wait for them (a bound, not a target)
        end = time.monotonic() + 120
        while pmd_mapped(pm) < 64 * MiB and time.monotonic() < end:
            time.sleep(0.2)
        pmd = pmd_mapped(pm)
        if not ctx.expect(pmd >= 64 * MiB, f"the postmaster's shared memory is PMD-mapped: ShmemPmdMapped + "
                          f"FilePmdMapped {pmd >> 20} MiB >= 64 MiB"):
            with open(f"/proc/{pm}/smaps") as f:
                log(f.read()[:20000])
            log("\n".join(l for l in d.log().splitlines() if "collapse" in l or "reservation" in l)[:5000])
        progtest.pg_pgbench_checked(ctx, sockdir, port)
        log("daemon: " + " ".join(l for l in d.log().splitlines() if "shared file" in l)[:400])
    finally:
        progtest.pg_stop(data, proc)
    stats = d.client_stats(pm)
    ctx.expect(stats is not None and stats.get("shmem_promotions", 0) > 0,
               f"the daemon collapsed the postmaster's regions in place ({stats and stats.get('shmem_promotions')})")
    log(open(log_path).read()[-1500:])


if __name__ == "__main__":
    hptest.main(test)
