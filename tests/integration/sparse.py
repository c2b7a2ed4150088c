#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Sparse memory stays small under hugepaged.

A 2 GiB mapping with one page touched in every 2 MiB region must cost about
what 4 KiB pages cost (Rss <= 1.1 x regions x 4 KiB), where THP at fault time
would cost 2 GiB. The same for 32 pages per region (below the default
promotion threshold of 64) on 512 MiB. The daemon's log must show that it
served faults for the workload, i.e. the memory really was managed.
"""

import hptest

BOUND = 1.10


def case(ctx, d, args, label):
    r = hptest.run(ctx.managed(d.socket, args, ["--debug"]), timeout=300)
    ctx.require(r.rc == 0, f"{label}: workload exits 0 (got {r.rc}){'' if r.rc == 0 else r.describe()}")
    ctx.expect(r.int("mismatches") == 0, f"{label}: data intact ({r.kv['mismatches']} mismatches)")
    ctx.expect("not managed" not in r.err, f"{label}: hugepaged-run did not report 'not managed'")
    rss, need = r.int("rss_bytes"), r.int("need_bytes")
    ctx.expect(rss <= BOUND * need,
               f"{label}: Rss {rss / 2**20:.1f} MiB <= {BOUND} x 4 KiB need {need / 2**20:.1f} MiB "
               f"(ratio {rss / need:.3f}, AnonHugePages {r.int('anon_huge_bytes') / 2**20:.1f} MiB)")
    stats = d.client_stats(r.int("pid"))
    ctx.require(stats is not None, f"{label}: daemon logged 'client {r.int('pid')} ... gone'")
    ctx.expect(stats.get("faults_served", 0) > 0,
               f"{label}: daemon served faults for the workload (faults_served={stats.get('faults_served')})")


def test(ctx):
    d = ctx.daemon()
    case(ctx, d, ["sparse", "2G"], "2 GiB, 1 page per 2 MiB")
    case(ctx, d, ["--per-region", "32", "sparse", "512M"], "512 MiB, 32 pages per 2 MiB")


if __name__ == "__main__":
    hptest.main(test)
