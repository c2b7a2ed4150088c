#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Debian's python3, unmodified, under hugepaged-run.

- dense: a 1 GiB bytearray (CPython -> glibc calloc/realloc, i.e. the shim's
  malloc blocks), filled and hashed: the same SHA-256 with and without the
  shim; under the shim AnonHugePages >= 900 MiB, without it 0 (THP
  "madvise": nobody advised the memory).
- sparse: one byte touched per 2 MiB of a 2 GiB mmap.mmap(MAP_PRIVATE): the
  mapping's Rss stays under 1.1 x its 4 KiB need.
- runtime: threads growing large objects at once under a 200 us signal
  timer, fork() without exec (the child is a client of its own, with its
  parent's ranges), subprocess (the
  child connects on its own) and exec (the new image connects on its own).
The daemon must have served each managed process's faults.
"""

import re

import progtest
from progtest import MiB, hptest, log, mib

WORKLOAD = progtest.HERE + "/py_workload.py"


def run_py(ctx, d, args, shim, timeout=900):
    argv = [progtest.PYTHON, WORKLOAD, *args]
    if shim:
        argv = progtest.managed(ctx, d, argv, ["--debug"])
    r = hptest.run(argv, timeout=timeout)
    label = ("shim" if shim else "plain") + " " + " ".join(args)
    ctx.require(r.rc == 0, f"{label}: exits 0 (got {r.rc}){'' if r.rc == 0 else r.describe()}")
    if shim:
        ctx.expect("not managed" not in r.err, f"{label}: hugepaged-run did not report 'not managed'")
    return r


def served(ctx, d, pid, label, promotions=False):
    stats = d.client_stats(pid)
    ctx.require(stats is not None, f"{label}: daemon logged 'client {pid} ... gone'")
    ctx.expect(stats.get("faults_served", 0) > 0,
               f"{label}: the daemon served the faults of pid {pid} (faults_served={stats.get('faults_served')})")
    if promotions:
        ctx.expect(stats.get("promotions", 0) > 0,
                   f"{label}: the daemon promoted regions (promotions={stats.get('promotions')}, "
                   f"promotions_failed={stats.get('promotions_failed')})")
    return stats


def dense(ctx, d):
    size = 1024 * MiB
    shim = run_py(ctx, d, ["dense", "1024", "--wait", "30"], True)
    plain = run_py(ctx, d, ["dense", "1024"], False)
    ctx.expect(shim.kv["hash"] == plain.kv["hash"],
               f"dense: same SHA-256 with and without the shim ({shim.kv['hash'][:16]}..)")
    ctx.expect(shim.int("aligned") == 1, "dense: the bytearray lives in a 2 MiB-aligned block of the shim")
    ctx.expect(shim.int("anon_huge") >= 900 * MiB,
               f"dense: AnonHugePages under the shim {mib(shim.int('anon_huge'))} >= 900 MiB")
    if progtest.thp_enabled() == "madvise":
        ctx.expect(plain.int("anon_huge") == 0,
                   f"dense: AnonHugePages without the shim is 0 (THP madvise; got {mib(plain.int('anon_huge'))})")
    else:
        log(f"THP enabled={progtest.thp_enabled()}: AnonHugePages without the shim not checked")
    served(ctx, d, shim.int("pid"), "dense", promotions=True)
    log(f"numbers: python dense 1 GiB: shim Rss {mib(shim.int('rss'))} AnonHugePages "
        f"{mib(shim.int('anon_huge'))} fill {shim.float('fill_s'):.2f} s hash {shim.float('hash_s'):.2f} s; "
        f"plain Rss {mib(plain.int('rss'))} AnonHugePages {mib(plain.int('anon_huge'))} "
        f"fill {plain.float('fill_s'):.2f} s hash {plain.float('hash_s'):.2f} s")


def sparse(ctx, d):
    shim = run_py(ctx, d, ["sparse", "2048"], True)
    plain = run_py(ctx, d, ["sparse", "2048"], False)
    regions = shim.int("regions")
    need = regions * 4096
    ctx.expect(shim.int("data_ok") == 1, "sparse: every touched byte reads back")
    ctx.expect(regions >= 1023, f"sparse: {regions} regions touched")
    ctx.expect(shim.int("mapping_rss") <= 1.1 * need,
               f"sparse: Rss of the mapping {shim.int('mapping_rss') / 1024:.0f} KiB <= 1.1 x "
               f"{need / 1024:.0f} KiB ({regions} regions x 4 KiB)")
    stats = served(ctx, d, shim.int("pid"), "sparse")
    ctx.expect(stats.get("faults_served", 0) >= regions,
               f"sparse: a served fault per touched region ({stats.get('faults_served')} >= {regions})")
    log(f"numbers: python sparse 2 GiB: shim mapping Rss {shim.int('mapping_rss') / 1024:.0f} KiB "
        f"AnonHugePages {shim.int('mapping_anon_huge') // 1024} KiB touch {shim.float('touch_s'):.2f} s; "
        f"plain mapping Rss {plain.int('mapping_rss') / 1024:.0f} KiB AnonHugePages "
        f"{plain.int('mapping_anon_huge') // 1024} KiB touch {plain.float('touch_s'):.2f} s")


def runtime(ctx, d):
    r = run_py(ctx, d, ["runtime"], True)
    pid = r.int("pid")
    ctx.expect(r.int("failures") == 0, "runtime: threads, fork, subprocess checks passed")
    ctx.expect(r.int("signals") > 0, f"runtime: signals arrived while the threads faulted ({r.kv['signals']})")
    # hugepaged-run's probe, the first image and the exec'ed image: three
    # connections of one pid; both images had their faults served
    d.client_stats(pid)             # waits until every connection of pid ended
    lines = progtest.gone_lines(d, pid)
    images = [l for l in lines if progtest.counters(l).get("faults_served", 0) > 0]
    ctx.expect(len(images) >= 2,
               f"runtime: the program and the image it exec'ed each connected and were served "
               f"({len(lines)} connections of pid {pid}, {len(images)} with faults served)")
    ctx.expect(r.int("anon_huge") > 0, f"runtime: the exec'ed image got huge pages ({mib(r.int('anon_huge'))})")
    spawned = int(r.kv["spawned_pid"])
    served(ctx, d, spawned, "runtime: subprocess child")
    child = r.int("fork_child")
    ctx.expect(re.search(rf"client {child} \(.*\): forked from client {pid}, inherited [1-9]", d.log()) is not None
               and d.client_stats(child) is not None,
               f"runtime: the forked child {child} was a client of its own and took over its parent's ranges")


def test(ctx):
    progtest.require_program(progtest.PYTHON, "python3")
    d = ctx.daemon()
    dense(ctx, d)
    sparse(ctx, d)
    runtime(ctx, d)


if __name__ == "__main__":
    hptest.main(test)
