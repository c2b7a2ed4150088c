#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Crash and restart: kill -9 of the daemon at random moments while 16
client threads fault, promote, unmap and remap.

Each round starts a daemon on the same socket (the first fresh, later ones
over the socket file the killed one left behind), starts hp-chaos under
hugepaged-run (16 threads mapping, writing densely and sparsely, growing,
moving and shrinking with mremap, dropping with MADV_DONTNEED, unmapping
pieces, verifying every page), checks the daemon took it as a client, and
kills the daemon with SIGKILL at a random moment; clients that were in the
middle of connecting are started around the kill too. Every client must
finish on its own with its data intact: memory the daemon managed falls back
to ordinary page faults. A client that was connected says so on stderr only
with --debug (one line), and nothing without. After the last round a new
daemon on the same socket serves new clients (faults served, regions
promoted) and exits 0 on SIGTERM.
"""

import os
import random
import re
import time

import hptest
import sectest

ROUNDS = 6
THREADS = 16
CLIENT_S = 5


def test(ctx):
    chaos = os.environ["HP_CHAOS"]
    rng = random.Random(int(os.environ.get("HP_SEED", "0")) or time.time_ns())
    seed = rng.randrange(1 << 30)
    hptest.log(f"seed {seed} (HP_SEED={seed} repeats this run's kill moments)")
    rng = random.Random(seed)
    sock = os.path.join(ctx.tmp, "hugepaged.sock")
    kills = []
    for rnd in range(ROUNDS):
        d = sectest.start_daemon(ctx, name=f"hugepaged-{rnd}", socket=sock)
        debug = rnd % 2 == 1
        argv = [ctx.paths.run, "--socket", sock] + (["--debug"] if debug else []) + \
               ["--", chaos, str(THREADS), str(CLIENT_S), str(seed + rnd)]
        out = os.path.join(ctx.tmp, f"chaos-{rnd}.out")
        p = sectest.run_bg(argv, out)
        pid = None
        end = time.monotonic() + 30
        while pid is None and time.monotonic() < end and p.poll() is None:
            m = re.search(r"^pid=(\d+)$", open(out).read(), re.M)
            pid = int(m.group(1)) if m else None
            time.sleep(0.02)
        ctx.require(pid is not None, f"round {rnd}: hp-chaos started")
        ctx.expect(sectest.wait_lines(d, rf"client {pid} \(hp-chaos\) uid \d+ ready", 1, 30) == 1,
                   f"round {rnd}: the daemon took hp-chaos ({pid}) as a client")

        # a random moment in the client's life, with new clients connecting around it
        delay = rng.uniform(0.05, CLIENT_S - 1.5)
        time.sleep(delay * 0.8)
        late = [sectest.run_bg([ctx.paths.run, "--socket", sock, "--", ctx.paths.workload, "--wait", "0",
                                "dense-seq", "32M"], os.path.join(ctx.tmp, f"late-{rnd}-{i}.out"))
                for i in range(3)]
        time.sleep(delay * 0.2)
        hptest.log(f"round {rnd}: kill -9 {d.pid} {delay:.2f} s into the client's run")
        d.kill9()
        kills.append(delay)

        r = sectest.finish_bg(p, argv, out, CLIENT_S + 120)
        ctx.expect(r.rc == 0 and r.int("mismatches") == 0,
                   f"round {rnd}: 16 threads finished with data intact after the kill "
                   f"({r.kv.get('iterations')} rounds, {r.kv.get('ops')}, {r.kv.get('mismatches')} mismatches)"
                   f"{'' if r.rc == 0 else r.describe()}")
        said = [l for l in r.err.splitlines() if "hugepaged" in l]
        if debug:
            ctx.expect(any("no longer managed" in l for l in said),
                       f"round {rnd} (--debug): the client said it runs unmanaged now ({said})")
        else:
            ctx.expect(not said, f"round {rnd}: without --debug the client printed nothing about it ({said})")
        for i, q in enumerate(late):
            lo = os.path.join(ctx.tmp, f"late-{rnd}-{i}.out")
            lr = sectest.finish_bg(q, ["late client"], lo, 120)
            ctx.expect(lr.rc == 0 and lr.int("mismatches") == 0,
                       f"round {rnd}: a client started around the kill finished intact{lr.describe() if lr.rc else ''}")

    # A new daemon on the same socket serves new clients.
    d = sectest.start_daemon(ctx, name="hugepaged-last", socket=sock)
    r = hptest.run([ctx.paths.run, "--socket", sock, "--", chaos, str(THREADS), "2", str(seed)], timeout=120)
    ctx.expect(r.rc == 0 and r.int("mismatches") == 0, f"after the restarts: hp-chaos intact{r.describe() if r.rc else ''}")
    stats = d.client_stats(r.int("pid")) or {}
    ctx.expect(stats.get("faults_served", 0) > 0 and stats.get("promotions", 0) > 0,
               f"the restarted daemon served the new client (faults_served={stats.get('faults_served')}, "
               f"promotions={stats.get('promotions')})")
    hptest.log(f"killed {len(kills)} times at " + ", ".join(f"{k:.2f} s" for k in kills))


if __name__ == "__main__":
    hptest.main(test)
