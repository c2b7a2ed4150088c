#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A stopped daemon bounds a fork's wait: the child runs unmanaged.

`hp-fork gate 5 FIFO` under hugepaged-run --debug: the parent, a client,
writes 8 MiB, then waits on a FIFO. The daemon is stopped with SIGSTOP (it
accepts connections but answers nothing), the parent forks 5 children one
after the other. Properties: every fork returns and every child runs to its
end unmanaged (the shim says the daemon did not answer in time), the
parent's data and the children's copies are intact; after SIGCONT the daemon
serves a new program. No time is asserted: a fork that waited for ever
would hit the test's bound.
"""

import os
import re
import signal
import time

import hptest

FORKS = 5


def test(ctx):
    fork_bin = os.environ.get("HP_FORK", "")
    ctx.require(fork_bin and os.access(fork_bin, os.X_OK), f"hp-fork is built (HP_FORK={fork_bin!r})")
    d = ctx.daemon()
    fifo = os.path.join(ctx.tmp, "gate")
    os.mkfifo(fifo, 0o600)
    out_path, err_path = os.path.join(ctx.tmp, "gate.out"), os.path.join(ctx.tmp, "gate.err")
    argv = [ctx.paths.run, "--socket", d.socket, "--debug", "--", fork_bin, "gate", str(FORKS), fifo]
    hptest.log("$ " + " ".join(argv))
    with open(out_path, "w") as out, open(err_path, "w") as err:
        p = hptest.spawn(argv, stdout=out, stderr=err)
    end = time.monotonic() + 60
    while time.monotonic() < end and p.poll() is None:
        with open(out_path) as f:
            if "ready=1" in f.read():
                break
        time.sleep(0.05)
    ctx.require(p.poll() is None, "hp-fork gate wrote its memory and waits")
    hptest.log(f"kill -STOP {d.proc.pid} (daemon)")
    os.kill(d.proc.pid, signal.SIGSTOP)
    try:
        with open(fifo, "w") as f:
            f.write("go\n")
        hptest.wait_or_fail(ctx, p, 120, "the forks returned with the daemon stopped (a child waits on it)")
    finally:
        os.kill(d.proc.pid, signal.SIGCONT)
    with open(out_path) as f, open(err_path) as e:
        r = hptest.Result(argv, p.returncode, f.read(), e.read())
    ctx.expect(r.rc == 0, f"hp-fork gate exits 0 (got {r.rc}){'' if r.rc == 0 else r.describe()}")
    ctx.expect(r.int("forks") == FORKS and r.int("child_failures") == 0,
               f"{FORKS} children ran to their end with the data intact ({r.kv.get('child_failures')} failed)")
    ctx.expect(r.int("mismatches") == 0, f"the parent's data unchanged ({r.kv.get('mismatches')} mismatches)")
    timed_out = len(re.findall(r"not managed after fork: the daemon did not answer in time", r.err))
    ctx.expect(timed_out == FORKS, f"every child gave up waiting and ran unmanaged ({timed_out} of {FORKS})")

    r = hptest.run(ctx.managed(d.socket, ["--wait", "0", "sparse", "64M"]), timeout=120)
    s = d.client_stats(r.int("pid")) if r.rc == 0 else None
    ctx.expect(r.rc == 0 and s is not None and s.get("faults_served", 0) > 0,
               f"after SIGCONT the daemon serves a new program (exit {r.rc}, stats {s})")


if __name__ == "__main__":
    hptest.main(test)
