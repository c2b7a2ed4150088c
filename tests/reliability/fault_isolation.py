#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""One stalled client never stops another's faults (FaultThreads=).

The daemon runs with --fault-threads 4. Client A (hp-stall) writes 512 MiB
page by page, every write a first touch the daemon serves; once it is under
way it is stalled, and client B (hp-workload dense-seq 64M) is started:

- stopped: the test stops A with SIGSTOP, faults pending;
- holding its mmap lock: A's second thread maps 256 MiB with MAP_POPULATE
  and unmaps it, in a loop until SIGUSR1, while its writer faults and its
  regions are collapsed and registered again (work of the daemon on A that
  waits for that lock).

Properties: B runs to its end with its data intact and its faults served by
the daemon while A is still stalled (A is checked to be stopped, or still
holding, once B is done); then A is let go and finishes with every page
intact. No time is asserted: the timeouts only detect a B that never ends.
"""

import os
import signal
import time

import hptest

A_MIB = 512


def start_a(ctx, d, mode):
    stall = os.environ.get("HP_STALL", "")
    ctx.require(stall and os.access(stall, os.X_OK), f"hp-stall is built (HP_STALL={stall!r})")
    out_path = os.path.join(ctx.tmp, f"a-{mode}.out")
    err_path = os.path.join(ctx.tmp, f"a-{mode}.err")
    argv = [ctx.paths.run, "--socket", d.socket, "--", stall, mode, str(A_MIB)]
    hptest.log("$ " + " ".join(argv))
    with open(out_path, "w") as out, open(err_path, "w") as err:
        p = hptest.spawn(argv, stdout=out, stderr=err)
    end = time.monotonic() + 120
    out = ""
    while time.monotonic() < end and p.poll() is None:
        with open(out_path) as f:
            out = f.read()
        if "touching=1" in out:
            break
        time.sleep(0.02)
    ctx.require(p.poll() is None and "touching=1" in out, f"A ({mode}) is under way, faulting")
    pid = hptest.parse_kv(out).get("pid")
    ctx.require(pid is not None, "A says its pid")
    return p, int(pid), out_path, err_path


def finish_a(ctx, p, argv_desc, out_path, err_path):
    hptest.wait_or_fail(ctx, p, 300, f"A ({argv_desc}) finished once let go")
    with open(out_path) as f, open(err_path) as e:
        r = hptest.Result([argv_desc], p.returncode, f.read(), e.read())
    ctx.expect(r.rc == 0 and r.int("mismatches") == 0 and r.int("pages") == A_MIB * 256,
               f"A ({argv_desc}) finished with every page intact (exit {r.rc}, mismatches "
               f"{r.kv.get('mismatches')}){'' if r.rc == 0 else r.describe()}")
    return r


def run_b(ctx, d, while_what):
    r = hptest.run(ctx.managed(d.socket, ["--wait", "0", "dense-seq", "64M"]), timeout=240)
    ctx.expect(r.rc == 0 and r.int("mismatches") == 0,
               f"B finished with its data intact while A {while_what} (exit {r.rc}){'' if r.rc == 0 else r.describe()}")
    s = d.client_stats(r.int("pid")) if r.rc == 0 else None
    ctx.expect(s is not None and s.get("faults_served", 0) > 0,
               f"the daemon served B's faults ({s and s.get('faults_served')} served)")


def test(ctx):
    d = ctx.daemon("--fault-threads", "4")
    ctx.expect("4 fault threads" in d.log(), "the daemon runs 4 fault threads")

    # A stopped with SIGSTOP while it faults
    p, pid, out_path, err_path = start_a(ctx, d, "touch")
    hptest.log(f"kill -STOP {pid} (A)")
    os.killpg(p.pid, signal.SIGSTOP)
    try:
        run_b(ctx, d, "was stopped")
        ctx.expect(hptest.proc_state(pid) == "T", f"A was still stopped when B was done (state {hptest.proc_state(pid)})")
    finally:
        os.killpg(p.pid, signal.SIGCONT)
    finish_a(ctx, p, "touch, stopped and continued", out_path, err_path)

    # A holding its mmap lock while its faults and collapses go on
    p, pid, out_path, err_path = start_a(ctx, d, "hold")
    try:
        run_b(ctx, d, "held its mmap lock")
        ctx.expect(p.poll() is None, "A was still holding its mmap lock when B was done")
    finally:
        os.kill(pid, signal.SIGUSR1)
    r = finish_a(ctx, p, "hold", out_path, err_path)
    ctx.expect(r.int("holds") > 0, f"A's holder thread populated and unmapped ({r.kv.get('holds')} times)")
    ctx.expect(d.alive(), "the daemon is still running")


if __name__ == "__main__":
    hptest.main(test)
