#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Fail-open: a daemon killed with SIGKILL costs its clients nothing.

8 threads map, write, verify and unmap 64 MiB in a loop under hugepaged-run;
the daemon is killed with SIGKILL about a second after the client connected.
The workload must finish on its own (no thread stuck on a fault nobody will
serve) with every page intact. Then, with the daemon still down (its stale
socket file left behind, and then with no socket at all), new programs under
hugepaged-run must run normally.
"""

import os
import re
import subprocess
import time

import hptest

LOOP_S = 10


def wait_for_pid(path, proc, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with open(path) as f:
            m = re.search(r"^pid=(\d+)$", f.read(), re.M)
        if m:
            return int(m.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    return None


def test(ctx):
    d = ctx.daemon()
    out_path = os.path.join(ctx.tmp, "loop.out")
    err_path = os.path.join(ctx.tmp, "loop.err")
    argv = ctx.managed(d.socket, ["threads-loop", "8", str(LOOP_S)], ["--debug"])
    hptest.log("$ " + " ".join(argv))
    with open(out_path, "w") as out, open(err_path, "w") as err:
        p = hptest.spawn(argv, stdout=out, stderr=err)
    pid = wait_for_pid(out_path, p, 30)
    ctx.require(pid is not None, "workload started and printed its pid")
    ctx.expect(d.log_mentions(pid, timeout=10), f"daemon log mentions the client {pid} (it was managed)")
    time.sleep(1.0)
    ctx.require(p.poll() is None, "workload still running when the daemon is killed")
    hptest.log(f"kill -9 {d.proc.pid} (daemon)")
    d.kill9()
    killed_at = time.monotonic()

    try:
        p.wait(timeout=LOOP_S + 120)
    except subprocess.TimeoutExpired:
        for line in hptest.group_stacks(p.pid):
            hptest.log("  " + line)
        hptest.kill_tree(p)
        ctx.require(False, f"workload finished within {LOOP_S + 120} s after the daemon was killed "
                           "(a thread is stuck on a fault)")
    with open(out_path) as f:
        out = f.read()
    with open(err_path) as f:
        err = f.read()
    r = hptest.Result(argv, p.returncode, out, err)
    hptest.log(f"workload ended {time.monotonic() - killed_at:.1f} s after the kill")
    ctx.expect(r.rc == 0, f"workload exits 0 after the daemon died (got {r.rc}){'' if r.rc == 0 else r.describe()}")
    ctx.expect(r.int("mismatches") == 0, f"data intact ({r.kv['mismatches']} mismatches)")
    ctx.expect(r.int("iterations") >= 8,
               f"every thread completed map/write/verify/unmap rounds ({r.kv['iterations']} in total)")

    # The daemon stays down: its socket file is stale, nobody listens.
    for label, args in (("dense-seq", ["--wait", "0", "dense-seq", "256M"]),
                        ("integrity", ["--wait", "1", "integrity"])):
        r = hptest.run(ctx.managed(d.socket, args, ["--debug"]), timeout=300)
        ctx.expect(r.rc == 0 and r.int("mismatches") == 0,
                   f"{label} under hugepaged-run with the daemon dead runs normally "
                   f"(exit {r.rc}, {r.kv.get('mismatches')} mismatches){'' if r.rc == 0 else r.describe()}")
    # And with no socket at all.
    if os.path.exists(d.socket):
        os.unlink(d.socket)
    r = hptest.run(ctx.managed(d.socket, ["threads-loop", "4", "2"], ["--debug"]), timeout=120)
    ctx.expect(r.rc == 0 and r.int("mismatches") == 0,
               f"threads-loop under hugepaged-run with no socket runs normally "
               f"(exit {r.rc}, {r.kv.get('mismatches')} mismatches){'' if r.rc == 0 else r.describe()}")


if __name__ == "__main__":
    hptest.main(test)
