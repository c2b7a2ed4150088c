#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""PostgreSQL 15 with huge_pages=on and an empty hugetlb pool.

Without hugepaged, `huge_pages=on` and vm.nr_hugepages=0 make the postmaster
fail at start (its MAP_SHARED|MAP_HUGETLB mmap gets ENOMEM). Under
hugepaged-run the shim asks the daemon for the pages first: PostgreSQL
starts with its shared memory on 2 MiB pages (Shared_Hugetlb of the
postmaster), `pgbench -i` and a short pgbench run pass, the balances of
accounts, tellers and branches each equal the sum of the history, and once
the server is stopped the pool is back at 0. vm.nr_hugepages is put back
at the end, even on failure. The server runs as the postgres user in a
private data directory, on a private port and socket directory.
"""

import atexit
import os
import pwd
import time

import progtest
from progtest import Failure, Skip, hptest, log

BIN = progtest.PG_BIN
as_postgres = progtest.as_postgres
NR = "/proc/sys/vm/nr_hugepages"


def read_nr():
    with open(NR) as f:
        return int(f.read())


def write_nr(v):
    with open(NR, "w") as f:
        f.write(f"{v}\n")


def hugetlb_mapped(pid):
    """Bytes of pid's mappings whose pages are 2 MiB (hugetlb)."""
    total, size = 0, 0
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            k = line.split()
            if k[0] == "Size:":
                size = int(k[1]) * 1024
            elif k[0] == "KernelPageSize:" and k[1] == "2048":
                total += size
    return total


def test(ctx):
    for p in ("initdb", "postgres", "pg_ctl", "pg_isready", "pgbench", "psql"):
        progtest.require_program(f"{BIN}/{p}" if p != "psql" else "psql", "postgresql-15")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise Skip("no postgres user (Debian package postgresql-15 creates it)")
    if not os.path.exists("/sys/kernel/mm/hugepages/hugepages-2048kB"):
        raise Skip("no 2 MiB huge pages in this kernel")
    orig = read_nr()

    def restore():
        try:
            write_nr(orig)
        except OSError:
            pass
    atexit.register(restore)

    data, sockdir, port, server, log_path = progtest.pg_cluster(ctx, "on")

    write_nr(0)
    ctx.require(read_nr() == 0, "the hugetlb pool can be emptied for the test")
    # without the daemon: what PostgreSQL does on its own
    plain = hptest.run(as_postgres(server), timeout=120)
    ctx.expect(plain.rc != 0 and "could not map anonymous shared memory" in plain.err,
               f"without hugepaged, huge_pages=on with an empty pool does not start (rc {plain.rc})")

    d = ctx.daemon("--group", "postgres")
    logf = open(log_path, "w")
    proc = hptest.spawn(as_postgres([ctx.paths.run, "--socket", d.socket, "--debug", "--", *server]),
                        stdout=logf, stderr=logf)
    logf.close()
    try:
        ready = progtest.pg_wait_ready(sockdir, port, proc)
        ctx.require(ready, "under hugepaged-run it starts with huge_pages=on and the pool empty at start:\n"
                    + hptest.indent(open(log_path).read()[-3000:]))
        pm = int(open(os.path.join(data, "postmaster.pid")).readline())
        huge, pool = hugetlb_mapped(pm), read_nr()
        ctx.expect(huge >= 128 << 20 and pool * 2 >= huge >> 20,
                   f"its shared memory is on 2 MiB pages ({huge >> 20} MiB mapped, the pool grown to {pool} pages)")
        pgb = [f"{BIN}/pgbench", "-h", sockdir, "-p", str(port), "-U", "postgres"]
        r = hptest.run(as_postgres([*pgb, "-i", "-s", "4", "postgres"]), timeout=600)
        ctx.expect(r.rc == 0, f"pgbench -i (rc {r.rc})" + ("" if r.rc == 0 else r.describe()))
        progtest.pg_pgbench_checked(ctx, sockdir, port)
    finally:
        progtest.pg_stop(data, proc)
    end = time.monotonic() + 60
    while read_nr() != 0 and time.monotonic() < end:
        time.sleep(0.1)
    ctx.expect(read_nr() == 0, f"once the server stopped the pool is back at 0 (nr_hugepages={read_nr()})")
    log(open(log_path).read()[-1500:])
    restore()


if __name__ == "__main__":
    hptest.main(test)
