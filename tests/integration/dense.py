#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Dense memory becomes huge under hugepaged.

1 GiB written page by page in order, and another 1 GiB in a random page
order: AnonHugePages of the mapping must reach 99% of its size within the
workload's poll bound (a correctness bound, not a speed target), every page
must hold its pattern afterwards, and the daemon must report promotions for
the client.

A stream that stops: the daemon hands regions to the kernel ahead of a
sequential stream; when the stream stops, it takes the untouched ones back,
so one page touched later in each of them is a 4 KiB page it serves, not a
huge page; and the regions the stream went through are registered again.
"""

import hptest

SIZE = 1 << 30
WAIT_S = 30


def case(ctx, d, mode):
    r = hptest.run(ctx.managed(d.socket, ["--wait", str(WAIT_S), mode, "1G"], ["--debug"]), timeout=600)
    ctx.require(r.rc == 0, f"{mode}: workload exits 0 (got {r.rc}){'' if r.rc == 0 else r.describe()}")
    ctx.expect(r.int("mismatches") == 0, f"{mode}: data intact ({r.kv['mismatches']} mismatches)")
    ctx.expect("not managed" not in r.err, f"{mode}: hugepaged-run did not report 'not managed'")
    huge = r.int("anon_huge_bytes")
    ctx.expect(huge >= 0.99 * SIZE,
               f"{mode}: AnonHugePages {huge / 2**20:.0f} MiB >= 99% of {SIZE / 2**20:.0f} MiB "
               f"within {WAIT_S} s (waited {r.float('wait_ms') / 1e3:.2f} s, "
               f"populate {r.float('populate_ms') / 1e3:.2f} s, {r.int('vmas')} VMAs)")
    stats = d.client_stats(r.int("pid"))
    ctx.require(stats is not None, f"{mode}: daemon logged 'client {r.int('pid')} ... gone'")
    ctx.expect(stats.get("promotions", 0) > 0,
               f"{mode}: daemon promoted regions for the client (promotions={stats.get('promotions')}, "
               f"promotions_failed={stats.get('promotions_failed')}, regions_huge={stats.get('regions_huge')})")


def stream_stop(ctx, d):
    r = hptest.run(ctx.managed(d.socket, ["--settle", "2", "stream-stop", "64M"]), timeout=300)
    ctx.require(r.rc == 0, f"stream-stop: workload exits 0 (got {r.rc}){'' if r.rc == 0 else r.describe()}")
    ctx.expect(r.int("mismatches") == 0, f"stream-stop: data intact ({r.kv['mismatches']} mismatches)")
    ctx.expect(r.int("head_huge_reached") == 1,
               f"stream-stop: the 8 regions written in order are huge ({r.int('head_huge_bytes') >> 20} MiB)")
    tail = r.int("tail_pages_touched")
    ctx.expect(r.int("tail_rss_bytes") <= 2 * tail * 4096,
               f"stream-stop: the {tail} regions after the stream hold {r.int('tail_rss_bytes') >> 10} KiB "
               f"for {tail} touched pages (<= {2 * tail * 4} KiB: no huge page left by the readahead)")
    ctx.expect(r.int("unregistered_bytes") == 0,
               f"stream-stop: every region handed to the kernel is registered again after the stream "
               f"({r.int('unregistered_bytes') >> 10} KiB of the mapping without the userfaultfd)")
    stats = d.client_stats(r.int("pid"))
    ctx.require(stats is not None, f"stream-stop: daemon logged 'client {r.int('pid')} ... gone'")
    ctx.expect(stats.get("faults_served", 0) >= tail,
               f"stream-stop: the daemon served the later pages (faults_served={stats.get('faults_served')} "
               f">= {tail}): the regions handed over ahead were taken back")


def test(ctx):
    d = ctx.daemon()
    case(ctx, d, "dense-seq")
    case(ctx, d, "dense-rand")
    stream_stop(ctx, d)


if __name__ == "__main__":
    hptest.main(test)
