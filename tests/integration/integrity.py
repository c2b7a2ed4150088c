#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Managed memory keeps its data through everything a program does to it.

Runs `hp-workload integrity` under hugepaged-run: patterns written and read
back across promotion, MADV_DONTNEED, mremap (move, grow, shrink), partial
munmap, fork, read(2)/write(2) into untouched pages (kernel-mode faults) and
8 threads faulting into one mapping at once. Zero mismatches are required,
and the daemon must have served faults for the workload.
"""

import hptest


def test(ctx):
    d = ctx.daemon()
    r = hptest.run(ctx.managed(d.socket, ["--wait", "30", "integrity"], ["--debug"]), timeout=300)
    for k, v in r.kv.items():
        if k.startswith("check_") or k.endswith("_huge_pct"):
            hptest.log(f"  {k}={v}")
    ctx.expect(r.rc == 0, f"workload exits 0 (got {r.rc}){'' if r.rc == 0 else r.describe()}")
    ctx.require("mismatches" in r.kv, "workload ran every check (printed mismatches=)")
    ctx.expect(r.int("mismatches") == 0, f"data intact ({r.kv['mismatches']} mismatches)")
    ctx.expect("not managed" not in r.err, "hugepaged-run did not report 'not managed'")
    stats = d.client_stats(r.int("pid"))
    ctx.require(stats is not None, f"daemon logged 'client {r.int('pid')} ... gone'")
    ctx.expect(stats.get("faults_served", 0) > 0,
               f"daemon served faults for the workload (faults_served={stats.get('faults_served')}, "
               f"promotions={stats.get('promotions')})")


if __name__ == "__main__":
    hptest.main(test)
