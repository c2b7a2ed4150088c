#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Fork torture: copy-on-write after fork is exactly the kernel's.

`hp-fork torture 16 500` under hugepaged-run: 16 threads rewrite the 2 MiB
regions of a 128 MiB mapping (dense, promoted at once; every 4th page,
promoted at the threshold; every 32nd page, left small), each region
verified before it is dropped and written again, while another thread forks
500 times. Each child checks a sample of the regions complete at the fork,
writes its own data over some and into a new mapping, reads it back, exits.
Properties: zero mismatches in the parent and in every child, every child
exits 0; children were clients of their own with faults served. Then the
same again with the daemon killed with SIGKILL after 100 forks: the program
finishes with zero mismatches (the children forked after the kill run
unmanaged).
"""

import os
import re
import time

import hptest

THREADS = 16
FORKS = 500
KILL_AFTER = 100


def torture_argv(ctx, d, fork_bin):
    return [ctx.paths.run, "--socket", d.socket, "--", fork_bin, "torture", str(THREADS), str(FORKS)]


def check_result(ctx, r, label):
    ctx.require(r.rc in (0, 1), f"{label}: hp-fork torture ran to its end (exit {r.rc}){'' if r.rc in (0, 1) else r.describe()}")
    ctx.expect(r.int("forks") == FORKS, f"{label}: {FORKS} forks done ({r.kv.get('forks')})")
    ctx.expect(r.int("child_failures") == 0, f"{label}: every child found the parent's data and its own intact "
                                             f"({r.kv.get('child_failures')} failed)")
    ctx.expect(r.int("mismatches") == 0, f"{label}: the parent's data unchanged ({r.kv.get('mismatches')} mismatches)")
    ctx.expect(r.int("rounds") > 0, f"{label}: the threads rewrote regions during the forks ({r.kv.get('rounds')} rounds)")


def test(ctx):
    fork_bin = os.environ.get("HP_FORK", "")
    ctx.require(fork_bin and os.access(fork_bin, os.X_OK), f"hp-fork is built (HP_FORK={fork_bin!r})")

    # 1. The daemon up all along.
    d = ctx.daemon(name="hugepaged")
    r = hptest.run(torture_argv(ctx, d, fork_bin), timeout=400)
    check_result(ctx, r, "daemon up")
    parent = r.int("pid")
    children = [int(p) for p in re.findall(rf"client (\d+) \(.*\): forked from client {parent},", d.log())]
    ctx.expect(len(children) > 0, f"children were clients of their own ({len(children)} of {FORKS})")
    # one pass over the log: the children's `client PID ... gone` lines
    served = set()
    for m in re.finditer(r"client (\d+) \(.*\) gone .*\bfaults_served=(\d+)", d.log()):
        if int(m.group(2)) > 0:
            served.add(int(m.group(1)))
    served &= set(children)
    ctx.expect(len(served) > 0, f"the daemon served faults of children ({len(served)} children)")
    s = d.client_stats(parent)
    ctx.expect(s is not None and s.get("promotions", 0) > 0,
               f"the parent's regions were promoted while it forked (promotions={s and s.get('promotions')})")

    # 2. The daemon killed with SIGKILL after KILL_AFTER forks.
    d2 = ctx.daemon(name="hugepaged-kill")
    out_path = os.path.join(ctx.tmp, "torture.out")
    err_path = os.path.join(ctx.tmp, "torture.err")
    argv = torture_argv(ctx, d2, fork_bin)
    hptest.log("$ " + " ".join(argv))
    with open(out_path, "w") as out, open(err_path, "w") as err:
        p = hptest.spawn(argv, stdout=out, stderr=err)
    end = time.monotonic() + 300
    killed = False
    while time.monotonic() < end and p.poll() is None:
        with open(out_path) as f:
            m = re.findall(r"^forked=(\d+)$", f.read(), re.M)
        if m and int(m[-1]) >= KILL_AFTER:
            hptest.log(f"kill -9 {d2.proc.pid} (daemon) after {m[-1]} forks")
            d2.kill9()
            killed = True
            break
        time.sleep(0.02)
    ctx.require(killed, f"the daemon was killed while the program forked (after {KILL_AFTER} of {FORKS} forks)")
    hptest.wait_or_fail(ctx, p, 400, "hp-fork torture finished after the daemon was killed (a thread or child is stuck)")
    with open(out_path) as f:
        out = f.read()
    with open(err_path) as f:
        err = f.read()
    check_result(ctx, hptest.Result(argv, p.returncode, out, err), "daemon killed")


if __name__ == "__main__":
    hptest.main(test)
