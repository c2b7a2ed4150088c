#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A pre-fork server: workers forked without exec are clients of their own.

`hp-fork prefork 4 256` under hugepaged-run: the parent writes part of a
64 MiB mapping, then forks 4 workers without exec; each checks the parent's
pages, fills the holes of that inherited mapping, writes and verifies
256 MiB of its own. Properties: every byte verified in every process; each
worker is a client under its own pid (the daemon's `client PID ... gone`
line) with faults_served > 0 and promotions > 0; its 256 MiB is at least 90%
AnonHugePages (measured by the worker in its own smaps); the daemon says it
took over the parent's ranges for each worker.
"""

import os
import re

import hptest

WORKERS = 4
SIZE_MIB = 256


def test(ctx):
    fork_bin = os.environ.get("HP_FORK", "")
    ctx.require(fork_bin and os.access(fork_bin, os.X_OK), f"hp-fork is built (HP_FORK={fork_bin!r})")
    d = ctx.daemon()
    argv = [ctx.paths.run, "--socket", d.socket, "--debug", "--", fork_bin, "prefork", str(WORKERS), str(SIZE_MIB)]
    r = hptest.run(argv, timeout=240)
    ctx.require(r.rc == 0, f"hp-fork prefork exits 0 (got {r.rc}){'' if r.rc == 0 else r.describe()}")
    ctx.expect(r.int("mismatches") == 0, f"the parent's pages are unchanged by its workers ({r.kv['mismatches']})")

    workers = [dict(re.findall(r"(\w+)=(\d+)", l)) for l in r.out.splitlines() if l.startswith("worker=")]
    ctx.require(len(workers) == WORKERS, f"{WORKERS} workers reported ({len(workers)})")
    parent = r.int("pid")
    for w in workers:
        pid = int(w["pid"])
        ctx.expect(pid != parent, f"worker {w['worker']} is a process of its own (pid {pid})")
        ctx.expect(int(w["mismatches"]) == 0, f"worker {pid}: every page verified ({w['mismatches']} mismatches)")
        huge, size = int(w["huge_kb"]), int(w["size_kb"])
        ctx.expect(huge * 10 >= size * 9,
                   f"worker {pid}: AnonHugePages {huge} kB >= 90% of its {size} kB")
        ctx.expect(f"pid {pid} " in r.err and "after fork from pid" in r.err,
                   f"worker {pid}: the shim says it is managed after the fork")
        ctx.expect(re.search(rf"client {pid} \(.*\): forked from client {parent}, inherited [1-9]\d* of",
                             d.log()) is not None,
                   f"worker {pid}: the daemon took over ranges of the parent {parent}")
        s = d.client_stats(pid)
        ctx.require(s is not None, f"worker {pid} was a client of the daemon (a 'client {pid} ... gone' line)")
        ctx.expect(s.get("faults_served", 0) > 0, f"worker {pid}: faults_served={s.get('faults_served')} > 0")
        ctx.expect(s.get("promotions", 0) > 0, f"worker {pid}: promotions={s.get('promotions')} > 0")
        hptest.log(f"worker {pid}: inherited mapping {w['inherited_huge_kb']} of {w['inherited_kb']} kB huge")


if __name__ == "__main__":
    hptest.main(test)
