#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The preload shim keeps the promises of the calls it interposes.

tests/programs/shim-check.c does with plain libc calls what allocators and
runtimes do; each mode runs under hugepaged-run with HP_EXPECT=managed (large
blocks must be 2 MiB-aligned and registered with the daemon), and without
the shim (the same checks must pass there too, so they test libc semantics,
not the shim's idea of them):

- malloc: the whole malloc family, small and large, errors included
- threads: 8 threads allocating, resizing and freeing each other's blocks
- remap: blocks written whole and grown by realloc() while the daemon
  promotes them: still registered, data intact
- fork: a child without exec is a client of its own (served, its new
  blocks registered) and keeps using the parent's blocks; the parent is
  unaffected
- exec, spawn: the new image, posix_spawn()ed and vfork()ed children connect
  on their own
- signals: faults served under a storm of signals
- closefds: a program that closes every fd at start-up and reuses the numbers
- protnone: glibc-arena-like PROT_NONE reservations opened with mprotect(),
  and jemalloc-like purging (MADV_FREE, MADV_DONTNEED)
- split: mremap() of a block made of two mappings the kernel will not merge
  (what a region the daemon split off can leave): the shim grows, moves and
  shrinks it like one mapping; without the shim the kernel says EFAULT (the
  one mode whose checks differ: that is the point of it)
"""

import os
import re

import progtest
from progtest import hptest

MODES = [
    ("malloc", []),
    ("threads", ["8", "20"]),
    ("remap", ["100"]),
    ("fork", []),
    ("exec", []),
    ("spawn", []),
    ("signals", []),
    ("closefds", []),
    ("protnone", []),
    ("split", []),
]


def pids(out):
    return [int(m) for m in re.findall(r"^pid=(\d+)$", out, re.M)]


def test(ctx):
    check = os.environ.get("HP_SHIM_CHECK", "")
    if not check or not os.access(check, os.X_OK):
        raise hptest.Failure("HP_SHIM_CHECK is not set or not built; run with `meson test`")
    d = ctx.daemon()
    env_managed = dict(os.environ, HP_EXPECT="managed")
    env_plain = dict(os.environ, HP_EXPECT="unmanaged")

    for mode, args in MODES:
        r = hptest.run([check, mode, *args], timeout=600, env=env_plain)
        ctx.expect(r.rc == 0 and r.int("mismatches") == 0,
                   f"{mode} without the shim: every check passes{'' if r.rc == 0 else r.describe()}")

        r = hptest.run(progtest.managed(ctx, d, [check, mode, *args], ["--debug"]), timeout=600, env=env_managed)
        ctx.expect(r.rc == 0 and r.int("mismatches") == 0,
                   f"{mode} under the shim: every check passes{'' if r.rc == 0 else r.describe()}")
        ctx.expect("not managed" not in r.err, f"{mode}: hugepaged-run did not report 'not managed'")
        pid = pids(r.out)[0]
        stats = d.client_stats(pid)
        ctx.require(stats is not None, f"{mode}: daemon logged 'client {pid} ... gone'")

        if mode == "closefds":
            # it closed the shim's socket before anything was registered
            ctx.expect(r.int("pipes") >= 100, f"closefds: the fd table was refilled ({r.kv['pipes']} pipes)")
            continue
        ctx.expect(stats.get("faults_served", 0) > 0,
                   f"{mode}: the daemon served pid {pid}'s faults (faults_served={stats.get('faults_served')})")
        ctx.expect(r.int("blocks_seen") > 0 and r.int("blocks_seen") == r.int("blocks_registered"),
                   f"{mode}: every large block checked was registered "
                   f"({r.kv['blocks_registered']} of {r.kv['blocks_seen']})")
        if mode == "fork":
            child = r.int("child_pid")
            cs = d.client_stats(child)
            ctx.expect(cs is not None and cs.get("faults_served", 0) > 0,
                       f"fork: the child {child} is a client of its own and was served ({cs})")
            ctx.expect(re.search(rf"client {child} \(.*\): forked from client {pid}, inherited [1-9]", d.log())
                       is not None, f"fork: the child {child} took over its parent's ranges")
        if mode == "exec":
            images = [l for l in progtest.gone_lines(d, pid)
                      if progtest.counters(l).get("faults_served", 0) > 0]
            ctx.expect(len(images) >= 1 and len(pids(r.out)) == 2,
                       f"exec: the exec'ed image connected and was served ({len(images)} served connections)")
        if mode == "spawn":
            children = pids(r.out)[1:]
            ctx.expect(len(children) == 2, f"spawn: two children ran ({children})")
            for c in children:
                cs = d.client_stats(c)
                ctx.expect(cs is not None and cs.get("faults_served", 0) > 0,
                           f"spawn: child {c} connected on its own and was served")
        if mode == "signals":
            ctx.expect(r.int("signals") > 100, f"signals: {r.kv['signals']} signals during the faults")

    # The shim with no daemon: every check passes, nothing registered.
    env_nod = dict(env_plain, LD_PRELOAD=ctx.paths.preload,
                   HUGEPAGED_SOCKET=os.path.join(ctx.tmp, "nobody.sock"))
    for mode, args in MODES:
        r = hptest.run([check, mode, *args], timeout=600, env=env_nod)
        ctx.expect(r.rc == 0 and r.int("mismatches") == 0 and r.int("blocks_registered") == 0,
                   f"{mode} with the shim and no daemon: every check passes, nothing registered"
                   f"{'' if r.rc == 0 else r.describe()}")


if __name__ == "__main__":
    hptest.main(test)
