#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A prompt clean stop: SIGTERM with clients attached ends the daemon within
1 s, and its clients go on unmanaged with their data intact.

Two clients: 4 threads mapping, writing, verifying and unmapping 64 MiB in a
loop (threads-loop: faults all the time) and a 1 GiB mapping written in a
random page order (dense-rand: regions collapsed by the promotion worker
all the time). SIGTERM is sent at a moment when, in the same look at the
kernel stacks, a client thread sleeps in handle_userfault (a fault the
daemon has not answered yet) and a promotion worker is inside
MADV_COLLAPSE. Measured from the signal to the daemon's reaping: at most
1 s (typically 10 to 70 ms here). Both clients then finish on ordinary kernel faults, exit 0 and report
0 mismatches.
"""

import os
import re
import select
import signal
import time

import hptest

STOP_BOUND_S = 1.0


def stacks(pid):
    """{tid: (comm, [kernel frames])} of process pid's threads."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                comm = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/stack") as f:
                frames = [l.split("] ", 1)[-1].split("+")[0] for l in f.read().splitlines()]
        except OSError:
            continue
        out[int(tid)] = (comm, frames)
    return out


def in_fault(pid):
    return any("handle_userfault" in frames for _, frames in stacks(pid).values())


def in_collapse(daemon_pid):
    return any(comm.startswith("hp-promote") and any("collapse" in f for f in frames)
               for comm, frames in stacks(daemon_pid).values())


def test(ctx):
    d = ctx.daemon()
    runs = []
    for name, args in (("threads-loop", ["threads-loop", "4", "8"]),
                       ("dense-rand", ["--wait", "0", "dense-rand", "1G"])):
        out, err = os.path.join(ctx.tmp, f"{name}.out"), os.path.join(ctx.tmp, f"{name}.err")
        argv = ctx.managed(d.socket, args)
        hptest.log("$ " + " ".join(argv))
        with open(out, "w") as o, open(err, "w") as e:
            runs.append((name, argv, hptest.spawn(argv, stdout=o, stderr=e), out, err))
    loop, dense = runs[0][2], runs[1][2]
    # From here on this process runs at the daemon's default Nice= (the
    # clients, started before, at 0): the measurement is not delayed by them.
    os.setpriority(os.PRIO_PROCESS, 0, -10)
    for name, _, p, _, _ in runs:
        ctx.require(d.log_mentions(p.pid, timeout=15), f"{name} (pid {p.pid}) is a client of the daemon")

    # Wait for the moment: a client in a fault and a collapse in progress, seen together.
    end, seen = time.monotonic() + 20, False
    while time.monotonic() < end and loop.poll() is None and dense.poll() is None:
        if in_collapse(d.proc.pid) and (in_fault(loop.pid) or in_fault(dense.pid)):
            seen = True
            break
        time.sleep(0.002)
    ctx.require(seen, "seen at once: a client thread in handle_userfault, a promotion worker in MADV_COLLAPSE")

    # The end is seen through a pidfd (readable once the process has exited),
    # not by polling waitpid().
    pidfd = os.pidfd_open(d.proc.pid)
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    t0 = time.monotonic()
    d.proc.send_signal(signal.SIGTERM)
    if not poller.poll(30_000):
        for line in hptest.group_stacks(d.proc.pid):
            hptest.log("  " + line)
        ctx.require(False, "the daemon exited within 30 s of SIGTERM")
    stop_s = time.monotonic() - t0
    os.close(pidfd)
    d.proc.wait(timeout=10)
    d.exit_status = d.proc.returncode
    hptest.log(f"daemon stopped {stop_s * 1e3:.0f} ms after SIGTERM, status {d.proc.returncode}")
    ctx.expect(stop_s <= STOP_BOUND_S, f"the daemon is gone within {STOP_BOUND_S:.0f} s of SIGTERM "
                                       f"({stop_s * 1e3:.0f} ms)")
    ctx.expect(d.proc.returncode == 0, f"and exits 0 (got {d.proc.returncode})")
    ctx.expect(re.search(r"signal 15: exiting", d.log()) is not None, "its log says why it stopped")
    inside = re.search(r"stopped ([0-9.]+) ms after the signal", d.log())
    ctx.expect(inside is not None, "the daemon logs how long its stop took")
    hptest.log(f"of which {inside.group(1) if inside else '?'} ms from reading the signal to the end of main()")

    for name, argv, p, out, err in runs:
        hptest.wait_or_fail(ctx, p, 300, f"{name} finished within 300 s after the daemon stopped (a fault is stuck)")
        with open(out) as f, open(err) as e:
            r = hptest.Result(argv, p.returncode, f.read(), e.read())
        ctx.expect(r.rc == 0 and r.int("mismatches") == 0,
                   f"{name} finishes unmanaged: exit {r.rc}, {r.kv.get('mismatches')} mismatches"
                   f"{'' if r.rc == 0 else r.describe()}")


if __name__ == "__main__":
    hptest.main(test)
